"""zumik's command line: one Typer app, each command group registered on it once.

A command parses its options, calls one library function and renders the result; what the commands share
(consoles, error translation, options) lives in ``options``.
"""

from zumik_cli.cli import diagnosis, export, main, releases

app = main.app
export.register(app)
releases.register(app)
diagnosis.register(app)

__all__ = ["app"]

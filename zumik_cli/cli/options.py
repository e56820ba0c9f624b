"""What every command shares: the two consoles, the error translation, JSON output, progress and options.

Every ``ZumikError`` becomes a one-line ``Error: ...`` and its exit code here, in one place. Command modules
import from here, never from each other, so that they register without import cycles.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

from zumik_cli.core.errors import ZumikError
from zumik_cli.core.redact import redact
from zumik_cli.render.terminal import tables as terminal

out = terminal.console()
err = terminal.console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

DataOpt = Annotated[Path, typer.Option("--data", "-d", help="Dataset folder (Parquet + manifest.json).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout instead of tables.")]


def handles_errors(func: F) -> F:
    """Turn zumik's own errors into one line on stderr and a meaningful exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ZumikError as exc:
            err.print(f"[bold red]Error:[/] {escape(redact(str(exc)))}", highlight=False, markup=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def progress_bar(label: str) -> tuple[Progress, Callable[[int, int], None]]:
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    task = bar.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return bar, update


def waterfall_options(
    rules: str | None,
    ttl: str | None,
    capacity_tokens: int | None,
    by: list[str] | None,
    rules_file: list[Path] | None,
) -> Any:
    from zumik_cli.analysis.waterfall import WaterfallOptions

    ttl_seconds, ttl_none = None, False
    if ttl is not None:
        if ttl.lower() in ("none", "inf", "off"):
            ttl_none = True
        else:
            try:
                ttl_seconds = float(ttl)
            except ValueError:
                raise ZumikError(f"--ttl takes seconds or 'none', not {ttl!r}") from None
    return WaterfallOptions(
        rules=rules,
        ttl_seconds=ttl_seconds,
        ttl_none=ttl_none,
        capacity_tokens=capacity_tokens,
        by=tuple(by or ()),
        rules_files=tuple(str(p) for p in rules_file or ()),
    )


RulesOpt = Annotated[
    str | None, typer.Option("--rules", help="Force one rules pack for every request (see `zumik rules`).")
]
TtlOpt = Annotated[str | None, typer.Option("--ttl", help="Override the packs' TTL: seconds, or 'none'.")]
CapOpt = Annotated[int | None, typer.Option("--capacity-tokens", help="LRU cache capacity in tokens.")]
ByOpt = Annotated[
    list[str] | None,
    typer.Option("--by", help="Break down by model, alias, release, tenant, session, day (repeatable)."),
]
RulesFileOpt = Annotated[list[Path] | None, typer.Option("--rules-file", help="Add a rules pack file of your own.")]


def show_notes(notes: Iterable[str]) -> None:
    """What a library call reports without failing (a skipped optional part), as warnings on stderr."""
    for note in notes:
        err.print(f"[yellow]Note:[/] {escape(note)}", highlight=False)


def show_recommendations(console: Console, recommendations: list[dict[str, Any]]) -> None:
    from zumik_cli.diagnosis.diagnose import TOP_RECOMMENDATIONS
    from zumik_cli.render.terminal import diagnosis as terminal_diagnosis

    terminal_diagnosis.recommendations(console, {"recommendations": recommendations}, TOP_RECOMMENDATIONS)


def write_report_of(diagnosis: Any, path: Path, *, generated_at: str | None = None, include_text: bool = False) -> Path:
    """Write the HTML report of a diagnosis; the time is taken here, so that rendering stays deterministic."""
    from datetime import UTC, datetime

    from zumik_cli.render.report.page import ReportInputs, write_report

    when = generated_at or datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return write_report(ReportInputs.of(diagnosis, when, include_text=include_text), path)

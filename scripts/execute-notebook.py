"""Run notebooks/walkthrough.ipynb on the bundled sample traces and store it with its outputs (`make notebook`).

Charts are stored as plotly's own mimetype (interactive where Jupyter renders it, no plotly.js inside) with a static
picture beside each, so that a preview that runs no JavaScript still shows them.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"


def main() -> None:
    os.environ.pop("ZUMIK_DATA", None)  # the notebook ingests sample_traces/ itself
    os.environ["PLOTLY_RENDERER"] = "plotly_mimetype"
    os.environ.setdefault("JUPYTER_PREFER_ENV_PATH", "1")
    os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()
    nbformat.write(notebook, NOTEBOOK)


if __name__ == "__main__":
    main()

"""notebooks/walkthrough.ipynb runs top to bottom on the sample traces, and is kept in git without outputs."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"


def test_the_walkthrough_is_stored_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    kept = [index for index, cell in enumerate(code) if cell.outputs or cell.execution_count is not None]
    assert not kept, f"code cells {kept} were saved with outputs: clear them before committing"
    assert notebook.metadata.kernelspec.name == "python3"


def test_the_walkthrough_runs_on_the_sample_traces_and_draws_its_breakdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ZUMIK_DATA", raising=False)  # so the notebook ingests sample_traces/ itself
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where it puts that dataset
    monkeypatch.setenv("PLOTLY_RENDERER", "json")  # the figure as data, without plotly.js in the output
    # the python3 kernel of this environment (ipykernel is a dev dependency), before any in the user's home
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "1")
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )

    client.execute()  # raises CellExecutionError, with the cell and its traceback, when a cell fails

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    printed = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    assert re.search(r"ingested [1-9]\d* requests \(0 quarantined\)", printed), printed
    figures = [output.data["application/json"] for output in outputs if "application/json" in output.get("data", {})]
    assert len(figures) == 1
    names = [trace["name"] for trace in figures[0]["data"]]
    providers = {name.split(": ")[0] for name in names}
    assert providers and sorted(names) == sorted(
        f"{p}: {stage}" for p in providers for stage in ("candidate", "realized")
    )
    assert all(0 <= y <= 1 for trace in figures[0]["data"] for y in trace["y"])

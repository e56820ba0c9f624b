"""notebooks/walkthrough.ipynb runs top to bottom on the sample traces, and is kept in git executed (`make notebook`),
with a static picture beside each interactive chart."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"
PLOTLY = "application/vnd.plotly.v1+json"


def test_the_walkthrough_is_stored_executed_with_a_static_picture_beside_each_chart() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), "run it with `make notebook`"
    outputs = [output for cell in code for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    charts = [i for i, cell in enumerate(code) if any(PLOTLY in o.get("data", {}) for o in cell.outputs)]
    pictures = [i for i, cell in enumerate(code) if any("image/png" in o.get("data", {}) for o in cell.outputs)]
    assert charts and [i + 1 for i in charts] == pictures  # each chart is followed by its picture
    # the interactive chart is the figure's data, not an inlined copy of plotly.js
    assert all("plotly.js" not in json.dumps(o.get("data", {}))[:200_000] for o in outputs)
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
    pictures = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(pictures) == 1
    names = [trace["name"] for trace in figures[0]["data"]]
    providers = {name.split(": ")[0] for name in names}
    assert providers and sorted(names) == sorted(
        f"{p}: {stage}" for p in providers for stage in ("candidate", "realized")
    )
    assert all(0 <= y <= 1 for trace in figures[0]["data"] for y in trace["y"])

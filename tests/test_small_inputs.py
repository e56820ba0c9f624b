"""A small trace runs no compiled kernel, with the same results: a fresh install's first run needs no compiler.

Compiling the kernels is what a fresh install's first run costs (about 30 s of its 34 s here), and importing numba
and loading them from its cache a third of a second of every run; below a size, hashlib and Arrow's JSON reader do
the BLAKE2b and scanner's work, and the levels pass, the LRU curve and ingest's row loops run their own source
interpreted, over lists. What a run does not use is not imported: numba loads with the first compiled kernel, and a
diagnose without a report loads no compiler, charting, tokenizer or secrets library.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from zumik_cli.analysis import capacity, levels
from zumik_cli.analysis.waterfall import compute_waterfall
from zumik_cli.core import digests
from zumik_cli.dataset.store import Dataset
from zumik_cli.ingest import rows
from zumik_cli.ingest.pipeline import ingest
from zumik_cli.readers import hashid

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.mooncake import write_trace  # noqa: E402


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trace") / "mooncake.jsonl"
    write_trace(path, 1_500, seed=4)
    return path


def _tables(data: Path) -> dict[str, list[dict[str, object]]]:
    dataset = Dataset(data)
    return {table: pq.read_table(dataset.parts(table)).to_pylist() for table in dataset.manifest.parts}


def _compile_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    for module, name in ((digests, "COMPILED_MIN"), (hashid, "SCAN_MIN_BYTES")):
        monkeypatch.setattr(module, name, 0)
    for module in (levels, capacity, rows):
        monkeypatch.setattr(module, "COMPILED_MIN", 0)


def test_a_small_trace_ingests_and_diagnoses_the_same_without_numba_as_compiled(
    trace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest([trace], tmp_path / "small")
    by_small = compute_waterfall(Dataset(tmp_path / "small"))
    _compile_everything(monkeypatch)
    ingest([trace], tmp_path / "compiled")
    by_compiled = compute_waterfall(Dataset(tmp_path / "compiled"))

    small, compiled = _tables(tmp_path / "small"), _tables(tmp_path / "compiled")
    assert small.keys() == compiled.keys() and len(small["request_blocks"]) > 30_000
    for table in small:
        assert small[table] == compiled[table], table
    assert by_small.summary == by_compiled.summary
    assert by_small.summary["capacity_curve"] and by_small.summary["eligible"]["tokens"]
    assert by_small.per_request.to_table().equals(by_compiled.per_request.to_table())


def test_a_trace_past_the_thresholds_diagnoses_the_same_interpreted_as_compiled(
    trace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # thresholds below the trace's 46,000 blocks: the default is compiled, and interpreted is forced
    for module in (levels, capacity, rows):
        monkeypatch.setattr(module, "COMPILED_MIN", 10_000)
    ingest([trace], tmp_path / "compiled")
    by_compiled = compute_waterfall(Dataset(tmp_path / "compiled"))
    for module in (levels, capacity, rows):
        monkeypatch.setattr(module, "COMPILED_MIN", 2**62)
    ingest([trace], tmp_path / "interpreted")
    by_interpreted = compute_waterfall(Dataset(tmp_path / "interpreted"))

    assert _tables(tmp_path / "compiled") == _tables(tmp_path / "interpreted")
    assert by_compiled.summary == by_interpreted.summary
    assert by_compiled.per_request.to_table().equals(by_interpreted.per_request.to_table())


def test_a_trace_stored_out_of_time_order_diagnoses_the_same_interpreted_as_compiled(
    trace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # stored newest first, the blocks are placed in time order before the pass (levels._placed)
    reversed_trace = tmp_path / "reversed.jsonl"
    reversed_trace.write_bytes(b"".join(reversed(trace.read_bytes().splitlines(keepends=True))))
    ingest([reversed_trace], tmp_path / "reversed")
    monkeypatch.setattr(levels, "COMPILED_MIN", 2**62)
    by_interpreted = compute_waterfall(Dataset(tmp_path / "reversed"))
    monkeypatch.setattr(levels, "COMPILED_MIN", 0)
    by_compiled = compute_waterfall(Dataset(tmp_path / "reversed"))

    assert by_interpreted.summary == by_compiled.summary
    assert by_interpreted.per_request.to_table().equals(by_compiled.per_request.to_table())
    assert by_interpreted.summary["eligible"]["tokens"] > 0


def test_a_small_trace_loads_no_compiled_kernel(trace: Path, tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path\n"
        "from zumik_cli.ingest.pipeline import ingest\n"
        "ingest([Path(sys.argv[1])], Path(sys.argv[2]))\n"
        "print('numba' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(trace), str(tmp_path / "d")], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False"]


def _loaded_after(script: str, *args: str) -> list[str]:
    """Which of the heavy optional modules ``script`` (run in a fresh interpreter) left loaded."""
    heavy = ("numba", "llvmlite", "plotly", "polars", "tiktoken", "tokenizers", "PIL", "detect_secrets")
    script += f"\nprint(*sorted(m for m in {heavy!r} if m in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()[-1].split()  # the last line: a command's own output comes before it


def test_the_command_line_and_the_diagnose_library_load_without_numba() -> None:
    # Commands that run no compiled kernel (--help, check, formats, rules) skip numba's import and LLVM.
    script = (
        "import sys\n"
        "import zumik_cli.cli, zumik_cli.diagnosis.diagnose, zumik_cli.analysis.waterfall, zumik_cli.ingest.pipeline"
    )
    assert _loaded_after(script) == []


def test_a_small_diagnose_without_a_report_loads_no_compiler_charting_tokenizer_or_secrets_library(
    trace: Path, tmp_path: Path
) -> None:
    script = (
        "import sys\n"
        "from zumik_cli.cli import app\n"
        "app(['diagnose', sys.argv[1], '--data', sys.argv[2], '--no-report', '--json'], standalone_mode=False)"
    )
    assert _loaded_after(script, str(trace), str(tmp_path / "d")) == []

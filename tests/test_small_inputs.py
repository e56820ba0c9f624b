"""A small trace skips the compiled BLAKE2b kernels and the compiled Mooncake scanner, with the same results.

Compiling those kernels is most of what a fresh install's first run costs (about 25 s of its 34 s here), and
loading them from numba's cache a fifth of a second of every run; below a size, hashlib and Arrow's JSON reader
do the same work in milliseconds. What a run does not use is not imported: numba loads with the first kernel
run, and a diagnose without a report loads no charting, tokenizer or secrets library.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from zumik_cli.analysis.waterfall import compute_waterfall
from zumik_cli.core import digests
from zumik_cli.dataset.store import Dataset
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


def test_a_small_trace_ingests_and_diagnoses_the_same_through_hashlib_and_arrow_as_compiled(
    trace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest([trace], tmp_path / "small")
    monkeypatch.setattr(digests, "COMPILED_MIN", 0)
    monkeypatch.setattr(hashid, "SCAN_MIN_BYTES", 0)
    ingest([trace], tmp_path / "compiled")

    small, compiled = _tables(tmp_path / "small"), _tables(tmp_path / "compiled")
    assert small.keys() == compiled.keys() and len(small["request_blocks"]) > 30_000
    for table in small:
        assert small[table] == compiled[table], table
    by_small, by_compiled = (
        compute_waterfall(Dataset(tmp_path / "small")),
        compute_waterfall(Dataset(tmp_path / "compiled")),
    )
    assert by_small.summary == by_compiled.summary
    assert by_small.per_request.equals(by_compiled.per_request)


def test_a_small_trace_loads_neither_the_blake2b_kernels_nor_the_scanner(trace: Path, tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path\n"
        "from zumik_cli.ingest.pipeline import ingest\n"
        "from zumik_cli.core import digests\n"
        "from zumik_cli.readers import mooncake_scan\n"
        "ingest([Path(sys.argv[1])], Path(sys.argv[2]))\n"
        "kernels = (digests._digest_decimals_kernel, digests._digest_rows_kernel, mooncake_scan._scan)\n"
        "print(*(len(k.signatures) for k in kernels))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(trace), str(tmp_path / "d")], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "0", "0"]


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


def test_a_small_diagnose_without_a_report_loads_no_charting_tokenizer_or_secrets_library(
    trace: Path, tmp_path: Path
) -> None:
    script = (
        "import sys\n"
        "from zumik_cli.cli import app\n"
        "app(['diagnose', sys.argv[1], '--data', sys.argv[2], '--no-report', '--json'], standalone_mode=False)"
    )
    loaded = _loaded_after(script, str(trace), str(tmp_path / "d"))
    assert set(loaded) <= {"numba", "llvmlite"}, loaded  # the levels pass and the capacity curve are compiled

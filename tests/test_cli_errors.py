"""Every bad option value, bad input and damaged dataset is one `Error:` line, a non-zero exit and nothing left.

Each case runs the real command in a scratch folder holding the bad inputs; the folder's listing before and after
must match (no dataset folder, no `.lock`, no half-written file), stderr must be exactly one line and no traceback.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import runner

from zumik_cli.cli import app
from zumik_cli.cli.options import BY_KEYS

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_traces" / "agents-1.jsonl"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("errors") / "ds"
    result = runner().invoke(app, ["ingest", str(SAMPLE), "--data", str(data)])
    assert result.exit_code == 0, result.stderr
    return data


def bad_inputs(work: Path) -> None:
    """The files every case may name: each is wrong in its own way."""
    (work / "empty.jsonl").write_bytes(b"")
    (work / "random.bin").write_bytes(bytes(range(256)) * 8)
    (work / "data.csv").write_text("model,prompt_tokens\ngpt-4o,1200\n")
    (work / "other.json").write_text('{"hello": "world"}\n')
    (work / "folder").mkdir()
    os.mkfifo(work / "fifo")


def damaged(change: Callable[[Path], None]) -> Callable[[Path, Path], None]:
    """A copy of the dataset at work/bad with ``change`` applied to it."""

    def setup(work: Path, dataset: Path) -> None:
        shutil.copytree(dataset, work / "bad")
        change(work / "bad")

    return setup


def _first_part(root: Path) -> Path:
    return sorted((root / "requests").glob("*.parquet"))[0]


def _truncate_part(root: Path) -> None:
    part = _first_part(root)
    part.write_bytes(part.read_bytes()[:100])


def _edit_manifest(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        manifest = json.loads((root / "manifest.json").read_text())
        edit(manifest)
        (root / "manifest.json").write_text(json.dumps(manifest))

    return change


def _no_setup(work: Path, dataset: Path) -> None:
    return None


CASES: list[tuple[str, str, Callable[[Path, Path], None]]] = [
    ("negative capacity", "waterfall --data {ds} --capacity-tokens -1", _no_setup),
    ("zero capacity", "waterfall --data {ds} --capacity-tokens 0", _no_setup),
    ("capacity in words", "waterfall --data {ds} --capacity-tokens lots", _no_setup),
    ("negative curve point", "waterfall --data {ds} --curve=-5,10", _no_setup),
    ("curve in words", "waterfall --data {ds} --curve lots", _no_setup),
    ("negative ttl", "waterfall --data {ds} --ttl -5", _no_setup),
    ("zero ttl", "waterfall --data {ds} --ttl 0", _no_setup),
    ("ttl in words", "waterfall --data {ds} --ttl soon", _no_setup),
    ("unknown breakdown", "waterfall --data {ds} --by colour", _no_setup),
    ("unknown option", "waterfall --data {ds} --sessions 3", _no_setup),
    ("a file as dataset when ingesting", "ingest {sample} --data {work}/data.csv", _no_setup),
    ("a file as dataset when reading", "waterfall --data {work}/data.csv", _no_setup),
    ("a missing dataset", "waterfall --data {work}/nothing-here", _no_setup),
    ("a missing input", "diagnose {work}/traces.jsonl --no-report", _no_setup),
    ("a missing input, default dataset", "diagnose traces.jsonl --no-report", _no_setup),
    ("an empty file", "ingest {work}/empty.jsonl --data {work}/new", _no_setup),
    ("random bytes", "ingest {work}/random.bin --data {work}/new", _no_setup),
    ("a CSV file", "ingest {work}/data.csv --data {work}/new/sub", _no_setup),
    ("JSON of no known format", "ingest {work}/other.json --data {work}/new", _no_setup),
    ("an unknown format forced", "ingest {sample} --format csv --data {work}/new", _no_setup),
    ("an unreadable tokenizer file", "ingest {sample} --tokenizer hf:{work}/random.bin --data {work}/new", _no_setup),
    ("a missing tokenizer file", "ingest {sample} --tokenizer hf:{work}/tokenizer.json --data {work}/new", _no_setup),
    ("random bytes as releases", "simulate --data {ds} --releases {work}/random.bin", _no_setup),
    ("a CSV as releases", "releases list --releases {work}/data.csv", _no_setup),
    ("a truncated part", "waterfall --data {work}/bad", damaged(_truncate_part)),
    ("a missing part", "divergence --data {work}/bad", damaged(lambda root: _first_part(root).unlink())),
    ("a malformed manifest", "waterfall --data {work}/bad", damaged(_edit_manifest(lambda m: m.update(parts=[1])))),
    (
        "a manifest part outside the dataset",
        "waterfall --data {work}/bad",
        damaged(_edit_manifest(lambda m: m["parts"].update(requests=["../../../etc/passwd"]))),
    ),
    ("a report over a folder", "report --data {ds} -o {work}/folder", _no_setup),
    ("a report into a FIFO", "report --data {ds} -o {work}/fifo", _no_setup),
    ("an export over a folder", "export --data {ds} --to mooncake -o {work}/folder", _no_setup),
    ("an unknown export shape", "export --data {ds} --to parquet -o {work}/out.jsonl", _no_setup),
    ("negative sessions", "synth --sessions -3 -o {work}/new.jsonl", _no_setup),
    ("sessions in words", "synth --sessions many -o {work}/new.jsonl", _no_setup),
    ("synth over a file it did not make", "synth --sessions 2 -o {work}/data.csv", _no_setup),
    ("check with nothing to check", "check", _no_setup),
    ("an unknown trace id", "explain trc_nope --data {ds}", _no_setup),
    ("a request list of an unknown session", "requests --data {ds} --session nobody", _no_setup),
    ("a request list of no requests", "requests --data {ds} --worst 0", _no_setup),
]


def listing(folder: Path) -> dict[str, int]:
    """Every file and folder under ``folder`` with its size, less the reader leases a read takes (``.readers``: any
    command that opened a dataset, failing or not, leaves its lease for the next writer to clear)."""
    return {
        str(path.relative_to(folder)): path.lstat().st_size if path.is_file() else -1
        for path in folder.rglob("*")
        if ".readers" not in path.relative_to(folder).parts
    }


@pytest.mark.parametrize(("name", "command", "setup"), CASES, ids=[case[0] for case in CASES])
def test_a_bad_input_is_one_error_line_a_non_zero_exit_and_leaves_nothing_behind(
    name: str,
    command: str,
    setup: Callable[[Path, Path], None],
    dataset: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    bad_inputs(work)
    setup(work, dataset)
    monkeypatch.chdir(work)
    before, dataset_before = listing(work), listing(dataset)
    args = command.format(ds=dataset, work=work, sample=SAMPLE).split()

    result = runner().invoke(app, args, env={"COLUMNS": "80"})

    assert result.exit_code not in (0, None), f"{name}: exit {result.exit_code}"
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert listing(work) == before, "a failed command left files or folders behind"
    assert listing(dataset) == dataset_before


@pytest.mark.parametrize(
    ("value", "seconds"), [("300", 300.0), ("5m", 300.0), ("1h", 3600.0), ("90s", 90.0), ("1.5h", 5400.0)]
)
def test_a_ttl_takes_the_durations_the_output_writes(value: str, seconds: float, dataset: Path) -> None:
    result = runner().invoke(app, ["waterfall", "--data", str(dataset), "--ttl", value, "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["options"]["ttl_seconds"] == seconds


def test_a_ttl_of_none_turns_expiry_off(dataset: Path) -> None:
    result = runner().invoke(app, ["waterfall", "--data", str(dataset), "--ttl", "none", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["options"]["ttl"] == "none"


@pytest.mark.parametrize(("value", "tokens"), [("64k", 64_000), ("1M", 1_000_000), ("1.5m", 1_500_000), ("4096", 4096)])
def test_a_capacity_takes_the_sizes_the_output_writes(value: str, tokens: int, dataset: Path) -> None:
    result = runner().invoke(app, ["waterfall", "--data", str(dataset), "--capacity-tokens", value, "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["options"]["capacity_tokens"] == tokens


def test_a_curve_takes_sizes_too(dataset: Path) -> None:
    result = runner().invoke(app, ["waterfall", "--data", str(dataset), "--curve", "64k,1M", "--json"])
    assert result.exit_code == 0, result.stderr
    assert [p["capacity_tokens"] for p in json.loads(result.stdout)["capacity_curve"]] == [64_000, 1_000_000, None]


def test_the_by_help_names_every_key_the_waterfall_accepts() -> None:
    from zumik_cli.analysis.waterfall import BREAKDOWN_KEYS

    assert set(BY_KEYS) == set(BREAKDOWN_KEYS)
    result = runner().invoke(app, ["waterfall", "--help"], env={"COLUMNS": "200"})
    assert all(key in result.stdout for key in BREAKDOWN_KEYS)


def test_help_shows_no_python_types() -> None:
    for command in ("ingest", "waterfall", "simulate", "synth", "diagnose", "requests"):
        result = runner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0
        for python_type in ("<list[", "<bool>", "<str>", "<int>", "<path>", "<float>"):
            assert python_type not in result.stdout, f"{command} --help shows {python_type}"


def test_a_report_through_a_symbolic_link_replaces_the_target_not_the_link(dataset: Path, tmp_path: Path) -> None:
    (tmp_path / "real.html").write_text("old")
    (tmp_path / "link.html").symlink_to("real.html")
    result = runner().invoke(app, ["report", "--data", str(dataset), "-o", str(tmp_path / "link.html")])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "link.html").is_symlink()
    assert (tmp_path / "real.html").read_text().startswith("<!DOCTYPE html>")


def _full_device_refuses_writes() -> bool:
    try:
        with open("/dev/full", "wb") as device:
            device.write(b"x")
    except OSError:
        return True
    return False


@pytest.mark.skipif(not _full_device_refuses_writes(), reason="needs a /dev/full that refuses writes (Linux)")
def test_a_full_device_is_one_error_line_and_stays_a_device(dataset: Path) -> None:
    result = runner().invoke(app, ["export", "--data", str(dataset), "--to", "mooncake", "-o", "/dev/full"])
    assert result.exit_code != 0
    assert result.stderr.startswith("Error: /dev/full: no space left")
    assert Path("/dev/full").is_char_device()


def test_a_report_to_a_device_is_written_through_it_and_the_device_stays(dataset: Path) -> None:
    result = runner().invoke(app, ["report", "--data", str(dataset), "-o", "/dev/null"])
    assert result.exit_code == 0, result.stderr
    assert Path("/dev/null").is_char_device()

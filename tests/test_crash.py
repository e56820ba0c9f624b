"""A `zumik ingest` killed part-way (SIGKILL, no chance to clean up) into a dataset that already has data.

The dataset's promise (dataset/store.py): readers see exactly the parts the manifest lists and a writer publishes with
one atomic manifest replace, so a kill at any moment leaves the previous dataset intact and readable; the next
ingest removes what the killed one left behind and completes; one more adds nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from zumik_cli.analysis.waterfall import WaterfallOptions, compute_waterfall
from zumik_cli.dataset.schema import TABLES
from zumik_cli.dataset.store import Dataset, read_manifest
from zumik_cli.ingest.pipeline import ingest

FIXTURES = Path(__file__).parent / "fixtures"
SESSIONS, TURNS = 300, 20  # 6,000 small requests: three batches, so parts are written long before the end
OPTIONS = WaterfallOptions(by=("tenant",), curves=False)


def agent_traffic(path: Path, sessions: range = range(SESSIONS), turns: int = TURNS) -> Path:
    """Coding-agent sessions in zumik JSONL: each call resends the growing conversation, three tenants."""
    with path.open("w") as handle:
        for session in sessions:
            messages: list[dict[str, Any]] = [{"role": "user", "content": f"Session {session}: make m{session} pass."}]
            for turn in range(turns):
                record = {
                    "zumik": 1,
                    "trace_id": f"crash-{session}-{turn}",
                    "provider": "openai",
                    "model": "gpt-4o",
                    "tenant": f"tenant-{session % 3}",
                    "session_id": f"session-{session}",
                    "timestamp": 1_760_000_000 + session * 3 + turn * 7,
                    "system": "You fix failing tests. Be brief.",
                    "messages": messages,
                    "usage": {"prompt_tokens": 40 + 30 * turn, "prompt_tokens_details": {"cached_tokens": 20 * turn}},
                }
                handle.write(json.dumps(record) + "\n")
                messages = [
                    *messages,
                    {"role": "assistant", "content": f"Step {turn}: ran the tests of m{session}."},
                    {"role": "user", "content": f"Result {turn}: {41 + turn} passed, {turn % 3} failed."},
                ]
    return path


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return agent_traffic(tmp_path_factory.mktemp("traffic") / "agents.jsonl")


@pytest.fixture(scope="module")
def uninterrupted(traffic: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What the dataset holds when nothing is killed: the old data, then the new traffic."""
    data = tmp_path_factory.mktemp("uninterrupted") / "data"
    ingest([FIXTURES / "zumik.jsonl", FIXTURES / "mooncake.jsonl"], data)
    ingest([traffic], data)
    return state(data)


def zumik_command(*args: str | Path) -> list[str]:
    script = Path(sys.executable).with_name("zumik")
    head = [str(script)] if script.exists() else [sys.executable, "-c", "from zumik_cli.cli.main import app; app()"]
    return [*head, *(str(arg) for arg in args)]


def state(data: Path) -> dict[str, Any]:
    """Everything a reader can see: row counts, the requests' ids and the waterfall."""
    dataset = Dataset(data)
    con = dataset.connect()
    counts = {table: con.execute(f"SELECT count(*) FROM {table}").fetchone() for table in TABLES}
    ids = con.execute("SELECT list(trace_id ORDER BY trace_id) FROM requests").fetchone()
    return {"counts": counts, "trace_ids": ids, "waterfall": compute_waterfall(dataset, OPTIONS).summary}


def seeded(tmp_path: Path) -> tuple[Path, str, dict[str, Any]]:
    data = tmp_path / "data"
    ingest([FIXTURES / "zumik.jsonl", FIXTURES / "mooncake.jsonl"], data)
    return data, (data / "manifest.json").read_text(), state(data)


def staging_folder(data: Path) -> bool:
    return any(data.glob(".staging-*"))


def first_part(data: Path) -> bool:
    return any(data.glob(".staging-*/*/part-*.parquet"))


def every_table_part(data: Path) -> bool:
    return {p.parent.name for p in data.glob(".staging-*/*/part-*.parquet")} >= {"requests", "request_blocks", "tokens"}


MOMENTS: dict[str, Callable[[Path], bool]] = {
    "its staging folder appears": staging_folder,
    "its first part is being written": first_part,
    "a part of every table is being written": every_table_part,
}


def kill_when(data: Path, inputs: list[Path], moment: Callable[[Path], bool]) -> float:
    """Start `zumik ingest` and SIGKILL it once ``moment`` holds; the seconds it ran."""
    started = time.monotonic()
    process = subprocess.Popen(
        zumik_command("ingest", *inputs, "--data", data), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        while not moment(data):
            assert process.poll() is None, f"ingest ended before it could be killed: {process.stderr.read()!r}"
            assert time.monotonic() - started < 120, "the moment to kill never came"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
        process.stderr.close()  # type: ignore[union-attr]
    assert process.returncode == -signal.SIGKILL
    return time.monotonic() - started


def listed_files(data: Path) -> set[str]:
    manifest = read_manifest(data)
    return {part for parts in manifest.parts.values() for part in parts} | set(manifest.quarantine)


def files_on_disk(data: Path) -> set[str]:
    return {
        str(path.relative_to(data))
        for folder in [*TABLES, "quarantine"]
        if (data / folder).is_dir()
        for path in (data / folder).iterdir()
    }


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_a_kill_in_the_middle_of_ingest_leaves_the_previous_dataset_intact_and_readable(
    moment: str, traffic: Path, tmp_path: Path
) -> None:
    data, manifest, before = seeded(tmp_path)

    kill_when(data, [traffic], MOMENTS[moment])

    assert staging_folder(data), "the kill came part-way: the staging folder is still there"
    assert (data / "manifest.json").read_text() == manifest
    assert listed_files(data) <= files_on_disk(data)
    assert state(data) == before


def test_a_rerun_after_a_kill_completes_as_if_nothing_happened_and_a_third_run_adds_nothing(
    traffic: Path, uninterrupted: dict[str, Any], tmp_path: Path
) -> None:
    data, _, _ = seeded(tmp_path)
    kill_when(data, [traffic], first_part)

    rerun = subprocess.run(zumik_command("ingest", traffic, "--data", data, "--json"), capture_output=True, text=True)

    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["requests"] == SESSIONS * TURNS
    assert not staging_folder(data)
    assert files_on_disk(data) == listed_files(data), "nothing the killed run wrote is left behind"
    assert state(data) == uninterrupted
    manifest = (data / "manifest.json").read_text()

    again = subprocess.run(zumik_command("ingest", traffic, "--data", data, "--json"), capture_output=True, text=True)

    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["requests"] == 0
    assert f"{traffic} was already ingested: skipped" in " ".join(again.stderr.split())
    assert json.loads((data / "manifest.json").read_text())["parts"] == json.loads(manifest)["parts"]
    assert state(data) == uninterrupted


def test_two_kills_in_a_row_then_a_rerun_still_give_the_uninterrupted_dataset(
    traffic: Path, uninterrupted: dict[str, Any], tmp_path: Path
) -> None:
    data, _, _ = seeded(tmp_path)
    kill_when(data, [traffic], every_table_part)
    kill_when(data, [traffic], first_part)

    ingest([traffic], data)

    assert state(data) == uninterrupted
    assert files_on_disk(data) == listed_files(data)


def test_a_manifest_a_killed_writer_was_still_writing_is_never_read_and_is_removed_by_the_next_ingest(
    tmp_path: Path,
) -> None:
    data, manifest, before = seeded(tmp_path)
    half_written = data / ".manifest.json.killed"
    half_written.write_text(manifest[: len(manifest) // 2])
    shutil.copytree(data / "requests", data / ".staging-killed" / "requests")

    assert state(data) == before

    ingest([FIXTURES / "bailian.jsonl"], data)

    assert not half_written.exists() and not staging_folder(data)
    assert state(data)["counts"]["requests"] == (before["counts"]["requests"][0] + 4,)


def test_the_writer_lock_is_free_again_once_a_killed_writer_is_gone(traffic: Path, tmp_path: Path) -> None:
    data, _, _ = seeded(tmp_path)
    kill_when(data, [traffic], staging_folder)

    began = time.monotonic()
    ingest([FIXTURES / "bailian.jsonl"], data)

    assert time.monotonic() - began < 30
    assert os.path.exists(data / ".lock")

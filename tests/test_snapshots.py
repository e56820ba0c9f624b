"""A reader finishes on the snapshot it opened, while `simulate` replaces the parts it lists.

`simulate` drops a policy's previous decisions part from the manifest each time it runs. A reader that read the
manifest before that must still read the part: the part is retired, not deleted, until no open reader's lease is
older than the manifest that dropped it. Readers here are separate processes (library calls and the real CLI)
beside a writer process that simulates in a loop; each library reader waits, holding its snapshot, until the
writer has published a newer manifest, then reads every decision of its snapshot. A writer that fails removes the
parts it moved into place itself, and a published part is on disk (fsynced) before the manifest names it.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import pytest
from release_workloads import FAST, cheap_target, fast_target, ingest_records, release, session, write_history

from zumik_cli.dataset.store import Dataset, Manifest, publish_tables, read_manifest, writer_lock
from zumik_cli.routing.decisions import policy_comparison
from zumik_cli.routing.releases import load_history
from zumik_cli.routing.simulate import simulate

WRITES = 6  # simulate runs in the writer process
READS = 4  # snapshots each library reader holds across a publish


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, Path]:
    docs = [release("alr_2026_06_01_001", -60, [fast_target(), cheap_target()], policy="primary")]
    records = [
        record
        for n in range(4)
        for record in session(f"s{n}", ("billing", "search", "travel", "support")[n], n * 100, [FAST] * 4)
    ]
    data = ingest_records(tmp_path / "work", records)
    return data, write_history(tmp_path / "releases.yaml", docs)


def manifest_digest(data: Path) -> str:
    return hashlib.sha256((data / "manifest.json").read_bytes()).hexdigest()


def simulate_loop(data: str, releases: str, runs: int) -> None:
    history = load_history(Path(releases))
    for seed in range(runs):
        simulate(Path(data), history, seed=seed + 1)


def read_across_publishes(data: str, reads: int, results: multiprocessing.Queue[object]) -> None:
    """Open a snapshot, wait until the writer has published a newer manifest, then read every decision it lists."""
    root = Path(data)
    for _ in range(reads):
        try:
            dataset = Dataset(root)
            opened = manifest_digest(root)
            deadline = time.time() + 60
            while manifest_digest(root) == opened and time.time() < deadline:
                time.sleep(0.01)
            stale = manifest_digest(root) != opened
            con = dataset.connect()
            decisions = con.execute("SELECT count(*), count(DISTINCT policy) FROM decisions").fetchone()
            policies = [row["policy"] for row in policy_comparison(dataset)]
            results.put(("ok", stale, decisions, len(policies)))
            dataset.close()
        except Exception as exc:  # the failure is the result this test counts
            results.put(("failed", True, repr(exc), 0))


def test_readers_holding_an_old_snapshot_read_all_its_decisions_while_simulate_replaces_them(
    small: tuple[Path, Path],
) -> None:
    data, releases = small
    simulate(data, load_history(releases))
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    readers = [context.Process(target=read_across_publishes, args=(str(data), READS, results)) for _ in range(2)]
    for reader in readers:
        reader.start()
    time.sleep(3)  # the readers are holding their first snapshot
    writer = context.Process(target=simulate_loop, args=(str(data), str(releases), WRITES + READS))
    writer.start()
    outcomes = [results.get(timeout=300) for _ in range(2 * READS)]
    writer.join(timeout=300)
    for reader in readers:
        reader.join(timeout=60)

    assert writer.exitcode == 0
    assert [o for o in outcomes if o[0] != "ok"] == []
    assert sum(1 for o in outcomes if o[1]) >= READS  # a newer manifest was published under most of them
    requests = Dataset(data).connect().execute("SELECT count(*) FROM requests").fetchone()[0]
    policies = len(read_manifest(data).extra["simulations"])
    assert {o[2] for o in outcomes} == {(requests * policies, policies)}


def test_report_explain_and_releases_list_processes_beside_a_simulate_loop_never_fail(
    small: tuple[Path, Path], tmp_path: Path
) -> None:
    data, releases = small
    simulate(data, load_history(releases))
    trace = Dataset(data).connect().execute("SELECT trace_id FROM requests LIMIT 1").fetchone()[0]
    zumik = [str(Path(sys.executable).parent / "zumik")]
    commands = [
        ["report", "--data", str(data), "--output", str(tmp_path / "report.html")],
        ["explain", trace, "--data", str(data), "--releases", str(releases), "--policy", "cheapest"],
        ["releases", "list", "--data", str(data), "--releases", str(releases)],
    ]
    writer = subprocess.Popen(
        [sys.executable, "-c", f"import test_snapshots as t; t.simulate_loop({str(data)!r}, {str(releases)!r}, 6)"],
        cwd=Path(__file__).parent,
    )
    failures, runs = [], 0
    while writer.poll() is None or runs < len(commands):
        args = commands[runs % len(commands)]
        result = subprocess.run([*zumik, *args], capture_output=True, text=True, timeout=300)
        runs += 1
        if result.returncode != 0:
            failures.append((args[0], result.stderr[-500:]))

    assert writer.returncode == 0
    assert failures == []
    assert runs >= len(commands)


def test_a_retired_part_stays_while_an_older_reader_is_open_and_goes_once_it_closes(small: tuple[Path, Path]) -> None:
    data, releases = small
    history = load_history(releases)
    simulate(data, history)
    reader = Dataset(data)
    first = set(reader.manifest.parts["decisions"])

    simulate(data, history, seed=2)
    simulate(data, history, seed=3)
    manifest = read_manifest(data)

    assert first.isdisjoint(manifest.parts["decisions"])
    assert all((data / part).exists() for part in first)
    assert {entry["part"] for entry in manifest.retired} >= first
    reader.close()
    simulate(data, history, seed=4)
    on_disk = {f"decisions/{p.name}" for p in (data / "decisions").iterdir()}
    assert on_disk == set(read_manifest(data).parts["decisions"]) | {e["part"] for e in read_manifest(data).retired}
    assert first.isdisjoint(on_disk)


def test_a_writer_that_fails_after_moving_its_parts_removes_them_and_the_old_manifest_stays(
    small: tuple[Path, Path],
) -> None:
    import pyarrow as pa

    data, _ = small
    before = (data / "manifest.json").read_bytes()
    with writer_lock(data):
        manifest = read_manifest(data)
        manifest.parts.setdefault("replays", []).append("replays/part-failing.parquet")
        manifest.extra["unserialisable"] = object()  # the manifest write fails after the part is in place
        with pytest.raises(TypeError):
            publish_tables(data, manifest, {"replays/part-failing.parquet": pa.table({"x": [1]})})

    assert not (data / "replays" / "part-failing.parquet").exists()
    assert not list(data.glob(".staging-*"))
    assert (data / "manifest.json").read_bytes() == before


def test_a_published_manifest_counts_generations_and_names_only_whole_parts(small: tuple[Path, Path]) -> None:
    data, releases = small
    generation = read_manifest(data).generation

    simulate(data, load_history(releases))
    manifest = read_manifest(data)

    assert manifest.generation == generation + 1
    for parts in manifest.parts.values():
        for part in parts:
            assert (data / part).read_bytes()[-4:] == b"PAR1"  # a whole Parquet file ends with its magic
    assert json.loads((data / "manifest.json").read_text())["generation"] == manifest.generation
    assert Manifest().generation == 0


def test_a_connection_keeps_its_snapshot_after_the_dataset_object_is_gone(small: tuple[Path, Path]) -> None:
    import gc

    data, releases = small
    history = load_history(releases)
    simulate(data, history)
    con = Dataset(data).connect()
    gc.collect()

    simulate(data, history, seed=2)
    simulate(data, history, seed=3)

    policies = len(read_manifest(data).extra["simulations"])
    assert con.execute("SELECT count(DISTINCT policy) FROM decisions").fetchone() == (policies,)

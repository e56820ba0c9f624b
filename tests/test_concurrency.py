"""100 concurrent waterfall readers on one dataset while `zumik ingest` appends to it.

Readers open the dataset by its manifest, which a writer replaces atomically once its parts are in place, so every
reader must get exactly the waterfall of the dataset before the append or exactly the one after it, never a mix.
Readers are worker processes calling ``compute_waterfall(Dataset(path))`` (what `zumik waterfall` does) and a few
real `zumik waterfall --json` processes; the writer is a real `zumik ingest` process. The writer is paused and
resumed (SIGSTOP, SIGCONT) many times while the readers run, so that they meet it at every stage of its work:
reading, writing staged parts, moving them into place, replacing the manifest.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import signal
import subprocess
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import pytest
from test_crash import agent_traffic, zumik_command

from zumik_cli.analysis.waterfall import compute_waterfall
from zumik_cli.dataset.store import Dataset
from zumik_cli.ingest.pipeline import ingest

READERS = 100
BEFORE, AFTER = 10, 10  # readers that finish before the ingest starts, and that start after it ended
CLI_READERS = 4
WORKERS = 3
RUN_S, PAUSE_S = 0.02, 0.02  # the writer's duty cycle while readers run: it takes about twice as long


def digest(summary: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(summary, sort_keys=True).encode()).hexdigest()


def read_waterfall(data: str) -> tuple[float, float, str]:
    """One reader: (start, end, digest of the waterfall it computed)."""
    start = time.time()
    summary = compute_waterfall(Dataset(Path(data))).summary
    return start, time.time(), digest(summary)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("concurrency")
    return (
        agent_traffic(folder / "first.jsonl", range(0, 40), 10),
        agent_traffic(folder / "second.jsonl", range(40, 240), 10),
    )


@pytest.fixture(scope="module")
def expected(inputs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The waterfall before the append and after it, each computed alone on a dataset built without readers."""
    first, second = inputs
    data = tmp_path_factory.mktemp("reference") / "data"
    ingest([first], data)
    before = digest(compute_waterfall(Dataset(data)).summary)
    ingest([second], data)
    return before, digest(compute_waterfall(Dataset(data)).summary)


def readers_around_an_append(
    data: Path, second: Path
) -> tuple[list[tuple[float, float, str]], float, float, list[str]]:
    """Readers before, during and after `zumik ingest SECOND`: their results, when the ingest ran, CLI digests."""
    context = multiprocessing.get_context("spawn")  # the test process holds DuckDB threads: never fork it
    with ProcessPoolExecutor(WORKERS, mp_context=context) as pool:
        results = [f.result() for f in [pool.submit(read_waterfall, str(data)) for _ in range(BEFORE)]]
        began = time.time()
        writer = subprocess.Popen(
            zumik_command("ingest", second, "--data", data), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        during: list[Future[tuple[float, float, str]]] = []
        cli = []
        cycles = 0
        while writer.poll() is None:
            if len(during) < READERS - BEFORE - AFTER and len(during) - sum(f.done() for f in during) < 2 * WORKERS:
                during.append(pool.submit(read_waterfall, str(data)))
            cycles += 1
            if len(cli) < CLI_READERS and cycles % 25 == 1:  # one a second: they meet the writer at several stages
                command = zumik_command("waterfall", "--data", data, "--json")
                cli.append(subprocess.Popen(command, stdout=subprocess.PIPE))
            time.sleep(RUN_S)
            writer.send_signal(signal.SIGSTOP)
            time.sleep(PAUSE_S)
            writer.send_signal(signal.SIGCONT)
        assert writer.wait() == 0, writer.stderr.read()  # type: ignore[union-attr]
        writer.stderr.close()  # type: ignore[union-attr]
        ended = time.time()
        during += [pool.submit(read_waterfall, str(data)) for _ in range(READERS - BEFORE - AFTER - len(during))]
        results += [f.result() for f in during]
        results += [f.result() for f in [pool.submit(read_waterfall, str(data)) for _ in range(AFTER)]]
    printed = []
    for process in cli:
        out, _ = process.communicate()
        assert process.returncode == 0
        printed.append(digest(json.loads(out)))
    return results, began, ended, printed


def test_every_reader_gets_the_waterfall_from_before_or_after_an_append_never_a_mix(
    inputs: tuple[Path, Path], expected: tuple[str, str], tmp_path: Path
) -> None:
    first, second = inputs
    data = tmp_path / "data"
    ingest([first], data)

    results, began, ended, printed = readers_around_an_append(data, second)

    before, after = expected
    seen = [result[2] for result in results]
    assert len(seen) == READERS
    assert set(seen) <= {before, after}, "a reader saw a dataset that is neither the old one nor the new one"
    assert seen[:BEFORE] == [before] * BEFORE and seen[-AFTER:] == [after] * AFTER
    overlapping = [r for r in results if r[0] < ended and r[1] > began]
    assert len(overlapping) >= 10, f"only {len(overlapping)} readers ran while the ingest did: the test lost its point"
    assert len(printed) == CLI_READERS and set(printed) <= {before, after}


SLOW_QUERY = """
import sys
import duckdb
from zumik_cli.dataset.store import Dataset

con = Dataset(sys.argv[1]).connect() if len(sys.argv) > 1 else duckdb.connect()
con.execute("SET progress_bar_time = 0")  # what DuckDB does after two seconds, at once
con.execute("SELECT count(*) FROM range(200000000) t(x) WHERE x % 7 = 3").fetchall()
print("done")
"""


def test_a_reader_draws_no_progress_bar_on_stdout_however_long_its_queries_take(
    inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    ingest([inputs[0]], tmp_path / "data")
    plain = subprocess.run([sys.executable, "-c", SLOW_QUERY], capture_output=True, text=True, check=True)

    reader = subprocess.run(
        [sys.executable, "-c", SLOW_QUERY, str(tmp_path / "data")], capture_output=True, text=True, check=True
    )

    assert plain.stdout != "done\n", "DuckDB's own default draws its bar on stdout, even into a pipe"
    assert reader.stdout == "done\n"

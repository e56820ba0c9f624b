"""The Spark engine's LRU task rebuilds the embedded pass's workload from the blocks it is streamed.

The task is sent every block of the timeline sorted by request slot and position, with its unit already numbered
(in SQL, ``spark_levels.STREAM_SQL``, held equal to the levels pass's numbers on the cluster in
``tests/test_spark_waterfall.py``). These tests need no JVM: they hand the task's function the batches Spark would.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from zumik_cli.analysis import spark_levels
from zumik_cli.analysis.levels import Workload, compute_levels
from zumik_cli.analysis.spark_levels import stream_workload
from zumik_cli.analysis.waterfall import REQ_SQL
from zumik_cli.core.errors import ZumikError
from zumik_cli.dataset.store import Dataset
from zumik_cli.ingest.pipeline import ingest
from zumik_cli.rules.pack import resolve_packs
from zumik_cli.rules.targets import register_target_rules

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from mooncake import write_trace  # noqa: E402

SAMPLE_TRACES = Path(__file__).resolve().parents[1] / "sample_traces"


def _embedded(dataset: Dataset) -> Workload:
    con = dataset.connect()
    packs, forced = resolve_packs(None)
    register_target_rules(con, "packs_in", packs, forced)
    con.execute(REQ_SQL)
    coincide = bool(con.execute("SELECT count(DISTINCT fam_id) = count(DISTINCT kvc_id) FROM req").fetchall()[0][0])
    return compute_levels(con, coincide, dataset.parts("request_blocks"))


def _streamed(workload: Workload, rows: int) -> list[pa.RecordBatch]:
    """The workload's blocks as the sorted stream's batches of ``rows`` rows (a request may span two)."""
    counts = np.diff(workload.offsets)
    slot = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    pos = np.arange(len(slot)) - np.repeat(workload.offsets[:-1], counts)
    units, sizes = workload.units, workload.sizes
    return [
        pa.RecordBatch.from_pydict(
            {
                "slot": slot[at : at + rows],
                "pos": pos[at : at + rows].astype(np.int32),
                "unit": units[at : at + rows],
                "tokens": sizes[at : at + rows].astype(np.int32),
            }
        )
        for at in range(0, len(slot), rows)
    ]


@pytest.mark.parametrize("spill", [False, True])
@pytest.mark.parametrize("traces", ["mooncake", "sample"])
def test_the_lru_task_rebuilds_the_embedded_workload_from_its_stream(tmp_path, traces, spill, monkeypatch):
    if traces == "mooncake":
        write_trace(tmp_path / "mooncake.jsonl", 2_000, seed=3)
        source = tmp_path / "mooncake.jsonl"
    else:
        source = SAMPLE_TRACES
    ingest([source], tmp_path / "data")
    embedded = _embedded(Dataset(tmp_path / "data"))
    if spill:
        monkeypatch.setattr(spark_levels, "SPILL_BLOCKS", 100)

    in_task, (scale, prefix) = stream_workload(
        _streamed(embedded, 997), len(embedded.rids), len(embedded.units), scaled=False
    )

    assert len(embedded.units) > 1_000
    assert in_task.timeline.is_spilled == spill
    for name in ("offsets", "units", "sizes"):
        assert np.array_equal(getattr(in_task, name), getattr(embedded, name)), name
    assert np.array_equal(in_task.rids, np.arange(len(embedded.rids)))  # by slot: the driver maps them to rids
    assert in_task.n_units == embedded.n_units
    assert in_task.block_tokens == embedded.block_tokens
    assert np.all(scale == 1.0) and not prefix.any()


def test_a_stream_short_of_the_timeline_is_an_error_not_a_smaller_curve(tmp_path):
    write_trace(tmp_path / "mooncake.jsonl", 300, seed=1)
    ingest([tmp_path / "mooncake.jsonl"], tmp_path / "data")
    embedded = _embedded(Dataset(tmp_path / "data"))
    batches = _streamed(embedded, 500)

    with pytest.raises(ZumikError, match="run it again"):
        stream_workload(batches[:-1], len(embedded.rids), len(embedded.units))

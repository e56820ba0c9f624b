"""The Spark engine's LRU task rebuilds the embedded pass's workload from blocks that arrive in any order.

The exact curve and the bounded cache's hits do not depend on how units are numbered, but the SHARDS sample does
(it hashes the numbers), so the task must number each (KV key, chain) as the levels pass does. These tests need no
JVM: they hand the task's function the same rows a Spark shuffle would, shuffled.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from zumik_cli.analysis.levels import compute_levels
from zumik_cli.analysis.spark_levels import timeline_workload
from zumik_cli.analysis.waterfall import REQ_SQL, REQUEST_SCALE_SQL
from zumik_cli.dataset.store import Dataset
from zumik_cli.ingest.pipeline import ingest
from zumik_cli.rules.pack import resolve_packs
from zumik_cli.rules.targets import register_target_rules

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from mooncake import write_trace  # noqa: E402

SAMPLE_TRACES = Path(__file__).resolve().parents[1] / "sample_traces"


def _both_workloads(dataset: Dataset) -> tuple[object, object]:
    con = dataset.connect()
    packs, forced = resolve_packs(None)
    register_target_rules(con, "packs_in", packs, forced)
    con.execute(REQ_SQL)
    coincide = bool(con.execute("SELECT count(DISTINCT fam_id) = count(DISTINCT kvc_id) FROM req").fetchall()[0][0])
    embedded = compute_levels(con, coincide, dataset.parts("request_blocks"))
    key = "" if coincide else ", r.kvc_id::INTEGER AS unit_key"  # as the Spark engine sends them
    blocks = con.sql(f"""
        SELECT r.ord::INTEGER AS ord, b.pos::INTEGER AS pos, b.chain, b.tokens::INTEGER AS tokens{key}
        FROM request_blocks b JOIN req r USING (rid) ORDER BY hash(b.rid, b.pos)
    """).to_arrow_table()
    requests = con.sql(f"SELECT r.ord, r.rid, {REQUEST_SCALE_SQL} AS scale, r.prefix FROM req r").to_arrow_table()
    in_task, _ = timeline_workload(blocks, requests.take(np.arange(requests.num_rows)[::-1]))
    return embedded, in_task


@pytest.mark.parametrize("traces", ["mooncake", "sample"])
def test_the_lru_task_rebuilds_the_embedded_workload_unit_numbers_included(tmp_path, traces):
    if traces == "mooncake":
        write_trace(tmp_path / "mooncake.jsonl", 2_000, seed=3)
        source = tmp_path / "mooncake.jsonl"
    else:
        source = SAMPLE_TRACES
    ingest([source], tmp_path / "data")

    embedded, in_task = _both_workloads(Dataset(tmp_path / "data"))

    assert len(embedded.units) > 1_000
    for name in ("offsets", "units", "sizes", "rids"):
        assert np.array_equal(getattr(in_task, name), getattr(embedded, name)), name
    assert in_task.n_units == embedded.n_units

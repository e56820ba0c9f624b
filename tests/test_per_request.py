"""The waterfall's per-request rows live in a file of their own, not in memory, for as long as anything reads them."""

from __future__ import annotations

import gc
import sys
import types
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from zumik_cli.analysis.waterfall import WaterfallOptions, compute_waterfall
from zumik_cli.dataset.store import Dataset
from zumik_cli.ingest.pipeline import ingest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.mooncake import write_trace  # noqa: E402

REQUESTS = 2_000


@pytest.fixture(scope="module")
def mooncake(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    folder = tmp_path_factory.mktemp("mooncake")
    write_trace(folder / "trace.jsonl", REQUESTS)
    ingest([folder / "trace.jsonl"], folder / "data")
    return Dataset(folder / "data")


def reachable(root: object) -> list[object]:
    """Every object reachable from ``root`` through containers and instances (not through code or modules)."""
    seen, stack, found = set(), [root], []
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)):
            continue
        seen.add(id(obj))
        found.append(obj)
        stack.extend(gc.get_referents(obj))
    return found


def rows_of(obj: object) -> int:
    if isinstance(obj, (pa.Table, pa.RecordBatch, pa.Array, pa.ChunkedArray, np.ndarray)):
        return len(obj)
    return 0


OPTIONS = WaterfallOptions(curves=False, capacities=())


def test_the_waterfall_holds_no_table_or_column_of_one_row_a_request(mooncake: Dataset) -> None:
    waterfall = compute_waterfall(mooncake, OPTIONS)

    assert waterfall.summary["requests"] == REQUESTS
    assert waterfall.per_request.num_rows == REQUESTS
    held = [type(obj).__name__ for obj in reachable(waterfall) if rows_of(obj) >= REQUESTS]
    assert held == []


def test_the_rows_are_the_ones_the_summary_adds_up(mooncake: Dataset) -> None:
    waterfall = compute_waterfall(mooncake, OPTIONS)

    table = waterfall.per_request.to_table(columns=["ord", "total", "candidate"])
    assert table.column("ord").to_pylist() == list(range(1, REQUESTS + 1))
    assert sum(table.column("total").to_pylist()) == waterfall.summary["total_input_tokens"]["tokens"]
    assert sum(table.column("candidate").to_pylist()) == waterfall.summary["candidate"]["tokens"]


def test_one_request_is_read_by_its_trace_id(mooncake: Dataset) -> None:
    rows = compute_waterfall(mooncake, OPTIONS).per_request
    trace_id = rows.to_table(columns=["trace_id"]).column("trace_id")[7].as_py()

    (row,) = rows.to_table(where={"trace_id": trace_id}).to_pylist()
    assert row["trace_id"] == trace_id
    assert row["ord"] == 8


def test_the_rows_outlive_the_waterfall_and_go_with_the_last_reader(mooncake: Dataset) -> None:
    rows = compute_waterfall(mooncake, OPTIONS).per_request
    gc.collect()
    path: Path = rows.path
    assert rows.to_table(columns=["rid"]).num_rows == REQUESTS

    con = duckdb.connect()
    rows.register(con, "stages", ("rid", "total"))
    del rows
    gc.collect()
    counted: Any = con.execute("SELECT count(*), count(DISTINCT rid) FROM stages").fetchone()
    assert counted == (REQUESTS, REQUESTS)
    assert path.exists()

    con.close()
    del con
    gc.collect()
    assert not path.parent.exists()

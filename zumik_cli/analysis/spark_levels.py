"""The waterfall's per-request reuse levels on Spark: the SQL definition ``levels`` keeps as its invariant, run as
window functions over each key's timeline; and the reference LRU's figures, run in the executor task that holds the
cache's timeline.

``levels.compute_levels`` runs this definition as one compiled pass on one machine; here every block is joined to its
request's order and keys, and three windows do the rest: the first use of each (family, chain), (target, chain)
and (KV key, chain) is ``min(ord)`` over its partition, and over each (KV key, chain) timeline ordered by request
the time of the use just before (``lag``) and the longest horizon of the earlier uses (a running ``max`` that ends
one row before). The shuffle is by (key, chain), so no partition holds more than one chain's timeline of every key
it sees. Each request's levels are then a ``max`` over its blocks, grouped by rid.

The capacity curve, the bounded cache's per-request hits and the SHARDS curve read one cache's whole timeline in time
order. The reference LRU is one cache over every (KV key, chain) unit, so its timeline is one task: the blocks are
grouped into it with every request's rid and scale (a cogroup), placed in time order there, and handed to the same
functions the embedded engine calls (``waterfall.LruJob``). Only their small results come back: the curve's points
and one (rid, hits) row a request. The driver never holds a block; its workload names the requests with blocks, in
time order, and nothing else.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from zumik_cli.analysis.levels import LEVEL_COLUMNS, PARTS, REQ_COLUMNS_SQL, Workload
from zumik_cli.analysis.timeline import Timeline
from zumik_cli.dataset import spark

if TYPE_CHECKING:
    from zumik_cli.analysis.waterfall import LruFigures, LruJob

BLOCK_COLUMNS = ("rid", "pos", "chain", "tokens", "end_token")

# ``unit_key`` is the KV key's number, or 0 when every family has one target and one key: the embedded pass then
# keys its units by chain alone, and so does this. NULL times and TTLs mean what they mean there: no time, no expiry.
TIMELINE_SQL = """
WITH joined AS (
    SELECT r.rid, r.ord, r.ts, b.pos, b.chain, b.tokens, b.end_token, r.fam_id, r.tgt_id,
           CASE WHEN {coincide} THEN 0 ELSE r.kvc_id END AS unit_key,
           CASE WHEN b.end_token <= r.long_until THEN r.ttl_long ELSE r.ttl END AS ttl
    FROM zumik_blocks b JOIN zumik_req r ON b.rid = r.rid
)
SELECT *,
       min(ord) OVER (PARTITION BY {fam_key}, chain) AS first_fam,
       min(ord) OVER (PARTITION BY {tgt_key}, chain) AS first_tgt,
       min(ord) OVER (PARTITION BY unit_key, chain) AS first_kvc,
       lag(ts) OVER (PARTITION BY unit_key, chain ORDER BY ord, pos) AS prev_ts,
       max(CASE WHEN ts IS NOT NULL THEN ts + coalesce(ttl, double('inf')) END)
           OVER (PARTITION BY unit_key, chain ORDER BY ord, pos ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
           AS alive_until
FROM joined
"""

LEVELS_SQL = """
SELECT rid,
       max(CASE WHEN first_fam < ord THEN pos + 1 ELSE 0 END) AS n_fam,
       max(CASE WHEN first_fam < ord THEN end_token ELSE 0 END) AS t_fam,
       max(CASE WHEN first_tgt < ord THEN pos + 1 ELSE 0 END) AS n_tgt,
       max(CASE WHEN first_tgt < ord THEN end_token ELSE 0 END) AS t_tgt,
       max(CASE WHEN first_kvc < ord THEN pos + 1 ELSE 0 END) AS n_kvc,
       max(CASE WHEN first_kvc < ord THEN end_token ELSE 0 END) AS t_kvc,
       max(CASE WHEN first_kvc < ord AND {warm} THEN pos + 1 ELSE 0 END) AS n_warm,
       max(CASE WHEN first_kvc < ord AND {warm} THEN end_token ELSE 0 END) AS t_warm,
       max(CASE WHEN first_kvc < ord AND {within_300} THEN end_token ELSE 0 END) AS t_ttl_300,
       max(CASE WHEN first_kvc < ord AND {within_3600} THEN end_token ELSE 0 END) AS t_ttl_3600
FROM zumik_timeline GROUP BY rid
"""
WARM = "(ts IS NULL OR alive_until IS NULL OR ts <= alive_until)"
WITHIN = "(ts IS NULL OR prev_ts IS NULL OR ts - prev_ts <= {seconds})"


def read_blocks(session: Any, parts: list[str]) -> Any:
    """The dataset's request_blocks as a Spark DataFrame, read by the executors from the parts the manifest lists."""
    return session.read.parquet(*parts).select(*BLOCK_COLUMNS)


# what the LRU task sends back: one row a request with its bounded-cache hits, and one row with the rest (JSON)
LRU_RESULT_SCHEMA = "rid long, t_cap long, figures string"
# each block as the LRU task reads it, in the narrowest types that hold it (the task holds its cache's every block);
# unit_key only where keys differ
TIMELINE_COLUMNS = {"ord": "int", "pos": "int", "chain": "long", "tokens": "int"}


def compute_levels_spark(
    con: duckdb.DuckDBPyConnection,
    coincide: bool,
    parts: list[str],
    lru: LruJob | None = None,
    lru_requests: pa.Table | None = None,
) -> tuple[Workload, LruFigures | None]:
    """``levels.compute_levels`` on Spark: the temp table ``levels`` in ``con``, the driver's workload (the requests
    with blocks, in time order, without their blocks), and the reference LRU's figures when ``lru`` asks for any,
    computed on an executor from the timeline and ``lru_requests`` (each request's ord, rid, scale and prefix)."""
    with spark.jobs("the waterfall's levels"):
        return _levels_on(spark.session(), con, coincide, parts, lru, lru_requests)


def _levels_on(
    session: Any,
    con: duckdb.DuckDBPyConnection,
    coincide: bool,
    parts: list[str],
    lru: LruJob | None,
    lru_requests: pa.Table | None,
) -> tuple[Workload, LruFigures | None]:
    req = con.sql(REQ_COLUMNS_SQL).to_arrow_table()
    session.createDataFrame(req).createOrReplaceTempView("zumik_req")
    read_blocks(session, parts).createOrReplaceTempView("zumik_blocks")
    fam_key, tgt_key = ("unit_key", "unit_key") if coincide else ("fam_id", "tgt_id")
    timeline = session.sql(
        TIMELINE_SQL.format(coincide="true" if coincide else "false", fam_key=fam_key, tgt_key=tgt_key)
    )
    timeline.persist()  # read twice: by the levels and, when a bounded figure needs it, by the LRU task
    try:
        timeline.createOrReplaceTempView("zumik_timeline")
        levels = session.sql(
            LEVELS_SQL.format(warm=WARM, within_300=WITHIN.format(seconds=300), within_3600=WITHIN.format(seconds=3600))
        ).toArrow()
        figures = None
        if lru is not None and lru_requests is not None:
            figures = _lru_figures(session, timeline, coincide, lru, lru_requests)
    finally:
        timeline.unpersist()
    _register_levels(con, levels)
    return _requests_only(req), figures


def _lru_figures(session: Any, timeline: Any, coincide: bool, lru: LruJob, requests: pa.Table) -> LruFigures:
    """The reference LRU's figures from one task that holds the whole timeline (one cache), with only its small
    results collected."""
    from pyspark.sql import functions

    from zumik_cli.analysis.waterfall import LruFigures

    cache = functions.lit(0).alias("cache")  # one cache instance: every unit in one LRU
    columns = [functions.col(name).cast(kind) for name, kind in TIMELINE_COLUMNS.items()]
    if not coincide:
        columns.append(functions.col("unit_key").cast("int"))
    blocks = timeline.select(cache, *columns).groupBy("cache")
    per_request = session.createDataFrame(requests).select(cache, "*").groupBy("cache")
    found = blocks.cogroup(per_request).applyInArrow(functools.partial(_lru_task, lru), LRU_RESULT_SCHEMA).toArrow()
    summary = found.filter(pc.is_valid(found.column("figures")))
    hits = found.filter(pc.is_valid(found.column("rid"))).select(["rid", "t_cap"])
    return LruFigures.from_json(summary.column("figures")[0].as_py(), hits if lru.capacity_tokens is not None else None)


def _lru_task(lru: LruJob, blocks: pa.Table, requests: pa.Table) -> pa.Table:
    """On an executor: the cache's timeline placed in time order, the job run on it, its results as rows."""
    workload, scales = timeline_workload(blocks, requests)
    figures = lru.run(workload, scales)
    hits = figures.hits
    if hits is None:
        hits = pa.table({"rid": pa.array([], pa.int64()), "t_cap": pa.array([], pa.int64())})
    last = {"rid": pa.nulls(1, pa.int64()), "t_cap": pa.nulls(1, pa.int64())}
    return pa.table(
        {
            **{name: pa.concat_arrays([hits.column(name).combine_chunks(), last[name]]) for name in ("rid", "t_cap")},
            "figures": pa.concat_arrays([pa.nulls(hits.num_rows, pa.string()), pa.array([figures.to_json()])]),
        }
    )


def timeline_workload(
    blocks: pa.Table, requests: pa.Table
) -> tuple[Workload, tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]]:
    """One cache's timeline as ``levels.compute_levels`` hands it on: the blocks (any order; ``ord``, ``pos``,
    ``chain``, ``tokens``, and ``unit_key`` where there is more than one key) placed at their request's offset plus
    their position (no sort), the requests with blocks in time order, and each one's scale and unlogged prefix (from
    ``requests``: ``ord``, ``rid``, ``scale``, ``prefix``, one row a request)."""
    by_ord = np.argsort(requests.column("ord").to_numpy(), kind="stable")
    rids = requests.column("rid").to_numpy()[by_ord].astype(np.int64)
    factor = requests.column("scale").to_numpy()[by_ord].astype(np.float64)
    prefix = requests.column("prefix").to_numpy()[by_ord].astype(np.int64)
    ords = blocks.column("ord").to_numpy() - 1
    counts = np.bincount(ords, minlength=len(rids)) if len(ords) else np.zeros(len(rids), dtype=np.int64)
    place = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)[ords]
    del ords
    place += blocks.column("pos").to_numpy()

    def placed(name: str, dtype: type) -> npt.NDArray[Any]:
        values: npt.NDArray[Any] = np.empty(len(place), dtype=dtype)
        values[place] = blocks.column(name).to_numpy()
        return values

    keys = placed("unit_key", np.int64) if "unit_key" in blocks.column_names else None
    units, n_units = first_use_units(placed("chain", np.int64), keys)
    del keys
    has_blocks = counts > 0
    workload = Workload(
        offsets=np.concatenate([[0], np.cumsum(counts[has_blocks])]).astype(np.int64),
        timeline=Timeline(units, placed("tokens", np.int32)),
        rids=rids[has_blocks],
        n_units=n_units,
    )
    return workload, (factor[has_blocks], prefix[has_blocks])


def first_use_units(
    chain: npt.NDArray[np.int64], unit_key: npt.NDArray[np.int64] | None = None
) -> tuple[npt.NDArray[np.int32], int]:
    """Each distinct (KV key, chain) of a time-ordered timeline (one key: ``unit_key`` None) numbered as the levels
    pass numbers it: by first use within its part (``chain mod PARTS``), as ``number * PARTS + part``. The exact
    figures do not depend on the numbers; the SHARDS sample does (it hashes them), so both engines must give the
    same."""
    if not len(chain):
        return np.zeros(0, dtype=np.int32), 0
    keys = None if unit_key is None or unit_key.min() == unit_key.max() else unit_key
    # stable sorts: each run of one pair starts at its first use
    order = np.argsort(chain, kind="stable") if keys is None else np.lexsort((chain, keys))
    new = np.ones(len(chain), dtype=bool)
    link = chain[order]
    np.not_equal(link[1:], link[:-1], out=new[1:])
    if keys is not None:
        key = keys[order]
        new[1:] |= key[1:] != key[:-1]
        del key
    del link
    group = np.cumsum(new) - 1
    first = order[new]  # each distinct pair's first use
    part = chain[first] & (PARTS - 1)
    by_part = np.lexsort((first, part))
    in_part = np.arange(len(by_part)) - np.searchsorted(part[by_part], part[by_part], side="left")
    number = np.empty(len(by_part), dtype=np.int64)
    number[by_part] = in_part * PARTS + part[by_part]
    units = np.empty(len(chain), dtype=np.int32)
    units[order] = number[group]
    return units, PARTS * int(np.bincount(part, minlength=PARTS).max())


def _requests_only(req: pa.Table) -> Workload:
    """The driver's workload on Spark: every request with blocks, in time order (what vLLM's block pool reads, with
    the token prompts it loads itself), and none of the blocks, which stay on the executors."""
    rids = np.asarray(req.column("rid").to_numpy(), dtype=np.int64)[req.column("n_blocks").to_numpy() > 0]
    return Workload(
        offsets=np.zeros(len(rids) + 1, dtype=np.int64),
        timeline=Timeline(np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int32)),
        rids=rids,
        n_units=0,
    )


def _register_levels(con: duckdb.DuckDBPyConnection, levels: pa.Table) -> None:
    """``levels`` in DuckDB, one row per request with blocks, as the embedded pass leaves it."""
    columns = {"rid": pa.array(levels.column("rid").to_numpy(), pa.int64())}
    columns.update({name: pa.array(levels.column(name).to_numpy(), pa.int64()) for name in LEVEL_COLUMNS})
    con.register("levels_in", pa.table(columns))
    con.execute("CREATE OR REPLACE TEMP TABLE levels AS SELECT * FROM levels_in")
    con.unregister("levels_in")

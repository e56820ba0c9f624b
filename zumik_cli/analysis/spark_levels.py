"""The waterfall's per-request reuse levels on Spark: the SQL definition ``levels`` keeps as its invariant, run as
window functions over each key's timeline.

``levels.compute_levels`` runs this definition as one compiled pass on one machine; here every block is joined to its
request's order and keys, and three windows do the rest: the first use of each (family, chain), (target, chain)
and (KV key, chain) is ``min(ord)`` over its partition, and over each (KV key, chain) timeline ordered by request
the time of the use just before (``lag``) and the longest horizon of the earlier uses (a running ``max`` that ends
one row before). The shuffle is by (key, chain), so no partition holds more than one chain's timeline of every key
it sees. Each request's levels are then a ``max`` over its blocks, grouped by rid. The result is the same
``levels`` table and ``Workload`` the embedded pass hands the rest of the waterfall, so both engines share every
later step.
"""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from zumik_cli.analysis.levels import LEVEL_COLUMNS, REQ_COLUMNS_SQL, Workload
from zumik_cli.dataset import spark

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


def compute_levels_spark(
    con: duckdb.DuckDBPyConnection, coincide: bool, parts: list[str], workload_needed: bool = True
) -> Workload:
    """``levels.compute_levels`` on Spark: the temp table ``levels`` in ``con`` and the time-ordered workload (the
    blocks gathered in the driver, one cache's timeline, only when ``workload_needed``)."""
    with spark.jobs("the waterfall's levels"):
        return _levels_on(spark.session(), con, coincide, parts, workload_needed)


def _levels_on(
    session: Any, con: duckdb.DuckDBPyConnection, coincide: bool, parts: list[str], workload_needed: bool
) -> Workload:
    req = con.sql(REQ_COLUMNS_SQL).to_arrow_table()
    session.createDataFrame(req).createOrReplaceTempView("zumik_req")
    read_blocks(session, parts).createOrReplaceTempView("zumik_blocks")
    fam_key, tgt_key = ("unit_key", "unit_key") if coincide else ("fam_id", "tgt_id")
    timeline = session.sql(
        TIMELINE_SQL.format(coincide="true" if coincide else "false", fam_key=fam_key, tgt_key=tgt_key)
    )
    timeline.persist()  # read twice: by the levels and, when a bounded figure needs it, by the workload
    try:
        timeline.createOrReplaceTempView("zumik_timeline")
        levels = session.sql(
            LEVELS_SQL.format(warm=WARM, within_300=WITHIN.format(seconds=300), within_3600=WITHIN.format(seconds=3600))
        ).toArrow()
        columns = timeline.select("ord", "pos", "unit_key", "chain", "tokens")
        if not workload_needed:  # no curve and no bounded cache: the blocks never leave the executors
            columns = columns.limit(0)
        blocks = columns.orderBy("ord", "pos").toArrow()
    finally:
        timeline.unpersist()
    workload = _workload(req, blocks)
    _register_levels(con, levels, workload.rids)
    return workload


def _workload(req: pa.Table, blocks: pa.Table) -> Workload:
    """The blocks in time order as the capacity analysis reads them: a unit is one distinct (KV key, chain)."""
    ords = blocks.column("ord").to_numpy().astype(np.int64)
    counts = np.bincount(ords - 1, minlength=req.num_rows) if len(ords) else np.zeros(req.num_rows, dtype=np.int64)
    has_blocks = counts > 0
    unit_key, chain = blocks.column("unit_key").to_numpy().astype(np.int64), blocks.column("chain").to_numpy()
    if not len(ords):
        units = np.zeros(0, dtype=np.int64)
    elif unit_key.min() == unit_key.max():  # one key (or keys by chain alone): a plain sort of the chains
        units = np.unique(chain, return_inverse=True)[1]
    else:
        units = np.unique(np.stack([unit_key, chain]), axis=1, return_inverse=True)[1]
    units = units.reshape(-1).astype(np.int32)
    return Workload(
        offsets=np.concatenate([[0], np.cumsum(counts[has_blocks])]).astype(np.int64),
        units=units,
        sizes=blocks.column("tokens").to_numpy().astype(np.int32),
        rids=np.asarray(req.column("rid").to_numpy(), dtype=np.int64)[has_blocks],
        n_units=int(units.max(initial=-1)) + 1,
    )


def _register_levels(con: duckdb.DuckDBPyConnection, levels: pa.Table, rids: np.ndarray) -> None:
    """``levels`` in DuckDB, one row per request with blocks, as the embedded pass leaves it."""
    columns = {"rid": pa.array(levels.column("rid").to_numpy(), pa.int64())}
    columns.update({name: pa.array(levels.column(name).to_numpy(), pa.int64()) for name in LEVEL_COLUMNS})
    con.register("levels_in", pa.table(columns))
    con.execute("CREATE OR REPLACE TEMP TABLE levels AS SELECT * FROM levels_in")
    con.unregister("levels_in")

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
order. The reference LRU is one cache over every (KV key, chain) unit, so its timeline is one task: each unit is
numbered in SQL as the levels pass numbers it, the blocks are sorted by request and position into one partition
(Spark's sort spills to disk), and the task writes them as they stream in into the timeline the embedded engine
builds (on files past ``levels.SPILL_BLOCKS``), then hands it to the same functions the embedded engine calls
(``waterfall.LruJob``), which read it a batch of requests at a time. So the task holds per block nothing but a batch;
per request its offset, and per unit the LRU's state. Only the small results come back: the curve's points and one
(request, hits) row a request. The driver never holds a block; its workload names the requests with blocks, in time
order, and nothing else.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from zumik_cli.analysis.levels import LEVEL_COLUMNS, PARTS, REQ_COLUMNS_SQL, SPILL_BLOCKS, Workload
from zumik_cli.analysis.timeline import Timeline
from zumik_cli.core.errors import ZumikError
from zumik_cli.dataset import spark

if TYPE_CHECKING:
    from zumik_cli.analysis.waterfall import LruFigures, LruJob

BLOCK_COLUMNS = ("rid", "pos", "chain", "tokens", "end_token")

# ``unit_key`` is the KV key's number, or 0 when every family has one target and one key: the embedded pass then
# keys its units by chain alone, and so does this. NULL times and TTLs mean what they mean there: no time, no expiry.
TIMELINE_SQL = """
WITH joined AS (
    SELECT r.rid, r.ord, r.ts, b.pos, b.chain, b.tokens, b.end_token, r.fam_id, r.tgt_id{lru},
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


# what the LRU task sends back: one row a request with its bounded-cache hits (the request by slot), and one row with
# the rest (JSON)
LRU_RESULT_SCHEMA = "rid long, t_cap long, figures string"

# Each block of the timeline as the LRU task reads it: its request's slot, its position, its unit and tokens. A unit is
# each distinct (KV key, chain), numbered as the levels pass numbers it: in order of first use within its part (chain
# modulo the parts), as ``number * parts + part``. The exact figures do not depend on the numbers; the SHARDS sample
# does (it hashes them), so both engines must give the same.
STREAM_SQL = """
WITH pairs AS (
    SELECT unit_key, chain, min(named_struct('slot', slot, 'pos', pos)) AS first
    FROM zumik_lru_blocks GROUP BY unit_key, chain
), units AS (
    SELECT unit_key, chain,
           (row_number() OVER (PARTITION BY chain & ({parts} - 1) ORDER BY first) - 1) * {parts}
           + (chain & ({parts} - 1)) AS unit
    FROM pairs
)
SELECT b.slot, b.pos, u.unit::INT AS unit, b.tokens::INT AS tokens{scaled}
FROM zumik_lru_blocks b JOIN units u ON b.unit_key = u.unit_key AND b.chain = u.chain
"""


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
    n_blocks = req.column("n_blocks").to_numpy()
    # each request's slot for the LRU task, and on content traces its scale to provider tokens and unlogged prefix
    carried = _carried(lru) if lru is not None and lru_requests is not None else ()
    sent = _with_slots(req, lru_requests, n_blocks, carried) if lru_requests is not None and carried else req
    session.createDataFrame(sent).createOrReplaceTempView("zumik_req")
    del sent  # Spark has its copy
    read_blocks(session, parts).createOrReplaceTempView("zumik_blocks")
    fam_key, tgt_key = ("unit_key", "unit_key") if coincide else ("fam_id", "tgt_id")
    timeline = session.sql(
        TIMELINE_SQL.format(
            coincide="true" if coincide else "false",
            fam_key=fam_key,
            tgt_key=tgt_key,
            lru="".join(f", r.{name}" for name in carried),
        )
    )
    timeline.persist()  # read twice: by the levels and, when a bounded figure needs it, by the LRU task
    try:
        timeline.createOrReplaceTempView("zumik_timeline")
        levels = session.sql(
            LEVELS_SQL.format(warm=WARM, within_300=WITHIN.format(seconds=300), within_3600=WITHIN.format(seconds=3600))
        ).toArrow()
        figures = None
        if lru is not None and lru_requests is not None:
            figures = _lru_figures(session, timeline, lru, n_blocks, lru_requests.column("rid").to_numpy())
    finally:
        timeline.unpersist()
    _register_levels(con, levels)
    return _requests_only(req), figures


def _lru_figures(
    session: Any, timeline: Any, lru: LruJob, n_blocks: npt.NDArray[np.integer], rids: npt.NDArray[np.integer]
) -> LruFigures:
    """The reference LRU's figures from one task that reads the whole timeline (one cache) as a stream in time order,
    with only its small results collected.

    Each (KV key, chain) is numbered in SQL as the levels pass numbers it (``STREAM_SQL``); every block is tagged with
    its request's slot (its place among the requests with blocks, in time order), and the blocks are sorted by slot and
    position into one partition, whose task writes them as they come into the timeline the embedded engine builds
    (on files past ``SPILL_BLOCKS``) and runs the same job on it. Spark's sort spills to disk, so neither the sort
    nor the task holds the blocks in memory."""
    from zumik_cli.analysis.waterfall import LruFigures

    stream = _lru_stream(session, timeline, lru)
    rids = np.asarray(rids, dtype=np.int64)[n_blocks > 0]  # by slot
    task = functools.partial(_lru_task, lru, len(rids), int(n_blocks.sum()), lru.uniform_block is None)
    found = stream.repartition(1).sortWithinPartitions("slot", "pos").mapInArrow(task, LRU_RESULT_SCHEMA).toArrow()
    summary = found.filter(pc.is_valid(found.column("figures")))
    hits = found.filter(pc.is_valid(found.column("rid"))).select(["rid", "t_cap"])
    # the task numbers requests by slot: back to their rids
    hits = pa.table({"rid": pa.array(rids[hits.column("rid").to_numpy()]), "t_cap": hits.column("t_cap")})
    return LruFigures.from_json(summary.column("figures")[0].as_py(), hits if lru.capacity_tokens is not None else None)


def _carried(lru: LruJob) -> tuple[str, ...]:
    """The request columns the LRU task reads beside each block: its slot (its request's place among the requests with
    blocks, in time order), and where each access counts in its request's provider tokens (content traces, whose
    blocks are not of one size) the request's scale and unlogged prefix."""
    return ("slot",) if lru.uniform_block is not None else ("slot", "scale", "prefix")


def _with_slots(
    req: pa.Table, requests: pa.Table, n_blocks: npt.NDArray[np.integer], carried: tuple[str, ...]
) -> pa.Table:
    """The request table as the executors get it when the LRU task runs, with the ``carried`` columns: the slot, and
    the scale and prefix from ``requests`` (in the same ``ord`` order)."""
    if requests.num_rows != req.num_rows:
        raise ZumikError("the dataset changed while the waterfall read it: run the command again")
    has_blocks = n_blocks > 0
    req = req.append_column("slot", pa.array(np.cumsum(has_blocks, dtype=np.int64) - 1, pa.int32(), mask=~has_blocks))
    for name in carried[1:]:
        req = req.append_column(name, requests.column(name))
    return req


def _lru_stream(session: Any, timeline: Any, lru: LruJob) -> Any:
    """The timeline's blocks as the LRU task reads them (``STREAM_SQL``, in no order)."""
    carried = _carried(lru)
    timeline.select("pos", "chain", "tokens", "unit_key", *carried).createOrReplaceTempView("zumik_lru_blocks")
    scaled = "".join(f", b.{name}" for name in carried[1:])
    return session.sql(STREAM_SQL.format(parts=PARTS, scaled=scaled))


def _lru_task(
    lru: LruJob, n_requests: int, n_blocks: int, scaled: bool, batches: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    """On an executor: the timeline as it streams in (sorted by slot and position), the job run on it, its results as
    one batch (requests numbered by slot)."""
    workload, scales = stream_workload(batches, n_requests, n_blocks, scaled)
    figures = lru.run(workload, scales)
    hits = figures.hits
    if hits is None:
        hits = pa.table({"rid": pa.array([], pa.int64()), "t_cap": pa.array([], pa.int64())})
    last = {"rid": pa.nulls(1, pa.int64()), "t_cap": pa.nulls(1, pa.int64())}
    yield pa.RecordBatch.from_pydict(
        {
            **{name: pa.concat_arrays([hits.column(name).combine_chunks(), last[name]]) for name in ("rid", "t_cap")},
            "figures": pa.concat_arrays([pa.nulls(hits.num_rows, pa.string()), pa.array([figures.to_json()])]),
        }
    )


def stream_workload(
    batches: Iterable[pa.RecordBatch], n_requests: int, n_blocks: int, scaled: bool = False
) -> tuple[Workload, tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]]:
    """One cache's timeline as ``levels.compute_levels`` hands it on, from its blocks sorted by ``slot`` (each
    request's place among the ``n_requests`` with blocks) and position, with their ``unit`` and ``tokens`` (and, where
    ``scaled``, their request's ``scale`` and ``prefix``): written as they come, held or on files as the embedded
    pass holds them, with nothing else kept per block. Requests are numbered by slot (``rids``)."""
    counts = np.zeros(n_requests, dtype=np.int64)
    factor = np.ones(n_requests, dtype=np.float64)
    prefix = np.zeros(n_requests, dtype=np.int64)
    spilled = n_blocks > SPILL_BLOCKS
    timeline = Timeline.spilled(n_blocks) if spilled else None
    units = np.empty(0 if spilled else n_blocks, dtype=np.int32)
    sizes = np.empty(0 if spilled else n_blocks, dtype=np.int32)
    most = np.full(PARTS, -1, dtype=np.int64)  # the largest unit of each part
    at = 0
    for batch in batches:
        n = batch.num_rows
        if at + n > n_blocks:
            raise ZumikError(f"the LRU task was sent more than the {n_blocks} blocks of the timeline: run it again")
        slot = batch.column("slot").to_numpy()
        unit = batch.column("unit").to_numpy().astype(np.int32)
        tokens = batch.column("tokens").to_numpy()
        if not n:
            continue
        # sorted by slot: a batch's blocks are of a run of slots
        first = int(slot[0])
        in_batch = np.bincount(slot - first)
        counts[first : first + len(in_batch)] += in_batch
        if scaled:
            factor[slot] = batch.column("scale").to_numpy()
            prefix[slot] = batch.column("prefix").to_numpy()
        part = unit & (PARTS - 1)
        for p in range(PARTS):
            mine = unit[part == p]
            if mine.size:
                most[p] = max(most[p], int(mine.max()))
        if timeline is not None:
            timeline.write_units(at, unit)
            timeline.write_sizes(at, tokens)
        else:
            units[at : at + n] = unit
            sizes[at : at + n] = tokens
        at += n
    if at != n_blocks:
        raise ZumikError(f"the LRU task was sent {at} of the {n_blocks} blocks of the timeline: run it again")
    # of n parts, part p numbers its units p, p + n, ...: the bound the levels pass gives is n times the most used
    n_units = PARTS * int(max(((most[most >= 0] // PARTS) + 1).max(initial=0), 0))
    workload = Workload(
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        timeline=timeline if timeline is not None else Timeline(units, sizes),
        rids=np.arange(n_requests, dtype=np.int64),
        n_units=n_units,
    )
    return workload, (factor, prefix)


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

"""The siblings of the first block each request does not share: the blocks whose token overlap the waterfall counts.

For each request and level (family, target, KV key, warm), take the first block the request does not share at that
level (``n_fam``, ``n_tgt``, ``n_kvc``, ``n_warm`` of ``levels``); its siblings are the other blocks that followed
the same parent chain in the same family in an earlier request (lower ``ord``), of the same target at level
``tgt``, of the same KV key at ``kvc``, and of the same KV key and not yet expired at ``warm``
(``n.ts - s.ts <= s.ttl``, or a time or TTL unknown). Each sibling is ranked by its latest such use, and only the
``limit`` most recent are kept per request and level: the shared prefix may go on for some tokens inside them.

Why not one SQL join: every earlier use of a parent joins every request that stops there, so the block that
follows a shared system prompt and tools joins each session's first call with every call of every session before
it (10M rows for 19,000 agent calls, 9 s of CPU, and the waterfall runs twice in a diagnose). Here the uses are
sorted by (parent, family, ord) once and each request walks back from its own ``ord`` through its parent's uses,
newest first, until it has ``limit`` distinct siblings: the first time a block is met is its latest use, so the
walk yields the same siblings in the same rank as the join, and it stops long before the start of a long list.
"""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from zumik_cli.core.kernels import compiled, kernel

LEVELS = ("fam", "tgt", "kvc", "warm")
# Below this many uses the walk runs interpreted (see core/kernels.py): loading numba costs a third of a second.
COMPILED_MIN = 1 << 17
CHUNK = 1 << 12  # requests' first blocks walked at a time: the output holds at most CHUNK * limit pairs

# The first block each request does not share at each level (content blocks only), with what its siblings match on.
NEXT_SQL = """
CREATE OR REPLACE TEMP TABLE sibling_next AS
SELECT l.rid, lv.code, u.block_id, u.parent, u.ord, u.ts, u.fam_id, u.tgt_id, u.kvc_id
FROM levels l
CROSS JOIN (VALUES (0), (1), (2), (3)) AS lv(code)
JOIN units u ON u.rid = l.rid AND u.pos = CASE lv.code WHEN 0 THEN l.n_fam WHEN 1 THEN l.n_tgt
                                                         WHEN 2 THEN l.n_kvc ELSE l.n_warm END
WHERE NOT u.hashid AND u.block_id IS NOT NULL AND u.parent IS NOT NULL AND u.fam_id IS NOT NULL
"""
# Every use of a (parent, family) that some first block follows, in the order the walk searches.
USES_SQL = """
SELECT s.parent, s.fam_id, s.ord, s.block_id, s.tgt_id, s.kvc_id, s.ts, s.ttl
FROM units s SEMI JOIN (SELECT DISTINCT parent, fam_id FROM sibling_next) n
    ON s.parent = n.parent AND s.fam_id = n.fam_id
WHERE s.block_id IS NOT NULL
ORDER BY s.parent, s.fam_id, s.ord
"""
NEXT_COLUMNS_SQL = "SELECT rid, code, block_id, parent, ord, ts, fam_id, tgt_id, kvc_id FROM sibling_next"


def sibling_pairs(con: duckdb.DuckDBPyConnection, limit: int) -> pa.Table:
    """``(rid, level, a, b)``: request ``rid``'s first unshared block ``a`` at ``level`` and each sibling ``b``.

    Reads the temp table ``levels`` and the view ``units`` (``sql/units.sql``)."""
    con.execute(NEXT_SQL)
    nxt = con.sql(NEXT_COLUMNS_SQL).to_arrow_table()
    uses = con.sql(USES_SQL).to_arrow_table()
    con.execute("DROP TABLE sibling_next")
    n = {name: _numbers(nxt.column(name)) for name in nxt.column_names}
    s = {name: _numbers(uses.column(name)) for name in uses.column_names}
    n_ts_known, s_ts_known = _known(nxt.column("ts")), _known(uses.column("ts"))
    s_ttl_known = _known(uses.column("ttl"))
    walk = compiled(_walk) if len(uses) >= COMPILED_MIN else _walk
    interpreted = walk is _walk
    n_args = [
        n["parent"],
        n["fam_id"],
        n["ord"],
        n["tgt_id"],
        n["kvc_id"],
        n["ts"],
        n_ts_known,
        n["code"],
        n["block_id"],
    ]
    s_args = [s["parent"], s["fam_id"], s["ord"], s["block_id"], s["tgt_id"], s["kvc_id"]]
    s_args += [s["ts"], s_ts_known, s["ttl"], s_ttl_known]
    if interpreted:
        n_args = [a.tolist() for a in n_args]
        s_args = [a.tolist() for a in s_args]
    rows, siblings = [], []
    for start in range(0, len(nxt), CHUNK):
        stop = min(start + CHUNK, len(nxt))
        out_row = np.empty((stop - start) * limit, dtype=np.int64)
        out_b = np.empty((stop - start) * limit, dtype=np.int64)
        if interpreted:
            row_list, b_list = out_row.tolist(), out_b.tolist()
            found = walk(*n_args, *s_args, limit, start, stop, row_list, b_list)
            out_row[:found], out_b[:found] = row_list[:found], b_list[:found]
        else:
            found = walk(*n_args, *s_args, limit, start, stop, out_row, out_b)
        rows.append(out_row[:found])
        siblings.append(out_b[:found])
    row = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
    return pa.table(
        {
            "rid": pa.array(n["rid"][row], pa.int64()),
            "level": pa.array(np.array(LEVELS, dtype=object)[n["code"][row]], pa.string()),
            "a": pa.array(n["block_id"][row], pa.int64()),
            "b": pa.array(np.concatenate(siblings) if siblings else np.empty(0, dtype=np.int64), pa.int64()),
        }
    )


def _numbers(column: pa.ChunkedArray) -> np.ndarray:
    """A numeric column as numpy; a NULL id becomes -1 (ids are numbered from 1), a NULL time or TTL 0.0 (its
    ``_known`` flag is what the walk reads)."""
    floating = pa.types.is_floating(column.type)
    filled = column.fill_null(0.0 if floating else -1)
    return filled.to_numpy().astype(np.float64 if floating else np.int64)


def _known(column: pa.ChunkedArray) -> np.ndarray:
    return column.is_valid().to_numpy(zero_copy_only=False).astype(np.bool_)


@kernel
def _first_at_or_after(parent: Any, fam: Any, ord: Any, p: int, f: int, o: int) -> int:
    # The first use at or after (p, f, o) in (parent, fam_id, ord) order.
    lo, hi = 0, len(parent)
    while lo < hi:
        mid = (lo + hi) >> 1
        if parent[mid] < p or (parent[mid] == p and (fam[mid] < f or (fam[mid] == f and ord[mid] < o))):
            lo = mid + 1
        else:
            hi = mid
    return lo


@kernel
def _walk(
    n_parent: Any,
    n_fam: Any,
    n_ord: Any,
    n_tgt: Any,
    n_kvc: Any,
    n_ts: Any,
    n_ts_known: Any,
    n_code: Any,
    n_block: Any,
    s_parent: Any,
    s_fam: Any,
    s_ord: Any,
    s_block: Any,
    s_tgt: Any,
    s_kvc: Any,
    s_ts: Any,
    s_ts_known: Any,
    s_ttl: Any,
    s_ttl_known: Any,
    limit: int,
    start: int,
    stop: int,
    out_row: Any,
    out_b: Any,
) -> int:
    # For each first block i in [start, stop): its parent's uses before it, newest first; a block that matches the
    # level and is not yet among i's siblings is its next one. A request's siblings are at most ``limit``, so the
    # check against those found is a short scan.
    found = 0
    for i in range(start, stop):
        p, f, code, a = n_parent[i], n_fam[i], n_code[i], n_block[i]
        first = _first_at_or_after(s_parent, s_fam, s_ord, p, f, -(1 << 62))
        j = _first_at_or_after(s_parent, s_fam, s_ord, p, f, n_ord[i]) - 1
        mine = found
        while j >= first and found - mine < limit:
            b = s_block[j]
            match = b != a
            if match and code == 1:
                match = n_tgt[i] != -1 and s_tgt[j] == n_tgt[i]
            elif match and code >= 2:
                match = n_kvc[i] != -1 and s_kvc[j] == n_kvc[i]
                if match and code == 3 and s_ttl_known[j] and n_ts_known[i] and s_ts_known[j]:
                    match = n_ts[i] - s_ts[j] <= s_ttl[j]
            if match:
                for k in range(mine, found):
                    if out_b[k] == b:
                        match = False
                        break
            if match:
                out_row[found] = i
                out_b[found] = b
                found += 1
            j -= 1
    return found

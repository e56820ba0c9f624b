"""The per-request reuse levels of the waterfall, in one compiled pass over the blocks in time order.

For each request: how many leading blocks it shares with an earlier request at four widening levels of
strictness, and the token offset where that shared prefix ends (``n_fam``/``t_fam``, ``n_tgt``/``t_tgt``,
``n_kvc``/``t_kvc``, ``n_warm``/``t_warm``, ``t_ttl_300``, ``t_ttl_3600``). The definitions are those of the
SQL this replaces (one window over every block, partitioned by (key, chain) and ordered by the request order
``ord``), kept here as the invariant: a block of request r at level L counts when its (L-id, chain) was first
used by a request earlier than r (``first < ord``: never by r itself), where L-id is the family, target or KV
compatibility key; warm also needs ``ts IS NULL OR alive_until IS NULL OR ts <= alive_until``, where
``alive_until`` is the max of ``ts + coalesce(ttl, inf)`` over the earlier uses of that (key, chain) (NULL
when none of them has a time); the TTL columns need ``ts IS NULL OR prev_ts IS NULL OR ts - prev_ts <= T``,
``prev_ts`` the time of the use just before. Each level is a max over the request's blocks.

Why not SQL: that window sorts every block (30M rows for 1M Mooncake requests) and spills past DuckDB's
memory limit. Here each request's blocks are placed at ``offset[ord] + pos`` (no sort), the (key, chain) pairs
are numbered by Arrow's hash encoding, and one numba pass in request order keeps, per numbered pair, its first
use, its last time and its TTL horizon. The same time-ordered blocks feed the capacity analysis (``Workload``),
so neither pass sorts the blocks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

IntArray = npt.NDArray[np.int64]

REQ_COLUMNS_SQL = "SELECT rid, ord, ts, ttl, fam_id, tgt_id, kvc_id FROM req ORDER BY ord"
BLOCK_COLUMNS_SQL = """
SELECT r.ord::INTEGER AS ord, b.pos::INTEGER AS pos, b.chain, b.tokens::INTEGER AS tokens, b.end_token
FROM request_blocks b JOIN req r USING (rid)
"""
LEVEL_COLUMNS = ("n_fam", "t_fam", "n_tgt", "t_tgt", "n_kvc", "t_kvc", "n_warm", "t_warm", "t_ttl_300", "t_ttl_3600")


@dataclass(frozen=True)
class Workload:
    """Every request with blocks, in time order, as CSR arrays: the input of ``capacity``.

    ``units`` numbers each distinct (KV key, chain) pair 0..n_units-1 (int32, in first-seen order);
    ``rids[i]`` is request i's rid.
    """

    offsets: IntArray
    units: npt.NDArray[np.integer]
    sizes: IntArray
    rids: IntArray
    n_units: int


def _place_kernel(ords: IntArray, pos: IntArray, offsets: IntArray) -> tuple[IntArray, bool]:
    # Block i goes to offsets[ord - 1] + pos; valid only when each request's positions are 0..n-1 exactly once.
    n = ords.shape[0]
    slot = np.empty(n, dtype=np.int64)
    filled = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        o = ords[i] - 1
        p = pos[i]
        if p < 0 or p >= offsets[o + 1] - offsets[o]:
            return slot, False
        s = offsets[o] + p
        if filled[s]:
            return slot, False
        filled[s] = True
        slot[i] = s
    return slot, True


def _in_place_kernel(ords: npt.NDArray[np.integer], pos: npt.NDArray[np.integer], offsets: IntArray) -> bool:
    # True when block i already sits at offsets[ord - 1] + pos (the join returned the blocks in time order, as
    # for a trace ingested in time order): the placement is then the identity and nothing is permuted.
    for i in range(ords.shape[0]):
        o = ords[i] - 1
        p = pos[i]
        if p < 0 or p >= offsets[o + 1] - offsets[o] or offsets[o] + p != i:
            return False
    return True


def _levels_kernel(
    offsets: IntArray,
    ts: npt.NDArray[np.float64],
    ttl: npt.NDArray[np.float64],
    pos: IntArray,
    end_token: IntArray,
    kvc_unit: npt.NDArray[np.integer],
    n_kvc_units: int,
    tgt_unit: npt.NDArray[np.integer],
    n_tgt_units: int,
    fam_unit: npt.NDArray[np.integer],
    n_fam_units: int,
) -> IntArray:
    # Requests in time order (index = ord - 1); blocks in CSR order. A NaN time or horizon stands for NULL.
    n_req = offsets.shape[0] - 1
    out = np.zeros((10, n_req), dtype=np.int64)
    first_kvc = np.full(n_kvc_units, -1, dtype=np.int64)
    first_tgt = np.full(n_tgt_units, -1, dtype=np.int64)
    first_fam = np.full(n_fam_units, -1, dtype=np.int64)
    prev_ts = np.full(n_kvc_units, np.nan)
    alive_until = np.full(n_kvc_units, np.nan)
    for r in range(n_req):
        t = ts[r]
        no_time = np.isnan(t)
        horizon = t + ttl[r]
        for j in range(offsets[r], offsets[r + 1]):
            n = pos[j] + 1
            e = end_token[j]
            f = fam_unit[j]
            if first_fam[f] < 0:
                first_fam[f] = r
            elif first_fam[f] < r:
                out[0, r] = max(out[0, r], n)
                out[1, r] = max(out[1, r], e)
            g = tgt_unit[j]
            if first_tgt[g] < 0:
                first_tgt[g] = r
            elif first_tgt[g] < r:
                out[2, r] = max(out[2, r], n)
                out[3, r] = max(out[3, r], e)
            u = kvc_unit[j]
            if first_kvc[u] < 0:
                first_kvc[u] = r
            elif first_kvc[u] < r:
                out[4, r] = max(out[4, r], n)
                out[5, r] = max(out[5, r], e)
                a = alive_until[u]
                if no_time or np.isnan(a) or t <= a:
                    out[6, r] = max(out[6, r], n)
                    out[7, r] = max(out[7, r], e)
                p = prev_ts[u]
                if no_time or np.isnan(p) or t - p <= 300:
                    out[8, r] = max(out[8, r], e)
                if no_time or np.isnan(p) or t - p <= 3600:
                    out[9, r] = max(out[9, r], e)
            prev_ts[u] = t
            if not no_time and (np.isnan(alive_until[u]) or horizon > alive_until[u]):
                alive_until[u] = horizon
    return out


@functools.cache
def _compiled(kernel: Callable[..., Any]) -> Callable[..., Any]:
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency of zumik
        return kernel
    return numba.njit(cache=True, nogil=True)(kernel)


def _number_kernel(values: IntArray, out: npt.NDArray[np.int32], bits: int) -> int:
    # Open addressing (linear probing) on a multiplicative hash; the table doubles past half full. Returns the
    # number of distinct values, or -1 when they outgrow int32 numbers. Each slot holds its key and number side
    # by side (16 bytes), so a probe costs one cache miss, not two.
    size = 1 << bits
    table = np.empty((size, 2), dtype=np.int64)
    table[:, 1] = -1
    shift = 64 - bits
    n = 0
    for i in range(values.shape[0]):
        v = values[i]
        h = (np.uint64(v) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(shift)
        while True:
            k = table[h, 1]
            if k < 0:
                if n >= 2**31 - 1:
                    return -1
                table[h, 0] = v
                table[h, 1] = n
                out[i] = n
                n += 1
                break
            if table[h, 0] == v:
                out[i] = k
                break
            h = (h + np.uint64(1)) & np.uint64(size - 1)
        if 2 * n > size:
            bits += 1
            size = 1 << bits
            shift = 64 - bits
            old = table
            table = np.empty((size, 2), dtype=np.int64)
            table[:, 1] = -1
            for j in range(old.shape[0]):
                if old[j, 1] >= 0:
                    g = (np.uint64(old[j, 0]) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(shift)
                    while table[g, 1] >= 0:
                        g = (g + np.uint64(1)) & np.uint64(size - 1)
                    table[g, 0] = old[j, 0]
                    table[g, 1] = old[j, 1]
    return n


def _encode(values: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int32], int]:
    # Numbers equal values 0, 1, ... in first-seen order, as Arrow's dictionary_encode does, in a compiled hash
    # table of 16 bytes a slot (Arrow's memo took about 1.2 GB for 30M blocks): no sort.
    values = np.ascontiguousarray(values, dtype=np.int64)
    out = np.empty(values.shape[0], dtype=np.int32)
    # sized for half the values to be distinct (capped at 2^24 slots, 256 MiB): no rehash at the Mooncake mix
    bits = min(24, max(16, (values.shape[0] // 2).bit_length()))
    n = _compiled(_number_kernel)(values, out, bits)
    if n < 0:
        encoded = pa.array(values, type=pa.int64()).dictionary_encode()
        return encoded.indices.to_numpy(zero_copy_only=False), len(encoded.dictionary)
    return out, int(n)


def _pair_units(
    req_ids: npt.NDArray[np.int64], counts: IntArray, chains: npt.NDArray[np.int32], n_chains: int
) -> tuple[npt.NDArray[np.int32], int]:
    # Number the distinct (id, chain) pairs; with one id the chain's own number is the pair's. ``req_ids`` is
    # per request: spread over the blocks only when there is more than one id.
    if req_ids.shape[0] == 0 or req_ids.min() == req_ids.max():
        return chains, n_chains
    return _encode(np.repeat(req_ids.astype(np.int64), counts) * np.int64(n_chains) + chains)


def _block_columns(con: duckdb.DuckDBPyConnection) -> dict[str, IntArray]:
    # Streamed batch by batch into numpy arrays: DuckDB never holds the whole join result (30M rows at 1M
    # requests), and each column is dropped once read in time order.
    rows = con.execute("SELECT count(*) FROM request_blocks b JOIN req r USING (rid)").fetchall()[0][0]
    names = ("ord", "pos", "chain", "tokens", "end_token")
    # int32 where a value is a count of requests, of a request's blocks or of a block's tokens (DuckDB refuses
    # the cast rather than wrap, should one ever not fit): 28 bytes a block instead of 40
    narrow = ("ord", "pos", "tokens")
    columns = {name: np.empty(rows, dtype=np.int32 if name in narrow else np.int64) for name in names}
    at = 0
    for batch in con.sql(BLOCK_COLUMNS_SQL).to_arrow_reader(1 << 20):
        n = batch.num_rows
        for name in names:
            columns[name][at : at + n] = batch.column(name).to_numpy()
        at += n
    if at != rows:
        raise RuntimeError(f"request_blocks changed while read: {at} rows, then {rows}")
    return columns


def compute_levels(con: duckdb.DuckDBPyConnection, coincide: bool) -> Workload:
    """Create the temp table ``levels`` (one row per rid with blocks) from ``req`` and ``request_blocks``.

    ``coincide``: each family has one target and each target one key, so the three first uses are one.
    Returns the time-ordered blocks for the capacity analysis.
    """
    req = con.sql(REQ_COLUMNS_SQL).to_arrow_table()
    n_req = req.num_rows
    columns = _block_columns(con)
    ords = columns.pop("ord")
    pos = columns.pop("pos")
    counts = np.bincount(ords - 1, minlength=n_req) if len(ords) else np.zeros(n_req, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    order: IntArray | None = None
    if not _compiled(_in_place_kernel)(ords, pos, offsets):
        slot, placed = _compiled(_place_kernel)(ords, pos, offsets)
        if placed:
            order = np.empty_like(slot)
            order[slot] = np.arange(len(slot), dtype=np.int64)
        else:  # positions with gaps or repeats: sort them instead
            order = np.lexsort((pos, ords))
        del slot
        pos = pos[order]
    del ords

    def column(name: str) -> npt.NDArray[np.int64]:
        values = columns.pop(name)
        return values if order is None else values[order]

    chains, n_chains = _encode(column("chain"))
    kvc_unit, n_kvc = _pair_units(req.column("kvc_id").to_numpy(), counts, chains, n_chains)
    if coincide:
        tgt_unit, n_tgt, fam_unit, n_fam = kvc_unit, n_kvc, kvc_unit, n_kvc
    else:
        tgt_unit, n_tgt = _pair_units(req.column("tgt_id").to_numpy(), counts, chains, n_chains)
        fam_unit, n_fam = _pair_units(req.column("fam_id").to_numpy(), counts, chains, n_chains)
    del chains
    ts = req.column("ts").to_numpy(zero_copy_only=False).astype(np.float64)
    ttl = req.column("ttl").fill_null(np.inf).to_numpy(zero_copy_only=False).astype(np.float64)
    end_token = column("end_token")
    out = _compiled(_levels_kernel)(offsets, ts, ttl, pos, end_token, kvc_unit, n_kvc, tgt_unit, n_tgt, fam_unit, n_fam)
    has_blocks = counts > 0
    rids = req.column("rid").to_numpy()[has_blocks]
    table = pa.table({"rid": rids, **{name: out[k][has_blocks] for k, name in enumerate(LEVEL_COLUMNS)}})
    con.register("levels_in", table)
    aggregates = ", ".join(f"max({name}) AS {name}" for name in LEVEL_COLUMNS)
    # a rid twice in req (one request ingested twice) is one row, as the SQL's GROUP BY rid made it
    con.execute(f"CREATE OR REPLACE TEMP TABLE levels AS SELECT rid, {aggregates} FROM levels_in GROUP BY rid")
    con.unregister("levels_in")
    del end_token, pos, out, tgt_unit, fam_unit
    sizes = column("tokens")
    return Workload(
        offsets=np.concatenate([[0], np.cumsum(counts[has_blocks])]).astype(np.int64),
        units=kvc_unit,
        sizes=sizes,
        rids=rids,
        n_units=n_kvc,
    )

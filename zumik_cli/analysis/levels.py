"""The per-request reuse levels of the waterfall, in one compiled pass over the blocks in time order.

For each request: how many leading blocks it shares with an earlier request at four widening levels of
strictness, and the token offset where that shared prefix ends (``n_fam``/``t_fam``, ``n_tgt``/``t_tgt``,
``n_kvc``/``t_kvc``, ``n_warm``/``t_warm``, ``t_ttl_300``, ``t_ttl_3600``). The definitions are those of the
SQL this replaces (one window over every block, partitioned by (key, chain) and ordered by the request order
``ord``), kept here as the invariant: a block of request r at level L counts when its (L-id, chain) was first
used by a request earlier than r (``first < ord``: never by r itself), where L-id is the family, target or KV
compatibility key; warm also needs ``ts IS NULL OR alive_until IS NULL OR ts <= alive_until``, where
``alive_until`` is the max of ``ts + coalesce(ttl, inf)`` over the earlier uses of that (key, chain), ``ttl``
the block's own (NULL when none of them has a time); the TTL columns need
``ts IS NULL OR prev_ts IS NULL OR ts - prev_ts <= T``, ``prev_ts`` the time of the use just before. Each level
is a max over the request's blocks.

Why not SQL: that window sorts every block (30M rows for 1M Mooncake requests) and spills past DuckDB's
memory limit. Here one compiled pass in time order numbers each (key, chain) pair in an open-addressing hash
table and keeps, per pair, its first use, its last time and its TTL horizon; the pass runs in two parts by chain,
one a core. The blocks are streamed batch by batch from the dataset's Parquet parts in their order, which is time
order for a trace ingested in time order: then no block column is ever whole and the pass works on one batch
while Arrow reads the next. Past ``SWEEP_BLOCKS`` blocks the pass reads them again in sweeps, each judging only
its share of the chains (chain modulo the number of parts), so that the tables and unit state held at once are a
sweep's, not the whole trace's; a request's levels are the max over the sweeps. Any other order is found
out by the pass itself (a block that is not the next one of the next request), and the blocks are then read
whole and placed in time order first (``offset[ord] + pos``, no sort). The time-ordered units and sizes feed the
capacity analysis (``Workload``), so neither pass sorts the blocks; past ``SPILL_BLOCKS`` they go to files as the pass
numbers them (``timeline``: a sweep reads a batch's units back, completes them with its own chains and writes them
again), and the reference LRU reads them back a batch of whole requests at a time. Below ``COMPILED_MIN`` blocks the
same pass runs interpreted (``core/kernels.py``), with dicts for its hash tables, and numba is not loaded at all.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from zumik_cli.analysis.timeline import Timeline
from zumik_cli.core.errors import ZumikError
from zumik_cli.core.kernels import compiled, kernel

IntArray = npt.NDArray[np.int64]

REQ_COLUMNS_SQL = (
    "SELECT rid, ord, ts, ttl, ttl_long, coalesce(long_until, -1) AS long_until, fam_id, tgt_id, kvc_id, "
    "coalesce(n_blocks, 0) AS n_blocks FROM req ORDER BY ord"
)
STORED_COLUMNS = ("rid", "pos", "chain", "tokens", "end_token")
JOINED_BLOCKS_SQL = """
SELECT r.ord::INTEGER AS ord, b.pos::INTEGER AS pos, b.chain, b.tokens::INTEGER AS tokens, b.end_token
FROM request_blocks b JOIN req r USING (rid)
"""
LEVEL_COLUMNS = ("n_fam", "t_fam", "n_tgt", "t_tgt", "n_kvc", "t_kvc", "n_warm", "t_warm", "t_ttl_300", "t_ttl_3600")
BATCH_ROWS = 1 << 20  # rows a batch of the joined blocks
# a pass stops before a block for one of these reasons; it then resumes from that block
DONE, OUT_OF_ORDER, GROW = 0, 1, 2
CHAIN, FAM, TGT, KVC = 0, 1, 2, 3  # the pass's hash tables
MAX_UNITS = 2**31 - 2  # units are int32
PARTS = 2  # the levels pass runs this many parts by chain at once, one a core (a power of two)
# Past this many blocks the pass runs in sweeps: each sweep reads every block again and judges only its own share
# of the chains, so that the hash tables and unit state held at once (about 30 bytes a distinct chain) stay
# those of a sweep's share, whatever the trace's size (1M Mooncake requests are about 30M blocks: one sweep)
SWEEP_BLOCKS = 1 << 25
# Past this many blocks the time-ordered units and sizes the pass leaves (6 bytes a block) go to files as the pass makes
# them (``timeline``), and the capacity analysis reads them back a batch at a time: about 540,000 Mooncake requests
SPILL_BLOCKS = 1 << 24
PREFETCH_AHEAD = 16  # blocks: how far ahead the pass asks for a chain's hash slot
# Below this many blocks the pass runs interpreted, over lists: 0.06 s for 31,000 blocks (1,000 Mooncake requests),
# where importing numba and loading the compiled pass from its cache take 0.35 s, and compiling it on a fresh install
# 3 s or more. A whole diagnose costs about the same CPU either way at 125,000 blocks, and 0.6 s more interpreted at
# 250,000.
COMPILED_MIN = 1 << 17


def level_row(level: int, rows: int) -> int:
    """The row of the pass's results that holds level ``level`` (an index of ``LEVEL_COLUMNS``): of ten rows, its own;
    of six (the three first uses coincide), the key's for the family's and the target's (n or t alike)."""
    first = 10 - rows
    return level - first if level >= first else level % 2


@dataclass(frozen=True)
class Workload:
    """Every request with blocks, in time order, as CSR arrays: the input of ``capacity``.

    ``offsets`` index the time-ordered blocks of ``timeline``: their ``units``, which number each distinct (KV key,
    chain) pair with an int32 id below ``n_units`` (a few ids may go unused), and their ``sizes``, each block's
    tokens, int16 where they fit; ``rids[i]`` is request i's rid. Past ``SPILL_BLOCKS`` blocks the timeline is on
    files: ``batches`` reads it a range of whole requests at a time, where ``units`` and ``sizes`` read it whole.
    """

    offsets: IntArray
    timeline: Timeline
    rids: IntArray
    n_units: int

    @property
    def units(self) -> npt.NDArray[np.int32]:
        return self.timeline.units

    @property
    def sizes(self) -> npt.NDArray[np.integer]:
        return self.timeline.sizes

    @property
    def block_tokens(self) -> int:
        """Every block's tokens added up."""
        return self.timeline.tokens

    def batches(
        self, blocks: int = BATCH_ROWS
    ) -> Iterator[tuple[IntArray, npt.NDArray[np.int32], npt.NDArray[np.integer]]]:
        """The requests in time order, whole, about ``blocks`` blocks at a time (a longer request alone): each batch's
        offsets from 0, and its blocks' units and sizes."""
        n = len(self.offsets) - 1
        first = 0
        while first < n:
            start = int(self.offsets[first])
            last = max(first + 1, int(np.searchsorted(self.offsets, start + blocks, side="right")) - 1)
            last = min(last, n)
            stop = int(self.offsets[last])
            units, sizes = self.timeline.read(start, stop)
            yield self.offsets[first : last + 1] - start, units, sizes
            first = last


def _prefetch_intrinsic() -> Any:
    # LLVM's prefetch hint for the element at a flat index of an array of any shape (read, keep in all cache
    # levels): it changes no result.
    import numba
    from llvmlite import ir
    from numba.extending import intrinsic

    @intrinsic  # type: ignore[misc]
    def prefetch(typingctx: Any, array: Any, index: Any) -> Any:
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            byte = ir.IntType(8).as_pointer()
            int32 = ir.IntType(32)
            hint = builder.module.declare_intrinsic(
                "llvm.prefetch", fnty=ir.FunctionType(ir.VoidType(), [byte, int32, int32, int32])
            )
            address = builder.bitcast(builder.gep(data, [args[1]]), byte)
            builder.call(hint, [address, ir.Constant(int32, 0), ir.Constant(int32, 3), ir.Constant(int32, 1)])
            return context.get_dummy_value()

        return numba.types.void(array, index), codegen

    return prefetch


@kernel(compiled_as=_prefetch_intrinsic)
def _prefetch_hint(array: IntArray, index: int) -> None:
    pass


@kernel
def _home(bits: int, key: int) -> int:
    return int((np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits))


@kernel
def _slot(table: IntArray, bits: int, key: int) -> int:
    # Open addressing (linear probing) on a multiplicative hash of 2^bits slots; each slot holds its key and
    # number side by side (16 bytes), so a probe costs one cache miss, not two. Returns the key's slot, or the
    # empty one where it belongs.
    mask = np.uint64((1 << bits) - 1)
    h = np.uint64(_home(bits, key))
    while table[h, 1] != 0 and table[h, 0] != key:
        h = (h + np.uint64(1)) & mask
    return int(h)


@kernel
def _rehash(old: IntArray, new: IntArray, bits: int) -> None:
    for i in range(old.shape[0]):
        if old[i, 1] != 0:
            h = _slot(new, bits, old[i, 0])
            new[h, 0] = old[i, 0]
            new[h, 1] = old[i, 1]


@kernel
def _number_in_table(table: IntArray, bits: IntArray, used: IntArray, k: int, key: int) -> int:
    # The compiled form of ``_number``, on a table of its own; -1 when a new key would take it past half full. A slot
    # holds its number + 1, so that a table of zeros is empty.
    h = _slot(table, bits[k], key)
    number = table[h, 1] - 1
    if number < 0:
        if 2 * (used[k] + 1) > table.shape[0]:
            return -1
        number = used[k]
        table[h, 0] = key
        table[h, 1] = number + 1
        used[k] += 1
    return number


@kernel(compiled_as="_number_in_table")
def _number(table: dict[int, int], bits: IntArray, used: list[int], k: int, key: int) -> int:
    # The key's number in table k, a new one (the next: ``used[k]`` before the call) for a new key. The interpreter
    # uses a dict, which never fills.
    number = table.get(key, -1)
    if number < 0:
        number = used[k]
        table[key] = number
        used[k] += 1
    return number


@kernel
def _prefetch_slot(flat: IntArray, bits: int, key: int) -> None:
    # Asks for the hash slot of a key a few blocks ahead, so that it is in cache when the key's turn comes.
    _prefetch_hint(flat, np.int64(2 * _home(bits, key)))


@kernel(compiled_as="_prefetch_slot")
def _prefetch(table: dict[int, int], bits: int, key: int) -> None:
    pass  # a dict has no slot to prefetch


@kernel
def _flat_table(table: IntArray) -> IntArray:
    return table.reshape(-1)


@kernel(compiled_as="_flat_table")
def _flat(table: dict[int, int]) -> dict[int, int]:
    return table  # the interpreter's table is a dict


@kernel
def _flush(out: IntArray, r: int, acc: IntArray) -> None:
    # ``out`` holds the last of the ten levels (all ten, or the six past the family and target ones, which equal the
    # key's where the three first uses coincide: see ``level_row``)
    first = 10 - len(out)
    for k in range(10):
        if k >= first:
            out[k - first][r] = max(out[k - first][r], acc[k])
        acc[k] = 0


@kernel
def _pass(
    at: int,
    part: int,
    parts: int,
    checked: bool,
    rids: IntArray,
    pos: IntArray,
    chain: IntArray,
    end_token: IntArray,
    cursor: IntArray,
    req_rid: IntArray,
    n_blocks: IntArray,
    ts: npt.NDArray[np.float64],
    ttl: npt.NDArray[np.float64],
    ttl_long: npt.NDArray[np.float64],
    long_until: IntArray,
    fam_ids: IntArray,
    tgt_ids: IntArray,
    kvc_ids: IntArray,
    coincide: bool,
    chain_table: IntArray,
    fam_table: IntArray,
    tgt_table: IntArray,
    kvc_table: IntArray,
    bits: IntArray,
    used: IntArray,
    first_fam: IntArray,
    first_tgt: IntArray,
    state: npt.NDArray[np.float64],
    out: IntArray,
    units: npt.NDArray[np.int32],
    acc: IntArray,
) -> tuple[int, int]:
    # Blocks ``at``.. of a batch in the dataset's order, those whose chain is ``part`` modulo ``parts`` (a power of
    # two): each part keeps its own tables, state and results. ``cursor`` is (request index, blocks of it seen):
    # ``checked``, each block must be the next one of the request in time order (index = ord - 1), else the
    # pass stops with OUT_OF_ORDER. A table that would pass half full stops it with GROW + the table before
    # anything of the block is changed, so the caller grows it and resumes at the same block. ``fam_ids[r]``,
    # ``tgt_ids[r]``, ``kvc_ids[r]`` are request r's family, target and key numbers; ``state[3 * u:3 * u + 3]`` is
    # (first use, previous time, horizon) of key unit u, NaN for NULL; a NaN time or horizon stands for NULL. A
    # request's levels gather in ``acc`` (ten zeros) and go to ``out`` when its last block is passed (or the pass
    # stops). Only indexing and arithmetic, so that the interpreter runs it over lists as fast as it can.
    n_req = len(n_blocks)
    r, seen = cursor[0], cursor[1]
    code, stop = DONE, len(pos)
    flat = _flat(chain_table)
    for b in range(at, len(pos)):
        if b + PREFETCH_AHEAD < len(pos) and chain[b + PREFETCH_AHEAD] & (parts - 1) == part:
            _prefetch(flat, bits[CHAIN], chain[b + PREFETCH_AHEAD])
        if r < n_req and seen >= n_blocks[r]:
            _flush(out, r, acc)
            while r < n_req and seen >= n_blocks[r]:
                r += 1
                seen = 0
        if r >= n_req or (checked and (rids[b] != req_rid[r] or pos[b] != seen)):
            code, stop = OUT_OF_ORDER, b
            break
        if chain[b] & (parts - 1) != part:  # another part's chain
            seen += 1
            continue
        # a unit's state is set the moment it is numbered (numbers come in order: a new one is ``used`` before
        # the call), before the pass can stop, so no array is filled up front
        fresh = used[CHAIN]
        c = _number(chain_table, bits, used, CHAIN, chain[b])
        if c < 0:
            code, stop = GROW + CHAIN, b
            break
        u = f = g = c
        if not coincide:
            fresh = used[FAM]
            f = _number(fam_table, bits, used, FAM, (fam_ids[r] << 32) | c)
            if f < 0:
                code, stop = GROW + FAM, b
                break
            if f == fresh:
                first_fam[f] = -1
            fresh = used[TGT]
            g = _number(tgt_table, bits, used, TGT, (tgt_ids[r] << 32) | c)
            if g < 0:
                code, stop = GROW + TGT, b
                break
            if g == fresh:
                first_tgt[g] = -1
            fresh = used[KVC]
            u = _number(kvc_table, bits, used, KVC, (kvc_ids[r] << 32) | c)
            if u < 0:
                code, stop = GROW + KVC, b
                break
        s = 3 * u
        if u == fresh:
            state[s] = state[s + 1] = state[s + 2] = math.nan
        seen += 1
        units[b] = u * parts + part
        t = ts[r]
        no_time = math.isnan(t)
        n = pos[b] + 1
        e = end_token[b]
        if not coincide:
            if first_fam[f] < 0:
                first_fam[f] = r
            elif first_fam[f] < r:
                acc[0] = max(acc[0], n)
                acc[1] = max(acc[1], e)
            if first_tgt[g] < 0:
                first_tgt[g] = r
            elif first_tgt[g] < r:
                acc[2] = max(acc[2], n)
                acc[3] = max(acc[3], e)
        first = state[s]
        if math.isnan(first):
            state[s] = r
        elif first < r:
            if coincide:
                acc[0] = max(acc[0], n)
                acc[1] = max(acc[1], e)
                acc[2] = max(acc[2], n)
                acc[3] = max(acc[3], e)
            acc[4] = max(acc[4], n)
            acc[5] = max(acc[5], e)
            a = state[s + 2]
            if no_time or math.isnan(a) or t <= a:
                acc[6] = max(acc[6], n)
                acc[7] = max(acc[7], e)
            p = state[s + 1]
            if no_time or math.isnan(p) or t - p <= 300:
                acc[8] = max(acc[8], e)
            if no_time or math.isnan(p) or t - p <= 3600:
                acc[9] = max(acc[9], e)
        state[s + 1] = t
        horizon = t + (ttl_long[r] if e <= long_until[r] else ttl[r])
        if not no_time and (math.isnan(state[s + 2]) or horizon > state[s + 2]):
            state[s + 2] = horizon
    if r < n_req:
        _flush(out, r, acc)
    cursor[0], cursor[1] = r, seen
    return code, stop


@dataclass(frozen=True)
class _Interpreted:
    """The hash tables and unit state of a part run by the interpreter: dicts and lists, sized for every block."""

    tables: tuple[dict[int, int], ...]
    first_fam: list[int]
    first_tgt: list[int]
    state: list[float]  # three a unit, as ``_pass`` reads it

    @classmethod
    def sized(cls, blocks: int) -> _Interpreted:
        # a part numbers no more units than there are blocks: a pass stops at a block past the requests' count
        rows = blocks + 1
        return cls(({}, {}, {}, {}), [0] * rows, [0] * rows, [math.nan] * (3 * rows))


class _Part:
    """The state of one part of a levels pass: hash tables, per-unit state and per-request results, grown on demand.

    A part sees every block (to follow the requests) but numbers and judges only its own chains; no (key, chain)
    pair belongs to two parts, so the parts run side by side and their per-request results combine by max.
    """

    def __init__(
        self, requests: _Requests, part: int, parts: int, chain_bits: int, out: npt.NDArray[np.integer] | None = None
    ) -> None:
        self.requests, self.part, self.parts = requests, part, parts
        self.cursor = np.zeros(2, dtype=np.int64)
        self.used = np.zeros(4, dtype=np.int64)
        # pair tables start smaller: they grow only where families, targets and keys differ
        self.bits = np.array([chain_bits] + [1 if requests.coincide else min(chain_bits, 20)] * 3, dtype=np.int64)
        self.tables = tuple(_empty_table(int(b)) for b in self.bits)
        # rows are set as units are numbered (see _pass): nothing to fill, and untouched pages cost nothing
        self.first_fam = np.empty(len(self.tables[FAM]) // 2 + 1, dtype=np.int64)
        self.first_tgt = np.empty(len(self.tables[TGT]) // 2 + 1, dtype=np.int64)
        self.state = np.empty((len(self.tables[CHAIN if requests.coincide else KVC]) // 2 + 1, 3))
        # int32 while every token offset fits (``widen``): a block count always does; the family and target levels
        # only where they differ from the key's (``level_row``). A part of a later sweep goes on in the results of one
        # of the sweep before, as a request's levels are the max over every part's
        rows = 6 if requests.coincide else 10
        self.out = np.zeros((rows, len(requests.req_rid)), dtype=np.int32) if out is None else out
        # below COMPILED_MIN blocks in all, the interpreter runs the pass, on tables and unit state of its own
        blocks = int(requests.n_blocks.sum())
        self.interpreted = _Interpreted.sized(blocks) if blocks < COMPILED_MIN else None

    def feed(
        self,
        rids: IntArray,
        pos: IntArray,
        chain: IntArray,
        end_token: IntArray,
        units: npt.NDArray[np.int32],
        checked: bool,
    ) -> bool:
        if self.interpreted is not None:
            return self._interpret(self.interpreted, rids, pos, chain, end_token, units, checked)
        req = self.requests
        at = 0
        while True:
            code, at = compiled(_pass)(
                at, self.part, self.parts, checked, rids, pos, chain, end_token, self.cursor, req.req_rid,
                req.n_blocks, req.ts, req.ttl, req.ttl_long, req.long_until, *req.pair_ids, req.coincide, *self.tables,
                self.bits, self.used, self.first_fam, self.first_tgt, self.state.reshape(-1), self.out, units,
                np.zeros(10, dtype=np.int64),
            )  # fmt: skip
            if code == DONE:
                return True
            if code == OUT_OF_ORDER:
                return False
            self._grow(code - GROW)

    def _interpret(
        self,
        plain: _Interpreted,
        rids: IntArray,
        pos: IntArray,
        chain: IntArray,
        end_token: IntArray,
        units: npt.NDArray[np.int32],
        checked: bool,
    ) -> bool:
        # The same pass over lists, which the interpreter indexes several times faster than numpy arrays; the
        # part's cursor, counts and results go in and come back as the compiled pass leaves them.
        cursor, used, out, numbered = self.cursor.tolist(), self.used.tolist(), self.out.tolist(), [0] * len(chain)
        code, _ = _pass(
            0, self.part, self.parts, checked, rids.tolist(), pos.tolist(), chain.tolist(), end_token.tolist(), cursor,
            *self.requests.as_lists, *plain.tables, self.bits.tolist(), used, plain.first_fam, plain.first_tgt,
            plain.state, out, numbered, [0] * 10,
        )  # fmt: skip
        self.cursor[:], self.used[:], self.out[:] = cursor, used, out
        mine = (chain & (self.parts - 1)) == self.part
        units[mine] = np.array(numbered, dtype=np.int32)[mine]
        return bool(code == DONE)

    def widen(self) -> None:
        self.out = self.out.astype(np.int64)

    def complete(self) -> bool:
        r, seen = int(self.cursor[0]), int(self.cursor[1])
        rest = self.requests.n_blocks[r:]
        return r >= len(self.requests.n_blocks) or (seen == rest[0] and not rest[1:].any())

    def _grow(self, k: int) -> None:
        old = self.tables[k]
        if self.used[k] >= MAX_UNITS // self.parts:
            raise ZumikError("more than 2^31 distinct blocks: split the dataset by tenant or time and compare parts")
        self.bits[k] += 1
        new = _empty_table(int(self.bits[k]))
        compiled(_rehash)(old, new, int(self.bits[k]))
        tables = list(self.tables)
        tables[k] = new
        self.tables = tuple(tables)
        cap = new.shape[0] // 2 + 1
        if k == (CHAIN if self.requests.coincide else KVC):
            self.state = _extend(self.state, cap)
        elif k == FAM:
            self.first_fam = _extend(self.first_fam, cap)
        elif k == TGT:
            self.first_tgt = _extend(self.first_tgt, cap)


@dataclass(frozen=True)
class _Requests:
    """The requests in time order (index = ord - 1), as every part of a pass reads them."""

    req_rid: IntArray
    n_blocks: IntArray
    ts: npt.NDArray[np.float64]
    ttl: npt.NDArray[np.float64]  # of blocks past the last 1-hour breakpoint (all blocks, without one)
    ttl_long: npt.NDArray[np.float64]  # of blocks that end at or before it
    long_until: IntArray  # the token offset of that breakpoint; -1 for none
    pair_ids: IntArray  # (family, target, key) number per request
    coincide: bool

    @functools.cached_property
    def as_lists(self) -> tuple[Any, ...]:
        """The requests as ``_pass`` takes them, in lists for the interpreter."""
        columns = (self.req_rid, self.n_blocks, self.ts, self.ttl, self.ttl_long, self.long_until, *self.pair_ids)
        return (*(column.tolist() for column in columns), self.coincide)


class _Pass:
    """One levels pass over every block in time order, in ``sweeps`` sweeps over the blocks, each of ``PARTS`` parts by
    chain that run on their own threads: ``PARTS * sweeps`` parts in all, sweep s running parts s * PARTS, ...."""

    def __init__(
        self, req: pa.Table, n_blocks: IntArray, coincide: bool, expected_blocks: int, sweeps: int | None = None
    ) -> None:
        # the columns as the pass reads them, each a view of ``req``'s where it can be (no copy to hold beside it)
        rid = np.ascontiguousarray(req.column("rid").to_numpy(), dtype=np.int64)
        self.requests = _Requests(
            req_rid=rid,
            n_blocks=np.ascontiguousarray(n_blocks, dtype=np.int64),
            ts=_floats(req.column("ts")),
            ttl=_floats(req.column("ttl").fill_null(np.inf)),
            ttl_long=_floats(req.column("ttl_long").fill_null(np.inf)),
            long_until=np.ascontiguousarray(req.column("long_until").to_numpy(), dtype=np.int64),
            # read only where the three first uses differ (``coincide`` false)
            pair_ids=(
                np.stack([req.column(name).to_numpy().astype(np.int64) for name in ("fam_id", "tgt_id", "kvc_id")])
                if len(rid) and not coincide
                else np.zeros((3, 0), dtype=np.int64)
            ),
            coincide=coincide,
        )
        # a power of two, as the parts are chains modulo their number
        self.sweeps = sweeps or 1 << max(0, -(-expected_blocks // SWEEP_BLOCKS) - 1).bit_length()
        self.n_parts = PARTS * self.sweeps
        # each part's chain table sized for half its blocks to be distinct (at most 2^23 slots, 128 MiB): no
        # rehash at the Mooncake mix
        self.chain_bits = min(23, max(10, (expected_blocks // (2 * self.n_parts)).bit_length() + 1))
        self.sweep = 0
        self.most_used = 0
        # the per-request results, one array a part of a sweep, each carried on by a part of the next sweep: PARTS
        # arrays whatever the number of sweeps (40 bytes a request each, while int32)
        self.results: list[npt.NDArray[np.integer]] = []
        self.parts = self._sweep_parts()

    def _sweep_parts(self) -> list[_Part]:
        first = self.sweep * PARTS
        carried: list[npt.NDArray[np.integer] | None] = [*self.results] or [None] * PARTS
        return [
            _Part(self.requests, part, self.n_parts, self.chain_bits, out)
            for part, out in zip(range(first, first + PARTS), carried, strict=True)
        ]

    def next_sweep(self) -> bool:
        """Keep the results of the sweep done and let its tables go; False when it was the last one."""
        self.results, self.most_used = [part.out for part in self.parts], self._most_used()
        self.parts = []
        self.sweep += 1
        if self.sweep == self.sweeps:
            return False
        self.parts = self._sweep_parts()
        return True

    def _most_used(self) -> int:
        used = [int(part.used[CHAIN if self.requests.coincide else KVC]) for part in self.parts]
        return max([self.most_used, *used])

    def start(
        self,
        pool: ThreadPoolExecutor,
        rids: IntArray,
        pos: IntArray,
        chain: IntArray,
        end_token: IntArray,
        units: npt.NDArray[np.int32],
        checked: bool = True,
    ) -> list[Future[bool]]:
        """Start every part on the next blocks; each future says False when a block is out of time order.

        Unchecked, the blocks are taken as the next ones whatever their rid and position (``rids`` unused). Called
        once the futures of the previous call are done.
        """
        if end_token.size and int(end_token.max()) > np.iinfo(self.parts[0].out.dtype).max:
            for part in self.parts:
                part.widen()
        return [pool.submit(p.feed, rids, pos, chain, end_token, units, checked) for p in self.parts]

    def complete(self) -> bool:
        """Every request's blocks were seen."""
        return all(part.complete() for part in self.parts)

    @property
    def out(self) -> npt.NDArray[np.integer]:
        """Per request (columns) the levels (rows: ``level_row``), the parts' combined (into the first one's): int32,
        or int64 where a token offset needs it."""
        results: list[npt.NDArray[np.integer]] = [part.out for part in self.parts] or self.results
        if any(r.dtype != results[0].dtype for r in results):
            results = [r.astype(np.int64) for r in results]
        out = results[0]
        for other in results[1:]:
            np.maximum(out, other, out=out)
        return out

    @property
    def n_units(self) -> int:
        """A bound on the unit ids: of ``n`` parts, part p numbers its units p, p + n, p + 2n, ..."""
        return self.n_parts * self._most_used()


def _floats(column: pa.ChunkedArray) -> npt.NDArray[np.float64]:
    # NULL as NaN; a view of the column's buffer when it is one chunk of doubles without NULLs
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def _empty_table(bits: int) -> IntArray:
    # zeros from calloc: the kernel maps them as pages are first touched, and no pass fills them
    return np.zeros((1 << bits, 2), dtype=np.int64)


def _extend(values: npt.NDArray[Any], rows: int) -> npt.NDArray[Any]:
    grown = np.empty((rows, *values.shape[1:]), dtype=values.dtype)
    grown[: len(values)] = values
    return grown


def _stored_batches(parts: list[str]) -> Iterator[pa.Table]:
    # The dataset's parts in their order, a row group at a time (ingest writes one per batch), read by Arrow on its
    # threads: for this plain scan less than half the CPU of DuckDB's, which builds every Arrow batch in fresh
    # memory (about 200,000 page faults for 30M blocks), and less memory held than Arrow's batch iterator.
    import pyarrow.parquet as pq

    for path in parts:
        with pq.ParquetFile(path, pre_buffer=False) as stored:
            for group in range(stored.num_row_groups):
                yield stored.read_row_group(group, columns=list(STORED_COLUMNS), use_threads=True)


def _ordered_pass(parts: list[str], run: _Pass, total: int) -> Timeline | None:
    # The blocks as stored, batch by batch, once a sweep; the parts of the sweep on one batch on their threads
    # while Arrow reads the next (all release the GIL). None as soon as a block is not the next one in time order,
    # or is missing (found by the first sweep: the others read the same blocks). Past ``SPILL_BLOCKS`` the units
    # and sizes go to files: a batch's units are written once the parts are done with them, and read back for the
    # next sweep to complete with its own chains.
    spilled = Timeline.spilled(total) if total > SPILL_BLOCKS else None
    units = np.empty(0 if spilled else total, dtype=np.int32)
    # int16 while every block's tokens fit (a hash-id block is a few hundred): half the memory of int32
    sizes: npt.NDArray[np.integer] = np.empty(0 if spilled else total, dtype=np.int16)
    arrow_pool = pa.default_memory_pool()
    with ThreadPoolExecutor(max_workers=PARTS, thread_name_prefix="zumik-levels") as pool:
        while True:
            at = 0
            pending: list[Future[bool]] = []
            filled: tuple[int, npt.NDArray[np.int32]] | None = None  # the batch the parts fill, when spilled
            for batch in _stored_batches(parts):
                n = batch.num_rows
                if at + n > total or not all(f.result() for f in pending):
                    return None
                if spilled and filled:
                    spilled.write_units(*filled)
                # Arrow's pool keeps the batches read and freed on its threads for reuse, and reuses little of it:
                # without this, about 150 MB more at 30M blocks
                arrow_pool.release_unused()
                tokens = batch.column("tokens").to_numpy()
                if spilled:
                    if run.sweep == 0:
                        spilled.write_sizes(at, tokens)
                    share = np.empty(n, np.int32) if run.sweep == 0 else spilled.read_units(at, at + n)
                    filled = (at, share)
                else:
                    if run.sweep == 0:
                        if n and int(tokens.max()) > np.iinfo(sizes.dtype).max:
                            sizes = sizes.astype(np.int32)  # a block's tokens fit int32 (``_joined_columns`` casts)
                        sizes[at : at + n] = tokens
                    share = units[at : at + n]
                rids, pos, chain, end_token = (
                    batch.column(name).to_numpy() for name in ("rid", "pos", "chain", "end_token")
                )
                pending = run.start(pool, rids, pos, chain, end_token, share)
                at += n
            if not all(f.result() for f in pending) or at != total or not run.complete():
                return None
            if spilled and filled:
                spilled.write_units(*filled)
            if not run.next_sweep():
                return spilled or Timeline(units, sizes)


@kernel
def _place(ords: IntArray, pos: IntArray, offsets: IntArray, slot: IntArray, filled: npt.NDArray[np.bool_]) -> bool:
    # Block i goes to slot[i] = offsets[ord - 1] + pos; valid only when each request's positions are 0..n-1 exactly
    # once. ``filled`` starts all false.
    for i in range(len(ords)):
        o = ords[i] - 1
        p = pos[i]
        if p < 0 or p >= offsets[o + 1] - offsets[o]:
            return False
        s = offsets[o] + p
        if filled[s]:
            return False
        filled[s] = True
        slot[i] = s
    return True


def _placed(ords: IntArray, pos: IntArray, offsets: IntArray) -> IntArray | None:
    # Each block's place in time order (see _place), None when positions have gaps or repeats.
    n = len(ords)
    if n < COMPILED_MIN:
        slots = [0] * n
        placed = _place(ords.tolist(), pos.tolist(), offsets.tolist(), slots, [False] * n)
        return np.array(slots, dtype=np.int64) if placed else None
    slot = np.empty(n, dtype=np.int64)
    return slot if compiled(_place)(ords, pos, offsets, slot, np.zeros(n, dtype=np.bool_)) else None


def _joined_columns(con: duckdb.DuckDBPyConnection) -> dict[str, IntArray]:
    # Streamed batch by batch into numpy arrays: DuckDB never holds the whole join result.
    rows = con.execute("SELECT count(*) FROM request_blocks b JOIN req r USING (rid)").fetchall()[0][0]
    names = ("ord", "pos", "chain", "tokens", "end_token")
    # int32 where a value is a count of requests, of a request's blocks or of a block's tokens (DuckDB refuses
    # the cast rather than wrap, should one ever not fit)
    narrow = ("ord", "pos", "tokens")
    columns = {name: np.empty(rows, dtype=np.int32 if name in narrow else np.int64) for name in names}
    at = 0
    for batch in con.sql(JOINED_BLOCKS_SQL).to_arrow_reader(BATCH_ROWS):
        n = batch.num_rows
        for name in names:
            columns[name][at : at + n] = batch.column(name).to_numpy()
        at += n
    if at != rows:
        raise RuntimeError(f"request_blocks changed while read: {at} rows, then {rows}")
    return columns


def _placed_pass(con: duckdb.DuckDBPyConnection, req: pa.Table, coincide: bool) -> tuple[_Pass, Timeline]:
    # Any order: every block joined to its request's order, placed at offsets[ord - 1] + pos, then one pass.
    columns = _joined_columns(con)
    ords, pos = columns.pop("ord"), columns.pop("pos")
    n_req = req.num_rows
    counts = np.bincount(ords - 1, minlength=n_req) if len(ords) else np.zeros(n_req, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    slot = _placed(ords, pos, offsets)
    if slot is not None:
        order = np.empty_like(slot)
        order[slot] = np.arange(len(slot), dtype=np.int64)
    else:  # positions with gaps or repeats: sort them instead
        order = np.lexsort((pos, ords))
    del slot, ords
    run = _Pass(req, counts, coincide, len(order), sweeps=1)  # every block is held here anyway
    units = np.empty(len(order), dtype=np.int32)
    # in time order by construction, repeated or missing positions included: the pass does not check it
    placed_pos = pos[order]
    chain, end_token = columns.pop("chain")[order], columns.pop("end_token")[order]
    with ThreadPoolExecutor(max_workers=PARTS, thread_name_prefix="zumik-levels") as pool:
        for done in run.start(pool, placed_pos, placed_pos, chain, end_token, units, False):
            done.result()
    return run, Timeline(units, columns.pop("tokens")[order].astype(np.int32, copy=False))


def compute_levels(con: duckdb.DuckDBPyConnection, coincide: bool, parts: list[str]) -> Workload:
    """Create the temp table ``levels`` (one row per rid with blocks) from ``req`` and ``request_blocks``.

    ``coincide``: each family has one target and each target one key, so the three first uses are one.
    ``parts``: the Parquet files of ``request_blocks``, in the order of the view. Returns the time-ordered
    blocks for the capacity analysis.
    """
    req = con.sql(REQ_COLUMNS_SQL).to_arrow_table()
    n_blocks = req.column("n_blocks").to_numpy()
    total = int(n_blocks.sum())
    run = _Pass(req, n_blocks, coincide, total)
    del req, n_blocks  # the pass keeps the columns it reads
    timeline = _ordered_pass(parts, run, total)
    if timeline is None:
        del run
        run, timeline = _placed_pass(con, con.sql(REQ_COLUMNS_SQL).to_arrow_table(), coincide)
    counts, n_units, out = run.requests.n_blocks, run.n_units, run.out
    has_blocks = counts > 0
    rids = run.requests.req_rid[has_blocks]
    del run  # its tables and unit state (hundreds of MB at 1M requests) go before DuckDB takes the levels
    picked = [row if has_blocks.all() else row[has_blocks] for row in out]
    table = pa.table({"rid": rids, **{name: picked[level_row(k, len(out))] for k, name in enumerate(LEVEL_COLUMNS)}})
    del picked
    del out
    con.register("levels_in", table)
    # a table of DuckDB's own, not a view of the Arrow one: the breakpoint and sibling joins plan far better on it
    # (on 1 GB of agent traffic the view took the peak from 1.08 GB to 1.56 GB; docs/benchmarks.md); BIGINT
    # whatever width the pass counted in
    if con.execute("SELECT count(DISTINCT rid) = count(*) FROM req").fetchall()[0][0]:
        columns = ", ".join(f"{name}::BIGINT AS {name}" for name in LEVEL_COLUMNS)
        con.execute(f"CREATE OR REPLACE TEMP TABLE levels AS SELECT rid, {columns} FROM levels_in")
    else:  # a rid twice in req (one request ingested twice) is one row, as the SQL's GROUP BY rid made it
        aggregates = ", ".join(f"max({name})::BIGINT AS {name}" for name in LEVEL_COLUMNS)
        con.execute(f"CREATE OR REPLACE TEMP TABLE levels AS SELECT rid, {aggregates} FROM levels_in GROUP BY rid")
    con.unregister("levels_in")
    return Workload(
        offsets=np.concatenate([[0], np.cumsum(counts[has_blocks])]).astype(np.int64),
        timeline=timeline,
        rids=rids,
        n_units=n_units,
    )

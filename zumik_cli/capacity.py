"""Cache-capacity analysis: how much prefix reuse an LRU cache of a given size keeps.

A workload is a time-ordered list of requests, each an ordered list of cache units (prefix-chained blocks),
held as flat arrays: ``offsets`` (CSR, ``n_requests + 1``), ``unit_ids`` and ``unit_tokens`` (per access).
A request's reuse at a capacity is the token sum of its *leading* units present in the cache.

Convention (the one behind the reference figures in ``shared/data/README.md``): a request's hits are looked
up against the cache as it was before the request; then its units are touched in order, first unit first,
evicting the least recently used unit while the cache is over capacity. Under this convention a unit is
present in a cache of K units iff its LRU stack depth is at most K (Mattson et al., 1970), so one pass of
stack depths gives the hit for every capacity. ``simulate_lru`` replays one capacity directly, to check that
pass and to model an engine whose eviction order differs (``order="vllm"``).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

FIRST_ACCESS = np.iinfo(np.int64).max
"""Depth of a unit never seen before: a miss at every finite capacity and in the unbounded cache."""

Order = Literal["request", "vllm"]
"""Recency order of a request's units once it has run: see ``simulate_lru``."""

IntArray = npt.NDArray[np.int64]

_TOUCHED_IN_REVERSE = {"request": False, "vllm": True}
"""How each order of ``simulate_lru`` retires a request, as a touch order the stack-depth pass can follow."""

_MAX_ACCESSES = 2**31
"""The Fenwick tree counts in int32 (half the memory traffic of int64, about 1.5x faster at 10^7 accesses)."""


def _stack_depths_kernel(
    offsets: IntArray, dense_ids: npt.NDArray[np.integer], n_units: int, reverse: bool
) -> IntArray:
    # A Fenwick tree over touch times holds a 1 at each unit's last touch, so the distinct units touched since
    # a unit's last touch is a suffix count. Compiled by numba when available; the same code runs as Python.
    n_access = dense_ids.shape[0]
    tree = np.zeros(n_access + 1, dtype=np.int32)
    last = np.full(n_units, -1, dtype=np.int64)
    depths = np.empty(n_access, dtype=np.int64)
    sentinel = np.int64(FIRST_ACCESS)
    distinct = 0
    now = 0
    for r in range(offsets.shape[0] - 1):
        start = offsets[r]
        end = offsets[r + 1]
        running = np.int64(0)
        for j in range(start, end):
            seen_at = last[dense_ids[j]]
            if seen_at < 0:
                depth = sentinel
            else:
                up_to = np.int64(0)
                i = seen_at + 1
                while i > 0:
                    up_to += tree[i]
                    i -= i & -i
                depth = 1 + distinct - up_to
            running = max(running, depth)
            depths[j] = running
        for step in range(end - start):
            j = end - 1 - step if reverse else start + step
            unit = dense_ids[j]
            seen_at = last[unit]
            if seen_at < 0:
                distinct += 1
            else:
                i = seen_at + 1
                while i <= n_access:
                    tree[i] -= 1
                    i += i & -i
            i = now + 1
            while i <= n_access:
                tree[i] += 1
                i += i & -i
            last[unit] = now
            now += 1
    return depths


@functools.cache
def _stack_depths() -> Callable[[IntArray, npt.NDArray[np.integer], int, bool], IntArray]:
    # Compiled on first use so that importing this module stays cheap; the plain-Python fallback gives the
    # same answers, only about a hundred times slower.
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency of zumik
        return _stack_depths_kernel
    return numba.njit(cache=True, nogil=True)(_stack_depths_kernel)


def _dense_ids(ids: IntArray) -> tuple[npt.NDArray[np.integer], int]:
    # Hash-based encoding (first seen = 0, 1, ...): several times faster than np.unique's sort at 10^7 ids.
    indices = pa.array(ids, type=pa.int64()).dictionary_encode().indices
    n_units = int(pc.max(indices).as_py() or 0) + 1 if len(indices) else 0
    return indices.to_numpy(zero_copy_only=False), n_units


def _check_workload(offsets: IntArray, unit_ids: IntArray, unit_tokens: IntArray | None = None) -> None:
    if offsets.ndim != 1 or offsets.shape[0] < 1 or offsets[0] != 0:
        raise ValueError("offsets must be a 1-D array that starts at 0 (CSR offsets, n_requests + 1 long)")
    if offsets[-1] != unit_ids.shape[0]:
        raise ValueError(f"offsets end at {offsets[-1]} but there are {unit_ids.shape[0]} unit ids")
    if np.any(np.diff(offsets) < 0):
        raise ValueError("offsets must be non-decreasing")
    if unit_tokens is not None and unit_tokens.shape != unit_ids.shape:
        raise ValueError("unit_tokens must have one entry per unit id")


def _as_int64(values: npt.ArrayLike) -> IntArray:
    return np.ascontiguousarray(values, dtype=np.int64)


def lru_prefix_depths(offsets: npt.ArrayLike, unit_ids: npt.ArrayLike, order: Order = "request") -> IntArray:
    """Per unit access, the smallest LRU capacity (in units) at which it is a leading-prefix hit.

    That is the running max, within its request, of the LRU stack depth at the moment the request starts
    (1 + distinct other units touched since this unit's last touch; ``FIRST_ACCESS`` if never seen). An
    access is a hit in a cache of K units iff its value is <= K. ``order`` is the recency order of a
    request's units after it runs, as in ``simulate_lru``. O(N log N) in the number of accesses.
    """
    offsets_arr = _as_int64(offsets)
    ids = _as_int64(unit_ids)
    _check_workload(offsets_arr, ids)
    if order not in _TOUCHED_IN_REVERSE:
        raise ValueError(f"unknown order {order!r}; use one of {sorted(_TOUCHED_IN_REVERSE)}")
    if ids.shape[0] >= _MAX_ACCESSES:
        raise ValueError(f"at most {_MAX_ACCESSES - 1} unit accesses per call; split the workload by time")
    dense, n_units = _dense_ids(ids)
    return _stack_depths()(offsets_arr, dense, n_units, _TOUCHED_IN_REVERSE[order])


def capacity_curve(
    offsets: npt.ArrayLike,
    unit_ids: npt.ArrayLike,
    unit_tokens: npt.ArrayLike,
    capacities_tokens: Sequence[int | None],
    unit_size_tokens: int,
    order: Order = "request",
) -> list[tuple[int | None, int]]:
    """Token-weighted LRU hits for each capacity, from one pass of stack depths.

    A capacity in tokens holds ``capacity // unit_size_tokens`` units (whole units only: a block-granular
    cache cannot keep part of a block). ``None`` is an unbounded cache: every leading unit seen before is a
    hit. Returns ``(capacity, hit_tokens)`` pairs in the order given. The reference figures count capacity in
    decimal tokens (1M = 1,000,000 tokens = 1,953 blocks of 512; 1,048,576 does not reproduce them).
    """
    if unit_size_tokens <= 0:
        raise ValueError(f"unit_size_tokens must be positive, got {unit_size_tokens}")
    tokens = _as_int64(unit_tokens)
    ids = _as_int64(unit_ids)
    _check_workload(_as_int64(offsets), ids, tokens)
    depths = lru_prefix_depths(offsets, ids, order=order)
    # Level k holds the tokens first hit at k units (level 0: never hit). Weights go through float64, exact
    # while the workload has fewer than 2**53 tokens.
    levels = np.where(depths == FIRST_ACCESS, 0, depths)
    tokens_by_level = np.rint(np.bincount(levels, weights=tokens)).astype(np.int64)
    hits_up_to = np.cumsum(tokens_by_level) - tokens_by_level[0] if levels.size else np.zeros(1, np.int64)
    top = hits_up_to.shape[0] - 1
    curve: list[tuple[int | None, int]] = []
    for capacity in capacities_tokens:
        if capacity is not None and capacity < 0:
            raise ValueError(f"capacities must be non-negative or None, got {capacity}")
        level = top if capacity is None else min(capacity // unit_size_tokens, top)
        curve.append((capacity, int(hits_up_to[level])))
    return curve


CacheState = OrderedDict[Hashable, None]


def _retire_in_request_order(cache: CacheState, ids: Sequence[Hashable]) -> None:
    # The reference convention: units touched first to last, so a request's last unit is the most recent.
    for unit in ids:
        cache[unit] = None
        cache.move_to_end(unit)


def _retire_vllm(cache: CacheState, ids: Sequence[Hashable]) -> None:
    # vLLM v1 frees a finished request's blocks in reverse onto the tail of its free queue and evicts from the
    # head, so the request's tail blocks go before its head blocks: the first unit ends up the most recent.
    # lru_prefix_depths(order="vllm") follows the same order; change both together (the tests hold them equal).
    for unit in reversed(ids):
        cache[unit] = None
        cache.move_to_end(unit)


_RETIRE_ORDERS: dict[str, Callable[[CacheState, Sequence[Hashable]], None]] = {
    "request": _retire_in_request_order,
    "vllm": _retire_vllm,
}


def simulate_lru(
    offsets: npt.ArrayLike,
    unit_ids: npt.ArrayLike,
    unit_tokens: npt.ArrayLike,
    capacity_units: int | None,
    order: Order = "request",
) -> IntArray:
    """Per-request hit tokens from replaying an LRU cache of ``capacity_units`` units (``None``: unbounded).

    Each request counts its leading units present in the cache, then retires its units into the recency
    order and the cache evicts least recently used units down to capacity. ``order="request"`` is the
    reference convention (last unit most recent); ``order="vllm"`` retires them in reverse (first unit most
    recent), as vLLM v1 does. Requests run one after another: no two hold blocks at once. Slow (Python per
    access) on purpose: it is the plain statement that ``capacity_curve`` is checked against.
    """
    offsets_arr = _as_int64(offsets)
    ids = _as_int64(unit_ids)
    tokens = _as_int64(unit_tokens)
    _check_workload(offsets_arr, ids, tokens)
    if capacity_units is not None and capacity_units < 0:
        raise ValueError(f"capacity_units must be non-negative or None, got {capacity_units}")
    retire = _RETIRE_ORDERS.get(order)
    if retire is None:
        raise ValueError(f"unknown order {order!r}; use one of {sorted(_RETIRE_ORDERS)}")
    id_list: list[int] = ids.tolist()
    token_list: list[int] = tokens.tolist()
    cache: CacheState = OrderedDict()
    hits = np.zeros(offsets_arr.shape[0] - 1, dtype=np.int64)
    for r, (start, end) in enumerate(zip(offsets_arr[:-1].tolist(), offsets_arr[1:].tolist(), strict=True)):
        hit = 0
        for j in range(start, end):
            if id_list[j] not in cache:
                break
            hit += token_list[j]
        hits[r] = hit
        retire(cache, id_list[start:end])
        while capacity_units is not None and len(cache) > capacity_units:
            cache.popitem(last=False)
    return hits

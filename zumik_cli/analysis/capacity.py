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

Units of different sizes (content blocks of different token lengths) use the token-weighted form. Give each
unit u a fixed size s(u) >= 0 and let its token depth be D(u) = s(u) + the sizes of the distinct units touched
since u's last touch. A cache of C tokens that, after each request, evicts its least recently used unit while
the held total exceeds C, holds exactly the units with D(u) <= C. Proof, by induction over requests: D never
falls from the most to the least recent unit, so that set is a recency suffix; say the cache is that set
before a request. A touch makes its unit the most recent and leaves every other D the same or larger, so after
the request's touches the new set holds only units the cache holds (touched ones, or ones already in the old
set), and the held units outside it are older than all of it. While such a unit v is held, so is every unit
touched after v (if v was touched in this request, all later touches are; if not, v was in the old set, and so
were the units more recent than v that the request did not touch), so the held total is at least D(v) > C and
eviction goes on; once they are gone the total is D of the oldest unit left, <= C, and it stops. Evicting
after each touch instead reaches the same set at each request boundary, the only time hits are looked up. The
fixed size matters: with C = 10, touching A (5) then B (6) evicts A, and if B then shrank to 1 token, D(A) = 6
<= 10 while A is gone; so the token-weighted functions refuse a unit whose size differs between accesses.
``lru_prefix_token_depths`` gives these depths (a Fenwick tree holding each unit's size at its last touch
time, where the unit form holds a 1) and ``simulate_lru_tokens`` replays the policy to check them.

A curve needs exact depths only up to its largest finite capacity, the pass's horizon: a unit deeper than that
stays deeper until it is touched again, and then its depth starts over. So the tree keeps only the units within
the horizon, renumbered in recency order each time it fills, and stays about twice their number (small enough
to stay in cache, however many distinct units the workload has); the curves add each access's tokens to the
first capacity it hits at inside the pass, and keep nothing per access. The pass is resumable (``LruPass``): fed
whole requests a batch at a time, it holds per unit only its last touch, so ``streamed_capacity_curve`` and
``streamed_request_hits`` run over a timeline read from files, whatever its length.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from zumik_cli.core.kernels import compiled, kernel

FIRST_ACCESS = np.iinfo(np.int64).max
"""Depth of a unit never seen before: a miss at every finite capacity and in the unbounded cache."""

Order = Literal["request", "vllm"]
"""Recency order of a request's units once it has run: see ``simulate_lru``."""

IntArray = npt.NDArray[np.int64]

_TOUCHED_IN_REVERSE = {"request": False, "vllm": True}
"""How each order of ``simulate_lru`` retires a request, as a touch order the stack-depth pass can follow."""

_MAX_ACCESSES = 2**31
"""The pass keeps touch positions in int32, and counts units in an int32 tree (half the memory traffic)."""

_EXACT = 2**62
"""A horizon beyond every depth (a workload's sizes add up to less, see ``_unit_sizes``): all come out exact."""

_NEVER_SEEN = -1
_DROPPED = -2
"""The touch position of a unit the pass dropped: seen, and deeper than the horizon until touched again."""

# Below this many accesses the pass runs interpreted, over lists: 0.06 to 0.08 s for 31,000 accesses (1,000 Mooncake
# requests), where importing numba and loading the compiled pass from its cache take 0.35 s, and compiling it on a
# fresh install 3 s or more. The levels pass holds the measurements behind the threshold (``levels.COMPILED_MIN``).
COMPILED_MIN = 1 << 17


@kernel
def _lru_pass_kernel(
    offsets: IntArray,
    dense_ids: npt.NDArray[np.integer],
    reverse: bool,
    horizon: int,
    tree: npt.NDArray[np.integer],
    unit_at: npt.NDArray[np.int32],
    last: npt.NDArray[np.int32],
    counters: IntArray,
    unit_sizes: IntArray | None = None,
    depths: IntArray | None = None,
    weights: npt.NDArray[np.integer] | None = None,
    bounds: IntArray | None = None,
    hist: IntArray | None = None,
) -> tuple[npt.NDArray[np.integer], npt.NDArray[np.int32]]:
    # A Fenwick tree over touch positions holds each unit's size (1 when unit_sizes is None) at its last touch,
    # so a unit's depth is the total size held less the sum before that touch. When the tree is full, the units
    # deeper than `horizon` leave it and the rest are renumbered (see the module docstring); the caller sizes
    # it (int32 to count units, int64 for tokens), and gives ``unit_at`` (as long as the tree less one) and ``last``
    # (``_NEVER_SEEN`` for each unit). Each access's depth (the running max within its request; FIRST_ACCESS if never
    # seen; horizon + 1 if deeper) goes to `depths`, or its weight to `hist`: at the first of the ascending `bounds`
    # it is within, then one bucket past them and one for first accesses. numba prunes the branches of the arguments
    # left None. Only indexing and arithmetic, so that the interpreter runs it over lists as fast as it can.
    # Resumable: ``counters`` holds (size held, next position, tree span, most span) between calls, each call takes
    # whole requests (``offsets`` index this call's ``dense_ids``), and the tree and ``unit_at``, grown where the
    # horizon needs more room, are returned for the next call.
    total = counters[0]
    now = counters[1]
    span = counters[2]
    most = counters[3]
    deep = horizon + 1
    for r in range(len(offsets) - 1):
        start = offsets[r]
        end = offsets[r + 1]
        running = 0
        bucket = 0
        for j in range(start, end):
            seen_at = last[dense_ids[j]]
            if seen_at == _NEVER_SEEN:
                depth = FIRST_ACCESS
            elif seen_at == _DROPPED:
                depth = deep
            else:
                before = 0
                i = seen_at
                while i > 0:
                    before += tree[i]
                    i -= i & -i
                depth = min(total - before, deep)
            running = max(running, depth)
            if depths is not None:
                depths[j] = running
            if hist is not None:
                assert bounds is not None and weights is not None
                # running never falls within a request, so neither does its bucket
                if running == FIRST_ACCESS:
                    bucket = len(bounds) + 1
                while bucket < len(bounds) and bounds[bucket] < running:
                    bucket += 1
                hist[bucket] += weights[j]
        for step in range(end - start):
            if now == span:
                total, now = _drop_and_renumber(tree, unit_at, last, unit_sizes, horizon, now)
                if now > span // 2:
                    # the horizon keeps more units than the caller guessed: twice the room, so as to renumber
                    # no more than once per as many touches as the tree holds
                    span = min(2 * span, most)
                    tree, unit_at = _grown(tree, unit_at, now, span)
            j = end - 1 - step if reverse else start + step
            unit = dense_ids[j]
            size = 1 if unit_sizes is None else unit_sizes[unit]
            seen_at = last[unit]
            if seen_at < 0:
                total += size
            else:
                unit_at[seen_at] = _NEVER_SEEN
                # nodes past the newest position are not built yet (see _append)
                i = seen_at + 1
                while i <= now:
                    tree[i] -= size
                    i += i & -i
            _append(tree, now, size)
            unit_at[now] = unit
            last[unit] = now
            now += 1
    counters[0] = total
    counters[1] = now
    counters[2] = span
    return tree, unit_at


@kernel
def _append(tree: npt.NDArray[np.integer], position: int, size: int) -> None:
    # Positions only grow, so a node is built when its own position comes: node p sums (p - lowbit(p), p], its
    # entry and its children p - 1, p - 2, p - 4, ..., all final by then. About one step, where the usual
    # update walks every ancestor up to the end of the tree.
    node = position + 1
    held = size
    child = 1
    while child < (node & -node):
        held += tree[node - child]
        child <<= 1
    tree[node] = held


@kernel
def _grown_arrays(
    tree: npt.NDArray[np.integer], unit_at: npt.NDArray[np.int32], used: int, span: int
) -> tuple[npt.NDArray[np.integer], npt.NDArray[np.int32]]:
    # A node depends only on the positions up to its own, so the built ones carry over as they are.
    grown_tree = np.zeros(span + 1, dtype=tree.dtype)
    grown_tree[: used + 1] = tree[: used + 1]
    grown_at = np.empty(span, dtype=np.int32)
    grown_at[:used] = unit_at[:used]
    return grown_tree, grown_at


@kernel(compiled_as="_grown_arrays")
def _grown(tree: list[int], unit_at: list[int], used: int, span: int) -> tuple[list[int], list[int]]:
    # The interpreter's form of ``_grown_arrays``, on lists.
    return tree[: used + 1] + [0] * (span - used), unit_at[:used] + [0] * (span - used)


@kernel
def _drop_and_renumber(
    tree: npt.NDArray[np.integer],
    unit_at: npt.NDArray[np.int32],
    last: npt.NDArray[np.int32],
    unit_sizes: IntArray | None,
    horizon: int,
    now: int,
) -> tuple[int, int]:
    # Keeps the most recent units up to the horizon at positions 0, 1, ... in the same order, and marks the
    # others dropped; returns the size now held and the next free position. Linear in the tree's size.
    held = 0
    newest_dropped = now - 1
    while newest_dropped >= 0:
        unit = unit_at[newest_dropped]
        if unit >= 0:
            size = 1 if unit_sizes is None else unit_sizes[unit]
            if held + size > horizon:
                break
            held += size
        newest_dropped -= 1
    for position in range(newest_dropped + 1):
        unit = unit_at[position]
        if unit >= 0:
            last[unit] = _DROPPED
    kept = 0
    for position in range(newest_dropped + 1, now):
        unit = unit_at[position]
        if unit >= 0:
            unit_at[kept] = unit
            last[unit] = kept
            _append(tree, kept, 1 if unit_sizes is None else unit_sizes[unit])
            kept += 1
    return held, kept


class LruPass:
    """The stack-depth pass (``_lru_pass_kernel``) between calls: fed whole requests in time order, a batch at a time,
    it holds per unit only its last touch and a tree of the units within the horizon, never anything per access, so
    that a timeline far larger than memory runs through it from files. Compiled when the whole timeline
    (``accesses``) has ``COMPILED_MIN`` accesses or more, else interpreted over lists; ``hist`` (with ``bounds``)
    gathers every batch's weights."""

    def __init__(
        self,
        n_units: int,
        reverse: bool,
        horizon: int,
        span: int,
        accesses: int,
        unit_sizes: IntArray | None = None,
        bounds: IntArray | None = None,
    ) -> None:
        self.reverse, self.horizon, self.unit_sizes, self.bounds = reverse, horizon, unit_sizes, bounds
        self.compiled = accesses >= COMPILED_MIN
        self.hist = None if bounds is None else np.zeros(bounds.shape[0] + 2, dtype=np.int64)
        tree_type = np.int32 if unit_sizes is None else np.int64
        # the tree grows up to one position an access (and touch positions are int32)
        most = min(accesses, _MAX_ACCESSES - 1)
        self.counters: IntArray | list[int]
        self._plain: list[Any] | None = None
        if self.compiled:
            self.tree: Any = np.zeros(span + 1, dtype=tree_type)
            self.unit_at: Any = np.empty(span, dtype=np.int32)
            self.last: Any = np.full(n_units, _NEVER_SEEN, dtype=np.int32)
            self.counters = np.array([0, 0, span, most], dtype=np.int64)
        else:
            self.tree, self.unit_at, self.last = [0] * (span + 1), [0] * span, [_NEVER_SEEN] * n_units
            self.counters = [0, 0, span, most]
            self._plain = [None if a is None else a.tolist() for a in (unit_sizes, bounds, self.hist)]

    def feed(
        self,
        offsets: IntArray,
        dense_ids: npt.NDArray[np.integer],
        depths: IntArray | None = None,
        weights: npt.NDArray[np.integer] | None = None,
    ) -> None:
        """The next requests: ``offsets`` (from 0) into their ``dense_ids``; ``depths`` filled in place, ``weights``
        added to ``hist``."""
        if self._plain is None:
            self.tree, self.unit_at = compiled(_lru_pass_kernel)(
                offsets, dense_ids, self.reverse, self.horizon, self.tree, self.unit_at, self.last, self.counters,
                self.unit_sizes, depths, weights, self.bounds, self.hist,
            )  # fmt: skip
            return
        sizes, bounds, hist = self._plain
        plain_depths = None if depths is None else [0] * len(dense_ids)
        plain_weights = None if weights is None else weights.tolist()
        self.tree, self.unit_at = _lru_pass_kernel(
            offsets.tolist(), dense_ids.tolist(), self.reverse, self.horizon, self.tree, self.unit_at, self.last,
            self.counters, sizes, plain_depths, plain_weights, bounds, hist,
        )  # fmt: skip
        if depths is not None and plain_depths is not None:
            depths[:] = plain_depths
        if self.hist is not None:
            self.hist[:] = hist


def lru_pass(
    offsets: IntArray,
    dense_ids: npt.NDArray[np.integer],
    n_units: int,
    reverse: bool,
    horizon: int,
    span: int,
    unit_sizes: IntArray | None = None,
    depths: IntArray | None = None,
    weights: npt.NDArray[np.integer] | None = None,
    bounds: IntArray | None = None,
    hist: IntArray | None = None,
) -> None:
    """``_lru_pass_kernel`` in one call with a tree of ``span`` positions: compiled on large inputs, interpreted on
    lists below ``COMPILED_MIN`` accesses (``depths`` and ``hist`` filled in place either way)."""
    run = LruPass(n_units, reverse, horizon, span, len(dense_ids), unit_sizes, bounds)
    run.feed(offsets, dense_ids, depths, weights)
    if hist is not None and run.hist is not None:
        hist += run.hist


def _dense_ids(ids: IntArray) -> tuple[npt.NDArray[np.integer], int]:
    # Hash-based encoding (first seen = 0, 1, ...): several times faster than np.unique's sort at 10^7 ids.
    indices = pa.array(ids, type=pa.int64()).dictionary_encode().indices
    n_units = int(pc.max(indices).as_py() or 0) + 1 if len(indices) else 0
    return indices.to_numpy(zero_copy_only=False), n_units


def _check_workload(
    offsets: IntArray, unit_ids: npt.NDArray[np.integer], unit_tokens: npt.NDArray[np.integer] | None = None
) -> None:
    if offsets.ndim != 1 or offsets.shape[0] < 1 or offsets[0] != 0:
        raise ValueError("offsets must be a 1-D array that starts at 0 (CSR offsets, n_requests + 1 long)")
    if offsets[-1] != unit_ids.shape[0]:
        raise ValueError(f"offsets end at {offsets[-1]} but there are {unit_ids.shape[0]} unit ids")
    if np.any(np.diff(offsets) < 0):
        raise ValueError("offsets must be non-decreasing")
    if unit_tokens is not None and unit_tokens.shape != unit_ids.shape:
        raise ValueError("unit_tokens must have one entry per unit id")


def _check_capacities(capacities: Sequence[int | None]) -> None:
    for capacity in capacities:
        if capacity is not None and capacity < 0:
            raise ValueError(f"capacities must be non-negative or None, got {capacity}")


def _as_int64(values: npt.ArrayLike) -> IntArray:
    return np.ascontiguousarray(values, dtype=np.int64)


def _given_dense(unit_ids: npt.ArrayLike, n_units: int) -> npt.NDArray[np.integer]:
    # Ids the caller already numbered 0..n_units-1 (``levels.Workload``): kept in their own integer type and
    # not renumbered, which saves a hash pass and an int64 copy of every access (30M at 1M Mooncake requests).
    ids = np.ascontiguousarray(unit_ids)
    if ids.dtype.kind not in "iu":
        raise ValueError(f"dense unit ids must be integers, got {ids.dtype}")
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= n_units):
        raise ValueError(f"dense unit ids must lie in 0..{n_units - 1}")
    return ids


@dataclass(frozen=True)
class _Workload:
    """A checked workload with its units numbered 0..n_units-1: what every use of the kernel starts from."""

    offsets: IntArray
    dense: npt.NDArray[np.integer]
    n_units: int
    reverse: bool
    unit_sizes: IntArray | None
    """Each unit's one size, indexed by dense id, for depths in tokens; None counts units."""

    def run(
        self,
        horizon: int,
        depths: IntArray | None = None,
        weights: npt.NDArray[np.integer] | None = None,
        bounds: IntArray | None = None,
        hist: IntArray | None = None,
    ) -> None:
        span = _span(self.dense.shape[0], self.n_units, min(horizon, _EXACT), self.unit_sizes)
        lru_pass(
            self.offsets, self.dense, self.n_units, self.reverse, min(horizon, _EXACT), span, self.unit_sizes, depths,
            weights, bounds, hist,
        )  # fmt: skip

    def depths(self, horizon: int = _EXACT) -> IntArray:
        """Per access, its depth if within the horizon, ``horizon + 1`` if deeper, ``FIRST_ACCESS`` if new."""
        depths = np.empty(self.dense.shape[0], dtype=np.int64)
        self.run(horizon, depths=depths)
        return depths

    def hits(self, limits: Sequence[int | None], weights: npt.NDArray[np.integer]) -> list[int]:
        """For each limit (the largest depth that hits; None: any depth), the weight of the accesses that hit."""
        bounds = _bounds(limits)
        hist = np.zeros(bounds.shape[0] + 2, dtype=np.int64)
        self.run(int(bounds[-1]) if bounds.size else 0, weights=weights, bounds=bounds, hist=hist)
        return _hits_within(limits, bounds, hist)


def _span(accesses: int, n_units: int, horizon: int, sizes: IntArray | None) -> int:
    # Room for the units within the horizon (for tokens a guess from the mean size, which the kernel doubles if
    # short) and as many touches again between renumberings: three or four times as much room was no faster on 1M
    # Mooncake requests.
    typical = 1 if sizes is None or not sizes.size else max(1, int(sizes.mean()))
    return min(accesses, 2 * min(n_units, horizon // typical) + 1)


def _bounds(limits: Sequence[int | None]) -> IntArray:
    return np.unique(np.array([limit for limit in limits if limit is not None], dtype=np.int64))


def _hits_within(limits: Sequence[int | None], bounds: IntArray, hist: IntArray) -> list[int]:
    hits_within = np.cumsum(hist)
    places = [bounds.shape[0] if limit is None else int(np.searchsorted(bounds, limit)) for limit in limits]
    return [int(hits_within[place]) for place in places]


Batch = tuple[IntArray, npt.NDArray[np.integer], npt.NDArray[np.integer]]
"""Whole requests of a timeline: offsets from 0 into their units (numbered 0..n_units-1) and each unit's tokens."""


def _checked_batch(batch: Batch, n_units: int) -> Batch:
    offsets, ids, tokens = batch
    offsets = _as_int64(offsets)
    ids = _given_dense(ids, n_units)
    _check_workload(offsets, ids, np.asarray(tokens))
    return offsets, ids, tokens


def streamed_capacity_curve(
    batches: Iterable[Batch],
    accesses: int,
    n_units: int,
    capacities_tokens: Sequence[int | None],
    unit_size_tokens: int,
) -> list[tuple[int | None, int]]:
    """``capacity_curve`` (request order, units numbered by the caller) of a timeline of ``accesses`` unit accesses
    given in batches of whole requests: the same figures, with nothing held per access but a batch's."""
    if unit_size_tokens <= 0:
        raise ValueError(f"unit_size_tokens must be positive, got {unit_size_tokens}")
    _check_capacities(capacities_tokens)
    limits = [None if capacity is None else capacity // unit_size_tokens for capacity in capacities_tokens]
    bounds = _bounds(limits)
    horizon = min(int(bounds[-1]) if bounds.size else 0, _EXACT)
    run = LruPass(n_units, False, horizon, _span(accesses, n_units, horizon, None), accesses, bounds=bounds)
    for batch in batches:
        offsets, ids, tokens = _checked_batch(batch, n_units)
        if tokens.dtype.kind != "i":
            tokens = _as_int64(tokens)
        run.feed(offsets, ids, weights=np.ascontiguousarray(tokens))
    assert run.hist is not None
    return list(zip(capacities_tokens, _hits_within(limits, bounds, run.hist), strict=True))


def streamed_request_hits(
    batches: Iterable[Batch], accesses: int, n_units: int, n_requests: int, capacity_units: int
) -> IntArray:
    """Per request, its hit tokens in an LRU cache of ``capacity_units`` units (request order): what ``simulate_lru``
    replays, read off the stack depths of a timeline given in batches of whole requests."""
    _check_capacities([capacity_units])
    horizon = min(capacity_units, _EXACT)
    run = LruPass(n_units, False, horizon, _span(accesses, n_units, horizon, None), accesses)
    hits = np.zeros(n_requests, dtype=np.int64)
    at = 0
    for batch in batches:
        offsets, ids, tokens = _checked_batch(batch, n_units)
        depths = np.empty(ids.shape[0], dtype=np.int64)
        run.feed(offsets, ids, depths=depths)
        hit_so_far = np.concatenate(([0], np.cumsum(np.where(depths <= capacity_units, tokens, 0), dtype=np.int64)))
        n = offsets.shape[0] - 1
        hits[at : at + n] = hit_so_far[offsets[1:]] - hit_so_far[offsets[:-1]]
        at += n
    if at != n_requests:
        raise ValueError(f"the batches hold {at} requests, not {n_requests}")
    return hits


def _prepare(
    offsets: npt.ArrayLike,
    unit_ids: npt.ArrayLike,
    order: Order,
    unit_tokens: npt.NDArray[np.integer] | None = None,
    *,
    sized: bool = False,
    n_units: int | None = None,
) -> _Workload:
    # Checks the workload and numbers its units, unless the caller did (n_units given). Sized, each unit
    # takes its size from unit_tokens; unsized, unit_tokens are only checked against the ids.
    offsets_arr = _as_int64(offsets)
    ids: npt.NDArray[np.integer] = _as_int64(unit_ids) if n_units is None else _given_dense(unit_ids, n_units)
    _check_workload(offsets_arr, ids, unit_tokens)
    if order not in _TOUCHED_IN_REVERSE:
        raise ValueError(f"unknown order {order!r}; use one of {sorted(_TOUCHED_IN_REVERSE)}")
    if ids.shape[0] >= _MAX_ACCESSES:
        raise ValueError(f"at most {_MAX_ACCESSES - 1} unit accesses per call; split the workload by time")
    dense, n_units = (ids, n_units) if n_units is not None else _dense_ids(_as_int64(ids))
    sizes = _unit_sizes(ids, dense, _as_int64(unit_tokens)) if sized and unit_tokens is not None else None
    return _Workload(offsets_arr, dense, n_units, _TOUCHED_IN_REVERSE[order], sizes)


def _unit_sizes(ids: npt.NDArray[np.integer], dense: npt.NDArray[np.integer], tokens: IntArray) -> IntArray:
    # Each unit's one size, indexed by dense id. The token depth only predicts the cache when a unit's size
    # is the same at every access (see the module docstring), so a size that changes is refused, not guessed.
    if tokens.size and int(tokens.min()) < 0:
        raise ValueError(f"unit_tokens must be non-negative, got {int(tokens.min())}")
    # Dense ids count up in first-seen order, so a unit's first access is where its id exceeds all before it.
    first_seen = np.ones(dense.shape[0], dtype=np.bool_)
    first_seen[1:] = dense[1:] > np.maximum.accumulate(dense)[:-1]
    sizes = np.ascontiguousarray(tokens[first_seen])
    changed = np.flatnonzero(sizes[dense] != tokens)
    if changed.size:
        j = int(changed[0])
        raise ValueError(
            f"unit {ids[j]} has {tokens[j]} tokens at access {j} but {sizes[dense[j]]} at its first; "
            "a unit's size must be the same at every access"
        )
    if float(sizes.sum(dtype=np.float64)) >= 2.0**62:
        raise ValueError("the units' sizes add up to 2**62 tokens or more; token depths count in int64")
    return sizes


def lru_prefix_depths(
    offsets: npt.ArrayLike, unit_ids: npt.ArrayLike, order: Order = "request", *, n_units: int | None = None
) -> IntArray:
    """Per unit access, the smallest LRU capacity (in units) at which it is a leading-prefix hit.

    That is the running max, within its request, of the LRU stack depth at the moment the request starts
    (1 + distinct other units touched since this unit's last touch; ``FIRST_ACCESS`` if never seen). An
    access is a hit in a cache of K units iff its value is <= K. ``order`` is the recency order of a
    request's units after it runs, as in ``simulate_lru``. O(N log N) in the number of accesses.
    ``n_units``: the ids are already numbered 0..n_units-1 (any integer type) and are used as they are.
    """
    return _prepare(offsets, unit_ids, order, n_units=n_units).depths()


def lru_prefix_token_depths(
    offsets: npt.ArrayLike, unit_ids: npt.ArrayLike, unit_tokens: npt.ArrayLike, order: Order = "request"
) -> IntArray:
    """Per unit access, the smallest LRU capacity in tokens at which it is a leading-prefix hit.

    For caches of units of different sizes, where a unit count says little. The running max, within its
    request, of the token depth when the request starts: the unit's size plus the sizes of the distinct
    units touched since its last touch (``FIRST_ACCESS`` if never seen). An access is a hit in a cache of
    C tokens iff its value is <= C (the module docstring states and proves this). A unit's size is its
    ``unit_tokens``, which must be non-negative and the same at each of its accesses. O(N log N).
    """
    return _prepare(offsets, unit_ids, order, _as_int64(unit_tokens), sized=True).depths()


def capacity_curve(
    offsets: npt.ArrayLike,
    unit_ids: npt.ArrayLike,
    unit_tokens: npt.ArrayLike,
    capacities_tokens: Sequence[int | None],
    unit_size_tokens: int,
    order: Order = "request",
    *,
    n_units: int | None = None,
) -> list[tuple[int | None, int]]:
    """Token-weighted LRU hits for each capacity, from one pass of stack depths.

    A capacity in tokens holds ``capacity // unit_size_tokens`` units (whole units only: a block-granular
    cache cannot keep part of a block). ``None`` is an unbounded cache: every leading unit seen before is a
    hit. Returns ``(capacity, hit_tokens)`` pairs in the order given. The reference figures count capacity in
    decimal tokens (1M = 1,000,000 tokens = 1,953 blocks of 512; 1,048,576 does not reproduce them).
    ``n_units``: the ids are already numbered 0..n_units-1 and are not renumbered (see ``lru_prefix_depths``).
    Depths are exact only up to the largest finite capacity, all the curve needs (see the module docstring).
    """
    if unit_size_tokens <= 0:
        raise ValueError(f"unit_size_tokens must be positive, got {unit_size_tokens}")
    _check_capacities(capacities_tokens)
    tokens = np.ascontiguousarray(unit_tokens)
    if tokens.dtype.kind != "i":
        tokens = _as_int64(tokens)
    work = _prepare(offsets, unit_ids, order, tokens, n_units=n_units)
    limits = [None if capacity is None else capacity // unit_size_tokens for capacity in capacities_tokens]
    return list(zip(capacities_tokens, work.hits(limits, tokens), strict=True))


def _token_limit(capacity: int | None) -> int:
    # The largest token depth that hits; an unbounded cache hits every depth but FIRST_ACCESS.
    if capacity is None:
        return int(FIRST_ACCESS) - 1
    _check_capacities([capacity])
    return int(capacity)


def token_capacity_curve(
    offsets: npt.ArrayLike,
    unit_ids: npt.ArrayLike,
    unit_tokens: npt.ArrayLike,
    capacities_tokens: Sequence[int | None],
    order: Order = "request",
    *,
    hit_tokens: npt.ArrayLike | None = None,
) -> list[tuple[int | None, int]]:
    """Hit tokens for each capacity of an LRU cache counted in tokens, from one pass of token depths.

    The form of ``capacity_curve`` for units of different sizes: a unit takes its own size, not a fixed
    block. ``None`` is an unbounded cache. Returns ``(capacity, hit_tokens)`` pairs in the order given. With
    every unit ``s`` tokens it equals ``capacity_curve(..., unit_size_tokens=s)``. ``hit_tokens`` (one per access,
    default ``unit_tokens``) is what a hit counts, where a request's tokens are in other units than the cache's.
    """
    _check_capacities(capacities_tokens)
    tokens = _as_int64(unit_tokens)
    work = _prepare(offsets, unit_ids, order, tokens, sized=True)
    weights = tokens if hit_tokens is None else _as_int64(hit_tokens)
    return list(zip(capacities_tokens, work.hits(capacities_tokens, weights), strict=True))


def request_hits(
    offsets: npt.ArrayLike,
    unit_ids: npt.ArrayLike,
    unit_tokens: npt.ArrayLike,
    capacity_tokens: int | None,
    order: Order = "request",
) -> IntArray:
    """Per-request hit tokens in an LRU cache of ``capacity_tokens`` tokens (``None``: unbounded).

    The per-request form of ``token_capacity_curve``: read off the token depths (one compiled pass) rather
    than replayed, so it is fast enough for whole traces; ``simulate_lru_tokens`` is the replay it matches.
    """
    limit = _token_limit(capacity_tokens)
    tokens = _as_int64(unit_tokens)
    work = _prepare(offsets, unit_ids, order, tokens, sized=True)
    depths = work.depths(horizon=limit)
    hit_so_far = np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(np.where(depths <= limit, tokens, 0))))
    return hit_so_far[work.offsets[1:]] - hit_so_far[work.offsets[:-1]]


CacheState = OrderedDict[Hashable, int]
"""A replayed cache: each held unit, least recently used first, with the size it takes (1 when counting units)."""


def _retire_in_request_order(cache: CacheState, units: Sequence[tuple[Hashable, int]]) -> None:
    # The reference convention: units touched first to last, so a request's last unit is the most recent.
    for unit, size in units:
        cache[unit] = size
        cache.move_to_end(unit)


def _retire_vllm(cache: CacheState, units: Sequence[tuple[Hashable, int]]) -> None:
    # vLLM v1 frees a finished request's blocks in reverse onto the tail of its free queue and evicts from the
    # head, so the request's tail blocks go before its head blocks: the first unit ends up the most recent.
    # lru_prefix_depths(order="vllm") follows the same order; change both together (the tests hold them equal).
    for unit, size in reversed(units):
        cache[unit] = size
        cache.move_to_end(unit)


_RETIRE_ORDERS: dict[str, Callable[[CacheState, Sequence[tuple[Hashable, int]]], None]] = {
    "request": _retire_in_request_order,
    "vllm": _retire_vllm,
}


def _replay(
    offsets: npt.ArrayLike,
    unit_ids: npt.ArrayLike,
    unit_tokens: npt.ArrayLike,
    capacity: int | None,
    order: Order,
    sized: bool,
) -> IntArray:
    # The plain statement of both policies: look up the leading held units, retire the request's units, then
    # evict the least recently used unit while the held total (units, or tokens when sized) exceeds capacity.
    offsets_arr = _as_int64(offsets)
    ids = _as_int64(unit_ids)
    tokens = _as_int64(unit_tokens)
    _check_workload(offsets_arr, ids, tokens)
    if capacity is not None and capacity < 0:
        raise ValueError(f"capacity must be non-negative or None, got {capacity}")
    retire = _RETIRE_ORDERS.get(order)
    if retire is None:
        raise ValueError(f"unknown order {order!r}; use one of {sorted(_RETIRE_ORDERS)}")
    if sized:
        # Same domain as the token depths: one non-negative size per unit.
        _unit_sizes(ids, _dense_ids(ids)[0], tokens)
    id_list: list[int] = ids.tolist()
    token_list: list[int] = tokens.tolist()
    size_list = token_list if sized else [1] * len(id_list)
    cache: CacheState = OrderedDict()
    held = 0
    hits = np.zeros(offsets_arr.shape[0] - 1, dtype=np.int64)
    for r, (start, end) in enumerate(zip(offsets_arr[:-1].tolist(), offsets_arr[1:].tolist(), strict=True)):
        hit = 0
        for j in range(start, end):
            if id_list[j] not in cache:
                break
            hit += token_list[j]
        hits[r] = hit
        units = list(zip(id_list[start:end], size_list[start:end], strict=True))
        held += sum({unit: size for unit, size in units if unit not in cache}.values())
        retire(cache, units)
        while capacity is not None and held > capacity:
            held -= cache.popitem(last=False)[1]
    return hits


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
    return _replay(offsets, unit_ids, unit_tokens, capacity_units, order, sized=False)


def simulate_lru_tokens(
    offsets: npt.ArrayLike,
    unit_ids: npt.ArrayLike,
    unit_tokens: npt.ArrayLike,
    capacity_tokens: int | None,
    order: Order = "request",
) -> IntArray:
    """Per-request hit tokens from replaying an LRU cache of ``capacity_tokens`` tokens (``None``: unbounded).

    As ``simulate_lru``, but each unit takes its ``unit_tokens`` and, after each request, the cache evicts its
    least recently used unit while the held tokens exceed the capacity (a unit larger than the cache evicts
    itself). Slow on purpose: the plain statement that ``token_capacity_curve`` and ``request_hits`` are
    checked against.
    """
    return _replay(offsets, unit_ids, unit_tokens, capacity_tokens, order, sized=True)

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zumik_cli.analysis import capacity as capacity_module
from zumik_cli.analysis.capacity import (
    _EXACT,
    FIRST_ACCESS,
    capacity_curve,
    lru_prefix_depths,
    lru_prefix_token_depths,
    request_hits,
    simulate_lru,
    simulate_lru_tokens,
    streamed_capacity_curve,
    streamed_request_hits,
    token_capacity_curve,
)

MOONCAKE = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "mooncake_fast25"
MOONCAKE_BLOCK = 512

A, B, C = 101, 202, 303


def workload(requests: list[list[int]], tokens: list[list[int]] | None = None):
    offsets = np.cumsum([0] + [len(r) for r in requests])
    ids = np.array([u for r in requests for u in r], dtype=np.int64)
    flat_tokens = [t for r in tokens for t in r] if tokens else [1] * len(ids)
    return offsets, ids, np.array(flat_tokens, dtype=np.int64)


def test_stack_depths_count_distinct_units_touched_since_the_last_touch():
    offsets, ids, _ = workload([[A, B], [A, B], [C], [A]])

    depths = lru_prefix_depths(offsets, ids)

    assert depths.tolist() == [FIRST_ACCESS, FIRST_ACCESS, 2, 2, FIRST_ACCESS, 3]


def test_a_leading_miss_hides_every_unit_behind_it():
    offsets, ids, tokens = workload([[A, B], [B], [A, B]])

    assert lru_prefix_depths(offsets, ids).tolist()[-2:] == [2, 2]
    assert simulate_lru(offsets, ids, tokens, 1).tolist() == [0, 1, 0]
    assert capacity_curve(offsets, ids, tokens, [1, 2], 1) == [(1, 1), (2, 3)]


def test_the_vllm_order_keeps_the_head_of_a_request_that_overflows_the_cache():
    offsets, ids, tokens = workload([[A, B, C], [A, B, C]])

    assert simulate_lru(offsets, ids, tokens, 2, order="request").tolist() == [0, 0]
    assert simulate_lru(offsets, ids, tokens, 2, order="vllm").tolist() == [0, 2]
    assert capacity_curve(offsets, ids, tokens, [2], 1, order="vllm") == [(2, 2)]


def test_a_capacity_in_tokens_holds_only_whole_units():
    offsets, ids, tokens = workload([[A, B], [A, B]], [[512, 512], [512, 100]])

    curve = capacity_curve(offsets, ids, tokens, [0, 1023, 1024, None], 512)

    assert curve == [(0, 0), (1023, 0), (1024, 612), (None, 612)]


def test_an_empty_workload_hits_nothing():
    offsets, ids, tokens = workload([])

    assert lru_prefix_depths(offsets, ids).size == 0
    assert capacity_curve(offsets, ids, tokens, [10, None], 1) == [(10, 0), (None, 0)]
    assert simulate_lru(offsets, ids, tokens, 10).size == 0


@pytest.mark.parametrize(
    ("offsets", "ids", "message"),
    [
        ([1, 2], [A, B], "starts at 0"),
        ([0, 1], [A, B], "offsets end at 1"),
        ([0, 2, 1, 2], [A, B], "non-decreasing"),
    ],
)
def test_malformed_offsets_are_refused_with_the_reason(offsets, ids, message):
    with pytest.raises(ValueError, match=message):
        lru_prefix_depths(offsets, ids)


def test_unknown_orders_and_negative_capacities_are_refused():
    offsets, ids, tokens = workload([[A]])

    with pytest.raises(ValueError, match="unknown order"):
        simulate_lru(offsets, ids, tokens, 1, order="fifo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown order"):
        lru_prefix_depths(offsets, ids, order="fifo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-negative"):
        capacity_curve(offsets, ids, tokens, [-1], 1)
    with pytest.raises(ValueError, match="positive"):
        capacity_curve(offsets, ids, tokens, [1], 0)


# --- Mooncake FAST'25 trace: the reference figures in shared/data/README.md ---------------------------------


@pytest.fixture(scope="module")
def mooncake():
    trace = MOONCAKE / "synthetic_trace.jsonl"
    if not trace.exists():
        pytest.skip(f"real trace not found at {trace} (CI has ../shared beside the checkout)")
    rows = [json.loads(line) for line in trace.read_text().splitlines()]
    offsets = np.cumsum([0] + [len(r["hash_ids"]) for r in rows])
    ids = np.concatenate([r["hash_ids"] for r in rows]).astype(np.int64)
    # Every block is 512 tokens but the last, which holds the rest of the input.
    tokens = np.concatenate(
        [np.minimum(MOONCAKE_BLOCK, r["input_length"] - MOONCAKE_BLOCK * np.arange(len(r["hash_ids"]))) for r in rows]
    ).astype(np.int64)
    input_tokens = sum(r["input_length"] for r in rows)
    return offsets, ids, tokens, input_tokens


@pytest.mark.realdata
def test_mooncake_has_the_reference_request_and_token_counts(mooncake):
    offsets, _, tokens, input_tokens = mooncake

    assert len(offsets) - 1 == 3_993
    assert input_tokens == int(tokens.sum()) == 61_194_628


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("capacity_tokens", "share"),
    [(None, 0.6512), (1_000_000, 0.1421), (3_000_000, 0.3151), (10_000_000, 0.5768), (50_000_000, 0.6512)],
)
def test_mooncake_lru_reuse_matches_the_reference_figures(mooncake, capacity_tokens, share):
    offsets, ids, tokens, input_tokens = mooncake

    [(_, hits)] = capacity_curve(offsets, ids, tokens, [capacity_tokens], MOONCAKE_BLOCK)

    assert round(hits / input_tokens, 4) == share


@pytest.mark.realdata
def test_mooncake_reference_capacities_are_decimal_millions_of_tokens(mooncake):
    offsets, ids, tokens, input_tokens = mooncake

    [(_, hits)] = capacity_curve(offsets, ids, tokens, [1 << 20], MOONCAKE_BLOCK)

    assert round(hits / input_tokens, 4) != 0.1421


@pytest.mark.realdata
def test_mooncake_block_weighted_unbounded_reuse_matches_the_reference(mooncake):
    offsets, ids, _, _ = mooncake
    blocks = np.ones_like(ids)

    [(_, hits)] = capacity_curve(offsets, ids, blocks, [None], 1)

    assert round(hits / len(ids), 4) == 0.6396


@pytest.mark.realdata
@pytest.mark.parametrize("order", ["request", "vllm"])
def test_mooncake_stack_depths_agree_with_direct_simulation(mooncake, order):
    offsets, ids, tokens, _ = mooncake
    capacities_units = [0, 1, 100, 1_953, 5_859, 19_531, 97_656]

    curve = capacity_curve(offsets, ids, tokens, capacities_units, 1, order=order)

    assert curve == [(k, int(simulate_lru(offsets, ids, tokens, k, order=order).sum())) for k in capacities_units]


# --- Properties on small random workloads --------------------------------------------------------------------


@st.composite
def prefix_chained_workloads(draw):
    """Requests as paths in a small tree of block contents; a unit id names the whole path up to it."""
    paths = draw(st.lists(st.lists(st.integers(0, 2), max_size=6), max_size=14))
    id_of: dict[tuple[int, ...], int] = {}
    requests = [[id_of.setdefault(tuple(p[: j + 1]), len(id_of) * 7_919 - 2**40) for j in range(len(p))] for p in paths]
    tokens = [draw(st.lists(st.integers(1, 512), min_size=len(r), max_size=len(r))) for r in requests]
    return workload(requests, tokens)


@st.composite
def arbitrary_workloads(draw):
    """Any ids, repeats inside a request included: the stack-depth pass must not rely on prefix chaining."""
    unit = st.one_of(st.integers(0, 5), st.sampled_from([-(2**63), 2**63 - 1]))
    requests = draw(st.lists(st.lists(unit, max_size=6), max_size=14))
    tokens = [draw(st.lists(st.integers(0, 50), min_size=len(r), max_size=len(r))) for r in requests]
    return workload(requests, tokens)


workloads = st.one_of(prefix_chained_workloads(), arbitrary_workloads())
orders = st.sampled_from(["request", "vllm"])


def every_capacity(ids) -> list[int]:
    return list(range(len(set(ids.tolist())) + 2))


@settings(deadline=None)
@given(workloads, orders)
def test_the_stack_depth_curve_equals_direct_simulation_at_every_capacity(work, order):
    offsets, ids, tokens = work
    capacities = every_capacity(ids)

    curve = capacity_curve(offsets, ids, tokens, capacities, 1, order=order)

    assert curve == [(k, int(simulate_lru(offsets, ids, tokens, k, order=order).sum())) for k in capacities]


@settings(deadline=None)
@given(workloads, orders)
def test_hits_never_fall_as_the_cache_grows_and_never_exceed_the_input(work, order):
    offsets, ids, tokens = work

    hits = [h for _, h in capacity_curve(offsets, ids, tokens, [*every_capacity(ids), None], 1, order=order)]

    assert hits == sorted(hits)
    assert hits[-1] <= int(tokens.sum())
    request_tokens = [int(tokens[start:end].sum()) for start, end in zip(offsets[:-1], offsets[1:], strict=True)]
    per_request = simulate_lru(offsets, ids, tokens, len(ids), order=order).tolist()
    assert all(hit <= total for hit, total in zip(per_request, request_tokens, strict=True))


@settings(deadline=None)
@given(workloads, orders)
def test_an_unbounded_cache_hits_every_leading_unit_seen_before(work, order):
    offsets, ids, tokens = work
    seen: set[int] = set()
    expected = 0
    for start, end in zip(offsets[:-1], offsets[1:], strict=True):
        for j in range(start, end):
            if ids[j] not in seen:
                break
            expected += int(tokens[j])
        seen.update(ids[start:end].tolist())

    assert capacity_curve(offsets, ids, tokens, [None], 1, order=order) == [(None, expected)]
    assert int(simulate_lru(offsets, ids, tokens, None, order=order).sum()) == expected


def kernel_depths(offsets, ids, order, span, tokens=None, horizon=_EXACT, python=False):
    """The kernel's depths with a tree of ``span`` positions, so that tests choose how often it renumbers; compiled,
    or interpreted (``python``) whatever the size."""
    uniques, first, dense = np.unique(ids, return_index=True, return_inverse=True)
    sizes = None if tokens is None else tokens[first]
    depths = np.empty(len(ids), dtype=np.int64)
    threshold = capacity_module.COMPILED_MIN
    capacity_module.COMPILED_MIN = 2**62 if python else 0
    try:
        capacity_module.lru_pass(
            offsets.astype(np.int64), dense.ravel(), len(uniques), order == "vllm", horizon, span, sizes, depths
        )
    finally:
        capacity_module.COMPILED_MIN = threshold
    return depths.tolist()


@settings(deadline=None, max_examples=30)
@given(workloads, orders)
def test_the_compiled_pass_gives_what_the_plain_python_one_gives(work, order):
    offsets, ids, _ = work

    plain = kernel_depths(offsets, ids, order, 1, python=True)

    assert kernel_depths(offsets, ids, order, 1) == plain
    assert lru_prefix_depths(offsets, ids, order=order).tolist() == plain


@settings(deadline=None)
@given(workloads, orders)
def test_renumbering_a_full_tree_and_growing_one_too_small_change_no_depth(work, order):
    offsets, ids, _ = work

    never_full = kernel_depths(offsets, ids, order, len(ids))

    for span in range(1, len(ids)):
        assert kernel_depths(offsets, ids, order, span) == never_full


@settings(deadline=None)
@given(workloads, orders)
def test_a_curve_for_one_capacity_drops_the_deeper_units_and_still_equals_direct_simulation(work, order):
    offsets, ids, tokens = work

    for k in every_capacity(ids):
        expected = int(simulate_lru(offsets, ids, tokens, k, order=order).sum())
        assert capacity_curve(offsets, ids, tokens, [k, None], 1, order=order)[0] == (k, expected)
        # The tree no larger than the horizon needs: a renumbering at nearly every touch.
        depths = np.array(kernel_depths(offsets, ids, order, k + 1, horizon=k))
        assert int(tokens[depths <= k].sum()) == expected


def in_pieces(offsets, ids, tokens, cuts):
    """The workload as batches of whole requests, cut before the given request indices."""
    n = len(offsets) - 1
    bounds = sorted({0, n, *(c % (n + 1) for c in cuts)})
    for a, b in zip(bounds, bounds[1:], strict=False):
        start, stop = int(offsets[a]), int(offsets[b])
        yield np.asarray(offsets[a : b + 1] - start, dtype=np.int64), ids[start:stop], tokens[start:stop]


@settings(deadline=None)
@given(workloads, orders, st.lists(st.integers(0, 20), max_size=5), st.integers(0, 12), st.booleans())
def test_the_pass_fed_whole_requests_in_pieces_keeps_its_state_and_equals_one_call(work, order, cuts, horizon, python):
    offsets, ids, tokens = work
    _, dense = np.unique(ids, return_inverse=True)
    dense = dense.ravel()
    n_units = int(dense.max(initial=-1)) + 1
    bounds = np.arange(horizon + 1, dtype=np.int64)
    threshold = capacity_module.COMPILED_MIN
    capacity_module.COMPILED_MIN = 2**62 if python else 0
    try:
        whole_depths = np.empty(len(ids), dtype=np.int64)
        whole_hist = np.zeros(len(bounds) + 2, dtype=np.int64)
        # a tree of one position: renumbered and grown across the cuts
        capacity_module.lru_pass(
            offsets.astype(np.int64), dense, n_units, order == "vllm", horizon, 1, None, whole_depths, tokens, bounds,
            whole_hist,
        )  # fmt: skip
        run = capacity_module.LruPass(n_units, order == "vllm", horizon, 1, len(ids), bounds=bounds)
        depths = []
        for piece_offsets, piece_ids, piece_tokens in in_pieces(offsets, dense, tokens, cuts):
            piece = np.empty(len(piece_ids), dtype=np.int64)
            run.feed(piece_offsets, piece_ids, depths=piece, weights=piece_tokens)
            depths.extend(piece.tolist())
    finally:
        capacity_module.COMPILED_MIN = threshold

    assert run.compiled is not python
    assert depths == whole_depths.tolist()
    assert run.hist is not None and run.hist.tolist() == whole_hist.tolist()


@settings(deadline=None)
@given(workloads, st.lists(st.integers(0, 20), max_size=5))
def test_the_streamed_curve_and_bounded_hits_equal_the_whole_curve_and_direct_simulation(work, cuts):
    offsets, ids, tokens = work
    _, dense = np.unique(ids, return_inverse=True)
    dense = dense.ravel().astype(np.int32)
    n_units = int(dense.max(initial=-1)) + 1
    capacities = [*every_capacity(ids), None]

    streamed = streamed_capacity_curve(in_pieces(offsets, dense, tokens, cuts), len(ids), n_units, capacities, 1)

    assert streamed == capacity_curve(offsets, dense, tokens, capacities, 1, n_units=n_units)
    for k in every_capacity(ids):
        hits = streamed_request_hits(in_pieces(offsets, dense, tokens, cuts), len(ids), n_units, len(offsets) - 1, k)
        assert hits.tolist() == simulate_lru(offsets, ids, tokens, k).tolist()


def test_a_depth_past_the_horizon_reads_as_one_past_it():
    offsets, ids, _ = workload([[A], [B], [C], [A], [A]])

    assert kernel_depths(offsets, ids, "request", 2, horizon=1) == [FIRST_ACCESS] * 3 + [2, 1]
    assert kernel_depths(offsets, ids, "request", 5) == [FIRST_ACCESS] * 3 + [3, 1]


# --- Token-weighted depths: units of different sizes in a cache counted in tokens ---------------------------

D, E = 404, 505


def test_token_depths_add_the_sizes_of_the_units_touched_since_the_last_touch():
    offsets, ids, tokens = workload([[A, B], [A, B], [C], [A]], [[10, 20], [10, 20], [5], [10]])

    depths = lru_prefix_token_depths(offsets, ids, tokens)

    # A again: its own 10, then B (20) and C (5) touched since; B's 20 alone would fit, but A leads.
    assert depths.tolist() == [FIRST_ACCESS, FIRST_ACCESS, 30, 30, FIRST_ACCESS, 35]
    assert token_capacity_curve(offsets, ids, tokens, [29, 30, 34, 35, None]) == [
        (29, 0),
        (30, 30),
        (34, 30),
        (35, 40),
        (None, 40),
    ]
    assert request_hits(offsets, ids, tokens, 34).tolist() == [0, 30, 0, 0]


def test_a_large_unit_pushes_out_several_small_ones_and_a_unit_larger_than_the_cache_evicts_itself():
    offsets, ids, tokens = workload(
        [[A, B, C], [D], [A, B, C], [E], [E]], [[10, 10, 10], [25], [10, 10, 10], [99], [99]]
    )

    for capacity in [0, 30, 34, 35, 54, 55, 98, 99, None]:
        expected = simulate_lru_tokens(offsets, ids, tokens, capacity).tolist()
        assert request_hits(offsets, ids, tokens, capacity).tolist() == expected
    # At 54 tokens D (25) pushes out A, so the second A, B, C misses; E (99) pushes out all four at 99 tokens
    # and, below that, itself too.
    assert simulate_lru_tokens(offsets, ids, tokens, 54).tolist() == [0, 0, 0, 0, 0]
    assert simulate_lru_tokens(offsets, ids, tokens, 55).tolist() == [0, 0, 30, 0, 0]
    assert simulate_lru_tokens(offsets, ids, tokens, 98).tolist() == [0, 0, 30, 0, 0]
    assert simulate_lru_tokens(offsets, ids, tokens, 99).tolist() == [0, 0, 30, 0, 99]


def test_the_vllm_order_keeps_the_head_of_a_request_that_overflows_a_token_cache():
    offsets, ids, tokens = workload([[A, B, C], [A, B, C]], [[3, 4, 5], [3, 4, 5]])

    assert request_hits(offsets, ids, tokens, 11, order="request").tolist() == [0, 0]
    assert request_hits(offsets, ids, tokens, 11, order="vllm").tolist() == [0, 7]
    assert simulate_lru_tokens(offsets, ids, tokens, 11, order="vllm").tolist() == [0, 7]


def test_a_unit_whose_size_changes_is_refused_because_the_depths_would_no_longer_match_the_cache():
    # C = 10: A (5) then B (6) evicts A; were B to shrink to 1 token, A's depth 5 + 1 would say A is held.
    offsets, ids, tokens = workload([[A], [B], [B], [A]], [[5], [6], [1], [5]])

    for call in (
        lambda: lru_prefix_token_depths(offsets, ids, tokens),
        lambda: token_capacity_curve(offsets, ids, tokens, [10]),
        lambda: request_hits(offsets, ids, tokens, 10),
        lambda: simulate_lru_tokens(offsets, ids, tokens, 10),
    ):
        with pytest.raises(ValueError, match=f"unit {B} has 1 tokens at access 2 but 6"):
            call()


def test_token_forms_refuse_negative_sizes_and_capacities_and_unknown_orders():
    offsets, ids, tokens = workload([[A]], [[-1]])
    with pytest.raises(ValueError, match="non-negative"):
        lru_prefix_token_depths(offsets, ids, tokens)

    offsets, ids, tokens = workload([[A]], [[1]])
    with pytest.raises(ValueError, match="non-negative"):
        token_capacity_curve(offsets, ids, tokens, [-1])
    with pytest.raises(ValueError, match="non-negative"):
        request_hits(offsets, ids, tokens, -1)
    with pytest.raises(ValueError, match="non-negative"):
        simulate_lru_tokens(offsets, ids, tokens, -1)
    with pytest.raises(ValueError, match="unknown order"):
        lru_prefix_token_depths(offsets, ids, tokens, order="fifo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one entry per unit id"):
        lru_prefix_token_depths(offsets, ids, np.array([1, 2]))

    offsets, ids, tokens = workload([[A, B]], [[2**61, 2**61]])
    with pytest.raises(ValueError, match="2\\*\\*62"):
        lru_prefix_token_depths(offsets, ids, tokens)


def test_an_empty_workload_hits_no_tokens():
    offsets, ids, tokens = workload([])

    assert lru_prefix_token_depths(offsets, ids, tokens).size == 0
    assert token_capacity_curve(offsets, ids, tokens, [10, None]) == [(10, 0), (None, 0)]
    assert request_hits(offsets, ids, tokens, None).size == 0
    assert simulate_lru_tokens(offsets, ids, tokens, 10).size == 0


def replay_evicting_after_each_touch(offsets, ids, tokens, capacity, order):
    """The token LRU policy in its plainest form, written apart from the library's replay.

    Evicts after every touch, not after every request: the same cache at each request boundary.
    """
    cache: OrderedDict[int, int] = OrderedDict()
    hits = []
    for start, end in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
        hit = 0
        for j in range(start, end):
            if ids[j] not in cache:
                break
            hit += int(tokens[j])
        hits.append(hit)
        touched = range(end - 1, start - 1, -1) if order == "vllm" else range(start, end)
        for j in touched:
            cache[int(ids[j])] = int(tokens[j])
            cache.move_to_end(int(ids[j]))
            while capacity is not None and sum(cache.values()) > capacity:
                cache.popitem(last=False)
    return hits


@st.composite
def sized_workloads(draw, sizes=st.one_of(st.just(0), st.integers(1, 512))):
    """A workload whose units each have one size of their own, drawn apart from the unit ids."""
    offsets, ids, _ = draw(workloads)
    units = sorted(set(ids.tolist()))
    size_of = dict(zip(units, draw(st.lists(sizes, min_size=len(units), max_size=len(units))), strict=True))
    return offsets, ids, np.array([size_of[u] for u in ids.tolist()], dtype=np.int64)


def capacities_where_hits_can_change(offsets, ids, tokens, order) -> list[int | None]:
    """Every capacity at which some request's hits could step, and the one below: checking these checks all.

    Per request, the one-pass hits and the replayed hits are non-decreasing step functions of the capacity;
    the one-pass function steps only at its depths d. Where the two first differ, they already differ at the
    step below it (d - 1), at the step itself, or past the last step (the total size: all that is ever held).
    """
    depths = lru_prefix_token_depths(offsets, ids, tokens, order=order)
    finite = {int(d) for d in depths.tolist() if d != FIRST_ACCESS}
    total = sum(dict(zip(ids.tolist(), tokens.tolist(), strict=True)).values())
    return sorted({0, total, total + 1} | finite | {d - 1 for d in finite if d > 0}) + [None]


@settings(deadline=None)
@given(sized_workloads(), orders)
def test_token_depths_equal_direct_simulation_per_request_at_every_capacity(work, order):
    offsets, ids, tokens = work
    capacities = capacities_where_hits_can_change(offsets, ids, tokens, order)

    curve = token_capacity_curve(offsets, ids, tokens, capacities, order=order)

    for (capacity, hits), in_one_pass in zip(curve, capacities, strict=True):
        assert capacity == in_one_pass
        replayed = simulate_lru_tokens(offsets, ids, tokens, capacity, order=order)
        assert request_hits(offsets, ids, tokens, capacity, order=order).tolist() == replayed.tolist()
        assert replayed.tolist() == replay_evicting_after_each_touch(offsets, ids, tokens, capacity, order)
        assert hits == int(replayed.sum())


@settings(deadline=None)
@given(st.integers(1, 600), st.data(), orders)
def test_with_one_size_for_every_unit_the_token_curve_is_the_unit_curve_at_whole_units(size, data, order):
    offsets, ids, _ = data.draw(workloads)
    tokens = np.full_like(ids, size)
    capacities = data.draw(st.lists(st.integers(0, size * (len(ids) + 2)), max_size=8)) + [
        k * size + extra for k in range(len(ids) + 2) for extra in (-1, 0) if k * size + extra >= 0
    ]

    curve = token_capacity_curve(offsets, ids, tokens, capacities, order=order)

    whole_units = capacity_curve(offsets, ids, tokens, [c // size * size for c in capacities], size, order=order)
    assert [hits for _, hits in curve] == [hits for _, hits in whole_units]
    assert [c for c, _ in curve] == capacities
    unit_depths = lru_prefix_depths(offsets, ids, order=order)
    token_depths = lru_prefix_token_depths(offsets, ids, tokens, order=order)
    assert token_depths.tolist() == np.where(unit_depths == FIRST_ACCESS, FIRST_ACCESS, unit_depths * size).tolist()


@settings(deadline=None)
@given(sized_workloads(), orders, st.lists(st.integers(0, 5_000), max_size=10))
def test_token_hits_never_fall_as_the_cache_grows_and_never_exceed_the_input(work, order, capacities):
    offsets, ids, tokens = work
    ascending = [*sorted(capacities), None]

    hits = [h for _, h in token_capacity_curve(offsets, ids, tokens, ascending, order=order)]
    per_request = [request_hits(offsets, ids, tokens, c, order=order) for c in ascending]

    assert hits == sorted(hits)
    assert hits[-1] <= int(tokens.sum())
    assert all((smaller <= larger).all() for smaller, larger in zip(per_request, per_request[1:], strict=False))
    assert [int(r.sum()) for r in per_request] == hits


@settings(deadline=None)
@given(sized_workloads(), orders)
def test_an_unbounded_token_cache_hits_what_an_unbounded_unit_cache_hits(work, order):
    offsets, ids, tokens = work

    assert token_capacity_curve(offsets, ids, tokens, [None], order=order) == capacity_curve(
        offsets, ids, tokens, [None], 1, order=order
    )


@settings(deadline=None, max_examples=30)
@given(sized_workloads(), orders)
def test_the_compiled_token_pass_gives_what_the_plain_python_one_gives(work, order):
    offsets, ids, tokens = work

    plain = kernel_depths(offsets, ids, order, 1, tokens, python=True)

    assert kernel_depths(offsets, ids, order, 1, tokens) == plain
    assert lru_prefix_token_depths(offsets, ids, tokens, order=order).tolist() == plain


@settings(deadline=None)
@given(sized_workloads(), orders)
def test_renumbering_a_full_token_tree_and_growing_one_too_small_change_no_depth(work, order):
    offsets, ids, tokens = work

    never_full = kernel_depths(offsets, ids, order, len(ids), tokens)

    for span in range(1, len(ids)):
        assert kernel_depths(offsets, ids, order, span, tokens) == never_full


@settings(deadline=None)
@given(sized_workloads(sizes=st.integers(0, 3)), orders)
def test_a_token_curve_for_one_capacity_drops_the_deeper_units_and_still_equals_direct_simulation(work, order):
    # Small sizes, zeros included: more units fit within a horizon than the room first guessed, so the tree grows.
    offsets, ids, tokens = work

    for capacity in capacities_where_hits_can_change(offsets, ids, tokens, order)[:-1]:
        expected = int(simulate_lru_tokens(offsets, ids, tokens, capacity, order=order).sum())
        assert token_capacity_curve(offsets, ids, tokens, [capacity, None], order=order)[0] == (capacity, expected)


@pytest.mark.realdata
@pytest.mark.parametrize("order", ["request", "vllm"])
def test_mooncake_token_depths_agree_with_direct_simulation(mooncake, order):
    # The real sizes: every block 512 tokens but each request's last, which is shorter and a unit of its own.
    offsets, ids, tokens, _ = mooncake
    capacities = [0, 511, 1_000_000, 3_000_000, 10_000_000, None]

    curve = token_capacity_curve(offsets, ids, tokens, capacities, order=order)

    assert curve == [(c, int(simulate_lru_tokens(offsets, ids, tokens, c, order=order).sum())) for c in capacities]


def test_the_capacity_curve_never_passes_eligible_and_its_unbounded_point_is_the_ideal_candidate_in_whole_blocks(
    tmp_path,
):
    """On the bundled sample (proxy-counted Claude traffic, scaled to reported totals) the curve once passed eligible,
    because every hit was scaled by one average factor instead of its own request's."""
    from pathlib import Path

    from zumik_cli.analysis.waterfall import WaterfallOptions, compute_waterfall
    from zumik_cli.dataset.store import Dataset
    from zumik_cli.ingest.pipeline import ingest

    data = tmp_path / "d"
    ingest([Path(__file__).parent.parent / "sample_traces"], data)
    ideal = compute_waterfall(Dataset(data), WaterfallOptions(rules="ideal", ttl_none=True)).summary
    total = ideal["total_input_tokens"]["tokens"]
    points = [round(point["rate"] * total) for point in ideal["capacity_curve"]]
    assert all(point <= ideal["eligible"]["tokens"] for point in points)
    assert points == sorted(points)
    # whole blocks only: at most the token-exact candidate, and short of it by less than 0.1% on this sample
    assert ideal["candidate"]["tokens"] * 0.999 <= points[-1] <= ideal["candidate"]["tokens"]

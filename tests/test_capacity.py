import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zumik_cli.capacity import (
    FIRST_ACCESS,
    _stack_depths_kernel,
    capacity_curve,
    lru_prefix_depths,
    simulate_lru,
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


@settings(deadline=None, max_examples=30)
@given(workloads, orders)
def test_the_compiled_pass_gives_what_the_plain_python_one_gives(work, order):
    offsets, ids, _ = work
    dense = np.unique(ids, return_inverse=True)[1].ravel().astype(np.int64)

    plain = _stack_depths_kernel(offsets.astype(np.int64), dense, int(dense.max(initial=-1)) + 1, order == "vllm")

    assert lru_prefix_depths(offsets, ids, order=order).tolist() == plain.tolist()

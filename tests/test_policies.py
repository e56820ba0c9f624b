"""Routing policies: known answers on hand-made inputs and on small hand-built workloads, ingested and simulated."""

from __future__ import annotations

from pathlib import Path

import pytest
from release_workloads import (
    BUDGET,
    CACHEY,
    CHEAP,
    FAST,
    budget_target,
    cachey_target,
    cheap_target,
    decisions,
    fast_target,
    ingest_records,
    key,
    release,
    session,
    target,
    write_history,
)

from zumik_cli.routing.policies import (
    POLICIES,
    PolicyInputs,
    TargetState,
    cache_affinity,
    cheapest,
    expected_cost,
    lowest_expected_latency,
    primary,
    recorded,
    reuse_aware,
    reuse_probability,
)
from zumik_cli.routing.releases import Release, history_from_documents, load_history
from zumik_cli.routing.simulate import simulate


def make_release(targets: list[dict], policy: str = "primary", constraints: dict | None = None) -> Release:
    doc = release("alr_2026_06_01_001", 0, targets, policy=policy, constraints=constraints)
    return history_from_documents([doc], "test").releases[0]


def inputs(
    rel: Release,
    prompt: int = 10_000,
    output: int = 0,
    warm: dict[str, int] | None = None,
    session_target: str | None = None,
    gaps: tuple[float, ...] = (),
    recorded_target: str | None = None,
) -> PolicyInputs:
    warm = warm or {}
    states = tuple(
        TargetState(t.key, warm.get(t.key, 0), prompt - warm.get(t.key, 0), "5m", 300.0) for t in rel.targets
    )
    return PolicyInputs(prompt, output, session_target, gaps, recorded_target, states)


# --- known answers on hand-made inputs --------------------------------------------------------------------------


def test_cheapest_weighs_output_tokens_at_their_own_price():
    rel = make_release(
        [
            target("a", "input-cheap", prices=(1.0, 100.0, 0.1, 1.0)),
            target("b", "output-cheap", prices=(2.0, 1.0, 0.2, 2.0)),
        ]
    )

    assert cheapest(rel, inputs(rel, 1000, 0)).target == "a/input-cheap"
    assert cheapest(rel, inputs(rel, 1000, 100)).target == "b/output-cheap"
    assert cheapest(rel, inputs(rel, 1000, 100)).reason == "cheapest_list_price_under_policy"


def test_lowest_expected_latency_counts_the_prefix_already_warm():
    rel = make_release(
        [
            target("a", "cache-fast", ttft=(100, 200), input_ms=100, cached_ms=1),
            target("b", "prefill-fast", ttft=(300, 400), input_ms=10, cached_ms=10),
        ]
    )

    assert lowest_expected_latency(rel, inputs(rel, 10_000)).target == "b/prefill-fast"  # 1,100 ms vs 400 ms
    warm = inputs(rel, 10_000, warm={"a/cache-fast": 9_000})  # 100 + 100 + 9 = 209 ms
    assert lowest_expected_latency(rel, warm).target == "a/cache-fast"


def test_cache_affinity_prefers_the_warmest_target_then_the_session_then_the_cheapest():
    rel = make_release([target("a", "dear", prices=(5.0, 5.0, 0.5, 6.0)), target("b", "cheap")])

    assert cache_affinity(rel, inputs(rel, warm={"a/dear": 4_000})).target == "a/dear"
    assert cache_affinity(rel, inputs(rel, session_target="a/dear")).reason == "session_affinity"
    cold = cache_affinity(rel, inputs(rel))
    assert (cold.target, cold.reason) == ("b/cheap", "cold_start_cheapest")
    tie = inputs(rel, warm={"a/dear": 100, "b/cheap": 100}, session_target="b/cheap")
    assert cache_affinity(rel, tie).target == "b/cheap"


def test_reuse_aware_pays_a_cache_write_now_when_the_session_is_likely_to_come_back_within_the_ttl():
    rel = make_release([budget_target(), cachey_target()])
    budget, cachey = key(BUDGET), key(CACHEY)

    first = inputs(rel, 10_000)  # no gaps yet: even odds the session comes back
    assert expected_cost(rel.targets[1], first) == pytest.approx((10 * 10_000 - 0.5 * 10_000 * 9) / 1e6)
    assert expected_cost(rel.targets[0], first) == pytest.approx(6 * 10_000 / 1e6)
    assert reuse_aware(rel, first).target == cachey
    long_gaps = inputs(rel, 10_000, gaps=(900.0,) * 8)  # the session always came back after the 300 s TTL
    assert reuse_aware(rel, long_gaps).target == budget


def test_reuse_probability_is_the_share_of_recent_gaps_within_the_ttl_with_a_prior_of_one_half():
    assert reuse_probability((), 300) == 0.5
    assert reuse_probability((10.0, 20.0, 400.0), 300) == pytest.approx(3 / 5)
    assert reuse_probability((10.0, 4000.0), None) == pytest.approx(3 / 4)


def test_constraints_restrict_every_policy_and_only_the_latency_limit_is_ever_relaxed():
    rel = make_release([fast_target(), cheap_target()], constraints={"allowed_providers": ["alpha"]})
    for name in ("primary", "cheapest", "lowest_expected_latency", "cache_affinity", "reuse_aware"):
        assert POLICIES[name](rel, inputs(rel)).target == key(FAST), name

    slow = make_release([fast_target(), cheap_target()], constraints={"max_latency_ms": 1000})
    assert cheapest(slow, inputs(slow, 1000)).target == key(FAST)  # CHEAP's p95 is over 3 s
    none_fit = make_release([fast_target(), cheap_target()], constraints={"max_latency_ms": 1})
    choice = cheapest(none_fit, inputs(none_fit, 1000))
    assert (choice.target, choice.reason) == (key(CHEAP), "cheapest_list_price_under_policy_latency_constraint_relaxed")


def test_primary_takes_the_first_target_the_constraints_allow():
    rel = make_release([fast_target(), cheap_target()], constraints={"allowed_providers": ["beta"]})
    assert primary(rel, inputs(rel)).target == key(CHEAP)


def test_recorded_keeps_what_happened_and_says_whether_the_release_policy_agrees():
    rel = make_release([fast_target(), cheap_target()], policy="cheapest")

    agrees = recorded(rel, inputs(rel, recorded_target=key(CHEAP)))
    differs = recorded(rel, inputs(rel, recorded_target=key(FAST)))
    elsewhere = recorded(rel, inputs(rel, recorded_target="omega/m-other"))

    assert (agrees.target, agrees.reason) == (key(CHEAP), "cheapest_list_price_under_policy")
    assert (differs.target, differs.reason) == (key(FAST), "recorded_differs_from_release_policy")
    assert (elsewhere.target, elsewhere.reason) == ("omega/m-other", "recorded_target_not_in_release")


# --- known answers on ingested workloads ------------------------------------------------------------------------


def run(tmp_path: Path, records: list[dict], docs: list[dict], *policies: str) -> Path:
    data = ingest_records(tmp_path / "work", records)
    simulate(data, load_history(write_history(tmp_path / "releases.yaml", docs)), list(policies))
    return data


def test_cheapest_sends_every_request_to_the_lowest_list_price_and_recorded_keeps_the_trace(tmp_path):
    docs = [release("alr_2026_06_01_001", -60, [fast_target(), cheap_target()], policy="primary")]
    data = run(tmp_path, session("s1", "billing", 0, [FAST, FAST, FAST]), docs, "cheapest")

    chosen, kept = decisions(data, "cheapest"), decisions(data, "recorded")

    assert [d["resolved_model"] for d in chosen] == [key(CHEAP)] * 3
    assert [d["resolved_model"] for d in kept] == [key(FAST)] * 3
    assert {d["resolution_reason"] for d in kept} == {"primary_target_under_policy"}
    assert {d["release_source"] for d in kept} == {"resolved_by_time"}
    prompts = [d["prompt_tokens"] for d in kept]
    # ideal rules (no TTL, no minimum): each call reads exactly the previous call's prompt
    assert [d["realized_tokens"] for d in kept] == [0, prompts[0], prompts[1]]
    # CHEAP prices reads, writes and input alike at $1/Mtok; no output was recorded
    assert [d["cost"] for d in chosen] == pytest.approx([p / 1e6 for p in prompts])
    # the recorded policy costs what was billed: the trace reported no cache reads or writes, so every prompt token
    # is paid at FAST's input price, $5/Mtok
    assert [d["cost"] for d in kept] == pytest.approx([p * 5.0 / 1e6 for p in prompts])


def test_lowest_expected_latency_sends_every_request_to_the_fastest_target(tmp_path):
    docs = [release("alr_2026_06_01_001", -60, [cheap_target(), fast_target()], policy="cheapest")]
    data = run(tmp_path, session("s1", "billing", 0, [CHEAP, CHEAP]), docs, "lowest_expected_latency")

    chosen = decisions(data, "lowest_expected_latency")
    assert [d["resolved_model"] for d in chosen] == [key(FAST)] * 2
    assert {d["resolution_reason"] for d in chosen} == {"lowest_expected_latency_under_policy"}


def test_cache_affinity_keeps_a_warm_session_on_its_target_across_a_new_release(tmp_path):
    docs = [
        release("alr_2026_06_01_001", -3600, [fast_target()], policy="primary"),
        release(
            "alr_2026_06_01_002",
            25,
            [cheap_target(), fast_target()],
            policy="cheapest",
            supersedes="alr_2026_06_01_001",
        ),
    ]
    records = session("s1", "billing", 0, [FAST, FAST, FAST, CHEAP, CHEAP]) + session(
        "s2", "shipping", 100, [CHEAP, CHEAP]
    )
    data = run(tmp_path, records, docs, "cache_affinity", "cheapest")

    def models(policy: str) -> list[str]:
        return [d["resolved_model"] for d in decisions(data, policy)]

    assert models("recorded") == [key(FAST)] * 3 + [key(CHEAP)] * 4
    assert models("cheapest") == [key(FAST)] * 3 + [key(CHEAP)] * 4
    assert models("cache_affinity") == [key(FAST)] * 5 + [key(CHEAP)] * 2
    affinity = decisions(data, "cache_affinity")
    assert [d["resolution_reason"] for d in affinity][3:6] == [
        "warm_prefix_on_target",
        "warm_prefix_on_target",
        "cold_start_cheapest",
    ]
    assert [d["alias_release"] for d in affinity] == ["alr_2026_06_01_001"] * 3 + ["alr_2026_06_01_002"] * 4
    realized = {p: sum(d["realized_tokens"] for d in decisions(data, p)) for p in ("recorded", "cache_affinity")}
    assert realized["cache_affinity"] > realized["recorded"]


def test_reuse_aware_buys_a_cache_write_that_pays_back_and_cheapest_does_not(tmp_path):
    docs = [release("alr_2026_06_01_001", -60, [budget_target(), cachey_target()], policy="primary")]
    data = run(tmp_path, session("s1", "billing", 0, [BUDGET] * 4), docs, "reuse_aware", "cheapest")

    aware, cheap = decisions(data, "reuse_aware"), decisions(data, "cheapest")
    prompts = [d["prompt_tokens"] for d in aware]

    assert [d["resolved_model"] for d in aware] == [key(CACHEY)] * 4
    assert [d["resolved_model"] for d in cheap] == [key(BUDGET)] * 4
    expected = [prompts[0] * 10.0] + [prompts[i - 1] * 1.0 + (prompts[i] - prompts[i - 1]) * 10.0 for i in (1, 2, 3)]
    assert [d["cost"] for d in aware] == pytest.approx([e / 1e6 for e in expected])
    assert sum(d["cost"] for d in aware) < sum(d["cost"] for d in cheap) == pytest.approx(6 * sum(prompts) / 1e6)


def test_primary_follows_the_release_order_within_its_constraints(tmp_path):
    docs = [
        release(
            "alr_2026_06_01_001",
            -60,
            [fast_target(), cheap_target()],
            policy="primary",
            constraints={"allowed_providers": ["beta"]},
        )
    ]
    data = run(tmp_path, session("s1", "billing", 0, [FAST, FAST]), docs, "primary")

    assert [d["resolved_model"] for d in decisions(data, "primary")] == [key(CHEAP)] * 2
    assert {d["resolution_reason"] for d in decisions(data, "recorded")} == {"recorded_differs_from_release_policy"}


def test_requests_without_an_alias_or_a_known_release_keep_their_recorded_target_under_every_policy(tmp_path):
    docs = [release("alr_2026_06_01_001", -60, [fast_target(), cheap_target()], policy="cheapest")]
    records = (
        session("direct", "billing", 0, [FAST], alias=None)
        + session("unknown", "shipping", 5, [FAST], release="alr_2026_05_01_009")
        + session("early", "returns", -3600, [FAST])
    )
    data = run(tmp_path, records, docs)

    for policy in ("recorded", "cheapest", "reuse_aware", "cache_affinity"):
        rows = {d["trace_id"]: d for d in decisions(data, policy)}
        assert {t: d["resolved_model"] for t, d in rows.items()} == dict.fromkeys(rows, key(FAST))
        assert rows["direct-0"]["resolution_reason"] == "no_alias_model_requested_directly"
        assert rows["direct-0"]["requested_model"] == "m-fast"
        assert rows["unknown-0"]["resolution_reason"] == "release_not_in_history"
        assert rows["early-0"]["resolution_reason"] == "no_release_of_alias_at_request_time"

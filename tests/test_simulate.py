"""Simulation: invariants (Hypothesis), decisions published through the manifest, and the synth comparison."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import runner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from release_workloads import (
    FAST,
    cheap_target,
    decisions,
    fast_target,
    ingest_records,
    release,
    session,
    synth_dataset,
    target,
    write_history,
)

from zumik_cli.analysis.prefix_cache import Prompt
from zumik_cli.cli import app
from zumik_cli.core.errors import ZumikError
from zumik_cli.dataset.store import Dataset, read_manifest
from zumik_cli.routing.decisions import policy_comparison
from zumik_cli.routing.policies import POLICIES
from zumik_cli.routing.releases import History, history_from_documents, load_history
from zumik_cli.routing.simulate import simulate, simulate_workload
from zumik_cli.routing.workload import WorkRequest, load_workload

SIMULATED = [p for p in POLICIES if p != "recorded"]


# --- invariants on generated workloads --------------------------------------------------------------------------

HISTORY = history_from_documents(
    [
        release(
            "alr_2026_06_01_001",
            0,
            [
                target("anthropic", "claude-sonnet-4-5", prices=(3.0, 15.0, 0.3, 3.75), ttft=(600, 900)),
                target("openai", "gpt-4.1", prices=(2.0, 8.0, 0.5, 2.0), ttft=(400, 700)),
                target("vllm", "llama", prices=(0.5, 0.5, 0.0, 0.5), ttft=(900, 2000), rules="vllm"),
            ],
            policy="cheapest",
        ),
        release(
            "alr_2026_06_01_002",
            3000,
            [
                target("anthropic", "claude-haiku-4-5", prices=(1.0, 5.0, 0.1, 1.25), ttft=(300, 450)),
                target("openai", "gpt-4.1", prices=(2.0, 8.0, 0.5, 2.0), ttft=(400, 700)),
            ],
            policy="primary",
            supersedes="alr_2026_06_01_001",
            constraints={"max_latency_ms": 3000},
        ),
    ],
    "generated",
)
ROUTES = [
    ("anthropic", "claude-sonnet-4-5"),
    ("openai", "gpt-4.1"),
    ("vllm", "llama"),
    ("anthropic", "claude-haiku-4-5"),
    ("google", "gemini-2.5-pro"),
]
T0 = HISTORY.get("alr_2026_06_01_001").created_ts


@st.composite
def workloads(draw: st.DrawFn) -> list[WorkRequest]:
    """Requests in time order whose prompts share prefixes (a few conversations, each resent longer)."""
    count = draw(st.integers(1, 25))
    now = T0 + draw(st.floats(0, 100))
    requests = []
    for i in range(count):
        now += draw(st.sampled_from([0.0, 2.0, 30.0, 400.0, 2000.0, 4000.0]))
        conversation = draw(st.integers(0, 3))
        depth = draw(st.integers(1, 8))
        sizes = [200 + (conversation * 131 + b * 977) % 1900 for b in range(depth)]
        ends = tuple(sum(sizes[: b + 1]) for b in range(depth))
        chains = tuple(conversation * 1000 + b + 1 for b in range(depth))
        provider, model = draw(st.sampled_from(ROUTES))
        marked = draw(st.booleans())
        requests.append(
            WorkRequest(
                rid=i,
                trace_id=f"trc_{i:04d}",
                session_id=f"s{conversation}",
                alias=draw(st.sampled_from(["chat", "chat", "chat", ""])),
                alias_release="",
                provider=provider,
                model=model,
                model_revision="",
                engine="",
                region="",
                snapshot_id="",
                output_tokens=draw(st.integers(0, 400)),
                latency_ms=None,
                approximate=False,
                prompt=Prompt(
                    draw(st.sampled_from(["acme", "globex"])),
                    now,
                    chains,
                    ends,
                    (ends[-1],) if marked else (),
                    ("5m",) if marked else (),
                ),
            )
        )
    return requests


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads(), st.integers(0, 2**32))
def test_simulation_is_deterministic_for_a_seed_and_decisions_do_not_depend_on_it(requests, seed):
    first = simulate_workload(requests, HISTORY, seed=seed)
    again = simulate_workload(requests, HISTORY, seed=seed)
    other = simulate_workload(requests, HISTORY, seed=seed + 1)

    assert [s.to_json() for s in first.summaries] == [s.to_json() for s in again.summaries]
    for policy, table in first.decisions.items():
        assert table.equals(again.decisions[policy])
        assert table.column("resolved_target").equals(other.decisions[policy].column("resolved_target"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads())
def test_every_request_gets_exactly_one_decision_per_policy_with_non_negative_costs(requests):
    result = simulate_workload(requests, HISTORY)
    traces = [r.trace_id for r in requests]

    assert list(result.decisions) == list(POLICIES)
    for table in result.decisions.values():
        rows = table.to_pylist()
        assert [row["trace_id"] for row in rows] == traces
        for row in rows:
            assert row["cost"] >= 0 and row["list_cost"] >= 0
            assert 0 <= row["realized_tokens"] <= row["prompt_tokens"]
            assert 0 <= row["cache_write_tokens"] <= row["prompt_tokens"] - row["realized_tokens"]
            assert row["resolved_model"] and row["resolution_reason"]
    assert all(s.cost >= 0 and s.realized_tokens >= 0 for s in result.summaries)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads())
def test_cheapest_is_never_more_expensive_on_list_prices_without_cache(requests):
    result = simulate_workload(requests, HISTORY)
    cheapest = result.decisions["cheapest"].column("list_cost").to_pylist()

    for policy in SIMULATED:
        costs = result.decisions[policy].column("list_cost").to_pylist()
        assert all(c <= o + 1e-12 for c, o in zip(cheapest, costs, strict=True)), policy
        assert result.summary("cheapest").list_cost <= result.summary(policy).list_cost + 1e-9


# --- the dataset side -------------------------------------------------------------------------------------------


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, Path]:
    docs = [release("alr_2026_06_01_001", -60, [fast_target(), cheap_target()], policy="primary")]
    data = ingest_records(tmp_path / "work", session("s1", "billing", 0, [FAST, FAST, FAST]))
    return data, write_history(tmp_path / "releases.yaml", docs)


def test_simulate_publishes_one_part_per_policy_and_a_rerun_replaces_only_its_own(small):
    data, releases = small
    history = load_history(releases)
    simulate(data, history)
    first = read_manifest(data)
    simulate(data, history, ["cheapest"], seed=7)
    second = read_manifest(data)

    assert len(first.parts["decisions"]) == len(POLICIES)
    assert len(second.parts["decisions"]) == len(POLICIES)
    replaced = set(first.parts["decisions"]) - set(second.parts["decisions"])
    assert {first.extra["simulations"][p]["part"] for p in ("recorded", "cheapest")} == replaced
    assert {entry["part"] for entry in second.retired} == replaced  # kept while a reader may still list them
    assert second.extra["simulations"]["cheapest"]["seed"] == 7
    assert second.extra["simulations"]["primary"] == first.extra["simulations"]["primary"]
    counts = Dataset(data).connect().execute("SELECT policy, count(*) FROM decisions GROUP BY 1").fetchall()
    assert dict(counts) == dict.fromkeys(POLICIES, 3)
    assert [r[0] for r in Dataset(data).connect().execute("SELECT release_id FROM releases").fetchall()] == [
        "alr_2026_06_01_001"
    ]
    rows = policy_comparison(Dataset(data))
    assert [r["policy"] for r in rows][0] == "recorded" and {r["policy"] for r in rows} == set(POLICIES)
    part = pq.read_table(data / second.extra["simulations"]["cheapest"]["part"])
    assert {"requested_model", "alias_release", "resolved_model", "resolution_reason", "trace_id"} <= set(
        part.column_names
    )


def test_the_same_seed_gives_the_same_comparison_and_run_id(small):
    data, releases = small
    args = ["simulate", "--data", str(data), "--releases", str(releases), "--seed", "3", "--json"]
    first, second = runner().invoke(app, args), runner().invoke(app, args)

    assert first.exit_code == second.exit_code == 0
    assert first.stdout == second.stdout
    result = json.loads(first.stdout)
    for row in result["policies"]:
        assert {
            "policy",
            "cost",
            "realized_tokens",
            "realized_rate",
            "latency_p50_ms",
            "latency_p95_ms",
            "churn",
        } <= set(row)
    assert result["policies"][0]["policy"] == "recorded"
    assert "written to" in first.stderr


def test_the_table_goes_to_stdout_and_the_note_to_stderr(small):
    data, releases = small
    result = runner().invoke(app, ["simulate", "-d", str(data), "-r", str(releases), "-p", "reuse_aware"])

    assert result.exit_code == 0
    assert "reuse_aware" in result.stdout and "recorded" in result.stdout
    assert "Decisions of 2 policies written" in result.stderr


def test_an_unknown_policy_is_refused_with_the_known_ones(small):
    data, releases = small
    result = runner().invoke(app, ["simulate", "-d", str(data), "-r", str(releases), "-p", "fastest"])
    assert result.exit_code == 1
    assert "unknown policy 'fastest'" in result.stderr and "reuse_aware" in result.stderr


def test_simulate_on_a_folder_that_is_not_a_dataset_says_to_ingest(tmp_path, small):
    _, releases = small
    with pytest.raises(ZumikError, match="zumik ingest"):
        simulate(tmp_path / "nothing", load_history(releases))
    assert not (tmp_path / "nothing").exists()


def test_on_the_synth_demo_reuse_aware_and_cache_affinity_capture_at_least_the_recorded_reuse():
    data, releases = synth_dataset()
    result = simulate_workload(load_workload(Dataset(data)), load_history(releases))
    recorded = result.summary("recorded")

    assert result.unresolved == {}
    assert result.summary("reuse_aware").realized_tokens >= recorded.realized_tokens
    assert result.summary("cache_affinity").realized_tokens >= recorded.realized_tokens
    assert result.summary("cache_affinity").realized_tokens > recorded.realized_tokens
    for policy in POLICIES:  # the synth releases list every recorded target, so recorded is in the race too
        assert result.summary("cheapest").list_cost <= result.summary(policy).list_cost + 1e-9, policy
    assert result.summary("primary").to_json()["cost"] == recorded.to_json()["cost"]  # synth's gateway: primary


def test_the_releases_recorded_by_simulate_round_trip_to_the_same_digests(small):
    data, releases = small
    simulate(data, load_history(releases))
    from zumik_cli.routing.release_store import recorded_history

    stored = recorded_history(Dataset(data))
    assert [r.digest for r in stored.releases] == [r.digest for r in load_history(releases).releases]
    assert isinstance(stored, History)


def test_decisions_say_which_target_each_request_went_to_under_each_policy(small):
    data, releases = small
    simulate(data, load_history(releases), ["cheapest"])
    assert {d["resolved_target"] for d in decisions(data, "cheapest")} == {"beta/m-cheap"}

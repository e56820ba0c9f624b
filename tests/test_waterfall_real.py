"""Conformance on real traces nobody on this team wrote: zumik's waterfall must give the reference figures of
``shared/data/README.md`` (computed independently, under the same definitions) on exactly those files.

Each dataset is ingested once per module; the folder is absent on a user's machine and present in CI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from zumik_cli.analysis.waterfall import Waterfall, WaterfallOptions, compute_waterfall
from zumik_cli.dataset.store import Dataset
from zumik_cli.ingest.pipeline import ingest

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(
        not REAL.is_dir(), reason=f"the real traces are not here ({REAL}); CI has them beside the checkout"
    ),
]

MILLION = 1_000_000


def _dataset(tmp_path_factory: pytest.TempPathFactory, folder: str) -> Dataset:
    data = tmp_path_factory.mktemp(folder) / "data"
    summary = ingest([REAL / folder], data)
    assert summary.quarantined == 0
    return Dataset(data)


def rate(stage: dict[str, Any]) -> float:
    return round(stage["rate"], 4)


@pytest.fixture(scope="module")
def mooncake(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return _dataset(tmp_path_factory, "mooncake_fast25")


@pytest.fixture(scope="module")
def mooncake_ideal(mooncake: Dataset) -> Waterfall:
    capacities = (MILLION, 3 * MILLION, 10 * MILLION, 50 * MILLION, None)
    return compute_waterfall(mooncake, WaterfallOptions(rules="ideal", capacities=capacities))


@pytest.fixture(scope="module")
def weka(tmp_path_factory: pytest.TempPathFactory) -> Waterfall:
    # one pass gives all three figures: eligible ignores the TTL, candidate is the 300 s one, and the TTL
    # sensitivity row carries 3,600 s
    dataset = _dataset(tmp_path_factory, "weka_claude_code")
    return compute_waterfall(dataset, WaterfallOptions(rules="ideal", ttl_seconds=300, curves=False))


@pytest.fixture(scope="module")
def mini_swe(tmp_path_factory: pytest.TempPathFactory) -> Waterfall:
    dataset = _dataset(tmp_path_factory, "mini_swe_agent_gemini3pro")
    return compute_waterfall(dataset, WaterfallOptions(curves=False))


@pytest.fixture(scope="module")
def tau_bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, Waterfall]:
    dataset = _dataset(tmp_path_factory, "tau_bench_airline")
    return dataset, compute_waterfall(dataset, WaterfallOptions(curves=False, by=("session",)))


def test_mooncake_eligible_is_the_reference_infinite_cache_figure(mooncake_ideal):
    s = mooncake_ideal.summary

    assert s["requests"] == 3993
    assert s["total_input_tokens"]["tokens"] == 61_194_628
    assert rate(s["eligible"]) == 0.6512
    assert s["eligible"]["evidence"] == "estimated"  # coarse blocks of a hash-id trace
    assert s["candidate"]["tokens"] == s["eligible"]["tokens"]  # one key, no TTL, no minimum under ideal


def test_mooncake_capacity_curve_is_the_reference_lru_figures(mooncake_ideal):
    curve = {point["capacity_tokens"]: round(point["rate"], 4) for point in mooncake_ideal.summary["capacity_curve"]}

    assert curve == {MILLION: 0.1421, 3 * MILLION: 0.3151, 10 * MILLION: 0.5768, 50 * MILLION: 0.6512, None: 0.6512}


def test_mooncake_candidate_under_a_bounded_cache_is_the_curve_at_that_capacity(mooncake):
    w = compute_waterfall(mooncake, WaterfallOptions(rules="ideal", capacity_tokens=MILLION, curves=False))

    assert rate(w.summary["candidate"]) == 0.1421
    evicted = next(c for c in w.summary["causes"] if c["cause"] == "evicted")
    assert evicted["tokens"] == w.summary["eligible"]["tokens"] - w.summary["candidate"]["tokens"] > 0


def test_weka_eligible_and_ttl_candidates_are_the_reference_figures(weka):
    s = weka.summary

    assert s["requests"] == 1026
    assert s["total_input_tokens"]["tokens"] == 134_185_380
    assert rate(s["eligible"]) == 0.9411
    assert rate(s["candidate"]) == 0.8890
    ttl = {row["ttl_seconds"]: round(row["rate"], 4) for row in s["ttl_sensitivity"]}
    assert ttl[300] == 0.8890
    assert ttl[3600] == 0.9404
    expired = next(c for c in s["causes"] if c["cause"] == "expired")
    assert expired["tokens"] > 0


def test_mini_swe_agent_total_and_realized_are_the_measured_usage(mini_swe):
    s = mini_swe.summary

    assert s["requests"] == 266
    assert s["total_input_tokens"] == {"tokens": 4_781_026, "rate": 1.0, "evidence": "measured"}
    assert s["realized"]["tokens"] == 4_098_373
    assert s["realized"]["evidence"] == "measured"
    assert rate(s["realized"]) == 0.8572
    assert s["eligible"]["tokens"] >= s["realized"]["tokens"]


def test_mini_swe_agent_shows_requests_that_realized_more_than_candidate(mini_swe):
    s = mini_swe.summary
    table = mini_swe.per_request.to_table().to_pylist()
    over = [r for r in table if r["realized"] > r["candidate"]]

    beyond = [r for r in over if r["realized"] - r["candidate"] > r["over_tolerance"]]
    within = [r for r in over if r["realized"] - r["candidate"] <= r["over_tolerance"]]

    assert beyond, "the proxy-tokenized Gemini prompts should leave some requests above their candidate"
    assert s["over_realized"]["requests"] == len(beyond)
    assert s["over_realized"]["tokens"] == sum(r["realized"] - r["candidate"] for r in beyond)
    assert s["over_realized"]["within_estimate_requests"] == len(within)
    assert s["over_realized"]["within_estimate_tokens"] == sum(r["realized"] - r["candidate"] for r in within)
    assert "never hidden" in s["over_realized"]["explanation"]
    assert s["missed"]["tokens"] - s["over_realized"]["tokens"] - s["over_realized"]["within_estimate_tokens"] == sum(
        r["candidate"] - r["realized"] for r in table
    )
    assert any(c["row"] == "eligible" and "proxy tokenizer" in c["reason"] for c in s["cannot_compute"])


def test_tau_bench_eligible_comes_from_content_and_every_conversation_is_a_session(tau_bench):
    dataset, w = tau_bench
    s = w.summary
    exact = dataset.connect().execute("SELECT bool_and(tokenizer_exact) FROM requests").fetchone()[0]

    assert s["eligible"]["tokens"] > 0
    # counted by zumik (no usage): a proxy tokenizer where o200k_base is not available offline
    assert s["eligible"]["evidence"] == ("simulated" if exact else "estimated")
    assert s["realized"]["tokens"] is None
    sessions = s["breakdowns"]["session"]
    assert len(sessions) == 200
    assert sum(row["requests"] for row in sessions) == s["requests"]
    assert sum(row["eligible"] for row in sessions) == s["eligible"]["tokens"]

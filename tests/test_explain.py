"""`zumik explain`: the resolution record, the reuse accounting of one request, and the recomputed decision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import runner
from release_workloads import (
    CHEAP,
    FAST,
    cheap_target,
    fast_target,
    ingest_records,
    key,
    release,
    session,
    synth_dataset,
    target,
    write_history,
)

from zumik_cli.analysis.waterfall import WaterfallOptions, compute_waterfall
from zumik_cli.cli import app
from zumik_cli.core.errors import ZumikError
from zumik_cli.dataset.store import Dataset
from zumik_cli.diagnosis.divergence import compute_divergence
from zumik_cli.diagnosis.explain import RECORD_FIELDS, explain, recompute
from zumik_cli.ingest.pipeline import ingest
from zumik_cli.routing.release_store import recorded_history
from zumik_cli.routing.releases import load_history
from zumik_cli.routing.simulate import simulate

MINI = ("openai", "gpt-4o-mini")
SAMPLE_TRACES = Path(__file__).parent.parent / "sample_traces"


def mini_target() -> dict:
    return target(*MINI, prices=(0.15, 0.6, 0.075, 0.15), ttft=(250, 350))


@pytest.fixture
def simulated(tmp_path: Path) -> tuple[Path, Path]:
    docs = [release("alr_2026_06_01_001", -60, [fast_target(), cheap_target()], policy="primary")]
    data = ingest_records(tmp_path / "work", session("s1", "billing", 0, [FAST, FAST, FAST]))
    history = write_history(tmp_path / "releases.yaml", docs)
    simulate(data, load_history(history))
    return data, history


def test_explain_recomputes_the_same_resolved_model_for_every_recorded_decision_of_the_synth_demo():
    data, releases = synth_dataset()
    history = load_history(releases)
    simulate(data, history, ["recorded"])
    dataset = Dataset(data)
    stored = recorded_history(dataset)
    cursor = dataset.connect().execute("SELECT * FROM decisions WHERE policy = 'recorded' ORDER BY timestamp")
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    assert len(rows) == dataset.connect().execute("SELECT count(*) FROM requests").fetchone()[0]
    for row in rows:  # what explain does for each decision, without the reuse accounting
        again = recompute({**row, "policy_inputs": json.loads(row["policy_inputs"])}, history, stored)
        assert (again["outcome"], again["divergence"]) == ("same", None), (row["trace_id"], again)
        assert again["resolved_model"] == row["resolved_model"]
    waterfall = compute_waterfall(dataset, WaterfallOptions(curves=False, capacities=()))
    for row in rows[:: max(len(rows) // 12, 1)]:  # and end to end on a spread of them
        result = explain(dataset, row["trace_id"], history=history, waterfall=waterfall)
        assert result.recomputation["outcome"] == "same"
        assert result.record["resolved_model"] == row["resolved_model"]


def test_explain_prints_the_resolution_record_with_exactly_its_five_fields(simulated):
    data, _ = simulated
    as_json = runner().invoke(app, ["explain", "s1-2", "--data", str(data), "--json"])
    as_table = runner().invoke(app, ["explain", "s1-2", "--data", str(data)])

    assert as_json.exit_code == as_table.exit_code == 0
    assert as_json.stderr == as_table.stderr == ""
    result = json.loads(as_json.stdout)
    assert set(RECORD_FIELDS) <= set(result["record"])
    assert result["record"] == {
        "requested_model": "chat",
        "alias_release": "alr_2026_06_01_001",
        "resolved_model": key(FAST),
        "resolution_reason": "primary_target_under_policy",
        "trace_id": "s1-2",
        "snapshot_id": result["record"]["snapshot_id"],
        "policy": "recorded",
    }
    assert result["record"]["snapshot_id"].startswith("snp_")
    assert result["reuse"]["shares_prefix_with"]["trace_id"] == "s1-1"
    assert result["decision"]["policy_inputs"]["recorded_target"] == key(FAST)
    assert "Resolution record" in as_table.stdout and "Recomputation: same" in as_table.stdout


def test_explain_recomputes_a_simulated_policy_decision_too(simulated):
    data, _ = simulated
    result = explain(Dataset(data), "s1-1", policy="cheapest").to_json()

    assert result["record"]["resolved_model"] == key(CHEAP)
    assert result["recomputation"]["outcome"] == "same"
    assert result["recomputation"]["policy_applied"] == "cheapest"


def test_explain_names_the_earlier_request_and_the_expired_ttl_that_cut_the_candidate(tmp_path):
    docs = [release("alr_2026_06_01_001", -60, [mini_target()])]
    data = ingest_records(tmp_path / "w", session("s1", "billing", 0, [MINI, MINI], gap_s=1000))
    history = write_history(tmp_path / "releases.yaml", docs)

    result = runner().invoke(app, ["explain", "s1-1", "--data", str(data), "--releases", str(history), "--json"])

    assert result.exit_code == 0, result.stderr
    reuse = json.loads(result.stdout)["reuse"]
    assert reuse["shares_prefix_with"]["trace_id"] == "s1-0"
    assert reuse["shares_prefix_with"]["seconds_before"] == 1000.0
    assert reuse["shares_prefix_with"]["tokens"] > 1024
    assert reuse["cut_by"] == "expired"
    assert reuse["stages"]["candidate"] == 0 < reuse["stages"]["eligible"]
    assert "1000 s before" in reuse["cuts"][0]["why"] and "TTL is 600" in reuse["cuts"][0]["why"]


def test_explain_says_tenant_isolation_cut_a_prefix_shared_with_another_tenant(tmp_path):
    docs = [release("alr_2026_06_01_001", -60, [mini_target()])]
    records = session("a", "billing", 0, [MINI], tenant="acme") + session("g", "billing", 5, [MINI], tenant="globex")
    data = ingest_records(tmp_path / "w", records)

    result = explain(Dataset(data), "g-0", history=load_history(write_history(tmp_path / "r.yaml", docs)))

    assert result.reuse["cut_by"] == "other_tenant"
    assert result.reuse["shares_prefix_with"]["tenant"] == "acme"
    assert result.reuse["shares_prefix_on_same_key_with"] is None
    assert "isolation" in result.reuse["cuts"][0]["why"]


def test_explain_names_the_fields_of_a_release_that_changed_since_the_decision(simulated, tmp_path):
    data, history = simulated
    edited = tmp_path / "edited.yaml"
    edited.write_text(history.read_text().replace("cache_read: 0.5", "cache_read: 0.4", 1))

    result = explain(Dataset(data), "s1-0", history=load_history(edited)).recomputation

    assert result["divergence"] == "release_changed"
    assert "targets[0].prices_per_mtok.cache_read" in result["detail"]
    assert result["resolved_model"] == key(FAST)  # the policy still picks the same target


def test_explain_names_a_recorded_decision_the_release_policy_would_not_make(tmp_path):
    docs = [release("alr_2026_06_01_001", -60, [fast_target(), cheap_target()], policy="cheapest")]
    data = ingest_records(tmp_path / "w", session("s1", "billing", 0, [FAST]))
    simulate(data, load_history(write_history(tmp_path / "r.yaml", docs)), ["recorded"])

    again = explain(Dataset(data), "s1-0").recomputation

    assert (again["outcome"], again["divergence"]) == ("diverged", "recorded_off_release_policy")
    assert again["resolved_model"] == key(CHEAP)
    assert "recorded_differs_from_release_policy" in again["detail"]


def test_explain_without_a_decision_or_a_history_says_what_to_run(tmp_path):
    data = ingest_records(tmp_path / "w", session("s1", "billing", 0, [FAST]))
    with pytest.raises(ZumikError, match="zumik simulate"):
        explain(Dataset(data), "s1-0")
    result = runner().invoke(app, ["explain", "nope", "--data", str(data)])
    assert result.exit_code == 1
    assert "no request with trace id 'nope'" in result.stderr


def sample_traces_dataset(folder: Path) -> tuple[Path, Path]:
    ingest([SAMPLE_TRACES], folder / "data")
    return folder / "data", SAMPLE_TRACES / "releases.yaml"


@pytest.mark.parametrize("workload", ["sample_traces", "synth"])
def test_explain_shows_every_session_break_with_the_cause_parent_and_tokens_divergence_gives_it(workload, tmp_path):
    data, releases = sample_traces_dataset(tmp_path) if workload == "sample_traces" else synth_dataset()
    dataset, history = Dataset(data), load_history(releases)
    waterfall = compute_waterfall(dataset, WaterfallOptions(curves=False, capacities=()))
    rows = {r["trace_id"]: r for r in waterfall.per_request.to_table().to_pylist()}

    breaks = compute_divergence(dataset).breaks

    assert {b.cause for b in breaks} >= {"idle_gap", "model_changed"}
    for b in breaks:
        row = rows[b.trace_id]
        if b.cause == "idle_gap" and len(b.lost_by_cause) == 1:  # then it lost what the waterfall found expired
            assert b.lost_tokens == row["same_key"] - row["warm"], b.trace_id
        if b.cause == "model_changed":
            assert b.detail["target"]["from"] != b.detail["target"]["to"]
        reuse = explain(dataset, b.trace_id, history=history, waterfall=waterfall).reuse
        shown = reuse["session_break"]
        assert (shown["cause"], shown["parent_trace_id"], shown["lost_tokens"]) == (
            b.cause,
            b.parent_trace_id,
            b.lost_tokens,
        ), b.trace_id
        assert reuse["session_break_vs_cut"].startswith("Same cause") or b.cause != "idle_gap", b.trace_id


@pytest.mark.parametrize(
    ("switch", "cut"),
    [(("anthropic", "claude-sonnet-4-5"), None), (("openai", "gpt-4o"), "other_model")],
    ids=["another-tokenizer", "same-tokenizer"],
)
def test_a_model_switch_after_a_long_idle_gap_is_a_model_change_in_divergence_and_explain(tmp_path, switch, cut):
    data = ingest_records(tmp_path / "w", session("s1", "billing", 0, [MINI, MINI, switch], gap_s=2 * 3600))
    docs = [release("alr_2026_06_01_001", -60, [mini_target(), target(*switch)])]
    history = load_history(write_history(tmp_path / "releases.yaml", docs))

    breaks = {b.trace_id: b for b in compute_divergence(Dataset(data)).breaks}
    reuse = explain(Dataset(data), "s1-2", history=history).reuse

    assert breaks["s1-1"].cause == "idle_gap"  # the same model two hours later: expired
    switched = breaks["s1-2"]
    assert (switched.cause, switched.token, switched.parent_trace_id) == ("model_changed", 0, "s1-1")
    assert switched.lost_by_cause == {"model_changed": switched.lost_tokens}
    assert reuse["session_break"]["cause"] == "model_changed"
    assert reuse["cut_by"] == cut
    assert ("Same cause" in reuse["session_break_vs_cut"]) == (cut is not None)

"""Cross-command invariants: the same traffic gets the same figures in every command that shows them.

Run on the bundled sample traces, three `zumik synth` seeds and every real trace beside the checkout. Each
assertion is exact: integers equal, rates equal to six decimals, money to a billionth of a dollar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pytest
from conftest import real_data_path

from zumik_cli.analysis.waterfall import Waterfall, WaterfallOptions, compute_waterfall
from zumik_cli.dataset.store import Dataset
from zumik_cli.diagnosis.reconcile import parse_period, reconcile
from zumik_cli.ingest.pipeline import ingest
from zumik_cli.routing.releases import History, load_history
from zumik_cli.routing.simulate import simulate
from zumik_cli.synth.releases import write_release_history
from zumik_cli.synth.traffic import SynthConfig, write_jsonl

SAMPLE = Path(__file__).parent.parent / "sample_traces"
REAL = real_data_path()
REAL_FOLDERS = sorted(p.name for p in REAL.iterdir()) if REAL.is_dir() else []
SEEDS = (3, 11, 29)


def _sample(tmp: Path) -> tuple[Path, History]:
    data = tmp / "sample"
    ingest([SAMPLE], data)
    return data, load_history(SAMPLE / "releases.yaml")


def _synth(tmp: Path, seed: int) -> tuple[Path, History]:
    config = SynthConfig(seed=seed, sessions=6)
    traces, releases = tmp / f"synth-{seed}.jsonl", tmp / f"releases-{seed}.yaml"
    write_jsonl(config, traces)
    write_release_history(config, releases)
    data = tmp / f"synth-{seed}"
    ingest([traces], data)
    return data, load_history(releases)


def _real(tmp: Path, folder: str) -> tuple[Path, History]:
    if not REAL.is_dir():
        pytest.skip(f"real traces not found at {REAL} (CI puts shared/data/real beside the checkout)")
    data = tmp / folder
    ingest([REAL / folder], data)
    return data, History((), "none")


CASES = [
    pytest.param(_sample, id="sample"),
    *(pytest.param(lambda tmp, s=seed: _synth(tmp, s), id=f"synth-{seed}") for seed in SEEDS),
    *(
        pytest.param(lambda tmp, f=folder: _real(tmp, f), id=f"real-{folder}", marks=pytest.mark.realdata)
        for folder in REAL_FOLDERS
    ),
]


@pytest.fixture(params=CASES, scope="module")
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, History]:
    return request.param(tmp_path_factory.mktemp("invariants"))


def _sum(waterfall: Waterfall, column: str) -> int:
    return int(pc.sum(waterfall.per_request.to_table([column])[column]).as_py() or 0)


def test_the_recorded_policy_is_the_waterfall_in_total_reuse_and_rows(case: tuple[Path, History]) -> None:
    data, history = case
    waterfall = compute_waterfall(Dataset(data)).summary
    simulation = simulate(data, history, ["recorded"])
    recorded = simulation.summary("recorded")
    assert recorded.total_tokens == waterfall["total_input_tokens"]["tokens"]
    assert recorded.realized_tokens == waterfall["candidate"]["tokens"]
    assert round(recorded.realized_rate, 6) == waterfall["candidate"]["rate"]
    rows = simulation.decisions["recorded"]
    assert int(pc.sum(rows["prompt_tokens"]).as_py()) == recorded.total_tokens
    assert int(pc.sum(rows["realized_tokens"]).as_py()) == recorded.realized_tokens
    assert float(pc.sum(rows["cost"]).as_py()) == pytest.approx(recorded.cost, abs=1e-9)


def test_every_policy_scores_the_same_total_and_its_rows_add_up(case: tuple[Path, History]) -> None:
    data, history = case
    if not len(history):
        pytest.skip("no release history: every policy keeps the recorded routing")
    simulation = simulate(data, history)
    totals = {s.total_tokens for s in simulation.summaries}
    assert len(totals) == 1
    for summary in simulation.summaries:
        rows = simulation.decisions[summary.policy]
        assert int(pc.sum(rows["realized_tokens"]).as_py()) == summary.realized_tokens, summary.policy
        assert summary.realized_tokens <= summary.total_tokens


def test_the_waterfalls_rows_sum_to_its_stages(case: tuple[Path, History]) -> None:
    data, _ = case
    result = compute_waterfall(Dataset(data))
    summary: dict[str, Any] = result.summary
    assert _sum(result, "total") == summary["total_input_tokens"]["tokens"]
    for stage in ("eligible", "candidate"):
        assert _sum(result, stage) == summary[stage]["tokens"], stage
    if summary["realized"]["tokens"] is not None:
        assert _sum(result, "realized") == summary["realized"]["tokens"]


def test_no_capacity_curve_point_passes_eligible_and_the_unbounded_point_is_the_ideal_candidate(
    case: tuple[Path, History],
) -> None:
    data, _ = case
    summary = compute_waterfall(Dataset(data), WaterfallOptions(rules="ideal", ttl_none=True)).summary
    points = [point["rate"] for point in summary["capacity_curve"]]  # rates, each rounded to 6 decimals as shown
    assert points == sorted(points)
    assert all(point <= summary["eligible"]["rate"] for point in points)
    # the point the curve labels unbounded is the waterfall row it names: the candidate without rules or TTL
    assert summary["capacity_curve"][-1]["capacity_tokens"] is None
    if "mooncake" not in str(data) and "weka" not in str(data):  # hash-id traces: the reference convention's blocks
        assert summary["capacity_curve"][-1]["rate"] == summary["candidate"]["rate"]


def test_the_recorded_policy_costs_what_was_billed_and_what_reconciliation_computes(
    case: tuple[Path, History],
) -> None:
    data, history = case
    money = compute_waterfall(Dataset(data)).summary["money"]
    if money["billed"] is None:
        pytest.skip(f"nothing here has a list price: {money['unpriced']}")
    recorded = simulate(data, history, ["recorded"]).summary("recorded")
    computed = reconcile(Dataset(data), 1.0, parse_period(None)).computed_usd
    # money is shown to six decimals; the recorded policy sums the same per-request bills unrounded
    assert recorded.cost == pytest.approx(money["billed"], abs=1e-6)
    assert computed == money["billed"]


def _vllm_pack_file(tmp: Path, block_size: int) -> Path:
    """The shipped vLLM pack at the replay engine's block size, as a rules file of its own."""
    import json
    from importlib import resources

    pack = json.loads(resources.files("zumik_cli.rules.data").joinpath("vllm.json").read_text())
    pack["name"] = f"vllm-{block_size}"
    pack["granularity"]["block_size"] = block_size
    path = tmp / f"vllm-{block_size}.json"
    path.write_text(json.dumps(pack))
    return path


def _unscaled(tmp: Path, seed: int) -> Path:
    """A synth dataset whose calls carry no usage: zumik's own counts are the totals, as a replay engine sees them."""
    import json

    config = SynthConfig(seed=seed, sessions=4)
    traces = tmp / f"unscaled-{seed}.jsonl"
    write_jsonl(config, traces)
    records = [json.loads(line) for line in traces.read_text().splitlines() if line.strip()]
    traces.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "usage"}) + "\n" for r in records))
    data = tmp / f"unscaled-{seed}"
    ingest([traces], data)
    return data


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("block_size", [16, 32])
def test_replays_unbounded_prediction_is_the_waterfall_candidate_under_the_vllm_pack(
    tmp_path: Path, seed: int, block_size: int
) -> None:
    from zumik_cli.replay.run import load_prompts, namespaced, predict, select_requests

    data = _unscaled(tmp_path, seed)
    dataset = Dataset(data)
    rows, _ = select_requests(dataset, None, "recorded", None)
    requests = load_prompts(dataset, rows)
    predicted = predict(namespaced(requests, block_size), block_size, None)
    own = {r.trace_id: max(int(p) - block_size, 0) for r, p in zip(requests, predicted, strict=True)}

    pack = _vllm_pack_file(tmp_path, block_size)
    options = WaterfallOptions(rules=f"vllm-{block_size}", rules_files=(str(pack),), curves=False)
    per_request = compute_waterfall(dataset, options).per_request.to_table()
    candidate = dict(zip(per_request["trace_id"].to_pylist(), per_request["candidate"].to_pylist(), strict=True))
    assert own == {trace: candidate[trace] for trace in own}
    assert sum(own.values()) > 0


def test_explain_gives_every_session_break_the_cause_divergence_gives_it(case: tuple[Path, History]) -> None:
    from zumik_cli.diagnosis.divergence import compute_divergence
    from zumik_cli.diagnosis.explain import explain

    data, history = case
    dataset = Dataset(data)
    waterfall = compute_waterfall(dataset, WaterfallOptions(curves=False, capacities=()))
    breaks = compute_divergence(dataset, waterfall=waterfall).breaks
    for found in breaks[:200]:
        shown = explain(dataset, found.trace_id, history=history, waterfall=waterfall).reuse["session_break"]
        assert (shown["cause"], shown["parent_trace_id"], shown["lost_tokens"]) == (
            found.cause,
            found.parent_trace_id,
            found.lost_tokens,
        ), found.trace_id


def _unscaled_real(tmp: Path, folder: str) -> Path:
    """A real trace with its usage taken out (a copy in tmp): zumik's own counts are then what an engine sees."""
    import json

    if not REAL.is_dir():
        pytest.skip(f"real traces not found at {REAL} (CI puts shared/data/real beside the checkout)")
    out = tmp / f"{folder}-unscaled"
    out.mkdir()
    for path in sorted((REAL / folder).glob("*.json")):
        doc = json.loads(path.read_text())
        for message in doc.get("messages", []):
            response = (message.get("extra") or {}).get("response")
            if isinstance(response, dict):
                response.pop("usage", None)
        (out / path.name).write_text(json.dumps(doc))
    data = tmp / f"{folder}-data"
    ingest([out], data)
    return data


BOUNDED = [
    pytest.param(lambda tmp: _unscaled(tmp, 11), id="synth-11"),
    pytest.param(lambda tmp: _unscaled(tmp, 29), id="synth-29"),
    pytest.param(
        lambda tmp: _unscaled_real(tmp, "mini_swe_agent_gemini3pro"), id="mini-swe-agent", marks=pytest.mark.realdata
    ),
]
ENGINE_BLOCK = 32
# times the longest prompt's blocks: every prompt fits, and the synth traffic (sessions interleaved in time) evicts
# at the smallest; mini-swe-agent's trajectories run one after another, so there the bounded cache loses nothing
CAPACITIES = (1.1, 1.6, 3.0)


def _capacity_blocks(data: Path, times: float) -> int:
    longest = Dataset(data).connect().execute("SELECT max(prompt_tokens_counted) FROM requests").fetchone()[0]
    return int((longest // ENGINE_BLOCK + 2) * times)


def _bounded_candidates(tmp: Path, data: Path, capacity_blocks: int) -> dict[str, int]:
    pack = _vllm_pack_file(tmp, ENGINE_BLOCK)
    options = WaterfallOptions(
        rules=f"vllm-{ENGINE_BLOCK}",
        rules_files=(str(pack),),
        capacity_tokens=capacity_blocks * ENGINE_BLOCK,
        curves=False,
    )
    per_request = compute_waterfall(Dataset(data), options).per_request.to_table()
    return dict(zip(per_request["trace_id"].to_pylist(), per_request["candidate"].to_pylist(), strict=True))


@pytest.mark.parametrize("times", CAPACITIES)
@pytest.mark.parametrize("make", BOUNDED)
def test_the_waterfalls_bounded_candidate_under_the_vllm_pack_is_replays_prediction(
    tmp_path: Path, make: Any, times: float
) -> None:
    from zumik_cli.replay.run import by_target, load_prompts, namespaced, predict, select_requests, target_runs

    data = make(tmp_path)
    capacity_blocks = _capacity_blocks(data, times)
    dataset = Dataset(data)
    rows, _ = select_requests(dataset, None, "recorded", None)
    requests = by_target(load_prompts(dataset, rows))  # every target a cache of its own, as replay runs them
    prompts = namespaced(requests, ENGINE_BLOCK)
    predicted = np.concatenate([predict(prompts[a:b], ENGINE_BLOCK, capacity_blocks) for a, b in target_runs(requests)])
    own = {r.trace_id: max(int(p) - ENGINE_BLOCK, 0) for r, p in zip(requests, predicted, strict=True)}
    unbounded = np.concatenate([predict(prompts[a:b], ENGINE_BLOCK, None) for a, b in target_runs(requests)])

    candidate = _bounded_candidates(tmp_path, data, capacity_blocks)
    assert own == {trace: candidate[trace] for trace in own}
    # the capacity curve under the same pack is the same model: its point at this capacity is the bounded candidate
    pack = _vllm_pack_file(tmp_path, ENGINE_BLOCK)
    curve_options = WaterfallOptions(
        rules=f"vllm-{ENGINE_BLOCK}", rules_files=(str(pack),), capacities=(capacity_blocks * ENGINE_BLOCK, None)
    )
    summary = compute_waterfall(dataset, curve_options).summary
    total = summary["total_input_tokens"]["tokens"]
    point = summary["capacity_curve"][0]
    assert point["capacity_tokens"] == capacity_blocks * ENGINE_BLOCK
    assert abs(point["rate"] * total - sum(own.values())) <= total * 1e-6
    unbounded_own = int(np.maximum(unbounded - ENGINE_BLOCK, 0).sum())
    assert sum(own.values()) <= unbounded_own
    if times == CAPACITIES[0] and "synth" in str(data):
        assert sum(own.values()) < unbounded_own  # the smallest cache did evict


@pytest.mark.vllm
@pytest.mark.parametrize("times", CAPACITIES)
@pytest.mark.parametrize("make", BOUNDED)
def test_the_waterfalls_bounded_candidate_is_what_the_cpu_engine_measures_request_by_request(
    tmp_path: Path, make: Any, times: float
) -> None:
    from zumik_cli.replay.engines.vllm_local import VllmLocalEngine
    from zumik_cli.replay.run import ReplayOptions, replay

    data = make(tmp_path)
    capacity_blocks = _capacity_blocks(data, times)
    engine = VllmLocalEngine(block_size=ENGINE_BLOCK, capacity_blocks=capacity_blocks)
    rows = replay(Dataset(data), ReplayOptions(kv_blocks=capacity_blocks), engine=engine).rows.to_pylist()
    measured = {row["trace_id"]: row["measured_tokens"] for row in rows}
    candidate = _bounded_candidates(tmp_path, data, capacity_blocks)
    assert measured == {trace: candidate[trace] for trace in measured}

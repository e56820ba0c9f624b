"""The stakeholder report: one self-contained HTML file drawn from the waterfall result object.

Invariants: the file makes no network request when opened (plotly.js, a partial bundle with only the trace types
the charts use, is inlined, fonts are the system's, a Content-Security-Policy forbids every fetch and allows only
this file's own scripts by hash); the same inputs give byte-identical output (no clock, no random ids); every
string from the data is escaped before it reaches HTML or plotly; prompt text appears only when asked for.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from zumik_cli import __version__
from zumik_cli.core.errors import ZumikError
from zumik_cli.core.redact import redact
from zumik_cli.render.report.charts import EVIDENCE_COLOURS, EVIDENCE_LEVELS, FONT_STACK
from zumik_cli.render.report.format import as_number, format_count
from zumik_cli.render.report.glossary import glossary_card
from zumik_cli.render.report.html import (
    EVIDENCE_MEANINGS,
    TABLE_ROW_LIMIT,
    Charts,
    Column,
    Markup,
    as_mapping,
    as_rows,
    badge,
    card,
    data_table,
    join,
    more_note,
    section,
    tag,
)
from zumik_cli.render.report.overview import overview_section, traffic_title
from zumik_cli.render.report.results import policies_section, recommendations_section, replays_section
from zumik_cli.render.report.sections import (
    STAGES,
    breakdowns_section,
    capacity_section,
    causes_section,
    currency_of,
    money_section,
    waterfall_section,
)

SAMPLE_CHARS = 2000
# '</script' in any ASCII case, which is what ends a script element in HTML. Searching the bytes takes 1 ms;
# lowering plotly.js as text took 30.
_SCRIPT_END = re.compile(b"</script", re.IGNORECASE)


@dataclass(frozen=True)
class ReportInputs:
    """Everything one report shows; the caller passes the time so that rendering stays deterministic."""

    waterfall: dict[str, Any]
    manifest: dict[str, Any]
    generated_at: str
    title: str
    policies: list[dict[str, Any]] | None = None
    replays: list[dict[str, Any]] | None = None
    replay_points: list[dict[str, Any]] | None = None
    include_text: bool = False
    samples: list[dict[str, Any]] | None = None
    recommendations: list[dict[str, Any]] | None = None

    @classmethod
    def of(cls, diagnosis: Any, generated_at: str, include_text: bool = False) -> ReportInputs:
        """The report of a ``diagnosis.Diagnosis`` (taken as a value: rendering never runs a stage)."""
        return cls(
            waterfall=diagnosis.waterfall.summary,
            manifest=diagnosis.manifest,
            generated_at=generated_at,
            title=traffic_title(diagnosis.waterfall.summary),
            policies=diagnosis.policies,
            replays=diagnosis.replays,
            replay_points=diagnosis.replay_points,
            include_text=include_text,
            samples=diagnosis.samples,
            recommendations=diagnosis.recommendations,
        )


def _samples_section(inputs: ReportInputs) -> Markup:
    """Prompt excerpts, only when the caller asked for text; each is cut short, escaped, and has key-shaped strings
    (API keys, bearer tokens, credential fields) redacted: a report travels further than the dataset."""
    if not inputs.include_text:
        return Markup("")
    samples = as_rows(list(inputs.samples or []))
    cards = []
    for sample in samples[:TABLE_ROW_LIMIT]:
        shown = {key: redact(str(value or "")) for key, value in sample.items() if key != "trace_id"}
        header = join(["Trace ", tag("code", sample.get("trace_id") or "unknown")])
        if shown.get("heading"):
            header = join([header, ": ", shown["heading"]])
        if "old" in shown and "new" in shown:  # an edit: the text as it was and as it became, the change marked
            before, after = shown.get("before", ""), shown.get("after", "")
            body = [_edited_text(label, before, shown[key], after) for label, key in _EDIT_SIDES]
        else:
            text = shown.get("text", "")
            body = [
                tag("pre", text[:SAMPLE_CHARS] + ("\n[... cut]" if len(text) > SAMPLE_CHARS else ""), class_="sample")
            ]
        cards.append(card(tag("p", header, class_="small"), *body))
    intro = (
        "Where a system prompt or tool definition changed between a request and the one before it in the same "
        "conversation, for the changes that cost the most reuse. This report was asked to include prompt text: "
        "share it only with people allowed to read it."
    )
    if not cards:
        content_free = as_number(as_mapping(inputs.waterfall.get("eligible")).get("tokens")) is None
        cards.append(
            tag(
                "p",
                "These traces record token counts only, not prompt text, so there is no text to show."
                if content_free
                else "No system prompt or tool definition changed between requests in this traffic, so there is no "
                "edit to show.",
            )
        )
    return section("samples", "Where prompts changed", intro, *cards, more_note(len(cards), len(samples), "changes"))


_EDIT_SIDES = (("As it was", "old"), ("As it became", "new"))
EDIT_CHARS = 400


def _edited_text(label: str, before: str, span: str, after: str) -> Markup:
    shown = span if len(span) <= EDIT_CHARS else f"{span[:EDIT_CHARS]} [... cut]"
    text = join(["...", before, tag("mark", shown), after, "..."])
    return join([tag("p", label, class_="small"), tag("pre", text, class_="sample")])


DEFINITION_TITLES = {
    "rates": "Rates",
    "capacity_curve": "Capacity curve",
    "ttl_sensitivity": "TTL sensitivity",
}


def _humanised(key: object) -> str:
    """A definition's key as a heading ("cache_writes" -> "Cache writes"), for one this module has no title for."""
    words = str(key).replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def _methodology_section(inputs: ReportInputs) -> Markup:
    waterfall = inputs.waterfall
    definitions = as_mapping(waterfall.get("definitions"))
    titles = {**dict(STAGES), **DEFINITION_TITLES}
    ordered = [key for key in titles if key in definitions] + [key for key in definitions if key not in titles]
    terms = join(join([tag("dt", titles.get(key, _humanised(key))), tag("dd", definitions[key])]) for key in ordered)
    if "rates" not in definitions:
        terms = join(
            [
                terms,
                tag("dt", "Rates"),
                tag(
                    "dd",
                    "Headline rates are token-weighted (sum over sum); request-weighted means are shown beside "
                    "them, named as such.",
                ),
            ]
        )
    evidence = join(
        join([tag("dt", badge(level)), tag("dd", EVIDENCE_MEANINGS[level].capitalize())]) for level in EVIDENCE_LEVELS
    )
    evidence = join(
        [
            evidence,
            tag("dt", "Combined"),
            tag("dd", "When numbers are combined, the weakest evidence wins."),
        ]
    )
    rules = as_rows(waterfall.get("rules"))
    rules_body: object = (
        data_table(
            [
                Column("Rules pack"),
                Column("Version"),
                Column("Effective from"),
                Column("Source", css="key"),
            ],
            [
                [
                    rule.get("name"),
                    rule.get("version"),
                    rule.get("effective_from"),
                    tag("span", rule.get("source"), class_="mono"),
                ]
                for rule in rules
            ],
        )
        if rules
        else tag("p", "No rules packs recorded.", class_="muted")
    )
    manifest = inputs.manifest
    facts = [
        ("Generated at", inputs.generated_at),
        ("Dataset written by", f"zumik {manifest.get('zumik_version') or 'unknown'}"),
        ("Report rendered by", f"zumik {__version__}"),
        ("Schema version", manifest.get("schema_version")),
        ("Requests in scope", format_count(waterfall.get("requests"))),
    ]
    pairs = join(join([tag("dt", term), tag("dd", value)]) for term, value in facts)
    provenance = tag("dl", pairs, class_="defs")
    files = as_rows(manifest.get("inputs"))
    files_body: object = (
        data_table(
            [
                Column("Input file", css="key"),
                Column("Format"),
                Column("Requests", True),
                Column("SHA-256", css="digest"),
            ],
            [
                [
                    tag("span", entry.get("path"), class_="mono"),
                    entry.get("format"),
                    format_count(entry.get("requests")),
                    tag("span", entry.get("sha256"), class_="mono"),
                ]
                for entry in files
            ],
        )
        if files
        else tag("p", "No input files recorded in the manifest.", class_="muted")
    )
    return section(
        "methodology",
        "Methodology",
        None,
        card(tag("dl", terms, class_="defs"), title="Definitions"),
        card(tag("dl", evidence, class_="defs"), title="Evidence levels"),
        card(rules_body, title="Rules packs"),
        card(provenance, title="Provenance"),
        card(files_body, title="Input files"),
    )


def _body(inputs: ReportInputs, charts: Charts) -> Markup:
    waterfall = inputs.waterfall
    sections = [
        recommendations_section(inputs.recommendations, currency_of(waterfall)),
        waterfall_section(waterfall, charts),
        causes_section(waterfall, charts),
        money_section(waterfall),
        breakdowns_section(waterfall),
        capacity_section(waterfall, charts, inputs.replay_points),
        policies_section(inputs.policies, currency_of(waterfall), charts),
        replays_section(inputs.replays, charts),
        _samples_section(inputs),
        section("glossary", "Glossary", "The words this report uses, in plain terms.", glossary_card()),
        _methodology_section(inputs),
    ]
    toc = [("recommendations", "What to change")] if inputs.recommendations is not None else []
    toc += [
        ("waterfall", "Where the input went"),
        ("causes", "Why reuse was lost"),
        ("money", "Money"),
        ("breakdowns", "Breakdowns"),
        ("capacity", "Capacity and TTL"),
        ("policies", "Policies"),
        ("replay", "Replay"),
        ("glossary", "Glossary"),
        ("methodology", "Methodology"),
    ]
    nav = tag(
        "nav",
        tag(
            "ul",
            join(tag("li", tag("a", label, href=f"#{anchor}")) for anchor, label in toc),
            class_="toc",
        ),
        aria_label="Sections",
    )
    files = len(as_rows(inputs.manifest.get("inputs")))
    header = tag(
        "header",
        join(
            [
                tag("div", "Prompt-cache reuse report", class_="eyebrow"),
                tag("h1", inputs.title),
                tag(
                    "p",
                    f"Generated {inputs.generated_at} from {files} input file{'s' if files != 1 else ''} "
                    f"by zumik {__version__}",
                    class_="meta",
                ),
            ]
        ),
        class_="page-header",
    )
    footer = tag(
        "footer",
        f"Generated by zumik {__version__} at {inputs.generated_at}. This file is "
        "self-contained and makes no network requests.",
    )
    first_screen = overview_section(waterfall, inputs.recommendations)
    return tag("div", join([header, first_screen, nav, tag("main", join(sections)), footer]), class_="page")


def _resource(name: str) -> str:
    return resources.files("zumik_cli.render.report").joinpath("templates", name).read_text(encoding="utf-8")


def _css() -> str:
    """The stylesheet, headed by the evidence colours, so HTML badges and chart bars share one definition."""
    variables = "".join(f"--ev-{level}:{colour};" for level, colour in EVIDENCE_COLOURS.items())
    return f":root{{{variables}--font:{FONT_STACK};}}\n{_resource('report.css')}"


PLOTLY_BUNDLE = "plotly-basic.min.js"


@functools.cache
def _plotly_js() -> tuple[str, str]:
    """plotly.js and its hash, read once per process: the partial bundle with the bar and scatter traces the
    report draws (1.2 MB; vendor/README.md says where it comes from), not the full 4.8 MB one."""
    return _inlinable(resources.files("zumik_cli.render.report").joinpath("vendor", PLOTLY_BUNDLE).read_bytes())


def _inlinable(script: bytes) -> tuple[str, str]:
    """The script as text and its hash, checked and hashed as the bytes read, which saves encoding 5 MB again."""
    if _SCRIPT_END.search(script):
        raise ZumikError(
            "The installed plotly's plotly.js contains '</script' and cannot be inlined in a report; "
            "install another plotly version."
        )
    return script.decode("utf-8"), _sha256(script)


def _sha256(script: bytes) -> str:
    return base64.b64encode(hashlib.sha256(script).digest()).decode("ascii")


def _csp(script_hashes: Sequence[str]) -> str:
    """A policy that forbids every fetch and runs only this file's own scripts, named by their hashes."""
    hashes = " ".join(f"'sha256-{digest}'" for digest in script_hashes)
    return (
        f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; img-src data: blob:; "
        "font-src 'none'; connect-src 'none'; base-uri 'none'; form-action 'none'"
    )


def render_report(inputs: ReportInputs) -> str:
    """The whole report as one HTML document; same inputs, same bytes."""
    charts = Charts()
    body = _body(inputs, charts)
    plotly_js, plotly_js_hash = _plotly_js()
    bootstrap = _resource("report.js")
    policy = _csp([plotly_js_hash, _sha256(bootstrap.encode("utf-8"))])
    figures = charts.json()
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f'<meta http-equiv="Content-Security-Policy" content="{policy}">',
            '<meta name="referrer" content="no-referrer">',
            f'<meta name="generator" content="zumik {html.escape(__version__)}">',
            f"<title>{html.escape(inputs.title)}</title>",
            f"<style>\n{_css()}</style>",
            "</head>",
            "<body>",
            body,
            f'<script type="application/json" id="zumik-figures">{figures}</script>',
            f"<script>{plotly_js}</script>",
            f"<script>{bootstrap}</script>",
            "</body>",
            "</html>",
            "",
        ]
    )


def write_report(inputs: ReportInputs, path: str | os.PathLike[str]) -> Path:
    """Render and write the report atomically, so that a reader never opens half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    document = render_report(inputs)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(document)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def _umask() -> int:
    """The process umask, so the report gets the permissions of any other new file, not mkstemp's 0600."""
    current = os.umask(0)
    os.umask(current)
    return current


__all__ = ["ReportInputs", "badge", "render_report", "write_report"]

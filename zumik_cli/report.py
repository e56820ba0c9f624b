"""The stakeholder report: one self-contained HTML file drawn from the waterfall result object.

Invariants: the file makes no network request when opened (plotly.js is inlined, fonts are the system's,
a Content-Security-Policy forbids every fetch and allows only this file's own scripts by hash); the same
inputs give byte-identical output (no clock, no random ids); every string from the data is escaped before it
reaches HTML or plotly; prompt text appears only when asked for.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
import plotly.offline

from zumik_cli import __version__
from zumik_cli.errors import ZumikError
from zumik_cli.report_charts import (
    EVIDENCE_COLOURS,
    EVIDENCE_LEVELS,
    FONT_STACK,
    StageBar,
    capacity_figure,
    causes_figure,
    evidence_key,
    policy_figure,
    replay_figure,
    ttl_figure,
    waterfall_figure,
)
from zumik_cli.report_format import (
    as_number,
    format_count,
    format_latency,
    format_money,
    format_percent,
    format_tokens,
)

TABLE_ROW_LIMIT = 20
SAMPLE_CHARS = 2000
SIMULATE_HINT = "zumik simulate DATASET"
REPLAY_HINT = "zumik replay DATASET --release alr_..."

STAGES = (
    ("total_input_tokens", "Total input"),
    ("eligible", "Eligible"),
    ("candidate", "Candidate"),
    ("realized", "Realized"),
    ("missed", "Missed"),
)
BREAKDOWNS = (
    ("model", "By model", "models"),
    ("alias", "By alias", "aliases"),
    ("release", "By alias release", "releases"),
    ("tenant", "By tenant", "tenants"),
    ("session", "By session", "sessions"),
)
EVIDENCE_MEANINGS = {
    "measured": "read from provider usage or engine counters recorded in the trace.",
    "replayed": "measured by zumik's own replay of the requests on a local engine.",
    "simulated": "computed by zumik from exact token sequences and a rules pack.",
    "estimated": "computed from approximate tokens (a calibrated proxy tokenizer) or coarse hash blocks.",
}
_NO_BADGE = object()
_WEAKNESS = {level: rank for rank, level in enumerate(EVIDENCE_LEVELS)}
_PLOTLY_CONFIG = {"displaylogo": False, "typesetMath": False, "responsive": True, "showTips": False}


@dataclass(frozen=True)
class ReportInputs:
    """Everything one report shows; the caller passes the time so that rendering stays deterministic."""

    waterfall: dict[str, Any]
    manifest: dict[str, Any]
    generated_at: str
    title: str
    policies: list[dict[str, Any]] | None = None
    replays: list[dict[str, Any]] | None = None
    include_text: bool = False
    samples: list[dict[str, Any]] | None = None
    recommendations: list[dict[str, Any]] | None = None


class Markup(str):
    """HTML built here from escaped parts; anything that is not Markup is escaped before it is output."""


def _h(value: object) -> Markup:
    """Value as HTML: Markup passes through, anything else is escaped text ("" for None)."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value)))


def _join(parts: Iterable[object], separator: str = "") -> Markup:
    return Markup(separator.join(_h(part) for part in parts))


def _tag(name: str, content: object = "", **attributes: object) -> Markup:
    """One element; attribute names are ours (``class_`` for class), values and content are escaped."""
    attrs = "".join(
        f' {key.rstrip("_").replace("_", "-")}="{html.escape(str(value))}"'
        for key, value in attributes.items()
        if value is not None
    )
    return Markup(f"<{name}{attrs}>{_h(content)}</{name}>")


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _rows(value: object) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        return []
    return [row for row in value if isinstance(row, Mapping)]


def badge(evidence: object) -> Markup:
    """An evidence level as a coloured pill; an unexpected value is shown as-is, in grey."""
    key = evidence_key(evidence)
    text = "no evidence" if evidence is None else str(evidence)
    meaning = EVIDENCE_MEANINGS.get(key, "not one of zumik's evidence levels")
    return _tag("span", text, class_=f"badge ev-{key}", title=f"{text}: {meaning}")


def _weakest(values: Iterable[object]) -> object:
    """The weakest evidence among values (weakest wins when numbers combine); None when there is none."""
    present = [value for value in values if value is not None]
    if not present:
        return None
    unknown = [value for value in present if evidence_key(value) == "unknown"]
    if unknown:
        return unknown[0]
    return max(present, key=lambda value: _WEAKNESS[evidence_key(value)])


@dataclass(frozen=True)
class _Column:
    title: str
    numeric: bool = False
    css: str | None = None


def _table(columns: Sequence[_Column], rows: Iterable[Sequence[object]]) -> Markup:
    head = _join(_tag("th", column.title, class_="num" if column.numeric else None) for column in columns)
    body = _join(
        _tag(
            "tr",
            _join(
                _tag("td", cell, class_="num" if column.numeric else column.css)
                for column, cell in zip(columns, row, strict=True)
            ),
        )
        for row in rows
    )
    table = _tag("table", _join([_tag("thead", _tag("tr", head)), _tag("tbody", body)]))
    return _tag("div", table, class_="table-wrap")


def _more(shown: int, total: int, noun: str) -> Markup:
    if total <= shown:
        return Markup("")
    return _tag(
        "p",
        f"Showing the first {shown} of {total:,} {noun}; {total - shown:,} more not shown.",
        class_="more",
    )


def _placeholder(sentence: Markup) -> Markup:
    return _tag("div", _tag("p", sentence), class_="placeholder")


def _section(anchor: str, title: str, intro: object, *body: object) -> Markup:
    parts: list[object] = [_tag("h2", title)]
    if intro:
        parts.append(_tag("p", intro, class_="section-intro"))
    parts.extend(body)
    return _tag("section", _join(parts), id=anchor)


def _card(*body: object, title: str | None = None) -> Markup:
    parts: list[object] = [_tag("h3", title)] if title else []
    parts.extend(body)
    return _tag("div", _join(parts), class_="card")


class _Charts:
    """Collects the figures of one page, each under a fixed div id, so the output has no random ids."""

    def __init__(self) -> None:
        self.figures: dict[str, go.Figure] = {}

    def place(self, name: str, figure: go.Figure, label: str) -> Markup:
        div_id = f"zumik-chart-{name}"
        self.figures[div_id] = figure
        # Plotly's responsive mode sizes the plot to its div after a resize (printing is one), so the div
        # carries the figure's height; without it the plot collapses onto the content below.
        height = int(figure.layout.height or 360)
        return _tag(
            "div",
            "",
            id=div_id,
            class_="chart",
            style=f"height:{height}px",
            role="img",
            aria_label=label,
        )

    def json(self) -> str:
        """The figures and config as one JSON document that is safe inside a ``<script>`` element."""
        figures = ",".join(f'"{div_id}":{_figure_json(figure)}' for div_id, figure in self.figures.items())
        config = json.dumps(_PLOTLY_CONFIG, separators=(",", ":"))
        return _script_safe(f'{{"config":{config},"figures":{{{figures}}}}}')


def _figure_json(figure: go.Figure) -> str:
    return pio.to_json(figure, validate=True, engine="json")


def _script_safe(json_text: str) -> str:
    """JSON that cannot close its script element: < > & only occur inside JSON strings, where \\u escapes mean
    the same characters (plotly's encoder does this too; this keeps the guarantee whatever plotly does)."""
    return json_text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _stage(waterfall: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    return _mapping(waterfall.get(key))


def _currency(waterfall: Mapping[str, Any]) -> object:
    return _mapping(waterfall.get("money")).get("currency") or "USD"


def _headline(waterfall: Mapping[str, Any]) -> Markup:
    total = _stage(waterfall, "total_input_tokens")
    realized = _stage(waterfall, "realized")
    missed = _stage(waterfall, "missed")
    money = _mapping(waterfall.get("money"))
    currency = _currency(waterfall)
    requests = waterfall.get("requests")
    cards = [
        _metric(
            "total",
            "Input tokens",
            format_tokens(total.get("tokens")),
            f"{format_count(requests)} requests",
            total.get("evidence"),
        ),
        _metric(
            "realized",
            "Reused from cache",
            format_percent(realized.get("rate")),
            f"{format_tokens(realized.get('tokens'))} tokens",
            realized.get("evidence"),
        ),
        _metric(
            "missed",
            "Missed reuse",
            format_percent(missed.get("rate")),
            f"{format_tokens(missed.get('tokens'))} tokens",
            missed.get("evidence"),
        ),
        _metric(
            "money",
            "Saved by caching",
            format_money(money.get("realized_savings"), currency),
            f"of {format_money(money.get('without_cache'), currency)} without cache",
            money.get("evidence"),
        ),
        _metric(
            "money",
            "Left on the table",
            format_money(money.get("missed_savings"), currency),
            "missed savings",
            money.get("evidence"),
        ),
    ]
    return _tag("div", _join(cards), class_="headline")


def _metric(kind: str, label: str, value: str, detail: object, evidence: object = _NO_BADGE) -> Markup:
    """One headline number with what it counts and, where it stands alone, its evidence level (a number that
    should carry one and does not is badged "no evidence", not left bare)."""
    detail_parts = [_h(detail)] if evidence is _NO_BADGE else [_h(detail), " ", badge(evidence)]
    return _tag(
        "div",
        _join(
            [
                _tag("div", label, class_="label"),
                _tag("div", value, class_="value"),
                _tag("div", _join(detail_parts), class_="detail"),
            ]
        ),
        class_=f"metric {kind}",
    )


def _summary(waterfall: Mapping[str, Any]) -> Markup:
    """One plain sentence for a reader who reads nothing else."""
    total = _stage(waterfall, "total_input_tokens")
    money = _mapping(waterfall.get("money"))
    parts = [
        Markup("Of "),
        _tag("strong", f"{format_tokens(total.get('tokens'))} input tokens"),
        Markup(", "),
        _tag("strong", format_percent(_stage(waterfall, "eligible").get("rate"))),
        Markup(" repeat an earlier prefix, a cache could have served "),
        _tag("strong", format_percent(_stage(waterfall, "candidate").get("rate"))),
        Markup(", and "),
        _tag("strong", format_percent(_stage(waterfall, "realized").get("rate"))),
        Markup(" was actually reused. The gap, "),
        _tag("strong", format_percent(_stage(waterfall, "missed").get("rate"))),
        Markup(" of input, is worth about "),
        _tag("strong", format_money(money.get("missed_savings"), _currency(waterfall))),
        Markup("."),
    ]
    causes = _rows(waterfall.get("causes"))
    if causes:
        worst = max(causes, key=lambda cause: as_number(cause.get("tokens")) or 0.0)
        share = _share(worst.get("tokens"), total.get("tokens"))
        parts += [
            Markup(" The largest single loss is "),
            _tag("strong", worst.get("label") or worst.get("cause")),
            Markup(
                f" ({html.escape(format_tokens(worst.get('tokens')))} tokens, "
                f"{html.escape(format_percent(share))} of input)."
            ),
        ]
    return _tag("p", _join(parts), class_="summary")


def _share(part: object, whole: object) -> float | None:
    numerator, denominator = as_number(part), as_number(whole)
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _notes(waterfall: Mapping[str, Any]) -> Markup:
    """What could not be computed, and requests whose reuse contradicts the rules: shown, never hidden."""
    notes: list[Markup] = []
    cannot = _rows(waterfall.get("cannot_compute"))
    if cannot:
        items = _join(
            _tag("li", _join([_tag("strong", row.get("row")), ": ", _h(row.get("reason"))])) for row in cannot
        )
        notes.append(
            _tag(
                "div",
                _join([_tag("strong", "Not computed for this data."), _tag("ul", items)]),
                class_="note warn",
            )
        )
    over = _mapping(waterfall.get("over_realized"))
    if (as_number(over.get("requests")) or 0) > 0:
        text = _join(
            [
                _tag(
                    "strong",
                    f"{format_count(over.get('requests'))} requests reused more than their candidate "
                    f"({format_count(over.get('tokens'))} tokens). ",
                ),
                _h(over.get("explanation")),
                " ",
                badge(over.get("evidence")),
            ]
        )
        notes.append(_tag("div", text, class_="note alert"))
    return _join(notes)


def _waterfall_section(waterfall: Mapping[str, Any], charts: _Charts) -> Markup:
    stages = [
        StageBar(
            label=label,
            tokens=as_number(_stage(waterfall, key).get("tokens")),
            rate=as_number(_stage(waterfall, key).get("rate")),
            evidence=_stage(waterfall, key).get("evidence"),
        )
        for key, label in STAGES
    ]
    chart = charts.place(
        "waterfall",
        waterfall_figure(stages),
        "Reuse waterfall: total input, eligible, candidate, realized and missed tokens",
    )
    legend = _tag(
        "ul",
        _join(_tag("li", _join([badge(level), _h(EVIDENCE_MEANINGS[level])])) for level in EVIDENCE_LEVELS),
        class_="legend",
    )
    weighted = _mapping(waterfall.get("request_weighted"))
    table = _table(
        [
            _Column("Stage"),
            _Column("Tokens", True),
            _Column("Share of input", True),
            _Column("Request-weighted mean", True),
            _Column("Evidence"),
        ],
        [
            [
                label,
                format_count(stage.tokens),
                format_percent(stage.rate),
                format_percent(weighted.get(key)) if key in weighted else "",
                badge(stage.evidence),
            ]
            for (key, label), stage in zip(STAGES, stages, strict=True)
        ],
    )
    intro = (
        "Each bar is a stage's own size, as a share of all input tokens. Eligible repeats an earlier "
        "prefix; candidate is what a cache could have served under the provider's rules; realized is what "
        "was reused; missed is candidate that was not. Each bar's badge says how the number is known."
    )
    return _section("waterfall", "Reuse waterfall", intro, _card(chart, legend), _card(table, title="Stages"))


def _causes_section(waterfall: Mapping[str, Any], charts: _Charts) -> Markup:
    causes = _rows(waterfall.get("causes"))
    total = _stage(waterfall, "total_input_tokens").get("tokens")
    cross = _mapping(waterfall.get("cross_tenant_opportunity"))
    extra: list[object] = []
    if as_number(cross.get("tokens")):
        extra.append(
            _tag(
                "div",
                _join(
                    [
                        _tag(
                            "strong",
                            f"{format_tokens(cross.get('tokens'))} tokens "
                            f"({format_percent(_share(cross.get('tokens'), total))} of input) ",
                        ),
                        _h(cross.get("note") or "are shared with another tenant; isolation forbids reuse."),
                        " ",
                        badge(cross.get("evidence")),
                    ]
                ),
                class_="note info",
            )
        )
    if not causes:
        return _section(
            "causes",
            "Where reuse is lost",
            None,
            *extra,
            _placeholder(Markup("No losses were attributed to a cause in this data.")),
        )
    chart = charts.place("causes", causes_figure(causes, total), "Tokens lost, by cause")
    table = _table(
        [
            _Column("Stage"),
            _Column("Cause"),
            _Column("Tokens", True),
            _Column("Share of input", True),
            _Column("Requests", True),
            _Column("Evidence"),
        ],
        [
            [
                cause.get("stage"),
                _join(
                    [
                        _h(cause.get("label") or cause.get("cause")),
                        " ",
                        _tag("code", cause.get("cause"), class_="muted"),
                    ]
                ),
                format_count(cause.get("tokens")),
                format_percent(_share(cause.get("tokens"), total)),
                format_count(cause.get("requests")),
                badge(cause.get("evidence")),
            ]
            for cause in causes
        ],
    )
    intro = (
        "Every token between eligible and realized is attributed to the first rule that cut it, in a fixed "
        "order; the provider's own miss diagnostics are used where the trace has them."
    )
    return _section(
        "causes",
        "Where reuse is lost",
        intro,
        *extra,
        _card(chart),
        _card(table, title="Causes, in attribution order"),
    )


def _money_section(waterfall: Mapping[str, Any]) -> Markup:
    money = _mapping(waterfall.get("money"))
    if not money:
        return _section(
            "money",
            "Money",
            None,
            _placeholder(Markup("No prices were available for the models in this data.")),
        )
    currency = _currency(waterfall)
    writes = _mapping(waterfall.get("cache_writes"))
    rows = [
        [
            "Billed",
            "what the traffic cost, with the cache as it was used",
            format_money(money.get("billed"), currency),
        ],
        [
            "Without cache",
            "the same traffic at the full input price",
            format_money(money.get("without_cache"), currency),
        ],
        [
            "Realized savings",
            "saved by the reuse that happened",
            format_money(money.get("realized_savings"), currency),
        ],
        [
            "Missed savings",
            "what the missed reuse would have saved",
            format_money(money.get("missed_savings"), currency),
        ],
        [
            "Cache write cost",
            f"paid to write {format_count(writes.get('tokens'))} tokens into the cache",
            format_money(money.get("cache_write_cost"), currency),
        ],
    ]
    table = _table([_Column("Item"), _Column("Meaning", css="muted"), _Column("Amount", True)], rows)
    footer = _tag(
        "p",
        _join(
            [
                "List prices as of ",
                _tag("strong", money.get("prices_as_of") or "an unknown date"),
                ", in ",
                _h(currency),
                ". Amounts: ",
                badge(money.get("evidence")),
                " Cache writes: ",
                badge(writes.get("evidence")) if writes else "n/a",
            ]
        ),
        class_="small muted",
    )
    return _section("money", "Money", None, _card(table, footer))


def _breakdowns_section(waterfall: Mapping[str, Any]) -> Markup:
    breakdowns = _mapping(waterfall.get("breakdowns"))
    known = [key for key, _, _ in BREAKDOWNS]
    extra = [(key, f"By {key}", "rows") for key in breakdowns if key not in known]
    cards = [_breakdown_card(breakdowns, key, title, noun) for key, title, noun in [*BREAKDOWNS, *extra]]
    key_legend = _tag(
        "span",
        Markup('<span><i class="s-realized"></i>realized</span><span><i class="s-missed"></i>missed</span>'),
        class_="share-key",
    )
    intro = _join(["Sorted by missed tokens, worst first. Shares are of each row's own input. ", key_legend])
    return _section("breakdowns", "Breakdowns", intro, *cards)


def _breakdown_card(breakdowns: Mapping[str, Any], key: str, title: str, noun: str) -> Markup:
    if key not in breakdowns:
        return _card(_tag("p", "Not computed for this report.", class_="muted"), title=title)
    rows = sorted(_rows(breakdowns.get(key)), key=lambda row: -(as_number(row.get("missed")) or 0.0))
    if not rows:
        return _card(_tag("p", "No rows.", class_="muted"), title=title)
    shown = rows[:TABLE_ROW_LIMIT]
    has_evidence = any("evidence" in row for row in shown)
    columns = [
        _Column(title.removeprefix("By ").capitalize(), css="key"),
        _Column("Requests", True),
        _Column("Input tokens", True),
        _Column("Eligible", True),
        _Column("Candidate", True),
        _Column("Realized", True),
        _Column("Missed", True),
        _Column("Missed tokens", True),
        _Column("Realized / missed"),
    ]
    if has_evidence:
        columns.append(_Column("Evidence"))
    body = []
    for row in shown:
        total = row.get("total")
        name = row.get("key")
        cells: list[object] = [
            _key_cell(name),
            format_count(row.get("requests")),
            format_count(total),
            format_percent(_share(row.get("eligible"), total)),
            format_percent(_share(row.get("candidate"), total)),
            format_percent(_share(row.get("realized"), total)),
            format_percent(_share(row.get("missed"), total)),
            format_count(row.get("missed")),
            _share_bar(_share(row.get("realized"), total), _share(row.get("missed"), total)),
        ]
        if has_evidence:
            cells.append(badge(row.get("evidence")))
        body.append(cells)
    return _card(_table(columns, body), _more(len(shown), len(rows), noun), title=title)


def _key_cell(name: object) -> Markup:
    if name is None or name == "":
        return _tag("span", "(none)", class_="muted")
    return _tag("span", name, class_="mono")


def _share_bar(realized: float | None, missed: float | None) -> Markup:
    def width(value: float | None) -> str:
        return f"{min(max(value or 0.0, 0.0), 1.0) * 100:.1f}%"

    return Markup(
        '<div class="share" aria-hidden="true">'
        f'<span class="s-realized" style="width:{width(realized)}"></span>'
        f'<span class="s-missed" style="width:{width(missed)}"></span></div>'
    )


def _capacity_section(waterfall: Mapping[str, Any], charts: _Charts) -> Markup:
    curve = _rows(waterfall.get("capacity_curve"))
    ttl = _rows(waterfall.get("ttl_sensitivity"))
    fallback = _stage(waterfall, "candidate").get("evidence")
    curve_evidence = _weakest(point.get("evidence") for point in curve) or fallback
    ttl_evidence = _weakest(point.get("evidence") for point in ttl) or fallback
    capacity = capacity_figure(curve, curve_evidence)
    capacity_body: object = (
        charts.place("capacity", capacity, "Candidate reuse against cache capacity")
        if capacity is not None
        else _placeholder(Markup("No bounded-capacity sweep in this data."))
    )
    ttl_chart = ttl_figure(ttl, ttl_evidence)
    ttl_body: object = (
        charts.place("ttl", ttl_chart, "Candidate reuse for each cache TTL")
        if ttl_chart is not None
        else _placeholder(Markup("No TTL sweep in this data."))
    )
    unbounded = next((point for point in curve if point.get("capacity_tokens") is None), None)
    capacity_note = _tag(
        "p",
        _join(
            [
                "LRU eviction, as vLLM evicts. ",
                f"Unbounded: {format_percent(unbounded.get('rate'))}. " if unbounded else "",
                badge(curve_evidence),
            ]
        ),
        class_="small muted",
    )
    ttl_note = _tag(
        "p",
        _join(
            [
                "Entries expire this long after their last use. ",
                badge(ttl_evidence),
            ]
        ),
        class_="small muted",
    )
    intro = "How much of the input a cache could serve if it were smaller or larger, or kept entries longer."
    return _section(
        "capacity",
        "Cache capacity and TTL",
        intro,
        _tag(
            "div",
            _join(
                [
                    _card(capacity_body, capacity_note, title="Hit rate against cache capacity"),
                    _card(ttl_body, ttl_note, title="TTL sensitivity"),
                ]
            ),
            class_="grid-2",
        ),
    )


def _policies_section(
    policies: Sequence[Mapping[str, Any]] | None,
    currency: object,
    charts: _Charts,
) -> Markup:
    title = "Policy comparison"
    rows = _rows(list(policies or []))
    if not rows:
        sentence = _join(
            [
                "No routing simulation was given to this report. Run ",
                _tag("code", SIMULATE_HINT),
                " and build the report again to compare routing policies here on cost, reuse, "
                "latency and decision churn.",
            ]
        )
        return _section("policies", title, None, _placeholder(sentence))
    recorded = next((row for row in rows if row.get("policy") == "recorded"), None)
    baseline = as_number(recorded.get("cost")) if recorded else None

    def versus(row: Mapping[str, Any]) -> str:
        cost = as_number(row.get("cost"))
        if baseline is None or cost is None or row is recorded:
            return ""
        change = format_money(cost - baseline, currency)
        change = change if change.startswith("-") else f"+{change}"
        return f"{change} ({format_percent(_share(cost - baseline, baseline))})" if baseline else change

    table = _table(
        [
            _Column("Policy"),
            _Column("Cost", True),
            _Column("vs recorded", True),
            _Column("Realized reuse", True),
            _Column("Latency (est.)", True),
            _Column("Decision churn", True),
            _Column("Evidence"),
        ],
        [
            [
                _tag("span", row.get("policy"), class_="mono"),
                format_money(row.get("cost"), currency),
                versus(row),
                format_percent(row.get("realized_rate")),
                format_latency(row.get("latency_ms")),
                _churn(row.get("churn")),
                badge(row.get("evidence")),
            ]
            for row in rows
        ],
    )
    chart = charts.place("policies", policy_figure(rows, currency), "Cost against realized reuse, per policy")
    intro = "Each policy replays the same workload in time order with a cache per target. Lower cost and "
    intro += "higher reuse are better; churn is how often a policy's decision differs from the recorded one."
    return _section("policies", title, intro, _card(table), _card(chart))


def _churn(value: object) -> str:
    """Churn as a share when it is a fraction, as a count when it is a whole number of decisions."""
    if isinstance(value, float) and 0.0 <= value <= 1.0:
        return format_percent(value)
    return format_count(value)


def _replays_section(replays: Sequence[Mapping[str, Any]] | None, charts: _Charts) -> Markup:
    title = "Predicted vs measured (replay)"
    rows = _rows(list(replays or []))
    if not rows:
        sentence = _join(
            [
                "No replay was given to this report. Run ",
                _tag("code", REPLAY_HINT),
                " on a machine with vLLM and build the report again to set zumik's predicted reuse "
                "beside what a real engine measured.",
            ]
        )
        return _section("replay", title, None, _placeholder(sentence))
    predicted = [as_number(row.get("predicted_tokens")) for row in rows]
    measured = [as_number(row.get("measured_tokens")) for row in rows]
    pairs = [(p, m) for p, m in zip(predicted, measured, strict=True) if p is not None and m is not None]
    predicted_total = sum(p for p, _ in pairs)
    measured_total = sum(m for _, m in pairs)
    exact = sum(1 for p, m in pairs if p == m)
    mean_error = sum(abs(p - m) for p, m in pairs) / len(pairs) if pairs else None
    summary = _tag(
        "div",
        _join(
            [
                _metric(
                    "total",
                    "Replayed requests",
                    format_count(len(rows)),
                    f"{exact:,} of {len(pairs):,} exact",
                ),
                _metric("total", "Predicted cached", format_tokens(predicted_total), "tokens", "simulated"),
                _metric("total", "Measured cached", format_tokens(measured_total), "tokens", "replayed"),
                _metric(
                    "total",
                    "Measured / predicted",
                    format_percent(_share(measured_total, predicted_total)),
                    f"mean difference {format_count(mean_error)} tokens",
                ),
            ]
        ),
        class_="headline",
    )

    def gap(row: Mapping[str, Any]) -> float:
        p, m = as_number(row.get("predicted_tokens")), as_number(row.get("measured_tokens"))
        return abs((m or 0.0) - (p or 0.0))

    differing = [row for row in rows if gap(row) > 0]
    worst = sorted(differing, key=lambda row: -gap(row))[:TABLE_ROW_LIMIT]
    table = _table(
        [
            _Column("Trace id", css="nowrap"),
            _Column("Prompt tokens", True),
            _Column("Predicted", True),
            _Column("Measured", True),
            _Column("Difference", True),
        ],
        [
            [
                _tag("span", row.get("trace_id"), class_="mono"),
                format_count(row.get("prompt_tokens")),
                format_count(row.get("predicted_tokens")),
                format_count(row.get("measured_tokens")),
                _difference(row),
            ]
            for row in worst
        ],
    )
    chart = charts.place("replay", replay_figure(rows), "Predicted against measured cached tokens")
    legend = _tag(
        "p",
        _join(
            [
                "Predicted: ",
                badge("simulated"),
                " Measured: ",
                badge("replayed"),
                " Points on the dashed diagonal agree exactly.",
            ]
        ),
        class_="small muted",
    )
    return _section(
        "replay",
        title,
        None,
        summary,
        _card(chart, legend),
        _card(table, _more(len(worst), len(differing), "requests"), title="Largest disagreements")
        if differing
        else _card(
            _tag("p", "Every replayed request measured exactly what was predicted.", class_="muted"),
            title="Disagreements",
        ),
    )


def _difference(row: Mapping[str, Any]) -> str:
    p, m = as_number(row.get("predicted_tokens")), as_number(row.get("measured_tokens"))
    if p is None or m is None:
        return "n/a"
    diff = m - p
    return f"{'+' if diff > 0 else ''}{format_count(diff)}"


def _recommendations_section(recommendations: Sequence[Mapping[str, Any]] | None, currency: object) -> Markup:
    """The few changes worth most, each a simulation: what to do, what it saves, and what that assumes."""
    if recommendations is None:
        return Markup("")
    title = "What to change first"
    rows = _rows(list(recommendations))
    if not rows:
        sentence = Markup("No change zumik can simulate would save tokens or money on this data.")
        return _section("recommendations", title, None, _placeholder(sentence))
    table = _table(
        [
            _Column("#", True),
            _Column("Change"),
            _Column("Sessions", True),
            _Column("Requests", True),
            _Column("Tokens saved", True),
            _Column("Money saved", True),
            _Column("Evidence"),
        ],
        [
            [
                format_count(rank),
                row.get("title"),
                format_count(_mapping(row.get("scope")).get("sessions")),
                format_count(_mapping(row.get("scope")).get("requests")),
                format_tokens(row.get("tokens_saved")),
                format_money(row.get("money_saved_usd"), currency),
                _join([_h(row.get("tag")), " ", badge(row.get("evidence"))]),
            ]
            for rank, row in enumerate(rows, start=1)
        ],
    )
    cards = [
        _card(
            _tag("p", row.get("action")),
            _tag("ul", _join(_tag("li", item) for item in row.get("assumptions") or []), class_="small muted"),
            _tag("p", f"Money: {row.get('money_basis') or 'list prices'}.", class_="small muted"),
            title=f"{rank}. {row.get('title') or row.get('id')}",
        )
        for rank, row in enumerate(rows, start=1)
    ]
    intro = (
        "Each change was applied to a copy of the recorded requests and the waterfall re-run on it: the saving is "
        "the difference between the two runs. These are simulations, not measurements."
    )
    return _section("recommendations", title, intro, _card(table), *cards)


def _samples_section(inputs: ReportInputs) -> Markup:
    """Prompt excerpts, only when the caller asked for text; each is cut short and escaped."""
    samples = _rows(list(inputs.samples or []))
    if not inputs.include_text or not samples:
        return Markup("")
    cards = []
    for sample in samples[:TABLE_ROW_LIMIT]:
        text = str(sample.get("text") or "")
        cut = text[:SAMPLE_CHARS] + ("\n[... cut]" if len(text) > SAMPLE_CHARS else "")
        header = _join(["Trace ", _tag("code", sample.get("trace_id") or "unknown")])
        cards.append(_card(_tag("p", header, class_="small"), _tag("pre", cut, class_="sample")))
    intro = "This report was asked to include prompt text: share it only with people allowed to read it."
    return _section("samples", "Example prompts", intro, *cards, _more(len(cards), len(samples), "examples"))


def _methodology_section(inputs: ReportInputs) -> Markup:
    waterfall = inputs.waterfall
    definitions = _mapping(waterfall.get("definitions"))
    titles = dict(STAGES)
    extra = [key for key in definitions if key not in titles]
    ordered = [key for key in titles if key in definitions] + extra
    terms = _join(_join([_tag("dt", titles.get(key, key)), _tag("dd", definitions[key])]) for key in ordered)
    terms = _join(
        [
            terms,
            _tag("dt", "Rates"),
            _tag(
                "dd",
                "Headline rates are token-weighted (sum over sum); request-weighted means are shown beside "
                "them, named as such.",
            ),
        ]
    )
    evidence = _join(
        _join([_tag("dt", badge(level)), _tag("dd", EVIDENCE_MEANINGS[level].capitalize())])
        for level in EVIDENCE_LEVELS
    )
    evidence = _join(
        [
            evidence,
            _tag("dt", "Combined"),
            _tag("dd", "When numbers are combined, the weakest evidence wins."),
        ]
    )
    rules = _rows(waterfall.get("rules"))
    rules_body: object = (
        _table(
            [
                _Column("Rules pack"),
                _Column("Version"),
                _Column("Effective from"),
                _Column("Source", css="key"),
            ],
            [
                [
                    rule.get("name"),
                    rule.get("version"),
                    rule.get("effective_from"),
                    _tag("span", rule.get("source"), class_="mono"),
                ]
                for rule in rules
            ],
        )
        if rules
        else _tag("p", "No rules packs recorded.", class_="muted")
    )
    manifest = inputs.manifest
    facts = [
        ("Generated at", inputs.generated_at),
        ("Dataset written by", f"zumik {manifest.get('zumik_version') or 'unknown'}"),
        ("Report rendered by", f"zumik {__version__}"),
        ("Schema version", manifest.get("schema_version")),
        ("Requests in scope", format_count(waterfall.get("requests"))),
    ]
    pairs = _join(_join([_tag("dt", term), _tag("dd", value)]) for term, value in facts)
    provenance = _tag("dl", pairs, class_="defs")
    files = _rows(manifest.get("inputs"))
    files_body: object = (
        _table(
            [
                _Column("Input file", css="key"),
                _Column("Format"),
                _Column("Requests", True),
                _Column("SHA-256", css="digest"),
            ],
            [
                [
                    _tag("span", entry.get("path"), class_="mono"),
                    entry.get("format"),
                    format_count(entry.get("requests")),
                    _tag("span", entry.get("sha256"), class_="mono"),
                ]
                for entry in files
            ],
        )
        if files
        else _tag("p", "No input files recorded in the manifest.", class_="muted")
    )
    return _section(
        "methodology",
        "Methodology",
        None,
        _card(_tag("dl", terms, class_="defs"), title="Definitions"),
        _card(_tag("dl", evidence, class_="defs"), title="Evidence levels"),
        _card(rules_body, title="Rules packs"),
        _card(provenance, title="Provenance"),
        _card(files_body, title="Input files"),
    )


def _body(inputs: ReportInputs, charts: _Charts) -> Markup:
    waterfall = inputs.waterfall
    sections = [
        _recommendations_section(inputs.recommendations, _currency(waterfall)),
        _section("headline", "Headline", None, _headline(waterfall), _summary(waterfall), _notes(waterfall)),
        _waterfall_section(waterfall, charts),
        _causes_section(waterfall, charts),
        _money_section(waterfall),
        _breakdowns_section(waterfall),
        _capacity_section(waterfall, charts),
        _policies_section(inputs.policies, _currency(waterfall), charts),
        _replays_section(inputs.replays, charts),
        _samples_section(inputs),
        _methodology_section(inputs),
    ]
    toc = [("recommendations", "What to change")] if inputs.recommendations is not None else []
    toc += [
        ("waterfall", "Waterfall"),
        ("causes", "Causes"),
        ("money", "Money"),
        ("breakdowns", "Breakdowns"),
        ("capacity", "Capacity and TTL"),
        ("policies", "Policies"),
        ("replay", "Replay"),
        ("methodology", "Methodology"),
    ]
    nav = _tag(
        "nav",
        _tag(
            "ul",
            _join(_tag("li", _tag("a", label, href=f"#{anchor}")) for anchor, label in toc),
            class_="toc",
        ),
        aria_label="Sections",
    )
    files = len(_rows(inputs.manifest.get("inputs")))
    header = _tag(
        "header",
        _join(
            [
                _tag("div", "zumik prefix-cache reuse report", class_="eyebrow"),
                _tag("h1", inputs.title),
                _tag(
                    "p",
                    f"Generated {inputs.generated_at} · {format_count(waterfall.get('requests'))} requests "
                    f"from {files} input file{'s' if files != 1 else ''} · zumik {__version__}",
                    class_="meta",
                ),
            ]
        ),
        class_="page-header",
    )
    footer = _tag(
        "footer",
        f"Generated by zumik {__version__} at {inputs.generated_at}. This file is "
        "self-contained and makes no network requests.",
    )
    return _tag("div", _join([header, nav, _tag("main", _join(sections)), footer]), class_="page")


def _resource(name: str) -> str:
    return resources.files("zumik_cli").joinpath("templates", name).read_text(encoding="utf-8")


def _css() -> str:
    """The stylesheet, headed by the evidence colours, so HTML badges and chart bars share one definition."""
    variables = "".join(f"--ev-{level}:{colour};" for level, colour in EVIDENCE_COLOURS.items())
    return f":root{{{variables}--font:{FONT_STACK};}}\n{_resource('report.css')}"


@functools.cache
def _plotly_js() -> str:
    """plotly.js as shipped with the installed plotly, read once per process (it is about 5 MB)."""
    script = plotly.offline.get_plotlyjs()
    if "</script" in script.lower():
        raise ZumikError(
            "The installed plotly's plotly.js contains '</script' and cannot be inlined in a report; "
            "install another plotly version."
        )
    return script


@functools.lru_cache(maxsize=8)
def _sha256(script: str) -> str:
    return base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")


def _csp(scripts: Sequence[str]) -> str:
    """A policy that forbids every fetch and runs only this file's own scripts, named by their hashes."""
    hashes = " ".join(f"'sha256-{_sha256(script)}'" for script in scripts)
    return (
        f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; img-src data: blob:; "
        "font-src 'none'; connect-src 'none'; base-uri 'none'; form-action 'none'"
    )


def render_report(inputs: ReportInputs) -> str:
    """The whole report as one HTML document; same inputs, same bytes."""
    charts = _Charts()
    body = _body(inputs, charts)
    plotly_js = _plotly_js()
    bootstrap = _resource("report.js")
    figures = charts.json()
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f'<meta http-equiv="Content-Security-Policy" content="{_csp([plotly_js, bootstrap])}">',
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


def write_dataset_report(
    dataset: Any,
    waterfall: dict[str, Any],
    path: str | os.PathLike[str],
    *,
    generated_at: str | None = None,
    include_text: bool = False,
    policies: list[dict[str, Any]] | None = None,
    replays: list[dict[str, Any]] | None = None,
    recommendations: list[dict[str, Any]] | None = None,
) -> Path:
    """The report of a dataset: its manifest, its waterfall, and simulation, replay and recommendation results when
    it has them."""
    from datetime import UTC, datetime

    from .decisions import policy_comparison

    manifest = dataset.manifest.to_json()
    policies = policies if policies is not None else policy_comparison(dataset) or None
    if replays is None and dataset.manifest.extra.get("replay"):
        run = dataset.manifest.extra["replay"]["run_id"]
        cursor = dataset.connect().execute(
            "SELECT trace_id, predicted_tokens, measured_tokens, prompt_tokens FROM replays WHERE run_id = ? "
            "ORDER BY position",
            [run],
        )
        names = [d[0] for d in cursor.description]
        replays = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()] or None
    when = generated_at or datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = f"Prefix-cache reuse: {Path(dataset.root).name}"
    return write_report(
        ReportInputs(
            waterfall=waterfall,
            manifest=manifest,
            generated_at=when,
            title=title,
            policies=policies,
            replays=replays,
            include_text=include_text,
            recommendations=recommendations,
        ),
        path,
    )

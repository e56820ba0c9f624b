"""The report's sections drawn from the waterfall result: headline, waterfall, causes, money, breakdowns,
capacity and TTL.

Each section takes the waterfall object as it is, tolerates a missing or odd field (it shows "n/a" or a
placeholder, never raises), and returns escaped ``Markup``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from zumik_cli.render.report.charts import (
    EVIDENCE_LEVELS,
    StageBar,
    capacity_figure,
    causes_figure,
    ttl_figure,
    waterfall_figure,
)
from zumik_cli.render.report.format import (
    as_number,
    format_count,
    format_money,
    format_percent,
    format_tokens,
    share_of,
)
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
    escape,
    join,
    metric,
    more_note,
    placeholder,
    section,
    tag,
    weakest,
)

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


def _stage(waterfall: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    return as_mapping(waterfall.get(key))


def currency_of(waterfall: Mapping[str, Any]) -> object:
    return as_mapping(waterfall.get("money")).get("currency") or "USD"


def headline(waterfall: Mapping[str, Any]) -> Markup:
    total = _stage(waterfall, "total_input_tokens")
    realized = _stage(waterfall, "realized")
    missed = _stage(waterfall, "missed")
    money = as_mapping(waterfall.get("money"))
    currency = currency_of(waterfall)
    requests = waterfall.get("requests")
    cards = [
        metric(
            "total",
            "Input tokens",
            format_tokens(total.get("tokens")),
            f"{format_count(requests)} requests",
            total.get("evidence"),
        ),
        metric(
            "realized",
            "Reused from cache",
            format_percent(realized.get("rate")),
            f"{format_tokens(realized.get('tokens'))} tokens",
            realized.get("evidence"),
        ),
        metric(
            "missed",
            "Missed reuse",
            format_percent(missed.get("rate")),
            f"{format_tokens(missed.get('tokens'))} tokens",
            missed.get("evidence"),
        ),
        metric(
            "money",
            "Saved by caching",
            format_money(money.get("realized_savings"), currency),
            f"of {format_money(money.get('without_cache'), currency)} without cache"
            if money.get("without_cache") is not None
            else "unpriced: see Money",
            money.get("evidence"),
        ),
        metric(
            "money",
            "Left on the table",
            format_money(money.get("missed_savings"), currency),
            "missed savings",
            money.get("evidence"),
        ),
    ]
    return tag("div", join(cards), class_="headline")


def assumptions_section(waterfall: Mapping[str, Any]) -> Markup:
    """What the figures were computed under, first on the page: a what-if must never read like the baseline."""
    options = as_mapping(waterfall.get("options"))
    phrases = options.get("assumptions")
    if not isinstance(phrases, list) or not phrases:
        return Markup("")  # a result written before it recorded its options
    items = tag("ul", join(tag("li", phrase) for phrase in phrases))
    if options.get("what_if"):
        lead = join([tag("strong", "What-if, not the baseline."), " The figures below were computed under"])
        box = tag("div", join([tag("p", lead), items]), class_="note warn")
    else:
        lead = join([tag("strong", "Baseline."), " The figures below were computed under"])
        box = tag("div", join([tag("p", lead), items]), class_="note info")
    return section("assumptions", "Assumptions", None, box)


def summary_sentence(waterfall: Mapping[str, Any]) -> Markup:
    """One plain sentence for a reader who reads nothing else."""
    total = _stage(waterfall, "total_input_tokens")
    money = as_mapping(waterfall.get("money"))
    parts = [
        Markup("Of "),
        tag("strong", f"{format_tokens(total.get('tokens'))} input tokens"),
        Markup(", "),
        tag("strong", format_percent(_stage(waterfall, "eligible").get("rate"))),
        Markup(" repeat an earlier prefix, a cache could have served "),
        tag("strong", format_percent(_stage(waterfall, "candidate").get("rate"))),
        Markup(", and "),
        tag("strong", format_percent(_stage(waterfall, "realized").get("rate"))),
        Markup(" was actually reused. The gap, "),
        tag("strong", format_percent(_stage(waterfall, "missed").get("rate"))),
        Markup(" of input, is worth about "),
        tag("strong", format_money(money.get("missed_savings"), currency_of(waterfall))),
        Markup("."),
    ]
    causes = as_rows(waterfall.get("causes"))
    if causes:
        worst = max(causes, key=lambda cause: as_number(cause.get("tokens")) or 0.0)
        share = share_of(worst.get("tokens"), total.get("tokens"))
        parts += [
            Markup(" The largest single loss is "),
            tag("strong", worst.get("label") or worst.get("cause")),
            Markup(
                f" ({html.escape(format_tokens(worst.get('tokens')))} tokens, "
                f"{html.escape(format_percent(share))} of input)."
            ),
        ]
    return tag("p", join(parts), class_="summary")


def data_notes(waterfall: Mapping[str, Any]) -> Markup:
    """What could not be computed, and requests whose reuse contradicts the rules: shown, never hidden."""
    notes: list[Markup] = []
    cannot = as_rows(waterfall.get("cannot_compute"))
    if cannot:
        items = join(
            tag("li", join([tag("strong", row.get("row")), ": ", escape(row.get("reason"))])) for row in cannot
        )
        notes.append(
            tag(
                "div",
                join([tag("strong", "Not computed for this data."), tag("ul", items)]),
                class_="note warn",
            )
        )
    over = as_mapping(waterfall.get("over_realized"))
    if (as_number(over.get("requests")) or 0) > 0:
        text = join(
            [
                tag(
                    "strong",
                    f"{format_count(over.get('requests'))} requests reused more than their candidate "
                    f"({format_count(over.get('tokens'))} tokens). ",
                ),
                escape(over.get("explanation")),
                " ",
                badge(over.get("evidence")),
            ]
        )
        notes.append(tag("div", text, class_="note alert"))
    return join(notes)


def waterfall_section(waterfall: Mapping[str, Any], charts: Charts) -> Markup:
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
    legend = tag(
        "ul",
        join(tag("li", join([badge(level), escape(EVIDENCE_MEANINGS[level])])) for level in EVIDENCE_LEVELS),
        class_="legend",
    )
    weighted = as_mapping(waterfall.get("request_weighted"))
    table = data_table(
        [
            Column("Stage"),
            Column("Tokens", True),
            Column("Share of input", True),
            Column("Request-weighted mean", True),
            Column("Evidence"),
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
    return section("waterfall", "Reuse waterfall", intro, card(chart, legend), card(table, title="Stages"))


def causes_section(waterfall: Mapping[str, Any], charts: Charts) -> Markup:
    causes = as_rows(waterfall.get("causes"))
    total = _stage(waterfall, "total_input_tokens").get("tokens")
    cross = as_mapping(waterfall.get("cross_tenant_opportunity"))
    extra: list[object] = []
    if as_number(cross.get("tokens")):
        extra.append(
            tag(
                "div",
                join(
                    [
                        tag(
                            "strong",
                            f"{format_tokens(cross.get('tokens'))} tokens "
                            f"({format_percent(share_of(cross.get('tokens'), total))} of input) ",
                        ),
                        escape(cross.get("note") or "are shared with another tenant; isolation forbids reuse."),
                        " ",
                        badge(cross.get("evidence")),
                    ]
                ),
                class_="note info",
            )
        )
    if not causes:
        return section(
            "causes",
            "Where reuse is lost",
            None,
            *extra,
            placeholder(Markup("No losses were attributed to a cause in this data.")),
        )
    chart = charts.place("causes", causes_figure(causes, total), "Tokens lost, by cause")
    table = data_table(
        [
            Column("Stage"),
            Column("Cause"),
            Column("Tokens", True),
            Column("Share of input", True),
            Column("Requests", True),
            Column("Evidence"),
        ],
        [
            [
                cause.get("stage"),
                join(
                    [
                        escape(cause.get("label") or cause.get("cause")),
                        " ",
                        tag("code", cause.get("cause"), class_="muted"),
                    ]
                ),
                format_count(cause.get("tokens")),
                format_percent(share_of(cause.get("tokens"), total)),
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
    return section(
        "causes",
        "Where reuse is lost",
        intro,
        *extra,
        card(chart),
        card(table, title="Causes, in attribution order"),
    )


def unpriced_text(money: Mapping[str, Any]) -> str:
    """How many requests have no list price, and why ("" when all are priced)."""
    count = as_number(money.get("unpriced_requests")) or 0
    if not count:
        return ""
    reasons = "; ".join(str(row.get("reason")) for row in as_rows(money.get("unpriced")) if row.get("reason"))
    return f"{int(count):,} requests unpriced" + (f": {reasons}" if reasons else "")


def money_section(waterfall: Mapping[str, Any]) -> Markup:
    money = as_mapping(waterfall.get("money"))
    if not money:
        return section(
            "money",
            "Money",
            None,
            placeholder(Markup("No prices were available for the models in this data.")),
        )
    unpriced = unpriced_text(money)
    if money.get("billed") is None:
        return section("money", "Money", None, placeholder(join(["Unpriced: ", unpriced or "no list prices"])))
    currency = currency_of(waterfall)
    writes = as_mapping(waterfall.get("cache_writes"))
    rows = [
        [
            "Billed",
            f"what the traffic cost, with the cache as it was used: input "
            f"{format_money(money.get('billed_input'), currency)} + output "
            f"{format_money(money.get('billed_output'), currency)}",
            format_money(money.get("billed"), currency),
        ],
        [
            "Without cache",
            "the same traffic with every input token at the full input price",
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
    table = data_table([Column("Item"), Column("Meaning", css="muted"), Column("Amount", True)], rows)
    footer = tag(
        "p",
        join(
            [
                "List prices as of ",
                tag("strong", money.get("prices_as_of") or "an unknown date"),
                ", in ",
                escape(currency),
                ". Amounts: ",
                badge(money.get("evidence")),
                " Cache writes: ",
                badge(writes.get("evidence")) if writes else "n/a",
                *([" ", escape(unpriced), "."] if unpriced else []),
            ]
        ),
        class_="small muted",
    )
    return section("money", "Money", None, card(table, footer))


def breakdowns_section(waterfall: Mapping[str, Any]) -> Markup:
    breakdowns = as_mapping(waterfall.get("breakdowns"))
    known = [key for key, _, _ in BREAKDOWNS]
    extra = [(key, f"By {key}", "rows") for key in breakdowns if key not in known]
    cards = [_breakdown_card(breakdowns, key, title, noun) for key, title, noun in [*BREAKDOWNS, *extra]]
    key_legend = tag(
        "span",
        Markup('<span><i class="s-realized"></i>realized</span><span><i class="s-missed"></i>missed</span>'),
        class_="share-key",
    )
    intro = join(["Sorted by missed tokens, worst first. Shares are of each row's own input. ", key_legend])
    return section("breakdowns", "Breakdowns", intro, *cards)


def _breakdown_card(breakdowns: Mapping[str, Any], key: str, title: str, noun: str) -> Markup:
    if key not in breakdowns:
        return card(tag("p", "Not computed for this report.", class_="muted"), title=title)
    rows = sorted(as_rows(breakdowns.get(key)), key=lambda row: -(as_number(row.get("missed")) or 0.0))
    if not rows:
        return card(tag("p", "No rows.", class_="muted"), title=title)
    shown = rows[:TABLE_ROW_LIMIT]
    has_evidence = any("evidence" in row for row in shown)
    columns = [
        Column(title.removeprefix("By ").capitalize(), css="key"),
        Column("Requests", True),
        Column("Input tokens", True),
        Column("Eligible", True),
        Column("Candidate", True),
        Column("Realized", True),
        Column("Missed", True),
        Column("Missed tokens", True),
        Column("Realized / missed"),
    ]
    if has_evidence:
        columns.append(Column("Evidence"))
    body = []
    for row in shown:
        total = row.get("total")
        name = row.get("key")
        cells: list[object] = [
            _key_cell(name),
            format_count(row.get("requests")),
            format_count(total),
            format_percent(share_of(row.get("eligible"), total)),
            format_percent(share_of(row.get("candidate"), total)),
            format_percent(share_of(row.get("realized"), total)),
            format_percent(share_of(row.get("missed"), total)),
            format_count(row.get("missed")),
            _share_bar(share_of(row.get("realized"), total), share_of(row.get("missed"), total)),
        ]
        if has_evidence:
            cells.append(badge(row.get("evidence")))
        body.append(cells)
    return card(data_table(columns, body), more_note(len(shown), len(rows), noun), title=title)


def _key_cell(name: object) -> Markup:
    if name is None or name == "":
        return tag("span", "(none)", class_="muted")
    return tag("span", name, class_="mono")


def _share_bar(realized: float | None, missed: float | None) -> Markup:
    def width(value: float | None) -> str:
        return f"{min(max(value or 0.0, 0.0), 1.0) * 100:.1f}%"

    return Markup(
        '<div class="share" aria-hidden="true">'
        f'<span class="s-realized" style="width:{width(realized)}"></span>'
        f'<span class="s-missed" style="width:{width(missed)}"></span></div>'
    )


def capacity_section(waterfall: Mapping[str, Any], charts: Charts) -> Markup:
    curve = as_rows(waterfall.get("capacity_curve"))
    ttl = as_rows(waterfall.get("ttl_sensitivity"))
    fallback = _stage(waterfall, "candidate").get("evidence")
    curve_evidence = weakest(point.get("evidence") for point in curve) or fallback
    ttl_evidence = weakest(point.get("evidence") for point in ttl) or fallback
    capacity = capacity_figure(curve, curve_evidence)
    capacity_body: object = (
        charts.place("capacity", capacity, "Candidate reuse against cache capacity")
        if capacity is not None
        else placeholder(Markup("No bounded-capacity sweep in this data."))
    )
    ttl_chart = ttl_figure(ttl, ttl_evidence)
    ttl_body: object = (
        charts.place("ttl", ttl_chart, "Candidate reuse for each cache TTL")
        if ttl_chart is not None
        else placeholder(Markup("No TTL sweep in this data."))
    )
    unbounded = next((point for point in curve if point.get("capacity_tokens") is None), None)
    capacity_note = tag(
        "p",
        join(
            [
                "LRU eviction, as vLLM evicts. ",
                f"Unbounded: {format_percent(unbounded.get('rate'))}. " if unbounded else "",
                badge(curve_evidence),
            ]
        ),
        class_="small muted",
    )
    ttl_note = tag(
        "p",
        join(
            [
                "Entries expire this long after their last use. ",
                badge(ttl_evidence),
            ]
        ),
        class_="small muted",
    )
    intro = "How much of the input a cache could serve if it were smaller or larger, or kept entries longer."
    return section(
        "capacity",
        "Cache capacity and TTL",
        intro,
        tag(
            "div",
            join(
                [
                    card(capacity_body, capacity_note, title="Hit rate against cache capacity"),
                    card(ttl_body, ttl_note, title="TTL sensitivity"),
                ]
            ),
            class_="grid-2",
        ),
    )

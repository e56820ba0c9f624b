"""The report's sections drawn from the waterfall result: headline, waterfall, causes, money, breakdowns,
capacity and TTL.

Each section takes the waterfall object as it is, tolerates a missing or odd field (it shows "n/a" or a
placeholder, never raises), and returns escaped ``Markup``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from zumik_cli.render.report.charts import (
    EVIDENCE_LEVELS,
    BridgeStep,
    bridge_figure,
    capacity_figure,
    ttl_figure,
)
from zumik_cli.render.report.format import (
    as_number,
    format_capacity,
    format_count,
    format_money,
    format_percent,
    format_replayed_cache,
    format_tokens,
    share_of,
)
from zumik_cli.render.report.glossary import cause_name, term
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


def data_notes(waterfall: Mapping[str, Any]) -> Markup:
    """How exact the figures are, what could not be computed, and requests whose reuse contradicts the rules:
    shown, never hidden."""
    notes: list[Markup] = []
    titles = dict(STAGES)
    rows = as_rows(waterfall.get("cannot_compute"))
    missing = [row for row in rows if as_number(_stage(waterfall, str(row.get("row"))).get("tokens")) is None]
    approximate = [row for row in rows if row not in missing]
    for heading, group in (("Not computed for this data.", missing), ("Estimated, not exact.", approximate)):
        if group:
            items = join(
                tag(
                    "li",
                    join(
                        [
                            tag("strong", titles.get(str(row.get("row")), row.get("row"))),
                            ": ",
                            _sentence_case(row.get("reason")),
                        ]
                    ),
                )
                for row in group
            )
            notes.append(tag("div", join([tag("strong", heading), tag("ul", items)]), class_="note warn"))
    prefixes = as_rows(waterfall.get("unlogged_prefix"))
    if prefixes:
        items = join(
            tag(
                "li",
                f"{row.get('session')}: {format_count(row.get('tokens'))} tokens in each of "
                f"{format_count(row.get('calls'))} calls ({row.get('evidence')}: {row.get('method')})",
            )
            for row in prefixes
        )
        heading = "Not in the log, estimated: each session's system prompt and tool definitions, one leading block."
        notes.append(tag("div", join([tag("strong", heading), tag("ul", items)]), class_="note warn"))
    over = as_mapping(waterfall.get("over_realized"))
    if (as_number(over.get("requests")) or 0) > 0:
        requests = as_number(over.get("requests"))
        text = join(
            [
                tag(
                    "strong",
                    f"{format_count(requests)} request{'' if requests == 1 else 's'} reused more than the rules "
                    f"allow ({format_count(over.get('tokens'))} tokens). ",
                ),
                _reasons(over.get("explanation")),
                " They are counted as the provider reported them.",
                _within_estimate(over),
                " ",
                badge(over.get("evidence")),
            ]
        )
        notes.append(tag("div", text, class_="note alert"))
    return join(notes)


def _within_estimate(over: Mapping[str, Any]) -> str:
    """The requests whose excess is within an estimate's rounding, said beside those whose excess is not."""
    requests = as_number(over.get("within_estimate_requests")) or 0
    if not requests:
        return ""
    return (
        f" Another {format_count(requests)} request{'' if requests == 1 else 's'} exceed it by less than the "
        f"rounding of an estimate ({format_count(over.get('within_estimate_tokens'))} tokens)."
    )


def _sentence_case(text: object) -> str:
    """A fragment as a sentence: capital first letter, full stop at the end."""
    words = str(text or "").strip().rstrip(".;")
    return f"{words[:1].upper()}{words[1:]}." if words else ""


def _reasons(explanation: object) -> str:
    """The possible reasons out of an over-realized explanation ("requests whose ...: a, b, or c; shown, never
    hidden"), as one sentence."""
    text = str(explanation or "").split("; shown")[0]
    reasons = text.split(": ", 1)[1] if ": " in text else text
    return _sentence_case(f"possible reasons: {reasons}") if reasons else ""


def bridge_steps(waterfall: Mapping[str, Any]) -> list[BridgeStep]:
    """Total input down to realized: each stage, and between two stages each cause as a step of its own.

    What the causes do not account for between two stages (requests whose realized is unknown, rounding of
    estimates) is a step of its own too, so that every bar starts where the one above ended.
    """
    total = as_number(_stage(waterfall, "total_input_tokens").get("tokens"))

    def share(tokens: float | None) -> float | None:
        return share_of(tokens, total)

    def stage(key: str, label: str) -> BridgeStep:
        tokens = as_number(_stage(waterfall, key).get("tokens"))
        return BridgeStep(label, "stage", tokens, share(tokens), _stage(waterfall, key).get("evidence"))

    causes = as_rows(waterfall.get("causes"))
    steps = [stage("total_input_tokens", "Total input")]
    eligible = as_number(_stage(waterfall, "eligible").get("tokens"))
    if total is not None and eligible is not None:
        steps.append(
            BridgeStep(
                "new input (no earlier request shares it)",
                "loss",
                total - eligible,
                share(total - eligible),
                weakest([_stage(waterfall, "eligible").get("evidence")]),
            )
        )
    steps.append(stage("eligible", "Eligible"))
    steps.extend(_between(waterfall, "eligible", "candidate", causes, share))
    steps.append(stage("candidate", "Candidate"))
    steps.extend(_between(waterfall, "candidate", "realized", causes, share))
    steps.append(stage("realized", "Realized"))
    return steps


def _between(
    waterfall: Mapping[str, Any],
    upper: str,
    lower: str,
    causes: list[Mapping[str, Any]],
    share: Any,
) -> list[BridgeStep]:
    """The steps from stage ``upper`` down to stage ``lower``."""
    top = as_number(_stage(waterfall, upper).get("tokens"))
    bottom = as_number(_stage(waterfall, lower).get("tokens"))
    mine = [cause for cause in causes if cause.get("stage") == f"{upper}->{lower}"]
    if upper == "candidate":
        mine = [cause for cause in mine if as_number(cause.get("tokens"))]  # the provider's reasons, where it gave any
    steps = [
        BridgeStep(
            cause_name(cause.get("cause"), cause.get("label")),
            "loss",
            as_number(cause.get("tokens")) or 0.0,
            share(as_number(cause.get("tokens")) or 0.0),
            cause.get("evidence"),
        )
        for cause in mine
    ]
    if top is None or bottom is None:
        return steps
    level = top - sum(step.tokens or 0.0 for step in steps)
    if upper == "candidate":
        over = as_mapping(waterfall.get("over_realized"))
        beyond = (as_number(over.get("tokens")) or 0.0) + (as_number(over.get("within_estimate_tokens")) or 0.0)
        if beyond:
            steps.append(
                BridgeStep(
                    "reused beyond the rules (over-realized)", "gain", beyond, share(beyond), over.get("evidence")
                )
            )
            level += beyond
    rest = level - bottom
    if abs(rest) >= 0.5:
        evidence = weakest([_stage(waterfall, upper).get("evidence"), _stage(waterfall, lower).get("evidence")])
        label = "not attributed to a cause" if rest > 0 else "reused beyond the causes above"
        steps.append(BridgeStep(label, "loss" if rest > 0 else "gain", abs(rest), share(abs(rest)), evidence))
    return steps


def waterfall_section(waterfall: Mapping[str, Any], charts: Charts) -> Markup:
    steps = bridge_steps(waterfall)
    chart = charts.place(
        "waterfall",
        bridge_figure(steps),
        "Reuse bridge: total input, each loss as a step down, and what was reused",
    )
    legend = tag(
        "ul",
        join(tag("li", join([badge(level), escape(EVIDENCE_MEANINGS[level])])) for level in EVIDENCE_LEVELS),
        class_="legend",
    )
    weighted = as_mapping(waterfall.get("request_weighted"))
    keys = {label: key for key, label in STAGES}
    table = data_table(
        [
            Column("Step", css="prose"),
            Column("Tokens", True),
            Column("Share of input", True),
            Column("Request-weighted mean", True),
            Column("Evidence"),
        ],
        [
            [
                tag("strong", step.label)
                if step.kind == "stage"
                else f"{'−' if step.kind == 'loss' else '+'} {step.label}",
                format_count(step.tokens),
                format_percent(step.share),
                format_percent(weighted.get(keys[step.label]))
                if step.kind == "stage" and keys.get(step.label) in weighted
                else "",
                badge(step.evidence),
            ]
            for step in steps
        ],
    )
    missed = _stage(waterfall, "missed")
    intro = join(
        [
            "From all input at the top to what was reused at the bottom: each bar below a stage is input lost on the "
            "way, for one reason. ",
            term("Eligible", "eligible"),
            " repeats an earlier request's opening; ",
            term("candidate"),
            " is what a cache could have served under the provider's rules; ",
            term("realized"),
            " is what was reused. The steps between candidate and realized add up to the ",
            term("missed"),
            f" reuse: {format_tokens(missed.get('tokens'))} tokens ({format_percent(missed.get('rate'))} of input). "
            "Colours say how each number is known (",
            term("evidence"),
            ").",
        ]
    )
    return section(
        "waterfall",
        "Where the input went",
        intro,
        data_notes(waterfall),
        card(chart, legend),
        card(table, title="Steps"),
    )


def causes_section(waterfall: Mapping[str, Any], charts: Charts) -> Markup:
    del charts  # the bridge above draws the causes; this section lists them
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
            "Why reuse was lost",
            None,
            *extra,
            placeholder(Markup("No losses were attributed to a cause in this data.")),
        )
    table = data_table(
        [
            Column("Between"),
            Column("Cause", css="prose"),
            Column("Tokens", True),
            Column("Share of input", True),
            Column("Requests", True),
            Column("Evidence"),
        ],
        [
            [
                _between_words(cause.get("stage")),
                cause_name(cause.get("cause"), cause.get("label")),
                format_count(cause.get("tokens")),
                format_percent(share_of(cause.get("tokens"), total)),
                format_count(cause.get("requests")),
                badge(cause.get("evidence")),
            ]
            for cause in causes
        ],
    )
    intro = join(
        [
            "Every lost token is put down to the first rule that cut it, in this order. Between candidate and "
            "realized, the reason is the ",
            term("provider diagnostic"),
            " where the log has one. Whether two requests could share a cache at all depends on the ",
            term("KV compatibility key"),
            " and the ",
            term("materialization family"),
            ".",
        ]
    )
    return section("causes", "Why reuse was lost", intro, *extra, card(table, title="Causes, in attribution order"))


def _between_words(stage: object) -> str:
    """A cause's stage id ("eligible->candidate") in words."""
    return str(stage or "").replace("->", " \u2192 ")


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
    table = data_table([Column("Item"), Column("Meaning", css="muted prose"), Column("Amount", True)], rows)
    footer = tag(
        "p",
        join(
            [
                _prices_source(waterfall),
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


def _prices_source(waterfall: Mapping[str, Any]) -> Markup:
    """Whose list prices the amounts use: the rules packs by name and version, and the dates of their prices."""
    money = as_mapping(waterfall.get("money"))
    packs = [f"{row.get('name')} {row.get('version')}" for row in as_rows(waterfall.get("rules"))]
    named = ", ".join(packs) if packs else "the rules packs"
    dated = money.get("prices_as_of")
    return join(
        [
            "List prices from the ",
            term("rules pack" if len(packs) == 1 else "rules packs", "rules pack"),
            " ",
            tag("strong", named),
            f" (prices dated {dated})" if dated else " (price dates not recorded)",
        ]
    )


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


def _tiers(waterfall: Mapping[str, Any], curve: Sequence[Mapping[str, Any]]) -> Markup:
    """The second cache tier in words: what it served of the bounded candidate, and that the dotted line is the
    first tier alone."""
    split = as_mapping(waterfall.get("second_tier"))
    parts = []
    if any("second_tier_rate" in point for point in curve):
        parts.append(" With a second cache tier behind the first; the dotted line is the first tier alone.")
    if split:
        first, second = as_mapping(split.get("first_tier")), as_mapping(split.get("second_tier"))
        parts.append(
            f" Candidate by tier: {format_percent(first.get('rate'))} from a first tier of "
            f"{format_capacity(split.get('first_tier_capacity_tokens'))} tokens, "
            f"{format_percent(second.get('rate'))} from a second tier of "
            f"{format_capacity(split.get('capacity_tokens'))} tokens "
        )
        return join([*parts, badge(split.get("evidence"))])
    return join(parts)


def _replayed_capacities(points: Sequence[Mapping[str, Any]], unbounded: Mapping[str, Any] | None) -> Markup:
    """The replayed points as words, for readers without the chart: capacity, measured and predicted. A replay at a
    capacity nobody chose is set beside the unbounded figure instead of being drawn."""
    drawn = [p for p in points if p.get("on_curve")]
    parts: list[object] = []
    if drawn:
        each = [
            f"{format_capacity(p.get('capacity_tokens'))} tokens: {format_percent(p.get('measured_rate'))} measured, "
            f"{format_percent(p.get('predicted_rate'))} predicted"
            for p in drawn
        ]
        parts += [
            " Diamonds: replays of every request on an engine at a capacity given with --kv-blocks or read from the "
            "server (",
            "; ".join(each),
            ") ",
            badge("replayed"),
            " The line follows this report's rules packs: where every request is judged under a pack with vLLM's "
            "eviction at the engine's block size, it is the engine's own model and each diamond sits on it.",
        ]
    against = f" against {format_percent(unbounded.get('rate'))} unbounded" if unbounded else ""
    for p in points:
        if p.get("on_curve"):
            continue
        parts += [
            f" Not drawn at its size: a replay of every request on {format_replayed_cache(p)}, measured "
            f"{format_percent(p.get('measured_rate'))}{against} ",
            badge("replayed"),
        ]
    return join(parts)


def capacity_section(
    waterfall: Mapping[str, Any], charts: Charts, measured: Sequence[Mapping[str, Any]] | None = None
) -> Markup:
    curve = as_rows(waterfall.get("capacity_curve"))
    points = as_rows(list(measured or []))
    ttl = as_rows(waterfall.get("ttl_sensitivity"))
    fallback = _stage(waterfall, "candidate").get("evidence")
    curve_evidence = weakest(point.get("evidence") for point in curve) or fallback
    ttl_evidence = weakest(point.get("evidence") for point in ttl) or fallback
    capacity = capacity_figure(curve, curve_evidence, points)
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
                _tiers(waterfall, curve),
                _replayed_capacities(points, unbounded),
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

"""The report's first screen: the title that names the traffic, one sentence, four numbers and the assumptions.

A reader who sees nothing else learns how much input the traffic sent over which period, how much of it was
reused, what the missed reuse would have saved, and the one change worth most, and under which rules, TTL,
capacity and routing those figures hold. Every element that carries one of those facts has a ``data-fact``
attribute, so that a test can find it on the page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from zumik_cli.render.report.format import (
    as_number,
    format_capacity,
    format_count,
    format_duration,
    format_money,
    format_percent,
    format_period,
    format_span,
    format_tokens,
)
from zumik_cli.render.report.glossary import term
from zumik_cli.render.report.html import Markup, as_mapping, as_rows, join, metric, tag


def _stage(waterfall: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    return as_mapping(waterfall.get(key))


def _period(waterfall: Mapping[str, Any]) -> Mapping[str, Any]:
    return as_mapping(waterfall.get("period"))


def traffic_title(waterfall: Mapping[str, Any]) -> str:
    """The traffic a report is about, by its size and its period (not by the folder it was read from)."""
    period = _period(waterfall)
    requests = as_number(waterfall.get("requests"))
    noun = "request" if requests == 1 else "requests"
    return (
        f"{format_tokens(_stage(waterfall, 'total_input_tokens').get('tokens'))} input tokens in "
        f"{format_count(requests)} {noun}, {format_period(period.get('first'), period.get('last'))}"
    )


def _lower_first(text: str) -> str:
    """A title made to continue a sentence ("Use the ..." -> "use the ..."), an acronym left as it is."""
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def _tile(fact: str, label: object, value: str, detail: object, evidence: object = None) -> Markup:
    """A first-screen number: a headline ``metric`` named by its fact, badged only where it has evidence."""
    return metric(fact, label, value, detail, *(() if evidence is None else (evidence,)), fact=fact)


def _top(recommendations: Sequence[Mapping[str, Any]] | None) -> Mapping[str, Any] | None:
    rows = as_rows(list(recommendations or []))
    return rows[0] if rows else None


def _sentence(waterfall: Mapping[str, Any], top: Mapping[str, Any] | None, asked: bool) -> Markup:
    """The whole report in one sentence."""
    period = _period(waterfall)
    money = as_mapping(waterfall.get("money"))
    currency = money.get("currency") or "USD"
    span = format_span(period.get("first"), period.get("last"))
    when = format_period(period.get("first"), period.get("last"))
    requests = waterfall.get("requests")
    parts: list[object] = [
        f"Over {span} ({when}), " if span else f"Over {when}, ",
        tag("strong", f"{format_count(requests)} requests"),
        " sent ",
        tag("strong", f"{format_tokens(_stage(waterfall, 'total_input_tokens').get('tokens'))} input tokens"),
        ": ",
        tag("strong", format_percent(_stage(waterfall, "realized").get("rate"))),
        " was reused from the provider's cache, the ",
        tag("strong", format_percent(_stage(waterfall, "missed").get("rate"))),
        " it could have reused and did not would have saved ",
        tag("strong", format_money(money.get("missed_savings"), currency)),
    ]
    if top is not None:
        parts += [
            ", and the change worth most is to ",
            tag("strong", _lower_first(str(top.get("title") or top.get("id") or "the first change below"))),
        ]
    elif asked:
        parts.append(", and no change zumik can simulate would save more")
    parts.append(".")
    return tag("p", join(parts), class_="summary", data_fact="sentence")


def _tiles(waterfall: Mapping[str, Any], recommendations: Sequence[Mapping[str, Any]] | None) -> Markup:
    total = _stage(waterfall, "total_input_tokens")
    realized = _stage(waterfall, "realized")
    missed = _stage(waterfall, "missed")
    money = as_mapping(waterfall.get("money"))
    currency = money.get("currency") or "USD"
    period = _period(waterfall)
    billed = money.get("billed")
    input_detail = join(
        [
            f"{format_count(waterfall.get('requests'))} requests · ",
            tag("span", format_period(period.get("first"), period.get("last")), data_fact="period"),
            f" · billed {format_money(billed, currency)}" if as_number(billed) is not None else "",
        ]
    )
    tiles = [
        _tile("total-input", term("Input tokens", "input tokens"), format_tokens(total.get("tokens")), input_detail),
        _tile(
            "reused-share",
            join(["Reused from cache (", term("realized"), ")"]),
            format_percent(realized.get("rate")),
            f"{format_tokens(realized.get('tokens'))} tokens, "
            f"saving {format_money(money.get('realized_savings'), currency)}",
            realized.get("evidence"),
        ),
        _tile(
            "missed-cost",
            join([term("Missed", "missed"), " reuse would have saved"]),
            format_money(money.get("missed_savings"), currency),
            f"{format_percent(missed.get('rate'))} of input ({format_tokens(missed.get('tokens'))} tokens) a cache "
            "could have served",
            money.get("evidence") or missed.get("evidence"),
        ),
    ]
    top = _top(recommendations)
    if top is not None:
        tiles.append(
            _tile(
                "top-recommendation",
                "The change worth most",
                format_money(top.get("money_saved_usd"), currency),
                join(
                    [
                        tag("strong", top.get("title") or top.get("id")),
                        " (",
                        tag("a", "details", href="#recommendations"),
                        ")",
                    ]
                ),
                top.get("evidence"),
            )
        )
    else:
        sentence = (
            "No recommendations were computed for this report."
            if recommendations is None
            else "No change zumik can simulate would save tokens or money here."
        )
        tiles.append(_tile("top-recommendation", "The change worth most", "none", sentence))
    return tag("div", join(tiles), class_="headline four")


def _assumptions(waterfall: Mapping[str, Any]) -> Markup:
    """What the figures were computed under, beside them: a what-if must never read like the baseline."""
    options = as_mapping(waterfall.get("options"))
    if not options:
        return Markup("")  # a result written before it recorded its options
    rules = [f"{row.get('name')} {row.get('version')}" for row in as_rows(waterfall.get("rules"))]
    forced = options.get("rules")
    files = [str(name) for name in options.get("rules_files") or []]
    rules_text = f"{forced} for every request" if forced else "as each request was recorded"
    if rules:
        rules_text += f" ({', '.join(rules)})"
    if files:
        rules_text += f"; added from {', '.join(files)}"
    ttl = options.get("ttl")
    ttl_text = (
        "each provider's own"
        if ttl in (None, "pack")
        else "no expiry"
        if ttl == "none"
        else f"{format_duration(ttl)} for every request"
    )
    capacity = options.get("capacity_tokens")
    capacity_text = "unbounded" if capacity is None else f"{format_capacity(capacity)} tokens, LRU"
    release = options.get("release")
    rows = [
        (term("Rules", "rules pack"), rules_text),
        (term("TTL"), ttl_text),
        (term("Cache capacity", "cache capacity"), capacity_text),
        (term("Routing policy", "routing policy"), options.get("policy") or "recorded"),
        (term("Release", "release"), release if release else "every release, as recorded"),
    ]
    pairs = join(join([tag("dt", name), tag("dd", value)]) for name, value in rows)
    if options.get("what_if"):
        lead = join([tag("strong", "What-if, not the baseline."), " These figures assume:"])
        kind = "warn"
    else:
        lead = join([tag("strong", "Baseline."), " These figures assume the traffic as recorded:"])
        kind = "info"
    return tag(
        "aside",
        join([tag("h2", "Assumptions"), tag("p", lead), tag("dl", pairs, class_="defs tight")]),
        class_=f"note {kind} assumptions",
        id="assumptions",
        data_fact="assumptions",
    )


def overview_section(waterfall: Mapping[str, Any], recommendations: Sequence[Mapping[str, Any]] | None) -> Markup:
    """The first screen: the sentence and the four numbers, with the assumptions beside them."""
    main = tag(
        "div",
        join(
            [
                _sentence(waterfall, _top(recommendations), recommendations is not None),
                _tiles(waterfall, recommendations),
            ]
        ),
        class_="overview-main",
    )
    return tag("section", join([main, _assumptions(waterfall)]), id="overview", class_="overview")

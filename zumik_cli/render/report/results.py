"""The report's sections drawn from runs beside the waterfall: routing simulation, engine replay and
recommendations.

A run that was not given to the report gets a placeholder that names the command producing it; numbers from
the data are escaped like every other string.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from zumik_cli.render.report.charts import policy_figure, replay_figure
from zumik_cli.render.report.format import (
    as_number,
    format_count,
    format_latency,
    format_money,
    format_percent,
    format_replayed_cache,
    format_tokens,
    share_of,
)
from zumik_cli.render.report.glossary import term
from zumik_cli.render.report.html import (
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
)


def _not_given(anchor: str, title: str, missing: str, needs: str, shows: str) -> Markup:
    """The section of a run the report was not given: what is missing, what it needs, and who can add it."""
    sentence = join(
        [
            tag("strong", f"Missing: {missing}."),
            f" It needs {needs}. The engineer who produced this report can add it; then this section {shows}.",
        ]
    )
    return section(anchor, title, None, placeholder(sentence))


def policies_section(
    policies: Sequence[Mapping[str, Any]] | None,
    currency: object,
    charts: Charts,
) -> Markup:
    title = "Policy comparison"
    rows = as_rows(list(policies or []))
    if not rows:
        return _not_given(
            "policies",
            title,
            "a routing simulation",
            "the history of which model each alias pointed to, and when (the alias releases)",
            "compares routing policies on cost, reuse, latency and decision churn",
        )
    recorded = next((row for row in rows if row.get("policy") == "recorded"), None)
    baseline = as_number(recorded.get("cost")) if recorded else None

    def versus(row: Mapping[str, Any]) -> str:
        cost = as_number(row.get("cost"))
        if baseline is None or cost is None or row is recorded:
            return ""
        change = format_money(cost - baseline, currency)
        change = change if change.startswith("-") else f"+{change}"
        return f"{change} ({format_percent(share_of(cost - baseline, baseline))})" if baseline else change

    table = data_table(
        [
            Column("Policy"),
            Column("Cost", True),
            Column("vs recorded", True),
            Column("Simulated reuse", True),
            Column("Measured on an engine", True),
            Column("Latency (est.)", True),
            Column("Decision churn", True),
            Column("Evidence"),
        ],
        [
            [
                tag("span", row.get("policy"), class_="mono"),
                format_money(row.get("cost"), currency),
                versus(row),
                format_percent(row.get("realized_rate")),
                _measured(as_mapping(row.get("measured"))),
                format_latency(row.get("latency_ms")),
                _churn(row.get("churn")),
                badge(row.get("evidence")),
            ]
            for row in rows
        ],
    )
    chart = charts.place("policies", policy_figure(rows, currency), "Cost of the same traffic under each policy")
    intro = join(
        [
            "The same traffic, in time order, sent where each ",
            term("routing policy"),
            " would have sent it, with a cache per ",
            term("target"),
            ". Lower cost and higher reuse are better; ",
            term("decision churn"),
            " is how often a policy's choice differs from the recorded one. Where a policy's decisions were ",
            term("replayed", "replay"),
            " on an engine, the reuse it measured stands beside the simulated figure.",
        ]
    )
    return section("policies", title, intro, card(chart), card(table))


def _measured(measured: Mapping[str, Any]) -> Markup:
    """A policy's replayed reuse with what it covered, or a muted note where the policy was not replayed."""
    if not measured:
        return tag("span", "not replayed", class_="muted", title="`zumik replay --policy P --release R` measures it")
    release = measured.get("release")
    scope = f"{format_count(measured.get('requests'))} requests of {release or 'every release'}"
    gap = as_number(measured.get("measured_minus_simulated_pp"))
    if gap is not None:
        scope += f"; {gap:+.2f} pt vs simulated"
    scope += f"; measured on {format_replayed_cache(measured)}"
    return join(
        [
            tag("span", format_percent(measured.get("rate")), class_="measured"),
            " ",
            badge(measured.get("evidence")),
            tag("div", scope, class_="small muted"),
        ]
    )


def _churn(value: object) -> str:
    """Churn as a share when it is a fraction, as a count when it is a whole number of decisions."""
    if isinstance(value, float) and 0.0 <= value <= 1.0:
        return format_percent(value)
    return format_count(value)


def replays_section(replays: Sequence[Mapping[str, Any]] | None, charts: Charts) -> Markup:
    title = "Predicted vs measured (replay)"
    rows = as_rows(list(replays or []))
    if not rows:
        return _not_given(
            "replay",
            title,
            "a replay on a real engine",
            "a machine with the vLLM inference engine",
            "sets zumik's predicted reuse beside what a real engine measured",
        )
    predicted = [as_number(row.get("predicted_tokens")) for row in rows]
    measured = [as_number(row.get("measured_tokens")) for row in rows]
    pairs = [(p, m) for p, m in zip(predicted, measured, strict=True) if p is not None and m is not None]
    predicted_total = sum(p for p, _ in pairs)
    measured_total = sum(m for _, m in pairs)
    exact = sum(1 for p, m in pairs if p == m)
    mean_error = sum(abs(p - m) for p, m in pairs) / len(pairs) if pairs else None
    summary = tag(
        "div",
        join(
            [
                metric(
                    "total",
                    "Replayed requests",
                    format_count(len(rows)),
                    f"{exact:,} of {len(pairs):,} exact",
                ),
                metric("total", "Predicted cached", format_tokens(predicted_total), "tokens", "simulated"),
                metric("total", "Measured cached", format_tokens(measured_total), "tokens", "replayed"),
                metric(
                    "total",
                    "Measured / predicted",
                    format_percent(share_of(measured_total, predicted_total)),
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
    table = data_table(
        [
            Column("Trace id", css="nowrap"),
            Column("Prompt tokens", True),
            Column("Predicted", True),
            Column("Measured", True),
            Column("Difference", True),
        ],
        [
            [
                tag("span", row.get("trace_id"), class_="mono"),
                format_count(row.get("prompt_tokens")),
                format_count(row.get("predicted_tokens")),
                format_count(row.get("measured_tokens")),
                _difference(row),
            ]
            for row in worst
        ],
    )
    chart = charts.place("replay", replay_figure(rows), "Predicted against measured cached tokens")
    legend = tag(
        "p",
        join(
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
    return section(
        "replay",
        title,
        None,
        summary,
        card(chart, legend),
        card(table, more_note(len(worst), len(differing), "requests"), title="Largest disagreements")
        if differing
        else card(
            tag("p", "Every replayed request measured exactly what was predicted.", class_="muted"),
            title="Disagreements",
        ),
    )


def _difference(row: Mapping[str, Any]) -> str:
    p, m = as_number(row.get("predicted_tokens")), as_number(row.get("measured_tokens"))
    if p is None or m is None:
        return "n/a"
    diff = m - p
    return f"{'+' if diff > 0 else ''}{format_count(diff)}"


def recommendations_section(recommendations: Sequence[Mapping[str, Any]] | None, currency: object) -> Markup:
    """The few changes worth most, each a simulation: what to do, what it saves, and what that assumes."""
    if recommendations is None:
        return Markup("")
    title = "What to change first"
    rows = as_rows(list(recommendations))
    if not rows:
        sentence = Markup("No change zumik can simulate would save tokens or money on this data.")
        return section("recommendations", title, None, placeholder(sentence))
    table = data_table(
        [
            Column("#", True),
            Column("Change", css="prose"),
            Column("Sessions", True),
            Column("Requests", True),
            Column("Tokens saved", True),
            Column("Money saved", True),
            Column("Evidence"),
        ],
        [
            [
                format_count(rank),
                row.get("title"),
                format_count(as_mapping(row.get("scope")).get("sessions")),
                format_count(as_mapping(row.get("scope")).get("requests")),
                format_tokens(row.get("tokens_saved")),
                format_money(row.get("money_saved_usd"), currency),
                join([escape(row.get("tag")), " ", badge(row.get("evidence"))]),
            ]
            for rank, row in enumerate(rows, start=1)
        ],
    )
    cards = [
        card(
            tag("p", row.get("action")),
            tag("ul", join(tag("li", item) for item in row.get("assumptions") or []), class_="small muted"),
            tag("p", f"Money: {row.get('money_basis') or 'list prices'}.", class_="small muted"),
            title=f"{rank}. {row.get('title') or row.get('id')}",
        )
        for rank, row in enumerate(rows, start=1)
    ]
    intro = (
        "Each change was applied to a copy of the recorded requests and the waterfall re-run on it: the saving is "
        "the difference between the two runs. These are simulations, not measurements."
    )
    return section("recommendations", title, intro, card(table), *cards)

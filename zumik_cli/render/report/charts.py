"""The report's charts, as plotly figure JSON, and the colours that carry evidence levels.

Plotly renders trace and axis text as a small HTML dialect (``<b>``, ``<a href>``, ``<br>``), so every string
that comes from the data is passed through ``html.escape`` here, at the point where it enters plotly: plotly
then shows ``&lt;script&gt;`` as the literal text ``<script>`` and never builds an element from it. Bars take
the colour of their evidence level, the same colour the HTML badges use, so a reader learns one key.

Figures are plain dicts, not ``plotly.graph_objects``: those validate every property as it is set, which cost
more than the rest of the report put together. The keys come in the order plotly's own serialisation gives
them, so the report's bytes did not change when the objects went; a test has plotly validate and write each
figure and compares the bytes.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zumik_cli.core.printable import printable
from zumik_cli.render.report.format import (
    as_number,
    format_capacity,
    format_count,
    format_duration,
    format_latency,
    format_money,
    format_percent,
    format_tokens,
)

EVIDENCE_LEVELS = ("measured", "replayed", "simulated", "estimated")
EVIDENCE_COLOURS = {
    "measured": "#0f766e",
    "replayed": "#1d4ed8",
    "simulated": "#b45309",
    "estimated": "#7c3aed",
    "unknown": "#6b7280",
}
FONT_STACK = ", ".join(
    [
        "system-ui",
        "-apple-system",
        "'Segoe UI'",
        "Roboto",
        "'Helvetica Neue'",
        "'Noto Sans'",
        "Arial",
        "sans-serif",
    ]
)
_REPLAY_HOVER = "%{customdata[0]}: predicted %{customdata[1]}, measured %{customdata[2]}<extra></extra>"
_INK = "#1f2937"
_MUTED = "#6b7280"
_GRID = "#e5e7eb"
# plotly's "none" template as plotly writes it: one empty scatter, because an empty template means the default.
_NO_TEMPLATE = {"data": {"scatter": [{"type": "scatter"}]}}

Figure = dict[str, Any]  # {"data": [trace, ...], "layout": {...}}, as plotly.js reads it


def evidence_key(value: object) -> str:
    """The evidence level named by value, or ``unknown`` (an unexpected value is shown, never trusted)."""
    if isinstance(value, str) and value.lower() in EVIDENCE_LEVELS:
        return value.lower()
    return "unknown"


def evidence_colour(value: object) -> str:
    """The colour of an evidence level, grey for anything that is not one."""
    return EVIDENCE_COLOURS[evidence_key(value)]


def _text(value: object) -> str:
    """A data string made safe for plotly's text renderer (see the module docstring).

    Quotes stay as they are: plotly decodes &amp; &lt; &gt; but not &quot;, and a quote outside a tag means
    nothing to it.
    """
    return html.escape(printable(value), quote=False)


def _figure(traces: list[dict[str, Any]], layout: dict[str, Any]) -> Figure:
    return {"data": traces, "layout": layout}


def _trace(kind: str, **properties: Any) -> dict[str, Any]:
    """One trace, keys sorted with its type last, as plotly's trace constructors leave them."""
    return {**_sorted(properties), "type": kind}


def _sorted(properties: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _sorted(value) if isinstance(value, Mapping) else value for key, value in sorted(properties.items())}


def _layout(**overrides: Any) -> dict[str, Any]:
    """The shared look: no template (a small, predictable JSON), system fonts, light grid.

    A nested override merges into the default, where None removes a key (as it unsets one in plotly); any other
    override replaces it.
    """
    layout: dict[str, Any] = {
        "template": _NO_TEMPLATE,
        "font": {"family": FONT_STACK, "size": 13, "color": _INK},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "margin": {"l": 64, "r": 24, "t": 16, "b": 56},
        "height": 340,
        "showlegend": False,
        "hoverlabel": {"font": {"family": FONT_STACK}},
        "xaxis": {"gridcolor": _GRID, "linecolor": "#9ca3af", "automargin": True, "zeroline": False},
        "yaxis": {"gridcolor": _GRID, "linecolor": "#9ca3af", "automargin": True, "zeroline": False},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(layout.get(key), dict):
            layout[key] = {**layout[key], **value}
        else:
            layout[key] = value
    return _in_update_order(layout)


def _in_update_order(layout: Mapping[str, Any]) -> dict[str, Any]:
    """The layout in the order plotly's update_layout serialises it: nested objects first, then plain values,
    each in the order given, None left out; an annotation's or shape's keys are sorted, as its constructor
    sets them."""
    nested = {key: _in_update_order(value) for key, value in layout.items() if isinstance(value, Mapping)}
    plain = {
        key: [_sorted(item) for item in value] if key in ("annotations", "shapes") else value
        for key, value in layout.items()
        if value is not None and not isinstance(value, Mapping)
    }
    return {**nested, **plain}


@dataclass(frozen=True)
class StageBar:
    """One bar of the headline waterfall: a stage's absolute size, its share of input and its evidence."""

    label: str
    tokens: float | None
    rate: float | None
    evidence: object


def waterfall_figure(stages: Sequence[StageBar]) -> Figure:
    """The headline waterfall: one absolute bar per stage, coloured and badged by evidence level.

    Each stage is drawn from zero at its own size, not as a delta from the previous bar: missed is part of
    candidate, not a further drop below realized, and floating deltas would suggest that it is. Plotly's
    waterfall takes one colour for all absolute bars of a trace, so bars are grouped into one trace per
    evidence level and overlaid on a fixed category order.
    """
    labels = [_text(stage.label) for stage in stages]
    tallest = max((as_number(stage.tokens) or 0.0 for stage in stages), default=0.0) or 1.0
    traces = []
    levels = [*EVIDENCE_LEVELS, "unknown"]
    for level in levels:
        members = [i for i, stage in enumerate(stages) if evidence_key(stage.evidence) == level]
        if not members:
            continue
        traces.append(
            _trace(
                "waterfall",
                name=level if level != "unknown" else "unknown evidence",
                x=[labels[i] for i in members],
                y=[as_number(stages[i].tokens) or 0.0 for i in members],
                measure=["absolute"] * len(members),
                text=[_bar_text(stages[i]) for i in members],
                textposition="outside",
                cliponaxis=False,
                customdata=[
                    [
                        _text(format_count(stages[i].tokens)),
                        _text(format_percent(stages[i].rate)),
                        _text(stages[i].evidence),
                    ]
                    for i in members
                ],
                hovertemplate="%{x}: %{customdata[0]} tokens (%{customdata[1]} of input), "
                "%{customdata[2]}<extra></extra>",
                totals={"marker": {"color": EVIDENCE_COLOURS[level]}},
                connector={"visible": False},
            )
        )
    badges = [
        {
            "x": labels[i],
            "y": as_number(stage.tokens) or 0.0,
            "yref": "y",
            "text": _text(stage.evidence if stage.evidence is not None else "no evidence"),
            "showarrow": False,
            "yanchor": "bottom",
            "yshift": 24,
            "bgcolor": evidence_colour(stage.evidence),
            "bordercolor": evidence_colour(stage.evidence),
            "borderpad": 3,
            "font": {"color": "#ffffff", "size": 11},
        }
        for i, stage in enumerate(stages)
    ]
    return _figure(
        traces,
        _layout(
            waterfallmode="overlay",
            height=380,
            annotations=badges,
            xaxis={"type": "category", "categoryorder": "array", "categoryarray": labels, "gridcolor": None},
            yaxis={"title": {"text": "tokens"}, "tickformat": "~s", "range": [0, tallest * 1.3]},
        ),
    )


def _bar_text(stage: StageBar) -> str:
    if as_number(stage.tokens) is None:
        return "not computed"
    return f"{_text(format_tokens(stage.tokens))} · {_text(format_percent(stage.rate))}"


def causes_figure(causes: Sequence[Mapping[str, Any]], total_tokens: object) -> Figure:
    """Loss causes as horizontal bars, largest first, each in its evidence colour."""
    ranked = sorted(causes, key=lambda cause: -(as_number(cause.get("tokens")) or 0.0))
    total = as_number(total_tokens)
    labels = _unique([_text(cause.get("label") or cause.get("cause")) for cause in ranked])
    shares = [_text(format_percent(_ratio(cause.get("tokens"), total))) for cause in ranked]
    bars = _trace(
        "bar",
        orientation="h",
        y=labels,
        x=[as_number(cause.get("tokens")) or 0.0 for cause in ranked],
        marker={"color": [evidence_colour(cause.get("evidence")) for cause in ranked]},
        text=[
            f"{_text(format_tokens(cause.get('tokens')))} · {share}"
            for cause, share in zip(ranked, shares, strict=True)
        ],
        textposition="outside",
        cliponaxis=False,
        customdata=[
            [
                _text(cause.get("stage")),
                _text(format_count(cause.get("tokens"))),
                _text(cause.get("evidence")),
            ]
            for cause in ranked
        ],
        hovertemplate="%{y} (%{customdata[0]}): %{customdata[1]} tokens, %{customdata[2]}<extra></extra>",
    )
    return _figure(
        [bars],
        _layout(
            height=max(220, 44 * len(ranked) + 80),
            margin={"r": 96},
            yaxis={"type": "category", "autorange": "reversed", "gridcolor": None},
            xaxis={"title": {"text": "tokens lost"}, "tickformat": "~s", "rangemode": "tozero"},
        ),
    )


def _ratio(part: object, whole: float | None) -> float | None:
    return (as_number(part) or 0.0) / whole if whole else None


def _unique(labels: Sequence[str]) -> list[str]:
    """Labels made distinct, because plotly merges bars that share a category name."""
    seen: dict[str, int] = {}
    result = []
    for label in labels:
        count = seen.get(label, 0)
        seen[label] = count + 1
        result.append(label if count == 0 else f"{label} ({count + 1})")
    return result


def capacity_figure(curve: Sequence[Mapping[str, Any]], evidence: object) -> Figure | None:
    """Candidate reuse against KV-cache capacity on a log axis; an unbounded cache is the dashed ceiling.

    Returns None when the curve has no bounded point, since a log axis of nothing is not a chart.
    """
    bounded = sorted(
        (point for point in curve if as_number(point.get("capacity_tokens")) is not None),
        key=lambda point: as_number(point.get("capacity_tokens")) or 0.0,
    )
    bounded = [point for point in bounded if (as_number(point.get("capacity_tokens")) or 0.0) > 0]
    if not bounded:
        return None
    colour = evidence_colour(evidence)
    line = _trace(
        "scatter",
        x=[as_number(point.get("capacity_tokens")) for point in bounded],
        y=[as_number(point.get("rate")) for point in bounded],
        mode="lines+markers",
        line={"color": colour, "width": 2.5},
        marker={"size": 8, "color": colour},
        customdata=[
            [
                _text(format_capacity(point.get("capacity_tokens"))),
                _text(format_percent(point.get("rate"))),
            ]
            for point in bounded
        ],
        hovertemplate="capacity %{customdata[0]} tokens: %{customdata[1]} of input<extra></extra>",
    )
    ceiling_marks: dict[str, Any] = {}
    ceiling = next((point for point in curve if point.get("capacity_tokens") is None), None)
    ceiling_rate = as_number(ceiling.get("rate")) if ceiling is not None else None
    if ceiling_rate is not None:
        ceiling_marks["shapes"] = [
            {
                "type": "line",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "yref": "y",
                "y0": ceiling_rate,
                "y1": ceiling_rate,
                "line": {"color": _MUTED, "width": 1.5, "dash": "dash"},
            }
        ]
        ceiling_marks["annotations"] = [
            {
                "xref": "paper",
                "x": 0,
                "xanchor": "left",
                "yref": "y",
                "y": ceiling_rate,
                "yanchor": "bottom",
                "text": f"unbounded cache: {_text(format_percent(ceiling_rate))}",
                "showarrow": False,
                "font": {"color": _MUTED, "size": 12},
            }
        ]
    highest = max([as_number(point.get("rate")) or 0.0 for point in bounded] + [ceiling_rate or 0.0])
    return _figure(
        [line],
        _layout(
            **ceiling_marks,
            xaxis={
                "type": "log",
                "title": {"text": "KV-cache capacity (tokens, log scale)"},
                "exponentformat": "SI",
                "dtick": 1,
            },
            yaxis={
                "title": {"text": "candidate reuse (share of input)"},
                "tickformat": ".0%",
                "range": [0, max(highest * 1.15, 0.05)],
            },
        ),
    )


def ttl_figure(points: Sequence[Mapping[str, Any]], evidence: object) -> Figure | None:
    """Candidate reuse for each cache TTL, shortest first and "no expiry" last; None when there are none."""
    if not points:
        return None
    ordered = sorted(
        points,
        key=lambda point: (point.get("ttl_seconds") is None, as_number(point.get("ttl_seconds")) or 0.0),
    )
    labels = _unique([_text(format_duration(point.get("ttl_seconds"))) for point in ordered])
    rates = [as_number(point.get("rate")) for point in ordered]
    bars = _trace(
        "bar",
        x=labels,
        y=[rate or 0.0 for rate in rates],
        marker={"color": evidence_colour(evidence)},
        text=[_text(format_percent(rate)) for rate in rates],
        textposition="outside",
        cliponaxis=False,
        hovertemplate="TTL %{x}: %{text} of input<extra></extra>",
    )
    highest = max((rate or 0.0 for rate in rates), default=0.0)
    return _figure(
        [bars],
        _layout(
            xaxis={"type": "category", "title": {"text": "cache TTL"}, "gridcolor": None},
            yaxis={
                "title": {"text": "candidate reuse (share of input)"},
                "tickformat": ".0%",
                "range": [0, max(highest * 1.2, 0.05)],
            },
        ),
    )


def policy_figure(policies: Sequence[Mapping[str, Any]], currency: object) -> Figure:
    """Each simulated policy as a point of cost against realized reuse: down and to the right is better."""
    points = _trace(
        "scatter",
        x=[as_number(row.get("cost")) for row in policies],
        y=[as_number(row.get("realized_rate")) for row in policies],
        mode="markers+text",
        text=[_text(row.get("policy")) for row in policies],
        textposition=_alternating(policies),
        marker={
            "size": 13,
            "color": [evidence_colour(row.get("evidence")) for row in policies],
            "line": {"color": "#ffffff", "width": 1},
        },
        customdata=[
            [
                _text(format_money(row.get("cost"), currency)),
                _text(format_percent(row.get("realized_rate"))),
                _text(format_latency(row.get("latency_ms"))),
                _text(row.get("evidence")),
            ]
            for row in policies
        ],
        hovertemplate="%{text}: %{customdata[0]}, reuse %{customdata[1]}, latency %{customdata[2]}, "
        "%{customdata[3]}<extra></extra>",
        cliponaxis=False,
    )
    symbol = format_money(0, currency).replace("0.00", "")
    return _figure(
        [points],
        _layout(
            margin={"t": 32, "r": 48},
            xaxis={"title": {"text": "cost"}, "tickprefix": _text(symbol)},
            yaxis={"title": {"text": "realized reuse (share of input)"}, "tickformat": ".1%"},
        ),
    )


def _alternating(policies: Sequence[Mapping[str, Any]]) -> list[str]:
    """Label positions that alternate above and below along the cost axis, so neighbours do not collide."""
    order = sorted(range(len(policies)), key=lambda i: as_number(policies[i].get("cost")) or 0.0)
    positions = [""] * len(policies)
    for rank, index in enumerate(order):
        positions[index] = "top center" if rank % 2 == 0 else "bottom center"
    return positions


def replay_figure(replays: Sequence[Mapping[str, Any]]) -> Figure:
    """Predicted against measured cached tokens per replayed request; points on the diagonal agree."""
    predicted = [as_number(row.get("predicted_tokens")) for row in replays]
    measured = [as_number(row.get("measured_tokens")) for row in replays]
    reach = max([value or 0.0 for value in predicted + measured] + [1.0])
    diagonal = _trace(
        "scatter",
        x=[0, reach],
        y=[0, reach],
        mode="lines",
        line={"color": _MUTED, "dash": "dash", "width": 1},
        hoverinfo="skip",
    )
    points = _trace(
        "scatter",
        x=predicted,
        y=measured,
        mode="markers",
        marker={"size": 8, "color": EVIDENCE_COLOURS["replayed"], "opacity": 0.75},
        customdata=[
            [
                _text(row.get("trace_id")),
                _text(format_count(row.get("predicted_tokens"))),
                _text(format_count(row.get("measured_tokens"))),
            ]
            for row in replays
        ],
        hovertemplate=_REPLAY_HOVER,
    )
    return _figure(
        [diagonal, points],
        _layout(
            xaxis={
                "title": {"text": "predicted cached tokens (simulated)"},
                "tickformat": "~s",
                "range": [0, reach * 1.05],
            },
            yaxis={
                "title": {"text": "measured cached tokens (replayed)"},
                "tickformat": "~s",
                "range": [0, reach * 1.05],
            },
        ),
    )


__all__ = [
    "EVIDENCE_COLOURS",
    "EVIDENCE_LEVELS",
    "FONT_STACK",
    "Figure",
    "StageBar",
    "capacity_figure",
    "causes_figure",
    "evidence_colour",
    "evidence_key",
    "policy_figure",
    "replay_figure",
    "ttl_figure",
    "waterfall_figure",
]

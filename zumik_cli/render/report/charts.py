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
class BridgeStep:
    """One bar of the reuse bridge: a stage's level (``kind`` "stage") or a change between two stages ("loss", drawn
    as a step down, or "gain"), with its share of input and its evidence."""

    label: str
    kind: str
    tokens: float | None
    share: float | None
    evidence: object


BRIDGE_LABEL_CHARS = 26


def bridge_figure(steps: Sequence[BridgeStep]) -> Figure:
    """The reuse bridge: total input at the top, each loss a bar that steps down from where the one above ended,
    each stage a bar from zero, realized at the bottom, every bar in its evidence colour. A step of no tokens is
    left out (the table beside the chart lists it).

    Horizontal, so that a long cause name reads at phone width; each row's name, size and evidence are its axis
    label (text on the bars would collide with the next row's bar or run out of the plot on a narrow screen).
    """
    steps = [step for step in steps if step.kind == "stage" or as_number(step.tokens)]  # a step of 0 is no step
    level = 0.0
    bases, widths, labels = [], [], []
    for step in steps:
        tokens = as_number(step.tokens) or 0.0
        if step.kind == "stage":
            level = tokens
            bases.append(0.0)
        elif step.kind == "loss":
            level -= tokens
            bases.append(level)
        else:
            bases.append(level)
            level += tokens
        widths.append(tokens)
        labels.append(_bridge_label(step))
    bars = _trace(
        "bar",
        orientation="h",
        y=_unique(labels),
        x=widths,
        base=bases,
        marker={
            "color": [evidence_colour(step.evidence) for step in steps],
            "opacity": [1.0 if step.kind == "stage" else 0.75 for step in steps],
        },
        customdata=[
            [
                _text(step.label),
                _text(format_count(step.tokens)),
                _text(format_percent(step.share)),
                _text(step.evidence),
            ]
            for step in steps
        ],
        hovertemplate="%{customdata[0]}: %{customdata[1]} tokens (%{customdata[2]} of input), "
        "%{customdata[3]}<extra></extra>",
    )
    tallest = max([as_number(step.tokens) or 0.0 for step in steps if step.kind == "stage"] + [1.0])
    return _figure(
        [bars],
        _layout(
            # rows far enough apart for the tallest label (its name's lines and the size line)
            height=(16 * max(label.count("<br>") + 1 for label in labels) + 14) * len(steps) + 70,
            margin={"l": 8, "r": 16, "t": 8, "b": 48},
            bargap=0.25,
            yaxis={"type": "category", "autorange": "reversed", "gridcolor": None, "ticklabelstandoff": 6},
            xaxis={"title": {"text": "input tokens"}, "tickformat": "~s", "range": [0, tallest * 1.02]},
        ),
    )


def _bridge_label(step: BridgeStep) -> str:
    """Name, then size and evidence on a line of their own; a stage's name in bold, a long name broken at spaces."""
    name = "<br>".join(_wrap(_text(step.label), BRIDGE_LABEL_CHARS))
    if step.kind == "stage":
        name = f"<b>{name}</b>"
    sign = {"loss": "\u2212", "gain": "+"}.get(step.kind, "")
    size = "not computed" if as_number(step.tokens) is None else f"{sign}{_text(format_tokens(step.tokens))}"
    share = f" ({_text(format_percent(step.share))})" if step.share is not None else ""
    evidence = _text(step.evidence if step.evidence is not None else "no evidence")
    return f'{name}<br>{size}{share} <span style="color:{evidence_colour(step.evidence)}">{evidence}</span>'


def _wrap(text: str, width: int) -> list[str]:
    """Words packed into lines of at most ``width`` characters (a longer word gets a line of its own)."""
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def _unique(labels: Sequence[str]) -> list[str]:
    """Labels made distinct, because plotly merges bars that share a category name."""
    seen: dict[str, int] = {}
    result = []
    for label in labels:
        count = seen.get(label, 0)
        seen[label] = count + 1
        result.append(label if count == 0 else f"{label} ({count + 1})")
    return result


def capacity_figure(
    curve: Sequence[Mapping[str, Any]], evidence: object, measured: Sequence[Mapping[str, Any]] = ()
) -> Figure | None:
    """Candidate reuse against KV-cache capacity on a log axis; an unbounded cache is the dashed ceiling, and each
    replay of the whole traffic at a chosen or confirmed capacity is a point over the curve in the colour of
    ``replayed``.

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
    # a replay on whatever the engine allocated by itself measured no chosen capacity: it is not a point on the curve
    points = [
        point for point in measured if point.get("on_curve") and (as_number(point.get("capacity_tokens")) or 0.0) > 0
    ]
    traces = [line]
    if any("second_tier_rate" in point for point in bounded):
        # with a second tier the line is both tiers together; the dotted one is what the first tier served alone
        first_only = [
            (as_number(point.get("rate")) or 0.0) - (as_number(point.get("second_tier_rate")) or 0.0)
            for point in bounded
        ]
        traces.append(
            _trace(
                "scatter",
                x=[as_number(point.get("capacity_tokens")) for point in bounded],
                y=first_only,
                mode="lines",
                line={"color": colour, "width": 1.5, "dash": "dot"},
                customdata=[
                    [_text(format_capacity(point.get("capacity_tokens"))), _text(format_percent(rate))]
                    for point, rate in zip(bounded, first_only, strict=True)
                ],
                hovertemplate="capacity %{customdata[0]} tokens: %{customdata[1]} from the first tier<extra></extra>",
            )
        )
    if points:
        traces.append(
            _trace(
                "scatter",
                x=[as_number(point.get("capacity_tokens")) for point in points],
                y=[as_number(point.get("measured_rate")) for point in points],
                mode="markers",
                marker={
                    "size": 12,
                    "symbol": "diamond",
                    "color": EVIDENCE_COLOURS["replayed"],
                    "line": {"color": "#ffffff", "width": 1.5},
                },
                customdata=[
                    [
                        _text(format_capacity(point.get("capacity_tokens"))),
                        _text(format_percent(point.get("measured_rate"))),
                        _text(format_percent(point.get("predicted_rate"))),
                        _text(point.get("engine")),
                    ]
                    for point in points
                ],
                hovertemplate="replayed on %{customdata[3]} with %{customdata[0]} tokens: measured "
                "%{customdata[1]} (predicted %{customdata[2]})<extra></extra>",
            )
        )
    highest = max(
        [as_number(point.get("rate")) or 0.0 for point in bounded]
        + [as_number(point.get("measured_rate")) or 0.0 for point in points]
        + [ceiling_rate or 0.0]
    )
    return _figure(
        traces,
        _layout(
            **ceiling_marks,
            xaxis={
                "type": "log",
                "title": {"text": "cache capacity, tokens (log)"},
                "ticklabelstandoff": 6,
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
    """Each simulated policy's cost as a bar, cheapest first, with its realized reuse in its label: a bar per row
    keeps every name readable where points of policies that cost nearly the same would print over each other."""
    ranked = sorted(policies, key=lambda row: as_number(row.get("cost")) or 0.0)
    labels = _unique(
        [
            f"{_text(row.get('policy'))}<br>reuse {_text(format_percent(row.get('realized_rate')))} "
            f'<span style="color:{evidence_colour(row.get("evidence"))}">{_text(row.get("evidence"))}</span>'
            for row in ranked
        ]
    )
    costs = [as_number(row.get("cost")) for row in ranked]
    bars = _trace(
        "bar",
        orientation="h",
        y=labels,
        x=[cost or 0.0 for cost in costs],
        marker={"color": [evidence_colour(row.get("evidence")) for row in ranked]},
        customdata=[
            [
                _text(row.get("policy")),
                _text(format_money(row.get("cost"), currency)),
                _text(format_percent(row.get("realized_rate"))),
                _text(format_latency(row.get("latency_ms"))),
                _text(row.get("evidence")),
            ]
            for row in ranked
        ],
        hovertemplate="%{customdata[0]}: %{customdata[1]}, reuse %{customdata[2]}, latency %{customdata[3]}, "
        "%{customdata[4]}<extra></extra>",
    )
    symbol = format_money(0, currency).replace("0.00", "")
    return _figure(
        [bars],
        _layout(
            height=46 * len(ranked) + 70,
            margin={"l": 8, "r": 16, "t": 8},
            bargap=0.3,
            yaxis={"type": "category", "autorange": "reversed", "gridcolor": None, "ticklabelstandoff": 6},
            xaxis={"title": {"text": "cost"}, "tickprefix": _text(symbol), "rangemode": "tozero"},
        ),
    )


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
    "BridgeStep",
    "bridge_figure",
    "capacity_figure",
    "evidence_colour",
    "evidence_key",
    "policy_figure",
    "replay_figure",
    "ttl_figure",
]

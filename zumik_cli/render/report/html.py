"""The building blocks of the report's HTML: escaped elements, tables, cards, sections and chart slots.

Invariant: every value that is not ``Markup`` is escaped before it is output, so a string from the data can
never become markup; chart slots get fixed ids, so the same inputs give the same bytes.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zumik_cli.core.printable import printable
from zumik_cli.render.report.charts import EVIDENCE_LEVELS, Figure, evidence_key

TABLE_ROW_LIMIT = 20

EVIDENCE_MEANINGS = {
    "measured": "read from provider usage or engine counters recorded in the trace.",
    "replayed": "measured by zumik's own replay of the requests on a local engine.",
    "simulated": "computed by zumik from exact token sequences and a rules pack.",
    "estimated": "computed from approximate tokens (a calibrated proxy tokenizer) or coarse hash blocks.",
}
_NO_BADGE = object()
_WEAKNESS = {level: rank for rank, level in enumerate(EVIDENCE_LEVELS)}
_PLOTLY_CONFIG = {"displaylogo": False, "typesetMath": False, "responsive": True, "showTips": False}


class Markup(str):
    """HTML built here from escaped parts; anything that is not Markup is escaped before it is output."""


def escape(value: object) -> Markup:
    """Value as HTML: Markup passes through, anything else is escaped text ("" for None), with bidi overrides and
    control characters shown as escapes (``core.printable``)."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(printable(value)))


def join(parts: Iterable[object], separator: str = "") -> Markup:
    return Markup(separator.join(escape(part) for part in parts))


def tag(name: str, content: object = "", **attributes: object) -> Markup:
    """One element; attribute names are ours (``class_`` for class), values and content are escaped."""
    attrs = "".join(
        f' {key.rstrip("_").replace("_", "-")}="{html.escape(str(value))}"'
        for key, value in attributes.items()
        if value is not None
    )
    return Markup(f"<{name}{attrs}>{escape(content)}</{name}>")


def as_mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_rows(value: object) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        return []
    return [row for row in value if isinstance(row, Mapping)]


def badge(evidence: object) -> Markup:
    """An evidence level as a coloured pill; an unexpected value is shown as-is, in grey."""
    key = evidence_key(evidence)
    text = "no evidence" if evidence is None else str(evidence)
    meaning = EVIDENCE_MEANINGS.get(key, "not one of zumik's evidence levels")
    return tag("span", text, class_=f"badge ev-{key}", title=f"{text}: {meaning}")


def weakest(values: Iterable[object]) -> object:
    """The weakest evidence among values (weakest wins when numbers combine); None when there is none."""
    present = [value for value in values if value is not None]
    if not present:
        return None
    unknown = [value for value in present if evidence_key(value) == "unknown"]
    if unknown:
        return unknown[0]
    return max(present, key=lambda value: _WEAKNESS[evidence_key(value)])


def metric(
    kind: str, label: object, value: str, detail: object, evidence: object = _NO_BADGE, *, fact: str | None = None
) -> Markup:
    """One headline number with what it counts and, where it stands alone, its evidence level (a number that
    should carry one and does not is badged "no evidence", not left bare); ``fact`` names it for tests that read
    the page."""
    detail_parts = [escape(detail)] if evidence is _NO_BADGE else [escape(detail), " ", badge(evidence)]
    return tag(
        "div",
        join(
            [
                tag("div", label, class_="label"),
                tag("div", value, class_="value"),
                tag("div", join(detail_parts), class_="detail"),
            ]
        ),
        class_=f"metric {kind}",
        data_fact=fact,
    )


@dataclass(frozen=True)
class Column:
    title: str
    numeric: bool = False
    css: str | None = None


def data_table(columns: Sequence[Column], rows: Iterable[Sequence[object]]) -> Markup:
    head = join(tag("th", column.title, class_="num" if column.numeric else None) for column in columns)
    body = join(
        tag(
            "tr",
            join(
                tag("td", cell, class_="num" if column.numeric else column.css)
                for column, cell in zip(columns, row, strict=True)
            ),
        )
        for row in rows
    )
    table = tag("table", join([tag("thead", tag("tr", head)), tag("tbody", body)]))
    hint = tag("p", "Wider than the screen: scroll the table sideways \u2192", class_="scroll-hint")
    return tag("div", join([hint, tag("div", table, class_="table-wrap")]), class_="table-box")


def more_note(shown: int, total: int, noun: str) -> Markup:
    if total <= shown:
        return Markup("")
    return tag(
        "p",
        f"Showing the first {shown} of {total:,} {noun}; {total - shown:,} more not shown.",
        class_="more",
    )


def placeholder(sentence: Markup) -> Markup:
    return tag("div", tag("p", sentence), class_="placeholder")


def section(anchor: str, title: str, intro: object, *body: object) -> Markup:
    parts: list[object] = [tag("h2", title)]
    if intro:
        parts.append(tag("p", intro, class_="section-intro"))
    parts.extend(body)
    return tag("section", join(parts), id=anchor)


def card(*body: object, title: str | None = None) -> Markup:
    parts: list[object] = [tag("h3", title)] if title else []
    parts.extend(body)
    return tag("div", join(parts), class_="card")


class Charts:
    """Collects the figures of one page, each under a fixed div id, so the output has no random ids."""

    def __init__(self) -> None:
        self.figures: dict[str, Figure] = {}

    def place(self, name: str, figure: Figure, label: str) -> Markup:
        div_id = f"zumik-chart-{name}"
        self.figures[div_id] = figure
        # Plotly's responsive mode sizes the plot to its div after a resize (printing is one), so the div
        # carries the figure's height; without it the plot collapses onto the content below.
        height = int(figure["layout"].get("height") or 360)
        return tag(
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


def _figure_json(figure: Figure) -> str:
    """The figure as plotly's own JSON encoder writes it, byte for byte (it escapes "/" as well)."""
    text = json.dumps(figure, separators=(",", ":"))
    if "NaN" in text or "Infinity" in text:
        # JSON has no NaN or Infinity; plotly writes null, which plotly.js draws as a gap.
        text = json.dumps(json.loads(text, parse_constant=lambda _: None), separators=(",", ":"))
    return text.replace("/", "\\u002f")


def _script_safe(json_text: str) -> str:
    """JSON that cannot close its script element: < > & only occur inside JSON strings, where \\u escapes mean
    the same characters."""
    return json_text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")

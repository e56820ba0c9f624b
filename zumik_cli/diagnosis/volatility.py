"""Volatile spans: the dates, times, ids and counters that change on every call and break a cached prefix.

A span is judged two ways: by its *shape* (what it looks like) and by its *variation* (how many different
values the same place takes across the recorded requests). Shape alone never convicts when there are requests
to compare: a date that every request carries unchanged (one system prompt shared by a whole benchmark) is
stable, not volatile. Only a single request body, with nothing to compare, is judged on shape alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import duckdb

_MONTHS = (
    "Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:tember)?|Oct(?:ober)?"
    "|Nov(?:ember)?|Dec(?:ember)?"
)

# Most specific first: the first shape that covers a span names it.
SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("uuid", re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")),
    (
        "datetime",
        re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2}|\s?[A-Z]{2,4})?"),
    ),
    (
        "date",
        re.compile(
            rf"\b(?:\d{{4}}-\d{{2}}-\d{{2}}|\d{{1,2}}/\d{{1,2}}/\d{{2,4}}|\d{{1,2}} (?:{_MONTHS}) \d{{4}}"
            rf"|(?:{_MONTHS}) \d{{1,2}},? \d{{4}})\b"
        ),
    ),
    ("time", re.compile(r"\b\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:\s?[AaPp][Mm])?\b")),
    (
        "request_id",
        re.compile(r"\b(?:req|request|msg|run|trace|span|call|toolu|chatcmpl|resp|sess|job)[_-][A-Za-z0-9_-]{6,}\b"),
    ),
    ("epoch", re.compile(r"\b1[5-9]\d{8}(?:\d{3})?\b")),
    ("hex_id", re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{12,}\b")),
    (
        "random_token",
        re.compile(r"\b(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[a-z])(?=[A-Za-z0-9_-]*[A-Z])[A-Za-z0-9_-]{16,}\b"),
    ),
)
_COUNTER = re.compile(r"\d+")
_WORD = re.compile(r"[A-Za-z0-9_:.\-/+]")
MASK = "\u2407"  # a character no prompt uses: stands for a masked volatile span in a template
CONTEXT_CHARS = 40
MOVABLE_LINE_CHARS = 200
MIN_VARIANTS = 3  # a span with no volatile shape must take this many values to count as volatile


@dataclass(frozen=True)
class Match:
    start: int
    end: int
    shape: str


@dataclass(frozen=True)
class SpanDiff:
    """Where two texts differ: ``old[start:old_end]`` became ``new[start:new_end]`` (same prefix before)."""

    start: int
    old_end: int
    new_end: int


@dataclass(frozen=True)
class Volatility:
    """The verdict on one span: its shape, how many values it takes across requests, and why."""

    volatile: bool
    shape: str | None
    values: int | None
    requests: int | None
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "volatile": self.volatile,
            "shape": self.shape,
            "values": self.values,
            "requests": self.requests,
            "reasons": list(self.reasons),
        }


def find_shapes(text: str) -> list[Match]:
    """Every volatile-shaped span in the text, leftmost first, none overlapping."""
    taken: list[Match] = []
    for shape, pattern in SHAPES:
        for m in pattern.finditer(text):
            if not any(m.start() < t.end and t.start < m.end() for t in taken):
                taken.append(Match(m.start(), m.end(), shape))
    return sorted(taken, key=lambda t: t.start)


def mask(text: str, matches: Iterable[Match] | None = None) -> str:
    """The text with its volatile-shaped spans replaced by one mark: equal templates differ only there."""
    out, last = [], 0
    for m in find_shapes(text) if matches is None else matches:
        out.append(text[last : m.start])
        out.append(MASK)
        last = m.end
    out.append(text[last:])
    return "".join(out)


def diff_span(old: str, new: str) -> SpanDiff:
    """The differing middle of two texts, widened to whole words so a changed digit shows its whole date."""
    n = min(len(old), len(new))
    start = next((i for i in range(n) if old[i] != new[i]), n)
    suffix = 0
    while suffix < n - start and old[-1 - suffix] == new[-1 - suffix]:
        suffix += 1
    old_end, new_end = len(old) - suffix, len(new) - suffix
    while start > 0 and _WORD.match(old[start - 1]) and _WORD.match(new[start - 1]):
        start -= 1
    while old_end < len(old) and new_end < len(new) and _WORD.match(old[old_end]) and _WORD.match(new[new_end]):
        old_end, new_end = old_end + 1, new_end + 1
    return SpanDiff(start, old_end, new_end)


def shape_of(old: str, new: str, diff: SpanDiff) -> tuple[str | None, tuple[int, int], tuple[int, int]]:
    """The shape covering the differing span, and the spans on both sides widened to that shape's matches."""
    old_span, new_span = (diff.start, diff.old_end), (diff.start, diff.new_end)
    old_hit = _covering(find_shapes(old), *old_span)
    new_hit = _covering(find_shapes(new), *new_span)
    hit = new_hit or old_hit  # the new text's shape names the span when the two disagree
    if hit is not None:
        shape = hit.shape
        widened_old = (old_hit.start, old_hit.end) if old_hit else old_span
        widened_new = (new_hit.start, new_hit.end) if new_hit else new_span
        return shape, widened_old, widened_new
    if _COUNTER.fullmatch(old[slice(*old_span)]) and _COUNTER.fullmatch(new[slice(*new_span)]):
        return "counter", old_span, new_span
    return None, old_span, new_span


def _covering(matches: list[Match], start: int, end: int) -> Match | None:
    """The volatile-shaped match that holds the whole span, if there is one."""
    return next((m for m in matches if m.start <= start and end <= m.end), None)


def variants(
    con: duckdb.DuckDBPyConnection, kind: str, before: str, after: str, multiline: bool = False
) -> tuple[int, int]:
    """How many distinct values sit between the two contexts in blocks of this kind, and in how many requests.

    A span on one line is compared only with values on one line: text between the same anchors that spans lines
    is another edit (an inserted line), not another value of this span.
    """
    _head_table(con)
    rows = con.execute(
        "SELECT text, requests FROM vol_head WHERE kind = ? AND contains(text, ?) AND contains(text, ?)",
        [kind, before, after],
    ).fetchall()
    values: set[str] = set()
    requests = 0
    for text, count in rows:
        i = text.find(before)
        j = text.find(after, i + len(before)) if i >= 0 else -1
        value = text[i + len(before) : j] if i >= 0 and j >= 0 else None
        if value is not None and (multiline or "\n" not in value):
            values.add(value)
            requests += int(count)
    return len(values), requests


def judge(shape: str | None, values: int | None, requests: int | None) -> Volatility:
    """Shape plus variation: a volatile shape that takes two values, or any span that takes three or more.

    With nothing to compare (``values`` is None: a single request body), a volatile shape is suspicious
    enough to flag.
    """
    reasons = []
    if shape:
        reasons.append(f"looks like a {shape.replace('_', ' ')}")
    if values is None:
        return Volatility(bool(shape), shape, None, None, tuple(reasons))
    if values > 1:
        reasons.append(f"takes {values} values across {requests} requests")
    else:
        reasons.append(f"the same in all {requests} requests that carry it")
    volatile = (bool(shape) and values >= 2) or values >= MIN_VARIANTS
    return Volatility(volatile, shape, values, requests, tuple(reasons))


def contexts(text: str, start: int, end: int) -> tuple[str, str]:
    """The text just before and after a span: the anchors that find the same place in other requests."""
    return text[max(0, start - CONTEXT_CHARS) : start], text[end : end + CONTEXT_CHARS]


def movable(text: str, start: int, end: int) -> tuple[int, int]:
    """What to move out of a stable block: the span's whole line when that line is short, else the span."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end + 1
    if line_end - line_start <= MOVABLE_LINE_CHARS:
        return line_start, line_end
    return start, end


@dataclass(frozen=True)
class VolatileBlock:
    """A head block (system or tool) whose text varies across requests only in volatile-shaped spans."""

    block_id: int
    family: str
    kind: str
    name: str
    text: str
    matches: tuple[Match, ...]  # the spans that vary within its template group
    template_values: int  # distinct texts sharing its template
    requests: int  # requests that carry one of those texts

    def spans(self) -> list[tuple[int, int]]:
        """The movable spans (whole short lines), merged, leftmost first."""
        out: list[tuple[int, int]] = []
        for m in self.matches:
            start, end = movable(self.text, m.start, m.end)
            if out and start < out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], end))
            else:
                out.append((start, end))
        return out


HEAD_BLOCKS_SQL = """
CREATE TEMP TABLE IF NOT EXISTS vol_head AS
SELECT b.block_id, b.family, b.kind, b.name, b.text, count(DISTINCT rb.rid) AS requests
FROM blocks b JOIN request_blocks rb USING (block_id)
WHERE b.kind IN ('system', 'tool') AND b.text IS NOT NULL
GROUP BY ALL
"""


def _head_table(con: duckdb.DuckDBPyConnection) -> None:
    """``vol_head``: each distinct system or tool block once, with how many requests carry it (built once)."""
    con.execute(HEAD_BLOCKS_SQL)


def volatile_head_blocks(con: duckdb.DuckDBPyConnection) -> dict[int, VolatileBlock]:
    """Head blocks whose template (volatile shapes masked) is shared with other texts: the masked spans that
    differ between them vary across requests, so they are volatile by shape and by variation both."""
    groups: dict[tuple[str, str, str, str], list[tuple[int, str, str, list[Match], int]]] = {}
    _head_table(con)
    for block_id, family, kind, name, text, requests in con.execute("SELECT * FROM vol_head").fetchall():
        matches = find_shapes(text)
        if matches:
            key = (family, kind, name or "", mask(text, matches))
            groups.setdefault(key, []).append((block_id, family, kind, matches, int(requests)))
    texts = dict(con.execute("SELECT block_id, text FROM vol_head").fetchall())
    out: dict[int, VolatileBlock] = {}
    for (_, _, name, _), members in groups.items():
        if len(members) < 2:
            continue
        values = [[texts[m[0]][x.start : x.end] for x in m[3]] for m in members]
        varying = [i for i in range(len(values[0])) if len({v[i] for v in values}) > 1]
        total = sum(m[4] for m in members)
        for (block_id, family, kind, matches, _), _ in zip(members, values, strict=True):
            out[block_id] = VolatileBlock(
                block_id,
                family,
                kind,
                name,
                texts[block_id],
                tuple(matches[i] for i in varying),
                len(members),
                total,
            )
    return out

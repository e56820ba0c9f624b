"""Session divergence: where each request stopped extending the one before it on its branch, and why.

Within a session, a request's *parent* is the latest earlier request whose prompt (or prompt plus reply) it shares
the most leading blocks with; a plain continuation has the previous call as parent. A fork (the user rewinds to an
earlier reply and goes another way, keeping nothing that came after it) has the call whose reply it extends.

A *break* is a request that could not reuse what its parent's cache held: the model or target changed, part of the
parent's prompt went idle beyond its lifetime, or the content departed inside the parent's prompt, judged in that
order (the waterfall's order). Which tokens had expired is read from the waterfall's own per-request result (each
block lives as long as the breakpoints that cover it), so a session break and the waterfall's expired cut cannot
disagree; ``session_break`` is the same classifier for one request, which ``explain`` shows. Matching is set-based
over chain ids in DuckDB; token ids are compared only inside the first block that differs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np

from zumik_cli.analysis.waterfall import Waterfall, WaterfallOptions, common_prefix_length, compute_waterfall
from zumik_cli.core.redact import redact
from zumik_cli.dataset.schema import SESSION_KEY
from zumik_cli.dataset.store import Dataset
from zumik_cli.diagnosis import volatility

CAUSES = {
    "idle_gap": "idle gap beyond the TTL",
    "model_changed": "model or target changed",
    "system_changed": "system instructions changed",
    "tools_changed": "tool definitions changed",
    "history_truncated": "history truncated or compacted",
    "history_rewritten": "earlier message or tool result rewritten",
    "content_reordered": "content reordered",
    "image_changed": "an image changed (another screenshot or picture in its place)",
    "other": "other",
}
SPAN_CHARS = 160

DEFINITIONS = {
    "parent": "The latest earlier request of the same session sharing the most leading blocks with this one, or, on "
    "a fork, the one whose reply it extends; the previous request when none shares anything.",
    "break": "A request that could not reuse what its parent's cache held, judged in the waterfall's order: another "
    "model or target, then tokens idle beyond their lifetime (the waterfall's expired cut: a block lives an hour up "
    "to the parent's last 1-hour breakpoint, the pack's TTL past it), then content that departs inside the parent's "
    "prompt.",
    "token": "Where reuse broke, counted with zumik's tokenizer: 0 on a model change, the first expired token on an "
    "idle gap (0 when all had expired), else the first token where the request departs from its parent's prompt "
    "plus reply.",
    "lost_tokens": "Of the tokens the parent's prompt could have served (the shorter of the two prompts), those "
    "this request did not get from it, per cause; in the waterfall's units: zumik's count, scaled to the reported "
    "prompt where a proxy tokenizer counted it.",
}

# A session is a tenant's: two tenants that use the same session id have two sessions (``skey``), never one.
REQUESTS_SQL = """
CREATE OR REPLACE TEMP TABLE dv_req AS
SELECT rid, trace_id, session_id, tenant, {SESSION_KEY} AS skey, timestamp AS ts, provider, engine, model,
       model_revision, kv_compatibility_key AS kvc, materialization_family AS family, prompt_tokens_counted AS counted,
       n_blocks, output_chain, tokenizer_exact,
       row_number() OVER (PARTITION BY tenant, session_id ORDER BY timestamp NULLS LAST, seq) AS k
FROM requests
WHERE session_id <> '' AND prompt_tokens_counted IS NOT NULL AND block_granularity = 0
  AND session_id = coalesce(?, session_id)
"""

PARENTS_SQL = """
CREATE OR REPLACE TEMP TABLE dv_units AS
SELECT b.rid, b.pos, b.block_id, b.chain, b.end_token, r.skey, r.k
FROM request_blocks b JOIN dv_req r USING (rid);

-- every chain a request holds: its prompt's, and the one after its reply (prompt plus reply)
CREATE OR REPLACE TEMP TABLE dv_seen AS
SELECT skey, chain, k, rid, false AS reply FROM dv_units
UNION ALL
SELECT skey, output_chain, k, rid, true FROM dv_req WHERE output_chain IS NOT NULL;

-- chain ids are prefix-closed: the deepest block an earlier request of the session also held is the shared length
CREATE OR REPLACE TEMP TABLE dv_shared AS
SELECT u.rid, max(u.pos) + 1 AS n_shared
FROM dv_units u
JOIN (SELECT skey, chain, min(k) AS first_k FROM dv_seen GROUP BY ALL) f USING (skey, chain)
WHERE f.first_k < u.k
GROUP BY u.rid;

-- the latest earlier request holding the deepest shared chain (``latest``), and the latest whose reply this one
-- extends there (``extended``). They differ on a fork (the user rewound to that reply and went another way) and on
-- an edit right after a reply; only an edit keeps some of the latest one's later blocks.
CREATE OR REPLACE TEMP TABLE dv_parent AS
WITH deepest AS (
    SELECT s.rid, s.n_shared, u.skey, u.k, u.chain
    FROM dv_shared s JOIN dv_units u ON u.rid = s.rid AND u.pos = s.n_shared - 1
), holders AS (
    SELECT d.rid, d.n_shared, arg_max(e.rid, e.k) AS latest,
           arg_max(e.rid, e.k) FILTER (WHERE e.reply) AS extended
    FROM deepest d JOIN dv_seen e ON e.skey = d.skey AND e.chain = d.chain AND e.k < d.k
    GROUP BY d.rid, d.n_shared
), chosen AS (
    SELECT h.rid, h.n_shared, h.extended,
           CASE WHEN h.extended IS NULL OR h.extended = h.latest THEN coalesce(h.extended, h.latest)
                WHEN EXISTS (SELECT 1 FROM dv_units mine JOIN dv_units theirs USING (block_id)
                             WHERE mine.rid = h.rid AND mine.pos >= h.n_shared
                               AND theirs.rid = h.latest AND theirs.pos >= h.n_shared) THEN h.latest
                ELSE h.extended END AS parent
    FROM holders h
), previous AS (
    SELECT rid, lag(rid) OVER (PARTITION BY skey ORDER BY k) AS prev FROM dv_req
)
SELECT p.rid, coalesce(c.parent, p.prev) AS parent, p.prev, coalesce(c.parent = c.extended, false) AS extends_reply,
       coalesce(c.n_shared, 0) AS n_shared
FROM previous p
LEFT JOIN chosen c ON c.rid = p.rid
WHERE coalesce(c.parent, p.prev) IS NOT NULL;
"""

PAIRS_SQL = """
SELECT r.rid, r.session_id, r.tenant, r.k, r.trace_id, q.rid AS parent_rid, q.k AS parent_k, q.trace_id AS parent_trace,
       p.n_shared, p.extends_reply, p.parent <> p.prev AS branched,
       r.ts - q.ts AS gap, r.counted, q.counted AS parent_counted,
       w.same_key_counted AS same_key, w.warm_counted AS warm, w.scale, w.total,
       pw.ttl AS parent_ttl, pw.ttl_long AS parent_ttl_long, pw.long_until AS parent_long_until,
       r.kvc <> q.kvc AS target_changed, r.family <> q.family AS family_changed,
       concat_ws(' ', r.provider, r.model, nullif(r.model_revision, '')) AS target,
       concat_ws(' ', q.provider, q.model, nullif(q.model_revision, '')) AS parent_target,
       coalesce(ub.end_token, 0) AS shared_block_tokens,
       ra.block_id AS r_block, qa.block_id AS q_block,
       r.tokenizer_exact AND q.tokenizer_exact AS exact
FROM dv_parent p
JOIN dv_req r ON r.rid = p.rid
JOIN dv_req q ON q.rid = p.parent AND q.skey = r.skey
JOIN dv_waterfall w ON w.rid = r.rid
JOIN dv_waterfall pw ON pw.rid = q.rid
LEFT JOIN dv_units ub ON ub.rid = r.rid AND ub.pos = p.n_shared - 1
LEFT JOIN dv_units ra ON ra.rid = r.rid AND ra.pos = p.n_shared
LEFT JOIN dv_units qa ON qa.rid = q.rid AND qa.pos = p.n_shared AND NOT p.extends_reply
"""

SUSPECTS = """
WHERE (ra.block_id IS NOT NULL AND qa.block_id IS NOT NULL) OR r.kvc <> q.kvc OR w.warm_counted < w.same_key_counted
ORDER BY r.tenant, r.session_id, r.k
"""

# what divergence reads of the waterfall's per-request result: same key and warm in zumik's count, the scale to the
# waterfall's units, and the lifetimes each request gives the blocks it uses
WATERFALL_COLUMNS = ("rid", "same_key_counted", "warm_counted", "scale", "total", "ttl", "ttl_long", "long_until")

# a block with no text (the estimated prefix a Claude Code log leaves out) stands for the system prompt and tools
BLOCK_LISTS_SQL = """
SELECT rb.rid, list(rb.block_id ORDER BY rb.pos), list(coalesce(b.kind, 'system') ORDER BY rb.pos),
       list(coalesce(b.role, 'system') ORDER BY rb.pos), list(coalesce(b.name, '') ORDER BY rb.pos),
       list(rb.tokens ORDER BY rb.pos)
FROM request_blocks rb LEFT JOIN blocks b USING (block_id)
WHERE rb.rid IN (SELECT unnest(?))
GROUP BY rb.rid
"""


@dataclass(frozen=True)
class Break:
    """One request that lost what its parent's cache held; ``index`` counts from 1 within the session."""

    session_id: str
    trace_id: str
    index: int
    parent_trace_id: str
    parent_index: int
    cause: str
    token: int
    diverges_at: int | None
    lost_tokens: int
    lost_by_cause: dict[str, int]
    gap_seconds: float | None
    detail: dict[str, Any] = field(default_factory=dict)
    tenant: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "session_id": self.session_id,
            "trace_id": self.trace_id,
            "index": self.index,
            "parent_trace_id": self.parent_trace_id,
            "parent_index": self.parent_index,
            "cause": self.cause,
            "label": CAUSES[self.cause],
            "token": self.token,
            "diverges_at": self.diverges_at,
            "lost_tokens": self.lost_tokens,
            "lost_by_cause": self.lost_by_cause,
            "gap_seconds": self.gap_seconds,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Divergence:
    """Breaks, per-session and total losses by cause, and the volatile spans found in system and tool text."""

    breaks: list[Break]
    sessions: list[dict[str, Any]]
    totals: dict[str, Any]
    volatile_spans: list[dict[str, Any]]
    evidence: str
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "totals": self.totals,
            "sessions": self.sessions,
            "breaks": [b.to_json() for b in self.breaks],
            "volatile_spans": self.volatile_spans,
            "evidence": self.evidence,
            "notes": self.notes,
            "definitions": DEFINITIONS,
        }


@dataclass(frozen=True)
class _Blocks:
    ids: list[int]
    kinds: list[str]
    roles: list[str]
    names: list[str]
    tokens: list[int]

    def rewinds(self, theirs: _Blocks, n: int) -> bool:
        """A new last user message where the parent had another one after shared messages: the user went back and
        asked something else (a branch whose branch point the trace did not record), which re-sends nothing."""
        asked = all(b.kinds[n] == "text" and b.roles[n] == "user" for b in (self, theirs))
        after_messages = any(k not in ("system", "tool") for k in self.kinds[:n])
        return asked and after_messages and n == len(self.ids) - 1


def compute_divergence(
    dataset: Dataset,
    session: str | None = None,
    *,
    rules: str | None = None,
    rules_files: tuple[str, ...] = (),
    waterfall: Waterfall | None = None,
) -> Divergence:
    """Find and classify every break in the dataset's sessions (or in one session).

    Expiry is the waterfall's: ``waterfall`` when given (its options then rule), else one computed under ``rules``.
    """
    con = dataset.connect()
    breaks = _breaks(con, session, waterfall or _waterfall(dataset, rules, rules_files))
    stats = con.execute("""
        SELECT r.tenant, r.session_id, count(*) AS requests,
               count(p.rid) FILTER (WHERE p.parent <> p.prev) AS branches, bool_and(r.tokenizer_exact) AS exact
        FROM dv_req r LEFT JOIN dv_parent p USING (rid) GROUP BY ALL ORDER BY 1, 2
    """).fetchall()
    compared = con.execute("SELECT count(*) FROM dv_parent").fetchone()
    skipped = con.execute(
        "SELECT count(*) FILTER (WHERE session_id = ''), count(*) FILTER (WHERE block_granularity > 0 "
        "OR prompt_tokens_counted IS NULL) FROM requests"
    ).fetchone()
    spans = _volatile_spans(con, breaks)
    exact = all(row[4] for row in stats)
    return Divergence(
        breaks=breaks,
        sessions=_sessions(stats, breaks),
        totals=_totals(breaks, int(compared[0]) if compared else 0),
        volatile_spans=spans,
        evidence="simulated" if exact else "estimated",
        notes=_notes(skipped),
    )


def session_break(dataset: Dataset, trace_id: str, waterfall: Waterfall) -> Break | None:
    """The break of one request, found and classified exactly as ``compute_divergence`` does; None without one."""
    con = dataset.connect()
    found = con.execute("SELECT session_id FROM requests WHERE trace_id = ?", [trace_id]).fetchone()
    # the session id selects every tenant's session of that name; each is still its own (``skey``)
    if found is None or not found[0]:
        return None
    return next((b for b in _breaks(con, found[0], waterfall) if b.trace_id == trace_id), None)


def _waterfall(dataset: Dataset, rules: str | None, rules_files: tuple[str, ...]) -> Waterfall:
    return compute_waterfall(
        dataset, WaterfallOptions(rules=rules, rules_files=rules_files, curves=False, capacities=())
    )


def _breaks(con: duckdb.DuckDBPyConnection, session: str | None, waterfall: Waterfall) -> list[Break]:
    """Parents of the session's requests (or of every session's), then a classification of each suspect pair."""
    con.execute(REQUESTS_SQL.format(SESSION_KEY=SESSION_KEY), [session])
    con.execute(PARENTS_SQL)
    waterfall.per_request.register(con, "dv_waterfall", WATERFALL_COLUMNS)
    cursor = con.execute(PAIRS_SQL + SUSPECTS)
    names = [d[0] for d in cursor.description]
    suspects = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    lists = _block_lists(con, suspects)
    tokens = _token_ids(con, suspects)
    return [b for b in (_classify(con, s, lists, tokens) for s in suspects) if b is not None]


def _block_lists(con: duckdb.DuckDBPyConnection, suspects: list[dict[str, Any]]) -> dict[int, _Blocks]:
    rids = sorted({s["rid"] for s in suspects} | {s["parent_rid"] for s in suspects})
    if not rids:
        return {}
    rows = con.execute(BLOCK_LISTS_SQL, [rids]).fetchall()
    return {
        rid: _Blocks(ids, kinds, roles, [n or "" for n in names], sizes)
        for rid, ids, kinds, roles, names, sizes in rows
    }


def _token_ids(con: duckdb.DuckDBPyConnection, suspects: list[dict[str, Any]]) -> dict[int, np.ndarray]:
    """Token ids of the first differing blocks only: the one place where tokens are compared."""
    wanted = sorted({s[k] for s in suspects for k in ("r_block", "q_block") if s[k] is not None})
    if not wanted:
        return {}
    rows = con.execute("SELECT block_id, token_ids FROM tokens WHERE block_id IN (SELECT unnest(?))", [wanted])
    return {bid: np.asarray(ids, dtype=np.int64) for bid, ids in rows.fetchall()}


def _classify(
    con: duckdb.DuckDBPyConnection,
    s: dict[str, Any],
    lists: dict[int, _Blocks],
    tokens: dict[int, np.ndarray],
) -> Break | None:
    reusable = min(s["counted"], s["parent_counted"])
    content = s["r_block"] is not None and s["q_block"] is not None and not s["family_changed"]
    if content and lists[s["rid"]].rewinds(lists[s["parent_rid"]], s["n_shared"]):
        content = False  # a branch: it lost nothing it would have re-sent
    if content:
        empty = np.zeros(0, dtype=np.int64)
        lcp = common_prefix_length(tokens.get(s["r_block"], empty), tokens.get(s["q_block"], empty))
        diverges_at: int | None = s["shared_block_tokens"] + lcp
    else:
        diverges_at = None
    # positions in the parent's prompt, in zumik's count: [0, cut) kept, [cut, kept) lost to another model or to
    # expiry, [kept, reusable) lost to the content change. One precedence, the waterfall's: another model or target
    # shares nothing with the parent, whatever the gap; else the tokens the waterfall found expired.
    kept = reusable if s["family_changed"] else min(diverges_at if diverges_at is not None else reusable, reusable)
    cut = kept
    lost: dict[str, int] = {}
    detail: dict[str, Any] = {}
    to_units = _units(s["scale"], s["total"])
    if s["target_changed"]:
        cut = 0
        detail["target"] = {"from": s["parent_target"], "to": s["target"]}
        if s["family_changed"]:
            detail["note"] = "another tokenizer or prompt format: nothing could be shared"
        lost["model_changed"] = to_units(kept)
    else:
        held = min(s["same_key"] or 0, kept)
        warm = min(s["warm"] or 0, held)
        if warm < held:
            cut = warm
            detail["ttl_seconds"] = _lifetime(s, warm)
            lost["idle_gap"] = to_units(held) - to_units(warm)
    if content and reusable > kept:
        cause, extra = _content_cause(con, lists[s["rid"]], lists[s["parent_rid"]], s["n_shared"])
        lost[cause] = lost.get(cause, 0) + to_units(reusable) - to_units(kept)
        detail.update(extra)
    lost = {k: int(v) for k, v in lost.items() if v > 0}
    primary = next(iter(lost), None)  # the first cause in the order above that lost anything
    if primary is None:
        return None
    if len(lost) > 1:
        detail["also"] = sorted(c for c in lost if c != primary)
    return Break(
        tenant=s["tenant"] or "",
        session_id=s["session_id"],
        trace_id=s["trace_id"],
        index=int(s["k"]),
        parent_trace_id=s["parent_trace"],
        parent_index=int(s["parent_k"]),
        cause=primary,
        token=int(cut) if primary in ("idle_gap", "model_changed") else int(diverges_at or 0),
        diverges_at=diverges_at,
        lost_tokens=sum(lost.values()),
        lost_by_cause=lost,
        gap_seconds=round(float(s["gap"]), 3) if s["gap"] is not None else None,
        detail=detail,
    )


def _units(scale: float | None, total: int | None) -> Callable[[int], int]:
    """A position in zumik's count as the waterfall states it: scaled to the reported prompt, rounded, capped."""

    def convert(tokens: int) -> int:
        scaled = math.floor(tokens * (scale or 1.0) + 0.5)
        return min(scaled, total) if total is not None else scaled

    return convert


def _lifetime(s: dict[str, Any], at: int) -> float | None:
    """How long the parent kept the block that starts at token ``at``: up to its last 1-hour breakpoint an hour."""
    long_until = s["parent_long_until"]
    return s["parent_ttl_long"] if long_until is not None and at < long_until else s["parent_ttl"]


def _content_cause(
    con: duckdb.DuckDBPyConnection, mine: _Blocks, theirs: _Blocks, n: int
) -> tuple[str, dict[str, Any]]:
    """Name what departed at block ``n``: system or tools (by which head section differs), else the history."""
    kinds = {mine.kinds[n], theirs.kinds[n]}
    head = {"system", "tool"}
    if kinds & head:
        system_changed = _section(mine, "system") != _section(theirs, "system")
        tools_changed = _section(mine, "tool") != _section(theirs, "tool")
        if system_changed and ("system" in kinds or not tools_changed):
            extra = {"system": _system_detail(con, mine, theirs)}
            if tools_changed:
                extra["tools"] = _tools_detail(con, mine, theirs)
            return "system_changed", extra
        if tools_changed:
            return "tools_changed", {"tools": _tools_detail(con, mine, theirs)}
    return _history_cause(mine, theirs, n)


def _section(blocks: _Blocks, kind: str) -> list[int]:
    return [b for b, k in zip(blocks.ids, blocks.kinds, strict=True) if k == kind]


def _history_cause(mine: _Blocks, theirs: _Blocks, n: int) -> tuple[str, dict[str, Any]]:
    """Messages: dropped (truncated), summarised (compacted), swapped (reordered) or replaced (rewritten)."""
    r_block, q_block = mine.ids[n], theirs.ids[n]
    r_rest, q_rest = mine.ids[n + 1 :], theirs.ids[n + 1 :]
    where = {"kind": theirs.kinds[n], "block": n}
    if r_block in q_rest and q_block in r_rest:
        return "content_reordered", {"history": where}
    if r_block in q_rest:
        dropped = q_rest.index(r_block) + 1
        return "history_truncated", {"history": {**where, "change": "truncated", "blocks_dropped": dropped}}
    if q_block in r_rest:
        return "history_rewritten", {"history": {**where, "change": "inserted"}}
    if mine.kinds[n] == theirs.kinds[n] == "image":
        return "image_changed", {"history": {**where, "change": "image replaced"}}
    if not q_rest or set(r_rest) & set(q_rest):
        return "history_rewritten", {"history": {**where, "change": "rewritten"}}
    if sum(mine.tokens[n:]) < sum(theirs.tokens[n:]):
        return "history_truncated", {"history": {**where, "change": "compacted", "blocks_replaced": len(q_rest) + 1}}
    return "other", {"history": where}


def _tools_detail(con: duckdb.DuckDBPyConnection, mine: _Blocks, theirs: _Blocks) -> dict[str, Any]:
    new = [(n, b) for b, k, n in zip(mine.ids, mine.kinds, mine.names, strict=True) if k == "tool"]
    old = [(n, b) for b, k, n in zip(theirs.ids, theirs.kinds, theirs.names, strict=True) if k == "tool"]
    new_names, old_names = dict(new), dict(old)
    added = [n for n, _ in new if n not in old_names]
    removed = [n for n, _ in old if n not in new_names]
    edited = [n for n, b in new if n in old_names and old_names[n] != b]
    common_new = [n for n, _ in new if n in old_names]
    common_old = [n for n, _ in old if n in new_names]
    reordered = common_new != common_old
    kinds = [k for k, v in (("added", added), ("removed", removed), ("edited", edited), ("reordered", reordered)) if v]
    out: dict[str, Any] = {
        "change": kinds[0] if len(kinds) == 1 else "mixed",
        "added": added,
        "removed": removed,
        "edited": edited,
        "reordered": reordered,
    }
    if edited:
        out["span"] = _span(con, "tool", old_names[edited[0]], new_names[edited[0]], f"tool {edited[0]}")
    return out


def _system_detail(con: duckdb.DuckDBPyConnection, mine: _Blocks, theirs: _Blocks) -> dict[str, Any]:
    new, old = _section(mine, "system"), _section(theirs, "system")
    i = next((i for i in range(min(len(new), len(old))) if new[i] != old[i]), min(len(new), len(old)))
    change = "edited" if i < len(new) and i < len(old) else ("added" if len(new) > len(old) else "removed")
    out: dict[str, Any] = {"change": change, "part": i}
    if change == "edited":
        out["span"] = _span(con, "system", old[i], new[i], "system")
    return out


def _span(con: duckdb.DuckDBPyConnection, kind: str, old_block: int, new_block: int, where: str) -> dict[str, Any]:
    """The differing span of an edited block, and whether it looks volatile (shape and variation)."""
    rows = con.execute("SELECT block_id, text FROM blocks WHERE block_id IN (?, ?)", [old_block, new_block]).fetchall()
    texts = dict(rows)
    old, new = texts.get(old_block) or "", texts.get(new_block) or ""
    diff = volatility.diff_span(old, new)
    shape, old_span, new_span = volatility.shape_of(old, new, diff)
    before, after = volatility.contexts(new, *new_span)
    multiline = "\n" in old[slice(*old_span)] or "\n" in new[slice(*new_span)]
    values, requests = volatility.variants(con, kind, before, after, multiline) if before or after else (None, None)
    verdict = volatility.judge(shape, values, requests)
    return {
        "where": where,
        "old_block": old_block,
        "new_block": new_block,
        "offset": new_span[0],
        # shown text is redacted in the whole block, so that no cut keeps part of a credential
        "old": _cut(redact(old, *old_span)),
        "new": _cut(redact(new, *new_span)),
        "before": redact(new, new_span[0] - len(before), new_span[0]),
        "after": redact(new, new_span[1], new_span[1] + len(after)),
        **verdict.to_json(),
    }


def _cut(text: str) -> str:
    return text if len(text) <= SPAN_CHARS else text[:SPAN_CHARS] + "..."


def _volatile_spans(con: duckdb.DuckDBPyConnection, breaks: list[Break]) -> list[dict[str, Any]]:
    """Volatile spans seen in breaks, then those the head scan finds varying across requests, one per place."""
    spans: dict[tuple[str, str], dict[str, Any]] = {}
    for b in breaks:
        for section in ("system", "tools"):
            span = b.detail.get(section, {}).get("span")
            if span and span["volatile"]:
                entry = spans.setdefault(
                    (span["where"], span["before"]),
                    {"where": span["where"], "shape": span["shape"], "example": span["new"], "breaks": 0,
                     "values": span["values"], "requests": span["requests"], "reasons": span["reasons"]},
                )  # fmt: skip
                entry["breaks"] += 1
    for block in volatility.volatile_head_blocks(con).values():
        for m in block.matches:
            before, _ = volatility.contexts(block.text, m.start, m.end)
            before = redact(block.text, m.start - len(before), m.start)  # as a break's span shows it
            where = "system" if block.kind == "system" else f"tool {block.name}"
            spans.setdefault(
                (where, before),
                {
                    "where": where,
                    "shape": m.shape,
                    "example": redact(block.text, m.start, m.end),
                    "breaks": 0,
                    "values": block.template_values,
                    "requests": block.requests,
                    "reasons": [
                        f"looks like a {m.shape.replace('_', ' ')}",
                        f"takes {block.template_values} values across {block.requests} requests",
                    ],
                },
            )
    return sorted(spans.values(), key=lambda s: (-s["breaks"], -(s["requests"] or 0), s["where"]))


def _sessions(stats: list[tuple[Any, ...]], breaks: list[Break]) -> list[dict[str, Any]]:
    by_session: dict[tuple[str, str], list[Break]] = {}
    for b in breaks:
        by_session.setdefault((b.tenant, b.session_id), []).append(b)
    out = []
    for tenant, session_id, requests, branches, _ in stats:
        mine = by_session.get((tenant or "", session_id), [])
        lost: dict[str, int] = {}
        for b in mine:
            for cause, tokens in b.lost_by_cause.items():
                lost[cause] = lost.get(cause, 0) + tokens
        out.append(
            {
                "tenant": tenant or "",
                "session_id": session_id,
                "requests": int(requests),
                "branches": int(branches),
                "breaks": len(mine),
                "lost_tokens": sum(lost.values()),
                "lost_by_cause": lost,
            }
        )
    return sorted(out, key=lambda s: (-s["lost_tokens"], s["session_id"], s["tenant"]))


def _totals(breaks: list[Break], compared: int) -> dict[str, Any]:
    by_cause: dict[str, dict[str, int]] = {}
    for b in breaks:
        for cause, tokens in b.lost_by_cause.items():
            entry = by_cause.setdefault(cause, {"breaks": 0, "tokens": 0})
            entry["breaks"] += 1
            entry["tokens"] += tokens
    return {
        "requests_compared": compared,
        "breaks": len(breaks),
        "lost_tokens": sum(e["tokens"] for e in by_cause.values()),
        "by_cause": [
            {"cause": cause, "label": CAUSES[cause], **entry}
            for cause, entry in sorted(by_cause.items(), key=lambda kv: -kv[1]["tokens"])
        ],
    }


def _notes(skipped: tuple[Any, ...] | None) -> list[str]:
    no_session, no_content = (int(x or 0) for x in (skipped or (0, 0)))
    notes = []
    if no_session:
        notes.append(f"{no_session} requests have no session id: they have no previous request to compare with")
    if no_content:
        notes.append(f"{no_content} requests have no content (usage-only or hash-id logs): not compared")
    return notes

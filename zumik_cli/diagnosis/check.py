"""Cache-configuration checks: mistakes in how requests ask to be cached, as findings with a severity.

``fail`` is a mistake that the provider rejects or that defeats caching, shown by the recorded traffic itself
(or, for a single body, by the body alone); ``warn`` costs money or is likely to; ``info`` is advice. Checks on a
dataset are set-based SQL over the recorded requests; checks on one body read it like ingest would. A CI job runs
``zumik check`` and fails on any ``fail``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from zumik_cli.core.redact import redact
from zumik_cli.dataset.store import Dataset
from zumik_cli.diagnosis import volatility
from zumik_cli.ingest.request_body import RequestBody
from zumik_cli.rules.pack import RulesPack, load_packs, pack_for, resolve_packs
from zumik_cli.rules.targets import register_target_rules, target_rules

SEVERITIES = ("fail", "warn", "info")
EXAMPLES = 5

CHECKS = {
    "anthropic.max_breakpoints": (
        "More cache breakpoints than the provider allows",
        "Keep at most the allowed number of cache_control markers: one at the end of the tools and system, one at "
        "the end of the prompt, and at most two in between.",
    ),
    "anthropic.ttl_order": (
        "A 1-hour breakpoint after a 5-minute one",
        "Put longer TTLs first: every ttl '1h' breakpoint must come before any 5-minute one.",
    ),
    "anthropic.lookback": (
        "Earlier cache entry beyond the 20-block look-back",
        "Add a breakpoint closer to where the previous call's prompt ended, so that fewer than 20 blocks separate "
        "it from the next breakpoint.",
    ),
    "anthropic.below_minimum": (
        "Cached prefix below the model's minimum",
        "Move the breakpoint later (or drop it): a prefix shorter than the model's minimum is never cached.",
    ),
    "anthropic.volatile_before_breakpoint": (
        "Volatile content before the first breakpoint",
        "Move dates, times, ids and counters after the last breakpoint (e.g. into the last user message).",
    ),
    "openai.prompt_cache_key_missing": (
        "No prompt_cache_key",
        "Set prompt_cache_key to a stable value per session or per shared prefix, so that calls that share a prefix "
        "reach the same cache.",
    ),
    "openai.prompt_cache_key_unstable": (
        "prompt_cache_key changes within a session",
        "Derive prompt_cache_key from the session (or the shared prefix), never from the request.",
    ),
    "prefix.stable_after_changing": (
        "Stable content placed after changing content",
        "Order the prompt from most to least stable: tools and fixed instructions first, what changes per call last.",
    ),
}


@dataclass(frozen=True)
class Finding:
    """One check that fired: how often, where (example trace ids or blocks), and what it puts at risk."""

    check: str
    severity: str
    message: str
    requests: int = 0
    sessions: int = 0
    examples: list[str] = field(default_factory=list)
    tokens_at_risk: int | None = None
    basis: str = "recorded requests"

    def to_json(self) -> dict[str, Any]:
        title, fix = CHECKS[self.check]
        return {
            "check": self.check,
            "severity": self.severity,
            "title": title,
            "message": self.message,
            "fix": fix,
            "requests": self.requests,
            "sessions": self.sessions,
            "examples": self.examples,
            "tokens_at_risk": self.tokens_at_risk,
            "basis": self.basis,
        }


@dataclass(frozen=True)
class CheckReport:
    """Every finding on one target (a dataset or a request body), worst first."""

    target: str
    findings: list[Finding]
    checked: dict[str, int]
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(f.severity == "fail" for f in self.findings)

    def exit_code(self, strict: bool = False) -> int:
        """1 when a check failed (or, when strict, warned); 0 otherwise: what a CI job needs."""
        if self.failed or (strict and any(f.severity == "warn" for f in self.findings)):
            return 1
        return 0

    def to_json(self) -> dict[str, Any]:
        counts = {s: sum(1 for f in self.findings if f.severity == s) for s in SEVERITIES}
        return {
            "target": self.target,
            "status": "fail" if self.failed else "pass",
            "counts": counts,
            "checked": self.checked,
            "findings": [f.to_json() for f in self.findings],
            "notes": self.notes,
        }


def _ordered(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (SEVERITIES.index(f.severity), -(f.tokens_at_risk or 0), f.check))


# --- one request body ---------------------------------------------------------------------------------------


def check_body(body: RequestBody, rules_files: tuple[str, ...] = ()) -> CheckReport:
    """The checks a single body can support on its own; volatility is judged on shape alone."""
    packs = load_packs(rules_files)
    pack = pack_for(body.provider, "", packs)
    findings: list[Finding] = []
    kind = pack.granularity.kind
    if kind == "breakpoints":
        findings += _body_breakpoints(body, pack)
    if kind == "increments" and body.prompt_cache_key is None:
        findings.append(
            Finding(
                "openai.prompt_cache_key_missing",
                "info",
                "The body sets no prompt_cache_key: the provider routes on a hash of the prompt's start alone.",
                requests=1,
                basis="this body",
            )
        )
    findings += _body_stable_after(body)
    notes = [] if body.tokenizer_exact else [f"token counts for {body.model or 'this model'} use a proxy tokenizer"]
    return CheckReport(body.path, _ordered(findings), {"requests": 1, "blocks": len(body.blocks)}, notes)


def _body_breakpoints(body: RequestBody, pack: RulesPack) -> list[Finding]:
    out = []
    marks = body.breakpoints
    rules = target_rules(pack, body.model)
    limit, lookback, minimum = rules.max_breakpoints, rules.lookback, rules.min_tokens
    if len(marks) > limit:
        out.append(
            Finding(
                "anthropic.max_breakpoints",
                "fail",
                f"{len(marks)} breakpoints; at most {limit} are allowed and the request is rejected.",
                requests=1,
                examples=[f"block {i + 1}" for i, _ in marks],
                basis="this body",
            )
        )
    ttls = [ttl for _, ttl in marks]
    if "5m" in ttls and "1h" in ttls[ttls.index("5m") :]:
        later = next(i for i, ttl in marks[ttls.index("5m") :] if ttl == "1h")
        out.append(
            Finding(
                "anthropic.ttl_order",
                "fail",
                f"The 1-hour breakpoint on block {later + 1} comes after a 5-minute one: longer TTLs must come first.",
                requests=1,
                examples=[f"block {i + 1} ({ttl})" for i, ttl in marks],
                basis="this body",
            )
        )
    low = [(i, body.blocks[i].end_token) for i, _ in marks if body.blocks[i].end_token < minimum]
    if low:
        out.append(
            Finding(
                "anthropic.below_minimum",
                "warn",
                f"{len(low)} breakpoint(s) close a prefix under the {minimum:,}-token minimum of "
                f"{body.model or 'this model'}: " + ", ".join(f"block {i + 1} at {t:,} tokens" for i, t in low),
                requests=1,
                examples=[f"block {i + 1}" for i, _ in low],
                basis="this body",
            )
        )
    previous = -1
    for index, _ in marks:
        grown = [b for b in body.blocks[previous + 1 : index + 1] if b.kind not in ("system", "tool")]
        if index - previous > lookback and len(grown) > lookback:
            out.append(
                Finding(
                    "anthropic.lookback",
                    "warn",
                    f"The breakpoint on block {index + 1} follows {index - previous} blocks without one: an entry an "
                    f"earlier call wrote more than {lookback} blocks before it is not found.",
                    requests=1,
                    examples=[f"block {index + 1}"],
                    basis="this body",
                )
            )
        previous = index
    if marks:
        first = marks[0][0]
        spans = [
            (i, m) for i, b in enumerate(body.blocks[: first + 1]) for m in volatility.find_shapes(b.text) if m.shape
        ]
        if spans:
            i, m = spans[0]
            out.append(
                Finding(
                    "anthropic.volatile_before_breakpoint",
                    "warn",
                    f"Block {i + 1}, before the first breakpoint, holds what looks like a {m.shape.replace('_', ' ')} "
                    f"({redact(body.blocks[i].text, m.start, m.end)!r}): if it changes between calls, nothing is "
                    "cached.",
                    requests=1,
                    examples=[f"block {j + 1}" for j, _ in spans[:EXAMPLES]],
                    tokens_at_risk=body.blocks[first].end_token,
                    basis="this body (shape only)",
                )
            )
    return out


def _body_stable_after(body: RequestBody) -> list[Finding]:
    head = [i for i, b in enumerate(body.blocks) if b.kind in ("system", "tool")]
    for i in head:
        shapes = [m for m in volatility.find_shapes(body.blocks[i].text) if m.shape in _VOLATILE_SHAPES]
        after = sum(body.blocks[j].tokens for j in head if j > i)
        if shapes and after:
            return [
                Finding(
                    "prefix.stable_after_changing",
                    "warn",
                    f"Block {i + 1} holds what looks like a {shapes[0].shape.replace('_', ' ')} and {after:,} tokens "
                    "of tools or system instructions come after it: if it changes, none of them can be reused.",
                    requests=1,
                    examples=[f"block {i + 1}"],
                    tokens_at_risk=after,
                    basis="this body (shape only)",
                )
            ]
    return []


_VOLATILE_SHAPES = {"uuid", "datetime", "date", "time", "request_id", "epoch", "hex_id", "random_token"}


# --- a dataset ------------------------------------------------------------------------------------------------

REQUESTS_SQL = """
CREATE OR REPLACE TEMP TABLE ck_req AS
SELECT r.rid, r.trace_id, r.session_id, r.timestamp, r.seq, r.source_path, r.source_line, r.n_blocks,
       r.materialization_family AS family,
       r.breakpoints, r.breakpoint_ttls, r.prompt_tokens_counted AS counted,
       CASE WHEN r.prompt_tokens_reported IS NOT NULL AND NOT r.tokenizer_exact AND r.prompt_tokens_counted > 0
            THEN r.prompt_tokens_reported::DOUBLE / r.prompt_tokens_counted ELSE 1.0 END AS scale,
       k.gran_kind, k.min_tokens, k.max_breakpoints, k.lookback
FROM requests r
JOIN ck_rules k ON k.provider IS NOT DISTINCT FROM r.provider AND k.engine IS NOT DISTINCT FROM r.engine
               AND k.model IS NOT DISTINCT FROM r.model
WHERE r.prompt_tokens_counted IS NOT NULL AND r.block_granularity = 0;

CREATE OR REPLACE TEMP TABLE ck_marks AS
SELECT b.rid, b.pos, b.chain, b.end_token
FROM request_blocks b JOIN ck_req r USING (rid)
WHERE r.gran_kind = 'breakpoints'
  AND (list_contains(r.breakpoints, b.end_token) OR (len(r.breakpoints) = 0 AND b.pos = r.n_blocks - 1));

-- head blocks that change: volatile by shape and variation, or one slot (a tool by name, the n-th system part)
-- taking 3+ texts within a session and prompt family
CREATE OR REPLACE TEMP TABLE ck_changing AS
WITH head AS (
    SELECT b.rid, b.pos, b.block_id, r.session_id, r.family, k.kind, coalesce(k.name, '') AS name,
           row_number() OVER (PARTITION BY b.rid, k.kind, coalesce(k.name, '') ORDER BY b.pos) AS slot
    FROM request_blocks b JOIN ck_req r USING (rid) JOIN blocks k USING (block_id)
    WHERE k.kind IN ('system', 'tool')
), varying AS (
    SELECT session_id, family, kind, name, slot FROM head WHERE session_id <> ''
    GROUP BY ALL HAVING count(DISTINCT block_id) >= 3
)
SELECT h.rid, min(h.pos) AS first_pos
FROM head h LEFT JOIN varying v USING (session_id, family, kind, name, slot)
WHERE h.block_id IN (SELECT block_id FROM ck_volatile) OR v.slot IS NOT NULL
GROUP BY h.rid;
"""

MAX_BREAKPOINTS_SQL = """
SELECT trace_id, session_id, len(breakpoints) AS n, max_breakpoints FROM ck_req
WHERE gran_kind = 'breakpoints' AND len(breakpoints) > max_breakpoints ORDER BY seq
"""

TTL_ORDER_SQL = """
SELECT trace_id, session_id FROM ck_req
WHERE gran_kind = 'breakpoints' AND list_contains(breakpoint_ttls, '5m') AND list_contains(breakpoint_ttls, '1h')
  AND list_position(breakpoint_ttls, '5m')
      < len(breakpoint_ttls) + 1 - list_position(list_reverse(breakpoint_ttls), '1h')
ORDER BY seq
"""

BELOW_MINIMUM_SQL = """
SELECT trace_id, session_id, len(list_filter(breakpoints, lambda b: b * scale < min_tokens)) AS low, min_tokens
FROM ck_req
WHERE gran_kind = 'breakpoints' AND len(list_filter(breakpoints, lambda b: b * scale < min_tokens)) > 0
ORDER BY seq
"""

# The previous call of the session wrote entries at its marks; this call finds one only if a mark of its own sits
# at most ``lookback`` blocks after it. The deepest shared entry not found is lost down to the best one found.
LOOKBACK_SQL = """
WITH prev AS (
    SELECT rid, trace_id, session_id, scale, lookback,
           lag(rid) OVER (PARTITION BY session_id ORDER BY timestamp NULLS LAST, seq) AS prev
    FROM ck_req WHERE gran_kind = 'breakpoints' AND session_id <> ''
), shared AS (
    SELECT p.rid, p.trace_id, p.session_id, p.scale, m.pos, m.end_token,
           EXISTS (SELECT 1 FROM ck_marks mine WHERE mine.rid = p.rid AND mine.pos >= m.pos
                   AND mine.pos - m.pos < p.lookback) AS found
    FROM prev p
    JOIN ck_marks m ON m.rid = p.prev
    JOIN request_blocks b ON b.rid = p.rid AND b.pos = m.pos AND b.chain = m.chain
), per_request AS (
    SELECT rid, trace_id, session_id, scale, arg_max(found, pos) AS deepest_found, max(end_token) AS deepest,
           coalesce(max(end_token) FILTER (WHERE found), 0) AS fallback
    FROM shared GROUP BY ALL
)
SELECT trace_id, session_id, round((deepest - fallback) * scale)::BIGINT AS at_risk
FROM per_request WHERE NOT deepest_found ORDER BY trace_id
"""

VOLATILE_SQL = """
WITH first_mark AS (SELECT rid, min(pos) AS pos, min(end_token) AS end_token FROM ck_marks GROUP BY rid)
SELECT r.trace_id, r.session_id, round(f.end_token * r.scale)::BIGINT AS at_risk
FROM ck_req r JOIN first_mark f USING (rid) JOIN ck_changing c USING (rid)
WHERE c.first_pos <= f.pos ORDER BY r.seq
"""

STABLE_AFTER_SQL = """
SELECT r.trace_id, r.session_id, round(sum(b.tokens) * any_value(r.scale))::BIGINT AS at_risk
FROM ck_req r JOIN ck_changing c USING (rid)
JOIN request_blocks b ON b.rid = r.rid AND b.pos > c.first_pos
JOIN blocks k ON k.block_id = b.block_id AND k.kind IN ('system', 'tool')
GROUP BY r.trace_id, r.session_id ORDER BY 1
"""


def check_dataset(dataset: Dataset, rules: str | None = None, rules_files: tuple[str, ...] = ()) -> CheckReport:
    """Run every check on the recorded requests of a dataset."""
    con = dataset.connect()
    packs, forced = resolve_packs(rules, rules_files)
    register_target_rules(con, "ck_rules", packs, forced)
    volatile = list(volatility.volatile_head_blocks(con))
    con.register("ck_volatile", pa.table({"block_id": pa.array(volatile, pa.int64())}))
    con.execute(REQUESTS_SQL)
    findings = _dataset_breakpoints(con) + _dataset_changing(con)
    keys, notes = _cache_key_findings(con)
    findings += keys
    counts = con.execute("""
        SELECT count(*), count(*) FILTER (WHERE gran_kind = 'breakpoints'),
               count(*) FILTER (WHERE gran_kind = 'increments')
        FROM ck_req
    """).fetchone() or (0, 0, 0)
    checked = {"requests": int(counts[0]), "breakpoint_requests": int(counts[1]), "openai_requests": int(counts[2])}
    return CheckReport(str(dataset.root), _ordered(findings), checked, notes)


def _n(items: Any, noun: str) -> str:
    count = len(items)
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _finding(
    check: str, severity: str, rows: list[tuple[Any, ...]], message: str, at_risk: int | None = None
) -> Finding:
    return Finding(
        check,
        severity,
        message,
        requests=len(rows),
        sessions=len({r[1] for r in rows if r[1]}),
        examples=[r[0] for r in rows[:EXAMPLES]],
        tokens_at_risk=at_risk,
    )


def _tokens_at_risk(rows: list[tuple[Any, ...]]) -> int:
    return sum(int(r[2] or 0) for r in rows)


def _query_finding(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    check: str,
    severity: str,
    message: Callable[[list[tuple[Any, ...]]], str],
    at_risk: bool = False,
) -> list[Finding]:
    """One finding over the requests the query returns (trace_id, session_id, ...), none when it returns none."""
    rows = con.execute(sql).fetchall()
    if not rows:
        return []
    return [_finding(check, severity, rows, message(rows), _tokens_at_risk(rows) if at_risk else None)]


def _dataset_breakpoints(con: duckdb.DuckDBPyConnection) -> list[Finding]:
    return [
        *_query_finding(
            con,
            MAX_BREAKPOINTS_SQL,
            "anthropic.max_breakpoints",
            "fail",
            lambda rows: (
                f"{_n(rows, 'request')} set more than {rows[0][3]} breakpoints (up to "
                f"{max(r[2] for r in rows)}): the provider rejects them."
            ),
        ),
        *_query_finding(
            con,
            TTL_ORDER_SQL,
            "anthropic.ttl_order",
            "fail",
            lambda rows: (
                f"{_n(rows, 'request')} put a 1-hour breakpoint after a 5-minute one: the provider rejects them."
            ),
        ),
        *_query_finding(
            con,
            LOOKBACK_SQL,
            "anthropic.lookback",
            "fail",
            lambda rows: (
                f"In {_n(rows, 'request')}, the previous call's deepest cache entry lies more than the "
                "look-back window before this call's next breakpoint, so it was not found."
            ),
            at_risk=True,
        ),
        *_query_finding(
            con,
            BELOW_MINIMUM_SQL,
            "anthropic.below_minimum",
            "warn",
            lambda rows: (
                f"{_n(rows, 'request')} set breakpoints that close a prefix under the model's minimum "
                f"({', '.join(sorted({f'{r[3]:,}' for r in rows}))} tokens): those prefixes are never cached."
            ),
        ),
    ]


def _dataset_changing(con: duckdb.DuckDBPyConnection) -> list[Finding]:
    return [
        *_query_finding(
            con,
            VOLATILE_SQL,
            "anthropic.volatile_before_breakpoint",
            "fail",
            lambda rows: (
                f"{_n(rows, 'request')} carry system or tool content that changes between requests "
                "before the first breakpoint: what that breakpoint writes cannot be read back."
            ),
            at_risk=True,
        ),
        *_query_finding(
            con,
            STABLE_AFTER_SQL,
            "prefix.stable_after_changing",
            "warn",
            lambda rows: (
                f"{_n(rows, 'request')} place stable tools or system instructions after content that "
                "changes between requests: moving the changing part to the end would let the stable part be reused."
            ),
            at_risk=True,
        ),
    ]


def _cache_key_findings(con: duckdb.DuckDBPyConnection) -> tuple[list[Finding], list[str]]:
    """prompt_cache_key lives only in the recorded bodies: read the lines the requests came from."""
    rows = con.execute("""
        SELECT trace_id, session_id, source_path, source_line FROM ck_req
        WHERE gran_kind = 'increments' ORDER BY seq
    """).fetchall()
    if not rows:
        return [], []
    keys, unreadable = _read_keys(rows)
    if unreadable == len(rows):
        return [], [f"prompt_cache_key not checked: the bodies of {len(rows)} OpenAI-style requests could not be "
                    "read back from their trace files as JSON lines"]  # fmt: skip
    findings = []
    per_session: dict[str, set[str]] = {}
    missing = []
    for trace_id, session, _, _ in rows:
        if trace_id not in keys:
            continue
        key = keys[trace_id]
        if key is None:
            missing.append((trace_id, session))
        elif session:
            per_session.setdefault(session, set()).add(key)
    unstable = {s: k for s, k in per_session.items() if len(k) > 1}
    if unstable:
        findings.append(
            Finding(
                "openai.prompt_cache_key_unstable",
                "fail",
                f"{_n(unstable, 'session')} send more than one prompt_cache_key (up to "
                f"{max(len(k) for k in unstable.values())} in one session): their calls are spread over caches.",
                requests=sum(1 for trace_id, session, _, _ in rows if session in unstable and trace_id in keys),
                sessions=len(unstable),
                examples=sorted(unstable)[:EXAMPLES],
            )
        )
    if missing:
        findings.append(
            _finding(
                "openai.prompt_cache_key_missing",
                "info",
                missing,
                f"{len(missing)} of {len(keys)} OpenAI-style requests set no prompt_cache_key.",
            )
        )
    notes = [f"{unreadable} request bodies could not be read back for prompt_cache_key"] if unreadable else []
    return findings, notes


def _read_keys(rows: list[tuple[Any, ...]]) -> tuple[dict[str, str | None], int]:
    wanted: dict[str, dict[int, str]] = {}
    for trace_id, _, path, line in rows:
        if path and line:
            wanted.setdefault(path, {})[int(line)] = trace_id
    keys: dict[str, str | None] = {}
    for path, lines in wanted.items():
        file = Path(path)
        if not file.is_file():
            continue
        with file.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if number in lines:
                    try:
                        record = json.loads(raw)
                    except ValueError:
                        continue
                    if isinstance(record, dict):
                        keys[lines[number]] = _find_key(record, "prompt_cache_key")
    return keys, len(rows) - len(keys)


def _find_key(value: Any, key: str, depth: int = 4) -> str | None:
    if not isinstance(value, dict) or depth < 0:
        return None
    if key in value and value[key] is not None:
        return str(value[key])
    for inner in value.values():
        found = _find_key(inner, key, depth - 1)
        if found is not None:
            return found
    return None

"""The changes a recommendation can simulate, each written as a transformed copy of the dataset (a ``Scenario``).

Every change is what a user could do to their own traffic, applied to the recorded requests exactly as the
traces would look had they done it: the waterfall then re-runs on the copy. Each returns the scenario and its
scope (which sessions and requests it touched), or None when nothing in the dataset would change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from zumik_cli.core import identity
from zumik_cli.core.model import Artifact
from zumik_cli.core.redact import redact
from zumik_cli.dataset.scenario import Scenario, ScenarioBuilder
from zumik_cli.dataset.schema import REQUEST_BLOCKS, SESSION_KEY
from zumik_cli.diagnosis import volatility
from zumik_cli.ingest.tokenization import load_tokenizer
from zumik_cli.rules.pack import RulesPack


@dataclass(frozen=True)
class Change:
    """A simulated change: what it is, what it touched, and the assumptions its saving rests on."""

    id: str
    title: str
    action: str
    scenario: Scenario
    scope: dict[str, Any]
    assumptions: list[str] = field(default_factory=list)


Maker = Callable[[duckdb.DuckDBPyConnection, ScenarioBuilder, dict[str, RulesPack], bool], Change | None]

# ``ch_packs`` is registered by ``rules.register_target_rules``, one row per provider, engine and model
JOIN_PACKS = (
    "JOIN ch_packs p ON p.provider IS NOT DISTINCT FROM r.provider AND p.engine IS NOT DISTINCT FROM r.engine "
    "AND p.model IS NOT DISTINCT FROM r.model"
)


def _one_per_session(source: str) -> str:
    """A scope's session ids: one per tenant's session (two tenants' sessions of one id are two)."""
    return f"SELECT session_id FROM (SELECT DISTINCT tenant, session_id FROM {source}) ORDER BY 1"


def _session_ids(keys: set[str]) -> list[str]:
    """The session ids of ``SESSION_KEY`` values (``<length of tenant>:<tenant>/<session id>``), one per key."""
    ids = []
    for key in keys:
        if key:
            length, rest = key.split(":", 1)
            ids.append(rest[int(length) + 1 :])
    return sorted(ids)


# sessions are keyed by tenant too (``SESSION_KEY``): one tenant's gaps never choose another tenant's session
TTL_SESSIONS_SQL = f"""
SELECT DISTINCT skey FROM (
    SELECT {SESSION_KEY} AS skey, p.ttl, p.ttl_1h,
           r.timestamp - lag(r.timestamp) OVER (
               PARTITION BY r.tenant, r.session_id, r.kv_compatibility_key ORDER BY r.timestamp, r.seq
           ) AS gap
    FROM requests r {JOIN_PACKS}
    WHERE r.session_id <> '' AND r.timestamp IS NOT NULL AND r.prompt_tokens_counted IS NOT NULL
)
WHERE ttl_1h IS NOT NULL AND gap > ttl AND gap <= ttl_1h
"""

TTL_REQUESTS_SQL = f"""
SELECT r.* REPLACE (
    CASE WHEN len(r.breakpoints) = 0 THEN [r.prompt_tokens_counted] ELSE r.breakpoints END AS breakpoints,
    list_transform(CASE WHEN len(r.breakpoints) = 0 THEN [r.prompt_tokens_counted] ELSE r.breakpoints END,
                   lambda x: '1h') AS breakpoint_ttls
)
FROM requests r {JOIN_PACKS}
WHERE {SESSION_KEY} IN (SELECT skey FROM ch_ttl_sessions) AND p.ttl_1h IS NOT NULL
  AND r.prompt_tokens_counted IS NOT NULL
"""


def one_hour_ttl(
    con: duckdb.DuckDBPyConnection, builder: ScenarioBuilder, packs: dict[str, RulesPack], ttl_fixed: bool
) -> Change | None:
    """Sessions idle longer than the default TTL but under an hour between calls write 1-hour entries instead."""
    if ttl_fixed:
        return None
    con.execute(f"CREATE OR REPLACE TEMP TABLE ch_ttl_sessions AS {TTL_SESSIONS_SQL}")
    touched = con.execute(f"SELECT count(*), count(DISTINCT {SESSION_KEY}) FROM ({TTL_REQUESTS_SQL})").fetchone()
    if not touched or not touched[0]:
        return None
    sql = f"""
        SELECT * FROM requests WHERE rid NOT IN (SELECT rid FROM ({TTL_REQUESTS_SQL}))
        UNION ALL BY NAME {TTL_REQUESTS_SQL}
    """
    scenario = builder.build("ttl_1h", con, replace_sql={"requests": sql})
    sessions = [r[0] for r in con.execute(_one_per_session(f"({TTL_REQUESTS_SQL})")).fetchall()]
    return Change(
        id="ttl_1h",
        title="Use the 1-hour cache TTL for sessions that pause between 5 and 60 minutes",
        action="Set cache_control: {type: ephemeral, ttl: '1h'} on every breakpoint of these sessions' requests "
        "(the breakpoint at the end of the prompt is added where none was set).",
        scenario=scenario,
        scope={"sessions": sessions, "requests": int(touched[0])},
        assumptions=[
            "A session is chosen when at least one gap between its calls to the same target is longer than the "
            "pack's default TTL and at most an hour; every request of it then writes 1-hour entries.",
            "1-hour writes are priced at the pack's 1-hour write multiplier for all of those requests, not only "
            "those before a long gap: the dearer writes are counted.",
            "Only targets whose rules pack offers a 1-hour TTL (Anthropic-style) are changed.",
        ],
    )


STICKY_SQL = """
CREATE OR REPLACE TEMP TABLE ch_sticky AS
WITH ranked AS (
    SELECT rid, session_id, tenant, materialization_family, coalesce(nullif(alias, ''), model) AS asked,
           provider, engine, model, model_revision, region, quantization, kv_compatibility_key, target_key,
           first_value(rid) OVER (
               PARTITION BY session_id, tenant, materialization_family, coalesce(nullif(alias, ''), model)
               ORDER BY timestamp NULLS LAST, seq
           ) AS pin
    FROM requests WHERE session_id <> '' AND prompt_tokens_counted IS NOT NULL AND block_granularity = 0
)
SELECT r.rid, r.session_id, r.tenant, p.provider, p.engine, p.model, p.model_revision, p.region, p.quantization,
       p.kv_compatibility_key, p.target_key
FROM ranked r JOIN ranked p ON p.rid = r.pin
WHERE r.kv_compatibility_key <> p.kv_compatibility_key
"""


def sticky_routing(
    con: duckdb.DuckDBPyConnection, builder: ScenarioBuilder, packs: dict[str, RulesPack], ttl_fixed: bool
) -> Change | None:
    """Every call of a session that asks for the same alias (or model) goes where the session's first one went."""
    con.execute(STICKY_SQL)
    touched = con.execute(f"SELECT count(*), count(DISTINCT {SESSION_KEY}) FROM ch_sticky").fetchone()
    if not touched or not touched[0]:
        return None
    sql = """
        SELECT r.* REPLACE (
            coalesce(s.provider, r.provider) AS provider, coalesce(s.engine, r.engine) AS engine,
            coalesce(s.model, r.model) AS model, coalesce(s.model_revision, r.model_revision) AS model_revision,
            coalesce(s.region, r.region) AS region, coalesce(s.quantization, r.quantization) AS quantization,
            coalesce(s.kv_compatibility_key, r.kv_compatibility_key) AS kv_compatibility_key,
            coalesce(s.target_key, r.target_key) AS target_key
        )
        FROM requests r LEFT JOIN ch_sticky s USING (rid)
    """
    scenario = builder.build("sticky_routing", con, replace_sql={"requests": sql})
    sessions = [r[0] for r in con.execute(_one_per_session("ch_sticky")).fetchall()]
    return Change(
        id="sticky_routing",
        title="Keep each session on the target that served its first call",
        action="Route by session: pin a session's calls for one alias (or model) to the provider, model revision, "
        "region and engine of its first call, instead of re-resolving or balancing each call.",
        scenario=scenario,
        scope={"sessions": sessions, "requests": int(touched[0])},
        assumptions=[
            "Only calls that ask for the same alias (or the same model when there is no alias) and render with the "
            "same tokenizer and prompt format are pinned together; a deliberate switch to another alias is kept.",
            "The pinned target is priced at its own list price; its latency and availability are not modelled.",
        ],
    )


BREAKPOINT_ROWS_SQL = f"""
SELECT r.rid, CASE WHEN r.session_id = '' THEN '' ELSE {SESSION_KEY} END AS session, r.breakpoints,
       r.breakpoint_ttls, r.prompt_tokens_counted AS prompt_end,
       p.max_breakpoints,
       (SELECT max(rb.end_token) FROM request_blocks rb JOIN blocks b USING (block_id)
        WHERE rb.rid = r.rid AND b.kind IN ('system', 'tool')) AS head_end
FROM requests r {JOIN_PACKS}
WHERE p.gran_kind = 'breakpoints' AND r.prompt_tokens_counted IS NOT NULL AND r.block_granularity = 0
"""


def placed_breakpoints(
    existing: list[int], ttls: list[str], head_end: int | None, prompt_end: int, limit: int
) -> tuple[list[int], list[str]]:
    """Breakpoints at the end of the stable head and of the prompt, keeping others while the limit allows."""
    wanted = {prompt_end} | ({head_end} if head_end else set())
    others = sorted(set(existing) - wanted, reverse=True)[: max(limit - len(wanted), 0)]
    positions = sorted(wanted | set(others))
    old = dict(zip(existing, ttls, strict=False))
    out_ttls = []
    for position in positions:
        later = [old[p] for p in sorted(old) if p >= position]
        earlier = [old[p] for p in sorted(old) if p < position]
        out_ttls.append(old.get(position) or (later[0] if later else earlier[-1] if earlier else "5m"))
    return positions, out_ttls


def breakpoints(
    con: duckdb.DuckDBPyConnection, builder: ScenarioBuilder, packs: dict[str, RulesPack], ttl_fixed: bool
) -> Change | None:
    """A breakpoint at the end of the tools and system, and one at the end of every prompt (at most four)."""
    rows = con.execute(BREAKPOINT_ROWS_SQL).fetchall()
    changed: dict[str, list[Any]] = {"rid": [], "breakpoints": [], "breakpoint_ttls": []}
    sessions: set[str] = set()
    for rid, session, existing, ttls, prompt_end, limit, head_end in rows:
        positions, new_ttls = placed_breakpoints(list(existing or []), list(ttls or []), head_end, prompt_end, limit)
        if positions != list(existing or []):
            changed["rid"].append(rid)
            changed["breakpoints"].append(positions)
            changed["breakpoint_ttls"].append(new_ttls)
            sessions.add(session)
    if not changed["rid"]:
        return None
    con.register(
        "ch_breakpoints",
        pa.table(
            {
                "rid": pa.array(changed["rid"], pa.int64()),
                "breakpoints": pa.array(changed["breakpoints"], pa.list_(pa.int64())),
                "breakpoint_ttls": pa.array(changed["breakpoint_ttls"], pa.list_(pa.string())),
            }
        ),
    )
    sql = """
        SELECT r.* REPLACE (coalesce(c.breakpoints, r.breakpoints) AS breakpoints,
                            coalesce(c.breakpoint_ttls, r.breakpoint_ttls) AS breakpoint_ttls)
        FROM requests r LEFT JOIN ch_breakpoints c USING (rid)
    """
    scenario = builder.build("breakpoints", con, replace_sql={"requests": sql})
    return Change(
        id="breakpoints",
        title="Place cache breakpoints at the end of the tools and system, and at the end of every prompt",
        action="Add cache_control to the last tool or system block and to the last block of each request (moving "
        "the latest other breakpoint when four are already set).",
        scenario=scenario,
        scope={"sessions": _session_ids(sessions), "requests": len(changed["rid"])},
        assumptions=[
            "Only requests to targets that cache at explicit breakpoints (Anthropic-style) are changed.",
            "A new breakpoint takes the TTL of the next breakpoint already set after it (5 minutes when none).",
        ],
    )


AFFECTED_SQL = f"""
SELECT r.rid, CASE WHEN r.session_id = '' THEN '' ELSE {SESSION_KEY} END AS session, r.tokenizer,
       r.request_format, r.materialization_family AS family, r.breakpoints,
       list(rb.block_id ORDER BY rb.pos) AS blocks, list(rb.tokens ORDER BY rb.pos) AS sizes,
       list(rb.end_token ORDER BY rb.pos) AS ends
FROM requests r JOIN request_blocks rb USING (rid)
WHERE r.rid IN (SELECT DISTINCT rid FROM request_blocks WHERE block_id IN (SELECT unnest(?)))
GROUP BY ALL
"""


class _Retokenizer:
    """New block texts, content-addressed and tokenized once each, as ingest does."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.sizes: dict[int, int] = {}
        self.rows: dict[str, list[Any]] = {k: [] for k in ("block_id", "family", "kind", "role", "name", "text")}
        self.token_rows: dict[str, list[Any]] = {"block_id": [], "token_ids": []}

    def block(self, tokenizer: str, family: str, text: str, kind: str, role: str, name: str) -> int:
        bid = identity.block_id(family, text)
        if bid not in self.sizes:
            known = self.con.execute("SELECT n_tokens FROM blocks WHERE block_id = ?", [bid]).fetchone()
            if known:
                self.sizes[bid] = int(known[0])
            else:
                ids = load_tokenizer(tokenizer).encode_batch([text])[0]
                self.sizes[bid] = len(ids)
                for key, value in (
                    ("block_id", bid),
                    ("family", family),
                    ("kind", kind),
                    ("role", role),
                    ("name", name),
                    ("text", text),
                ):
                    self.rows[key].append(value)
                self.token_rows["block_id"].append(bid)
                self.token_rows["token_ids"].append(ids)
        return bid

    def tables(self) -> tuple[pa.Table, pa.Table]:
        n = len(self.rows["block_id"])
        blocks = pa.table(
            {
                **{k: self.rows[k] for k in ("block_id", "family", "kind", "role", "name", "text")},
                "artifact_hash": [""] * n,
                "n_tokens": [self.sizes[b] for b in self.rows["block_id"]],
            }
        )
        tokens = pa.table(
            {
                "block_id": pa.array(self.token_rows["block_id"], pa.int64()),
                "token_ids": pa.array(self.token_rows["token_ids"], pa.list_(pa.int32())),
            }
        )
        return blocks, tokens


def moved_volatile(
    con: duckdb.DuckDBPyConnection, builder: ScenarioBuilder, packs: dict[str, RulesPack], ttl_fixed: bool
) -> Change | None:
    """Volatile spans in system or tool text move to a last user message; the head they leave is stable."""
    volatile = {
        bid: block
        for bid, block in volatility.volatile_head_blocks(con).items()
        if block.matches and not block.family.startswith("hashid:")
    }
    if not volatile:
        return None
    retokenizer = _Retokenizer(con)
    manifest: dict[str, list[Any]] = {
        k: [] for k in ("rid", "pos", "block_id", "chain", "parent", "tokens", "end_token")
    }
    updates: dict[str, list[Any]] = {"rid": [], "counted": [], "n_blocks": [], "breakpoints": []}
    sessions: set[str] = set()
    affected = con.execute(AFFECTED_SQL, [list(volatile)]).fetchall()
    for rid, session, tokenizer, fmt, family, bps, blocks, block_sizes, ends in affected:
        if not tokenizer.startswith("tiktoken:"):
            continue  # a tokenizer zumik cannot load again by its id: leave the request as recorded
        new_ids, moved = [], []
        for bid, size in zip(blocks, block_sizes, strict=True):
            block = volatile.get(bid)
            if block is None:
                retokenizer.sizes.setdefault(bid, size)
                new_ids.append(bid)
                continue
            stable, parts = block.text, list[str]()
            for start, end in reversed(block.spans()):
                parts.insert(0, stable[start:end].strip("\n"))
                stable = stable[:start] + stable[end:]
            moved.extend(parts)
            role = "system" if block.kind == "system" else "tools"
            new_ids.append(retokenizer.block(tokenizer, family, stable, block.kind, role, block.name))
        tail = identity.render(Artifact("text", "user", "\n".join(moved)), fmt)
        new_ids.append(retokenizer.block(tokenizer, family, tail, "text", "user", ""))
        chains, parent, end = identity.chain_ids(new_ids), identity.ROOT_CHAIN, 0
        new_ends = []
        for pos, (bid, chain) in enumerate(zip(new_ids, chains, strict=True)):
            size = retokenizer.sizes[bid]
            end += size
            new_ends.append(end)
            for key, value in zip(manifest, (rid, pos, bid, chain, parent, size, end), strict=True):
                manifest[key].append(value)
            parent = chain
        position_of = {e: i for i, e in enumerate(ends)}
        updates["rid"].append(rid)
        updates["counted"].append(end)
        updates["n_blocks"].append(len(new_ids))
        updates["breakpoints"].append([new_ends[position_of[b]] for b in bps or [] if b in position_of])
        sessions.add(session)
    if not updates["rid"]:
        return None
    con.register("ch_manifest", pa.table(manifest).cast(REQUEST_BLOCKS))
    con.register(
        "ch_updates",
        pa.table(
            {
                "rid": pa.array(updates["rid"], pa.int64()),
                "counted": pa.array(updates["counted"], pa.int64()),
                "n_blocks": pa.array(updates["n_blocks"], pa.int64()),
                "breakpoints": pa.array(updates["breakpoints"], pa.list_(pa.int64())),
            }
        ),
    )
    requests_sql = """
        SELECT r.* REPLACE (coalesce(u.counted, r.prompt_tokens_counted) AS prompt_tokens_counted,
                            coalesce(u.n_blocks, r.n_blocks) AS n_blocks,
                            coalesce(u.breakpoints, r.breakpoints) AS breakpoints)
        FROM requests r LEFT JOIN ch_updates u USING (rid)
    """
    blocks_sql = """
        SELECT * FROM request_blocks WHERE rid NOT IN (SELECT rid FROM ch_updates)
        UNION ALL SELECT * FROM ch_manifest
    """
    new_blocks, new_tokens = retokenizer.tables()
    scenario = builder.build(
        "volatile_moved",
        con,
        replace_sql={"requests": requests_sql, "request_blocks": blocks_sql},
        add_tables={"blocks": new_blocks, "tokens": new_tokens},
    )
    examples = []
    for block in list(volatile.values())[:5]:
        for m in block.matches[:2]:
            where = "system" if block.kind == "system" else f"tool {block.name}"
            examples.append({"where": where, "shape": m.shape, "example": redact(block.text, m.start, m.end)})
    return Change(
        id="volatile_moved",
        title="Move volatile values (dates, times, ids) out of the system prompt and tools, to the end of the prompt",
        action="Keep the system prompt and tool definitions byte-identical across calls; send what changes per call "
        "(the lines holding these spans) in a last user message instead.",
        scenario=scenario,
        scope={"sessions": _session_ids(sessions), "requests": len(updates["rid"]), "spans": examples},
        assumptions=[
            "A span is volatile when it looks like a date, time, id or counter and the same system or tool text "
            "carries different values of it across requests.",
            "The whole line holding a span moves (the span alone when the line is long); the model still receives "
            "every value, in a last user message.",
            "Breakpoints stay on the blocks they were on; the moved text is never cached.",
        ],
    )


MAKERS: dict[str, Maker] = {
    "volatile_moved": moved_volatile,
    "ttl_1h": one_hour_ttl,
    "sticky_routing": sticky_routing,
    "breakpoints": breakpoints,
}

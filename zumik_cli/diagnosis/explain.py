"""Explain one request: its resolution record, its reuse accounting, and a recomputation of the decision.

The reuse accounting comes from the waterfall's per-request stages (which rule cut the candidate), from the
prefix chains (which earlier request it shares its prefix with, and how much), and from divergence's classifier
(the session break: what it lost of its parent's cache, and why), with a sentence saying how the break and the
waterfall's cut relate. The recomputation applies the policy to the release and the inputs stored with the
decision: the same target, or a named divergence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb

from zumik_cli.analysis.waterfall import CAUSE_LABELS, Waterfall, WaterfallOptions, compute_waterfall
from zumik_cli.core.errors import ZumikError
from zumik_cli.dataset.store import Dataset
from zumik_cli.diagnosis.divergence import CAUSES, Break, session_break
from zumik_cli.routing.decisions import find_decision
from zumik_cli.routing.policies import POLICIES, PolicyInputs
from zumik_cli.routing.release_store import recorded_history
from zumik_cli.routing.releases import History, changed_fields
from zumik_cli.rules.pack import load_packs

RECORD_FIELDS = ("requested_model", "alias_release", "resolved_model", "resolution_reason", "trace_id")
STAGES = ("total", "eligible", "same_target", "same_key", "warm", "above_minimum", "granular", "candidate")
# the waterfall's cuts that name the same cause as a session break
SAME_CAUSE = {"model_changed": ("other_model", "other_tenant"), "idle_gap": ("expired",)}
TARGET_RULES = ("below_minimum", "granularity", "evicted")
CUTS = (
    ("eligible", "same_target", "other_model"),
    ("same_target", "same_key", "other_tenant"),
    ("same_key", "warm", "expired"),
    ("warm", "above_minimum", "below_minimum"),
    ("above_minimum", "granular", "granularity"),
    ("granular", "candidate", "evicted"),
)

SHARERS_SQL = """
WITH ordered AS (
    SELECT rid, trace_id, timestamp, provider, model, model_revision, tenant,
           kv_compatibility_key AS kvc, target_key,
           row_number() OVER (ORDER BY timestamp NULLS LAST, seq) AS ord
    FROM requests
), me AS (SELECT * FROM ordered WHERE rid = $rid)
SELECT o.trace_id, o.ord, o.provider, o.model, o.model_revision, o.tenant, o.timestamp,
       o.kvc = me.kvc AS same_key, o.target_key = me.target_key AS same_target,
       max(b.end_token) AS tokens, max(b.pos) + 1 AS blocks, me.timestamp - o.timestamp AS gap_s
FROM request_blocks mine
JOIN request_blocks b ON b.chain = mine.chain AND b.rid <> mine.rid
JOIN ordered o ON o.rid = b.rid
CROSS JOIN me
WHERE mine.rid = $rid AND o.ord < me.ord
GROUP BY ALL
ORDER BY tokens DESC, same_key DESC, o.ord DESC
"""


@dataclass(frozen=True)
class Explanation:
    trace_id: str
    policy: str
    record: dict[str, Any]
    decision: dict[str, Any]
    reuse: dict[str, Any]
    recomputation: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "policy": self.policy,
            "record": self.record,
            "decision": self.decision,
            "reuse": self.reuse,
            "recomputation": self.recomputation,
        }


def explain(
    dataset: Dataset,
    trace_id: str,
    *,
    policy: str = "recorded",
    history: History | None = None,
    waterfall: Waterfall | None = None,
) -> Explanation:
    """Explain one request's decision under a policy (``recorded`` by default).

    The release comes from ``history`` when given (a changed release is then a named divergence), else from the
    releases the dataset recorded.
    """
    con = dataset.connect()
    found = con.execute("SELECT rid FROM requests WHERE trace_id = ?", [trace_id]).fetchone()
    if found is None:
        raise ZumikError(f"no request with trace id {trace_id!r} in {dataset.root}: list them with `zumik requests`")
    stored = recorded_history(dataset, con)
    releases = history if history is not None else stored
    decision = find_decision(dataset, trace_id, policy, con)
    if decision is None and policy == "recorded" and len(releases):
        decision = _derive_recorded(dataset, releases, trace_id)
    if decision is None:
        raise ZumikError(
            f"no {policy} decision for {trace_id} in {dataset.root}: run "
            f"`zumik simulate --data {dataset.root} --releases FILE --policy {policy}` first"
        )
    record = {name: decision[name] for name in RECORD_FIELDS}
    record.update(snapshot_id=decision["snapshot_id"], policy=policy)
    detail = {
        key: decision[key]
        for key in (
            "resolved_target",
            "release_source",
            "release_digest",
            "recorded_target",
            "prompt_tokens",
            "output_tokens",
            "realized_tokens",
            "cache_write_tokens",
            "cost",
            "latency_ms",
            "evidence",
            "run_id",
            "seed",
        )
    }
    detail["policy_inputs"] = decision["policy_inputs"]
    result = waterfall or compute_waterfall(dataset, WaterfallOptions(curves=False, capacities=()))
    reuse = reuse_accounting(con, int(found[0]), trace_id, result)
    found_break = session_break(dataset, trace_id, result)
    reuse["session_break"] = found_break.to_json() if found_break else None
    reuse["session_break_vs_cut"] = relate(found_break, reuse)
    return Explanation(trace_id, policy, record, detail, reuse, recompute(decision, releases, stored))


def _derive_recorded(dataset: Dataset, releases: History, trace_id: str) -> dict[str, Any] | None:
    """The recorded decision computed on the spot (nothing written) when no simulation has stored it yet."""
    import json

    from zumik_cli.routing.simulate import simulate_workload
    from zumik_cli.routing.workload import load_workload

    table = simulate_workload(load_workload(dataset), releases, ["recorded"]).decisions["recorded"]
    index = table.column("trace_id").to_pylist().index(trace_id)
    decision = {name: table.column(name)[index].as_py() for name in table.column_names}
    decision["policy_inputs"] = json.loads(decision["policy_inputs"])
    return decision


def recompute(decision: dict[str, Any], releases: History, stored: History | None = None) -> dict[str, Any]:
    """Apply the decision's policy to its release and stored inputs; say whether the same target comes out.

    ``stored`` holds the releases as the dataset recorded them, to name the fields of a release that changed.
    """
    out: dict[str, Any] = {"stored_target": decision["resolved_target"], "stored_model": decision["resolved_model"]}
    release_id = decision["alias_release"]
    if not decision["release_digest"]:
        same = decision["resolved_target"] == decision["recorded_target"]
        return {
            **out,
            "policy_applied": None,
            "resolved_target": decision["recorded_target"],
            "resolved_model": decision["resolved_model"],
            "outcome": "same" if same else "diverged",
            "divergence": None if same else "unresolved_request_rerouted",
            "detail": f"no release to apply ({decision['resolution_reason']}): the request keeps the target it "
            "recorded under every policy",
        }
    release = releases.find(release_id)
    if release is None:
        return {
            **out,
            "policy_applied": None,
            "resolved_target": None,
            "resolved_model": None,
            "outcome": "diverged",
            "divergence": "release_missing",
            "detail": f"release {release_id} is not in {releases.source}: pass --releases FILE",
        }
    changed: list[str] = []
    before = stored.find(release_id) if stored is not None else None
    if release.digest != decision["release_digest"] and before and before.digest == decision["release_digest"]:
        changed = [path for path, _, _ in changed_fields(before.content, release.content)]
    policy = release.policy if decision["policy"] == "recorded" else decision["policy"]
    if policy not in POLICIES:
        return {
            **out,
            "policy_applied": policy,
            "resolved_target": None,
            "resolved_model": None,
            "outcome": "diverged",
            "divergence": "policy_unknown",
            "detail": f"policy {policy!r} is not one zumik knows ({', '.join(POLICIES)})",
        }
    choice = POLICIES[policy](release, PolicyInputs.from_json(decision["policy_inputs"]))
    target = release.target(choice.target)
    model = target.resolved_model if target else decision["resolved_model"]
    same = choice.target == decision["resolved_target"]
    out.update(policy_applied=policy, resolved_target=choice.target, resolved_model=model, reason=choice.reason)
    if release.digest != decision["release_digest"]:
        fields = ", ".join(changed) if changed else "(content not recorded in the dataset)"
        out.update(
            outcome="same" if same else "diverged",
            divergence="release_changed",
            detail=f"release {release_id} differs from the one the decision used (digest "
            f"{decision['release_digest']}, now {release.digest}); changed: {fields}",
        )
        return out
    if same:
        out.update(
            outcome="same",
            divergence=None,
            detail=f"{policy} on {release_id} with the stored inputs picks {choice.target} again",
        )
    elif decision["policy"] == "recorded":
        out.update(
            outcome="diverged",
            divergence="recorded_off_release_policy",
            detail=f"the release's policy {policy} picks {choice.target}; the trace went to "
            f"{decision['resolved_target']} ({decision['resolution_reason']})",
        )
    else:
        out.update(
            outcome="diverged",
            divergence="policy_picks_other_target",
            detail=f"{policy} now picks {choice.target}, the decision says {decision['resolved_target']}",
        )
    return out


def reuse_accounting(con: duckdb.DuckDBPyConnection, rid: int, trace_id: str, waterfall: Waterfall) -> dict[str, Any]:
    """The request's waterfall stages, the rule that cut each drop and why, and who it shares its prefix with."""
    row = _row(waterfall, trace_id)
    cursor = con.execute(SHARERS_SQL, {"rid": rid})
    names = [d[0] for d in cursor.description]
    sharers = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    longest = sharers[0] if sharers else None
    same_key = next((s for s in sharers if s["same_key"]), None)
    pack = load_packs().get(row.get("pack") or "")
    writer = _row(waterfall, same_key["trace_id"]) if same_key else row
    cuts = []
    for before, after, cause in CUTS:
        tokens = (row.get(before) or 0) - (row.get(after) or 0)
        if tokens > 0:
            cuts.append(
                {
                    "cause": cause,
                    "label": CAUSE_LABELS[cause],
                    "tokens": tokens,
                    "why": _why(cause, row, longest, same_key, pack, writer),
                }
            )
    return {
        "stages": {name: row.get(name) for name in STAGES},
        "realized_reported": row.get("realized"),
        "missed": row.get("missed"),
        "rules_pack": row.get("pack"),
        "shares_prefix_with": _sharer(longest),
        "shares_prefix_on_same_key_with": _sharer(same_key),
        "cut_by": cuts[0]["cause"] if cuts else None,
        "cuts": cuts,
        "note": "shared tokens count whole blocks; the stages add token-exact overlap inside the first block that "
        "differs",
    }


def _sharer(found: dict[str, Any] | None) -> dict[str, Any] | None:
    if found is None:
        return None
    gap = found["gap_s"]
    return {
        "trace_id": found["trace_id"],
        "tokens": int(found["tokens"]),
        "blocks": int(found["blocks"]),
        "model": f"{found['provider']}/{found['model']}",
        "model_revision": found["model_revision"],
        "tenant": found["tenant"],
        "seconds_before": round(gap, 3) if gap is not None else None,
        "same_kv_key": bool(found["same_key"]),
    }


def _row(waterfall: Waterfall, trace_id: str) -> dict[str, Any]:
    rows = waterfall.per_request.to_table(where={"trace_id": trace_id})
    if not rows.num_rows:
        raise ValueError(f"{trace_id!r} is not in the waterfall")
    return rows.slice(0, 1).to_pylist()[0]


def _why(cause: str, row: dict[str, Any], longest: Any, same_key: Any, pack: Any, writer: dict[str, Any]) -> str:
    model = row.get("model") or "?"
    if cause == "other_model":
        if longest and not longest["same_target"]:
            return (
                f"the longest shared prefix is with {longest['trace_id']} on {longest['provider']}/"
                f"{longest['model']} {longest['model_revision']}; this request went to {model}: a KV cache "
                "serves only the same model, revision and engine"
            )
        return f"the earlier requests sharing this prefix went to other targets than {model}"
    if cause == "other_tenant":
        return (
            f"the prefix was shared with tenant {longest['tenant'] if longest else '?'}; tenant isolation "
            f"(this request: {row.get('tenant')}) forbids reuse across tenants"
        )
    if cause == "expired":
        # the lifetime the earlier request gave the first expired token: an hour up to its last 1-hour breakpoint
        at, long_until = row.get("warm_counted") or 0, writer.get("long_until")
        ttl = writer.get("ttl_long") if long_until is not None and at < long_until else writer.get("ttl")
        gap = same_key["gap_s"] if same_key else None
        if gap is not None and ttl is not None and gap <= ttl:
            return (
                f"the whole blocks it shares were used {gap:.0f} s before, within their lifetime of {ttl:.0f} s "
                f"({row.get('pack')}); the cut is inside the first block that differs, whose matching earlier text "
                "was last used longer ago"
            )
        when = f"{gap:.0f} s before" if gap is not None else "earlier"
        lifetime = f"{ttl:.0f} s" if ttl is not None else "unbounded"
        why = f"the same-key prefix was last used {when}; the {row.get('pack')} TTL is {lifetime}"
        if long_until is not None and at >= long_until:
            why += (
                f" past its last 1-hour breakpoint (token {long_until:,}), which kept the tokens before it for "
                f"{writer.get('ttl_long'):.0f} s"
            )
        return why
    if cause == "below_minimum":
        minimum = pack.minimum_tokens(model) if pack else "?"
        return (
            f"{row.get('warm')} warm tokens are under the minimum cacheable length of {minimum} for {model} "
            f"({row.get('pack')})"
        )
    if cause == "granularity":
        kind = pack.granularity.kind if pack else "?"
        return (
            f"{row.get('pack')} caches by {kind}: {row.get('above_minimum')} tokens round down to {row.get('granular')}"
        )
    return f"the LRU cache of {row.get('pack')} had evicted the prefix (capacity)"


def relate(found: Break | None, reuse: dict[str, Any]) -> str:
    """One sentence on how the session break (what the request lost of its parent's cache) and the waterfall's
    cuts (what it lost of every earlier request's) relate."""
    cuts = reuse["cuts"]
    first = cuts[0] if cuts else None
    if found is None:
        if first is None:
            return "No session break and no waterfall cut: nothing the request could have reused was lost."
        reason = (
            "a rule of the target, which a session break does not judge"
            if first["cause"] in TARGET_RULES
            else "against earlier requests beyond what its parent's cache held (the waterfall compares with every "
            "earlier request, a session break with the parent only)"
        )
        return (
            f"No session break: the request kept what its parent's cache held, or has no session parent; the "
            f"waterfall's cut ({first['label']}, {first['tokens']:,} tokens) is {reason}."
        )
    lost = f"{found.lost_tokens:,} tokens of its parent {found.parent_trace_id}'s cache"
    same = [c for c in cuts if c["cause"] in SAME_CAUSE.get(found.cause, ())]
    if same:
        cut = same[0]
        order = f", after its {first['label']} cut of {first['tokens']:,}" if first and cut is not first else ""
        scope = (
            ""
            if cut["tokens"] == found.lost_tokens
            else " (the waterfall counts against every earlier request, the session break against the parent)"
        )
        return (
            f"Same cause, {CAUSES[found.cause]}: the session break lost {lost}, and the waterfall cuts "
            f"{cut['tokens']:,} tokens as {cut['label']}{order}{scope}."
        )
    if found.cause == "model_changed":
        eligible = reuse["stages"].get("eligible") or 0
        if not eligible:
            return (
                f"The session break lost {lost} ({CAUSES[found.cause]}); the waterfall has no cut because no earlier "
                "request of this request's tokenizer and prompt format shares its prefix: nothing was eligible."
            )
        judged = f"; its {first['label']} cut of {first['tokens']:,} tokens is judged against them" if first else ""
        return (
            f"The session break lost {lost} ({CAUSES[found.cause]}); the waterfall has no other-model or tenant cut "
            f"because what the request shares with earlier requests ({eligible:,} tokens eligible) was on its own "
            f"target and tenant{judged}."
        )
    later = f"; its {first['label']} cut of {first['tokens']:,} tokens is a separate loss" if first else ""
    return (
        f"The session break lost {lost} to a content change ({CAUSES[found.cause]}, at token {found.token:,}); the "
        f"waterfall has no cut for content, since its eligible already stops where the prompt stops matching any "
        f"earlier request{later}."
    )

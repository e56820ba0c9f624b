"""Replay: send chosen requests to a real engine in time order and set what it cached beside zumik's prediction.

The prediction is zumik's simulated candidate under the vLLM rules with the engine's own block size and
capacity: only full blocks are cached, the last prompt token is always recomputed, and blocks are evicted least
recently freed, a finished request's tail first, as vLLM's block pool does (``predict``). Each KV
compatibility key (model, revision, tenant) gets a namespace block of its own in front of its prompts, so that
one engine never lets two tenants or two models share a prefix; the namespace block is counted out of both
figures. Measurements are ``replayed``; predictions ``simulated``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from zumik_cli.analysis.block_pool import namespaced_prompts, predict, token_prompts
from zumik_cli.core.errors import ZumikError
from zumik_cli.dataset.schema import REPLAYS
from zumik_cli.dataset.store import Dataset, publish
from zumik_cli.replay.engines.base import Engine, EngineInfo
from zumik_cli.replay.records import with_run

MAX_DISAGREEMENTS = 20
Progress = Callable[[int, int], None]

# ``target`` is the cache a request is replayed into, ``kvc`` its namespace there: where it went (recorded), or
# where the policy sent it (decided), with the tenant and prompt format that keep two keys apart on one target.
SELECT_RECORDED = """
SELECT r.rid, r.trace_id, r.target_key AS target, r.kv_compatibility_key AS kvc, r.alias_release,
       r.block_granularity,
       r.prompt_tokens_counted IS NULL AND r.block_granularity = 0 AS usage_only
FROM requests r
WHERE ? IS NULL OR r.alias_release = ?
ORDER BY r.timestamp NULLS LAST, r.seq
"""

SELECT_DECIDED = """
SELECT r.rid, r.trace_id, d.resolved_target AS target,
       d.resolved_target || '|' || coalesce(r.tenant, '') || '|' || r.materialization_family AS kvc,
       d.alias_release, r.block_granularity,
       r.prompt_tokens_counted IS NULL AND r.block_granularity = 0 AS usage_only
FROM decisions d JOIN requests r USING (rid)
WHERE d.policy = ? AND d.alias_release = ?
ORDER BY r.timestamp NULLS LAST, r.seq
"""


@dataclass(frozen=True)
class ReplayOptions:
    release: str | None = None  # None: every request, for traces that record no alias release
    policy: str = "recorded"
    engine: str = "vllm"
    model: Path | None = None
    dummy_model: str | None = None
    block_size: int = 32
    kv_blocks: int | None = None
    limit: int | None = None
    url: str | None = None


@dataclass(frozen=True)
class ReplayRequest:
    rid: int
    trace_id: str
    target: str  # the cache it is replayed into
    kvc: str  # its namespace in that cache
    alias_release: str
    tokens: np.ndarray = field(repr=False)


@dataclass
class ReplayResult:
    summary: dict[str, Any]
    rows: pa.Table = field(repr=False)


def select_requests(
    dataset: Dataset, release: str | None, policy: str, limit: int | None
) -> tuple[list[dict[str, Any]], int]:
    """The requests resolved through ``release`` under ``policy``, in time order, and how many had no content."""
    con = dataset.connect()
    decided = con.execute("SELECT count(*) FROM decisions WHERE policy = ?", [policy]).fetchone()
    if policy == "recorded" and (release is None or not (decided and decided[0])):
        cursor = con.execute(SELECT_RECORDED, [release, release])
    elif decided and decided[0] and release is not None:
        cursor = con.execute(SELECT_DECIDED, [policy, release])
    elif release is None:
        raise ZumikError(f"replaying policy {policy!r} needs --release: its decisions are per alias release")
    else:
        raise ZumikError(
            f"no decisions of policy {policy!r} in {dataset.root}: run `zumik simulate --data {dataset.root} "
            f"--releases FILE --policy {policy}` first"
        )
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    if not rows:
        known = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT alias_release FROM requests WHERE alias_release <> '' ORDER BY 1"
            ).fetchall()
        ]
        raise ZumikError(
            f"no request resolved through {release} under policy {policy}; releases in the dataset: "
            f"{', '.join(known) or 'none recorded (run `zumik simulate --releases FILE` to resolve them by time)'}"
        )
    usage_only = sum(1 for r in rows if r["usage_only"])
    rows = [r for r in rows if not r["usage_only"]]
    return (rows[:limit] if limit else rows), usage_only


def load_prompts(dataset: Dataset, rows: list[dict[str, Any]]) -> list[ReplayRequest]:
    """Token-id prompts: the tokens of each content block, or stand-in ids for each hash-id block."""
    prompts = token_prompts(dataset.connect(), [r["rid"] for r in rows])
    out = []
    for r in rows:
        tokens = prompts.get(r["rid"], np.zeros(0, dtype=np.int64))
        out.append(ReplayRequest(r["rid"], r["trace_id"], r["target"], r["kvc"], r["alias_release"], tokens))
    return out


def by_target(requests: list[ReplayRequest]) -> list[ReplayRequest]:
    """The requests grouped by the target they are replayed into (first seen first), in time order within each."""
    order = {target: i for i, target in reversed(list(enumerate(r.target for r in requests)))}
    return sorted(requests, key=lambda r: order[r.target])  # sorted() is stable: time order within a target


def target_runs(requests: list[ReplayRequest]) -> list[tuple[int, int]]:
    """The ``[first, last)`` positions of each target's run in requests grouped by ``by_target``."""
    runs: list[tuple[int, int]] = []
    for i, request in enumerate(requests):
        if not runs or requests[runs[-1][0]].target != request.target:
            runs.append((i, i + 1))
        else:
            runs[-1] = (runs[-1][0], i + 1)
    return runs


def namespaced(requests: list[ReplayRequest], block_size: int) -> list[np.ndarray]:
    """Each prompt behind a block of its KV key's own ids, so keys never share a prefix on one engine."""
    return namespaced_prompts([r.tokens for r in requests], [r.kvc for r in requests], block_size)


def _reason(predicted: int, measured: int | None, bounded: bool) -> str:
    if measured is None:
        return "the engine did not report cached tokens (start the server with --enable-prompt-tokens-details)"
    if measured == predicted:
        return ""
    if not bounded:
        return "differs with unbounded capacity: the engine's prefix matching and zumik's vLLM rules disagree"
    if measured > predicted:
        return "the engine kept blocks that zumik's LRU model evicted (eviction order or block accounting differs)"
    return "the engine evicted blocks that zumik's LRU model kept (eviction order or block accounting differs)"


def build_engine(options: ReplayOptions) -> Engine:
    from zumik_cli.replay.engines import ENGINES

    if options.engine not in ENGINES:
        raise ZumikError(f"unknown engine {options.engine!r}; engines: {', '.join(ENGINES)}")
    if options.engine == "openai-http":
        from zumik_cli.replay.engines.openai_http import DEFAULT_URL, OpenAIHttpEngine

        return OpenAIHttpEngine(
            options.url or DEFAULT_URL, block_size=options.block_size, capacity_blocks=options.kv_blocks
        )
    from zumik_cli.replay.engines.vllm_local import TINY_LLAMA, VllmLocalEngine

    if options.model is not None and options.dummy_model is not None:
        raise ZumikError("give either --model (a real model folder) or --dummy-model (a shipped config), not both")
    if options.dummy_model is not None:
        shipped = TINY_LLAMA.parent / options.dummy_model
        if not (shipped / "config.json").exists():
            names = sorted(p.name for p in TINY_LLAMA.parent.iterdir() if (p / "config.json").exists())
            raise ZumikError(f"no shipped model config {options.dummy_model!r}; shipped: {', '.join(names)}")
        return VllmLocalEngine(shipped, block_size=options.block_size, capacity_blocks=options.kv_blocks)
    return VllmLocalEngine(
        options.model,
        block_size=options.block_size,
        capacity_blocks=options.kv_blocks,
        dummy_weights=options.model is None,
    )


def replay(
    dataset: Dataset, options: ReplayOptions, *, engine: Engine | None = None, progress: Progress | None = None
) -> ReplayResult:
    """Replay the chosen requests, store one row each in the ``replays`` table, and summarise the agreement."""
    rows, usage_only = select_requests(dataset, options.release, options.policy, options.limit)
    requests = load_prompts(dataset, rows)
    engine = engine or build_engine(options)
    info = engine.info
    block_size = info.block_size or options.block_size
    requests = by_target(requests)
    prompts = namespaced(requests, block_size)
    predicted = np.zeros(len(prompts), dtype=np.int64)
    measured: list[int | None] = []
    binds = False
    for first, last in target_runs(requests):
        # every target is a cache of its own: a fresh engine cache and a fresh prediction for each
        if first:
            engine.reset()
        predicted[first:last] = predict(prompts[first:last], block_size, info.capacity_blocks)
        if info.capacity_blocks is not None and not binds:
            binds = bool((predict(prompts[first:last], block_size, None) != predicted[first:last]).any())
        for done in range(first, last):
            measured.append(engine.run([int(t) for t in prompts[done]]).cached_tokens)
            if progress:
                progress(done + 1, len(prompts))
    return _record(dataset, options, info, requests, predicted, measured, block_size, usage_only, binds)


def _record(
    dataset: Dataset,
    options: ReplayOptions,
    info: EngineInfo,
    requests: list[ReplayRequest],
    predicted_all: np.ndarray,
    measured_all: list[int | None],
    block_size: int,
    usage_only: int,
    capacity_binds: bool,
) -> ReplayResult:
    run_id = uuid.uuid4().hex[:12]
    bounded = info.capacity_blocks is not None
    rows = []
    for position, (request, pred, meas) in enumerate(zip(requests, predicted_all, measured_all, strict=True)):
        own_pred = max(int(pred) - block_size, 0)
        own_meas = None if meas is None else max(int(meas) - block_size, 0)
        rows.append(
            {
                "run_id": run_id,
                "trace_id": request.trace_id,
                "rid": request.rid,
                "position": position,
                "policy": options.policy,
                "alias_release": request.alias_release,
                "kv_compatibility_key": request.kvc,
                "engine": info.name,
                "engine_version": info.version,
                "device": info.device,
                "model": info.model,
                "block_size": block_size,
                "capacity_blocks": info.capacity_blocks,
                "prompt_tokens": len(request.tokens),
                "predicted_tokens": own_pred,
                "measured_tokens": own_meas,
                "reason": _reason(own_pred, own_meas, bounded),
                "evidence": "replayed",
            }
        )
    table = pa.Table.from_pylist(rows, schema=REPLAYS)
    summary = summarise(rows, info, options, usage_only)
    summary["engine"]["capacity_binds"] = capacity_binds
    summary["targets"] = _by_target(requests, rows)
    summary.update(_simulated(dataset, options.policy, [r.rid for r in requests]))
    publish(dataset.root, {"replays": with_run(table, summary)}, extra={"replay": summary})
    return ReplayResult(summary, table)


def _by_target(requests: list[ReplayRequest], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Predicted and measured tokens of each target the requests were replayed into, first replayed first."""
    targets: dict[str, dict[str, Any]] = {}
    for request, row in zip(requests, rows, strict=True):
        t = targets.setdefault(
            request.target,
            {"target": request.target, "requests": 0, "prompt_tokens": 0, "predicted_tokens": 0, "measured_tokens": 0},
        )
        t["requests"] += 1
        t["prompt_tokens"] += row["prompt_tokens"]
        t["predicted_tokens"] += row["predicted_tokens"]
        t["measured_tokens"] += row["measured_tokens"] or 0
    return list(targets.values())


SIMULATED_SQL = """
SELECT sum(realized_tokens), sum(prompt_tokens) FROM decisions
WHERE policy = ? AND list_contains(?, rid)
"""


def _simulated(dataset: Dataset, policy: str, rids: list[int]) -> dict[str, Any]:
    """The policy's own simulated reuse of the replayed requests (its targets' rules packs, provider tokens), where
    the dataset holds its decisions: the figure a measurement is set beside."""
    found = dataset.connect().execute(SIMULATED_SQL, [policy, rids]).fetchone()
    tokens, prompt = found if found else (None, None)
    return {
        "simulated_tokens": int(tokens) if tokens is not None and prompt else None,
        "simulated_rate": round(tokens / prompt, 6) if tokens is not None and prompt else None,
    }


def assumptions(options: ReplayOptions) -> dict[str, Any]:
    """Which requests were replayed and whose decisions they follow, as values and as the phrases shown with them.

    Replaying a simulated policy's decisions is a what-if: the engine measures routing that never happened."""
    phrases = [
        "recorded decisions" if options.policy == "recorded" else f"decisions of the simulated policy {options.policy}",
        f"requests of release {options.release}" if options.release else "requests of every release",
    ]
    if options.limit is not None:
        phrases.append(f"the first {options.limit:,} requests in time")
    return {
        "policy": options.policy,
        "release": options.release,
        "limit": options.limit,
        "what_if": options.policy != "recorded",
        "assumptions": phrases,
    }


def summarise(
    rows: list[dict[str, Any]], info: EngineInfo, options: ReplayOptions, usage_only: int = 0
) -> dict[str, Any]:
    known = [r for r in rows if r["measured_tokens"] is not None]
    prompt = sum(r["prompt_tokens"] for r in known)
    predicted = sum(r["predicted_tokens"] for r in known)
    measured = sum(r["measured_tokens"] for r in known)
    agree = sum(1 for r in known if r["measured_tokens"] == r["predicted_tokens"])
    disagree = [r for r in known if r["measured_tokens"] != r["predicted_tokens"]]
    return {
        "run_id": rows[0]["run_id"] if rows else None,
        "release": options.release,
        "policy": options.policy,
        "options": assumptions(options),
        "engine": {
            "name": info.name,
            "version": info.version,
            "device": info.device,
            "model": info.model,
            "block_size": info.block_size,
            "capacity_blocks": info.capacity_blocks,
            "capacity_confirmed": info.capacity_confirmed,
            "capacity_source": info.capacity_source,
        },
        "requests": len(rows),
        "measured_requests": len(known),
        "skipped_usage_only": usage_only,
        "prompt_tokens": prompt,
        "predicted_tokens": predicted,
        "measured_tokens": measured,
        "predicted_rate": round(predicted / prompt, 6) if prompt else None,
        "measured_rate": round(measured / prompt, 6) if prompt else None,
        "exact_agreement": round(agree / len(known), 6) if known else None,
        "token_error_pp": round((measured - predicted) / prompt * 100, 4) if prompt else None,
        "disagreements": [
            {
                "trace_id": r["trace_id"],
                "position": r["position"],
                "predicted_tokens": r["predicted_tokens"],
                "measured_tokens": r["measured_tokens"],
                "prompt_tokens": r["prompt_tokens"],
                "reason": r["reason"],
            }
            for r in disagree[:MAX_DISAGREEMENTS]
        ],
        "disagreements_total": len(disagree),
        "evidence": {"measured": "replayed", "predicted": "simulated"},
    }


def compare(
    dataset: Dataset,
    options: ReplayOptions,
    policies: list[str],
    *,
    engine: Engine | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Replay each policy's decisions on one engine (its cache emptied between policies) and set each measured
    reuse beside the prediction and beside the policy's simulated reuse of the same requests."""
    engine = engine or build_engine(options)
    rows = []
    for i, policy in enumerate(dict.fromkeys(policies)):
        if i:
            engine.reset()
        result = replay(dataset, replace(options, policy=policy), engine=engine, progress=progress)
        s = result.summary
        simulated_rate, measured_rate = s["simulated_rate"], s["measured_rate"]
        rows.append(
            {
                "policy": policy,
                "run_id": s["run_id"],
                "requests": s["requests"],
                "prompt_tokens": s["prompt_tokens"],
                "predicted_tokens": s["predicted_tokens"],
                "measured_tokens": s["measured_tokens"],
                "predicted_rate": s["predicted_rate"],
                "measured_rate": measured_rate,
                "simulated_rate": simulated_rate,
                "measured_minus_simulated_pp": (
                    round((measured_rate - simulated_rate) * 100, 4)
                    if measured_rate is not None and simulated_rate is not None
                    else None
                ),
                "exact_agreement": s["exact_agreement"],
            }
        )
    return {
        "release": options.release,
        "engine": engine.info.__dict__,
        "policies": rows,
        "evidence": {"measured": "replayed", "predicted": "simulated", "simulated": "simulated"},
        "notes": [
            "each policy's requests are replayed into the targets it chose, each target a cache of its own",
            "simulated reuse is the policy's own figure (its targets' rules packs, provider tokens); predicted and "
            "measured are the vLLM engine's (its block size and capacity, the engine's tokens)",
        ],
    }

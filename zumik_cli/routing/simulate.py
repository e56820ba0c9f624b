"""Routing-policy simulation: replay the workload in time order under each policy, one prefix cache per target.

Every policy sees the same requests in the same order and starts from cold caches; ``recorded`` (what happened)
always runs as the baseline, so its realized reuse is simulated the same way as everyone else's. Each decision is
kept as a resolution record with the inputs that recompute it (``explain``). Deterministic for a seed: the seed
only draws the latency samples, one per request and shared by every policy (common random numbers), so the
policies' differences come from their decisions, not from noise.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pyarrow as pa

from zumik_cli.analysis.prefix_cache import CacheRules, PrefixCache
from zumik_cli.core.errors import ZumikError
from zumik_cli.core.identity import hex_id
from zumik_cli.core.storage import local_or_uri
from zumik_cli.dataset.schema import DECISIONS
from zumik_cli.dataset.store import Dataset, writer_lock
from zumik_cli.routing.policies import POLICIES, Choice, PolicyInputs, TargetState
from zumik_cli.routing.releases import History, Prices, Release, Target
from zumik_cli.routing.scoring import score
from zumik_cli.routing.workload import WorkRequest, load_workload
from zumik_cli.rules.pack import RulesPack, get_pack, load_packs, pack_for
from zumik_cli.rules.prices import Rates, rates

SIMULATION_V = b"zumik-simulation-v1"
BASELINE = "recorded"
SESSION_GAPS = 16
NOTES = (
    "a policy decides with running caches that start cold and follow each target's rules pack; what its decisions "
    "reuse and cost is the waterfall's candidate on its routed traffic, so the recorded policy is the waterfall itself",
    "the recorded policy costs what was billed, with the cache reads the provider reported; a simulated policy "
    "reads its whole candidate, so its difference to recorded includes the reuse the provider missed",
    "a request keeps its recorded prefix chain and token counts on any target, and its recorded reply length",
    "latency is the release's profile: TTFT drawn between p50 and p95, plus per-token prefill and output time",
)


@dataclass(frozen=True)
class Resolution:
    """The release a request pinned and the targets it could go to; ``recorded`` is where it went."""

    release: Release | None
    source: str  # "trace", "resolved_by_time", or "" when unresolved
    reason: str  # why there is no release, when there is none
    recorded: Target
    candidates: dict[str, Target]


class Resolver:
    """Resolves releases and targets, and the cache rules of each target (rules packs looked up once)."""

    def __init__(self, history: History, packs: dict[str, RulesPack]) -> None:
        self.history = history
        self.packs = packs
        self._direct: dict[tuple[str, ...], Target] = {}
        self._rules: dict[str, CacheRules] = {}
        self.targets: dict[str, Target] = {}  # every target a request could go to, by key

    def resolve(self, req: WorkRequest) -> Resolution:
        release, source, reason = None, "", ""
        if not req.alias:
            reason = "no_alias_model_requested_directly"
        elif req.alias_release:
            release = self.history.find(req.alias_release)
            source, reason = ("trace", "") if release else ("", "release_not_in_history")
        else:
            release = self.history.resolve(req.alias, req.timestamp)
            source, reason = ("resolved_by_time", "") if release else ("", "no_release_of_alias_at_request_time")
        targets = release.targets if release else ()
        match = (req.provider, req.model, req.model_revision, req.engine, req.region)
        recorded = next((t for t in targets if t.matches(*match)), None) or self.direct(req)
        candidates = {t.key: t for t in targets}
        candidates.setdefault(recorded.key, recorded)
        self.targets.update(candidates)
        return Resolution(release, source, reason, recorded, candidates)

    def direct(self, req: WorkRequest) -> Target:
        """The target a request went to when no release lists it: list prices from its rules pack, no profile."""
        key = (req.provider, req.model, req.model_revision, req.engine, req.region)
        if key not in self._direct:
            pack = pack_for(req.provider, req.engine, self.packs)
            listed = rates(pack, req.model)
            prices = None
            if isinstance(listed, Rates):
                prices = Prices(
                    input=listed.input,
                    output=listed.output,
                    cache_read=listed.cache_read,
                    cache_write=listed.cache_write_5m,
                    cache_write_1h=listed.cache_write_1h,
                )
            self._direct[key] = Target(*key, prices=prices)
        return self._direct[key]

    def rules(self, target: Target) -> CacheRules:
        if target.key not in self._rules:
            pack = (
                get_pack(target.rules, self.packs)
                if target.rules
                else pack_for(target.provider, target.engine, self.packs)
            )
            self._rules[target.key] = CacheRules.from_pack(pack, target.model)
        return self._rules[target.key]


@dataclass(frozen=True)
class PolicySummary:
    """One policy's totals over the workload."""

    policy: str
    requests: int
    cost: float
    list_cost: float
    realized_tokens: int
    total_tokens: int
    cache_write_tokens: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    changed_decisions: int  # decisions whose target differs from the recorded one
    session_switches: int  # consecutive requests of a session sent to different targets
    evidence: str

    @property
    def realized_rate(self) -> float:
        return self.realized_tokens / self.total_tokens if self.total_tokens else 0.0

    @property
    def churn(self) -> float:
        return self.changed_decisions / self.requests if self.requests else 0.0

    def to_json(self, baseline: PolicySummary | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "policy": self.policy,
            "requests": self.requests,
            "cost": round(self.cost, 6),
            "list_cost": round(self.list_cost, 6),
            "realized_tokens": self.realized_tokens,
            "realized_rate": round(self.realized_rate, 6),
            "total_tokens": self.total_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "latency_p50_ms": _round(self.latency_p50_ms),
            "latency_p95_ms": _round(self.latency_p95_ms),
            "latency_ms": _round(self.latency_p50_ms),
            "churn": round(self.churn, 6),
            "changed_decisions": self.changed_decisions,
            "session_switches": self.session_switches,
            "evidence": self.evidence,
            "currency": "USD",
        }
        if baseline is not None:
            out["vs_recorded"] = {
                "cost": round(self.cost - baseline.cost, 6),
                "cost_share": round((self.cost - baseline.cost) / baseline.cost, 6) if baseline.cost else None,
                "realized_tokens": self.realized_tokens - baseline.realized_tokens,
                "realized_rate": round(self.realized_rate - baseline.realized_rate, 6),
            }
        return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


@dataclass
class Simulation:
    run_id: str
    seed: int
    history_digest: str
    requests: int
    evidence: str
    unresolved: dict[str, int]
    summaries: list[PolicySummary]
    decisions: dict[str, pa.Table] = field(repr=False)
    targets: dict[str, Target] = field(default_factory=dict, repr=False)

    def summary(self, policy: str) -> PolicySummary:
        return next(s for s in self.summaries if s.policy == policy)

    def to_json(self) -> dict[str, Any]:
        baseline = self.summary(BASELINE)
        return {
            "run_id": self.run_id,
            "seed": self.seed,
            "releases_digest": self.history_digest,
            "requests": self.requests,
            "evidence": self.evidence,
            "baseline": BASELINE,
            "unresolved": self.unresolved,
            "policies": [s.to_json(None if s.policy == BASELINE else baseline) for s in self.summaries],
            "notes": list(NOTES),
        }


def latency_score(seed: int, trace_id: str) -> float:
    """A standard-normal score per request from the seed alone: the same draw for every policy."""
    digest = hashlib.blake2b(f"{seed}:{trace_id}".encode(), digest_size=8).digest()
    u = (int.from_bytes(digest, "little") + 0.5) / 2**64
    return NormalDist().inv_cdf(u)


class _PolicyRun:
    """One policy's state through the workload: its caches, its sessions' last targets, its decisions."""

    def __init__(self, policy: str, resolver: Resolver, run_id: str, seed: int) -> None:
        self.policy, self.resolver, self.run_id, self.seed = policy, resolver, run_id, seed
        self.caches: dict[str, PrefixCache] = {}
        self.session_target: dict[tuple[str, str], str] = {}  # by (tenant, session id): a session is its tenant's
        self.rows: dict[str, list[Any]] = {name: [] for name in DECISIONS.names}
        self.latencies: list[float] = []
        self.totals = Counter[str]()
        self.money = {"cost": 0.0, "list_cost": 0.0}
        self.approximate = False

    def cache(self, target: Target) -> PrefixCache:
        if target.key not in self.caches:
            self.caches[target.key] = PrefixCache(self.resolver.rules(target))
        return self.caches[target.key]

    def decide(self, req: WorkRequest, res: Resolution, gaps: tuple[float, ...], z: float) -> None:
        probes = {key: self.cache(t).probe(req.prompt) for key, t in res.candidates.items()}
        offered = res.release.targets if res.release else (res.recorded,)
        inputs = PolicyInputs(
            prompt_tokens=req.prompt.tokens,
            output_tokens=req.output_tokens,
            session_target=self.session_target.get((req.tenant, req.session_id)) if req.session_id else None,
            session_gaps_s=gaps,
            recorded_target=res.recorded.key,
            targets=tuple(
                TargetState(
                    t.key,
                    probes[t.key].read_tokens,
                    probes[t.key].write_tokens,
                    probes[t.key].write_ttl,
                    probes[t.key].ttl_s,
                )
                for t in offered
            ),
        )
        if res.release is None:
            choice = Choice(res.recorded.key, res.reason)
        else:
            choice = POLICIES[self.policy](res.release, inputs)
        target, probe = res.candidates[choice.target], probes[choice.target]
        self.cache(target).commit(req.prompt, probe)
        prompt, output = req.prompt.tokens, req.output_tokens
        cost = target.cost(prompt, output, probe.read_tokens, probe.write_tokens, probe.write_ttl)
        list_cost = target.list_cost(prompt, output)
        latency = target.latency_ms(prompt, output, probe.read_tokens, z)
        if latency is None and target.key == res.recorded.key:
            latency = req.latency_ms
        if latency is not None:
            self.latencies.append(latency)
        if req.session_id:
            previous = self.session_target.get((req.tenant, req.session_id))
            self.totals["switches"] += int(previous is not None and previous != target.key)
            self.session_target[(req.tenant, req.session_id)] = target.key
        self.totals["requests"] += 1
        self.totals["realized"] += probe.read_tokens
        self.totals["writes"] += probe.write_tokens
        self.totals["prompt"] += prompt
        self.totals["changed"] += int(target.key != res.recorded.key)
        self.money["cost"] += cost
        self.money["list_cost"] += list_cost
        self.approximate = self.approximate or req.approximate
        release = res.release
        row = {
            "run_id": self.run_id,
            "policy": self.policy,
            "seed": self.seed,
            "trace_id": req.trace_id,
            "rid": req.rid,
            "snapshot_id": req.snapshot_id,
            "session_id": req.session_id,
            "tenant": req.tenant,
            "timestamp": req.timestamp,
            "requested_model": req.alias or req.model,
            "alias_release": release.id if release else (req.alias_release or None),
            "release_source": res.source or None,
            "release_digest": release.digest if release else None,
            "resolved_model": target.resolved_model,
            "resolved_target": target.key,
            "resolution_reason": choice.reason,
            "recorded_target": res.recorded.key,
            "policy_inputs": json.dumps(inputs.to_json(), separators=(",", ":")),
            "prompt_tokens": prompt,
            "output_tokens": output,
            "realized_tokens": probe.read_tokens,
            "cache_write_tokens": probe.write_tokens,
            "cost": cost,
            "list_cost": list_cost,
            "latency_ms": latency,
            "evidence": "estimated" if req.approximate else "simulated",
        }
        for name, value in row.items():
            self.rows[name].append(value)

    def summary(self) -> PolicySummary:
        p50, p95 = (float(v) for v in np.percentile(self.latencies, [50, 95])) if self.latencies else (None, None)
        return PolicySummary(
            policy=self.policy,
            requests=self.totals["requests"],
            cost=self.money["cost"],
            list_cost=self.money["list_cost"],
            realized_tokens=self.totals["realized"],
            total_tokens=self.totals["prompt"],
            cache_write_tokens=self.totals["writes"],
            latency_p50_ms=p50,
            latency_p95_ms=p95,
            changed_decisions=self.totals["changed"],
            session_switches=self.totals["switches"],
            evidence="estimated" if self.approximate else "simulated",
        )

    def table(self) -> pa.Table:
        return pa.table({name: pa.array(self.rows[name], DECISIONS.field(name).type) for name in DECISIONS.names})


def policy_order(policies: Sequence[str] | None) -> list[str]:
    """The baseline first, then the asked policies once each; every name must be in the registry."""
    asked = list(policies) if policies else [p for p in POLICIES if p != BASELINE]
    unknown = [p for p in asked if p not in POLICIES]
    if unknown:
        raise ZumikError(f"unknown policy {unknown[0]!r}: choose from {', '.join(POLICIES)}")
    return list(dict.fromkeys([BASELINE, *asked]))


def simulate_workload(
    requests: Iterable[WorkRequest],
    history: History,
    policies: Sequence[str] | None = None,
    *,
    seed: int = 0,
    packs: dict[str, RulesPack] | None = None,
    run_id: str = "",
) -> Simulation:
    """Run every policy over the requests (already in time order) in one pass; nothing is written."""
    names = policy_order(policies)
    resolver = Resolver(history, packs if packs is not None else load_packs())
    runs = [_PolicyRun(name, resolver, run_id, seed) for name in names]
    gaps: dict[tuple[str, str], deque[float]] = {}  # by (tenant, session id)
    last_seen: dict[tuple[str, str], float] = {}
    unresolved = Counter[str]()
    count = 0
    for req in requests:
        count += 1
        res = resolver.resolve(req)
        if res.release is None:
            unresolved[res.reason] += 1
        session_gaps: tuple[float, ...] = ()
        if req.session_id and req.timestamp is not None:
            recent = gaps.setdefault((req.tenant, req.session_id), deque(maxlen=SESSION_GAPS))
            if (req.tenant, req.session_id) in last_seen:
                recent.append(max(req.timestamp - last_seen[(req.tenant, req.session_id)], 0.0))
            last_seen[(req.tenant, req.session_id)] = req.timestamp
            session_gaps = tuple(recent)
        z = latency_score(seed, req.trace_id)
        for run in runs:
            run.decide(req, res, session_gaps, z)
    summaries = [run.summary() for run in runs]
    evidence = "estimated" if any(s.evidence == "estimated" for s in summaries) else "simulated"
    return Simulation(
        run_id=run_id,
        seed=seed,
        history_digest=history.digest,
        requests=count,
        evidence=evidence,
        unresolved=dict(sorted(unresolved.items())),
        summaries=summaries,
        decisions={run.policy: run.table() for run in runs},
        targets=dict(resolver.targets),
    )


def run_identity(dataset: Dataset, history: History, seed: int) -> str:
    """Names a simulation by what it read: the dataset's request parts, the history and the seed."""
    parts = sorted(dataset.manifest.parts.get("requests", []) + dataset.manifest.parts.get("request_blocks", []))
    return hex_id("sim_", SIMULATION_V, [*parts, history.digest, str(seed)])


def simulate(data: Path | str, history: History, policies: Sequence[str] | None = None, *, seed: int = 0) -> Simulation:
    """Simulate the dataset's workload under each policy and record the decisions and releases in the dataset.

    Refuses a history in which a release the dataset knows now has other content. Runs under the dataset's
    writer lock, so the decisions describe exactly the requests they were computed from.
    """
    from zumik_cli.routing.decisions import publish
    from zumik_cli.routing.release_store import refuse_changed

    data = local_or_uri(data)
    Dataset(data)  # a clear error for a folder that is not a dataset, before the lock creates anything
    with writer_lock(data):
        dataset = Dataset(data)
        refuse_changed(history, dataset)
        run_id = run_identity(dataset, history, seed)
        simulation = simulate_workload(load_workload(dataset), history, policies, seed=seed, run_id=run_id)
        if not simulation.requests:
            raise ZumikError(f"the dataset at {data} has no requests: ingest traces first with `zumik ingest`")
        simulation = score(dataset, simulation, simulation.targets)
        publish(data, history, simulation)
    return simulation

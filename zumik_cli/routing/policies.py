"""Routing policies: each picks one target of an alias release for one request.

A plain dict registry (``POLICIES``): adding a policy is one function here. A policy sees only what a gateway
could know when the request arrives, all of it in ``PolicyInputs`` (prompt and expected output size, the
session's last target and think-time gaps, and per target the cache it would find there), so that any decision
can be recomputed later from the release and the stored inputs. Every policy chooses among the same feasible
targets (the release's constraints, judged without cache), and ties go to the earlier target in the release.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from zumik_cli.routing.releases import Z95, Release, Target

FUTURE_GAPS = 16  # how many of a session's recent gaps ``reuse_aware`` weighs


@dataclass(frozen=True)
class TargetState:
    """What one target's cache holds for this request: usable read tokens, tokens it would write, their TTL."""

    key: str
    warm_tokens: int
    write_tokens: int
    write_ttl: str = "5m"
    ttl_s: float | None = None


@dataclass(frozen=True)
class PolicyInputs:
    prompt_tokens: int
    output_tokens: int
    session_target: str | None
    session_gaps_s: tuple[float, ...]
    recorded_target: str | None
    targets: tuple[TargetState, ...]

    def state(self, key: str) -> TargetState:
        return next((s for s in self.targets if s.key == key), TargetState(key, 0, 0))

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "targets": [asdict(s) for s in self.targets]}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> PolicyInputs:
        return cls(
            prompt_tokens=int(raw["prompt_tokens"]),
            output_tokens=int(raw["output_tokens"]),
            session_target=raw.get("session_target"),
            session_gaps_s=tuple(float(g) for g in raw.get("session_gaps_s") or ()),
            recorded_target=raw.get("recorded_target"),
            targets=tuple(TargetState(**s) for s in raw.get("targets") or ()),
        )


@dataclass(frozen=True)
class Choice:
    target: str  # a target key
    reason: str


Policy = Callable[[Release, PolicyInputs], Choice]


def feasible(release: Release, inputs: PolicyInputs) -> tuple[list[Target], str]:
    """Targets the release's constraints allow, judged cold (p95 latency without cache) so every policy shares them.

    Allowed providers and regions are never relaxed; when no allowed target meets ``max_latency_ms``, all allowed
    targets stay in and the reason says so.
    """
    c = release.constraints
    allowed = [t for t in release.targets if c.allows(t)] or list(release.targets)
    if c.max_latency_ms is None:
        return allowed, ""
    fast = []
    for t in allowed:
        p95 = t.latency_ms(inputs.prompt_tokens, inputs.output_tokens, read=0, z=Z95)
        if p95 is None or p95 <= c.max_latency_ms:
            fast.append(t)
    return (fast, "") if fast else (allowed, "_latency_constraint_relaxed")


def _argmin(targets: Sequence[Target], score: Callable[[Target], float]) -> Target:
    best, best_score = targets[0], score(targets[0])
    for t in targets[1:]:
        s = score(t)
        if s < best_score:
            best, best_score = t, s
    return best


def primary(release: Release, inputs: PolicyInputs) -> Choice:
    """The first target the constraints allow; the rest are failover (what most gateways configure)."""
    targets, note = feasible(release, inputs)
    return Choice(targets[0].key, "primary_target_under_policy" + note)


def cheapest(release: Release, inputs: PolicyInputs) -> Choice:
    """The lowest list price for this request, ignoring any cache."""
    targets, note = feasible(release, inputs)
    best = _argmin(targets, lambda t: t.list_cost(inputs.prompt_tokens, inputs.output_tokens))
    return Choice(best.key, "cheapest_list_price_under_policy" + note)


def lowest_expected_latency(release: Release, inputs: PolicyInputs) -> Choice:
    """The lowest median latency, counting the prefix already warm on each target."""
    targets, note = feasible(release, inputs)

    def latency(t: Target) -> float:
        ms = t.latency_ms(inputs.prompt_tokens, inputs.output_tokens, read=inputs.state(t.key).warm_tokens)
        return float("inf") if ms is None else ms

    return Choice(_argmin(targets, latency).key, "lowest_expected_latency_under_policy" + note)


def cache_affinity(release: Release, inputs: PolicyInputs) -> Choice:
    """Keep a prefix where it is warm, else keep the session where it was; a cold start goes to the cheapest."""
    targets, note = feasible(release, inputs)
    warm = max((inputs.state(t.key).warm_tokens for t in targets), default=0)
    if warm > 0:
        hot = [t for t in targets if inputs.state(t.key).warm_tokens == warm]
        stay = next((t for t in hot if t.key == inputs.session_target), hot[0])
        return Choice(stay.key, "warm_prefix_on_target" + note)
    session = next((t for t in targets if t.key == inputs.session_target), None)
    if session is not None:
        return Choice(session.key, "session_affinity" + note)
    best = _argmin(targets, lambda t: t.list_cost(inputs.prompt_tokens, inputs.output_tokens))
    return Choice(best.key, "cold_start_cheapest" + note)


def reuse_probability(gaps: Sequence[float], ttl_s: float | None) -> float:
    """Chance the session's next request comes within the TTL: its recent gaps, with a Laplace prior of 1/2."""
    recent = list(gaps)[-FUTURE_GAPS:]
    within = sum(1 for g in recent if ttl_s is None or g <= ttl_s)
    return (within + 1) / (len(recent) + 2)


def expected_cost(target: Target, inputs: PolicyInputs) -> float:
    """Cost now (cache reads at their price, writes at theirs) minus the saving the cached prefix may bring.

    The saving: the prefix this request leaves cached, read at the cache-read price instead of the input price
    by the session's next request, if that comes within the TTL.
    """
    state = inputs.state(target.key)
    now = target.cost(
        inputs.prompt_tokens, inputs.output_tokens, state.warm_tokens, state.write_tokens, state.write_ttl
    )
    if target.prices is None:
        return now
    cached_after = state.warm_tokens + state.write_tokens
    discount = max(target.prices.input - target.prices.cache_read, 0.0)
    return now - reuse_probability(inputs.session_gaps_s, state.ttl_s) * cached_after * discount / 1e6


def reuse_aware(release: Release, inputs: PolicyInputs) -> Choice:
    """The cheapest reliable path: lowest expected cost with cache reads, writes and TTL, under the constraints."""
    targets, note = feasible(release, inputs)
    best = _argmin(targets, lambda t: expected_cost(t, inputs))
    return Choice(best.key, "lowest_expected_cost_with_cache_under_policy" + note)


def recorded(release: Release, inputs: PolicyInputs) -> Choice:
    """What happened. The reason says whether the release's own policy would have made the same choice."""
    policy = POLICIES.get(release.policy)
    if policy is None or policy is recorded:
        return Choice(inputs.recorded_target or release.targets[0].key, "release_policy_unknown")
    own = policy(release, inputs)
    key = inputs.recorded_target or own.target
    if own.target == key:
        return Choice(key, own.reason)
    in_release = release.target(key) is not None
    return Choice(key, "recorded_differs_from_release_policy" if in_release else "recorded_target_not_in_release")


POLICIES: dict[str, Policy] = {
    "recorded": recorded,
    "primary": primary,
    "cheapest": cheapest,
    "lowest_expected_latency": lowest_expected_latency,
    "cache_affinity": cache_affinity,
    "reuse_aware": reuse_aware,
}

# What a release may name as its own policy: every policy but ``recorded``, which only describes the past.
RELEASE_POLICIES = frozenset(POLICIES) - {"recorded"}

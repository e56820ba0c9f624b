"""The alias release history behind `zumik synth` traffic, so that simulate and explain work on the samples.

Starts from the releases synth resolves its aliases through (``synth.alias_releases``: ids, aliases, times,
supersedes, the one target synth sends traffic to) and completes each into a full release: list prices from the
rules packs, latency profiles that follow synth's own provider model, failover alternatives that give routing
policies a real choice, and a release policy that picks the very target synth recorded (so every recorded
decision recomputes to itself). Alternatives: a second deployment of the same model (Bedrock 10% cheaper and
slower, Azure dearer and slower), and, in a later release, the target of the release it supersedes.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from zumik_cli.core.errors import RulesError
from zumik_cli.routing.release_derivation import write_history
from zumik_cli.routing.releases import Constraints, Latency, Prices, Release, Target
from zumik_cli.rules.pack import load_packs, pack_for
from zumik_cli.rules.prices import Unpriced, rates
from zumik_cli.synth.traffic import SynthConfig, alias_releases

P95_FACTOR = 1.39  # synth jitters each latency by lognormal(0, 0.2): p95 / p50 = exp(1.645 * 0.2)
MAX_LATENCY_MS = 60_000.0

# ttft ms, prefill tokens/s, ms per output token: the figures synth's provider model serves with
PROFILES = {
    "claude-sonnet-4-5": (600.0, 9_000.0, 18.0),
    "claude-haiku-4-5": (300.0, 16_000.0, 7.0),
    "gpt-4.1": (400.0, 10_000.0, 14.0),
    "gpt-4o-mini": (250.0, 20_000.0, 8.0),
}
DEFAULT_PROFILE = (500.0, 10_000.0, 15.0)
# a second deployment of the same model: provider, region, price factor, ttft factor
TWINS = {"anthropic": ("bedrock", "us-east-1", 0.9, 1.5), "openai": ("azure", "eastus", 1.1, 1.2)}


def _latency(model: str, ttft_factor: float = 1.0) -> Latency:
    ttft, prefill, output = PROFILES.get(model, DEFAULT_PROFILE)
    per_ktok = 1_000_000.0 / prefill
    return Latency(
        ttft_p50_ms=round(ttft * ttft_factor, 1),
        ttft_p95_ms=round(ttft * ttft_factor * P95_FACTOR, 1),
        input_ms_per_ktok=round(per_ktok, 3),
        cached_input_ms_per_ktok=round(per_ktok / 10, 3),
        output_ms_per_token=output,
    )


def _prices(provider: str, model: str, factor: float = 1.0) -> Prices:
    listed = rates(pack_for(provider, "", load_packs()), model)
    if isinstance(listed, Unpriced):
        raise RulesError(f"synth cannot price {model}: {listed.reason}; add its list prices to a rules pack")
    return Prices(
        input=round(listed.input * factor, 6),
        output=round(listed.output * factor, 6),
        cache_read=round(listed.cache_read * factor, 6),
        cache_write=round(listed.cache_write_5m * factor, 6),
        cache_write_1h=round(listed.cache_write_1h * factor, 6) if listed.cache_write_1h is not None else None,
    )


def _target(provider: str, model: str, revision: str) -> Target:
    return Target(provider, model, revision, prices=_prices(provider, model), latency=_latency(model))


def _twin(target: Target) -> Target:
    provider, region, price_factor, ttft_factor = TWINS[target.provider]
    return Target(
        provider,
        target.model,
        target.model_revision,
        region=region,
        prices=_prices(target.provider, target.model, price_factor),
        latency=_latency(target.model, ttft_factor),
    )


def _cheaper(a: Target, b: Target) -> bool:
    """Cheaper on both input and output list prices: then ``cheapest`` picks ``a`` for any request."""
    assert a.prices and b.prices
    return a.prices.input < b.prices.input and a.prices.output < b.prices.output


def _plan(primary: Target, previous: Release | None) -> tuple[str, list[Target], str]:
    """The release policy and targets, chosen so that the policy always picks ``primary``.

    A later release keeps the targets of the one it supersedes as failover: sessions already warm there can stay.
    """
    if previous is None:
        twin = _twin(primary)
        if primary.provider == "anthropic":
            note = "Bedrock twin: 10% cheaper, slower to first token; the release takes the faster path"
            return "lowest_expected_latency", [primary, twin], note
        return "cheapest", [primary, twin], "Azure twin: dearer and slower; the release takes the cheapest"
    kept = [t for t in previous.targets if t.key != primary.key]
    if previous.targets[0].model == primary.model:
        note = "revision change: the previous revision stays available as failover while sessions drain"
        twins = [_twin(primary)] if primary.provider in TWINS else []
        return "primary", [primary, *twins, *kept], note
    if all(_cheaper(primary, t) for t in kept):
        return "cheapest", [primary, *kept], "model change to a cheaper model; the previous targets stay listed"
    return "primary", [primary, *kept], "model change; the previous targets stay listed as failover"


def release_history(config: SynthConfig) -> list[Release]:
    """Full releases for the aliases `generate(config)` resolves, in creation order."""
    releases: list[Release] = []
    by_id: dict[str, Release] = {}
    for raw in alias_releases(config):
        first: dict[str, Any] = raw["targets"][0]
        primary = _target(first["provider"], first["model"], first.get("model_revision", ""))
        previous = by_id.get(raw["supersedes"]) if raw["supersedes"] else None
        policy, targets, note = _plan(primary, previous)
        releases.append(
            Release(
                id=raw["alias_release"],
                alias=raw["alias"],
                created_at=datetime.fromisoformat(raw["created_at"].replace("Z", "+00:00")),
                supersedes=raw["supersedes"],
                policy=policy,
                constraints=Constraints(
                    max_latency_ms=MAX_LATENCY_MS,
                    allowed_providers=tuple(sorted({t.provider for t in targets})),
                ),
                targets=tuple(targets),
                notes=f"zumik synth (seed {config.seed}): {note}",
            )
        )
        by_id[releases[-1].id] = releases[-1]
    return releases


def write_release_history(config: SynthConfig, path: str | Path) -> list[Release]:
    """Write the history as YAML (docs/releases.md) beside the traces; the same config gives the same bytes."""
    releases = release_history(config)
    write_history(Path(path), releases)
    return releases

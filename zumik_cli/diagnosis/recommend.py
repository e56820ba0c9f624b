"""Recommendations: the few changes worth most, each priced by re-running the waterfall on a changed dataset.

A change (``changes``) is applied to a copy of the recorded requests; the waterfall runs on that copy exactly as
on the original, and the saving is the difference between the two runs under one cost model (``simulated_cost``):
the candidate tokens a cache could have served, billed at list prices with the cache read and write multipliers.
Every figure is tagged ``simulated``; its evidence is the weakest of that and the token counts behind it.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zumik_cli.analysis.waterfall import Waterfall, WaterfallOptions, compute_waterfall, weakest
from zumik_cli.dataset.scenario import ScenarioBuilder
from zumik_cli.dataset.store import Dataset
from zumik_cli.diagnosis.changes import MAKERS, Change
from zumik_cli.rules.pack import resolve_packs
from zumik_cli.rules.prices import Cost, Tokens, Unpriced, price
from zumik_cli.rules.targets import register_target_rules

TOP = 3

# Per request: what a cache serves (candidate), what it writes (from the served prefix to the last breakpoint,
# on targets that write at breakpoints and only when that breakpoint reaches the minimum), and the rest at the
# full input price. Usage-only requests have nothing a change could alter and are left out.
COST_SQL = """
WITH rows AS (
    SELECT s.rid, s.provider, s.engine, s.model, s.write_ttl, s.total, s.candidate, s.scale, k.gran_kind, k.min_tokens,
           CASE WHEN s.ts IS NOT NULL THEN strftime(to_timestamp(s.ts), '%Y-%m-%d') END AS day
    FROM wf s
    JOIN rc_rules k ON k.provider IS NOT DISTINCT FROM s.provider AND k.engine IS NOT DISTINCT FROM s.engine
                   AND k.model IS NOT DISTINCT FROM s.model
    WHERE NOT s.usage_only
), marks AS (
    -- only targets that write at breakpoints need the request's own marks
    SELECT w.rid, least(round(coalesce(list_max(r.breakpoints), r.prompt_tokens_counted) * w.scale)::BIGINT, w.total)
               AS last_mark
    FROM rows w JOIN requests r USING (rid)
    WHERE w.gran_kind = 'breakpoints'
)
SELECT provider, engine, model, write_ttl, day, count(*) AS requests, sum(total) AS total, sum(candidate) AS candidate,
       sum(CASE WHEN gran_kind = 'breakpoints' AND last_mark >= min_tokens
                THEN greatest(last_mark - candidate, 0) ELSE 0 END) AS written
FROM rows LEFT JOIN marks USING (rid)
GROUP BY ALL
-- the groups' costs are added up in Python in the order they come: one order, so the total's last digit is the same
-- from run to run
ORDER BY provider, engine, model, write_ttl, day
"""


@dataclass(frozen=True)
class SimulatedCost:
    """Input-side cost of the requests with content under one waterfall run: the common yardstick of changes.

    Money is None when no request is priced (``unpriced_reasons`` says why), never zero."""

    requests: int
    total_tokens: int
    candidate_tokens: int
    written_tokens: int
    cost_usd: float | None
    write_cost_usd: float | None
    unpriced_requests: int
    unpriced_reasons: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in dataclasses.asdict(self).items()}


def simulated_cost(dataset: Dataset, waterfall: Waterfall, options: WaterfallOptions | None = None) -> SimulatedCost:
    """Price one waterfall run (``rules.prices.price``): reads at the read multiplier, writes at the TTL's write
    multiplier, the rest at the full input price."""
    options = options or WaterfallOptions()
    packs, forced = resolve_packs(options.rules, options.rules_files)
    con = dataset.connect()
    waterfall.per_request.register(con, "wf")
    chosen = register_target_rules(con, "rc_rules", packs, forced)
    requests = total = candidate = written = unpriced = 0
    cost, reasons = Cost(), set()
    for provider, engine, model, write_ttl, day, n, tot, cand, wrote in con.execute(COST_SQL).fetchall():
        tot, cand, wrote = int(tot), int(cand), int(wrote)
        requests, total, candidate, written = requests + n, total + tot, candidate + cand, written + wrote
        tokens = Tokens(
            input=max(tot - cand - wrote, 0),
            cache_read=cand,
            cache_write_5m=0 if write_ttl == "1h" else wrote,
            cache_write_1h=wrote if write_ttl == "1h" else 0,
        )
        priced = price(chosen[(provider, engine, model)], model or "", tokens, day)
        if isinstance(priced, Unpriced):
            unpriced += n
            reasons.add(priced.reason)
            continue
        cost += priced
    if requests and unpriced == requests:
        return SimulatedCost(requests, total, candidate, written, None, None, unpriced, tuple(sorted(reasons)))
    return SimulatedCost(
        requests,
        total,
        candidate,
        written,
        cost.billed_input_usd,
        cost.cache_write_usd,
        unpriced,
        tuple(sorted(reasons)),
    )


@dataclass(frozen=True)
class Recommendation:
    """One change with its simulated saving in tokens and money, ranked against the others."""

    id: str
    title: str
    action: str
    scope: dict[str, Any]
    tokens_saved: int
    money_saved_usd: float | None
    extra_write_cost_usd: float | None
    baseline: SimulatedCost
    after: SimulatedCost
    evidence: str
    assumptions: list[str]
    tag: str = "simulated"
    money_basis: str = "list prices; not reconciled with an invoice"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "action": self.action,
            "tag": self.tag,
            "evidence": self.evidence,
            "tokens_saved": self.tokens_saved,
            "money_saved_usd": None if self.money_saved_usd is None else round(self.money_saved_usd, 6),
            "extra_write_cost_usd": None if self.extra_write_cost_usd is None else round(self.extra_write_cost_usd, 6),
            "money_basis": self.money_basis,
            "scope": {**self.scope, "sessions": len(self.scope.get("sessions", [])),
                      "session_ids": self.scope.get("sessions", [])[:20]},
            "baseline": self.baseline.to_json(),
            "after": self.after.to_json(),
            "assumptions": self.assumptions,
        }  # fmt: skip

    @property
    def worth(self) -> tuple[float, int]:
        return (self.money_saved_usd or 0.0, self.tokens_saved)


@dataclass(frozen=True)
class Recommendations:
    """Changes worth making, best first; ``considered`` holds those simulated that would not save anything."""

    ranked: list[Recommendation]
    considered: list[Recommendation]
    not_applicable: list[str]
    baseline: SimulatedCost
    reconciliation: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def top(self, n: int = TOP) -> list[Recommendation]:
        return self.ranked[:n]

    def to_json(self, limit: int | None = None) -> dict[str, Any]:
        ranked = self.ranked if limit is None else self.ranked[:limit]
        return {
            "recommendations": [r.to_json() for r in ranked],
            "considered": [r.to_json() for r in self.considered],
            "not_applicable": self.not_applicable,
            "baseline": self.baseline.to_json(),
            "reconciliation": self.reconciliation,
            "notes": self.notes,
            "method": "Each change is applied to a copy of the recorded requests and the waterfall is re-run on it; "
            "the saving is the difference in candidate tokens and in simulated input cost (list prices with the "
            "cache read and write multipliers) between the two runs.",
        }


def compute_recommendations(
    dataset: Dataset,
    options: WaterfallOptions | None = None,
    *,
    only: tuple[str, ...] = (),
    reconciliation: dict[str, Any] | None = None,
    baseline: Waterfall | None = None,
) -> Recommendations:
    """Simulate every change that applies to the dataset and rank those that save tokens or money.

    ``baseline`` is a waterfall of this dataset under the same rules, TTL and capacity options (its breakdowns and
    curves do not matter), passed to avoid computing it twice.
    """
    options = dataclasses.replace(options or WaterfallOptions(), by=(), curves=False)
    packs, forced = resolve_packs(options.rules, options.rules_files)
    ttl_fixed = options.ttl_seconds is not None or options.ttl_none
    base = baseline or compute_waterfall(dataset, options)
    base_cost = simulated_cost(dataset, base, options)
    evidence = weakest(["simulated", base.summary["candidate"]["evidence"]])
    basis = _money_basis(reconciliation)
    results, not_applicable = [], []
    with tempfile.TemporaryDirectory(prefix="zumik-recommend-") as scratch:
        builder = ScenarioBuilder(dataset, Path(scratch))
        con = dataset.connect()
        register_target_rules(con, "ch_packs", packs, forced)
        for name, make in MAKERS.items():
            if only and name not in only:
                continue
            change = make(con, builder, packs, ttl_fixed)
            if change is None:
                not_applicable.append(name)
                continue
            results.append(_priced(change, base_cost, options, evidence, basis))
    ranked = sorted((r for r in results if _saves(r)), key=lambda r: r.worth, reverse=True)
    considered = [r for r in results if not _saves(r)]
    notes = []
    if base_cost.unpriced_requests:
        notes.append(
            f"{base_cost.unpriced_requests} of {base_cost.requests} requests are unpriced, and money leaves them out: "
            + "; ".join(base_cost.unpriced_reasons)
        )
    return Recommendations(ranked, considered, not_applicable, base_cost, reconciliation, notes)


def _priced(
    change: Change, base: SimulatedCost, options: WaterfallOptions, evidence: str, basis: str
) -> Recommendation:
    after_run = compute_waterfall(change.scenario, options)
    after = simulated_cost(change.scenario, after_run, options)
    return Recommendation(
        id=change.id,
        title=change.title,
        action=change.action,
        scope=change.scope,
        tokens_saved=after.candidate_tokens - base.candidate_tokens,
        money_saved_usd=base.cost_usd - after.cost_usd
        if base.cost_usd is not None and after.cost_usd is not None
        else None,
        extra_write_cost_usd=after.write_cost_usd - base.write_cost_usd
        if base.write_cost_usd is not None and after.write_cost_usd is not None
        else None,
        baseline=base,
        after=after,
        evidence=evidence,
        assumptions=change.assumptions,
        money_basis=basis,
    )


def _saves(rec: Recommendation) -> bool:
    if rec.money_saved_usd is not None:
        return rec.money_saved_usd > 0
    return rec.tokens_saved > 0


def _money_basis(reconciliation: dict[str, Any] | None) -> str:
    if not reconciliation:
        return "list prices; not reconciled with an invoice"
    tolerance = reconciliation["tolerance"]
    if reconciliation["status"] == "reconciled":
        return f"list prices, reconciled with the invoice within {tolerance:.0%}"
    return f"list prices; NOT reconciled with the invoice (outside {tolerance:.0%})"

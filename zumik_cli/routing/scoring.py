"""Scoring a simulation with the waterfall: what each policy's routing would have reused, by the one cache model.

A policy decides with what a gateway could know at the time (``simulate``'s running caches); what its decisions
are worth is then computed the way every other figure is. Each policy's traffic is a what-if copy of the dataset
(``Scenario``) in which every request carries the target the policy chose, and the waterfall runs on it unchanged:
the policy's simulated reuse is that waterfall's candidate, request by request, on the same token counts
(reported totals where the log has them). The recorded policy is the dataset itself, so its reuse is exactly the
waterfall's candidate and its cost exactly the billed cost.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from zumik_cli.analysis.waterfall import Waterfall, WaterfallOptions, compute_waterfall
from zumik_cli.core import identity
from zumik_cli.dataset.scenario import ScenarioBuilder
from zumik_cli.dataset.store import Dataset
from zumik_cli.routing.releases import Target

if TYPE_CHECKING:
    from zumik_cli.routing.simulate import PolicySummary, Simulation

BASELINE = "recorded"
# The waterfall a policy is scored with: recorded rules per target, no what-if, no breakdowns or curves.
SCORING = WaterfallOptions(curves=False, capacities=())

ROUTED_SQL = """
SELECT r.* REPLACE (
           coalesce(d.provider, r.provider) AS provider,
           coalesce(d.model, r.model) AS model,
           coalesce(d.model_revision, r.model_revision) AS model_revision,
           coalesce(d.engine, r.engine) AS engine,
           coalesce(d.region, r.region) AS region,
           coalesce(d.kv_compatibility_key, r.kv_compatibility_key) AS kv_compatibility_key,
           coalesce(d.target_key, r.target_key) AS target_key)
FROM requests r LEFT JOIN routed d USING (rid)
"""


def score(dataset: Dataset, simulation: Simulation, targets: Mapping[str, Target]) -> Simulation:
    """The simulation with every policy's reuse, totals and cost taken from the waterfall of its routed traffic."""
    baseline = compute_waterfall(dataset, SCORING)
    with tempfile.TemporaryDirectory(prefix="zumik-routed-") as scratch:
        builder = ScenarioBuilder(dataset, Path(scratch))
        summaries, decisions = [], {}
        for summary in simulation.summaries:
            table = simulation.decisions[summary.policy]
            waterfall = baseline if summary.policy == BASELINE else _routed(dataset, builder, table, targets, baseline)
            decisions[summary.policy] = scored = _scored(table, waterfall, targets, summary.policy == BASELINE)
            summaries.append(_summary(summary, scored))
    return replace(simulation, summaries=summaries, decisions=decisions)


def _routed(
    dataset: Dataset, builder: ScenarioBuilder, table: pa.Table, targets: Mapping[str, Target], baseline: Waterfall
) -> Waterfall:
    """The waterfall of the dataset with each request moved to the target the policy chose for it; a policy that
    moved nothing routed the recorded traffic, whose waterfall is ``baseline``."""
    moved = pc.not_equal(table["resolved_target"], table["recorded_target"])
    if not pc.any(moved).as_py():
        return baseline
    con = dataset.connect()
    kept = {
        rid: (quantization, tenant, family)
        for rid, quantization, tenant, family in con.execute(
            "SELECT rid, quantization, tenant, materialization_family FROM requests"
        ).fetchall()
    }
    rows = []
    chosen = table.filter(moved)
    for rid, key in zip(chosen["rid"].to_pylist(), chosen["resolved_target"].to_pylist(), strict=True):
        t = targets[key]
        quantization, tenant, family = kept[rid]
        kv = identity.KvTarget(
            t.provider, t.model, t.model_revision, quantization or "", t.engine, t.region, tenant or "", family or ""
        )
        rows.append(
            {
                "rid": rid,
                "provider": t.provider,
                "model": t.model,
                "model_revision": t.model_revision,
                "engine": t.engine,
                "region": t.region,
                "kv_compatibility_key": identity.kv_compatibility_key(kv),
                "target_key": identity.target_key(kv),
            }
        )
    con.register("routed", pa.Table.from_pylist(rows))
    scenario = builder.build(f"routed-{len(rows)}-{id(table)}", con, replace_sql={"requests": ROUTED_SQL})
    return compute_waterfall(scenario, SCORING)


def _scored(table: pa.Table, waterfall: Waterfall, targets: Mapping[str, Target], recorded: bool) -> pa.Table:
    """The decisions with each request's prompt, reuse, writes and cost taken from the waterfall's own row."""
    shown = ["rid", "total", "candidate", "realized", "writes", "write_ttl"]
    stages = waterfall.per_request.to_table(columns=shown)
    rows = {
        rid: (total, candidate, realized, writes, write_ttl)
        for rid, total, candidate, realized, writes, write_ttl in zip(
            *(stages[c].to_pylist() for c in shown), strict=True
        )
    }
    prompt, reused, written, cost = [], [], [], []
    columns = ("rid", "resolved_target", "prompt_tokens", "output_tokens", "cache_write_tokens")
    for rid, key, counted, output, probe_writes in zip(*(table[c].to_pylist() for c in columns), strict=True):
        total, candidate, realized, writes, write_ttl = rows[rid]
        read = int(candidate or 0)
        if recorded:
            # what was billed: the reads and writes the provider reported, as the waterfall's money counts them
            billed_read, write = int(realized or 0), int(writes or 0)
        else:
            # a simulated target writes what its running cache would have written, in the request's own units
            billed_read = read
            write = min(round(probe_writes * total / counted) if counted else 0, max(total - read, 0))
        prompt.append(int(total))
        reused.append(read)
        written.append(write)
        cost.append(targets[key].cost(int(total), int(output), billed_read, write, write_ttl or "5m"))
    for name, values in (
        ("prompt_tokens", prompt),
        ("realized_tokens", reused),
        ("cache_write_tokens", written),
        ("cost", cost),
    ):
        index = table.schema.get_field_index(name)
        table = table.set_column(index, table.schema.field(index), pa.array(values, table.schema.field(index).type))
    return table


def _summary(summary: PolicySummary, table: pa.Table) -> PolicySummary:
    """The policy's totals as sums of its scored rows (so that the rows add up to them)."""
    return replace(
        summary,
        total_tokens=int(pc.sum(table["prompt_tokens"]).as_py() or 0),
        realized_tokens=int(pc.sum(table["realized_tokens"]).as_py() or 0),
        cache_write_tokens=int(pc.sum(table["cache_write_tokens"]).as_py() or 0),
        cost=float(pc.sum(table["cost"]).as_py() or 0.0),
    )

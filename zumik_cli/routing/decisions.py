"""Resolution records in the dataset: one ``decisions`` part per policy, published through the manifest.

A policy's latest simulation replaces its previous part in one atomic manifest write, so readers always see
exactly one decision per request per policy; the replaced part is retired, and stays on disk while a reader of an
older manifest may list it. Releases the dataset has not seen are recorded beside them. The caller holds the
writer lock.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from zumik_cli.dataset.store import Dataset, publish_tables, read_manifest, remove_orphans
from zumik_cli.routing.release_store import new_release_rows, recorded_history
from zumik_cli.routing.releases import History

if TYPE_CHECKING:
    from zumik_cli.routing.simulate import Simulation

SIMULATIONS = "simulations"  # manifest entry: policy -> the run that wrote its decisions


def publish(root: Path | str, history: History, simulation: Simulation) -> list[str]:
    """Write the simulation's decisions (and new releases) as parts, then publish them with one manifest write."""
    manifest = read_manifest(root)
    remove_orphans(root, manifest)
    run = uuid.uuid4().hex[:12]
    parts = {f"decisions/part-{run}-{policy}.parquet": table for policy, table in simulation.decisions.items()}
    recorded = Dataset(root)
    releases = new_release_rows(history, recorded_history(recorded), history.source)
    recorded.close()
    if releases.num_rows:
        parts[f"releases/part-{run}.parquet"] = releases
    written = list(parts)
    runs: dict[str, Any] = dict(manifest.extra.get(SIMULATIONS, {}))
    # a replaced part is retired, not deleted: a report that read the previous manifest still reads it
    manifest.retire([runs[p]["part"] for p in simulation.decisions if p in runs])
    manifest.parts["decisions"] = manifest.parts.get("decisions", []) + [
        p for p in written if p.startswith("decisions/")
    ]
    manifest.parts["releases"] = manifest.parts.get("releases", []) + [p for p in written if p.startswith("releases/")]
    summaries = {row["policy"]: row for row in simulation.to_json()["policies"]}
    for part in written:
        if part.startswith("decisions/"):
            policy = _policy_of(part, run)
            runs[policy] = {
                "part": part,
                "run_id": simulation.run_id,
                "seed": simulation.seed,
                "releases_digest": simulation.history_digest,
                "requests": simulation.requests,
                "summary": summaries[policy],
            }
    manifest.extra[SIMULATIONS] = runs
    publish_tables(root, manifest, parts)
    return written


def _policy_of(part: str, run: str) -> str:
    return part.removeprefix(f"decisions/part-{run}-").removesuffix(".parquet")


DECISION_SQL = "SELECT * FROM decisions WHERE trace_id = ? AND policy = ?"


def find_decision(
    dataset: Dataset, trace_id: str, policy: str, con: duckdb.DuckDBPyConnection | None = None
) -> dict[str, Any] | None:
    """The stored resolution record of one request under one policy, with its inputs parsed."""
    cursor = (con or dataset.connect()).execute(DECISION_SQL, [trace_id, policy])
    names = [d[0] for d in cursor.description]
    row = cursor.fetchone()
    if row is None:
        return None
    record = dict(zip(names, row, strict=True))
    record["policy_inputs"] = json.loads(record["policy_inputs"]) if record["policy_inputs"] else {}
    return record


def policy_comparison(dataset: Dataset) -> list[dict[str, Any]]:
    """The last comparison row of each simulated policy (``recorded`` first), as `zumik simulate --json` prints
    them: what a report shows without simulating again."""
    runs = dataset.manifest.extra.get(SIMULATIONS, {})
    rows = [runs[p]["summary"] for p in runs if "summary" in runs[p]]
    return sorted(rows, key=lambda row: row["policy"] != "recorded")

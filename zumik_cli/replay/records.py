"""Replay runs as the dataset keeps them, for everything that shows a measurement without replaying again.

Each `zumik replay` publishes one ``replays`` part: a row per request, and the run's summary (release, policy,
targets, capacity, predicted and measured tokens, the policy's simulated figure for the same requests) in that
part's Parquet metadata. Runs come back in the order they were published, the latest last, so "the latest replay
of a policy" is the last one listed.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from zumik_cli.dataset.store import Dataset

RUN_KEY = b"zumik.replay_run"


def with_run(table: pa.Table, summary: dict[str, Any]) -> pa.Table:
    """The run's rows carrying its summary, written with them into the one part the run publishes."""
    return table.replace_schema_metadata({**(table.schema.metadata or {}), RUN_KEY: json.dumps(summary)})


def replay_runs(dataset: Dataset) -> list[dict[str, Any]]:
    """The summary of every replay run in the dataset, oldest first (a part written before runs kept their summary
    has none and is left out)."""
    runs = []
    for part in dataset.parts("replays"):
        metadata = pq.read_schema(part).metadata or {}
        if RUN_KEY in metadata:
            runs.append(json.loads(metadata[RUN_KEY]))
    return runs


def latest_by_policy(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each policy's latest replay: the measured figure a policy comparison shows beside its simulated one."""
    return {run["policy"]: run for run in runs}


def whole_traffic(run: dict[str, Any]) -> bool:
    """A replay of every recorded request (no release, policy or limit chosen): the traffic the capacity curve is
    drawn over, so its measurement is a point on that curve."""
    options = run.get("options", {})
    return run["policy"] == "recorded" and options.get("release") is None and options.get("limit") is None


def capacity_points(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One measured point per replayed capacity of the whole traffic (the latest run at each), smallest first."""
    points: dict[int, dict[str, Any]] = {}
    for run in runs:
        engine = run["engine"]
        if not whole_traffic(run) or not engine.get("capacity_blocks") or not engine.get("block_size"):
            continue
        capacity = int(engine["capacity_blocks"]) * int(engine["block_size"])
        points[capacity] = {
            "capacity_tokens": capacity,
            "capacity_blocks": engine["capacity_blocks"],
            "block_size": engine["block_size"],
            "measured_rate": run["measured_rate"],
            "predicted_rate": run["predicted_rate"],
            "requests": run["measured_requests"],
            "engine": engine["name"],
            "capacity_confirmed": engine.get("capacity_confirmed", True),
            "run_id": run["run_id"],
            "evidence": "replayed",
        }
    return [points[c] for c in sorted(points)]

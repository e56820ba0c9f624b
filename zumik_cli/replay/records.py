"""Replay runs as the dataset keeps them, for everything that shows a measurement without replaying again.

Each `zumik replay` publishes one ``replays`` part: a row per request, and the run's summary (release, policy,
targets, capacity and where it came from, predicted and measured tokens, the policy's simulated figure for the same
requests) in that part's Parquet metadata. Runs come back in the order they were published, the latest last, so
"the latest replay of a policy" is the last one listed.
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


def replayed_on(run: dict[str, Any]) -> dict[str, Any]:
    """The engine and cache a run measured on: its name and device, block size, capacity in blocks and tokens, where
    that capacity came from (``capacity_source``; "unknown" for a run recorded before runs said) and whether it
    cost any predicted reuse (``capacity_binds``; an allocated cache that never does is unbounded in practice)."""
    engine = run["engine"]
    blocks, block_size = engine.get("capacity_blocks"), engine.get("block_size")
    return {
        "engine": engine["name"],
        "device": engine.get("device"),
        "block_size": block_size,
        "capacity_blocks": blocks,
        "capacity_tokens": int(blocks) * int(block_size) if blocks and block_size else None,
        "capacity_source": engine.get("capacity_source") or "unknown",
        "capacity_binds": engine.get("capacity_binds"),
    }


def on_curve(replayed: dict[str, Any]) -> bool:
    """Whether a replay's capacity was one someone chose or the server confirmed: only then is its measurement a
    point at that capacity. What an engine allocated by itself is an accident of its memory, not a capacity."""
    return replayed["capacity_tokens"] is not None and replayed["capacity_source"] in MEASURED_CAPACITIES


MEASURED_CAPACITIES = ("chosen", "confirmed")


def capacity_points(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One measured point per replayed capacity of the whole traffic (the latest run at each), smallest first.

    ``on_curve`` marks the points drawn at their capacity; the others (an engine's own allocation, a run that did
    not record where its capacity came from) are kept to be compared with the unbounded figure instead."""
    points: dict[tuple[int, bool], dict[str, Any]] = {}
    for run in runs:
        replayed = replayed_on(run)
        capacity = replayed["capacity_tokens"]
        if not whole_traffic(run) or capacity is None:
            continue
        drawn = on_curve(replayed)
        points[capacity, drawn] = {
            **replayed,
            "on_curve": drawn,
            "measured_rate": run["measured_rate"],
            "predicted_rate": run["predicted_rate"],
            "requests": run["measured_requests"],
            "capacity_confirmed": run["engine"].get("capacity_confirmed", True),
            "run_id": run["run_id"],
            "evidence": "replayed",
        }
    return [points[key] for key in sorted(points)]

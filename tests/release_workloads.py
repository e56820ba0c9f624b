"""Small hand-built workloads and release histories for the release, policy, simulate and explain tests.

Records are zumik JSONL written here and ingested with the real `zumik_cli.ingest.pipeline.ingest`; releases are YAML
documents written to a real file. Targets use made-up providers (no rules pack claims them, so the ``ideal`` pack
applies: no TTL, no minimum, token granularity) unless a test names a pack.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from zumik_cli.ingest.pipeline import ingest

BASE = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def when(seconds: float) -> str:
    return (BASE + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def system_prompt(topic: str, words: int = 600) -> str:
    return f"You are the {topic} agent. " + " ".join(f"{topic} rule {i}." for i in range(words))


def session(
    name: str,
    topic: str,
    start_s: float,
    routes: list[tuple[str, str]],
    *,
    alias: str | None = "chat",
    release: str | None = None,
    tenant: str = "acme",
    gap_s: float = 10.0,
) -> list[dict[str, Any]]:
    """One session: each call resends the conversation so far plus one new user turn; ``routes`` gives, per call,
    the (provider, model) the trace says it went to."""
    records, messages = [], []
    for step, (provider, model) in enumerate(routes):
        messages.append({"role": "user", "content": f"Turn {step} of {name}: " + " ".join(["please"] * 40)})
        record: dict[str, Any] = {
            "zumik": 1,
            "trace_id": f"{name}-{step}",
            "timestamp": when(start_s + step * gap_s),
            "provider": provider,
            "model": model,
            "tenant": tenant,
            "session_id": name,
            "system": system_prompt(topic),
            "messages": [dict(m) for m in messages],
            "output": {"role": "assistant", "content": f"Answer {step} of {name}."},
        }
        if alias:
            record["alias"] = alias
        if release:
            record["alias_release"] = release
        records.append(record)
        messages.append({"role": "assistant", "content": f"Answer {step} of {name}."})
    return records


def ingest_records(folder: Path, records: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    traces = folder / "traces.jsonl"
    records = sorted(records, key=lambda r: r["timestamp"])
    traces.write_text("".join(json.dumps(r) + "\n" for r in records))
    data = folder / "data"
    ingest([traces], data)
    return data


def target(
    provider: str,
    model: str,
    *,
    prices: tuple[float, float, float, float] = (1.0, 2.0, 0.1, 1.25),
    ttft: tuple[float, float] = (200.0, 300.0),
    input_ms: float = 10.0,
    cached_ms: float = 1.0,
    output_ms: float = 10.0,
    revision: str = "",
    region: str = "",
    rules: str = "",
) -> dict[str, Any]:
    """A target document: prices are (input, output, cache read, cache write) per Mtok."""
    doc: dict[str, Any] = {
        "provider": provider,
        "model": model,
        "prices_per_mtok": dict(zip(("input", "output", "cache_read", "cache_write"), prices, strict=True)),
        "latency": {
            "ttft_ms": {"p50": ttft[0], "p95": ttft[1]},
            "input_ms_per_ktok": input_ms,
            "cached_input_ms_per_ktok": cached_ms,
            "output_ms_per_token": output_ms,
        },
    }
    for key, value in (("model_revision", revision), ("region", region), ("rules", rules)):
        if value:
            doc[key] = value
    return doc


def release(
    release_id: str,
    created_s: float,
    targets: list[dict[str, Any]],
    *,
    alias: str = "chat",
    policy: str = "primary",
    supersedes: str | None = None,
    constraints: dict[str, Any] | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": release_id,
        "alias": alias,
        "created_at": when(created_s),
        "supersedes": supersedes,
        "policy": policy,
        "targets": targets,
    }
    if constraints:
        doc["constraints"] = constraints
    return doc


def write_history(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text("# test history\n" + "".join("---\n" + yaml.safe_dump(d, sort_keys=False) for d in docs))
    return path


FAST = ("alpha", "m-fast")
CHEAP = ("beta", "m-cheap")
CACHEY = ("gamma", "m-cachey")
BUDGET = ("delta", "m-budget")


def fast_target(**kw: Any) -> dict[str, Any]:
    return target(*FAST, prices=(5.0, 10.0, 0.5, 6.25), ttft=(100.0, 150.0), input_ms=10.0, **kw)


def cheap_target(**kw: Any) -> dict[str, Any]:
    return target(*CHEAP, prices=(1.0, 2.0, 1.0, 1.0), ttft=(2000.0, 3000.0), input_ms=50.0, cached_ms=50.0, **kw)


def cachey_target(**kw: Any) -> dict[str, Any]:
    return target(*CACHEY, prices=(10.0, 10.0, 1.0, 10.0), ttft=(1000.0, 1500.0), input_ms=50.0, **kw)


def budget_target(**kw: Any) -> dict[str, Any]:
    return target(*BUDGET, prices=(6.0, 10.0, 6.0, 6.0), ttft=(1000.0, 1500.0), input_ms=50.0, **kw)


def decisions(data: Path, policy: str) -> list[dict[str, Any]]:
    from zumik_cli.dataset.store import Dataset

    cursor = (
        Dataset(data)
        .connect()
        .execute("SELECT * FROM decisions WHERE policy = ? ORDER BY timestamp, trace_id", [policy])
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def key(provider_model: tuple[str, str]) -> str:
    return f"{provider_model[0]}/{provider_model[1]}"


_SYNTH: dict[tuple[int, int], tuple[Path, Path]] = {}


def synth_dataset(sessions: int = 40, seed: int = 0) -> tuple[Path, Path]:
    """A synth workload ingested once per test process: (dataset, release history). 40 sessions is the demo."""
    import atexit
    import shutil
    import tempfile

    from zumik_cli.synth.traffic import SynthConfig, write_jsonl

    if (sessions, seed) not in _SYNTH:
        folder = Path(tempfile.mkdtemp(prefix="zumik-synth-releases-"))
        atexit.register(shutil.rmtree, folder, True)
        config = SynthConfig(sessions=sessions, seed=seed)
        write_jsonl(config, folder / "agents.jsonl")
        ingest([folder / "agents.jsonl"], folder / "data")
        _SYNTH[(sessions, seed)] = (folder / "data", write_release_history_path(config, folder / "releases.yaml"))
    return _SYNTH[(sessions, seed)]


def write_release_history_path(config: Any, path: Path) -> Path:
    from zumik_cli.synth.releases import write_release_history

    write_release_history(config, path)
    return path

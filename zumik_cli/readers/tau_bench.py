"""tau-bench trajectories: a JSON list of ``{task_id, trial, traj: [OpenAI messages]}``.

No usage, timestamps or tool schemas are recorded: model call k's request is every message before the k-th
assistant message. The model comes from the file name (``<model>-<domain>.json``) unless a record names it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from zumik_cli.core.identity import derived_trace_id
from zumik_cli.core.model import Quarantined, Request, Source
from zumik_cli.readers import Item, Reader, Sample, convert_guarded
from zumik_cli.readers.fields import text
from zumik_cli.readers.messages import content_parts, openai_messages, ordered


def _calls(entry: Any, source: Source, model: str) -> list[Request]:
    if not isinstance(entry, dict) or not isinstance(entry.get("traj"), list):
        raise ValueError("a tau-bench entry needs a traj list")
    traj = entry["traj"]
    model = text(entry.get("model")) or model
    # Every model's file numbers the same tasks and trials: the model keeps their sessions apart.
    session = f"{model}:task-{entry.get('task_id')}-trial-{entry.get('trial')}"
    per_message = [openai_messages([message]) for message in traj]
    artifacts = [a for parts in per_message for a in parts]
    requests = []
    for k, message in enumerate(traj):
        if not isinstance(message, dict) or message.get("role") != "assistant" or k == 0:
            continue
        before = [a for parts in per_message[:k] for a in parts]
        requests.append(
            Request(
                trace_id=derived_trace_id("tau-bench", model, session, str(k), str(len(artifacts))),
                source=source,
                format="tau-bench",
                model=model,
                provider="openai",
                session_id=session,
                request_format="openai",
                artifacts=ordered([], [], before),
                output=tuple(content_parts("assistant", message.get("content"))),
            )
        )
    return requests


def _read(sample: Sample) -> Iterator[Item]:
    model = sample.filename.removesuffix(".json").rsplit("-", 1)[0]
    if not isinstance(sample.document, list):
        yield Quarantined(Source(sample.name, 0), "not tau-bench trajectories (a JSON list of {task_id, traj})")
        return
    for index, entry in enumerate(sample.document):
        yield from convert_guarded(lambda e, s: _calls(e, s, model), entry, Source(sample.name, index + 1))


def _sniff(sample: Sample) -> bool:
    return (
        sample.kind == "json"
        and isinstance(sample.document, list)
        and all(isinstance(r, dict) and "traj" in r and "task_id" in r for r in sample.records)
    )


READER = Reader(
    name="tau-bench",
    description="tau-bench trajectories (JSON list of {task_id, trial, traj}): OpenAI messages; no usage or times",
    sniff=_sniff,
    read=_read,
)

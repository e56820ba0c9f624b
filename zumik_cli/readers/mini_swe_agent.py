"""mini-swe-agent trajectories (``*.traj.json``): ``messages[]`` with the raw response in ``extra.response``.

Model call k's request is every message before the k-th assistant message; its usage, model, time and id
come from that assistant message's recorded response.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

from zumik_cli.core.identity import derived_trace_id
from zumik_cli.core.model import Quarantined, Request, Source
from zumik_cli.core.usage import normalize_usage
from zumik_cli.readers import Item, Reader, Sample, convert_guarded
from zumik_cli.readers.fields import parse_time, text
from zumik_cli.readers.messages import content_parts, openai_messages, ordered


def _provider(model: str) -> str:
    return model.split("/", 1)[0] if "/" in model else "openai"


def _call(messages: list[Any], k: int, session: str, source: Source) -> Request:
    message = messages[k]
    response = (message.get("extra") or {}).get("response") or {}
    model = text(response.get("model"))
    plain = [{"role": m["role"], "content": m.get("content")} for m in messages[:k]]
    return Request(
        trace_id=text(response.get("id")) or derived_trace_id("mini-swe-agent", session, str(k)),
        source=source,
        format="mini-swe-agent",
        model=model,
        provider=_provider(model),
        timestamp=parse_time(response.get("created")),
        session_id=session,
        request_format="openai",
        artifacts=ordered([], [], openai_messages(plain)),
        output=tuple(content_parts("assistant", message.get("content"))),
        usage=normalize_usage(response.get("usage")),
    )


def _call_at(messages: list[Any], k: int, session: str, _value: Any, source: Source) -> Request:
    return _call(messages, k, session, source)


def _read(sample: Sample) -> Iterator[Item]:
    document = sample.document
    messages = document.get("messages") if isinstance(document, dict) else None
    if not isinstance(messages, list):
        yield Quarantined(Source(sample.name, 0), "a mini-swe-agent trajectory needs a messages list")
        return
    session = text(document.get("instance_id")) or sample.filename.removesuffix(".traj.json")
    for k, message in enumerate(messages):
        if isinstance(message, dict) and message.get("role") == "assistant":
            yield from convert_guarded(
                functools.partial(_call_at, messages, k, session), message, Source(sample.name, k + 1)
            )


def _sniff(sample: Sample) -> bool:
    doc = sample.document
    return (
        sample.kind == "json"
        and isinstance(doc, dict)
        and isinstance(doc.get("messages"), list)
        and (
            str(doc.get("trajectory_format", "")).startswith("mini-swe-agent") or sample.filename.endswith(".traj.json")
        )
    )


READER = Reader(
    name="mini-swe-agent",
    description="mini-swe-agent trajectories (*.traj.json): messages[] with the raw response in extra.response",
    sniff=_sniff,
    read=_read,
)

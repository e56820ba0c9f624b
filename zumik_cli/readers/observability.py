"""Shared by the observability-export readers (Langfuse, Helicone): JSONL or an API page ``{"data": [...]}``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from zumik_cli.core.model import Artifact, Quarantined, Request, Source
from zumik_cli.readers import Item, Sample, convert_guarded, records
from zumik_cli.readers.messages import (
    anthropic_messages,
    any_tools,
    gemini_contents,
    openai_messages,
    ordered,
    system_artifacts,
)
from zumik_cli.readers.openai_responses import input_items

Convert = Callable[[Any, Source], Request | list[Request] | None]


def rows(sample: Sample) -> list[Any]:
    """The records detection looks at: JSONL lines, a JSON list, or the ``data`` list of an API page."""
    if sample.kind == "json":
        document = sample.document
        if isinstance(document, dict) and isinstance(document.get("data"), list):
            return document["data"][:5]
        return list(sample.records)
    return list(sample.records)


def read_rows(sample: Sample, convert: Convert, not_a_call: Callable[[Any], str] = lambda _row: "") -> Iterator[Item]:
    """Convert every row; a row ``not_a_call`` names a reason for is quarantined with it, never counted."""
    path = sample.name
    if sample.kind == "json":
        document = sample.document
        items = document.get("data") if isinstance(document, dict) and "data" in document else document
        numbered: Iterator[tuple[int, Any]] = enumerate(items if isinstance(items, list) else [items], start=1)
    else:
        numbered = records(sample)
    for number, value in numbered:
        source = Source(path, number)
        if isinstance(value, Quarantined):
            yield value
        elif reason := not_a_call(value):
            yield Quarantined(source, reason)
        else:
            yield from convert_guarded(convert, value, source)


def prompt_artifacts(body: Any, anthropic_wire: bool) -> tuple[Artifact, ...]:
    """A logged request body in whichever wire shape it has; ``()`` when there is none to read."""
    if isinstance(body, str):
        return (Artifact("text", "user", body),) if body else ()
    if isinstance(body, list):
        return ordered([], [], openai_messages(body))
    if not isinstance(body, dict):
        return ()
    tools = any_tools(body.get("tools"))
    if isinstance(body.get("messages"), list):
        if anthropic_wire or "system" in body:
            return ordered(tools, system_artifacts(body.get("system")), anthropic_messages(body["messages"]))
        return ordered(tools, [], openai_messages(body["messages"]))
    if isinstance(body.get("contents"), list):
        return ordered([], [], gemini_contents(body))
    if "input" in body:
        items = input_items(body["input"])
        instructions = body.get("instructions")
        system = [Artifact("system", "system", instructions)] if isinstance(instructions, str) and instructions else []
        return ordered(
            tools, system + [a for a in items if a.kind == "system"], [a for a in items if a.kind != "system"]
        )
    return ()

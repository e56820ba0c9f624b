"""OpenAI Responses API logs: ``{"request": {...}, "response": {...}}`` a line (or the two merged in one object).

The prompt is ``instructions`` + the context of ``previous_response_id`` (its input and output, not its
instructions, which the API does not carry over) + this request's ``input`` items. A request whose previous
response is not in the file cannot be rebuilt without guessing what came first, so it keeps its usage and no
content. Usage is ``input_tokens`` (cached included) and ``input_tokens_details.cached_tokens``; a
``prompt_cache_diagnostics`` on the response becomes the request's measured miss reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from zumik_cli.core.identity import derived_trace_id
from zumik_cli.core.model import Artifact, Request, Source, canonical_arguments, canonical_json
from zumik_cli.core.usage import normalize_usage
from zumik_cli.readers import Item, Reader, Sample, read_json_lines
from zumik_cli.readers.diagnostics import openai_miss
from zumik_cli.readers.fields import parse_time, text
from zumik_cli.readers.messages import content_parts, ordered, tool_artifact, tool_result_artifacts
from zumik_cli.readers.openai_chat import meta, split_log

RESPONSE_OBJECT = "response"


def responses_tools(tools: Any) -> list[Artifact]:
    """Function tools are flat here (``{type, name, parameters}``); built-in tools are named by their type."""
    out = []
    for tool in tools or []:
        if not isinstance(tool, dict):
            continue
        name = text(tool.get("name")) or text(tool.get("type"))
        if "parameters" in tool or tool.get("type") == "function":
            out.append(tool_artifact(name, text(tool.get("description")), tool.get("parameters")))
        else:
            rest = {k: v for k, v in tool.items() if k not in ("name", "description")}
            out.append(tool_artifact(name, text(tool.get("description")), rest))
    return out


def input_items(value: Any) -> list[Artifact]:
    """``input`` (a string or a list of items) and ``output`` items, in order, as logical artifacts."""
    if value is None:
        return []
    if isinstance(value, str):
        return [Artifact("text", "user", value)] if value else []
    if not isinstance(value, list):
        raise ValueError("input must be a string or a list of items")
    out: list[Artifact] = []
    for item in value:
        if not isinstance(item, dict):
            raise ValueError("an input item is not an object")
        kind = item.get("type", "message")
        if kind == "message":
            role = text(item.get("role")) or "user"
            if role in ("system", "developer"):
                out.extend(Artifact("system", "system", a.body) for a in content_parts("system", item.get("content")))
            elif role in ("user", "assistant"):
                out.extend(content_parts(role, item.get("content")))
            else:
                raise ValueError(f"unknown message role {role!r}")
        elif kind == "function_call":
            out.append(
                Artifact(
                    "tool_call",
                    "assistant",
                    canonical_arguments(item.get("arguments")),
                    name=text(item.get("name")),
                    ref=text(item.get("call_id")),
                )
            )
        elif kind == "function_call_output" and not isinstance(item.get("output"), list):
            output = item.get("output")
            body = output if isinstance(output, str) else canonical_json(output)
            out.append(Artifact("tool_result", "tool", body, ref=text(item.get("call_id"))))
        elif kind in ("function_call_output", "computer_call_output"):
            # a list of content parts, or a computer-use screenshot: images are blocks of their own
            output = item.get("output")
            out.extend(
                tool_result_artifacts(output if isinstance(output, list) else [output], text(item.get("call_id")))
            )
        elif kind == "reasoning":
            continue  # reasoning summaries are not prompt text; encrypted reasoning has no readable body
        else:
            # hosted tool calls and item references: opaque, but the same item always reads the same
            out.append(Artifact("media", "user", canonical_json(item)))
    return out


class _Reader:
    """Keeps each response's conversation so that a later ``previous_response_id`` can be resolved."""

    def __init__(self) -> None:
        self.contexts: dict[str, tuple[Artifact, ...]] = {}

    def convert(self, record: Any, source: Source) -> Request:
        request, response = split_log(record)
        if "input" not in request:
            raise ValueError("a Responses API log needs the request's input")
        previous = text(request.get("previous_response_id") or response.get("previous_response_id"))
        own = input_items(request.get("input"))
        known = not previous or previous in self.contexts
        history = self.contexts.get(previous, ()) if previous else ()
        conversation = (*history, *(a for a in own if a.kind != "system"))
        system = [a for a in own if a.kind == "system"]
        instructions = request.get("instructions", response.get("instructions"))
        if isinstance(instructions, str) and instructions:
            system.insert(0, Artifact("system", "system", instructions))
        elif isinstance(instructions, list):
            system[:0] = [Artifact("system", "system", a.body) for a in input_items(instructions)]
        output = input_items(response.get("output")) if isinstance(response.get("output"), list) else []
        response_id = text(response.get("id"))
        if response_id and known:
            self.contexts[response_id] = (*conversation, *output)
        info = meta(record, request)
        reason, missed = openai_miss(response.get("prompt_cache_diagnostics"))
        conversation_id = response.get("conversation") or request.get("conversation")
        if isinstance(conversation_id, dict):
            conversation_id = conversation_id.get("id")
        tools = responses_tools(request.get("tools", response.get("tools")))
        return Request(
            trace_id=response_id or derived_trace_id("openai-responses", canonical_json(record)),
            source=source,
            format="openai-responses",
            model=text(request.get("model") or response.get("model")),
            provider=info.get("provider", "openai"),
            timestamp=parse_time(record.get("timestamp") or response.get("created_at")),
            model_revision=info.get("model_revision", ""),
            tenant=info.get("tenant", "default"),
            session_id=info.get("session_id", text(conversation_id) or text(request.get("prompt_cache_key"))),
            alias=info.get("alias", ""),
            alias_release=info.get("alias_release", ""),
            request_format="openai",
            artifacts=ordered(tools, system, list(conversation)) if known else (),
            output=tuple(output),
            usage=normalize_usage(response.get("usage")),
            miss_reason=reason,
            missed_tokens=missed,
        )


def _read(sample: Sample) -> Iterator[Item]:
    yield from read_json_lines(sample, _Reader().convert)


def _sniff(sample: Sample) -> bool:
    for record in sample.records:
        request, response = split_log(record)
        if "messages" in request or "input" not in request:
            continue
        usage = response.get("usage")
        if response.get("object") == RESPONSE_OBJECT or (isinstance(usage, dict) and "input_tokens_details" in usage):
            return True
        if "instructions" in request or "previous_response_id" in request:
            return "model" in request or "model" in response
    return False


READER = Reader(
    name="openai-responses",
    description="OpenAI Responses API logs (JSONL of {request, response}): needs the request's input items; "
    "instructions, previous_response_id chains and prompt_cache_diagnostics are used when present",
    sniff=_sniff,
    read=_read,
)

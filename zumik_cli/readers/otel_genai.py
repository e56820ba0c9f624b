"""OpenTelemetry GenAI spans exported as OTLP JSON (``resourceSpans/scopeSpans/spans``), document or JSONL.

One model-call span is one request: ``gen_ai.operation.name`` of ``chat``, ``text_completion`` or
``generate_content`` (agent and tool spans aggregate or contain calls and are skipped, so nothing is counted
twice), or an OpenInference span of kind ``LLM``. Names read, newest first: ``gen_ai.provider.name`` (older
``gen_ai.system``), ``gen_ai.usage.input_tokens`` (older ``gen_ai.usage.prompt_tokens``; OpenInference
``llm.token_count.prompt``), ``gen_ai.usage.cache_read.input_tokens`` and ``gen_ai.usage.cache_creation.input_tokens``
(renamed ``cache_write`` in the genai repository; OpenInference ``llm.token_count.prompt_details.cache_read`` /
``cache_write``). The conventions say input tokens include cache reads and writes; an exporter whose reads and
writes exceed its input count plainly left them out, and they are added back. Content is read only when it was
captured (``gen_ai.system_instructions``, ``gen_ai.input.messages``, ``gen_ai.tool.definitions``; OpenInference
``llm.input_messages.N.message.*`` and ``llm.tools.N.tool.json_schema``; OpenLLMetry ``gen_ai.prompt.N.*``);
without it a span is a usage-only request with no artifacts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from typing import Any

from zumik_cli.core.media import media_artifact
from zumik_cli.core.model import Artifact, Quarantined, Request, Source, Usage, canonical_arguments, canonical_json
from zumik_cli.readers import Item, Reader, Sample, convert_guarded, records
from zumik_cli.readers.fields import moment, text
from zumik_cli.readers.messages import openai_messages, openai_tools, ordered

CALL_OPERATIONS = ("chat", "text_completion", "generate_content")
NOT_CALLS = ("invoke_agent", "create_agent", "execute_tool", "embeddings", "invoke_workflow")
PROVIDERS = {
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "vertex_ai": "google",
    "gemini": "google",
    "aws.bedrock": "bedrock",
    "azure.ai.openai": "azure",
    "az.ai.openai": "azure",
}
INPUT_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt")
READ_KEYS = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "gen_ai.usage.input_tokens.cached",
    "llm.token_count.prompt_details.cache_read",
)
WRITE_KEYS = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_write.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "gen_ai.usage.input_tokens.cache_write",
    "llm.token_count.prompt_details.cache_write",
)
OUTPUT_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion")


def any_value(value: Any) -> Any:
    """An OTLP ``AnyValue`` as plain Python (int64s arrive as strings in OTLP JSON)."""
    if not isinstance(value, dict):
        raise ValueError("an attribute value is not an OTLP AnyValue object")
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [any_value(v) for v in (value["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in value:
        return attributes((value["kvlistValue"] or {}).get("values", []))
    return None


def attributes(items: Any) -> dict[str, Any]:
    if not isinstance(items, list):
        raise ValueError("attributes must be a list of {key, value}")
    return {text(item["key"]): any_value(item.get("value", {})) for item in items}


def _first(attrs: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = attrs.get(key)
        if value is not None and not isinstance(value, bool):
            return int(value)
    return None


def span_usage(attrs: dict[str, Any]) -> Usage:
    base, read, write = _first(attrs, INPUT_KEYS), _first(attrs, READ_KEYS), _first(attrs, WRITE_KEYS)
    prompt = base
    if base is not None and (read or 0) + (write or 0) > base:
        prompt = base + (read or 0) + (write or 0)
    family = "openinference" if "llm.token_count.prompt" in attrs else "otel-genai"
    return Usage(prompt, read, write, _first(attrs, OUTPUT_KEYS), family if base is not None else "none")


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _parts(role: str, parts: Any) -> list[Artifact]:
    """GenAI message parts: text, tool_call, tool_call_response; anything else (blobs, uris) is opaque media."""
    out: list[Artifact] = []
    for part in parts or []:
        if not isinstance(part, dict):
            raise ValueError("a message part is not an object")
        kind = part.get("type")
        if kind == "text":
            out.append(Artifact("text", role, text(part.get("content"))))
        elif kind == "tool_call":
            out.append(
                Artifact(
                    "tool_call",
                    "assistant",
                    canonical_arguments(part.get("arguments")),
                    name=text(part.get("name")),
                    ref=text(part.get("id")),
                )
            )
        elif kind == "tool_call_response":
            result = part.get("response", part.get("result"))
            body = result if isinstance(result, str) else canonical_json(result)
            out.append(Artifact("tool_result", "tool", body, ref=text(part.get("id"))))
        elif kind == "reasoning":
            continue
        else:
            out.append(media_artifact(role, part) or Artifact("media", role, canonical_json(part)))
    return out


def genai_messages(value: Any) -> list[Artifact]:
    out: list[Artifact] = []
    for message in _json(value) or []:
        if not isinstance(message, dict):
            raise ValueError("a message is not an object")
        role = text(message.get("role"))
        role = "system" if role in ("system", "developer") else role
        out.extend(
            Artifact("system", "system", a.body) if role == "system" and a.kind == "text" else a
            for a in _parts(role or "user", message.get("parts"))
        )
    return out


def indexed(attrs: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    """Flattened lists (``prefix.0.message.role``) back into a list of ``{rest-of-key: value}``."""
    found: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        if key.startswith(prefix + "."):
            index, _, rest = key[len(prefix) + 1 :].partition(".")
            if index.isdigit():
                found.setdefault(int(index), {})[rest] = value
    return [found[i] for i in sorted(found)]


def openinference_messages(attrs: dict[str, Any], prefix: str) -> list[Artifact]:
    messages = []
    for entry in indexed(attrs, prefix):
        content: Any = entry.get("message.content")
        contents = indexed(entry, "message.contents")
        if content is None and contents:
            content = [{"type": "text", "text": c.get("message_content.text", "")} for c in contents]
        calls = [
            {
                "id": c.get("tool_call.id", ""),
                "function": {
                    "name": c.get("tool_call.function.name", ""),
                    "arguments": c.get("tool_call.function.arguments"),
                },
            }
            for c in indexed(entry, "message.tool_calls")
        ]
        message = {"role": entry.get("message.role", "user"), "content": content}
        if calls:
            message["tool_calls"] = calls
        if "message.tool_call_id" in entry:
            message["tool_call_id"] = entry["message.tool_call_id"]
        messages.append(message)
    return openai_messages(messages)


def openllmetry_messages(attrs: dict[str, Any]) -> list[Artifact]:
    messages = [
        {
            k: v
            for k, v in {
                "role": e.get("role", "user"),
                "content": e.get("content"),
                "tool_call_id": e.get("tool_call_id"),
            }.items()
            if v is not None
        }
        for e in indexed(attrs, "gen_ai.prompt")
    ]
    return openai_messages(messages)


def span_artifacts(attrs: dict[str, Any]) -> tuple[Artifact, ...]:
    tools: list[Artifact] = []
    if "gen_ai.tool.definitions" in attrs:
        tools = openai_tools(_json(attrs["gen_ai.tool.definitions"]))
    elif any(k.startswith("llm.tools.") for k in attrs):
        tools = openai_tools([_json(t.get("tool.json_schema")) for t in indexed(attrs, "llm.tools")])
    system: list[Artifact] = []
    if "gen_ai.system_instructions" in attrs:
        system = [
            Artifact("system", "system", a.body) for a in _parts("system", _json(attrs["gen_ai.system_instructions"]))
        ]
    if "gen_ai.input.messages" in attrs:
        messages = genai_messages(attrs["gen_ai.input.messages"])
    elif any(k.startswith("llm.input_messages.") for k in attrs):
        messages = openinference_messages(attrs, "llm.input_messages")
    elif any(k.startswith("gen_ai.prompt.") for k in attrs):
        messages = openllmetry_messages(attrs)
    else:
        messages = []
    if not messages and not system:
        return ()  # content was not captured: usage only, nothing invented
    return ordered(tools, system, messages)


def is_call(attrs: dict[str, Any]) -> bool:
    operation = attrs.get("gen_ai.operation.name")
    if operation in CALL_OPERATIONS:
        return True
    if attrs.get("openinference.span.kind") == "LLM":
        return True
    if operation in NOT_CALLS or attrs.get("openinference.span.kind") not in (None, "LLM"):
        return False
    return operation is None and any(k in attrs for k in INPUT_KEYS) and "gen_ai.request.model" in attrs


def _nanos(value: Any) -> float | None:
    return moment(int(value) / 1e9, value) if value not in (None, "", 0, "0") else None


def to_request(span: Any, source: Source, resource: dict[str, Any]) -> Request | None:
    if not isinstance(span, dict):
        raise ValueError("a span is not an object")
    attrs = attributes(span.get("attributes", []))
    if not is_call(attrs):
        return None
    provider = text(
        attrs.get("gen_ai.provider.name")
        or attrs.get("gen_ai.system")
        or attrs.get("llm.provider")
        or attrs.get("llm.system")
    ).lower()
    provider = PROVIDERS.get(provider, provider)
    model = text(attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model") or attrs.get("llm.model_name"))
    start, end = _nanos(span.get("startTimeUnixNano")), _nanos(span.get("endTimeUnixNano"))
    anthropic_wire = provider == "anthropic" or "claude" in model.lower()
    output: tuple[Artifact, ...] = ()
    if "gen_ai.output.messages" in attrs:
        output = tuple(a for a in genai_messages(attrs["gen_ai.output.messages"]) if a.kind != "system")
    trace = text(span.get("traceId")) + ":" + text(span.get("spanId"))
    return Request(
        trace_id=text(attrs.get("gen_ai.response.id")) or f"otel:{trace}",
        source=source,
        format="otel-genai",
        model=model,
        provider=provider,
        timestamp=start,
        session_id=text(attrs.get("gen_ai.conversation.id") or attrs.get("session.id")),
        region=text(resource.get("cloud.region")),
        request_format="anthropic" if anthropic_wire else "openai",
        artifacts=span_artifacts(attrs),
        output=output,
        usage=span_usage(attrs),
        latency_ms=(end - start) * 1000.0 if start is not None and end is not None else None,
    )


def _spans(export: Any, path: str, line: int | None) -> Iterator[Item]:
    if not isinstance(export, dict) or not isinstance(export.get("resourceSpans"), list):
        yield Quarantined(Source(path, line or 0), "not an OTLP trace export (no resourceSpans list)")
        return
    ordinal = 0
    for resource_spans in export["resourceSpans"]:
        try:
            resource = attributes(((resource_spans or {}).get("resource") or {}).get("attributes", []))
            spans = _scope_spans(resource_spans)
        except (AttributeError, KeyError, TypeError, ValueError, RecursionError) as exc:
            yield Quarantined(Source(path, line or 0), f"wrong shape: {type(exc).__name__}: {exc}"[:300])
            continue
        for span in spans:
            ordinal += 1
            source = Source(path, line if line is not None else ordinal)
            yield from convert_guarded(partial(to_request, resource=resource), span, source)


def _scope_spans(resource_spans: dict[str, Any]) -> list[Any]:
    scopes = resource_spans.get("scopeSpans") or resource_spans.get("instrumentationLibrarySpans") or []
    if not isinstance(scopes, list):
        raise ValueError("scopeSpans must be a list")
    spans: list[Any] = []
    for scope in scopes:
        found = (scope or {}).get("spans") or []
        if not isinstance(found, list):
            raise ValueError("spans must be a list")
        spans.extend(found)
    return spans


def _read(sample: Sample) -> Iterator[Item]:
    path = sample.name
    if sample.kind == "json":
        documents = sample.document if isinstance(sample.document, list) else [sample.document]
        for document in documents:
            yield from _spans(document, path, None)
        return
    for number, value in records(sample):
        if isinstance(value, Quarantined):
            yield value
        else:
            yield from _spans(value, path, number)


READER = Reader(
    name="otel-genai",
    description="OpenTelemetry GenAI / OpenInference spans as OTLP JSON (document or JSONL): needs model-call "
    "spans with usage attributes; content only if captured (else usage-only requests)",
    sniff=lambda sample: any(isinstance(r, dict) and "resourceSpans" in r for r in sample.records),
    read=_read,
)

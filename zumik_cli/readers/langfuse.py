"""Langfuse observation exports: JSONL or an API page ``{"data": [observations]}``, camelCase or snake_case.

Only ``GENERATION`` observations are model calls. Usage follows Langfuse's own convention: every
``usageDetails`` key containing ``input`` is a disjoint part of the input (``input``, ``input_cached_tokens``,
``cache_read_input_tokens`` ...), so the prompt is their sum; keys naming ``cache_read``/``cached`` are reads and
``cache_creation``/``cache_write`` writes. The old ``usage {input, output}`` object is read when
``usageDetails`` is absent. The request content is the observation's ``input`` when it holds messages (a list,
or ``{messages, tools, system}``); any other input shape is not guessed at and the request is usage-only.
"""

from __future__ import annotations

from typing import Any

from zumik_cli.core.identity import derived_trace_id
from zumik_cli.core.model import Artifact, Request, Source, Usage, canonical_json
from zumik_cli.readers import Reader, Sample
from zumik_cli.readers.fields import parse_time, text
from zumik_cli.readers.messages import content_parts
from zumik_cli.readers.observability import prompt_artifacts, read_rows, rows
from zumik_cli.readers.openai_chat import meta

OBSERVATION_TYPES = ("GENERATION", "SPAN", "EVENT", "AGENT", "TOOL", "CHAIN", "RETRIEVER", "EMBEDDING")


def _get(record: dict[str, Any], camel: str, snake: str) -> Any:
    return record.get(camel, record.get(snake))


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"a usage count is not a non-negative number: {value!r}"[:120])
    return int(value)


def details_usage(details: Any, legacy: Any) -> Usage:
    if isinstance(details, dict) and details:
        numbers = {k: _count(v) for k, v in details.items() if v is not None and not isinstance(v, dict)}
        has_split = any("cache_creation" in k and "ephemeral" not in k for k in numbers)
        inputs = {k: v for k, v in numbers.items() if "input" in k and not (has_split and "ephemeral" in k)}
        reads = [v for k, v in inputs.items() if "cache_read" in k or "cached" in k]
        writes = [v for k, v in inputs.items() if "cache_creation" in k or "cache_write" in k]
        outputs = [v for k, v in numbers.items() if k == "output" or k.startswith("output")]
        return Usage(
            prompt_tokens=sum(inputs.values()) if inputs else None,
            cached_tokens=sum(reads) if reads else None,
            cache_write_tokens=sum(writes) if writes else None,
            output_tokens=numbers.get("output", sum(outputs) if outputs else None),
            family="langfuse",
        )
    if isinstance(legacy, dict) and legacy.get("input") is not None:
        output = legacy.get("output")
        return Usage(_count(legacy["input"]), None, None, _count(output) if output is not None else None, "langfuse")
    return Usage()


def _provider(record: dict[str, Any], model: str) -> str:
    found = meta(record, {}).get("provider") or text((record.get("metadata") or {}).get("ls_provider"))
    if found:
        return found.lower()
    name = model.lower()
    for marker, provider in (("claude", "anthropic"), ("gemini", "google"), ("gpt", "openai"), ("o3", "openai")):
        if marker in name:
            return provider
    return ""


def to_request(record: Any, source: Source) -> Request | None:
    if not isinstance(record, dict) or not (_get(record, "traceId", "trace_id") or record.get("id")):
        raise ValueError("not a Langfuse observation (no id or traceId)")
    if text(record.get("type")).upper() != "GENERATION":
        return None  # spans, events and agent steps contain calls but are not calls
    model = text(record.get("model") or record.get("provided_model_name"))
    provider = _provider(record, model)
    anthropic_wire = provider == "anthropic" or "claude" in model.lower()
    start, end = parse_time(_get(record, "startTime", "start_time")), parse_time(_get(record, "endTime", "end_time"))
    info = meta(record, {})
    output = record.get("output")
    reply: tuple[Artifact, ...] = ()
    if isinstance(output, dict) and "content" in output:
        reply = tuple(content_parts("assistant", output.get("content")))
    elif isinstance(output, str):
        reply = (Artifact("text", "assistant", output),)
    return Request(
        trace_id=text(record.get("id")) or derived_trace_id("langfuse", canonical_json(record)),
        source=source,
        format="langfuse",
        model=model,
        provider=provider,
        timestamp=start,
        tenant=info.get("tenant", "default"),
        session_id=text(_get(record, "sessionId", "session_id")) or info.get("session_id", ""),
        request_format="anthropic" if anthropic_wire else "openai",
        artifacts=prompt_artifacts(record.get("input"), anthropic_wire),
        output=reply,
        usage=details_usage(_get(record, "usageDetails", "usage_details"), record.get("usage")),
        latency_ms=(end - start) * 1000.0 if start is not None and end is not None else None,
    )


def _sniff(sample: Sample) -> bool:
    return any(
        isinstance(r, dict)
        and (_get(r, "traceId", "trace_id") is not None)
        and text(r.get("type")).upper() in OBSERVATION_TYPES
        and _get(r, "startTime", "start_time") is not None
        for r in rows(sample)
    )


READER = Reader(
    name="langfuse",
    description="Langfuse observation export (JSONL or API page): GENERATION observations with usageDetails; "
    "content from the observation input when it holds messages",
    sniff=_sniff,
    read=lambda sample: read_rows(sample, to_request),
)

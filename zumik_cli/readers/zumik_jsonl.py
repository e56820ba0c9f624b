"""zumik's own JSONL record (docs/zumik-jsonl.schema.json): one model call a line."""

from __future__ import annotations

from typing import Any

from zumik_cli.core.identity import derived_trace_id
from zumik_cli.core.model import Artifact, Request, Source, canonical_json
from zumik_cli.core.usage import normalize_usage
from zumik_cli.readers import Reader, Sample, read_json_lines
from zumik_cli.readers.fields import count, number, parse_time, text
from zumik_cli.readers.messages import anthropic_tools, content_parts, ordered, system_artifacts

DEFAULT_FORMAT = {"anthropic": "anthropic", "google": "anthropic"}


def _artifacts(record: dict[str, Any]) -> tuple[Artifact, ...]:
    messages = []
    for message in record.get("messages") or []:
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant", "tool", "system"):
            raise ValueError("a message is not a {role, content} object")
        messages.extend(content_parts(message["role"], message.get("content")))
    return ordered(anthropic_tools(record.get("tools")), system_artifacts(record.get("system")), messages)


def to_request(record: Any, source: Source) -> Request:
    if not isinstance(record, dict) or record.get("zumik") != 1:
        raise ValueError('not a zumik record (needs "zumik": 1)')
    if not isinstance(record.get("messages"), list):
        raise ValueError("messages must be a list")
    provider = text(record.get("provider")).lower()
    diagnostics = record.get("diagnostics") or {}
    reason = diagnostics.get("cache_miss_reason") if isinstance(diagnostics, dict) else None
    reason = reason if isinstance(reason, dict) else {}
    output = record.get("output")

    return Request(
        trace_id=text(record.get("trace_id")) or derived_trace_id("zumik", canonical_json(record)),
        source=source,
        format="zumik",
        model=text(record.get("model")),
        provider=provider,
        timestamp=parse_time(record.get("timestamp")),
        model_revision=text(record.get("model_revision")),
        engine=text(record.get("engine")),
        region=text(record.get("region")),
        quantization=text(record.get("quantization")),
        tenant=text(record.get("tenant")) or "default",
        session_id=text(record.get("session_id")),
        alias=text(record.get("alias")),
        alias_release=text(record.get("alias_release")),
        request_format=text(record.get("request_format")) or DEFAULT_FORMAT.get(provider, "openai"),
        artifacts=_artifacts(record),
        output=tuple(content_parts("assistant", output.get("content"))) if isinstance(output, dict) else (),
        usage=normalize_usage(record.get("usage")),
        miss_reason=text(reason.get("type")),
        missed_tokens=count(reason.get("cache_missed_input_tokens"), "cache_missed_input_tokens"),
        latency_ms=number(record.get("latency_ms"), "latency_ms"),
    )


def _sniff(sample: Sample) -> bool:
    return any(isinstance(r, dict) and r.get("zumik") == 1 for r in sample.records)


READER = Reader(
    name="zumik",
    description='zumik JSONL (docs/zumik-jsonl.schema.json): one call a line with "zumik": 1, model and messages',
    sniff=_sniff,
    read=lambda sample: read_json_lines(sample, to_request),
)

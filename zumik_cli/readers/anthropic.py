"""Anthropic Messages API request/response logs: ``{"request": {...}, "response": {...}}`` a line."""

from __future__ import annotations

from typing import Any

from zumik_cli.core.identity import derived_trace_id
from zumik_cli.core.model import Request, Source, canonical_json
from zumik_cli.core.usage import normalize_usage
from zumik_cli.readers import Reader, Sample, read_json_lines
from zumik_cli.readers.fields import count, parse_time, text
from zumik_cli.readers.messages import anthropic_messages, anthropic_tools, content_parts, ordered, system_artifacts
from zumik_cli.readers.openai_chat import meta, split_log


def to_request(record: Any, source: Source) -> Request:
    request, response = split_log(record)
    if not isinstance(request.get("messages"), list):
        raise ValueError("request.messages must be a list")
    info = meta(record, request)
    diagnostics = response.get("diagnostics") or {}
    reason = diagnostics.get("cache_miss_reason") if isinstance(diagnostics, dict) else None
    reason = reason if isinstance(reason, dict) else {}
    return Request(
        trace_id=text(response.get("id")) or derived_trace_id("anthropic", canonical_json(record)),
        source=source,
        format="anthropic",
        model=text(request.get("model") or response.get("model")),
        provider=info.get("provider", "anthropic"),
        timestamp=parse_time(record.get("timestamp") or record.get("created_at")),
        model_revision=info.get("model_revision", ""),
        tenant=info.get("tenant", "default"),
        session_id=info.get("session_id", ""),
        alias=info.get("alias", ""),
        alias_release=info.get("alias_release", ""),
        request_format="anthropic",
        artifacts=ordered(
            anthropic_tools(request.get("tools")),
            system_artifacts(request.get("system")),
            anthropic_messages(request["messages"]),
        ),
        output=tuple(content_parts("assistant", response.get("content"))),
        usage=normalize_usage(response.get("usage")),
        miss_reason=text(reason.get("type")),
        missed_tokens=count(reason.get("cache_missed_input_tokens"), "cache_missed_input_tokens"),
    )


def _sniff(sample: Sample) -> bool:
    for record in sample.records:
        request, response = split_log(record)
        if not isinstance(request.get("messages"), list):
            continue
        usage = response.get("usage") or {}
        if (
            response.get("type") == "message"
            or "cache_read_input_tokens" in usage
            or ("input_tokens" in usage and "output_tokens" in usage)
        ):
            return True
        if "system" in request and "max_tokens" in request:
            return True
    return False


READER = Reader(
    name="anthropic",
    description="Anthropic Messages API logs (JSONL of {request, response}): needs request messages; usage and "
    "diagnostics.cache_miss_reason from the response",
    sniff=_sniff,
    read=lambda sample: read_json_lines(sample, to_request),
)

"""OpenAI Chat Completions request/response logs: ``{"request": {...}, "response": {...}}`` a line.

Also reads the same body flattened into one object with a ``usage`` field, as many gateways log it.
"""

from __future__ import annotations

from typing import Any

from zumik_cli.core.identity import derived_trace_id
from zumik_cli.core.model import Request, Source, canonical_json
from zumik_cli.core.usage import normalize_usage
from zumik_cli.readers import Reader, Sample, read_json_lines
from zumik_cli.readers.fields import parse_time, text
from zumik_cli.readers.messages import content_parts, openai_messages, openai_tools, ordered


def split_log(record: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    if not isinstance(record, dict):
        raise ValueError("a log line is not an object")
    request, response = record.get("request"), record.get("response")
    return (request if isinstance(request, dict) else record), (response if isinstance(response, dict) else record)


def meta(record: dict[str, Any], request: dict[str, Any]) -> dict[str, str]:
    """Tenant, session and alias wherever a gateway put them (top level or request metadata)."""
    found: dict[str, str] = {}
    for holder in (request.get("metadata"), record.get("metadata"), record):
        if not isinstance(holder, dict):
            continue
        for key in ("tenant", "session_id", "alias", "alias_release", "provider", "model_revision"):
            if key not in found and holder.get(key):
                found[key] = text(holder[key])
    return found


def to_request(record: Any, source: Source) -> Request:
    request, response = split_log(record)
    if not isinstance(request.get("messages"), list):
        raise ValueError("request.messages must be a list")
    artifacts = openai_messages(request["messages"])
    info = meta(record, request)
    choices = response.get("choices") or []
    reply = choices[0].get("message", {}) if choices and isinstance(choices[0], dict) else {}
    return Request(
        trace_id=text(response.get("id")) or derived_trace_id("openai-chat", canonical_json(record)),
        source=source,
        format="openai-chat",
        model=text(request.get("model") or response.get("model")),
        provider=info.get("provider", "openai"),
        timestamp=parse_time(record.get("timestamp") or response.get("created")),
        model_revision=info.get("model_revision", ""),
        tenant=info.get("tenant", "default"),
        session_id=info.get("session_id", text(request.get("prompt_cache_key"))),
        alias=info.get("alias", ""),
        alias_release=info.get("alias_release", ""),
        request_format="openai",
        artifacts=ordered(openai_tools(request.get("tools")), [], artifacts),
        output=tuple(content_parts("assistant", reply.get("content"))) if isinstance(reply, dict) else (),
        usage=normalize_usage(response.get("usage")),
    )


def _sniff(sample: Sample) -> bool:
    for record in sample.records:
        request, response = split_log(record)
        messages = request.get("messages")
        if isinstance(messages, list) and ("choices" in response or "prompt_tokens" in (response.get("usage") or {})):
            return True
        if isinstance(messages, list) and messages and messages[0].get("role") in ("system", "developer"):
            return "model" in request
    return False


READER = Reader(
    name="openai-chat",
    description="OpenAI Chat Completions logs (JSONL of {request, response} or one flat object): needs request "
    "messages; usage from the response",
    sniff=_sniff,
    read=lambda sample: read_json_lines(sample, to_request),
)

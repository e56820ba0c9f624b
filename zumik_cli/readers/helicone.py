"""Helicone request logs (``@helicone/export`` JSONL or an API page ``{"data": [...]}``): one request a row.

The usage in ``response_body`` is the provider's own and wins when the body was exported
(``--include-body``). Without it the row's columns are used: ``prompt_tokens``, ``prompt_cache_read_tokens``,
``prompt_cache_write_tokens``. Helicone keeps Anthropic's uncached input apart from cache reads and writes (its
Anthropic usage processor takes ``input_tokens`` as the input), so for Anthropic rows the prompt is their sum;
for OpenAI-shaped rows ``prompt_tokens`` already includes the cached part. A row Helicone answered from its own
response cache (``cache_reference_id`` set) made no provider call and is not a request. Content comes from
``request_body`` (Chat Completions, Messages or Responses shape); a row without a body is usage-only.
"""

from __future__ import annotations

import json
from typing import Any

from zumik_cli.core.identity import derived_trace_id
from zumik_cli.core.model import Request, Source, Usage, canonical_json
from zumik_cli.core.usage import normalize_usage
from zumik_cli.readers import Reader, Sample
from zumik_cli.readers.fields import count, parse_time, text
from zumik_cli.readers.messages import content_parts
from zumik_cli.readers.observability import prompt_artifacts, read_rows, rows

NO_CACHE_REFERENCE = ("", "00000000-0000-0000-0000-000000000000")
SESSION_PROPERTY = "Helicone-Session-Id"


def _body(value: Any) -> Any:
    if isinstance(value, str) and value.strip().startswith(("{", "[")):
        return json.loads(value)
    return value


def _provider(row: dict[str, Any]) -> str:
    provider = text(row.get("provider")).lower()
    return {"vertex": "google", "google": "google"}.get(provider, provider)


def column_usage(row: dict[str, Any], anthropic_wire: bool) -> Usage:
    prompt = count(row.get("prompt_tokens"), "prompt_tokens")
    read = count(row.get("prompt_cache_read_tokens"), "prompt_cache_read_tokens")
    write = count(row.get("prompt_cache_write_tokens"), "prompt_cache_write_tokens")
    if anthropic_wire and prompt is not None:
        prompt += (read or 0) + (write or 0)
    output = count(row.get("completion_tokens"), "completion_tokens")
    return Usage(prompt, read, write, output, "helicone" if prompt is not None else "none")


def not_a_call(row: Any) -> str:
    if isinstance(row, dict) and text(row.get("cache_reference_id")) not in NO_CACHE_REFERENCE:
        return "not a provider call: Helicone served it from its own response cache (cache_reference_id set)"
    return ""


def to_request(row: Any, source: Source) -> Request:
    if not isinstance(row, dict) or not row.get("request_id"):
        raise ValueError("not a Helicone request row (no request_id)")
    provider = _provider(row)
    model = text(row.get("model") or row.get("response_model") or row.get("request_model"))
    anthropic_wire = provider == "anthropic" or "claude" in model.lower()
    request_body, response_body = _body(row.get("request_body")), _body(row.get("response_body"))
    response = response_body if isinstance(response_body, dict) else {}
    usage = normalize_usage(response.get("usage")) if isinstance(response.get("usage"), dict) else Usage()
    if usage.prompt_tokens is None:
        usage = column_usage(row, anthropic_wire)
    properties = row.get("properties") or row.get("request_properties") or {}
    choices = response.get("choices") or []
    reply = choices[0].get("message", {}) if choices and isinstance(choices[0], dict) else response
    delay = row.get("delay_ms")
    return Request(
        trace_id=text(row["request_id"]) or derived_trace_id("helicone", canonical_json(row)),
        source=source,
        format="helicone",
        model=model,
        provider=provider,
        timestamp=parse_time(row.get("request_created_at")),
        tenant=text(properties.get("tenant")) or "default" if isinstance(properties, dict) else "default",
        session_id=text(properties.get(SESSION_PROPERTY)) if isinstance(properties, dict) else "",
        request_format="anthropic" if anthropic_wire else "openai",
        artifacts=prompt_artifacts(request_body, anthropic_wire),
        output=tuple(content_parts("assistant", reply.get("content"))) if isinstance(reply, dict) else (),
        usage=usage,
        latency_ms=float(delay) if isinstance(delay, int | float) and not isinstance(delay, bool) else None,
    )


def _sniff(sample: Sample) -> bool:
    return any(
        isinstance(r, dict)
        and "request_id" in r
        and "request_created_at" in r
        and ("provider" in r or "response_status" in r)
        for r in rows(sample)
    )


READER = Reader(
    name="helicone",
    description="Helicone request logs (@helicone/export JSONL or API page): token columns per row; content "
    "when exported with bodies (--include-body), else usage-only",
    sniff=_sniff,
    read=lambda sample: read_rows(sample, to_request, not_a_call),
)

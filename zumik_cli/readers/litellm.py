"""LiteLLM StandardLoggingPayload JSONL (callback and proxy logs): one call a line.

Usage comes from ``metadata.usage_object`` (what the provider returned, as LiteLLM normalised it), else
``response.usage``, else the payload's own ``prompt_tokens``. For Anthropic upstreams LiteLLM's
``prompt_tokens`` already includes cache reads and writes, and the Anthropic names ride along
(``cache_read_input_tokens``, ``cache_creation_input_tokens``); ``normalize_usage`` reads that shape as
OpenAI-style. ``cache_hit`` is LiteLLM's own *response* cache: such a line made no provider call, so it is not a
request (it is quarantined with that reason, never counted as a provider cache read). The tenant is the virtual
key's team (``metadata.user_api_key_team_id``); the alias is ``model_group``, the name the caller asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from zumik_cli.core.identity import derived_trace_id
from zumik_cli.core.model import Artifact, Quarantined, Request, Source, canonical_json
from zumik_cli.core.usage import normalize_usage
from zumik_cli.readers import Item, Reader, Sample, convert_guarded, records
from zumik_cli.readers.fields import parse_time, text
from zumik_cli.readers.messages import any_tools, openai_messages, ordered, system_artifacts
from zumik_cli.readers.openai_responses import input_items


def _messages(value: Any, call_type: str = "") -> list[Artifact]:
    if "responses" in call_type:  # the Responses API's input items, logged as messages
        return input_items(value)
    if isinstance(value, str):
        return [Artifact("text", "user", value)] if value else []
    if isinstance(value, dict):
        value = value.get("messages", [value])
    return openai_messages(value)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _usage(record: dict[str, Any]) -> Any:
    metadata, response = _dict(record.get("metadata")), _dict(record.get("response"))
    for candidate in (metadata.get("usage_object"), response.get("usage")):
        if isinstance(candidate, dict) and candidate:
            return candidate
    if record.get("prompt_tokens") is not None:
        return {"prompt_tokens": record.get("prompt_tokens"), "completion_tokens": record.get("completion_tokens")}
    return None


def to_request(record: Any, source: Source) -> Request:
    if not isinstance(record, dict) or "call_type" not in record:
        raise ValueError("not a LiteLLM StandardLoggingPayload (no call_type)")
    metadata, params = _dict(record.get("metadata")), _dict(record.get("model_parameters"))
    provider = text(record.get("custom_llm_provider")).lower()
    model = text(record.get("model"))
    anthropic_wire = provider == "anthropic" or "claude" in model.lower()
    start, end = parse_time(record.get("startTime")), parse_time(record.get("endTime"))
    response = _dict(record.get("response"))
    choices = response.get("choices") or []
    reply = choices[0].get("message", {}) if choices and isinstance(choices[0], dict) else {}
    spend = _dict(metadata.get("spend_logs_metadata"))
    return Request(
        trace_id=text(record.get("id")) or derived_trace_id("litellm", canonical_json(record)),
        source=source,
        format="litellm",
        model=model,
        provider=provider,
        timestamp=start,
        tenant=text(metadata.get("user_api_key_team_id")) or "default",
        session_id=text(metadata.get("session_id") or spend.get("session_id") or record.get("litellm_session_id")),
        alias=text(record.get("model_group")),
        request_format="anthropic" if anthropic_wire else "openai",
        artifacts=ordered(
            any_tools(params.get("tools")),
            system_artifacts(params.get("system")),
            _messages(record.get("messages"), text(record.get("call_type"))),
        ),
        output=tuple(_messages([reply])) if isinstance(reply, dict) and reply.get("role") else (),
        usage=normalize_usage(_usage(record)),
        latency_ms=(end - start) * 1000.0 if start is not None and end is not None else None,
    )


def not_a_call(record: Any) -> str:
    """Why a logged line made no provider call worth counting, or ``""``."""
    if not isinstance(record, dict):
        return ""
    if record.get("cache_hit") is True:
        return "not a provider call: LiteLLM served it from its own response cache (cache_hit: true)"
    if record.get("status") == "failure":
        return f"failed call, no usage: {text(record.get('error_str'))[:120] or 'status: failure'}"
    return ""


def _read(sample: Sample) -> Iterator[Item]:
    for number, value in records(sample):
        source = Source(sample.name, number)
        if isinstance(value, Quarantined):
            yield value
        elif reason := not_a_call(value):
            yield Quarantined(source, reason)
        else:
            yield from convert_guarded(to_request, value, source)


def _sniff(sample: Sample) -> bool:
    return any(
        isinstance(r, dict)
        and "call_type" in r
        and "startTime" in r
        and any(k in r for k in ("response_cost", "model_group", "hidden_params", "model_parameters"))
        for r in sample.records
    )


READER = Reader(
    name="litellm",
    description="LiteLLM StandardLoggingPayload JSONL (proxy/callback logs): needs messages and the usage object; "
    "tenant from metadata.user_api_key_team_id; cache_hit lines (LiteLLM's response cache) are not calls",
    sniff=_sniff,
    read=_read,
)

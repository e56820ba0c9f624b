"""LiteLLM's two logs: the StandardLoggingPayload (callbacks and proxy logs) and the proxy's SpendLogs rows.

Usage comes from ``metadata.usage_object`` (what the provider returned, as LiteLLM normalised it), else
``response.usage``, else the payload's own ``prompt_tokens``. For Anthropic upstreams LiteLLM's
``prompt_tokens`` already includes cache reads and writes, and the Anthropic names ride along
(``cache_read_input_tokens``, ``cache_creation_input_tokens``); ``normalize_usage`` reads that shape as
OpenAI-style. ``cache_hit`` is LiteLLM's own *response* cache: such a line made no provider call, so it is not a
request (it is quarantined with that reason, never counted as a provider cache read). The tenant is the virtual
key's team (``metadata.user_api_key_team_id``); the alias is ``model_group``, the name the caller asked for.

SpendLogs rows (the ``LiteLLM_SpendLogs`` table, exported as JSON Lines or CSV) hold ``messages``, ``metadata``,
``response`` and ``proxy_server_request`` as JSON text (objects when exported with ``row_to_json``); ``messages``
is ``"{}"`` unless the proxy stores prompts (``store_prompts_in_spend_logs``), which makes the row usage-only,
never a prompt of two characters. The row's ``request_id``, ``session_id`` and ``team_id`` are the trace, the
session and the tenant; cached tokens come from ``metadata.usage_object``. CSV cells are text, numbers included.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from zumik_cli.core.identity import derived_trace_id
from zumik_cli.core.model import Artifact, Request, Source, canonical_json
from zumik_cli.core.usage import normalize_usage
from zumik_cli.readers import Item, Reader, Sample, read_json_lines
from zumik_cli.readers.fields import parse_time, text
from zumik_cli.readers.messages import any_tools, openai_messages, ordered, system_artifacts
from zumik_cli.readers.observability import prompt_artifacts
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
    return read_json_lines(sample, to_request, not_a_call)


# --- SpendLogs rows --------------------------------------------------------------------------------------------


def _json_cell(value: Any) -> Any:
    """A JSON column as its value: text is parsed (an empty cell is absent), objects are kept as they are."""
    if isinstance(value, str):
        return json.loads(value) if value.strip() else None
    return value


def _count_cell(value: Any, name: str) -> int | None:
    """A token column: a number, or its text in a CSV cell."""
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
        value = int(float(value)) if "." in value else int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _spend_prompt(row: dict[str, Any], anthropic_wire: bool) -> tuple[Any, ...]:
    """What the row holds of the prompt: the stored messages, else the request body the proxy received."""
    messages = _json_cell(row.get("messages"))
    if isinstance(messages, dict):
        messages = messages.get("messages") or None  # "{}": prompts were not stored
    body = _dict(_json_cell(row.get("proxy_server_request")))
    if messages:
        body = {**body, "messages": messages} if isinstance(messages, list) else {**body, "input": messages}
    elif not isinstance(body.get("messages"), list) and "input" not in body:
        return ()
    return prompt_artifacts(body, anthropic_wire)


def spend_row_to_request(row: Any, source: Source) -> Request:
    if not isinstance(row, dict) or not row.get("request_id"):
        raise ValueError("not a LiteLLM SpendLogs row (no request_id)")
    metadata = _dict(_json_cell(row.get("metadata")))
    response = _dict(_json_cell(row.get("response")))
    provider = text(row.get("custom_llm_provider")).lower()
    model = text(row.get("model"))
    anthropic_wire = provider == "anthropic" or "claude" in model.lower()
    start, end = parse_time(row.get("startTime")), parse_time(row.get("endTime"))
    usage: Any = next(
        (u for u in (metadata.get("usage_object"), response.get("usage")) if isinstance(u, dict) and u), None
    )
    if usage is None:
        usage = {
            "prompt_tokens": _count_cell(row.get("prompt_tokens"), "prompt_tokens"),
            "completion_tokens": _count_cell(row.get("completion_tokens"), "completion_tokens"),
        }
    choices = response.get("choices") or []
    reply = choices[0].get("message", {}) if choices and isinstance(choices[0], dict) else {}
    return Request(
        trace_id=text(row["request_id"]),
        source=source,
        format="litellm-spend",
        model=model,
        provider=provider,
        timestamp=start,
        tenant=text(row.get("team_id") or metadata.get("user_api_key_team_id")) or "default",
        session_id=text(row.get("session_id") or metadata.get("session_id")),
        alias=text(row.get("model_group")),
        request_format="anthropic" if anthropic_wire else "openai",
        artifacts=_spend_prompt(row, anthropic_wire),
        output=tuple(_messages([reply])) if isinstance(reply, dict) and reply.get("role") else (),
        usage=normalize_usage(usage),
        latency_ms=(end - start) * 1000.0 if start is not None and end is not None else None,
    )


def not_a_spend_call(row: Any) -> str:
    if not isinstance(row, dict):
        return ""
    if text(row.get("cache_hit")).lower() == "true":
        return "not a provider call: LiteLLM served it from its own response cache (cache_hit: True)"
    if text(row.get("status")).lower() == "failure":
        return "failed call, no usage (status: failure)"
    return ""


def _read_spend(sample: Sample) -> Iterator[Item]:
    return read_json_lines(sample, spend_row_to_request, not_a_spend_call)


SPEND_LOGS = Reader(
    name="litellm-spend",
    description="LiteLLM proxy SpendLogs rows (JSON Lines, JSON or CSV export of LiteLLM_SpendLogs): request_id, "
    "session_id, team_id; cached tokens from metadata.usage_object; content only when prompts are stored",
    sniff=lambda sample: any(
        isinstance(r, dict) and "request_id" in r and "spend" in r and "call_type" in r and "startTime" in r
        for r in sample.records
    ),
    read=_read_spend,
)


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

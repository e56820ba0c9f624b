"""claude-trace logs (``.claude-trace/log-*.jsonl``): the HTTP pairs the interceptor captured from Claude Code.

A line is ``{request: {timestamp, method, url, headers, body}, response: {timestamp, status_code, headers, body |
body_raw} | null, logged_at}``. The request body is the Messages API request as sent, system prompt and tool
definitions included (what transcripts leave out). The response is a JSON body, or for a streamed call the raw
server-sent events, whose ``message_start`` carries the id, the model and the input usage and whose
``message_delta`` carries the output tokens (and, in newer streams, the final usage). Pairs that are not a
Messages call (token counting, other endpoints, no response, an error status) are quarantined with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from zumik_cli.core.identity import derived_trace_id
from zumik_cli.core.model import Artifact, Request, Source, canonical_json
from zumik_cli.core.usage import normalize_usage
from zumik_cli.readers import Item, Reader, Sample, read_json_lines
from zumik_cli.readers.diagnostics import anthropic_miss
from zumik_cli.readers.fields import parse_time, text
from zumik_cli.readers.messages import anthropic_messages, anthropic_tools, content_parts, ordered, system_artifacts


def _events(raw: str) -> Iterator[dict[str, Any]]:
    """The JSON payloads of a server-sent event stream's ``data:`` lines."""
    for line in raw.splitlines():
        if line.startswith("data:"):
            payload = line[5:].strip()
            if payload and payload != "[DONE]":
                value = json.loads(payload)
                if isinstance(value, dict):
                    yield value


def _streamed(raw: str) -> dict[str, Any]:
    """A streamed response folded into the shape of a non-streamed one: id, model, content, usage."""
    message: dict[str, Any] = {"content": []}
    usage: dict[str, Any] = {}
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, list[str]] = {}
    for event in _events(raw):
        kind = event.get("type")
        if kind == "message_start" and isinstance(event.get("message"), dict):
            start = event["message"]
            message.update({k: start[k] for k in ("id", "model", "diagnostics") if k in start})
            usage.update(start.get("usage") or {})
        elif kind == "content_block_start" and isinstance(event.get("content_block"), dict):
            blocks[int(event.get("index", len(blocks)))] = dict(event["content_block"])
        elif kind == "content_block_delta" and isinstance(event.get("delta"), dict):
            block = blocks.setdefault(int(event.get("index", 0)), {"type": "text", "text": ""})
            delta = event["delta"]
            if delta.get("type") == "text_delta":
                block["text"] = block.get("text", "") + text(delta.get("text"))
            elif delta.get("type") == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + text(delta.get("thinking"))
            elif delta.get("type") == "input_json_delta":
                partial.setdefault(int(event.get("index", 0)), []).append(text(delta.get("partial_json")))
        elif kind == "message_delta":
            usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
    for index, pieces in partial.items():
        joined = "".join(pieces)
        blocks[index]["input"] = json.loads(joined) if joined else {}
    message["content"] = [blocks[i] for i in sorted(blocks)]
    message["usage"] = usage
    return message


def not_a_call(pair: Any) -> str:
    """Why a captured pair is no Messages API call worth counting, or ``""``."""
    if not isinstance(pair, dict) or not isinstance(pair.get("request"), dict):
        return ""
    url = text(pair["request"].get("url"))
    if "/v1/messages" not in url or "count_tokens" in url:
        return f"not a Messages API call: {url[:120] or 'no url'}"
    response = pair.get("response")
    if not isinstance(response, dict):
        return "no response was captured for this request"
    status = response.get("status_code")
    if isinstance(status, int) and status >= 400:
        return f"the call failed (HTTP {status}): no usage"
    return ""


def to_request(pair: Any, source: Source) -> Request:
    request, response = pair["request"], pair["response"]
    body = request.get("body")
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        raise ValueError("request.body needs a messages list")
    reply = response.get("body")
    if not isinstance(reply, dict):
        raw = response.get("body_raw")
        if not isinstance(raw, str):
            raise ValueError("the response has neither a body nor body_raw")
        reply = _streamed(raw)
    metadata: dict[str, Any] = body["metadata"] if isinstance(body.get("metadata"), dict) else {}
    reason, missed = anthropic_miss(reply.get("diagnostics"))
    start, end = parse_time(request.get("timestamp")), parse_time(response.get("timestamp"))
    return Request(
        trace_id=text(reply.get("id")) or derived_trace_id("claude-trace", canonical_json(pair)),
        source=source,
        format="claude-trace",
        model=text(body.get("model") or reply.get("model")),
        provider="anthropic",
        timestamp=start,
        session_id=text(metadata.get("user_id")),
        request_format="anthropic",
        artifacts=ordered(
            anthropic_tools(body.get("tools")),
            system_artifacts(body.get("system")),
            anthropic_messages(body["messages"]),
        ),
        output=tuple(a for a in content_parts("assistant", reply.get("content")) if isinstance(a, Artifact)),
        usage=normalize_usage(reply.get("usage")),
        miss_reason=reason,
        missed_tokens=missed,
        latency_ms=(end - start) * 1000.0 if start is not None and end is not None else None,
    )


def _read(sample: Sample) -> Iterator[Item]:
    return read_json_lines(sample, to_request, not_a_call)


def _sniff(sample: Sample) -> bool:
    return any(
        isinstance(r, dict)
        and isinstance(r.get("request"), dict)
        and "url" in r["request"]
        and "body" in r["request"]
        and "logged_at" in r
        for r in sample.records
    )


READER = Reader(
    name="claude-trace",
    description="claude-trace request/response logs (.claude-trace/log-*.jsonl): the Messages request as sent "
    "(system prompt and tools included) and the response, streamed or not",
    sniff=_sniff,
    read=_read,
)

"""Codex CLI rollout files (``~/.codex/sessions/YYYY/MM/DD/rollout-*.jsonl``): usage only.

Lines are ``{timestamp, type, payload}``; each model call is followed by an ``event_msg`` whose payload is
``token_count`` with ``info.last_token_usage = {input_tokens, cached_input_tokens, output_tokens, ...}``, where
``input_tokens`` includes the cached part (Codex itself shows ``input - cached`` as non-cached input). Codex
repeats a ``token_count`` with unchanged ``total_token_usage`` (rate-limit updates, ``info: null`` before the
first call): a repeat is not a call. The model is the latest ``turn_context``'s. The rollout does not hold the
system prompt or tool schemas the CLI sent, so requests carry usage and no content, and nothing is invented.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

from zumik_cli.core.identity import derived_trace_id
from zumik_cli.core.model import Quarantined, Request, Source, Usage
from zumik_cli.readers import Item, Reader, Sample, convert_guarded, records
from zumik_cli.readers.fields import count, parse_time, text

USAGE_KEYS = ("input_tokens", "cached_input_tokens", "output_tokens")


def _usage(tokens: Any) -> Usage:
    if not isinstance(tokens, dict):
        raise ValueError("token usage is not an object")
    return Usage(
        prompt_tokens=count(tokens.get("input_tokens"), "input_tokens"),
        cached_tokens=count(tokens.get("cached_input_tokens"), "cached_input_tokens"),
        output_tokens=count(tokens.get("output_tokens"), "output_tokens"),
        family="codex",
    )


def _delta(total: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """Per-call usage from cumulative totals, for rollouts that carry no ``last_token_usage``."""
    return {k: (total.get(k) or 0) - ((previous or {}).get(k) or 0) for k in USAGE_KEYS}


def _call(info: Any, source: Source, context: dict[str, Any], previous: dict[str, Any] | None) -> Request:
    last = info.get("last_token_usage")
    if last is None:
        last = _delta(info["total_token_usage"], previous)
    return Request(
        trace_id=derived_trace_id("codex", context["session"], str(source.line)),
        source=source,
        format="codex",
        model=context["model"],
        provider=context["provider"],
        timestamp=parse_time(context["time"]),
        session_id=context["session"],
        request_format="openai",
        usage=_usage(last),
    )


def _read(sample: Sample) -> Iterator[Item]:
    path = sample.name
    session, model, provider = sample.stem, "", "openai"
    previous_total: dict[str, Any] | None = None
    for number, value in records(sample):
        source = Source(path, number)
        if isinstance(value, Quarantined):
            yield value
            continue
        if not isinstance(value, dict) or not isinstance(value.get("payload"), dict):
            yield Quarantined(source, "a rollout line needs {timestamp, type, payload}")
            continue
        payload = value["payload"]
        if value.get("type") == "session_meta":
            session = text(payload.get("id")) or session
            provider = text(payload.get("model_provider")) or provider
        elif value.get("type") == "turn_context":
            model = text(payload.get("model")) or model
        elif value.get("type") == "event_msg" and payload.get("type") == "token_count":
            info = payload.get("info")
            if info is None:
                continue
            total = info.get("total_token_usage") if isinstance(info, dict) else None
            if total is not None and total == previous_total:
                continue  # the same totals again: no new call
            context = {"session": session, "model": model, "provider": provider, "time": value.get("timestamp")}
            yield from convert_guarded(partial(_call, context=context, previous=previous_total), info, source)
            previous_total = total


def _sniff(sample: Sample) -> bool:
    return any(
        isinstance(r, dict)
        and isinstance(r.get("payload"), dict)
        and r.get("type") in ("session_meta", "turn_context", "response_item", "event_msg")
        for r in sample.records
    )


READER = Reader(
    name="codex",
    description="Codex CLI rollout files (~/.codex/sessions/**/rollout-*.jsonl): usage only, from token_count "
    "events (no prompt content is recorded, so eligible and candidate cannot be computed)",
    sniff=_sniff,
    read=_read,
)

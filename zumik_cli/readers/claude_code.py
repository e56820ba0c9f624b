"""Claude Code session transcripts and headless ``claude -p --output-format stream-json`` output.

Transcripts (``~/.claude/projects/<cwd>/<sessionId>.jsonl``, subagents under ``<sessionId>/subagents/``) write
one line per content block: the lines of one API call share ``message.id`` and its usage, so a call is a
``message.id``, never a line. The request is rebuilt by walking ``parentUuid`` from the call's first line back
to the root (a compaction starts a new root): every user and assistant message on that chain, in order, the
compaction summary included (``isCompactSummary``: it is shown only in the transcript, but it is what the model
receives after a compaction). No
system prompt or tool schemas are written, so those are absent from every request alike. Lines that are not
messages (progress, snapshots, summaries) are walked through without content; synthetic assistant lines
(``model: <synthetic>``, written for API errors) are not calls. Each call keeps its own model and content, so
background and subagent calls never merge with the main thread's.

Headless stream-json has no ``parentUuid``: each thread (``parent_tool_use_id``, ``null`` for the main one) is the
lines in order, and the prompt given with ``-p`` is not in the stream, so every request of a run lacks it alike.
A ``diagnostics.cache_miss_reason`` on an assistant message is read as the provider's miss reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from zumik_cli.core.model import Artifact, Quarantined, Request, Source
from zumik_cli.core.usage import normalize_usage
from zumik_cli.readers import SHAPE_ERRORS, Item, Reader, Sample, convert_guarded, records
from zumik_cli.readers.diagnostics import anthropic_miss
from zumik_cli.readers.fields import parse_time, text
from zumik_cli.readers.messages import content_parts

SYNTHETIC_MODEL = "<synthetic>"


def _message(line: dict[str, Any]) -> dict[str, Any]:
    message = line.get("message")
    if not isinstance(message, dict):
        raise ValueError(f"a {line.get('type')} line needs a message object")
    return message


def _parts(line: dict[str, Any]) -> list[Artifact]:
    message = _message(line)
    role = "assistant" if line.get("type") == "assistant" else "user"
    return content_parts(role, message.get("content"))


@dataclass
class _Call:
    """The lines of one API call (one ``message.id``), in file order."""

    message_id: str
    first: dict[str, Any]
    source: Source
    lines: list[dict[str, Any]] = field(default_factory=list)
    context: tuple[Artifact, ...] | None = None


def _to_request(call: _Call, fmt: str, session: str) -> Request:
    message = _message(call.first)
    model = text(message.get("model"))
    usage_line = max(call.lines, key=lambda line: (_message(line).get("usage") or {}).get("output_tokens") or 0)
    last = _message(usage_line)
    diagnostics = next(
        (d for line in call.lines if (d := _message(line).get("diagnostics") or line.get("diagnostics"))), None
    )
    reason, missed = anthropic_miss(diagnostics)
    output = tuple(a for line in call.lines for a in _parts(line))
    return Request(
        trace_id=call.message_id,
        source=call.source,
        format=fmt,
        model=model,
        provider="anthropic",
        timestamp=parse_time(call.first.get("timestamp")),
        session_id=text(call.first.get("sessionId") or call.first.get("session_id")) or session,
        request_format="anthropic",
        artifacts=call.context or (),
        output=output,
        usage=normalize_usage(last.get("usage")),
        miss_reason=reason,
        missed_tokens=missed,
    )


def _unreadable(line: dict[str, Any]) -> str:
    """Why a message line cannot take part in a call (its content, usage or diagnostics do not read), or ``""``."""
    try:
        _parts(line)
        message = _message(line)
        usage = message.get("usage")
        if usage is not None and not isinstance(usage, dict):
            raise ValueError("message.usage is not an object")
        output = (usage or {}).get("output_tokens")
        if output is not None and (isinstance(output, bool) or not isinstance(output, int)):
            raise ValueError(f"output_tokens is not an integer: {output!r}"[:120])
        normalize_usage(usage)
        anthropic_miss(message.get("diagnostics") or line.get("diagnostics"))
    except SHAPE_ERRORS as exc:
        return f"wrong shape: {type(exc).__name__}: {exc}"[:300]
    return ""


def _is_call(line: dict[str, Any]) -> bool:
    message = line.get("message")
    return (
        line.get("type") == "assistant"
        and isinstance(message, dict)
        and bool(message.get("id"))
        and message.get("model") != SYNTHETIC_MODEL
    )


# --- transcripts ---------------------------------------------------------------------------------------------


def _chain(uuid: str, nodes: dict[str, dict[str, Any]], memo: dict[str, tuple[Artifact, ...]]) -> tuple[Artifact, ...]:
    """The conversation up to and including the line ``uuid``, walking ``parentUuid`` back (iteratively)."""
    path: list[str] = []
    seen: set[str] = set()
    current: str | None = uuid
    while current and current in nodes and current not in memo and current not in seen:
        seen.add(current)
        path.append(current)
        current = text(nodes[current].get("parentUuid")) or None
    base = memo.get(current, ()) if current else ()
    for node_id in reversed(path):
        line = nodes[node_id]
        own: list[Artifact] = []
        if line.get("type") in ("user", "assistant") and (
            not line.get("isVisibleInTranscriptOnly") or line.get("isCompactSummary")
        ):
            own = _parts(line)  # a compaction summary is what the model receives in place of what it summarises
        base = (*base, *own)
        memo[node_id] = base
    return base


def _object_lines(sample: Sample, what: str) -> Iterator[Quarantined | tuple[Source, dict[str, Any]]]:
    """Each line of the file as an object with where it came from; a line that is not one is quarantined."""
    path = sample.name
    for number, value in records(sample):
        if isinstance(value, Quarantined):
            yield value
        elif not isinstance(value, dict):
            yield Quarantined(Source(path, number), f"a {what} line is not an object")
        else:
            yield Source(path, number), value


def _read_transcript(sample: Sample) -> Iterator[Item]:
    nodes: dict[str, dict[str, Any]] = {}
    calls: dict[str, _Call] = {}
    session = sample.stem
    for item in _object_lines(sample, "transcript"):
        if isinstance(item, Quarantined):
            yield item
            continue
        source, value = item
        if value.get("type") in ("user", "assistant") and not isinstance(value.get("message"), dict):
            yield Quarantined(source, f"a {value.get('type')} line without a message object")
            continue
        if value.get("uuid"):
            nodes.setdefault(text(value["uuid"]), value)  # a line repeated later never rewrites the conversation
        if _is_call(value):
            if reason := _unreadable(value):
                yield Quarantined(source, reason)  # this line only: the call's other lines still make the call
                continue
            message_id = text(value["message"]["id"])
            call = calls.get(message_id)
            if call is None:
                call = calls[message_id] = _Call(message_id, value, source)
            call.lines.append(value)
    memo: dict[str, tuple[Artifact, ...]] = {}
    for call in calls.values():

        def convert(c: _Call, _src: Source) -> Request:
            parent = text(c.first.get("parentUuid"))
            c.context = _chain(parent, nodes, memo) if parent else ()
            return _to_request(c, "claude-code", session)

        yield from convert_guarded(convert, call, call.source, shown=call.first)


def _sniff_transcript(sample: Sample) -> bool:
    return any(
        isinstance(r, dict)
        and (
            ("parentUuid" in r and "sessionId" in r)
            or (r.get("type") == "summary" and "leafUuid" in r)
            or r.get("type") == "file-history-snapshot"
        )
        for r in sample.records
    )


READER = Reader(
    name="claude-code",
    description="Claude Code session transcripts (~/.claude/projects/*/*.jsonl, subagents included): one call per "
    "message.id; request rebuilt from the parentUuid chain (no system prompt or tools are recorded)",
    sniff=_sniff_transcript,
    read=_read_transcript,
)


# --- headless stream-json ------------------------------------------------------------------------------------


def _read_stream(sample: Sample) -> Iterator[Item]:
    threads: dict[str, tuple[Artifact, ...]] = {}
    calls: dict[str, _Call] = {}
    session = sample.stem
    for item in _object_lines(sample, "stream-json"):
        if isinstance(item, Quarantined):
            yield item
            continue
        source, value = item
        kind = value.get("type")
        if kind == "system" and value.get("subtype") == "init":
            session = text(value.get("session_id")) or session
        if kind not in ("user", "assistant"):
            continue
        if not isinstance(value.get("message"), dict):
            yield Quarantined(source, f"a {kind} line without a message object")
            continue
        thread = text(value.get("parent_tool_use_id"))
        if reason := _unreadable(value):
            yield Quarantined(source, reason)
            continue
        if _is_call(value):
            message_id = text(value["message"]["id"])
            if message_id not in calls:
                calls[message_id] = _Call(message_id, value, source, context=threads.get(thread, ()))
            calls[message_id].lines.append(value)
        threads[thread] = (*threads.get(thread, ()), *_parts(value))
    for call in calls.values():
        yield from convert_guarded(
            lambda c, _s: _to_request(c, "claude-code-stream", session), call, call.source, shown=call.first
        )


def _sniff_stream(sample: Sample) -> bool:
    return any(
        isinstance(r, dict)
        and "session_id" in r
        and "parentUuid" not in r
        and (
            (r.get("type") == "system" and r.get("subtype") == "init")
            or (r.get("type") == "assistant" and isinstance(r.get("message"), dict) and "parent_tool_use_id" in r)
        )
        for r in sample.records
    )


STREAM_JSON = Reader(
    name="claude-code-stream",
    description="Claude Code headless output (claude -p --output-format stream-json): one call per message.id; "
    "each thread's lines in order (the -p prompt itself is not in the stream)",
    sniff=_sniff_stream,
    read=_read_stream,
)

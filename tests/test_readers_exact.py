"""Real logs read exactly: times that do not parse, Claude Code compaction, quarantine excerpts of Claude Code
lines, usage-only notes, LiteLLM SpendLogs rows and claude-trace request/response logs.

The traces are written here by small generators shaped as each tool writes them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from zumik_cli.core.model import Quarantined, Request
from zumik_cli.dataset.store import Dataset
from zumik_cli.ingest.pipeline import ingest
from zumik_cli.readers import detect, read_all, sample_file

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
SESSION = "5d2f9e1a-7c44-4f0b-a1e3-0b9c8d7e6f51"


def read(path: Path) -> tuple[str, list[Request], list[Quarantined]]:
    sample = sample_file(path)
    assert not isinstance(sample, Quarantined), sample
    reader = detect(sample)
    assert reader is not None
    items = list(read_all(reader, sample))
    return reader.name, [i for i in items if isinstance(i, Request)], [i for i in items if isinstance(i, Quarantined)]


def write_lines(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


class Transcript:
    """A Claude Code transcript written line by line, each line chained to the one before."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self.parent: str | None = None

    def add(self, kind: str, message: dict[str, Any], **extra: Any) -> None:
        uuid = f"u-{len(self.lines):04d}"
        line = {
            "parentUuid": self.parent,
            "isSidechain": False,
            "sessionId": SESSION,
            "type": kind,
            "uuid": uuid,
            "timestamp": f"2025-10-01T10:{len(self.lines):02d}:00.000Z",
            "message": message,
            **extra,
        }
        self.lines.append(line)
        self.parent = uuid

    def user(self, text: str, **extra: Any) -> None:
        self.add("user", {"role": "user", "content": text}, **extra)

    def call(self, n: int, text: str, prompt: int, read: int) -> None:
        usage = {"input_tokens": 3, "cache_creation_input_tokens": prompt - read - 3, "cache_read_input_tokens": read}
        message = {"id": f"msg_{n:03d}", "model": "claude-sonnet-4-5", "role": "assistant", "usage": usage}
        self.add("assistant", {**message, "content": [{"type": "text", "text": text}]}, requestId=f"req_{n}")

    def compact(self) -> None:
        boundary = f"u-{len(self.lines):04d}"
        self.lines.append(
            {
                "parentUuid": None,
                "logicalParentUuid": self.parent,
                "type": "system",
                "subtype": "compact_boundary",
                "uuid": boundary,
                "sessionId": SESSION,
                "timestamp": "2025-10-01T11:00:00.000Z",
                "content": "Conversation compacted",
            }
        )
        self.parent = boundary
        self.user(
            "This session is being continued from a previous conversation. Summary: the cart test was fixed.",
            isCompactSummary=True,
            isVisibleInTranscriptOnly=True,
        )


def test_calls_after_a_claude_code_compaction_carry_the_summary_and_are_never_usage_only(tmp_path: Path) -> None:
    transcript = Transcript()
    transcript.user("Fix the failing cart test")
    transcript.call(1, "Looking at the test.", 12_000, 0)
    transcript.user("Go on")
    transcript.call(2, "Fixed it.", 12_400, 11_990)
    transcript.compact()
    transcript.call(3, "Continuing from the summary.", 9_000, 0)
    transcript.user("Now run the linter")
    transcript.call(4, "Linter is clean.", 9_300, 8_990)
    path = write_lines(tmp_path / f"{SESSION}.jsonl", transcript.lines)

    name, requests, quarantined = read(path)

    assert (name, len(requests), quarantined) == ("claude-code", 4, [])
    assert all(r.artifacts for r in requests)
    after = {r.trace_id: r for r in requests}
    assert "Summary: the cart test was fixed." in after["msg_003"].artifacts[0].body
    assert "Fix the failing cart test" not in " ".join(a.body for a in after["msg_004"].artifacts)


def test_a_timestamp_that_does_not_parse_keeps_the_call_with_an_unknown_time(tmp_path: Path) -> None:
    transcript = Transcript()
    transcript.user("Hello")
    transcript.call(1, "Hi.", 5_000, 0)
    transcript.lines[-1]["timestamp"] = "yesterday at noon"
    transcript.user("Again")
    transcript.call(2, "Hi again.", 5_100, 4_990)
    path = write_lines(tmp_path / f"{SESSION}.jsonl", transcript.lines)

    summary = ingest([path], tmp_path / "data")

    assert (summary.requests, summary.quarantined) == (2, 0)
    assert summary.prompt_tokens_reported == 10_100
    times = dict(Dataset(tmp_path / "data").connect().execute("SELECT trace_id, timestamp FROM requests").fetchall())
    assert times["msg_001"] is None and times["msg_002"] is not None


def test_the_quarantine_excerpt_of_a_claude_code_call_is_its_input_line(tmp_path: Path) -> None:
    transcript = Transcript()
    transcript.user("Hello")
    transcript.call(1, "Hi.", 5_000, 0)
    transcript.lines[-1]["timestamp"] = 1e300  # a time no calendar shows: the call is quarantined
    path = write_lines(tmp_path / f"{SESSION}.jsonl", transcript.lines)

    _, requests, (quarantined,) = read(path)

    assert requests == []
    assert quarantined.reason.startswith("wrong shape: ValueError: unreadable time")
    assert quarantined.excerpt.startswith('{"parentUuid": "u-0000", "isSidechain": false')


def test_a_usage_only_codex_ingest_claims_no_proxy_tokenizer(tmp_path: Path) -> None:
    summary = ingest([FIXTURES / "codex"], tmp_path / "data")

    assert summary.requests == 3 and summary.tokens_counted == 0
    assert not any("cl100k_base" in note for note in summary.notes)


def spend_rows(calls: int, stored: bool) -> list[dict[str, Any]]:
    """LiteLLM_SpendLogs rows as the proxy writes them: JSON columns as text, prompts stored or not."""
    rows = []
    history: list[dict[str, Any]] = [{"role": "system", "content": "You are the billing assistant."}]
    for n in range(calls):
        history = [*history, {"role": "user", "content": f"What does invoice INV-{n} cover? " * 4}]
        prompt, cached = 900 + 40 * n, 0 if n == 0 else 860 + 40 * (n - 1)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": 25,
            "total_tokens": prompt + 25,
            "prompt_tokens_details": {"cached_tokens": cached},
        }
        rows.append(
            {
                "request_id": f"req-{n:03d}",
                "call_type": "acompletion",
                "api_key": "88af3c0e",
                "spend": 0.0012,
                "total_tokens": prompt + 25,
                "prompt_tokens": prompt,
                "completion_tokens": 25,
                "startTime": f"2025-09-14 10:{n:02d}:00.000+00",
                "endTime": f"2025-09-14 10:{n:02d}:01.500+00",
                "model": "gpt-4o-2024-08-06",
                "model_group": "billing",
                "custom_llm_provider": "openai",
                "api_base": "https://api.openai.com/v1",
                "user": "u-17",
                "metadata": json.dumps({"user_api_key_team_id": "team-billing", "usage_object": usage}),
                "cache_hit": "False",
                "cache_key": "Cache OFF",
                "request_tags": "[]",
                "team_id": "team-billing",
                "end_user": "",
                "messages": json.dumps(history) if stored else "{}",
                "response": json.dumps({"choices": [{"message": {"role": "assistant", "content": f"It covers {n}."}}]})
                if stored
                else "{}",
                "session_id": "sess-billing-1",
                "status": "success",
                "proxy_server_request": "{}",
            }
        )
        history = [*history, {"role": "assistant", "content": f"It covers {n}."}]
    rows.append(dict(rows[-1], request_id="req-hit", cache_hit="True"))  # LiteLLM's response cache: no call
    return rows


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_litellm_spend_rows_give_request_session_tenant_and_cached_tokens_as_json_lines_or_csv(
    tmp_path: Path,
) -> None:
    rows = spend_rows(4, stored=True)
    expected_cached = sum(
        json.loads(r["metadata"])["usage_object"]["prompt_tokens_details"]["cached_tokens"] for r in rows[:4]
    )

    for path in (write_lines(tmp_path / "spend.jsonl", rows), write_csv(tmp_path / "spend.csv", rows)):
        name, requests, quarantined = read(path)
        assert name == "litellm-spend"
        assert [r.trace_id for r in requests] == ["req-000", "req-001", "req-002", "req-003"]
        assert {(r.session_id, r.tenant, r.alias) for r in requests} == {("sess-billing-1", "team-billing", "billing")}
        assert sum(r.usage.cached_tokens or 0 for r in requests) == expected_cached
        assert sum(r.usage.prompt_tokens or 0 for r in requests) == sum(int(r["prompt_tokens"]) for r in rows[:4])
        assert requests[2].artifacts[0].body == "You are the billing assistant."
        assert requests[1].timestamp == 1757844060.0
        assert [q.reason.split(":")[0] for q in quarantined] == ["not a provider call"]


def test_litellm_spend_rows_without_stored_prompts_are_usage_only_never_a_prompt_of_braces(tmp_path: Path) -> None:
    rows = spend_rows(3, stored=False)

    _, requests, _ = read(write_csv(tmp_path / "spend.csv", rows))

    assert len(requests) == 3
    assert all(r.artifacts == () and r.output == () for r in requests)
    assert [r.usage.cached_tokens for r in requests] == [0, 860, 900]


def trace_pair(n: int, streamed: bool, history: list[dict[str, Any]]) -> dict[str, Any]:
    """One claude-trace line: the Messages request as Claude Code sent it and the response it got."""
    usage = {"input_tokens": 4, "cache_creation_input_tokens": 300, "cache_read_input_tokens": 14_000 + 300 * n}
    body = {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 32000,
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "tools": [{"name": "Read", "description": "Read a file", "input_schema": {"type": "object"}}],
        "messages": history,
        "metadata": {"user_id": "user_abc_account_1_session_42"},
        "stream": streamed,
    }
    response: dict[str, Any] = {"timestamp": 1757843001.5 + n, "status_code": 200, "headers": {}}
    if streamed:
        events = [
            {"type": "message_start", "message": {"id": f"msg_t{n}", "model": body["model"], "usage": usage}},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"Step {n} "}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "done."}},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 40 + n}},
            {"type": "message_stop"},
        ]
        response["body_raw"] = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
    else:
        content = [{"type": "text", "text": f"Step {n} done."}]
        response["body"] = {
            "id": f"msg_t{n}",
            "type": "message",
            "content": content,
            "usage": usage | {"output_tokens": 40 + n},
        }
    return {
        "request": {
            "timestamp": 1757843000.0 + n,
            "method": "POST",
            "url": "https://api.anthropic.com/v1/messages",
            "headers": {},
            "body": body,
        },
        "response": response,
        "logged_at": "2025-09-14T10:00:00.000Z",
    }


def test_claude_trace_logs_are_read_with_the_system_prompt_and_tools_streamed_or_not(tmp_path: Path) -> None:
    history: list[dict[str, Any]] = []
    pairs = []
    for n in range(4):
        history = [*history, {"role": "user", "content": f"Do step {n}"}]
        pairs.append(trace_pair(n, streamed=n % 2 == 1, history=list(history)))
        history = [*history, {"role": "assistant", "content": f"Step {n} done."}]
    count_tokens = dict(
        pairs[0], request=dict(pairs[0]["request"], url="https://api.anthropic.com/v1/messages/count_tokens")
    )
    lost = dict(pairs[1], response=None)
    path = write_lines(tmp_path / "log-2025-09-14-10-00-00.jsonl", [*pairs, count_tokens, lost])

    name, requests, quarantined = read(path)

    assert name == "claude-trace"
    assert [r.trace_id for r in requests] == ["msg_t0", "msg_t1", "msg_t2", "msg_t3"]
    assert [r.usage.output_tokens for r in requests] == [40, 41, 42, 43]
    assert sum(r.usage.cached_tokens or 0 for r in requests) == sum(14_000 + 300 * n for n in range(4))
    assert all(r.usage.prompt_tokens == 4 + 300 + 14_000 + 300 * n for n, r in enumerate(requests))
    assert [a.kind for a in requests[3].artifacts[:2]] == ["tool", "system"]
    assert requests[1].output[0].body == "Step 1 done."
    assert [q.source.line for q in quarantined] == [5, 6]

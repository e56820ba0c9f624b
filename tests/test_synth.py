"""`zumik synth` traffic: deterministic, valid zumik JSONL, shaped like real agent traffic."""

from __future__ import annotations

import io
import itertools
import json
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import runner

from zumik_cli.core.errors import ZumikError
from zumik_cli.synth.traffic import SynthConfig, alias_releases, generate, write_jsonl

SCHEMA = json.loads((Path(__file__).parents[1] / "docs" / "zumik-jsonl.schema.json").read_text())
ANTHROPIC_MINIMUM = {"claude-sonnet-4-5": 1024, "claude-haiku-4-5": 4096}


@pytest.fixture(scope="module")
def demo() -> list[dict[str, Any]]:
    """The bundled demo: the default config. Serialised and parsed back, as a reader would see it."""
    return [json.loads(json.dumps(record)) for record in generate(SynthConfig())]


def _sessions(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    sessions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        sessions[record["session_id"]].append(record)
    return sessions


def _time(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(record["timestamp"])


def _plain(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages without cache_control: a breakpoint marks where a request ends, not what it says."""
    return [
        {**m, "content": [{k: v for k, v in part.items() if k != "cache_control"} for part in m["content"]]}
        for m in messages
    ]


def _prompt_tokens(record: dict[str, Any]) -> int:
    usage = record["usage"]
    if record["provider"] == "anthropic":
        return usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"]
    return usage["prompt_tokens"]


def _cache_read(record: dict[str, Any]) -> int:
    usage = record["usage"]
    if record["provider"] == "anthropic":
        return usage["cache_read_input_tokens"]
    return usage.get("prompt_tokens_details", {}).get("cached_tokens", 0)


def test_the_same_config_writes_byte_identical_files(tmp_path: Path) -> None:
    config = SynthConfig(sessions=12, seed=7)
    first = write_jsonl(config, tmp_path / "a.jsonl")
    second = write_jsonl(config, tmp_path / "b.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert first == second
    assert first.bytes == (tmp_path / "a.jsonl").stat().st_size
    assert first.requests == len((tmp_path / "a.jsonl").read_text().splitlines())


def test_different_seeds_write_different_traffic(tmp_path: Path) -> None:
    write_jsonl(SynthConfig(sessions=6, seed=1), tmp_path / "one.jsonl")
    write_jsonl(SynthConfig(sessions=6, seed=2), tmp_path / "two.jsonl")
    assert (tmp_path / "one.jsonl").read_bytes() != (tmp_path / "two.jsonl").read_bytes()


def test_a_stream_gets_the_same_lines_as_a_file(tmp_path: Path) -> None:
    config = SynthConfig(sessions=4)
    stream = io.StringIO()
    summary = write_jsonl(config, stream)
    write_jsonl(config, tmp_path / "file.jsonl")
    assert stream.getvalue() == (tmp_path / "file.jsonl").read_text()
    assert summary.requests == stream.getvalue().count("\n")


def test_every_record_validates_against_the_zumik_jsonl_schema(demo: list[dict[str, Any]]) -> None:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for record in demo:
        errors = list(validator.iter_errors(record))
        assert not errors, (record["trace_id"], errors[0].message)


def test_timestamps_never_decrease(demo: list[dict[str, Any]]) -> None:
    times = [_time(record) for record in demo]
    assert times == sorted(times)
    assert times[0] == datetime.fromisoformat("2026-06-09T09:00:00+00:00")


def test_each_request_extends_the_previous_one_of_its_session_with_that_ones_reply(
    demo: list[dict[str, Any]],
) -> None:
    extended = branched = 0
    for records in _sessions(demo).values():
        seen: list[list[dict[str, Any]]] = []  # every state the session reached: a request plus its reply
        for before, after in itertools.pairwise(records):
            seen.append(_plain(before["messages"]) + [before["output"]])
            messages = _plain(after["messages"])
            if messages[: len(seen[-1])] == seen[-1]:
                extended += 1
            else:
                # a retry or a rewind: all but the newest user turn is a state the session already had
                branched += 1
                assert messages == _plain(before["messages"]) or any(
                    state[: len(messages) - 1] == messages[:-1] for state in seen
                ), after["trace_id"]
    assert extended > 0.9 * (extended + branched)
    assert branched > 0


def test_long_sessions_that_compact_and_rewind_still_resend_what_they_reached() -> None:
    config = SynthConfig(sessions=4, mean_turns=8, mean_tool_steps=12, fork_probability=0.5, coding_share=1.0)
    records = list(generate(config))
    for session in _sessions(records).values():
        for before, after in itertools.pairwise(session):
            reached = _plain(before["messages"]) + [before["output"]]
            messages = _plain(after["messages"])
            compacted = len(messages) == 1 and "ran out of context" in messages[0]["content"][0]["text"]
            rewound = any(m["role"] == "user" for m in messages[-1:]) and messages[:-1] == reached[: len(messages) - 1]
            assert messages[: len(reached)] == reached or messages == reached[:-1] or compacted or rewound


def test_usage_follows_each_providers_family(demo: list[dict[str, Any]]) -> None:
    for record in demo:
        usage = record["usage"]
        # Anthropic's input_tokens excludes cache reads and writes, OpenAI's prompt_tokens includes cached
        # tokens: either way the total is the prompt, about 4 characters a token
        text = json.dumps([record["tools"], record["system"], record["messages"]])
        assert 0.5 < _prompt_tokens(record) / (len(text) / 4) < 1.2, record["trace_id"]
        read = _cache_read(record)
        if record["provider"] == "anthropic":
            assert set(usage) == {
                "input_tokens",
                "cache_read_input_tokens",
                "cache_creation_input_tokens",
                "output_tokens",
            }
            assert min(usage.values()) >= 0
            assert read == 0 or read >= ANTHROPIC_MINIMUM[record["model"]]
        else:
            assert usage["prompt_tokens"] + usage["completion_tokens"] == usage["total_tokens"]
            assert 0 <= read <= usage["prompt_tokens"]
            assert read == 0 or (read >= 1024 and (read - 1024) % 128 == 0)


def test_anthropic_records_mark_breakpoints_on_the_system_and_the_last_message(
    demo: list[dict[str, Any]],
) -> None:
    for record in demo:
        breakpoints = [part for part in record["system"] if isinstance(part, dict) and "cache_control" in part]
        breakpoints += [part for m in record["messages"] for part in m["content"] if "cache_control" in part]
        if record["provider"] == "anthropic":
            assert "cache_control" in record["system"][-1]
            assert "cache_control" in record["messages"][-1]["content"][-1]
            assert len(breakpoints) == 2
        else:
            assert breakpoints == []


def test_cache_reads_need_an_earlier_request_on_the_same_model_and_tenant_within_an_hour(
    demo: list[dict[str, Any]],
) -> None:
    last_seen: dict[tuple[str, str, str], datetime] = {}
    reads = 0
    for record in demo:
        key = (record["tenant"], record["model"], record["model_revision"])
        if _cache_read(record):
            reads += 1
            assert key in last_seen and _time(record) - last_seen[key] <= timedelta(hours=1), record["trace_id"]
        last_seen[key] = _time(record)
    assert reads > 0.7 * len(demo)


def test_the_first_request_of_a_cold_model_reads_nothing(demo: list[dict[str, Any]]) -> None:
    first: dict[tuple[str, str, str], dict[str, Any]] = {}
    for record in demo:
        first.setdefault((record["tenant"], record["model"], record["model_revision"]), record)
    assert all(_cache_read(record) == 0 for record in first.values())


def test_at_least_two_tenants_share_a_system_prompt_and_tools(demo: list[dict[str, Any]]) -> None:
    tenants = defaultdict(set)
    for record in demo:
        system = record["system"] if isinstance(record["system"], str) else record["system"][0]["text"]
        tenants[(system, json.dumps(record["tools"]))].add(record["tenant"])
    assert max(len(names) for names in tenants.values()) >= 2


def test_some_think_time_gaps_exceed_the_five_minute_ttl_and_a_few_an_hour(demo: list[dict[str, Any]]) -> None:
    gaps = [
        (_time(after) - _time(before)).total_seconds() - before["latency_ms"] / 1000
        for records in _sessions(demo).values()
        for before, after in itertools.pairwise(records)
    ]
    assert any(gap > 300 for gap in gaps)
    assert any(gap > 3600 for gap in gaps)
    assert sorted(gaps)[len(gaps) // 2] < 60


def test_the_demo_exercises_forks_subagents_model_changes_and_diagnostics(demo: list[dict[str, Any]]) -> None:
    sessions = _sessions(demo)
    assert any(".sub" in session_id for session_id in sessions)
    assert any(len({r["model"] for r in records}) > 1 for records in sessions.values())
    assert {r["provider"] for r in demo} == {"anthropic", "openai"}
    assert {r["model"] for r in demo} == {"claude-sonnet-4-5", "claude-haiku-4-5", "gpt-4.1", "gpt-4o-mini"}
    assert len({r["model_revision"] for r in demo if r["model"] == "claude-sonnet-4-5"}) == 2
    reasons = {r["diagnostics"]["cache_miss_reason"]["type"] for r in demo if "diagnostics" in r}
    assert reasons and all(r["provider"] == "anthropic" for r in demo if "diagnostics" in r)
    assert any(r["usage"].get("cache_creation_input_tokens") for r in demo)
    assert {part["type"] for r in demo for m in r["messages"] for part in m["content"]} == {
        "text",
        "tool_call",
        "tool_result",
    }


def test_records_name_the_release_their_alias_resolved_to_at_that_time(demo: list[dict[str, Any]]) -> None:
    history = alias_releases(SynthConfig())
    assert all(r["alias_release"] for r in history)
    for record in demo:
        current = [
            r
            for r in history
            if r["alias"] == record["alias"] and datetime.fromisoformat(r["created_at"]) <= _time(record)
        ][-1]
        assert record["alias_release"] == current["alias_release"]
        assert current["targets"][0]["model_revision"] == record["model_revision"]
    assert len({r["alias_release"] for r in demo}) > len({r["alias"] for r in demo})


def test_an_unknown_cached_field_is_left_out_not_written_as_zero() -> None:
    records = list(generate(SynthConfig(sessions=8, unknown_cache_rate=1.0)))
    openai = [r for r in records if r["provider"] == "openai"]
    assert openai and all("prompt_tokens_details" not in r["usage"] for r in openai)


def test_a_huge_config_streams_its_first_records_at_once() -> None:
    records = generate(SynthConfig(sessions=10**9))
    first = list(itertools.islice(records, 3))
    assert len(first) == 3


def test_a_probability_outside_zero_and_one_is_refused() -> None:
    with pytest.raises(ZumikError, match="fork_probability"):
        SynthConfig(fork_probability=1.5)


def _synth(*args: str) -> Any:
    from zumik_cli.cli import app

    return runner().invoke(app, ["synth", *args])


@pytest.mark.parametrize("sessions", [10, 230])
def test_synth_makes_exactly_the_sessions_asked_for_with_subagents_counted_apart(sessions: int, tmp_path: Path) -> None:
    result = _synth("--sessions", str(sessions), "-o", str(tmp_path / "t.jsonl"), "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    records = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    roots = {r["session_id"].split(".", 1)[0] for r in records}
    assert summary["sessions"] == len(roots) == sessions
    assert summary["subagents"] == len({r["session_id"] for r in records}) - sessions


def test_synth_never_replaces_a_file_it_finds_unless_forced(tmp_path: Path) -> None:
    mine = tmp_path / "releases.yaml"
    mine.write_text("# my own release history\n")
    refused = _synth("--sessions", "2", "-o", str(tmp_path / "t.jsonl"))
    assert refused.exit_code == 2 and refused.stderr.startswith(f"Error: {mine} already exists: pass --force")
    assert mine.read_text() == "# my own release history\n" and not (tmp_path / "t.jsonl").exists()
    forced = _synth("--sessions", "2", "-o", str(tmp_path / "t.jsonl"), "--force")
    assert forced.exit_code == 0, forced.stderr
    assert mine.read_text() != "# my own release history\n" and (tmp_path / "t.jsonl").exists()


def test_synth_writes_about_the_size_asked_for(tmp_path: Path) -> None:
    result = _synth("--size", "10MB", "-o", str(tmp_path / "t.jsonl"))
    assert result.exit_code == 0, result.stderr
    assert abs((tmp_path / "t.jsonl").stat().st_size - 10_000_000) <= 1_000_000

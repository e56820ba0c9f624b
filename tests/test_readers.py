"""Trace readers: detection from the first records, the canonical requests each format gives, real traces."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES

from zumik_cli import readers
from zumik_cli.core.errors import InputError
from zumik_cli.core.model import Artifact, Quarantined, Request
from zumik_cli.dataset.store import Dataset
from zumik_cli.ingest.pipeline import IngestSummary, ingest
from zumik_cli.readers.inputs import find_inputs


def read(path: Path, forced: str | None = None) -> tuple[str, list[Request], list[Quarantined]]:
    sample = readers.sample_file(path)
    assert not isinstance(sample, Quarantined), sample
    reader = readers.detect(sample, forced)
    assert reader is not None, f"no reader recognised {path.name}"
    items = list(reader.read(sample))
    return (
        reader.name,
        [item for item in items if isinstance(item, Request)],
        [item for item in items if isinstance(item, Quarantined)],
    )


@pytest.mark.parametrize(
    ("fixture", "format", "requests"),
    [
        ("openai_chat.jsonl", "openai-chat", 3),
        ("anthropic_messages.jsonl", "anthropic", 3),
        ("zumik.jsonl", "zumik", 3),
        ("gpt-4o-retail.json", "tau-bench", 4),
        ("mini-swe-agent-demo.json", "mini-swe-agent", 2),
        ("mooncake.jsonl", "mooncake", 4),
        ("bailian.jsonl", "bailian", 4),
        ("weka_trace.json", "weka", 4),
    ],
)
def test_each_format_is_recognised_from_its_first_records(fixture: str, format: str, requests: int) -> None:
    name, found, quarantined = read(FIXTURES / fixture)

    assert name == format
    assert len(found) == requests
    assert quarantined == []
    assert {request.format for request in found} == {format}


def test_the_zumik_fixture_is_valid_against_the_published_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).parents[1] / "docs" / "zumik-jsonl.schema.json").read_text())

    for line in (FIXTURES / "zumik.jsonl").read_text().splitlines():
        jsonschema.validate(json.loads(line), schema)


def test_an_openai_chat_log_becomes_tools_then_system_then_the_conversation() -> None:
    _, requests, _ = read(FIXTURES / "openai_chat.jsonl")
    second = requests[1]

    assert [(a.kind, a.role) for a in second.artifacts] == [
        ("tool", "tools"),
        ("system", "system"),
        ("text", "user"),
        ("tool_call", "assistant"),
        ("tool_result", "tool"),
    ]
    call, result = second.artifacts[3], second.artifacts[4]
    assert (call.name, call.ref, call.body) == ("read_file", "call_1", '{"path":"src/parse.py"}')
    assert result.ref == "call_1"
    assert (second.tenant, second.session_id, second.provider, second.model) == (
        "acme",
        "ses-fix-1",
        "openai",
        "gpt-4o",
    )
    assert second.trace_id == "chatcmpl-fix-2"
    assert second.timestamp == 1772445604.0
    assert second.usage.cached_tokens == 384


def test_a_flattened_gateway_record_reads_like_a_request_response_pair() -> None:
    _, requests, _ = read(FIXTURES / "openai_chat.jsonl")
    flat = requests[2]

    assert flat.trace_id == "chatcmpl-fix-3"
    assert flat.artifacts[0] == Artifact("system", "system", "Answer in one word.")
    assert flat.usage.prompt_tokens == 21
    assert flat.usage.cached_tokens is None
    assert flat.output == (Artifact("text", "assistant", "Paris"),)


def test_an_anthropic_log_keeps_breakpoints_as_hints_and_reads_miss_diagnostics() -> None:
    _, requests, _ = read(FIXTURES / "anthropic_messages.jsonl")
    first, second, third = requests

    assert [(a.kind, a.cache_control) for a in first.artifacts] == [("tool", "1h"), ("system", "5m"), ("text", "")]
    assert second.artifacts[-1].kind == "tool_result" and second.artifacts[-1].role == "tool"
    assert second.output == (Artifact("text", "assistant", "parse() splits on commas but the test passes semicolons."),)
    assert (second.usage.prompt_tokens, second.usage.cached_tokens) == (45 + 1800, 1800)
    assert (third.miss_reason, third.missed_tokens, third.tenant) == ("system_changed", 1800, "globex")
    assert third.timestamp is not None


def test_a_zumik_record_carries_every_kv_field_and_its_alias() -> None:
    _, requests, _ = read(FIXTURES / "zumik.jsonl")
    first, second, third = requests

    assert (first.alias, first.alias_release, first.model_revision) == ("code.fast", "alr_2026_03_01_001", "20250929")
    assert first.request_format == "anthropic"
    assert first.latency_ms == 812.5
    assert second.miss_reason == "messages_changed" and second.missed_tokens == 0
    assert (third.engine, third.region, third.quantization, third.tenant) == ("vllm", "eu-west", "fp8", "globex")
    assert third.request_format == "openai"


def test_tau_bench_gives_one_request_per_assistant_message_holding_every_message_before_it() -> None:
    _, requests, _ = read(FIXTURES / "gpt-4o-retail.json")

    assert [len(r.artifacts) for r in requests] == [2, 4, 6, 2]
    assert {r.model for r in requests} == {"gpt-4o"}, "the model comes from the file name"
    assert [r.session_id for r in requests] == ["gpt-4o:task-0-trial-0"] * 3 + ["gpt-4o:task-0-trial-1"]
    assert requests[1].artifacts[2].kind == "tool_call"
    assert requests[1].output == (
        Artifact("text", "assistant", "Order #W100 was delivered; which items should I return?"),
    )


def test_tau_bench_files_of_two_models_keep_their_calls_apart(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "gpt-4o-retail.json", tmp_path / "gpt-4o-retail.json")
    shutil.copy(FIXTURES / "gpt-4o-retail.json", tmp_path / "claude-3-5-sonnet-retail.json")

    summary = ingest([tmp_path], tmp_path / "data")

    assert summary.requests == 8
    assert summary.duplicates_skipped == 0


def test_mini_swe_agent_usage_and_time_come_from_each_recorded_response() -> None:
    _, requests, _ = read(FIXTURES / "mini-swe-agent-demo.json")
    first, second = requests

    assert (first.trace_id, first.model, first.provider) == ("gen-demo-1", "google/gemini-3-pro-preview", "google")
    assert first.session_id == "demo__demo-1"
    assert first.timestamp == 1763511136.0
    assert (first.usage.prompt_tokens, first.usage.cached_tokens) == (1496, 0)
    assert (second.usage.prompt_tokens, second.usage.cached_tokens) == (1702, None)
    assert [a.role for a in second.artifacts] == ["system", "user", "assistant", "user"]


def test_mooncake_blocks_are_512_tokens_and_timestamps_become_seconds() -> None:
    _, requests, _ = read(FIXTURES / "mooncake.jsonl")

    assert [r.timestamp for r in requests] == [0.0, 1.5, 2.75, 4.0]
    assert requests[1].hash_blocks is not None
    assert requests[1].hash_blocks.hash_ids == (0, 1, 3, 4)
    assert requests[1].hash_blocks.block_size == 512
    assert [r.usage.prompt_tokens for r in requests] == [1100, 1600, 300, 1536]
    assert all(r.usage.cached_tokens is None for r in requests), "a hash-id trace says nothing about the cache"


def test_bailian_follow_up_chats_join_the_session_of_their_first_chat() -> None:
    _, requests, _ = read(FIXTURES / "bailian.jsonl")

    assert [r.session_id for r in requests] == ["11", "11", "20", "11"]
    assert {r.hash_blocks.block_size for r in requests if r.hash_blocks} == {16}


def test_weka_subagent_requests_are_flattened_onto_the_parent_clock() -> None:
    _, requests, _ = read(FIXTURES / "weka_trace.json")

    assert [r.timestamp for r in requests] == [0.0, 12.5, 15.0, 30.0]
    assert [r.model for r in requests] == [
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
        "claude-haiku-4-5",
        "claude-sonnet-4-5",
    ]
    assert {r.session_id for r in requests} == {"weka-fix"}
    assert {r.hash_blocks.block_size for r in requests if r.hash_blocks} == {64}


def test_a_forced_format_that_does_not_exist_names_the_known_ones() -> None:
    sample = readers.sample_file(FIXTURES / "zumik.jsonl")
    assert not isinstance(sample, Quarantined)

    with pytest.raises(InputError, match="unknown format 'nope'; known formats: .*zumik.*openai-chat"):
        readers.detect(sample, "nope")


def test_a_forced_format_is_used_even_when_another_would_be_detected() -> None:
    _, requests, quarantined = read(FIXTURES / "anthropic_messages.jsonl", forced="openai-chat")

    assert [r.format for r in requests] == ["openai-chat"] * 3
    assert quarantined == []


def test_a_forced_format_that_does_not_fit_quarantines_each_record_with_its_reason() -> None:
    _, requests, quarantined = read(FIXTURES / "openai_chat.jsonl", forced="anthropic")

    assert requests == []
    assert [q.source.line for q in quarantined] == [1, 2, 3]
    assert all(q.reason.startswith("wrong shape: ValueError") for q in quarantined)


def test_folders_are_searched_recursively_for_trace_files_and_the_others_are_named(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/one.jsonl", "a/b/two.json", "a/b/three.ndjson.gz", "a/notes.txt", "a/b/image.png", "a/x.csv"):
        (tmp_path / name).write_text("{}")

    found = find_inputs([tmp_path])

    assert [p.relative_to(tmp_path).as_posix() for p in found.files] == [
        "a/b/three.ndjson.gz",
        "a/b/two.json",
        "a/one.jsonl",
        "a/x.csv",
    ]
    assert sorted(Path(n["path"]).relative_to(tmp_path).as_posix() for n in found.not_read) == [
        "a/b/image.png",
        "a/notes.txt",
    ]
    assert all(n["reason"].startswith("not a trace file name") for n in found.not_read)


def test_a_path_that_does_not_exist_is_a_clear_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist: check the path"):
        find_inputs([tmp_path / "missing.jsonl"])


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [("empty.jsonl", "empty file"), ("binary.jsonl", "binary file")],
)
def test_an_empty_or_binary_file_is_quarantined_before_detection(fixture: str, reason: str) -> None:
    sample = readers.sample_file(FIXTURES / "bad" / fixture)

    assert isinstance(sample, Quarantined)
    assert sample.reason.startswith(reason)
    assert sample.source.line == 0


def test_quarantine_excerpts_never_carry_credentials() -> None:
    line = (
        '{"headers": {"Authorization": "Bearer sk-live-0123456789abcdefghij", "x-api-key": "k-123"}, '
        '"cookie": "session=abc", "note": "key AIzaSyA-0123456789abcdefghijklmn"}'
    )

    excerpt = readers.excerpt(line)

    for secret in ("sk-live", "k-123", "session=abc", "AIzaSy"):
        assert secret not in excerpt
    assert excerpt.count("[redacted]") == 4


# --- real traces (../shared/data/real) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tau_bench(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, IngestSummary, list]:
    path = real_data / "tau_bench_airline" / "gpt-4o-airline.json"
    data = tmp_path_factory.mktemp("tau") / "data"
    return data, ingest([path], data), json.loads(path.read_text())


@pytest.mark.realdata
def test_real_tau_bench_gives_one_request_per_assistant_message_and_quarantines_nothing(tau_bench: tuple) -> None:
    data, summary, document = tau_bench
    assistant_messages = sum(m["role"] == "assistant" for entry in document for m in entry["traj"])

    assert summary.requests == assistant_messages
    assert summary.quarantined == 0
    assert summary.formats == {"tau-bench": assistant_messages}
    sessions = Dataset(data).connect().execute("SELECT count(DISTINCT session_id) FROM requests").fetchone()
    assert sessions == (len(document),) == (200,)


@pytest.mark.realdata
def test_every_real_tau_bench_request_starts_with_the_same_system_prompt(tau_bench: tuple) -> None:
    data, _, document = tau_bench
    prompts = {entry["traj"][0]["content"] for entry in document}
    assert len(prompts) == 1

    first_blocks = (
        Dataset(data)
        .connect()
        .execute(
            "SELECT DISTINCT b.block_id, b.chain, k.kind, k.text FROM request_blocks b "
            "JOIN blocks k USING (block_id) WHERE b.pos = 0"
        )
        .fetchall()
    )
    assert len(first_blocks) == 1, "one first block, one first chain id, for every request"
    _, _, kind, text = first_blocks[0]
    assert kind == "system"
    assert prompts.pop() in text


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("folder", "requests", "input_tokens"),
    [("mooncake_fast25", 3_993, 61_194_628), ("weka_claude_code", 1_026, 134_185_380)],
)
def test_real_hash_id_traces_match_the_reference_request_and_token_counts(
    real_data: Path, folder: str, requests: int, input_tokens: int
) -> None:
    found: list[Request] = []
    for path in find_inputs([real_data / folder]).files:
        _, file_requests, quarantined = read(path)
        assert quarantined == []
        found.extend(file_requests)

    assert len(found) == requests
    assert sum(r.usage.prompt_tokens or 0 for r in found) == input_tokens

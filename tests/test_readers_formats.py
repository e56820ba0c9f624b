"""The readers of issue 7 on fixtures written from each format's documented schema.

For every reader: known totals (requests, prompt tokens, cache reads, cache writes), a malformed record that is
quarantined with a reason while the rest is read, and auto-detection from a folder that mixes every format.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from zumik_cli.analysis.waterfall import WaterfallOptions, compute_waterfall
from zumik_cli.cli import app
from zumik_cli.core.usage import normalize_usage
from zumik_cli.dataset.store import Dataset, read_manifest
from zumik_cli.ingest.pipeline import ingest

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
CLAUDE_SESSION = "3f9c2a7e-51d4-4b8e-9a0c-6e1d2f7b8c90"

# fixture folder: (format, requests, prompt tokens, cache reads, cache writes)
EXPECTED = {
    "openai_responses": ("openai-responses", 4, 6_300, 1_024, 0),
    "litellm": ("litellm", 4, 32_340, 18_688, 12_400),
    "otel": ("otel-genai", 4, 13_400, 9_656, 1_000),
    "claude_code": ("claude-code", 7, 59_088, 47_900, 11_150),
    "claude_code_stream": ("claude-code-stream", 2, 21_758, 19_800, 1_950),
    "codex": ("codex", 3, 25_800, 16_384, 0),
    "langfuse": ("langfuse", 3, 14_696, 11_336, 640),
    "helicone": ("helicone", 3, 10_700, 7_920, 800),
    "litellm_spend": ("litellm-spend", 3, 2_820, 1_760, 0),
    "claude_trace": ("claude-trace", 3, 43_812, 42_900, 900),
}
# lines that are not provider calls, quarantined with their reason in the clean fixtures
NOT_CALLS = {"litellm": "LiteLLM served it from its own response cache", "helicone": "Helicone served it"}

TOTALS_SQL = """
SELECT format, count(*), sum(prompt_tokens_reported), sum(cached_tokens_reported),
       sum(coalesce(cache_write_tokens_reported, 0))
FROM requests GROUP BY format
"""


def totals(data: Path) -> dict[str, tuple[int, ...]]:
    con = Dataset(data).connect()
    return {row[0]: tuple(int(v or 0) for v in row[1:]) for row in con.execute(TOTALS_SQL).fetchall()}


def quarantine(data: Path) -> list[dict[str, Any]]:
    return Dataset(data).quarantine_entries()


@pytest.mark.parametrize("folder", sorted(EXPECTED))
def test_each_reader_reads_its_fixture_to_the_known_totals(folder: str, tmp_path: Path) -> None:
    fmt, requests, prompt, cached, writes = EXPECTED[folder]
    summary = ingest([FIXTURES / folder], tmp_path / "data")
    assert totals(tmp_path / "data") == {fmt: (requests, prompt, cached, writes)}
    assert summary.requests == requests
    reasons = [q["reason"] for q in quarantine(tmp_path / "data")]
    if folder in NOT_CALLS:
        assert len(reasons) == 1 and NOT_CALLS[folder] in reasons[0]
    else:
        assert reasons == []


def _jsonl(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _append(path: Path, record: Any) -> None:
    with path.open("a") as handle:
        handle.write((record if isinstance(record, str) else json.dumps(record)) + "\n")


def _bad_otel(root: Path) -> None:
    path = root / "otlp_traces.json"
    document = json.loads(path.read_text())
    spans = document["resourceSpans"][1]["scopeSpans"][0]["spans"]
    spans.append({"traceId": "ff", "spanId": "ee", "name": "chat broken", "attributes": "gen_ai.usage.input_tokens=12"})
    path.write_text(json.dumps(document))


MALFORMED = {
    "openai_responses": (
        lambda root: _append(
            root / "responses.jsonl",
            {"request": {"model": "gpt-4.1", "input": 42}, "response": {"id": "resp_bad", "object": "response"}},
        ),
        "input must be a string or a list",
    ),
    "litellm": (
        lambda root: _append(
            root / "litellm_spend.jsonl",
            {**_jsonl(root / "litellm_spend.jsonl")[2], "id": "chatcmpl-broken", "messages": 7},
        ),
        "wrong shape",
    ),
    "otel": (_bad_otel, "attributes must be a list"),
    "litellm_spend": (
        lambda root: _append(
            root / "spend_logs.jsonl",
            {**_jsonl(root / "spend_logs.jsonl")[2], "request_id": "req-broken", "metadata": "{not json"},
        ),
        "wrong shape",
    ),
    "claude_trace": (
        lambda root: _append(
            root / "log-2025-09-14-10-00-00.jsonl",
            {**_jsonl(root / "log-2025-09-14-10-00-00.jsonl")[0], "request": {"url": "/v1/messages", "body": 3}},
        ),
        "request.body needs a messages list",
    ),
    "claude_code": (
        lambda root: _append(
            root / "projects" / "-home-dev-shop" / f"{CLAUDE_SESSION}.jsonl",
            {
                "type": "assistant",
                "uuid": "zz-1",
                "parentUuid": "c0a8-0013",
                "sessionId": CLAUDE_SESSION,
                "message": "?",
            },
        ),
        "without a message object",
    ),
    "claude_code_stream": (
        lambda root: _append(root / "headless-run.jsonl", {"type": "assistant", "message": None, "session_id": "x"}),
        "without a message object",
    ),
    "codex": (
        lambda root: _append(
            next(root.rglob("rollout-*.jsonl")),
            {
                "timestamp": "2025-09-14T10:09:00.000Z",
                "type": "event_msg",
                "payload": {
                    "type": "token_count",
                    "info": {"total_token_usage": {"input_tokens": 1}, "last_token_usage": {"input_tokens": "lots"}},
                },
            },
        ),
        "input_tokens must be a non-negative integer",
    ),
    "langfuse": (
        lambda root: _append(
            root / "observations.jsonl",
            {
                "id": "obs-bad",
                "traceId": "t",
                "type": "GENERATION",
                "startTime": "2025-09-14T11:20:00Z",
                "usageDetails": {"input": -5},
            },
        ),
        "not a non-negative number",
    ),
    "helicone": (
        lambda root: _append(
            root / "helicone_export.jsonl",
            {**_jsonl(root / "helicone_export.jsonl")[3], "request_id": "bad-row", "prompt_tokens": "many"},
        ),
        "prompt_tokens must be a non-negative integer",
    ),
}


@pytest.mark.parametrize("folder", sorted(EXPECTED))
def test_a_malformed_record_is_quarantined_with_its_reason_and_the_rest_is_read(folder: str, tmp_path: Path) -> None:
    fmt, requests, prompt, cached, writes = EXPECTED[folder]
    root = tmp_path / folder
    shutil.copytree(FIXTURES / folder, root)
    damage, reason = MALFORMED[folder]
    damage(root)
    summary = ingest([root], tmp_path / "data")
    assert summary.requests == requests
    assert totals(tmp_path / "data")[fmt] == (requests, prompt, cached, writes)
    reasons = [
        q["reason"] for q in quarantine(tmp_path / "data") if not any(n in q["reason"] for n in NOT_CALLS.values())
    ]
    assert len(reasons) == 1 and reason in reasons[0], reasons


def test_auto_detection_picks_each_reader_from_a_mixed_folder(tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(FIXTURES, mixed)
    ingest([mixed], tmp_path / "data")
    detected = {
        Path(entry["path"]).relative_to(mixed).parts[0]: set() for entry in read_manifest(tmp_path / "data").inputs
    }
    for entry in read_manifest(tmp_path / "data").inputs:
        detected[Path(entry["path"]).relative_to(mixed).parts[0]].add(entry["format"])
    expected = {folder: {fmt} for folder, (fmt, *_) in EXPECTED.items()}
    expected["spellings"] = {"openai-chat", "anthropic"}
    assert detected == expected
    assert {fmt: row[0] for fmt, row in totals(tmp_path / "data").items()} == {
        **{fmt: n for fmt, n, *_ in EXPECTED.values()},
        "openai-chat": 3,
        "anthropic": 2,
    }


def _claude_lines() -> list[dict[str, Any]]:
    return [line for path in sorted((FIXTURES / "claude_code").rglob("*.jsonl")) for line in _jsonl(path)]


def test_claude_code_counts_one_call_per_message_id_never_per_line(tmp_path: Path) -> None:
    assistant = [
        line
        for line in _claude_lines()
        if line.get("type") == "assistant" and line["message"]["model"] != "<synthetic>"
    ]
    message_ids = {line["message"]["id"] for line in assistant}
    summary = ingest([FIXTURES / "claude_code"], tmp_path / "data")
    assert len(assistant) == 10 and len(message_ids) == 7
    assert summary.requests == len(message_ids)
    assert summary.duplicates_skipped == 1  # the resumed session repeats one call of the session it continues
    rows = Dataset(tmp_path / "data").connect().execute("SELECT trace_id FROM requests").fetchall()
    assert {row[0] for row in rows} == message_ids


def test_anthropic_family_total_is_input_plus_writes_plus_reads_and_realized_is_the_reads(tmp_path: Path) -> None:
    calls: dict[str, dict[str, int]] = {}
    for line in _claude_lines():
        if line.get("type") == "assistant" and line["message"]["model"] != "<synthetic>":
            calls[line["message"]["id"]] = line["message"]["usage"]
    total = sum(
        u["input_tokens"] + u["cache_creation_input_tokens"] + u["cache_read_input_tokens"] for u in calls.values()
    )
    reads = sum(u["cache_read_input_tokens"] for u in calls.values())
    ingest([FIXTURES / "claude_code"], tmp_path / "data")
    result = compute_waterfall(Dataset(tmp_path / "data"), WaterfallOptions(rules="ideal", curves=False)).summary
    assert result["total_input_tokens"]["tokens"] == total == 59_088
    assert result["realized"] == {"tokens": reads, "rate": round(reads / total, 6), "evidence": "measured"}


def test_provider_spellings_inside_openai_and_anthropic_shaped_logs(tmp_path: Path) -> None:
    ingest([FIXTURES / "spellings"], tmp_path / "data")
    assert totals(tmp_path / "data") == {
        "openai-chat": (3, 5_000 + 3_000 + 1_500, 4_096 + 2_816 + 1_000, 0),
        "anthropic": (2, 30 + 7_000 + 500 + 4_300, 7_000, 500),
    }
    families = Dataset(tmp_path / "data").connect().execute("SELECT DISTINCT usage_family FROM requests").fetchall()
    assert {row[0] for row in families} == {"gemini", "deepseek", "bedrock-converse", "anthropic"}


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        # LiteLLM for an Anthropic upstream: prompt_tokens already includes reads and writes
        (
            {
                "prompt_tokens": 12_450,
                "completion_tokens": 310,
                "prompt_tokens_details": {"cached_tokens": 0},
                "cache_creation_input_tokens": 12_400,
                "cache_read_input_tokens": 0,
            },
            (12_450, 0, 12_400, "openai"),
        ),
        (
            {"inputTokens": 30, "outputTokens": 5, "cacheReadInputTokens": 70, "cacheWriteInputTokens": 0},
            (100, 70, 0, "bedrock-converse"),
        ),
        ({"prompt_token_count": 900, "cached_content_token_count": 512}, (900, 512, None, "gemini")),
        ({"prompt_cache_hit_tokens": 64, "prompt_cache_miss_tokens": 36}, (100, 64, None, "deepseek")),
    ],
)
def test_usage_spellings_normalise_to_one_meaning(usage: dict[str, Any], expected: tuple[Any, ...]) -> None:
    got = normalize_usage(usage)
    assert (got.prompt_tokens, got.cached_tokens, got.cache_write_tokens, got.family) == expected


def test_provider_miss_diagnostics_become_measured_causes(tmp_path: Path) -> None:
    ingest([FIXTURES / "openai_responses", FIXTURES / "spellings", FIXTURES / "claude_code"], tmp_path / "data")
    con = Dataset(tmp_path / "data").connect()
    reasons = dict(
        con.execute("SELECT trace_id, missed_tokens_reported FROM requests WHERE miss_reason <> ''").fetchall()
    )
    named = dict(con.execute("SELECT trace_id, miss_reason FROM requests WHERE miss_reason <> ''").fetchall())
    assert named == {
        "resp_68c1a10b93d48190b2": "tools_changed",
        "msg_01Diag": "system_changed",
        "msg_01C9Hh4pWw": "messages_changed",
    }
    assert reasons == {"resp_68c1a10b93d48190b2": 1_500, "msg_01Diag": 4_200, "msg_01C9Hh4pWw": 300}
    causes = compute_waterfall(Dataset(tmp_path / "data"), WaterfallOptions(rules="ideal", curves=False)).summary[
        "causes"
    ]
    tools_changed = [c for c in causes if c["cause"] == "tools_changed"]
    assert tools_changed and tools_changed[0]["stage"] == "candidate->realized"
    assert tools_changed[0]["evidence"] == "measured" and tools_changed[0]["tokens"] > 0


def test_usage_only_requests_carry_usage_and_no_invented_content(tmp_path: Path) -> None:
    ingest([FIXTURES / "codex", FIXTURES / "otel"], tmp_path / "data")
    con = Dataset(tmp_path / "data").connect()
    rows = con.execute("""
        SELECT format, n_blocks, prompt_tokens_counted, snapshot_id, block_granularity, prompt_tokens_reported
        FROM requests WHERE n_blocks = 0 ORDER BY format, prompt_tokens_reported
    """).fetchall()
    assert rows == [
        ("codex", 0, None, "", 0, 8_200),
        ("codex", 0, None, "", 0, 8_500),
        ("codex", 0, None, "", 0, 9_100),
        ("otel-genai", 0, None, "", 0, 2_000),
        ("otel-genai", 0, None, "", 0, 3_200),
    ]
    blocks = con.execute("""
        SELECT count(*) FROM request_blocks b JOIN requests r USING (rid) WHERE r.n_blocks = 0
    """).fetchone()
    assert blocks == (0,)
    result = compute_waterfall(Dataset(tmp_path / "data"), WaterfallOptions(rules="ideal", curves=False)).summary
    assert result["total_input_tokens"]["tokens"] == 25_800 + 13_400
    assert result["realized"]["tokens"] == 16_384 + 9_656


def test_formats_lists_every_reader_with_what_it_needs() -> None:
    result = CliRunner().invoke(app, ["formats", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row["description"] for row in json.loads(result.stdout)}
    new = {
        "openai-responses",
        "litellm",
        "otel-genai",
        "claude-code",
        "claude-code-stream",
        "codex",
        "langfuse",
        "helicone",
    }
    assert new <= set(rows)
    assert all(rows[name] and "\n" not in rows[name] for name in rows)

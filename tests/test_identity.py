"""The three identity layers (DESIGN.md section 3), checked on ingested datasets and as hash properties."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import FIXTURES
from hypothesis import given
from hypothesis import strategies as st

from zumik_cli.core import identity
from zumik_cli.core.model import Artifact
from zumik_cli.dataset.store import Dataset
from zumik_cli.ingest.pipeline import ingest

SYSTEM = "You are a careful coding agent. Read files before you edit them."
QUESTION = "Why does test_parse fail?"
PARAMETERS = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
FILE_BODY = "def parse(text):\n    return text.split(',')\n"

int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
blocks = st.lists(int64, max_size=12)


def openai_log_line() -> dict[str, Any]:
    """The conversation as an OpenAI Chat Completions request/response log line."""
    return {
        "request": {
            "model": "gpt-4o",
            "tools": [
                {
                    "type": "function",
                    "function": {"name": "read_file", "description": "Read a file.", "parameters": PARAMETERS},
                }
            ],
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": QUESTION},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "read_file", "arguments": '{"path": "src/parse.py"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": FILE_BODY},
            ],
        },
        "response": {
            "id": "chatcmpl-same-1",
            "choices": [{"message": {"role": "assistant", "content": "It splits on commas."}}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 6, "prompt_tokens_details": {"cached_tokens": 0}},
        },
    }


def anthropic_log_line() -> dict[str, Any]:
    """The same conversation as an Anthropic Messages log line, with a cache breakpoint (a materialization hint)."""
    return {
        "request": {
            "model": "claude-sonnet-4-5",
            "max_tokens": 512,
            "system": [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}],
            "tools": [{"name": "read_file", "description": "Read a file.", "input_schema": PARAMETERS}],
            "messages": [
                {"role": "user", "content": QUESTION},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "call_1", "name": "read_file", "input": {"path": "src/parse.py"}}
                    ],
                },
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": FILE_BODY}]},
            ],
        },
        "response": {
            "id": "msg_same_1",
            "type": "message",
            "content": [{"type": "text", "text": "It splits on commas."}],
            "usage": {"input_tokens": 20, "cache_creation_input_tokens": 100, "output_tokens": 6},
        },
    }


def zumik_record(trace_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "zumik": 1,
        "trace_id": trace_id,
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "system": SYSTEM,
        "messages": [{"role": "user", "content": QUESTION}],
        **fields,
    }


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def request_rows(data: Path) -> dict[str, dict[str, Any]]:
    con = Dataset(data).connect()
    cursor = con.execute("SELECT * FROM requests")
    names = [column[0] for column in cursor.description]
    return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


def chains(data: Path) -> dict[str, list[int]]:
    con = Dataset(data).connect()
    rows = con.execute(
        "SELECT r.trace_id, list(b.chain ORDER BY b.pos) FROM requests r JOIN request_blocks b USING (rid) "
        "GROUP BY r.trace_id"
    ).fetchall()
    return dict(rows)


def test_the_same_conversation_sent_to_openai_and_anthropic_has_one_snapshot_and_two_materializations(
    tmp_path: Path,
) -> None:
    write_jsonl(tmp_path / "openai.jsonl", [openai_log_line(), openai_log_line()])
    write_jsonl(tmp_path / "anthropic.jsonl", [anthropic_log_line(), anthropic_log_line()])

    ingest([tmp_path / "openai.jsonl", tmp_path / "anthropic.jsonl"], tmp_path / "data")

    rows = request_rows(tmp_path / "data")
    openai, anthropic = rows["chatcmpl-same-1"], rows["msg_same_1"]
    assert (openai["format"], anthropic["format"]) == ("openai-chat", "anthropic")
    assert openai["snapshot_id"].startswith("snp_")
    assert openai["snapshot_id"] == anthropic["snapshot_id"]
    assert openai["materialization_key"].startswith("mat_")
    assert openai["materialization_key"] != anthropic["materialization_key"]
    assert openai["materialization_family"] != anthropic["materialization_family"]
    assert openai["kv_compatibility_key"] != anthropic["kv_compatibility_key"]


def test_two_tenants_with_the_same_content_share_materialization_but_not_kv_compatibility(tmp_path: Path) -> None:
    records = [zumik_record("acme-1", tenant="acme"), zumik_record("globex-1", tenant="globex")]
    ingest([write_jsonl(tmp_path / "tenants.jsonl", records)], tmp_path / "data")

    rows = request_rows(tmp_path / "data")
    acme, globex = rows["acme-1"], rows["globex-1"]
    assert acme["snapshot_id"] == globex["snapshot_id"]
    assert acme["materialization_key"] == globex["materialization_key"]
    assert acme["kv_compatibility_key"].startswith("kvc_")
    assert acme["kv_compatibility_key"] != globex["kv_compatibility_key"]
    assert acme["target_key"] == globex["target_key"], "the target without the tenant shows the forbidden reuse"


def test_a_model_revision_change_changes_only_the_kv_compatibility_key(tmp_path: Path) -> None:
    records = [
        zumik_record("old-revision", model_revision="20250929"),
        zumik_record("new-revision", model_revision="20251101"),
    ]
    ingest([write_jsonl(tmp_path / "revisions.jsonl", records)], tmp_path / "data")

    rows = request_rows(tmp_path / "data")
    old, new = rows["old-revision"], rows["new-revision"]
    assert old["snapshot_id"] == new["snapshot_id"]
    assert old["materialization_key"] == new["materialization_key"]
    assert old["kv_compatibility_key"] != new["kv_compatibility_key"]


def test_a_cache_breakpoint_changes_no_identity(tmp_path: Path) -> None:
    plain = zumik_record("plain")
    marked = zumik_record("marked", system=[{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}])
    ingest([write_jsonl(tmp_path / "breakpoints.jsonl", [plain, marked])], tmp_path / "data")

    rows = request_rows(tmp_path / "data")
    for key in ("snapshot_id", "materialization_key", "kv_compatibility_key"):
        assert rows["plain"][key] == rows["marked"][key]
    assert rows["marked"]["breakpoint_ttls"] == ["5m"]
    assert rows["plain"]["breakpoints"] == []


def test_ids_are_the_same_when_the_same_traces_are_ingested_into_two_folders(tmp_path: Path) -> None:
    inputs = [FIXTURES / "openai_chat.jsonl", FIXTURES / "anthropic_messages.jsonl", FIXTURES / "zumik.jsonl"]
    first, second = tmp_path / "first", tmp_path / "elsewhere" / "second"
    ingest(inputs, first)
    ingest(inputs, second)

    rows, others = request_rows(first), request_rows(second)
    assert rows.keys() == others.keys()
    for trace_id, row in rows.items():
        for key in ("rid", "snapshot_id", "materialization_key", "kv_compatibility_key", "target_key"):
            assert row[key] == others[trace_id][key], (trace_id, key)
    assert chains(first) == chains(second)


def test_a_request_that_extends_another_shares_its_whole_chain_as_a_prefix(tmp_path: Path) -> None:
    ingest([FIXTURES / "openai_chat.jsonl"], tmp_path / "data")

    by_trace = chains(tmp_path / "data")
    first, second = by_trace["chatcmpl-fix-1"], by_trace["chatcmpl-fix-2"]
    assert len(second) > len(first)
    assert second[: len(first)] == first
    con = Dataset(tmp_path / "data").connect()
    orphans = con.execute(
        "SELECT count(*) FROM request_blocks b WHERE b.pos > 0 AND NOT EXISTS "
        "(SELECT 1 FROM request_blocks p WHERE p.rid = b.rid AND p.pos = b.pos - 1 AND p.chain = b.parent)"
    ).fetchone()
    assert orphans == (0,), "every block's parent is the chain id of the block before it"


def test_identity_hashes_are_pinned_across_runs_and_machines() -> None:
    """A changed value here means a canonical form changed: bump its version tag in core/identity.py."""
    artifacts = [Artifact("system", "system", "You are terse."), Artifact("text", "user", "hello")]

    assert identity.snapshot_id(artifacts) == "snp_c460ce8f53a2cdf4a19804d7"
    assert identity.chain_ids([1, 2, 3]) == [4358735044542338875, -1938869719529888104, -2965738301656404829]
    assert identity.block_id("tiktoken:cl100k_base|zc1:openai", "<|im_start|>user\nhello<|im_end|>\n") == (
        5802883788856709534
    )
    assert identity.derived_trace_id("a", "b") == "trc_9090d840dcffdbc644044683"


@given(blocks, blocks)
def test_chain_ids_of_a_longer_list_start_with_the_chain_ids_of_its_prefix(a: list[int], b: list[int]) -> None:
    assert identity.chain_ids(a + b)[: len(a)] == identity.chain_ids(a)


@given(blocks, st.integers(min_value=0, max_value=12), blocks)
def test_two_lists_share_a_chain_id_exactly_where_they_share_every_block_before_it(
    a: list[int], kept: int, tail: list[int]
) -> None:
    b = a[:kept] + tail  # a shared prefix of any length, then anything (possibly equal blocks again)
    chain_a, chain_b = identity.chain_ids(a), identity.chain_ids(b)
    for position in range(min(len(a), len(b))):
        assert (chain_a[position] == chain_b[position]) == (a[: position + 1] == b[: position + 1])


@given(st.lists(st.tuples(st.sampled_from(["system", "text", "tool_result"]), st.text(max_size=40)), max_size=6))
def test_a_snapshot_id_ignores_cache_hints_and_follows_the_content(parts: list[tuple[str, str]]) -> None:
    plain = [Artifact(kind, "user", body) for kind, body in parts]
    hinted = [Artifact(kind, "user", body, cache_control="1h") for kind, body in parts]
    assert identity.snapshot_id(plain) == identity.snapshot_id(hinted)

    changed = [*plain, Artifact("text", "user", "one more turn")]
    assert identity.snapshot_id(changed) != identity.snapshot_id(plain)

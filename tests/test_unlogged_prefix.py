"""What a Claude Code transcript leaves out (system prompt, tool definitions) as one estimated leading block per
session, against the old way of scaling every counted token up to the reported total.

The sessions are written by a small generator shaped as Claude Code writes them: each call's reported prompt is a
fixed unlogged prefix plus the conversation, so the prefix is known and the counts can be checked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from zumik_cli.analysis.waterfall import compute_waterfall
from zumik_cli.dataset.store import Dataset
from zumik_cli.ingest.pipeline import ingest
from zumik_cli.render.report.sections import data_notes

FIXTURES = Path(__file__).parent / "fixtures" / "formats" / "claude_code"
PREFIX = 20_000  # the system prompt and tools every call of the generated sessions sends first


def session_lines(session: str, turns: int, compact_after: int | None) -> list[dict[str, Any]]:
    """One session: a user turn and a call per turn, the turn's reported prompt the prefix plus the conversation
    (400 tokens more each turn); a compaction after ``compact_after`` turns starts a new root with its summary."""
    lines: list[dict[str, Any]] = []
    parent: str | None = None
    history = 0

    def add(kind: str, message: dict[str, Any] | None, **extra: Any) -> None:
        nonlocal parent
        uuid = f"{session[:4]}-{len(lines):04d}"
        line = {"parentUuid": parent, "isSidechain": False, "sessionId": session, "type": kind, "uuid": uuid}
        line["timestamp"] = f"2025-10-01T10:{len(lines):02d}:00.000Z"
        if message is not None:
            line["message"] = message
        lines.append({**line, **extra})
        parent = uuid

    for turn in range(1, turns + 1):
        add("user", {"role": "user", "content": f"Step {turn}: " + "please change the cart code " * (40 * turn)})
        history += 400 * turn
        prompt = PREFIX + history
        read = 0 if turn == 1 or turn == (compact_after or 0) + 1 else PREFIX + history - 400 * turn
        usage = {"input_tokens": 3, "cache_creation_input_tokens": prompt - read - 3, "cache_read_input_tokens": read}
        message = {"id": f"msg_{session[:4]}_{turn:02d}", "model": "claude-sonnet-4-5", "role": "assistant"}
        content = [{"type": "text", "text": f"Done with step {turn}."}]
        add("assistant", {**message, "usage": usage, "content": content}, requestId=f"req_{session[:4]}_{turn}")
        if turn == compact_after:
            lines.append(
                {
                    "parentUuid": None,
                    "logicalParentUuid": parent,
                    "type": "system",
                    "subtype": "compact_boundary",
                    "uuid": f"{session[:4]}-boundary",
                    "sessionId": session,
                    "timestamp": "2025-10-01T11:00:00.000Z",
                    "content": "Conversation compacted",
                }
            )
            parent = f"{session[:4]}-boundary"
            add(
                "user",
                {"role": "user", "content": "This session is being continued. Summary: " + "cart fixed. " * 50},
                isCompactSummary=True,
                isVisibleInTranscriptOnly=True,
            )
            history = 800
    return lines


def write_sessions(root: Path) -> Path:
    """A ``~/.claude/projects`` folder with two sessions, one of them compacted."""
    project = root / "projects" / "-home-dev-shop"
    project.mkdir(parents=True)
    for session, compact in (
        ("5d2f9e1a-7c44-4f0b-a1e3-0b9c8d7e6f51", 3),
        ("9b1c2d3e-0000-4f0b-a1e3-0b9c8d7e6f52", None),
    ):
        lines = session_lines(session, 5, compact)
        (project / f"{session}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root / "projects"


def waterfall_of(paths: list[Path], data: Path, unlogged_prefix: bool) -> tuple[dict[str, Any], Dataset]:
    summary = ingest(paths, data, unlogged_prefix=unlogged_prefix)
    assert summary.quarantined == 0
    dataset = Dataset(data)
    return compute_waterfall(dataset).summary, dataset


def test_each_claude_code_session_gets_one_estimated_prefix_block_and_no_call_is_usage_only(tmp_path: Path) -> None:
    waterfall, dataset = waterfall_of([write_sessions(tmp_path)], tmp_path / "data", unlogged_prefix=True)
    con = dataset.connect()
    gaps = con.execute("""
        SELECT session_id, min(prompt_tokens_reported - (prompt_tokens_counted - unlogged_prefix_tokens)),
               count(*), count(DISTINCT unlogged_prefix_tokens)
        FROM requests GROUP BY session_id ORDER BY session_id
    """).fetchall()
    shown = {row["session"].split(" / ")[-1]: row for row in waterfall["unlogged_prefix"]}

    assert waterfall["requests"] == 10
    assert not any("usage-only" in row["reason"] for row in waterfall["cannot_compute"])
    assert con.execute("SELECT count(*) FROM requests WHERE prompt_tokens_counted IS NULL").fetchone() == (0,)
    assert len(shown) == 2
    for session, least_gap, calls, distinct in gaps:
        assert shown[session]["tokens"] == least_gap  # the least gap, the same in every call of the session
        assert (shown[session]["calls"], distinct) == (calls, 1)
        assert shown[session]["evidence"] == "estimated" and shown[session]["method"]
        # the log's prefix is 20,000 tokens; what the proxy tokenizer undercounts of the shortest call is the error
        assert PREFIX <= least_gap <= PREFIX + 1_000
    # the block leads every call of a session under one chain id, as a system prompt would
    leads = con.execute("""
        SELECT r.session_id, count(DISTINCT b.chain), min(b.tokens), max(b.tokens), count(*)
        FROM request_blocks b JOIN requests r USING (rid) WHERE b.pos = 0 GROUP BY ALL
    """).fetchall()
    assert all(chains == 1 and low == high == shown[s]["tokens"] and n == 5 for s, chains, low, high, n in leads)
    # a block with a token count and no text, as hash-id blocks are
    unwritten = con.execute("""
        SELECT count(*) FROM request_blocks b WHERE b.pos = 0 AND b.block_id NOT IN (SELECT block_id FROM blocks)
    """).fetchone()
    assert unwritten == (10,)
    assert any("system prompt and tool definitions" in row["reason"] for row in waterfall["cannot_compute"])
    notes = str(data_notes(waterfall))
    assert "5d2f9e1a-7c44-4f0b-a1e3-0b9c8d7e6f51: " in notes and "tokens in each of 5 calls (estimated" in notes


def test_eligible_never_passes_total_and_the_prefix_is_eligible_from_the_second_call(tmp_path: Path) -> None:
    waterfall, dataset = waterfall_of([write_sessions(tmp_path)], tmp_path / "data", unlogged_prefix=True)
    per_request = compute_waterfall(dataset).per_request.to_table().to_pylist()
    prefix = {row["session"].split(" / ")[-1]: row["tokens"] for row in waterfall["unlogged_prefix"]}

    assert all(row["eligible"] <= row["total"] for row in per_request)
    firsts = {}
    for row in sorted(per_request, key=lambda r: r["ord"]):
        if row["session_id"] in firsts:
            assert row["eligible"] >= prefix[row["session_id"]]
        else:
            firsts[row["session_id"]] = row["eligible"]
    assert set(firsts.values()) == {0}


@pytest.mark.parametrize("generated", [True, False], ids=["generated sessions", "format fixture"])
def test_the_prefix_block_realizes_no_more_over_realized_than_scaling_the_whole_prompt(
    tmp_path: Path, generated: bool
) -> None:
    paths = [write_sessions(tmp_path)] if generated else [FIXTURES]
    scaled, _ = waterfall_of(paths, tmp_path / "scaled", unlogged_prefix=False)
    modelled, _ = waterfall_of(paths, tmp_path / "modelled", unlogged_prefix=True)

    assert scaled["unlogged_prefix"] == [] and modelled["unlogged_prefix"]
    assert modelled["total_input_tokens"] == scaled["total_input_tokens"]
    assert modelled["eligible"]["tokens"] <= modelled["total_input_tokens"]["tokens"]
    assert modelled["over_realized"]["tokens"] < scaled["over_realized"]["tokens"]
    assert modelled["over_realized"]["requests"] <= scaled["over_realized"]["requests"]

"""``zumik export``: hash-id traces that replay tools read and that zumik reads back to the same eligible tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zumik_cli import readers
from zumik_cli.analysis.waterfall import WaterfallOptions, compute_waterfall
from zumik_cli.cli import app
from zumik_cli.core.errors import ZumikError
from zumik_cli.dataset.export import export_trace
from zumik_cli.dataset.store import Dataset
from zumik_cli.ingest.pipeline import ingest
from zumik_cli.synth.traffic import SynthConfig, write_jsonl

FORMATS = Path(__file__).parent / "fixtures" / "formats"
IDEAL = WaterfallOptions(rules="ideal", curves=False)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("export")
    write_jsonl(SynthConfig(seed=7, sessions=8, tenants=2), root / "agents.jsonl")
    ingest([root / "agents.jsonl"], root / "data")
    return root / "data"


def block_eligible(data: Path, block_size: int) -> int:
    """Eligible tokens at a block granularity, straight from the dataset's token ids: the leading blocks (of
    ``block_size`` tokens, the last one partial) that an earlier request of the same family already had."""
    con = Dataset(data).connect()
    rows = con.execute("""
        SELECT r.rid, r.materialization_family, list(t.token_ids ORDER BY b.pos)
        FROM requests r JOIN request_blocks b USING (rid) JOIN tokens t USING (block_id)
        GROUP BY r.rid, r.materialization_family, r.timestamp, r.seq ORDER BY r.timestamp NULLS LAST, r.seq
    """).fetchall()
    prefixes: dict[tuple[object, tuple[int, ...]], int] = {}  # (parent prefix, block) -> prefix number
    eligible = 0
    for _, family, pieces in rows:
        tokens = [token for piece in pieces for token in piece]
        parent: object = family
        matching = True
        for start in range(0, len(tokens), block_size):
            key = (parent, tuple(tokens[start : start + block_size]))
            if matching and key in prefixes:
                eligible += len(key[1])
            else:
                matching = False
            parent = prefixes.setdefault(key, len(prefixes))
    return eligible


@pytest.mark.parametrize(("target", "block_size"), [("mooncake", None), ("mooncake", 64), ("bailian", None)])
def test_export_then_reingest_gives_the_same_eligible_tokens_at_the_block_granularity(
    dataset: Path, tmp_path: Path, target: str, block_size: int | None
) -> None:
    summary = export_trace(Dataset(dataset), target, tmp_path / "trace.jsonl", block_size=block_size, salt="pepper")
    size = block_size or {"mooncake": 512, "bailian": 16}[target]
    reference = block_eligible(dataset, size)
    reread = ingest([tmp_path / "trace.jsonl"], tmp_path / "again")
    assert reread.formats == {target: summary.requests} and reread.quarantined == 0
    again = compute_waterfall(Dataset(tmp_path / "again"), IDEAL).summary
    assert again["eligible"]["tokens"] == summary.eligible_tokens == reference > 0
    assert again["total_input_tokens"]["tokens"] == summary.input_tokens
    # never more than the token-exact figure, and at most one block short of it per request
    exact = sum(
        compute_waterfall(Dataset(dataset), IDEAL).per_request.to_table().column("eligible_counted").to_pylist()
    )
    assert exact - size * summary.requests <= reference <= exact


def test_export_writes_the_shapes_the_replay_tools_read(dataset: Path, tmp_path: Path) -> None:
    export_trace(Dataset(dataset), "mooncake", tmp_path / "m.jsonl", salt="s")
    export_trace(Dataset(dataset), "bailian", tmp_path / "b.jsonl", salt="s")
    mooncake = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    bailian = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert set(mooncake[0]) == {"timestamp", "input_length", "output_length", "hash_ids"}
    assert set(bailian[0]) == {
        "chat_id",
        "parent_chat_id",
        "timestamp",
        "input_length",
        "output_length",
        "type",
        "turn",
        "hash_ids",
    }
    assert mooncake[0]["timestamp"] == 0 and all(isinstance(r["timestamp"], int) for r in mooncake)
    assert [r["timestamp"] for r in mooncake] == sorted(r["timestamp"] for r in mooncake)
    assert all(len(r["hash_ids"]) == -(-r["input_length"] // 512) for r in mooncake)
    assert all(len(r["hash_ids"]) == -(-r["input_length"] // 16) for r in bailian)
    assert all(0 <= i < 2**53 for r in mooncake + bailian for i in r["hash_ids"])
    follow_ups = [r for r in bailian if r["parent_chat_id"] >= 0]
    assert follow_ups and all(r["parent_chat_id"] < r["chat_id"] and r["turn"] > 1 for r in follow_ups)
    for path, name in ((tmp_path / "m.jsonl", "mooncake"), (tmp_path / "b.jsonl", "bailian")):
        sample = readers.sample_file(path)
        assert not isinstance(sample, readers.Quarantined) and readers.detect(sample).name == name


def test_the_same_salt_gives_the_same_ids_and_another_salt_unlinkable_ones(dataset: Path, tmp_path: Path) -> None:
    one = export_trace(Dataset(dataset), "mooncake", tmp_path / "a.jsonl", salt="s1")
    export_trace(Dataset(dataset), "mooncake", tmp_path / "b.jsonl", salt="s1")
    other = export_trace(Dataset(dataset), "mooncake", tmp_path / "c.jsonl", salt="s2")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    ids = {i for line in (tmp_path / "a.jsonl").read_text().splitlines() for i in json.loads(line)["hash_ids"]}
    others = {i for line in (tmp_path / "c.jsonl").read_text().splitlines() for i in json.loads(line)["hash_ids"]}
    assert not ids & others and one.eligible_tokens == other.eligible_tokens
    assert export_trace(Dataset(dataset), "mooncake", tmp_path / "d.jsonl").salt not in ("", "s1")


def test_usage_only_requests_are_skipped_and_counted(tmp_path: Path) -> None:
    ingest([FORMATS / "codex", FORMATS / "openai_responses"], tmp_path / "data")
    summary = export_trace(Dataset(tmp_path / "data"), "bailian", tmp_path / "t.jsonl", salt="x")
    assert (summary.requests, summary.skipped_usage_only, summary.skipped_hashid) == (3, 4, 0)


def test_an_unknown_target_or_block_size_is_refused(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ZumikError, match="unknown export target"):
        export_trace(Dataset(dataset), "weka", tmp_path / "t.jsonl")
    with pytest.raises(ZumikError, match="at least 1"):
        export_trace(Dataset(dataset), "mooncake", tmp_path / "t.jsonl", block_size=-4)


def test_export_command_writes_the_trace_and_reports_on_stdout_and_stderr(dataset: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "trace.jsonl"
    result = runner.invoke(app, ["export", "--data", str(dataset), "--to", "mooncake", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["path"] == str(out) and out.exists() and summary["block_size"] == 512
    assert "Salt" in result.stderr and summary["salt"] in result.stderr
    result = runner.invoke(app, ["export", "--data", str(dataset), "--to", "nope", "-o", str(out), "--salt", "x"])
    assert result.exit_code == 1 and "Error: unknown export target" in result.stderr

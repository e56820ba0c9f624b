"""Ingest: bad input is quarantined and the rest goes on, re-ingest adds nothing, unique blocks are tokenized once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES

from zumik_cli.core.errors import InputError, ZumikError
from zumik_cli.dataset.store import Dataset, read_manifest
from zumik_cli.ingest.pipeline import IngestSummary, ingest
from zumik_cli.readers import hashid

SECRET = "sk-live-0123456789abcdefghij"


def one(data: Path, sql: str) -> Any:
    row = Dataset(data).connect().execute(sql).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else row


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def agent_record(trace_id: str, model: str = "claude-sonnet-4-5", turns: int = 1) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Make the suite green."}]
    for turn in range(1, turns):
        messages.append({"role": "assistant", "content": f"Step {turn}: running the tests."})
        messages.append({"role": "user", "content": f"{turn} failed, {41 + turn} passed"})
    return {
        "zumik": 1,
        "trace_id": trace_id,
        "provider": "anthropic",
        "model": model,
        "tools": [{"name": "run_tests", "description": "Run the test suite.", "parameters": {"type": "object"}}],
        "system": "You fix failing tests.",
        "messages": messages,
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 0, "output_tokens": 3},
    }


# --- bad input ----------------------------------------------------------------------------------------------

EXPECTED_QUARANTINE = {
    ("binary.jsonl", 0, "binary file"),
    ("empty.jsonl", 0, "empty file"),
    ("hostile.jsonl", 2, "not JSON"),  # nested 5,000 deep
    ("hostile.jsonl", 3, "not valid Unicode"),  # a lone surrogate escape
    ("hostile.jsonl", 5, "wrong shape"),  # latency_ms "fast"
    ("hostile.jsonl", 6, "wrong shape"),  # messages not a list (and credentials in headers)
    ("hostile.jsonl", 8, "wrong shape"),  # a 401-digit timestamp
    ("hostile.jsonl", 10, "wrong shape"),  # cache_missed_input_tokens "many"
    ("not_utf8.jsonl", 2, "not UTF-8"),
    ("truncated.jsonl", 2, "not JSON"),
    ("unknown_format.jsonl", 0, "unknown format (tried: "),
    ("wrong_shape.jsonl", 2, "wrong shape"),
    ("wrong_shape.jsonl", 3, "wrong shape"),
    ("wrong_shape.jsonl", 4, "wrong shape"),
}
# host-9's timestamp "yesterday" is no time: the call is kept with an unknown time
READABLE = {"host-1", "host-4", "host-7", "host-9", "host-11", "shape-1", "trunc-1", "trunc-3", "utf8-1", "utf8-3"}


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, IngestSummary]:
    data = tmp_path_factory.mktemp("bad") / "data"
    return data, ingest([FIXTURES / "bad"], data)


def test_every_bad_file_and_line_is_quarantined_with_its_file_line_and_reason(bad: tuple[Path, IngestSummary]) -> None:
    data, summary = bad

    entries = Dataset(data).quarantine_entries()

    found = set()
    for entry in entries:
        prefix = next((p for _, _, p in EXPECTED_QUARANTINE if entry["reason"].startswith(p)), entry["reason"])
        found.add((Path(entry["file"]).name, entry["line"], prefix))
    assert found == EXPECTED_QUARANTINE
    assert summary.quarantined == len(entries) == len(EXPECTED_QUARANTINE)


def test_the_readable_rest_of_a_bad_input_is_still_ingested(bad: tuple[Path, IngestSummary]) -> None:
    data, summary = bad

    rows = Dataset(data).connect().execute("SELECT trace_id FROM requests").fetchall()

    assert {row[0] for row in rows} == READABLE
    assert summary.requests == len(READABLE)
    assert summary.formats == {"zumik": len(READABLE)}


def test_the_manifest_lists_the_quarantine_and_counts_it_per_input(bad: tuple[Path, IngestSummary]) -> None:
    data, _ = bad
    manifest = read_manifest(data)

    assert len(manifest.quarantine) == 1 and (data / manifest.quarantine[0]).is_file()
    per_input = {Path(entry["path"]).name: entry for entry in manifest.inputs}
    assert (per_input["empty.jsonl"]["format"], per_input["empty.jsonl"]["quarantined"]) == (None, 1)
    assert (per_input["wrong_shape.jsonl"]["requests"], per_input["wrong_shape.jsonl"]["quarantined"]) == (1, 3)
    assert per_input["hostile.jsonl"]["format"] == "zumik"


def test_absurd_usage_numbers_are_stored_as_unknown(bad: tuple[Path, IngestSummary]) -> None:
    data, _ = bad

    usage = one(
        data,
        "SELECT prompt_tokens_reported, cached_tokens_reported, output_tokens_reported FROM requests "
        "WHERE trace_id = 'host-4'",
    )

    assert usage == (None, None, None)


def test_no_credential_in_the_input_reaches_any_file_of_the_dataset(bad: tuple[Path, IngestSummary]) -> None:
    data, _ = bad
    assert SECRET in (FIXTURES / "bad" / "hostile.jsonl").read_text()

    leaking = [path.name for path in data.rglob("*") if path.is_file() and SECRET.encode() in path.read_bytes()]

    assert leaking == []


def test_an_input_in_no_known_format_is_an_input_error_naming_the_formats_tried(tmp_path: Path) -> None:
    with pytest.raises(InputError) as raised:
        ingest([FIXTURES / "bad" / "unknown_format.jsonl"], tmp_path / "data")

    message = str(raised.value)
    assert message.startswith("no input could be read as a trace: ")
    assert "unknown_format.jsonl: JSON, but in no format zumik knows" in message
    assert "--format" in message
    assert not (tmp_path / "data" / "manifest.json").exists(), "nothing is published"


# --- re-ingest ----------------------------------------------------------------------------------------------


def test_reingesting_the_same_file_adds_nothing_and_says_it_was_skipped(tmp_path: Path) -> None:
    path = FIXTURES / "zumik.jsonl"
    ingest([path], tmp_path / "data")
    before = read_manifest(tmp_path / "data")

    again = ingest([path], tmp_path / "data")

    assert (again.requests, again.quarantined, again.unique_blocks) == (0, 0, 0)
    assert again.inputs_skipped == [str(path)]
    assert one(tmp_path / "data", "SELECT count(*) FROM requests") == 3
    after = read_manifest(tmp_path / "data")
    assert (after.parts, after.inputs) == (before.parts, before.inputs)


def test_the_same_records_in_another_file_are_skipped_as_duplicates(tmp_path: Path) -> None:
    copy = tmp_path / "copy.jsonl"
    copy.write_text((FIXTURES / "zumik.jsonl").read_text() + "\n")
    ingest([FIXTURES / "zumik.jsonl"], tmp_path / "data")

    again = ingest([copy], tmp_path / "data")

    assert (again.requests, again.duplicates_skipped, again.inputs_skipped) == (0, 3, [])
    assert one(tmp_path / "data", "SELECT count(*) FROM requests") == 3


def test_a_file_that_grew_adds_only_its_new_records(tmp_path: Path) -> None:
    log = tmp_path / "growing.jsonl"
    write_jsonl(log, [agent_record("g-1"), agent_record("g-2", turns=2)])
    ingest([log], tmp_path / "data")
    write_jsonl(log, [agent_record("g-1"), agent_record("g-2", turns=2), agent_record("g-3", turns=3)])

    again = ingest([log], tmp_path / "data")

    assert (again.requests, again.duplicates_skipped) == (1, 2)
    seqs = Dataset(tmp_path / "data").connect().execute("SELECT seq FROM requests ORDER BY seq").fetchall()
    assert [s[0] for s in seqs] == [1, 2, 3]


def test_hash_id_traces_with_one_name_in_two_folders_keep_their_own_requests_and_ids(tmp_path: Path) -> None:
    lines = (FIXTURES / "mooncake.jsonl").read_text().splitlines()
    other = [json.loads(line) | {"input_length": json.loads(line)["input_length"] + 7} for line in lines]
    for folder, records in (("a", [json.loads(line) for line in lines]), ("b", other)):
        (tmp_path / folder).mkdir()
        write_jsonl(tmp_path / folder / "trace.jsonl", records)

    first, second = (ingest([tmp_path / f / "trace.jsonl"], tmp_path / "data") for f in ("a", "b"))

    assert (first.requests, second.requests, second.duplicates_skipped) == (len(lines), len(lines), 0)
    # block 0 of one trace is not block 0 of the other: nothing is shared between them
    distinct_ids = len({h for line in lines for h in json.loads(line)["hash_ids"]})
    assert one(tmp_path / "data", "SELECT count(DISTINCT chain) FROM request_blocks") == 2 * distinct_ids


@pytest.mark.parametrize("by_record", [False, True], ids=["by columns", "record by record"])
@pytest.mark.parametrize("chunk_lines", [None, 2], ids=["one chunk a file", "chunks of two lines"])
def test_one_hash_id_trace_read_twice_in_one_run_adds_its_records_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, by_record: bool, chunk_lines: int | None
) -> None:
    """The second copy (same name, same first record: the same trace, grown) adds only its new record, whether its
    lines are read as columns or one by one (a string timestamp sends its chunk the per-record way), in one chunk
    or several."""
    records = [json.loads(line) for line in (FIXTURES / "mooncake.jsonl").read_text().splitlines()]
    if chunk_lines:
        longest = max(len(json.dumps(r)) for r in records)
        monkeypatch.setattr(hashid, "COLUMN_CHUNK_BYTES", chunk_lines * longest)
    extra = dict(records[-1], timestamp=str(records[-1]["timestamp"] + 1) if by_record else records[-1]["timestamp"])
    for folder, rows in (("a", records), ("b", [*records, extra])):
        (tmp_path / folder).mkdir()
        write_jsonl(tmp_path / folder / "trace.jsonl", rows)

    summary = ingest([tmp_path / "a" / "trace.jsonl", tmp_path / "b" / "trace.jsonl"], tmp_path / "data")

    assert (summary.requests, summary.duplicates_skipped) == (len(records) + 1, len(records))
    assert one(tmp_path / "data", "SELECT count(DISTINCT trace_id) FROM requests") == len(records) + 1


def test_a_hash_id_log_that_grew_adds_only_its_new_records_under_the_same_ids(tmp_path: Path) -> None:
    records = [json.loads(line) for line in (FIXTURES / "mooncake.jsonl").read_text().splitlines()]
    log = tmp_path / "trace.jsonl"
    write_jsonl(log, records[:2])
    ingest([log], tmp_path / "data")
    write_jsonl(log, records)

    again = ingest([log], tmp_path / "data")

    assert (again.requests, again.duplicates_skipped) == (len(records) - 2, 2)
    whole = ingest([log], tmp_path / "whole")
    query = "SELECT trace_id, list(chain ORDER BY pos) FROM request_blocks JOIN requests USING (rid) GROUP BY 1"
    grown = Dataset(tmp_path / "data").connect().execute(query).fetchall()
    assert sorted(grown) == sorted(Dataset(tmp_path / "whole").connect().execute(query).fetchall())
    assert whole.requests == len(records)


# --- tokenization -------------------------------------------------------------------------------------------


def test_a_conversation_resent_ten_times_is_tokenized_once(tmp_path: Path) -> None:
    log = write_jsonl(tmp_path / "resent.jsonl", [agent_record(f"resent-{i}") for i in range(10)])

    summary = ingest([log], tmp_path / "data", batch_size=3)

    data = tmp_path / "data"
    assert summary.requests == 10
    assert summary.unique_blocks == 3, "one tool, one system prompt, one user message"
    assert one(data, "SELECT count(*), count(DISTINCT block_id) FROM blocks") == (3, 3)
    assert one(data, "SELECT count(*), count(DISTINCT block_id) FROM tokens") == (3, 3)
    assert one(data, "SELECT count(*) FROM request_blocks") == 30
    assert one(data, "SELECT count(DISTINCT materialization_key) FROM requests") == 1


def test_blocks_already_in_the_dataset_are_not_tokenized_again(tmp_path: Path) -> None:
    ingest([write_jsonl(tmp_path / "first.jsonl", [agent_record("a-1", turns=2)])], tmp_path / "data")

    longer = ingest([write_jsonl(tmp_path / "second.jsonl", [agent_record("b-1", turns=3)])], tmp_path / "data")

    assert longer.unique_blocks == 2, "only the two messages of the new turn are new"
    assert one(tmp_path / "data", "SELECT count(*), count(DISTINCT block_id) FROM blocks") == (7, 7)


def test_a_model_without_an_offline_tokenizer_falls_back_to_the_proxy_and_says_so(tmp_path: Path) -> None:
    log = write_jsonl(tmp_path / "claude.jsonl", [agent_record("c-1", model="claude-sonnet-4-5")])

    summary = ingest([log], tmp_path / "data")

    row = one(tmp_path / "data", "SELECT tokenizer, tokenizer_exact, prompt_tokens_counted FROM requests")
    assert row[:2] == ("tiktoken:cl100k_base", False)
    assert row[2] > 0
    assert summary.notes == ["no public tokenizer for claude-sonnet-4-5"]


def test_a_model_whose_tokenizer_ships_offline_is_counted_exactly(tmp_path: Path) -> None:
    log = write_jsonl(tmp_path / "gpt4.jsonl", [agent_record("g4-1", model="gpt-4")])

    summary = ingest([log], tmp_path / "data")

    assert one(tmp_path / "data", "SELECT tokenizer, tokenizer_exact FROM requests") == ("tiktoken:cl100k_base", True)
    assert summary.notes == []


def test_an_hf_tokenizer_path_that_does_not_exist_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "tokenizer.json"

    with pytest.raises(ZumikError, match=r"tokenizer file .*nowhere/tokenizer.json not found: pass --tokenizer hf:"):
        ingest([FIXTURES / "zumik.jsonl"], tmp_path / "data", tokenizer=f"hf:{missing}")

    assert not (tmp_path / "data" / "manifest.json").exists()


def test_an_hf_tokenizer_json_counts_every_block_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    sentences = ["You fix failing tests.", "Make the suite green.", "Run the test suite.", "1 failed, 41 passed"]
    tokenizer.train_from_iterator(sentences, trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))

    summary = ingest([FIXTURES / "zumik.jsonl"], tmp_path / "data", tokenizer=f"hf:{path}")

    con = Dataset(tmp_path / "data").connect()
    assert con.execute("SELECT DISTINCT tokenizer_exact FROM requests").fetchall() == [(True,)]
    (name,) = con.execute("SELECT DISTINCT tokenizer FROM requests").fetchone() or ("",)
    assert name.startswith("hf:tokenizer.json:")
    blocks = con.execute("SELECT b.text, b.n_tokens, t.token_ids FROM blocks b JOIN tokens t USING (block_id)")
    for text, n_tokens, token_ids in blocks.fetchall():
        expected = tokenizer.encode(text, add_special_tokens=False).ids
        assert (n_tokens, token_ids) == (len(expected), expected)
    assert summary.notes == []
    assert {entry["tokenizer"] for entry in summary.calibration} == {name}


def test_calibration_adds_up_counted_and_reported_tokens_across_ingests(tmp_path: Path) -> None:
    first = ingest([write_jsonl(tmp_path / "a.jsonl", [agent_record("k-1")])], tmp_path / "data")
    second = ingest([write_jsonl(tmp_path / "b.jsonl", [agent_record("k-2", turns=2)])], tmp_path / "data")

    (entry,) = read_manifest(tmp_path / "data").extra["calibration"]
    assert (entry["tokenizer"], entry["model"], entry["requests"]) == ("tiktoken:cl100k_base", "claude-sonnet-4-5", 2)
    assert entry["counted"] == first.tokens_counted + second.tokens_counted
    assert entry["reported"] == 20
    assert entry["ratio"] == round(20 / entry["counted"], 6)


# --- hash-id traces -----------------------------------------------------------------------------------------


def test_a_hash_id_trace_is_stored_block_by_block_without_any_text(tmp_path: Path) -> None:
    ingest([FIXTURES / "mooncake.jsonl"], tmp_path / "data")

    con = Dataset(tmp_path / "data").connect()
    rows = con.execute(
        "SELECT r.source_line, r.block_granularity, r.prompt_tokens_counted, r.snapshot_id, "
        "list(b.tokens ORDER BY b.pos), list(b.chain ORDER BY b.pos) "
        "FROM requests r JOIN request_blocks b USING (rid) GROUP BY ALL ORDER BY r.source_line"
    ).fetchall()
    assert [row[:4] for row in rows] == [(line, 512, None, "") for line in (1, 2, 3, 4)]
    assert rows[0][4] == [512, 512, 76], "a last partial block counts its real length"
    assert rows[1][4] == [512, 512, 512, 64]
    assert rows[1][5][:2] == rows[0][5][:2] and rows[1][5][2] != rows[0][5][2]
    assert con.execute("SELECT count(*) FROM blocks").fetchone() == (0,)


def test_hash_ids_of_two_trace_files_never_share_a_block(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "mooncake.jsonl", tmp_path / "cluster-a.jsonl")
    shutil.copy(FIXTURES / "mooncake.jsonl", tmp_path / "cluster-b.jsonl")

    summary = ingest([tmp_path / "cluster-a.jsonl", tmp_path / "cluster-b.jsonl"], tmp_path / "data")

    assert summary.requests == 8
    shared = one(
        tmp_path / "data",
        "SELECT count(*) FROM (SELECT chain FROM request_blocks b JOIN requests r USING (rid) "
        "GROUP BY chain HAVING count(DISTINCT r.source_path) > 1)",
    )
    assert shared == 0


def test_progress_is_reported_in_bytes_up_to_the_total(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    inputs = [FIXTURES / "zumik.jsonl", FIXTURES / "mooncake.jsonl"]

    ingest(inputs, tmp_path / "data", progress=lambda done, total: seen.append((done, total)))

    total = sum(path.stat().st_size for path in inputs)
    assert seen[-1] == (total, total)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)

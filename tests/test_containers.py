"""Containers: JSON Lines, one JSON document and gzip of either give the same dataset, and nothing is skipped
without a word (garbage before the good records, a byte-order mark, streams read once, folders' other files).

Every trace here is written by a generator in this file; counts read and quarantined are what it wrote.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from zumik_cli import readers
from zumik_cli.core.model import Quarantined, Request
from zumik_cli.dataset.store import Dataset, read_manifest
from zumik_cli.ingest.pipeline import ingest

ZUMIK = [str(Path(sys.executable).with_name("zumik"))]


def litellm_payloads(calls: int, team: str = "team-a") -> list[dict[str, Any]]:
    """StandardLoggingPayload records of one growing conversation, as LiteLLM's callbacks write them."""
    history: list[dict[str, Any]] = [{"role": "system", "content": "You answer questions about parcels, briefly."}]
    out = []
    for n in range(calls):
        history = [*history, {"role": "user", "content": f"Where is parcel PC-{1000 + n}? " * (3 + n)}]
        prompt = 40 + 30 * n
        out.append(
            {
                "id": f"chatcmpl-{n:04d}",
                "trace_id": f"trc-{n:04d}",
                "call_type": "acompletion",
                "status": "success",
                "custom_llm_provider": "openai",
                "model": "gpt-4o-2024-08-06",
                "model_group": "support",
                "response_cost": 0.001 * (n + 1),
                "startTime": 1757843000.0 + 10 * n,
                "endTime": 1757843001.5 + 10 * n,
                "prompt_tokens": prompt,
                "completion_tokens": 12,
                "metadata": {
                    "user_api_key_team_id": team,
                    "spend_logs_metadata": {"session_id": "sess-1"},
                    "usage_object": {
                        "prompt_tokens": prompt,
                        "completion_tokens": 12,
                        "prompt_tokens_details": {"cached_tokens": 0 if n == 0 else prompt - 30},
                    },
                },
                "messages": history,
                "response": {"choices": [{"message": {"role": "assistant", "content": f"Parcel {n} is on its way."}}]},
            }
        )
        history = [*history, {"role": "assistant", "content": f"Parcel {n} is on its way."}]
    return out


def write_jsonl(path: Path, records: list[Any], opener: Any = open) -> Path:
    with opener(path, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in records)
    return path


def dataset_rows(data: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The dataset's requests (all but where each was read from) and request blocks, in a stable order."""
    con = Dataset(data).connect()
    columns = [c for (c,) in con.execute("SELECT column_name FROM (DESCRIBE requests)").fetchall()]
    kept = ", ".join(c for c in columns if c not in ("source_path", "source_line"))
    requests = con.execute(f"SELECT {kept} FROM requests ORDER BY trace_id").fetchall()
    blocks = con.execute("SELECT * FROM request_blocks ORDER BY rid, pos").fetchall()
    return requests, blocks


def read(path: Path, forced: str | None = None) -> tuple[str, list[Request], list[Quarantined]]:
    sample = readers.sample_file(path)
    if isinstance(sample, Quarantined):
        return "", [], [sample]
    reader = readers.detect(sample, forced)
    assert reader is not None, f"no reader for {path}"
    items = list(reader.read(sample))
    return (
        reader.name,
        [i for i in items if isinstance(i, Request)],
        [i for i in items if isinstance(i, Quarantined)],
    )


def test_a_litellm_payload_as_a_pretty_document_an_array_json_lines_or_gzip_gives_the_same_dataset(
    tmp_path: Path,
) -> None:
    records = litellm_payloads(6)
    one = litellm_payloads(1)[0]
    (tmp_path / "in").mkdir()
    containers = {
        "lines": write_jsonl(tmp_path / "in" / "calls.jsonl", records),
        "array": tmp_path / "in" / "calls.json",
        "pretty-array": tmp_path / "in" / "pretty.json",
        "gzip-lines": write_jsonl(tmp_path / "in" / "calls.jsonl.gz", records, gzip.open),
        "gzip-pretty": tmp_path / "in" / "pretty.json.gz",
    }
    containers["array"].write_text(json.dumps(records))
    containers["pretty-array"].write_text(json.dumps(records, indent=2))
    containers["gzip-pretty"].write_bytes(gzip.compress(json.dumps(records, indent=4).encode()))

    datasets = {}
    for name, path in containers.items():
        summary = ingest([path], tmp_path / name)
        assert (summary.requests, summary.quarantined, summary.formats) == (6, 0, {"litellm": 6}), name
        datasets[name] = dataset_rows(tmp_path / name)
    assert all(rows == datasets["lines"] for rows in datasets.values())

    single_pretty = tmp_path / "one.json"
    single_pretty.write_text(json.dumps(one, indent=2))
    write_jsonl(tmp_path / "one.jsonl", [one])
    ingest([single_pretty], tmp_path / "single-pretty")
    ingest([tmp_path / "one.jsonl"], tmp_path / "single-line")
    assert dataset_rows(tmp_path / "single-pretty") == dataset_rows(tmp_path / "single-line")
    assert len(dataset_rows(tmp_path / "single-pretty")[0]) == 1


JSONL_FIXTURES = [
    "formats/litellm/litellm_spend.jsonl",
    "formats/helicone/helicone_export.jsonl",
    "formats/langfuse/observations.jsonl",
    "formats/openai_responses/responses.jsonl",
    "formats/claude_code_stream/headless-run.jsonl",
    "formats/spellings/anthropic_shaped.jsonl",
    "formats/spellings/openai_shaped.jsonl",
    "anthropic_messages.jsonl",
    "openai_chat.jsonl",
    "zumik.jsonl",
    "mooncake.jsonl",
    "bailian.jsonl",
]


@pytest.mark.parametrize("fixture", JSONL_FIXTURES)
def test_every_reader_reads_a_json_array_and_gzip_of_its_lines_to_the_same_requests(
    fixture: str, tmp_path: Path
) -> None:
    source = Path(__file__).parent / "fixtures" / fixture
    lines = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    # the same file name in other folders: the container is told by the bytes, and names feed ids
    (tmp_path / "array").mkdir()
    as_array = tmp_path / "array" / source.name
    as_array.write_text(json.dumps(lines, indent=2))
    (tmp_path / "gzip").mkdir()
    as_gzip = tmp_path / "gzip" / source.name
    as_gzip.write_bytes(gzip.compress(source.read_bytes()))

    name, expected, _ = read(source)
    for path in (as_array, as_gzip):
        got_name, got, _ = read(path)
        assert got_name == name
        assert [(r.trace_id, r.usage, r.artifacts, r.session_id, r.timestamp) for r in got] == [
            (r.trace_id, r.usage, r.artifacts, r.session_id, r.timestamp) for r in expected
        ]
    assert expected


@pytest.mark.parametrize("garbage", [1, 60, 500])
def test_garbage_before_the_good_records_quarantines_each_bad_line_and_keeps_the_rest(
    garbage: int, tmp_path: Path
) -> None:
    records = litellm_payloads(7)
    bad = ["not json at all", "{broken", "[1, 2", "\x7f\x01 control", "<html>"]
    lines = [bad[n % len(bad)] for n in range(garbage)]
    for n, record in enumerate(records):
        lines.append(json.dumps(record))
        if n % 3 == 1:
            lines.append("{truncated")  # a bad line between good ones
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")

    summary = ingest([path], tmp_path / "data")

    assert summary.requests == 7
    assert summary.quarantined == garbage + 2
    quarantined_lines = sorted(q["line"] for q in Dataset(tmp_path / "data").quarantine_entries())
    assert quarantined_lines[:garbage] == list(range(1, garbage + 1))


@pytest.mark.parametrize("first", [b"\x1f\x8b", b"\x1f\x8b\x01 noise"])
def test_a_first_line_that_starts_like_gzip_is_one_bad_line_not_a_refused_file(first: bytes, tmp_path: Path) -> None:
    # gzip is told by its magic bytes and its compression method (deflate): two bytes alone are text
    records = litellm_payloads(4)
    path = tmp_path / "calls.jsonl"
    path.write_bytes(first + b"\n" + b"".join(json.dumps(r).encode() + b"\n" for r in records))

    summary = ingest([path], tmp_path / "data")

    assert summary.requests == 4
    assert [q["line"] for q in Dataset(tmp_path / "data").quarantine_entries()] == [1]


def test_a_byte_order_mark_is_accepted_in_json_lines_and_in_a_document(tmp_path: Path) -> None:
    records = litellm_payloads(3)
    lines = tmp_path / "bom.jsonl"
    lines.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in records).encode())
    document = tmp_path / "bom.json"
    document.write_bytes(b"\xef\xbb\xbf" + json.dumps(records, indent=2).encode())

    for path in (lines, document):
        name, requests, quarantined = read(path)
        assert (name, len(requests), quarantined) == ("litellm", 3, [])


def test_stdin_is_read_once_and_recorded_under_a_name_made_of_its_digest(tmp_path: Path) -> None:
    first = "".join(json.dumps(r) + "\n" for r in litellm_payloads(3))
    second = "".join(json.dumps(r) + "\n" for r in litellm_payloads(5, team="team-b")[3:])
    data = tmp_path / "data"

    for text in (first, second, first):
        result = subprocess.run(
            [*ZUMIK, "ingest", "-", "--data", str(data), "--json"],
            input=text.encode(),
            capture_output=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr.decode()

    inputs = read_manifest(data).inputs
    assert [e["requests"] for e in inputs] == [3, 2]
    assert all(e["stream"] and e["path"].startswith("<stdin sha256:") for e in inputs)
    assert inputs[0]["path"] != inputs[1]["path"]
    assert json.loads(result.stdout)["inputs_skipped"] == [inputs[0]["path"]]


def test_a_fifo_is_read_once_and_one_without_a_writer_is_quarantined_instead_of_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "trace.jsonl"
    os.mkfifo(fifo)
    text = "".join(json.dumps(r) + "\n" for r in litellm_payloads(4))

    def writer() -> None:
        with fifo.open("w") as handle:
            handle.write(text)

    thread = threading.Thread(target=writer)
    thread.start()
    summary = ingest([fifo], tmp_path / "data")
    thread.join(timeout=10)
    assert (summary.requests, summary.quarantined) == (4, 0)
    assert read_manifest(tmp_path / "data").inputs[0]["path"].startswith(f"<pipe {fifo} sha256:")

    silent = tmp_path / "silent.jsonl"
    os.mkfifo(silent)
    good = write_jsonl(tmp_path / "good.jsonl", litellm_payloads(2))
    summary = ingest([good, silent], tmp_path / "other", stream_wait=0.3)
    assert (summary.requests, summary.quarantined) == (2, 1)
    assert "no data from" in Dataset(tmp_path / "other").quarantine_entries()[0]["reason"]


def test_a_process_substitution_is_read_once(tmp_path: Path) -> None:
    trace = write_jsonl(tmp_path / "calls.jsonl", litellm_payloads(3))
    command = f'{" ".join(ZUMIK)} ingest <(cat "{trace}") --data "{tmp_path / "data"}" --json'
    result = subprocess.run(["bash", "-c", command], capture_output=True, timeout=120)

    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout)["requests"] == 3


def test_a_folders_files_that_are_not_read_are_listed_with_the_reason(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    (root / "nested").mkdir(parents=True)
    write_jsonl(root / "a.jsonl", litellm_payloads(2))
    write_jsonl(root / "nested" / "b.jsonl.gz", litellm_payloads(4)[2:], gzip.open)
    (root / "notes.txt").write_text("hello")
    (root / "export.parquet").write_bytes(b"PAR1")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_jsonl(elsewhere / "c.jsonl", litellm_payloads(6)[4:])
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)

    result = subprocess.run(
        [*ZUMIK, "ingest", str(root), "--data", str(tmp_path / "data"), "--json"], capture_output=True, timeout=120
    )

    assert result.returncode == 0, result.stderr.decode()
    summary = json.loads(result.stdout)
    assert summary["requests"] == 4
    reasons = {Path(n["path"]).name: n["reason"] for n in summary["not_read"]}
    assert set(reasons) == {"notes.txt", "export.parquet", "linked"}
    assert reasons["linked"].startswith("a symlink to a folder")
    assert "linked not read" in result.stderr.decode().replace("\n", " ")


def test_two_different_calls_sharing_a_trace_id_are_not_dropped_without_a_word(tmp_path: Path) -> None:
    records = litellm_payloads(4)
    clash = dict(records[3], id=records[1]["id"], prompt_tokens=999)
    clash["metadata"] = dict(clash["metadata"], usage_object={"prompt_tokens": 999, "completion_tokens": 3})
    repeated = records[2]  # the same call logged twice is a duplicate, not a clash
    path = write_jsonl(tmp_path / "calls.jsonl", [*records, clash, repeated])

    summary = ingest([path], tmp_path / "data")

    assert (summary.requests, summary.duplicates_skipped, summary.quarantined) == (4, 1, 1)
    (entry,) = Dataset(tmp_path / "data").quarantine_entries()
    assert entry["line"] == 5
    assert "was already read from" in entry["reason"] and "calls.jsonl:2" in entry["reason"]


def test_forcing_a_format_on_a_file_quarantined_whole_reads_it_again(tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", litellm_payloads(2))
    # OpenAI Chat records without the fields detection looks for: unknown until the format is forced
    odd = write_jsonl(
        tmp_path / "odd.jsonl",
        [{"request": {"model": "gpt-4o", "messages": [{"role": "user", "content": f"hi {n}"}]}} for n in range(3)],
    )
    data = tmp_path / "data"
    first = ingest([good, odd], data)
    assert (first.requests, first.quarantined) == (2, 1)

    again = ingest([odd], data, format="openai-chat")

    assert again.inputs_skipped == []
    assert again.requests + again.quarantined == 3
    assert [e["format"] for e in read_manifest(data).inputs] == ["litellm", "openai-chat"]
    assert ingest([odd], data, format="openai-chat").inputs_skipped == [str(odd)]

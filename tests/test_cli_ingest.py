"""`zumik ingest` and `zumik formats`: stdout carries data, stderr carries talk, errors are one line and a code."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import Result
from conftest import FIXTURES, runner

from zumik_cli.cli import app
from zumik_cli.dataset.schema import SCHEMA_VERSION
from zumik_cli.readers import load_formats

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def zumik(*args: str | Path) -> Result:
    return runner().invoke(app, [str(arg) for arg in args], env={"COLUMNS": "200"})


def words(text: str) -> str:
    """Terminal text as one line of words, whatever the width it was wrapped at and whatever colours it had."""
    return " ".join(ANSI.sub("", text).split())


@pytest.mark.realdata
def test_ingesting_the_real_mini_swe_agent_runs_prints_the_reference_figures_as_json(
    real_data: Path, tmp_path: Path
) -> None:
    result = zumik("ingest", real_data / "mini_swe_agent_gemini3pro", "--data", tmp_path / "data", "--json")

    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["requests"] == 266
    assert summary["prompt_tokens_reported"] == 4_781_026
    assert summary["cached_tokens_reported"] == 4_098_373
    assert summary["quarantined"] == 0
    assert summary["formats"] == {"mini-swe-agent": 266}
    assert "{" not in result.stderr, "no data on stderr"
    assert "note: no public tokenizer for google/gemini-3-pro-preview" in words(result.stderr)


def test_the_json_summary_is_the_only_thing_on_stdout(tmp_path: Path) -> None:
    result = zumik("ingest", FIXTURES / "zumik.jsonl", FIXTURES / "bad", "--data", tmp_path / "data", "--json")

    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert set(summary) >= {"dataset", "requests", "quarantined", "duplicates_skipped", "inputs_skipped", "formats"}
    assert (summary["requests"], summary["quarantined"]) == (3 + 10, 14)
    assert f"14 records quarantined with reasons in {tmp_path / 'data'}/quarantine/" in words(result.stderr)


def test_without_json_the_summary_table_goes_to_stdout_and_the_notes_to_stderr(tmp_path: Path) -> None:
    result = zumik("ingest", FIXTURES / "anthropic_messages.jsonl", "--data", tmp_path / "data")

    assert result.exit_code == 0, result.stderr
    table = words(result.stdout)
    assert f"Ingested into {tmp_path / 'data'}" in table
    assert re.search(r"\brequests\W+3\b", table) and re.search(r"\bformats\W+anthropic: 3\b", table)
    assert "note:" not in table
    assert words(result.stderr) == "note: no public tokenizer for claude-sonnet-4-5; counts marked estimated"


def test_reingesting_a_file_reports_it_as_skipped_on_stderr(tmp_path: Path) -> None:
    zumik("ingest", FIXTURES / "mooncake.jsonl", "--data", tmp_path / "data")

    result = zumik("ingest", FIXTURES / "mooncake.jsonl", "--data", tmp_path / "data", "--json")

    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert (summary["requests"], summary["inputs_skipped"]) == (0, [str(FIXTURES / "mooncake.jsonl")])
    assert words(result.stderr) == f"{FIXTURES / 'mooncake.jsonl'} was already ingested: skipped"


def test_an_input_in_no_known_format_exits_non_zero_with_one_error_line_naming_the_formats(tmp_path: Path) -> None:
    result = zumik("ingest", FIXTURES / "bad" / "unknown_format.jsonl", "--data", tmp_path / "data", "--json")

    assert result.exit_code == 2
    assert result.stdout == ""
    error = words(result.stderr)
    assert error.startswith("Error: no input could be read as a trace: ")
    assert "unknown_format.jsonl: JSON, but in no format zumik knows" in error and "--format" in error
    assert "Traceback" not in result.stderr


def test_a_missing_input_path_is_an_error_that_quotes_the_path_as_typed(tmp_path: Path) -> None:
    missing = tmp_path / "traces[/dim]" / "missing.jsonl"

    result = zumik("ingest", missing, "--data", tmp_path / "data")

    assert result.exit_code == 2
    assert words(result.stderr) == (
        f"Error: {missing} does not exist: check the path (folders are searched for .json, .jsonl, .ndjson and "
        ".csv, gzipped or not; `-` reads stdin)"
    )


def test_a_path_that_looks_like_terminal_markup_is_printed_as_it_is(tmp_path: Path) -> None:
    folder = tmp_path / "team[red]"
    folder.mkdir()
    shutil.copy(FIXTURES / "mooncake.jsonl", folder / "mooncake.jsonl")
    zumik("ingest", folder / "mooncake.jsonl", "--data", tmp_path / "data")

    result = zumik("ingest", folder / "mooncake.jsonl", "--data", tmp_path / "data")

    assert result.exit_code == 0
    assert words(result.stderr) == f"{folder / 'mooncake.jsonl'} was already ingested: skipped"


def test_a_dataset_of_another_schema_version_is_refused_with_exit_code_4(tmp_path: Path) -> None:
    zumik("ingest", FIXTURES / "mooncake.jsonl", "--data", tmp_path / "data")
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    (tmp_path / "data" / "manifest.json").write_text(json.dumps({**manifest, "schema_version": SCHEMA_VERSION + 1}))

    result = zumik("ingest", FIXTURES / "bailian.jsonl", "--data", tmp_path / "data")

    assert result.exit_code == 4
    assert result.stdout == ""
    error = words(result.stderr)
    assert error.startswith("Error: ") and error.endswith("re-ingest the traces into a new folder with `zumik ingest`")


def test_a_missing_hf_tokenizer_file_is_a_one_line_error(tmp_path: Path) -> None:
    spec = f"hf:{tmp_path / 'tokenizer.json'}"

    result = zumik("ingest", FIXTURES / "zumik.jsonl", "--data", tmp_path / "data", "--tokenizer", spec)

    assert result.exit_code == 1
    assert words(result.stderr) == (
        f"Error: tokenizer file {tmp_path / 'tokenizer.json'} not found: pass --tokenizer hf:/path/to/tokenizer.json"
    )


def test_a_forced_unknown_format_lists_the_known_ones(tmp_path: Path) -> None:
    result = zumik("ingest", FIXTURES / "zumik.jsonl", "--data", tmp_path / "data", "--format", "csv")

    assert result.exit_code == 2
    assert words(result.stderr).startswith("Error: unknown format 'csv'; known formats: zumik, ")


def test_formats_lists_the_registry_in_detection_order_as_json() -> None:
    result = zumik("formats", "--json")

    assert result.exit_code == 0
    assert [row["name"] for row in json.loads(result.stdout)] == list(load_formats())
    assert result.stderr == ""

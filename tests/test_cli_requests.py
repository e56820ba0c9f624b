"""Finding a request to explain: `zumik requests`, the worst requests and each session's worst in the waterfall."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import runner

from zumik_cli.cli import app

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("requests") / "ds"
    assert runner().invoke(app, ["ingest", str(ROOT / "sample_traces"), "--data", str(data)]).exit_code == 0
    return data


def zumik_json(*args: str) -> object:
    result = runner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_requests_lists_every_request_with_the_waterfalls_own_figures(dataset: Path) -> None:
    rows = zumik_json("requests", "--data", str(dataset))
    waterfall = zumik_json("waterfall", "--data", str(dataset))
    assert isinstance(rows, list) and isinstance(waterfall, dict)
    assert len(rows) == waterfall["requests"] == 107
    for stage in ("candidate", "realized", "missed"):
        assert sum(r[stage] or 0 for r in rows) == waterfall[stage]["tokens"]
    assert all(r["trace_id"].startswith("trc_") and r["session"] for r in rows)


def test_each_request_names_the_waterfall_step_that_lost_it_most_tokens(dataset: Path) -> None:
    rows = zumik_json("requests", "--data", str(dataset))
    assert isinstance(rows, list)
    lost = [r for r in rows if r["lost"]]
    assert lost and all(r["cause"] for r in lost)
    by_provider = [r for r in rows if r["missed"] and r["missed"] > (r["eligible"] - r["candidate"])]
    assert by_provider and all(r["cause"] not in ("granularity", "evicted") for r in by_provider)


def test_worst_lists_the_requests_that_lost_most_first(dataset: Path) -> None:
    rows = zumik_json("requests", "--data", str(dataset), "--worst", "5")
    everything = zumik_json("requests", "--data", str(dataset))
    assert isinstance(rows, list) and isinstance(everything, list)
    assert len(rows) == 5
    assert [r["lost"] for r in rows] == sorted((r["lost"] or 0 for r in everything), reverse=True)[:5]


def test_a_session_lists_only_its_own_requests(dataset: Path) -> None:
    everything = zumik_json("requests", "--data", str(dataset))
    assert isinstance(everything, list)
    session = everything[0]["session"]
    rows = zumik_json("requests", "--data", str(dataset), "--session", session)
    assert isinstance(rows, list)
    assert rows and {r["session"] for r in rows} == {session}
    assert len(rows) == sum(r["session"] == session for r in everything)


def test_the_waterfall_by_session_prints_each_sessions_worst_trace_id_whole_at_80_columns(dataset: Path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("zumik")), "waterfall", "--data", str(dataset), "--by", "session"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "By session" in result.stdout and "worst request" in result.stdout
    section = result.stdout.split("By session", 1)[1].split("Worst", 1)[0]
    assert section.count("ses_") > 0 and section.count("trc_") == section.count("ses_")  # each session's worst
    rows = zumik_json("requests", "--data", str(dataset), "--worst", "1")
    assert isinstance(rows, list)
    assert rows[0]["trace_id"] in result.stdout and rows[0]["session"] in result.stdout
    table_lines = [line for line in result.stdout.splitlines() if "ses_" in line or "trc_" in line]
    assert table_lines and max(len(line.rstrip()) for line in table_lines) <= 80
    assert "…" not in result.stdout


def test_the_waterfall_prints_its_definitions_only_when_asked(dataset: Path) -> None:
    plain = runner().invoke(app, ["waterfall", "--data", str(dataset)])
    asked = runner().invoke(app, ["waterfall", "--data", str(dataset), "--definitions"])
    definition = "Candidate minus realized"
    assert definition not in plain.stdout and "--definitions" in plain.stdout
    assert definition in " ".join(asked.stdout.split())


def test_a_single_request_is_not_written_as_plural(tmp_path: Path) -> None:
    line = (ROOT / "sample_traces" / "agents-1.jsonl").read_text().splitlines()[0]
    (tmp_path / "one.jsonl").write_text(line + "\n")
    data = str(tmp_path / "ds")
    assert runner().invoke(app, ["ingest", str(tmp_path / "one.jsonl"), "--data", data]).exit_code == 0
    result = runner().invoke(app, ["waterfall", "--data", data])
    assert "1 request\n" in result.stdout or "— 1 request" in result.stdout
    assert "1 requests" not in result.stdout


def test_ingesting_the_same_file_again_says_nothing_new_instead_of_a_table_of_zeros(tmp_path: Path) -> None:
    data = str(tmp_path / "ds")
    sample = str(ROOT / "sample_traces" / "agents-1.jsonl")
    assert runner().invoke(app, ["ingest", sample, "--data", data]).exit_code == 0
    again = runner().invoke(app, ["ingest", sample, "--data", data])
    assert again.exit_code == 0
    assert again.stdout.startswith("Nothing new for ") and "1 file already ingested" in again.stdout
    assert "│" not in again.stdout


def test_the_terminal_waterfall_is_a_text_bridge_whose_steps_add_up_from_total_input_to_realized(dataset: Path) -> None:
    result = runner().invoke(app, ["waterfall", "--data", str(dataset)])
    assert result.exit_code == 0, result.stderr
    summary = zumik_json("waterfall", "--data", str(dataset))
    assert isinstance(summary, dict)
    lines = result.stdout.split("Where the input went", 1)[1].splitlines()[1:]
    stages = [line.split()[0] for line in lines if line and not line.startswith(" ")][:4]
    assert stages == ["Total", "Eligible", "Candidate", "Realized"]
    steps = [line for line in lines[: next(i for i, line in enumerate(lines) if line.startswith("Realized")) + 1]]
    losses = [line for line in steps if line.startswith("  - ")]
    assert any("expired" in line for line in losses) and all("▒" in line for line in losses)
    # every cause with tokens is a named step of its own
    named = [c for c in summary["causes"] if c["tokens"]]
    assert len(losses) >= len(named)

"""`zumik waterfall` and `zumik diagnose` through the command line: data on stdout, talk on stderr."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from zumik_cli.cli import app

ROOT = Path(__file__).resolve().parents[1]


def test_the_waterfall_command_reproduces_the_mooncake_reference_figures(real_data: Path, tmp_path: Path):
    runner = CliRunner()
    data = str(tmp_path / "data")
    assert runner.invoke(app, ["ingest", str(real_data / "mooncake_fast25"), "--data", data]).exit_code == 0

    result = runner.invoke(
        app, ["waterfall", "--data", data, "--rules", "ideal", "--curve", "1000000,3000000,10000000", "--json"]
    )

    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert round(summary["eligible"]["rate"], 4) == 0.6512
    curve = {point["capacity_tokens"]: round(point["rate"], 4) for point in summary["capacity_curve"]}
    assert curve == {1_000_000: 0.1421, 3_000_000: 0.3151, 10_000_000: 0.5768, None: 0.6512}
    assert summary["realized"]["tokens"] is None, "a hash-id trace records no cache reads: unknown, not zero"


def test_a_bad_curve_is_a_one_line_error(tmp_path: Path):
    runner = CliRunner()
    data = str(tmp_path / "data")
    runner.invoke(app, ["ingest", str(ROOT / "sample_traces"), "--data", data])
    result = runner.invoke(app, ["waterfall", "--data", data, "--curve", "lots"])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --curve takes capacities")
    assert result.stdout == ""


def test_diagnose_prints_the_waterfall_and_writes_a_report(tmp_path: Path):
    report = tmp_path / "sample.html"
    result = CliRunner().invoke(
        app,
        ["diagnose", str(ROOT / "sample_traces"), "--data", str(tmp_path / "data"), "--report", str(report), "--json"],
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["requests"] == 107
    assert summary["total_input_tokens"]["evidence"] == "measured"
    assert summary["report"] == str(report) and report.exists()


def test_piped_tables_are_wide_enough_to_show_release_ids_whole(tmp_path: Path):
    import os
    import subprocess
    import sys

    data = str(tmp_path / "data")
    assert CliRunner().invoke(app, ["ingest", str(ROOT / "sample_traces"), "--data", data]).exit_code == 0
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    zumik = str(Path(sys.executable).with_name("zumik"))

    piped = subprocess.run([zumik, "waterfall", "--data", data, "--by", "release"], env=env, capture_output=True)
    narrow = subprocess.run(
        [zumik, "waterfall", "--data", data, "--by", "release"], env=env | {"COLUMNS": "60"}, capture_output=True
    )

    assert piped.returncode == 0 and narrow.returncode == 0, piped.stderr
    releases = {line.split()[0] for line in piped.stdout.decode().splitlines() if line.lstrip().startswith("alr_")}
    assert len(releases) >= 5 and all(len(r) == len("alr_2026_06_09_003") for r in releases)
    # a width the user set is still obeyed: the table drops columns rather than cut an id
    narrow_rows = [line for line in narrow.stdout.decode().splitlines() if line.lstrip().startswith("alr_")]
    assert {line.split()[0] for line in narrow_rows} == releases
    assert max(len(line.rstrip()) for line in narrow_rows) <= 60


def test_a_what_if_says_what_made_it_in_the_header_the_json_and_the_report(tmp_path: Path):
    runner = CliRunner()
    data = str(tmp_path / "data")
    assert runner.invoke(app, ["ingest", str(ROOT / "sample_traces"), "--data", data]).exit_code == 0
    what_if = ["--rules", "anthropic", "--ttl", "3600", "--capacity-tokens", "10000"]

    table = runner.invoke(app, ["waterfall", "--data", data, *what_if])
    as_json = runner.invoke(app, ["waterfall", "--data", data, *what_if, "--json"])
    report = tmp_path / "what-if.html"
    written = runner.invoke(app, ["report", "--data", data, "--output", str(report), *what_if])

    assert table.exit_code == as_json.exit_code == written.exit_code == 0, table.stderr + written.stderr
    header = (
        "What-if: rules pack anthropic for every request, TTL 3,600 s for every request, LRU cache of 10,000 tokens"
    )
    assert table.stdout.splitlines()[0] == header
    options = json.loads(as_json.stdout)["options"]
    assert options["what_if"] is True
    assert (options["rules"], options["ttl"], options["ttl_seconds"], options["capacity_tokens"]) == (
        "anthropic",
        3600,
        3600,
        10_000,
    )
    assert (options["policy"], options["release"]) == ("recorded", None)
    page = report.read_text()
    box = page[page.index('id="assumptions"') : page.index("</aside>", page.index('id="assumptions"'))]
    assert "What-if, not the baseline." in box and "<dd>10.0K tokens, LRU</dd>" in box
    assert "<dd>1 h for every request</dd>" in box and "<dd>anthropic for every request" in box
    assert page.index('id="overview"') < page.index('id="assumptions"') < page.index('id="waterfall"'), (
        "the assumptions stand beside the first figures"
    )


def test_the_baseline_says_plainly_that_it_is_the_baseline(tmp_path: Path):
    runner = CliRunner()
    data = str(tmp_path / "data")
    assert runner.invoke(app, ["ingest", str(ROOT / "sample_traces"), "--data", data]).exit_code == 0

    table = runner.invoke(app, ["waterfall", "--data", data])
    options = json.loads(runner.invoke(app, ["waterfall", "--data", data, "--json"]).stdout)["options"]
    no_expiry = json.loads(runner.invoke(app, ["waterfall", "--data", data, "--ttl", "none", "--json"]).stdout)

    assert table.stdout.splitlines()[0] == "Baseline: recorded rules, pack TTLs, unbounded cache"
    assert (options["what_if"], options["ttl"], options["assumptions"]) == (
        False,
        "pack",
        ["recorded rules", "pack TTLs", "unbounded cache"],
    )
    assert (no_expiry["options"]["what_if"], no_expiry["options"]["ttl"]) == (True, "none")
    assert table.stderr == ""

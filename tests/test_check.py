"""Cache-configuration checks: each fires on a body or trace crafted to break its rule and stays quiet on a good one;
``zumik check`` exits 1 on a failure so that it can gate a CI job."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from zumik_cli.cli import app
from zumik_cli.dataset.store import Dataset
from zumik_cli.diagnosis.check import check_body, check_dataset
from zumik_cli.ingest.pipeline import ingest
from zumik_cli.ingest.request_body import read_body

SONNET = "claude-sonnet-4-5"  # anthropic pack: at most 4 breakpoints, 20-block look-back, 1,024-token minimum
LONG_SYSTEM = "".join(
    f"Rule {i}: read the ticket history, confirm the account owner, and record every change you make.\n"
    for i in range(120)
)
TOOLS = [
    {"name": f"tool_{i}", "description": f"Tool number {i} of the support desk.", "input_schema": {"type": "object"}}
    for i in range(3)
]
T0 = 1_781_000_000.0


def ephemeral(ttl: str = "5m") -> dict[str, Any]:
    return {"type": "ephemeral", **({"ttl": "1h"} if ttl == "1h" else {})}


def text(words: str, ttl: str | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "text", "text": words}
    if ttl:
        part["cache_control"] = ephemeral(ttl)
    return part


def anthropic_body(**changes: Any) -> dict[str, Any]:
    """A good Messages body: tools, a long system prompt with a breakpoint, and one at the end of the prompt."""
    body: dict[str, Any] = {
        "model": SONNET,
        "max_tokens": 1024,
        "tools": copy.deepcopy(TOOLS),
        "system": [text(LONG_SYSTEM, "5m")],
        "messages": [
            {"role": "user", "content": [text("My invoice is wrong.")]},
            {"role": "assistant", "content": [text("Let me look at it.")]},
            {"role": "user", "content": [text("It is invoice 42.", "5m")]},
        ],
    }
    body.update(changes)
    return body


def openai_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "gpt-4o",
        "prompt_cache_key": "support-desk",
        "messages": [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": "My invoice is wrong."}],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
    }
    body.update(changes)
    return body


def run_body(tmp_path: Path, body: dict[str, Any], name: str = "body.json") -> dict[str, Any]:
    path = tmp_path / name
    path.write_text(json.dumps(body))
    return check_body(read_body(path)).to_json()


def fired(report: dict[str, Any]) -> dict[str, str]:
    return {f["check"]: f["severity"] for f in report["findings"]}


# --- single request bodies ---------------------------------------------------------------------------------------


def test_a_good_anthropic_body_passes_every_check(tmp_path):
    report = run_body(tmp_path, anthropic_body())
    assert fired(report) == {}
    assert report["status"] == "pass"


def test_more_than_four_breakpoints_fail(tmp_path):
    messages = [{"role": "user", "content": [text(f"part {i}", "5m") for i in range(4)]}]
    report = run_body(tmp_path, anthropic_body(messages=messages))
    assert fired(report)["anthropic.max_breakpoints"] == "fail"
    assert report["status"] == "fail"


def test_a_one_hour_breakpoint_after_a_five_minute_one_fails(tmp_path):
    body = anthropic_body()
    body["messages"][-1]["content"][0]["cache_control"] = ephemeral("1h")
    assert fired(run_body(tmp_path, body))["anthropic.ttl_order"] == "fail"
    body["system"][0]["cache_control"] = ephemeral("1h")  # 1 h then 1 h: the right order
    assert "anthropic.ttl_order" not in fired(run_body(tmp_path, body))


def test_a_breakpoint_on_a_prefix_under_the_minimum_warns(tmp_path):
    report = run_body(tmp_path, anthropic_body(system=[text("Be helpful.", "5m")]))
    finding = next(f for f in report["findings"] if f["check"] == "anthropic.below_minimum")
    assert finding["severity"] == "warn"
    assert "1,024-token minimum" in finding["message"]


def test_a_date_before_the_first_breakpoint_warns_on_its_shape(tmp_path):
    system = [text("Today is 2026-06-09 and the time is 09:14:03.\n" + LONG_SYSTEM, "5m")]
    report = run_body(tmp_path, anthropic_body(system=system))
    finding = next(f for f in report["findings"] if f["check"] == "anthropic.volatile_before_breakpoint")
    assert finding["severity"] == "warn" and "shape only" in finding["basis"]
    assert "2026-06-09" in finding["message"]


def test_a_breakpoint_more_than_twenty_message_blocks_after_the_last_one_warns(tmp_path):
    body = anthropic_body()
    results = [{"role": "user", "content": [text(f"result {i}") for i in range(24)]}]
    body["messages"] = [*body["messages"], *results]
    body["messages"][-1]["content"][-1]["cache_control"] = ephemeral()
    assert fired(run_body(tmp_path, body))["anthropic.lookback"] == "warn"


def test_automatic_caching_counts_as_a_breakpoint_at_the_end(tmp_path):
    body = anthropic_body(cache_control=ephemeral())
    body["messages"][-1]["content"][0].pop("cache_control")
    path = tmp_path / "auto.json"
    path.write_text(json.dumps(body))
    parsed = read_body(path)
    assert parsed.breakpoints[-1] == (len(parsed.blocks) - 1, "5m")
    assert fired(check_body(parsed).to_json()) == {}


def test_an_openai_body_without_prompt_cache_key_gets_advice_not_a_failure(tmp_path):
    body = openai_body()
    del body["prompt_cache_key"]
    report = run_body(tmp_path, body)
    assert fired(report) == {"openai.prompt_cache_key_missing": "info"}
    assert report["status"] == "pass"
    assert fired(run_body(tmp_path, openai_body())) == {}


def test_stable_tools_after_a_changing_looking_system_prompt_warn(tmp_path):
    messages = [{"role": "system", "content": f"Request id: req_9f8e7d6c5b4a\n{LONG_SYSTEM}"}]
    report = run_body(tmp_path, openai_body(messages=messages))
    finding = next(f for f in report["findings"] if f["check"] == "prefix.stable_after_changing")
    assert finding["severity"] == "warn" and finding["tokens_at_risk"] > 0


def test_a_wrapped_body_is_unwrapped(tmp_path):
    assert fired(run_body(tmp_path, {"request": anthropic_body()})) == {}


# --- recorded traces --------------------------------------------------------------------------------------------


def record(session: str, k: int, body: dict[str, Any], gap: float = 10.0, **fields: Any) -> dict[str, Any]:
    """A zumik JSONL record of a request body (Anthropic shape when the model is Claude)."""
    provider = "anthropic" if body["model"].startswith("claude") else "openai"
    system = body.get("system")
    if provider == "openai":
        system = body["messages"][0]["content"]
        messages = body["messages"][1:]
        tools = [{"name": t["function"]["name"], "parameters": t["function"]["parameters"]} for t in body["tools"]]
    else:
        messages, tools = body["messages"], body["tools"]
    return {
        "zumik": 1,
        "trace_id": f"{session}-{k}",
        "timestamp": datetime.fromtimestamp(T0 + k * gap, UTC).isoformat().replace("+00:00", "Z"),
        "provider": provider,
        "model": body["model"],
        "session_id": session,
        "tools": tools,
        "system": system,
        "messages": messages,
        **fields,
    }


def good_session(session: str) -> list[dict[str, Any]]:
    out = []
    body = anthropic_body()
    for k in range(3):
        out.append(record(session, k, copy.deepcopy(body)))
        body["messages"][-1]["content"][0].pop("cache_control")
        body["messages"] += [
            {"role": "assistant", "content": [text(f"Reply {k}.")]},
            {"role": "user", "content": [text(f"Follow-up {k}.", "5m")]},
        ]
    return out


def traces_with_mistakes() -> list[dict[str, Any]]:
    out = good_session("good")
    five = anthropic_body(messages=[{"role": "user", "content": [text(f"part {i}", "5m") for i in range(4)]}])
    out.append(record("too-many", 0, five))
    order = anthropic_body()
    order["messages"][-1]["content"][0]["cache_control"] = ephemeral("1h")
    out.append(record("ttl-order", 0, order))
    out += _lookback_session()
    for k in range(3):
        clock = anthropic_body(system=[text(f"Current time: 2026-06-09T09:{10 + k}:00Z\n{LONG_SYSTEM}", "5m")])
        out.append(record("clock", k, clock))
    for k, key in enumerate(("ses-1", "ses-1", f"req-{T0}")):
        out.append(record("keys", k, openai_body(), prompt_cache_key=key))
    keyless = openai_body()
    del keyless["prompt_cache_key"]
    out.append(record("keyless", 0, keyless))
    return out


def _lookback_session() -> list[dict[str, Any]]:
    """Call 2 adds 26 blocks after call 1's last breakpoint and marks only its own end: the entry is not found."""
    first = anthropic_body()
    second = copy.deepcopy(first)
    second["messages"][-1]["content"][0].pop("cache_control")
    calls = [{"type": "tool_use", "id": f"t{i}", "name": "tool_0", "input": {"i": i}} for i in range(12)]
    results = [{"type": "tool_result", "tool_use_id": f"t{i}", "content": f"result {i}"} for i in range(12)]
    second["messages"] += [
        {"role": "assistant", "content": [text("Checking."), *calls]},
        {"role": "user", "content": [*results, text("Well?", "5m")]},
    ]
    return [record("lookback", 0, first), record("lookback", 1, second)]


@pytest.fixture(scope="module")
def mistakes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mistakes")
    trace = folder / "traces.jsonl"
    trace.write_text("".join(json.dumps(r) + "\n" for r in traces_with_mistakes()))
    assert ingest([trace], folder / "data").quarantined == 0
    return folder / "data"


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("good")
    trace = folder / "traces.jsonl"
    records = good_session("good") + [record("keys", k, openai_body(), prompt_cache_key="ses-1") for k in range(2)]
    trace.write_text("".join(json.dumps(r) + "\n" for r in records))
    ingest([trace], folder / "data")
    return folder / "data"


def findings_by_check(data: Path) -> dict[str, dict[str, Any]]:
    return {f["check"]: f for f in check_dataset(Dataset(data)).to_json()["findings"]}


def test_good_recorded_traffic_passes_every_check(good):
    report = check_dataset(Dataset(good))
    assert report.findings == [] and not report.failed
    assert report.checked["breakpoint_requests"] == 3 and report.checked["openai_requests"] == 2


@pytest.mark.parametrize(
    ("check", "severity", "example"),
    [
        ("anthropic.max_breakpoints", "fail", ["too-many-0"]),
        ("anthropic.ttl_order", "fail", ["ttl-order-0"]),
        ("anthropic.lookback", "fail", ["lookback-1"]),
        ("anthropic.volatile_before_breakpoint", "fail", ["clock-0", "clock-1", "clock-2"]),
        ("openai.prompt_cache_key_unstable", "fail", ["keys"]),
        ("openai.prompt_cache_key_missing", "info", ["keyless-0"]),
    ],
)
def test_each_check_fires_on_the_recorded_requests_that_break_it(mistakes, check, severity, example):
    finding = findings_by_check(mistakes)[check]
    assert finding["severity"] == severity
    assert finding["examples"] == example


def test_a_look_back_miss_says_how_many_tokens_it_put_at_risk(mistakes):
    finding = findings_by_check(mistakes)["anthropic.lookback"]
    ends = (
        Dataset(mistakes)
        .connect()
        .execute(
            """
        SELECT r.breakpoints FROM requests r WHERE trace_id = 'lookback-0'
        """
        )
        .fetchone()
    )
    system_end, message_end = ends[0]
    assert finding["tokens_at_risk"] == message_end - system_end


def test_checks_on_a_dataset_are_worst_first(mistakes):
    severities = [f.severity for f in check_dataset(Dataset(mistakes)).findings]
    assert severities == sorted(severities, key=("fail", "warn", "info").index)


def test_the_check_command_exits_1_on_a_failure_and_0_on_good_traffic(mistakes, good):
    runner = CliRunner()
    bad = runner.invoke(app, ["check", "--data", str(mistakes), "--json"])
    assert bad.exit_code == 1
    assert json.loads(bad.stdout)["status"] == "fail"
    assert "Check failed" in bad.stderr
    ok = runner.invoke(app, ["check", "--data", str(good)])
    assert ok.exit_code == 0, ok.output
    assert "0 fail" in ok.stdout


def test_the_check_command_reads_one_request_body_and_strict_fails_on_warnings(tmp_path):
    path = tmp_path / "body.json"
    path.write_text(json.dumps(anthropic_body(system=[text("Be helpful.", "5m")])))
    runner = CliRunner()
    assert runner.invoke(app, ["check", "--request", str(path)]).exit_code == 0
    strict = runner.invoke(app, ["check", "--request", str(path), "--strict", "--json"])
    assert strict.exit_code == 1
    assert fired(json.loads(strict.stdout)) == {"anthropic.below_minimum": "warn"}


def test_the_check_command_needs_exactly_one_target(tmp_path, good):
    runner = CliRunner()
    neither = runner.invoke(app, ["check"])
    assert neither.exit_code == 2 and "exactly one" in neither.stderr
    path = tmp_path / "body.json"
    path.write_text("{}")
    both = runner.invoke(app, ["check", "--data", str(good), "--request", str(path)])
    assert both.exit_code == 2


def test_a_file_that_is_not_a_request_body_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.json"
    path.write_text(json.dumps({"hello": "world"}))
    result = CliRunner().invoke(app, ["check", "--request", str(path)])
    assert result.exit_code == 2
    assert "no messages" in result.stderr

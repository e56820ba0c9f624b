"""Session divergence, proved on traces a generator below writes with breaks planted on purpose.

Each planted session runs five calls of a tool-using agent, each call extending the one before it (its prompt plus
the reply it got), and plants one break at a known call: an idle gap, a model change, an edited system prompt, a tool
added, removed, reordered or edited, history truncated or compacted, a tool result rewritten, two messages swapped, or
a history replaced outright. The expected token where reuse broke, and the tokens lost, come from a plain reference:
the prompts' token ids, concatenated and compared one by one.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from zumik_cli.analysis.waterfall import WaterfallOptions, compute_waterfall
from zumik_cli.cli import app
from zumik_cli.dataset.store import Dataset
from zumik_cli.diagnosis.check import check_dataset
from zumik_cli.diagnosis.divergence import Break, Divergence, compute_divergence
from zumik_cli.ingest.pipeline import ingest

MODEL = "gpt-4"  # cl100k_base: exact and offline, so every count is the model's own
T0 = 1_781_000_000.0
BASE_SYSTEM = (
    "You are Atlas, an operations agent for a logistics company.\n"
    "Current time: 2026-06-09T09:00:00Z\n"
    "Answer briefly.\n"
    + "".join(
        f"- Rule {i}: check the shipment manifest against the warehouse ledger before you change order {i}.\n"
        for i in range(1, 25)
    )
)
TOOLS = [
    {
        "name": name,
        "description": f"{name.replace('_', ' ').capitalize()} in the logistics system. Use it when the user asks "
        f"about {topic}; it returns JSON.",
        "parameters": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
    }
    for name, topic in (
        ("get_order", "an order"),
        ("get_shipment", "a shipment"),
        ("list_warehouses", "stock levels"),
        ("open_ticket", "a problem that needs a person"),
    )
]


@dataclass
class Call:
    """One planned call: what its prompt holds, when it is sent, and the model it goes to."""

    at: float
    system: str
    tools: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    reply: dict[str, Any] | None
    model: str = MODEL
    provider: str = "openai"
    breakpoint_ttl: str | None = None


def _step(session: str, k: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The reply of call k (text and two tool calls) and the two tool results that follow it."""
    calls = [(f"call_{session}_{k}_{j}", TOOLS[j]["name"]) for j in (0, 1)]
    reply = {
        "role": "assistant",
        "content": [{"type": "text", "text": f"Step {k}: I will look up order {1000 + k} and its shipment."}]
        + [{"type": "tool_call", "id": cid, "name": name, "arguments": {"id": f"O-{1000 + k}"}} for cid, name in calls],
    }
    results = [
        {
            "role": "tool",
            "content": [
                {
                    "type": "tool_result",
                    "tool_call_id": cid,
                    "content": json.dumps({"id": f"O-{1000 + k}", "status": "in transit", "eta": f"day {k + 2}"}),
                }
            ],
        }
        for cid, _ in calls
    ]
    return reply, results


def conversation(session: str, calls: int = 5, gap: float = 20.0) -> list[Call]:
    """A clean session: call k+1's messages are call k's messages, its reply and the tool results."""
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": f"Where is order {session}? It was due yesterday."}]}
    ]
    out = []
    for k in range(calls):
        reply, results = _step(session, k + 1)
        out.append(Call(T0 + k * gap, BASE_SYSTEM, copy.deepcopy(TOOLS), copy.deepcopy(messages), reply))
        messages = [*messages, reply, *results]
    return out


def records(session: str, calls: list[Call]) -> list[dict[str, Any]]:
    out = []
    for k, call in enumerate(calls):
        messages = copy.deepcopy(call.messages)
        system: Any = call.system
        if call.breakpoint_ttl:
            control = {"type": "ephemeral", **({"ttl": "1h"} if call.breakpoint_ttl == "1h" else {})}
            system = [{"type": "text", "text": call.system, "cache_control": control}]
            messages[-1]["content"][-1]["cache_control"] = control
        out.append(
            {
                "zumik": 1,
                "trace_id": f"{session}-{k + 1}",
                "timestamp": datetime.fromtimestamp(call.at, UTC).isoformat().replace("+00:00", "Z"),
                "provider": call.provider,
                "model": call.model,
                "tenant": "acme",
                "session_id": session,
                "tools": call.tools,
                "system": system,
                "messages": messages,
                **({"output": call.reply} if call.reply else {}),
            }
        )
    return out


# --- the plants: each changes one call of a clean session and says what must be found ---------------------------


@dataclass(frozen=True)
class Plant:
    cause: str
    at: int  # 1-based index of the call that breaks
    change: Callable[[list[Call]], None]
    whole_prefix_lost: bool = False  # idle gap and model change lose everything the parent's cache held
    detail: Callable[[dict[str, Any]], None] | None = None


def _idle(calls: list[Call]) -> None:
    for call in calls[2:]:
        call.at += 900  # past the openai pack's 600-second TTL


def _model(calls: list[Call]) -> None:
    for call in calls[2:]:
        call.model = "gpt-3.5-turbo"  # same tokenizer (cl100k_base) and prompt format: content is shared


def _system(old: str, new: str) -> Callable[[list[Call]], None]:
    def change(calls: list[Call]) -> None:
        for call in calls[2:]:
            assert old in call.system
            call.system = call.system.replace(old, new)

    return change


def _tools(edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> Callable[[list[Call]], None]:
    def change(calls: list[Call]) -> None:
        for call in calls[2:]:
            call.tools = edit(call.tools)

    return change


def _added(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    extra = {"name": "refund_order", "description": "Refund an order.", "parameters": {"type": "object"}}
    return [*tools, extra]


def _edited(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = copy.deepcopy(tools)
    out[1]["description"] = "Track a parcel with the carrier and return its scan events."
    return out


def _messages(at: int, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> Callable[[list[Call]], None]:
    """Apply the edit to the messages of call ``at`` and, so that they extend it, to every call after it."""

    def change(calls: list[Call]) -> None:
        for call in calls[at - 1 :]:
            call.messages = edit(call.messages)

    return change


def _truncate(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [messages[0], *messages[4:]]  # a sliding window drops the first step: its reply and two results


def _compact(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    summary = "Summary so far: the customer asked where an order is; it is in transit."
    return [{"role": "user", "content": [{"type": "text", "text": summary}]}, *messages[10:]]


def _rewrite_result(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = copy.deepcopy(messages)
    out[2]["content"][0]["content"] = "[result elided to save context]"
    return out


def _swap_results(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [messages[0], messages[1], messages[3], messages[2], *messages[4:]]


def _replace_history(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    story = " ".join(f"Detail {i}: the parcel left hub {i} on time and was scanned at the next one." for i in range(40))
    return [{"role": "user", "content": [{"type": "text", "text": "New question. " + story}]}]


def _span(section: str, old: str, new: str, volatile: bool, shape: str | None) -> Callable[[dict[str, Any]], None]:
    def check(detail: dict[str, Any]) -> None:
        span = detail[section]["span"]
        assert (span["old"], span["new"], span["volatile"], span["shape"]) == (old, new, volatile, shape)

    return check


def _tool_change(kind: str, **lists: list[str]) -> Callable[[dict[str, Any]], None]:
    def check(detail: dict[str, Any]) -> None:
        assert detail["tools"]["change"] == kind
        for key, value in lists.items():
            assert detail["tools"][key] == value

    return check


def _history(change: str) -> Callable[[dict[str, Any]], None]:
    def check(detail: dict[str, Any]) -> None:
        assert detail["history"]["change"] == change

    return check


TIME_OLD, TIME_NEW = "2026-06-09T09:00:00Z", "2026-06-09T09:20:11Z"

PLANTS = {
    "idle": Plant("idle_gap", 3, _idle, whole_prefix_lost=True),
    "model": Plant("model_changed", 3, _model, whole_prefix_lost=True),
    "clock": Plant(
        "system_changed",
        3,
        _system(TIME_OLD, TIME_NEW),
        detail=_span("system", TIME_OLD, TIME_NEW, True, "datetime"),
    ),
    "policy": Plant(
        "system_changed",
        3,
        _system("Answer briefly.", "Answer in full, with sources."),
        detail=_span("system", "briefly.", "in full, with sources.", False, None),
    ),
    "tool_added": Plant("tools_changed", 3, _tools(_added), detail=_tool_change("added", added=["refund_order"])),
    "tool_removed": Plant(
        "tools_changed", 3, _tools(lambda t: [t[0], *t[2:]]), detail=_tool_change("removed", removed=["get_shipment"])
    ),
    "tool_reordered": Plant(
        "tools_changed", 3, _tools(lambda t: [t[1], t[0], *t[2:]]), detail=_tool_change("reordered", reordered=True)
    ),
    "tool_edited": Plant("tools_changed", 3, _tools(_edited), detail=_tool_change("edited", edited=["get_shipment"])),
    "truncated": Plant("history_truncated", 4, _messages(4, _truncate), detail=_history("truncated")),
    "compacted": Plant("history_truncated", 4, _messages(4, _compact), detail=_history("compacted")),
    "rewritten": Plant("history_rewritten", 3, _messages(3, _rewrite_result), detail=_history("rewritten")),
    "reordered": Plant("content_reordered", 3, _messages(3, _swap_results)),
    "replaced": Plant("other", 3, _messages(3, _replace_history)),
}


def planted_traces() -> list[dict[str, Any]]:
    """Every plant in its own session, plus sessions that must show no break at all."""
    out = []
    for name, plant in PLANTS.items():
        calls = conversation(name)
        plant.change(calls)
        out += records(name, calls)
    out += records("clean", conversation("clean"))
    out += records("retry", _retry(conversation("retry")))
    out += records("fork", _fork())
    out += records("rewind", _rewind_unrecorded())
    out += records("nonce", _nonces(conversation("nonce")))
    anthropic = [_anthropic(c, "5m") for c in conversation("claude-5m", gap=400)]
    out += records("claude-5m", anthropic)
    out += records("claude-1h", [_anthropic(c, "1h") for c in conversation("claude-1h", gap=400)])
    return sorted(out, key=lambda r: r["timestamp"])


def _retry(calls: list[Call]) -> list[Call]:
    """Call 3 is sent twice (a regenerate): the second copy extends nothing, and loses nothing."""
    again = copy.deepcopy(calls[2])
    again.at += 5
    return [*calls[:3], again, *(_later(c, 5) for c in calls[3:])]


def _later(call: Call, seconds: float) -> Call:
    call.at += seconds
    return call


def _fork() -> list[Call]:
    """A chat: after call 3 the user rewinds to the end of call 1's reply and asks something else instead.

    Call 4 extends call 1's prompt plus reply: a branch whose parent is call 1, not a break.
    """

    def text(role: str, words: str) -> dict[str, Any]:
        return {"role": role, "content": [{"type": "text", "text": words}]}

    q1, r1 = text("user", "Where is order 77?"), text("assistant", "Order 77 is in transit and due tomorrow.")
    q2, r2 = text("user", "Can it be delivered to the office?"), text("assistant", "Yes, I have changed the address.")
    q3, r3 = text("user", "Thanks."), text("assistant", "You are welcome.")
    q2b, r4 = text("user", "Cancel it instead."), text("assistant", "I have cancelled order 77.")
    prompts = [([q1], r1), ([q1, r1, q2], r2), ([q1, r1, q2, r2, q3], r3), ([q1, r1, q2b], r4)]
    return [Call(T0 + 20 * k, BASE_SYSTEM, copy.deepcopy(TOOLS), m, r) for k, (m, r) in enumerate(prompts)]


def _rewind_unrecorded() -> list[Call]:
    """The same rewind, but the log lost call 1's reply: call 4 now departs from call 3 with a new last question."""
    calls = _fork()
    calls[0].reply = None
    return calls


NONCES = ("amber", "amber", "cobalt", "dune", "ember")


def _nonces(calls: list[Call]) -> list[Call]:
    for call, nonce in zip(calls, NONCES, strict=True):
        call.system = call.system.replace("Answer briefly.\n", f"Answer briefly.\nSession tag: {nonce}\n")
    return calls


def _anthropic(call: Call, ttl: str) -> Call:
    call.model, call.provider, call.breakpoint_ttl = "claude-sonnet-4-5", "anthropic", ttl
    return call


def mixed_lifetimes(session: str, idle: float = 25 * 60) -> list[dict[str, Any]]:
    """The usual Anthropic layout: tools and system prompt cached for an hour (a 1-hour breakpoint after the system
    prompt), the conversation so far for five minutes (a 5-minute breakpoint at its end); call 3 comes after
    ``idle`` seconds, when the hour still holds and the five minutes do not. The system prompt is long enough to
    cache on its own (Claude Sonnet's minimum is 1,024 tokens)."""
    calls = [_anthropic(c, "5m") for c in conversation(session)]
    for call in calls:
        call.system = BASE_SYSTEM + BASE_SYSTEM.replace("Rule", "Policy")
    for call in calls[2:]:
        call.at += idle
    out = records(session, calls)
    for r in out:
        r["system"][0]["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
    return out


def with_anthropic_usage(folder: Path, session: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records with the usage Anthropic would report. Claude's tokenizer is not public: the sizes are zumik's
    proxy counts (from a first ingest) made 12% larger. A call within five minutes of the previous one reads its
    whole prompt from the cache, a later one only the tools and system prompt (their breakpoint holds an hour);
    the rest is written."""
    trace = folder / "counting.jsonl"
    trace.write_text("".join(json.dumps(r) + "\n" for r in session))
    ingest([trace], folder / "counting")
    rows = (
        Dataset(folder / "counting")
        .connect()
        .execute("""
        SELECT trace_id, prompt_tokens_counted, max(b.end_token) FILTER (WHERE kind IN ('tool', 'system'))
        FROM requests JOIN request_blocks b USING (rid) JOIN blocks USING (block_id) GROUP BY ALL
    """)
    )
    counted = {trace_id: (prompt, head) for trace_id, prompt, head in rows.fetchall()}
    out, previous, last_at = [], 0, None
    for r in session:
        at = datetime.fromisoformat(r["timestamp"]).timestamp()
        prompt, head = counted[r["trace_id"]]
        total = round(prompt * 1.12)
        read = 0 if last_at is None else previous if at - last_at <= 300 else round(head * 1.12)
        usage = {
            "input_tokens": 3,
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": total - read - 3,
            "output_tokens": 40,
        }
        out.append({**r, "usage": usage})
        previous, last_at = total, at
    return out


# --- fixtures and the reference ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, Divergence]:
    folder = tmp_path_factory.mktemp("planted")
    trace = folder / "planted.jsonl"
    trace.write_text("".join(json.dumps(r) + "\n" for r in planted_traces()))
    summary = ingest([trace], folder / "data")
    assert summary.quarantined == 0
    dataset = Dataset(folder / "data")
    return dataset, compute_divergence(dataset)


def prompt_ids(dataset: Dataset, trace_id: str) -> list[int]:
    """The request's prompt as one list of token ids (its blocks' ids, in order)."""
    rows = dataset.connect().execute(
        """
        SELECT t.token_ids FROM requests r JOIN request_blocks b USING (rid) JOIN tokens t USING (block_id)
        WHERE r.trace_id = ? ORDER BY b.pos
        """,
        [trace_id],
    )
    return [i for (ids,) in rows.fetchall() for i in ids]


def first_difference(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def breaks_of(result: Divergence, session: str) -> list[Break]:
    return [b for b in result.breaks if b.session_id == session]


# --- tests --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PLANTS))
def test_each_planted_break_is_found_at_its_request_and_token_with_its_cause_and_tokens_lost(planted, name):
    dataset, result = planted
    plant = PLANTS[name]
    found = breaks_of(result, name)
    assert len(found) == 1, [b.to_json() for b in found]
    (b,) = found
    assert (b.index, b.parent_index, b.cause) == (plant.at, plant.at - 1, plant.cause)
    mine, theirs = prompt_ids(dataset, f"{name}-{plant.at}"), prompt_ids(dataset, f"{name}-{plant.at - 1}")
    reusable = min(len(mine), len(theirs))
    if plant.whole_prefix_lost:
        assert b.token == 0
        assert b.lost_tokens == reusable
        assert b.lost_by_cause == {plant.cause: reusable}
    else:
        shared = first_difference(mine, theirs)
        assert 0 < shared < len(theirs)
        assert b.token == b.diverges_at == shared
        assert b.lost_tokens == reusable - shared
        assert b.lost_by_cause == {plant.cause: reusable - shared}
    if plant.detail:
        plant.detail(b.detail)


def test_an_idle_gap_past_the_ttl_reports_the_gap_and_the_ttl(planted):
    _, result = planted
    (b,) = breaks_of(result, "idle")
    assert b.gap_seconds == 920.0
    assert b.detail["ttl_seconds"] == 600


def test_a_model_change_names_both_targets(planted):
    _, result = planted
    (b,) = breaks_of(result, "model")
    assert b.detail["target"] == {"from": "openai gpt-4", "to": "openai gpt-3.5-turbo"}


def test_sessions_without_a_planted_break_show_none(planted):
    _, result = planted
    for session in ("clean", "retry", "fork", "rewind", "claude-1h"):
        assert breaks_of(result, session) == [], session


def test_a_fork_is_a_branch_whose_parent_is_the_call_it_extends(planted):
    _, result = planted
    fork = next(s for s in result.sessions if s["session_id"] == "fork")
    assert (fork["requests"], fork["branches"], fork["breaks"]) == (4, 1, 0)


def test_an_anthropic_prefix_idle_past_five_minutes_breaks_unless_it_was_written_for_an_hour(planted):
    _, result = planted
    found = breaks_of(result, "claude-5m")
    assert [b.index for b in found] == [2, 3, 4, 5]
    assert {b.cause for b in found} == {"idle_gap"}
    assert {b.detail["ttl_seconds"] for b in found} == {300}


def test_a_span_that_takes_many_values_is_volatile_even_without_a_volatile_shape(planted):
    _, result = planted
    found = breaks_of(result, "nonce")
    assert [b.index for b in found] == [3, 4, 5]
    spans = [b.detail["system"]["span"] for b in found]
    assert [(s["old"], s["new"]) for s in spans] == [("amber", "cobalt"), ("cobalt", "dune"), ("dune", "ember")]
    assert all(s["volatile"] and s["shape"] is None and s["values"] == 4 for s in spans)


def test_an_edit_that_happens_once_is_not_called_volatile(planted):
    _, result = planted
    (b,) = breaks_of(result, "policy")
    span = b.detail["system"]["span"]
    assert not span["volatile"]
    assert span["values"] == 2


def test_tokens_lost_are_summed_per_cause_per_session_and_in_total(planted):
    _, result = planted
    by_cause: dict[str, int] = {}
    for b in result.breaks:
        for cause, tokens in b.lost_by_cause.items():
            by_cause[cause] = by_cause.get(cause, 0) + tokens
    assert {row["cause"]: row["tokens"] for row in result.totals["by_cause"]} == by_cause
    assert result.totals["lost_tokens"] == sum(by_cause.values()) == sum(s["lost_tokens"] for s in result.sessions)
    idle = next(s for s in result.sessions if s["session_id"] == "idle")
    assert idle["lost_by_cause"] == {"idle_gap": breaks_of(result, "idle")[0].lost_tokens}


def test_the_changing_clock_is_listed_among_the_volatile_spans_of_the_system_prompt(planted):
    _, result = planted
    clock = [s for s in result.volatile_spans if s["where"] == "system" and s["shape"] == "datetime"]
    assert clock and clock[0]["breaks"] >= 1
    assert {TIME_NEW} <= {s["example"] for s in clock}


def test_one_session_can_be_diagnosed_alone(planted):
    dataset, _ = planted
    alone = compute_divergence(dataset, "tool_added")
    assert [s["session_id"] for s in alone.sessions] == ["tool_added"]
    assert [b.cause for b in alone.breaks] == ["tools_changed"]


def test_the_divergence_command_prints_json_to_stdout_and_a_table_otherwise(planted):
    dataset, _ = planted
    runner = CliRunner()
    result = runner.invoke(app, ["divergence", "--data", str(dataset.root), "--session", "idle", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [b["cause"] for b in data["breaks"]] == ["idle_gap"]
    assert data["definitions"]["token"]
    table = runner.invoke(app, ["divergence", "--data", str(dataset.root)])
    assert table.exit_code == 0
    assert "tool definitions changed" in table.stdout and "Volatile spans" in table.stdout


def test_the_divergence_command_refuses_an_unknown_session(planted):
    dataset, _ = planted
    result = CliRunner().invoke(app, ["divergence", "--data", str(dataset.root), "--session", "nope"])
    assert result.exit_code == 1
    assert "no session 'nope'" in result.stderr and result.stdout == ""


@pytest.mark.realdata
def test_tau_bench_shares_one_system_prompt_and_no_volatile_span_is_reported_in_it(
    real_data: Path, tmp_path: Path
) -> None:
    ingest([real_data / "tau_bench_airline"], tmp_path / "data")
    result = compute_divergence(Dataset(tmp_path / "data"))
    assert result.totals["requests_compared"] > 2000
    assert not [s for s in result.volatile_spans if s["where"] == "system"]
    assert not [b for b in result.breaks if b.cause == "system_changed"]
    # the prompt carries a date and a time ("The current time is 2024-05-15 15:00:00 EST.") that never changes
    assert "2024-05-15 15:00:00" in _system_text(Dataset(tmp_path / "data"))
    checks = {f.check for f in check_dataset(Dataset(tmp_path / "data")).findings}
    assert not checks & {"anthropic.volatile_before_breakpoint", "prefix.stable_after_changing"}


def _system_text(dataset: Dataset) -> str:
    rows = dataset.connect().execute("SELECT DISTINCT text FROM blocks WHERE kind = 'system'").fetchall()
    assert len(rows) == 1
    return str(rows[0][0])


def test_a_report_with_prompt_text_shows_each_system_and_tool_edit_as_it_was_and_became(planted, tmp_path):
    import html
    import re

    dataset, result = planted
    cli = CliRunner()

    shown = cli.invoke(app, ["report", "--data", str(dataset.root), "-o", str(tmp_path / "t.html"), "--include-text"])
    hidden = cli.invoke(app, ["report", "--data", str(dataset.root), "-o", str(tmp_path / "n.html")])

    assert shown.exit_code == 0 and hidden.exit_code == 0, shown.stderr + hidden.stderr
    page = (tmp_path / "t.html").read_text()
    markup = re.search(r'<section id="samples">(.*?)</section>', page, re.S).group(1)
    section = html.unescape(re.sub(r"<[^>]+>", "", markup))
    edits = sorted(
        (b for b in result.breaks if b.cause in ("system_changed", "tools_changed") and "span" in str(b.detail)),
        key=lambda b: (-b.lost_tokens, b.trace_id),
    )
    assert len(edits) >= 3
    # every edit, biggest loss first, each with the changed text as it was and as it became
    assert [section.index(b.trace_id) for b in edits] == sorted(section.index(b.trace_id) for b in edits)
    assert f"Current time: {TIME_OLD}\n" in section and f"Current time: {TIME_NEW}\n" in section
    assert "\nAnswer briefly.\n" in section and "\nAnswer in full, with sources.\n" in section
    assert "tool get_shipment changed at character" in section
    assert "<mark>2026-06-09T09:20:11Z</mark>" in markup and "<mark>in full, with sources.</mark>" in markup
    assert "Answer in full" not in (tmp_path / "n.html").read_text()
    assert 'id="samples"' not in (tmp_path / "n.html").read_text()


def test_an_idle_gap_expires_only_what_five_minute_breakpoints_cover_and_loses_the_waterfalls_expired_tokens(
    tmp_path,
):
    trace = tmp_path / "mixed.jsonl"
    trace.write_text("".join(json.dumps(r) + "\n" for r in with_anthropic_usage(tmp_path, mixed_lifetimes("mixed"))))
    ingest([trace], tmp_path / "data")
    dataset = Dataset(tmp_path / "data")
    waterfall = compute_waterfall(dataset, WaterfallOptions(curves=False, capacities=()))

    (b,) = compute_divergence(dataset).breaks

    row = next(r for r in waterfall.per_request.to_table().to_pylist() if r["trace_id"] == "mixed-3")
    expired = row["same_key"] - row["warm"]
    head = (
        dataset.connect()
        .execute(
            "SELECT max(end_token) FROM requests r JOIN request_blocks rb USING (rid) JOIN blocks USING (block_id) "
            "WHERE r.trace_id = 'mixed-2' AND kind IN ('tool', 'system')"
        )
        .fetchone()[0]
    )
    # the hour kept the tools and the system prompt; the conversation after them expired
    assert (b.trace_id, b.parent_trace_id, b.cause) == ("mixed-3", "mixed-2", "idle_gap")
    assert 0 < b.token == head and b.diverges_at is None  # it extends its parent: nothing departed
    assert b.detail["ttl_seconds"] == 300
    assert row["warm"] > 0 and expired > 0
    assert b.lost_tokens == b.lost_by_cause["idle_gap"] == expired

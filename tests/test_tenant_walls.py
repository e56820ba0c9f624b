"""Tenants are walls in every command, and a name from the data cannot rewrite what is shown.

A generator writes two tenants whose agents use the very same session ids, with the same system prompt, turns
interleaved in time, each session edited now and then; a third tenant has a name and a session id full of bidi
overrides and terminal control characters. Then: `divergence` finds for each tenant exactly the breaks it finds on
that tenant's traffic alone (zero links from one tenant's request to another's); `waterfall --by session` keeps
one row per tenant's session; an exported Bailian trace chains no request to another tenant's; `simulate` keeps
each tenant's session affinity to itself; and the terminal and the report show the hostile names as escapes.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from test_cli_ingest import zumik

from zumik_cli.dataset.store import Dataset
from zumik_cli.diagnosis.divergence import compute_divergence
from zumik_cli.ingest.pipeline import ingest

TENANTS = ("acme", "globex")
HOSTILE_TENANT = "ev\u202eil\x1b[2J"
HOSTILE_SESSION = "s\u20661\x07"
RAW_UNSAFE = ("\u202e", "\u2066", "\x1b", "\x07")


def records(seed: int, tenants: tuple[str, ...] = TENANTS) -> list[dict[str, Any]]:
    """Sessions ``shared-0..2`` in each tenant, turns interleaved, the system prompt edited at random turns."""
    rng = random.Random(seed)
    out = []
    for tenant in tenants:
        for s in range(3):
            version = 0
            for turn in range(6):
                if turn and rng.random() < 0.3:
                    version += 1
                system = f"You are the billing agent, revision {version}. " + "Follow the ledger rules. " * 60
                out.append(
                    {
                        "zumik": 1,
                        "trace_id": f"{tenant}-{s}-{turn}",
                        "timestamp": 1_772_528_400 + 40 * turn + 7 * s + rng.random(),
                        "provider": "anthropic",
                        "model": "claude-sonnet-4-5",
                        "tenant": tenant,
                        "session_id": f"shared-{s}",
                        "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
                        "messages": [
                            {"role": "user" if m % 2 == 0 else "assistant", "content": f"turn {m} of session {s}"}
                            for m in range(2 * turn + 1)
                        ],
                        "usage": {"input_tokens": 900, "cache_read_input_tokens": 0, "output_tokens": 10},
                    }
                )
    return sorted(out, key=lambda r: r["timestamp"])


def dataset_of(folder: Path, rows: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True)
    (folder / "traffic.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ingest([folder / "traffic.jsonl"], folder / "data", format="zumik")
    return folder / "data"


def breaks_of(data: Path) -> set[tuple[Any, ...]]:
    found = compute_divergence(Dataset(data)).to_json()["breaks"]
    return {(b["trace_id"], b["parent_trace_id"], b["index"], b["cause"], b["lost_tokens"]) for b in found}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_divergence_finds_for_each_tenant_exactly_the_breaks_of_its_traffic_alone(seed: int, tmp_path: Path) -> None:
    rows = records(seed)
    both = dataset_of(tmp_path / "both", rows)
    alone = {t: breaks_of(dataset_of(tmp_path / t, [r for r in rows if r["tenant"] == t])) for t in TENANTS}

    together = breaks_of(both)
    result = compute_divergence(Dataset(both)).to_json()

    tenant_of = {r["trace_id"]: r["tenant"] for r in rows}
    assert [b for b in together if tenant_of[b[0]] != tenant_of[b[1]]] == []
    assert together == alone["acme"] | alone["globex"]
    assert sum(len(found) for found in alone.values()) > 0
    sessions = {(s["tenant"], s["session_id"]): s["requests"] for s in result["sessions"]}
    assert sessions == {(t, f"shared-{s}"): 6 for t in TENANTS for s in range(3)}


def test_waterfall_by_session_keeps_each_tenants_session_apart(tmp_path: Path) -> None:
    data = dataset_of(tmp_path / "both", records(3))

    result = zumik("waterfall", "--data", data, "--by", "session", "--json")

    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["breakdowns"]["session"]
    assert sorted((r["tenant"], r["session_id"], r["requests"]) for r in rows) == [
        (t, f"shared-{s}", 6) for t in TENANTS for s in range(3)
    ]
    assert len({r["key"] for r in rows}) == len(rows)


def test_an_exported_bailian_trace_never_chains_one_tenants_request_to_anothers(tmp_path: Path) -> None:
    rows = records(4)
    data = dataset_of(tmp_path / "both", rows)
    out = tmp_path / "trace.jsonl"

    result = zumik("export", "--data", data, "--to", "bailian", "--output", out, "--salt", "s")

    assert result.exit_code == 0, result.stderr
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(exported) == len(rows)
    tenant = [r["tenant"] for r in rows]  # the export keeps the dataset's time order
    linked = [(tenant[e["chat_id"]], tenant[e["parent_chat_id"]]) for e in exported if e["parent_chat_id"] >= 0]
    assert len(linked) == len(rows) - 2 * 3  # every turn but each session's first has a parent
    assert [pair for pair in linked if pair[0] != pair[1]] == []
    assert max(e["turn"] for e in exported) == 6


def test_simulate_keeps_each_tenants_session_affinity_to_its_own_session(tmp_path: Path) -> None:
    from release_workloads import cheap_target, fast_target, release, write_history

    from zumik_cli.routing.releases import load_history
    from zumik_cli.routing.simulate import simulate

    rows = records(5)
    for r in rows:
        r["alias"] = "chat"
    both = dataset_of(tmp_path / "both", rows)
    alone = dataset_of(tmp_path / "acme", [r for r in rows if r["tenant"] == "acme"])
    docs = [release("alr_2026_02_28_001", -8_000_000, [fast_target(), cheap_target()], policy="primary")]
    history = load_history(write_history(tmp_path / "releases.yaml", docs))

    def acme_inputs(data: Path) -> dict[str, Any]:
        simulate(data, history, ["cache_affinity"])
        con = Dataset(data).connect()
        return dict(
            con.execute(
                "SELECT r.trace_id, d.policy_inputs FROM decisions d JOIN requests r USING (rid) "
                "WHERE r.tenant = 'acme' AND d.policy = 'cache_affinity'"
            ).fetchall()
        )

    together, by_itself = acme_inputs(both), acme_inputs(alone)

    assert together == by_itself
    assert any(json.loads(v).get("session_target") for v in together.values())


def test_hostile_names_are_shown_as_escapes_in_the_terminal_and_the_report(tmp_path: Path) -> None:
    rows = records(6, ("acme",))
    for r in rows[:6]:
        r["tenant"], r["session_id"] = HOSTILE_TENANT, HOSTILE_SESSION
    data = dataset_of(tmp_path / "hostile", rows)

    shown = []
    for args in (["waterfall", "--by", "tenant", "--by", "session"], ["divergence"]):
        result = zumik(*args, "--data", data)
        assert result.exit_code == 0, result.stderr
        shown.append(result.stdout)
    report = tmp_path / "report.html"
    assert zumik("report", "--data", data, "--output", report, "--generated-at", "2026-06-12").exit_code == 0
    html = report.read_text()

    for text in [*shown, html]:
        assert [c for c in RAW_UNSAFE if c in text] == []
    assert "ev\\u202eil" in shown[0]  # a narrow table may cut the rest of the name short
    assert "\\u202e" in html

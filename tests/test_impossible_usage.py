"""Usage that contradicts itself, and times past the calendar, cannot bend a figure.

A generator writes sessions of calls with consistent usage in the Anthropic, OpenAI Chat and OpenAI Responses
shapes, and among them records whose usage cannot be true: more cached or cache-write tokens than the prompt
holds, both together above it, a total that is not prompt plus output; and records whose time, read at its UTC
offset, falls outside the years 1 to 9999. Every bad record is quarantined with its reason, every good one is
read, and the waterfall of the result has no rate above 100% and no negative saving.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from zumik_cli.analysis.waterfall import compute_waterfall
from zumik_cli.core.model import Usage
from zumik_cli.core.usage import contradiction, normalize_usage
from zumik_cli.dataset.store import Dataset
from zumik_cli.ingest.pipeline import ingest

SYSTEM = "You are a careful assistant for the billing team. " * 40


def usage_of(shape: str, prompt: int, cached: int, write: int, output: int, total: int | None = None) -> dict[str, Any]:
    """Usage as the provider family logs it (for Anthropic, ``prompt`` is the whole prompt, reads and writes in)."""
    if shape == "anthropic":
        return {
            "input_tokens": prompt - cached - write,
            "cache_read_input_tokens": cached,
            "cache_creation_input_tokens": write,
            "output_tokens": output,
        }
    if shape == "openai":
        return {
            "prompt_tokens": prompt,
            "completion_tokens": output,
            "total_tokens": prompt + output if total is None else total,
            "prompt_tokens_details": {"cached_tokens": cached},
        }
    return {
        "input_tokens": prompt,
        "output_tokens": output,
        "total_tokens": prompt + output if total is None else total,
        "input_tokens_details": {"cached_tokens": cached},
    }


# name -> (usage shape, the usage logged, the reason's words); each cannot be true
IMPOSSIBLE: dict[str, tuple[str, dict[str, Any], str]] = {
    "cached above the prompt": ("openai", usage_of("openai", 800, 5_000, 0, 20), "cached tokens in a prompt"),
    "responses cached above the input": (
        "responses",
        usage_of("responses", 800, 90_000, 0, 20),
        "cached tokens in a prompt",
    ),
    "written above the prompt": (
        "openai",
        {**usage_of("openai", 800, 0, 0, 20), "cache_creation_input_tokens": 4_000},
        "cache-write tokens in a prompt",
    ),
    "cached and written above the prompt": (
        "openai",
        {**usage_of("openai", 800, 600, 0, 20), "cache_creation_input_tokens": 600},
        "cached and 600 cache-write tokens",
    ),
    "chat total that does not add up": ("openai", usage_of("openai", 800, 400, 0, 20, total=300), "is not prompt"),
    "responses total that does not add up": (
        "responses",
        usage_of("responses", 800, 0, 0, 20, total=5_000),
        "is not prompt",
    ),
}
BAD_TIMES = ["9999-12-31T23:00:00-05:00", "0001-01-01T00:30:00+01:00", "9999-12-31T20:00:00-04:30"]


def record(trace: str, session: str, turn: int, when: Any, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "zumik": 1,
        "trace_id": trace,
        "timestamp": when,
        "provider": "anthropic" if "cache_read_input_tokens" in usage else "openai",
        "model": "claude-sonnet-4-5" if "cache_read_input_tokens" in usage else "gpt-4o",
        "session_id": session,
        "system": [{"type": "text", "text": SYSTEM}],
        "messages": [{"role": "user", "content": f"Question {q}"} for q in range(turn + 1)],
        "usage": usage,
    }


def traffic(path: Path, seed: int) -> tuple[int, dict[str, str]]:
    """Good sessions with bad records mixed in at random places: (good records, bad trace id -> reason words)."""
    rng = random.Random(seed)
    lines, good, bad = [], 0, {}
    for s in range(6):
        shape = ("anthropic", "openai", "responses")[s % 3]
        for turn in range(5):
            prompt = 900 + 40 * turn
            cached = rng.randint(0, prompt // 2)
            write = 0 if shape != "anthropic" else rng.randint(0, prompt - cached)
            when = 1_772_528_400 + 600 * s + 30 * turn
            lines.append(record(f"ok-{s}-{turn}", f"s{s}", turn, when, usage_of(shape, prompt, cached, write, 15)))
            good += 1
    for name, (_, usage, words) in IMPOSSIBLE.items():
        trace = f"bad-{name.replace(' ', '-')}"
        lines.insert(rng.randrange(len(lines) + 1), record(trace, "s0", 1, 1_772_528_430, usage))
        bad[trace] = words
    for n, when in enumerate(BAD_TIMES):
        trace = f"bad-time-{n}"
        lines.insert(rng.randrange(len(lines) + 1), record(trace, "s1", 1, when, usage_of("openai", 900, 0, 0, 9)))
        bad[trace] = "unreadable time"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return good, bad


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_impossible_record_is_quarantined_with_its_reason_and_every_good_one_is_read(
    seed: int, tmp_path: Path
) -> None:
    good, bad = traffic(tmp_path / "traffic.jsonl", seed)

    summary = ingest([tmp_path / "traffic.jsonl"], tmp_path / "data", format="zumik")

    assert summary.requests == good
    assert summary.quarantined == len(bad)
    lines = (tmp_path / "traffic.jsonl").read_text().splitlines()
    reasons = {
        json.loads(lines[e["line"] - 1])["trace_id"]: e["reason"]
        for e in Dataset(tmp_path / "data").quarantine_entries()
    }
    assert sorted(reasons) == sorted(bad)
    for trace, words in bad.items():
        assert words in reasons[trace], (trace, reasons[trace])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_rate_exceeds_one_hundred_percent_and_no_saving_is_negative(seed: int, tmp_path: Path) -> None:
    traffic(tmp_path / "traffic.jsonl", seed)
    ingest([tmp_path / "traffic.jsonl"], tmp_path / "data", format="zumik")

    summary = compute_waterfall(Dataset(tmp_path / "data")).summary

    for stage in ("eligible", "candidate", "realized", "missed"):
        rate = summary[stage]["rate"]
        assert rate is None or 0 <= rate <= 1, (stage, rate)
    for name, value in summary["request_weighted"].items():
        assert value is None or 0 <= value <= 1, name
    for name in ("realized_savings", "missed_savings", "billed", "without_cache"):
        value = summary["money"][name]
        assert value is None or value >= 0, (name, value)


@pytest.mark.parametrize(("name", "case"), list(IMPOSSIBLE.items()))
def test_each_contradiction_is_named_by_the_one_usage_check(name: str, case: tuple[str, dict[str, Any], str]) -> None:
    _, usage, words = case

    assert words in contradiction(normalize_usage(usage)), name


def test_consistent_usage_of_every_shape_has_no_contradiction() -> None:
    rng = random.Random(7)
    for _ in range(300):
        prompt = rng.randint(0, 200_000)
        cached = rng.randint(0, prompt)
        write = rng.randint(0, prompt - cached)
        output = rng.randint(0, 5_000)
        for shape in ("anthropic", "openai", "responses"):
            logged = usage_of(shape, prompt, cached, 0 if shape != "anthropic" else write, output)
            assert contradiction(normalize_usage(logged)) == "", (shape, logged)
    assert contradiction(Usage(prompt_tokens=None, cached_tokens=10)) == ""

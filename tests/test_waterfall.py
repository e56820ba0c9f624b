"""The reuse waterfall, proved on traces built by hand: real JSONL, real ingest, real Parquet and DuckDB.

Every trace is tokenized by a word-level tokenizer built here (one word, one token; the template markup of
``identity.render`` is split off as its own special tokens), so each expected figure is counted on the fingers:

- OpenAI-shaped prompts (providers openai, vllm, local): each artifact is ``<|im_start|> ROLE words <|im_end|>``,
  that is ``words + 3`` tokens.
- Anthropic-shaped prompts: a system part is its words; a message part is ``Human: words`` (``words + 1``).

A small reference implementation over plain token lists (``Reference``) cross-checks the SQL on random traces.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, pre_tokenizers

from zumik_cli.analysis import capacity, levels
from zumik_cli.analysis.waterfall import Waterfall, WaterfallOptions, compute_waterfall
from zumik_cli.core.errors import ZumikError
from zumik_cli.dataset.store import Dataset
from zumik_cli.ingest.pipeline import ingest

VOCAB_SIZE = 4000
MARKUP = ("<|im_start|>", "<|im_end|>")
SPEAKERS = ("system", "user", "assistant", "tool", "tools", "Human:", "Assistant:")
T0 = 1_700_000_000.0  # unix seconds; every timestamp below is an offset from it
NO_CURVES = {"curves": False}  # the content-trace capacity curve is not what these tests are about


# --- building traces --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tokenizer_spec(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``hf:`` spec of a word-level tokenizer: w0 .. w3999, the speaker words and the chat markup."""
    vocab = {"[UNK]": 0}
    for word in (*SPEAKERS, *(f"w{i}" for i in range(VOCAB_SIZE))):
        vocab[word] = len(vocab)
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens(list(MARKUP))
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.json"
    tokenizer.save(str(path))
    return f"hf:{path}"


def words(start: int, count: int) -> str:
    """``count`` distinct words from ``w{start}`` on: exactly ``count`` tokens."""
    return " ".join(f"w{i}" for i in range(start, start + count))


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def part(text: str, ttl: str | None = None) -> dict[str, Any]:
    """A text content part, with a cache breakpoint when ``ttl`` is "5m" or "1h"."""
    out: dict[str, Any] = {"type": "text", "text": text}
    if ttl:
        out["cache_control"] = {"type": "ephemeral", **({"ttl": "1h"} if ttl == "1h" else {})}
    return out


def record(
    trace_id: str,
    at: float | None,
    *,
    system: Any = None,
    messages: Sequence[dict[str, Any]] = (),
    provider: str = "local",
    model: str = "m1",
    tenant: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {"zumik": 1, "trace_id": trace_id, "provider": provider, "model": model}
    if at is not None:
        out["timestamp"] = T0 + at
    if system is not None:
        out["system"] = system
    out["messages"] = list(messages)
    if tenant is not None:
        out["tenant"] = tenant
    out.update(extra)
    return out


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def lru_blocks(folder: Path) -> dict[str, Any]:
    """Options for the vLLM pack's blocks under the reference LRU over the dataset's own blocks (eviction ``lru``):
    the shipped vLLM pack follows vLLM's block pool instead (``block_pool``, tested against the engine)."""
    pack = json.loads(resources.files("zumik_cli.rules.data").joinpath("vllm.json").read_text())
    pack.update(name="vllm-lru", eviction="lru")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "vllm-lru.json"
    path.write_text(json.dumps(pack))
    return {"rules": "vllm-lru", "rules_files": (str(path),)}


def run(folder: Path, tokenizer_spec: str, records: Sequence[dict[str, Any]], **options: Any) -> Waterfall:
    """Write the records as one JSONL file, ingest it into a fresh dataset and compute the waterfall."""
    folder.mkdir(parents=True, exist_ok=True)
    trace = write_jsonl(folder / "trace.jsonl", records)
    ingest([trace], folder / "data", tokenizer=tokenizer_spec)
    return compute_waterfall(Dataset(folder / "data"), WaterfallOptions(**{**NO_CURVES, **options}))


def rows(waterfall: Waterfall) -> dict[str, dict[str, Any]]:
    return {r["trace_id"]: r for r in waterfall.per_request.to_table().to_pylist()}


def causes(waterfall: Waterfall, stage: str = "eligible->candidate") -> dict[str, int]:
    return {c["cause"]: c["tokens"] for c in waterfall.summary["causes"] if c["stage"] == stage}


def stages(row: dict[str, Any]) -> tuple[int, ...]:
    """(total, eligible, same_target, same_key, warm, above_minimum, granular, candidate) of one request."""
    names = ("total", "eligible", "same_target", "same_key", "warm", "above_minimum", "granular", "candidate")
    return tuple(row[n] for n in names)


# --- eligible: token-exact prefix against any earlier request ----------------------------------------------


def test_eligible_is_the_longest_token_exact_prefix_shared_with_any_earlier_request(tmp_path, tokenizer_spec):
    system = words(0, 10)  # 13 tokens
    records = [
        record("a", 0, system=system, messages=[user(words(100, 5))]),  # 13 + 8 = 21
        record("b", 10, system=system, messages=[user(words(100, 3) + " w500 w501")]),  # shares 13 + 2 + 3
        record("c", 20, system=system, messages=[user(words(200, 4))]),  # shares 13 + <|im_start|> user
        record("d", 30, system=words(50, 10), messages=[user(words(100, 5))]),  # shares <|im_start|> system
        # shares 19 with a, 18 with b, 15 with c: the longest wins, whichever request it was
        record("e", 40, system=system, messages=[user(words(100, 4) + " w900")]),
    ]

    w = run(tmp_path, tokenizer_spec, records)

    got = {tid: (r["total"], r["eligible"]) for tid, r in rows(w).items()}
    assert got == {"a": (21, 0), "b": (21, 18), "c": (20, 15), "d": (21, 2), "e": (21, 19)}
    assert w.summary["eligible"]["tokens"] == 18 + 15 + 2 + 19
    assert w.summary["total_input_tokens"]["tokens"] == 21 + 21 + 20 + 21 + 21


@pytest.mark.parametrize("shared_words", [0, 1, 6])
def test_a_last_message_that_shares_its_first_words_counts_them_inside_the_first_differing_block(
    tmp_path, tokenizer_spec, shared_words
):
    system = words(0, 20)  # 23 tokens
    first = words(300, shared_words) + " w1000 w1001"
    second = words(300, shared_words) + " w2000"
    records = [
        record("a", 0, system=system, messages=[user(words(100, 3)), assistant(words(200, 2)), user(first)]),
        record("b", 5, system=system, messages=[user(words(100, 3)), assistant(words(200, 2)), user(second)]),
    ]

    w = run(tmp_path, tokenizer_spec, records)

    b = rows(w)["b"]
    # whole blocks: system 23 + user 6 + assistant 5; then <|im_start|> user and the shared words
    assert b["eligible"] == 23 + 6 + 5 + 2 + shared_words
    assert b["total"] == 23 + 6 + 5 + shared_words + 1 + 3


def test_eligible_ignores_model_tenant_and_time_gap(tmp_path, tokenizer_spec):
    prompt = {"system": words(0, 30), "messages": [user(words(100, 7))]}
    records = [
        record("a", 0, model="m1", tenant="t1", **prompt),
        record("b", 10 * 86_400, model="m2", tenant="t2", provider="vllm", **prompt),
    ]

    w = run(tmp_path, tokenizer_spec, records)

    b = rows(w)["b"]
    assert b["eligible"] == b["total"] == 33 + 10
    assert b["candidate"] == 0


def test_the_first_request_has_nothing_to_reuse(tmp_path, tokenizer_spec):
    w = run(tmp_path, tokenizer_spec, [record("a", 0, system=words(0, 5), messages=[user(words(10, 5))])])

    assert stages(rows(w)["a"]) == (16, 0, 0, 0, 0, 0, 0, 0)
    assert w.summary["eligible"]["tokens"] == 0 and w.summary["candidate"]["tokens"] == 0


def test_an_empty_dataset_is_an_error_that_says_what_to_do(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "manifest.json").write_text(json.dumps({"schema_version": 1, "parts": {}}))

    with pytest.raises(ZumikError, match="zumik ingest"):
        compute_waterfall(Dataset(tmp_path / "data"))


# --- eligible -> candidate: isolation, model, TTL, minimum, granularity, breakpoints, capacity ------------------


def test_the_same_prompt_in_another_tenant_is_never_candidate_and_shows_as_cross_tenant(tmp_path, tokenizer_spec):
    prompt = {"system": words(0, 30), "messages": [user(words(100, 7))]}  # 43 tokens
    records = [
        record("a", 0, tenant="acme", **prompt),
        record("b", 10, tenant="globex", **prompt),
        record("c", 20, tenant="acme", **prompt),
    ]

    w = run(tmp_path, tokenizer_spec, records, rules="ideal")

    r = rows(w)
    assert stages(r["b"]) == (43, 43, 43, 0, 0, 0, 0, 0)
    assert stages(r["c"]) == (43,) * 8
    assert causes(w)["other_tenant"] == 43
    assert w.summary["cross_tenant_opportunity"]["tokens"] == 43
    assert w.summary["candidate"]["tokens"] == 43


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"model": "m1"}, {"model": "m2"}),
        ({"provider": "local"}, {"provider": "local2"}),
        ({"model_revision": "r1"}, {"model_revision": "r2"}),
    ],
)
def test_the_same_prompt_on_another_model_or_target_is_cause_other_model(tmp_path, tokenizer_spec, first, second):
    prompt = {"system": words(0, 30), "messages": [user(words(100, 7))]}
    records = [record("a", 0, **{**prompt, **first}), record("b", 10, **{**prompt, **second})]

    w = run(tmp_path, tokenizer_spec, records, rules="ideal")

    assert stages(rows(w)["b"]) == (43, 43, 0, 0, 0, 0, 0, 0)
    assert causes(w)["other_model"] == 43
    assert w.summary["cross_tenant_opportunity"]["tokens"] == 0


# Anthropic: a 1,100-token system prompt with a breakpoint, then a one-message conversation.
SONNET = "claude-sonnet-4-5"  # minimum 1,024 tokens, TTL 300 s (anthropic pack)


def anthropic_turn(trace_id: str, at: float, message: str, ttl: str = "5m", **fields: Any) -> dict[str, Any]:
    return record(
        trace_id,
        at,
        provider="anthropic",
        model=SONNET,
        system=[part(words(0, 1100), ttl)],
        messages=[user(message)],
        **fields,
    )


@pytest.mark.parametrize(("gap", "warm"), [(1, True), (300, True), (301, False), (5000, False)])
def test_anthropic_prefixes_expire_after_300_seconds(tmp_path, tokenizer_spec, gap, warm):
    records = [anthropic_turn("a", 0, words(1500, 2)), anthropic_turn("b", gap, words(1600, 1))]

    w = run(tmp_path, tokenizer_spec, records)

    b = rows(w)["b"]
    assert b["pack"] == "anthropic"
    # eligible: the system prompt and the shared "Human:" token of the next block
    assert b["eligible"] == b["same_key"] == 1101
    if warm:
        # readable only at the breakpoint that ends the system prompt
        assert (b["warm"], b["above_minimum"], b["granular"], b["candidate"]) == (1101, 1101, 1100, 1100)
        assert causes(w)["expired"] == 0 and causes(w)["granularity"] == 1
    else:
        assert (b["warm"], b["candidate"]) == (0, 0)
        assert causes(w)["expired"] == 1101


def test_every_use_refreshes_the_ttl_so_a_chain_200_seconds_apart_stays_warm(tmp_path, tokenizer_spec):
    records = [anthropic_turn(f"r{i}", 200 * i, words(1500 + 10 * i, 2)) for i in range(6)]  # 0 .. 1000 s

    w = run(tmp_path, tokenizer_spec, records)

    assert [r["candidate"] for r in w.per_request.to_table().to_pylist()] == [0, 1100, 1100, 1100, 1100, 1100]
    assert causes(w)["expired"] == 0


def test_a_use_by_another_tenant_does_not_refresh_the_ttl(tmp_path, tokenizer_spec):
    records = [
        anthropic_turn("a", 0, words(1500, 2), tenant="acme"),
        anthropic_turn("b", 200, words(1510, 2), tenant="globex"),
        anthropic_turn("c", 400, words(1520, 2), tenant="acme"),
    ]

    w = run(tmp_path, tokenizer_spec, records)

    r = rows(w)
    assert (r["b"]["same_key"], r["b"]["candidate"]) == (0, 0)
    assert (r["c"]["same_key"], r["c"]["warm"], r["c"]["candidate"]) == (1101, 0, 0)
    assert causes(w)["other_tenant"] == 1101 and causes(w)["expired"] == 1101


@pytest.mark.parametrize(
    ("gap", "options", "candidate"),
    [
        (301, {"ttl_seconds": 600}, 1100),
        (200, {"ttl_seconds": 100}, 0),
        (10 * 86_400, {"ttl_none": True}, 1100),
        (10 * 86_400, {"ttl_seconds": 60, "ttl_none": True}, 1100),
    ],
)
def test_ttl_options_override_the_pack(tmp_path, tokenizer_spec, gap, options, candidate):
    records = [anthropic_turn("a", 0, words(1500, 2)), anthropic_turn("b", gap, words(1600, 1))]

    w = run(tmp_path, tokenizer_spec, records, **options)

    assert rows(w)["b"]["candidate"] == candidate
    assert w.summary["options"]["ttl_seconds"] == options.get("ttl_seconds")
    assert w.summary["options"]["ttl_none"] == options.get("ttl_none", False)
    assert w.summary["options"]["ttl"] == ("none" if options.get("ttl_none") else options["ttl_seconds"])
    assert w.summary["options"]["what_if"] is True


@pytest.mark.parametrize(
    ("first_ttl", "second_ttl", "gap", "candidate"),
    [
        ("1h", "1h", 3600, 1100),
        ("1h", "1h", 3601, 0),
        # the entry lives as long as the request that wrote (or last refreshed) it asked for
        ("1h", "5m", 1000, 1100),
        ("5m", "1h", 1000, 0),
    ],
)
def test_one_hour_breakpoints_keep_what_they_wrote_for_an_hour(
    tmp_path, tokenizer_spec, first_ttl, second_ttl, gap, candidate
):
    records = [
        anthropic_turn("a", 0, words(1500, 2), ttl=first_ttl),
        anthropic_turn("b", gap, words(1600, 1), ttl=second_ttl),
    ]

    w = run(tmp_path, tokenizer_spec, records)

    assert rows(w)["b"]["candidate"] == candidate


def openai_pair(system_words: int) -> list[dict[str, Any]]:
    system = words(0, system_words)  # system_words + 3 tokens
    return [
        record("a", 0, provider="openai", model="gpt-4o", system=system, messages=[user(words(3000, 4))]),
        record("b", 30, provider="openai", model="gpt-4o", system=system, messages=[user(words(3100, 4))]),
    ]


@pytest.mark.parametrize(
    ("system_words", "shared", "candidate", "below_minimum", "granularity"),
    [
        (1000, 1005, 0, 1005, 0),  # under the 1,024-token minimum
        (1018, 1023, 0, 1023, 0),
        (1019, 1024, 1024, 0, 0),  # exactly the minimum
        (1146, 1151, 1024, 0, 127),  # then 128-token increments
        (1147, 1152, 1152, 0, 0),
        (1195, 1200, 1152, 0, 48),
    ],
)
def test_openai_needs_1024_tokens_then_counts_in_128_token_increments(
    tmp_path, tokenizer_spec, system_words, shared, candidate, below_minimum, granularity
):
    w = run(tmp_path, tokenizer_spec, openai_pair(system_words))

    b = rows(w)["b"]
    assert b["pack"] == "openai"
    # the system block, then <|im_start|> user of the differing message
    assert (b["eligible"], b["warm"], b["candidate"]) == (shared, shared, candidate)
    assert causes(w)["below_minimum"] == below_minimum
    assert causes(w)["granularity"] == granularity


def vllm_request(trace_id: str, at: float, message: str) -> dict[str, Any]:
    # a 40-token system prompt
    return record(trace_id, at, provider="vllm", model="qwen", system=words(0, 37), messages=[user(message)])


def test_vllm_reuses_whole_16_token_blocks_and_always_recomputes_the_last_token(tmp_path, tokenizer_spec):
    records = [
        vllm_request("a", 0, words(100, 5)),  # 40 + 8 = 48 tokens, three whole blocks
        vllm_request("full_multiple", 1, words(100, 5)),  # fully cached, 48 tokens: one block less
        vllm_request("partial", 2, words(100, 5) + " w7"),  # 49 tokens, shares 47 -> two blocks
        vllm_request("full_odd", 3, words(100, 5) + " w7"),  # fully cached, 49 tokens: last token recomputed
        vllm_request("short", 4, words(100, 1)),  # 44 tokens, shares 43 -> two blocks
    ]

    w = run(tmp_path, tokenizer_spec, records)

    got = {tid: (r["total"], r["eligible"], r["candidate"]) for tid, r in rows(w).items()}
    assert got == {
        "a": (48, 0, 0),
        "full_multiple": (48, 48, 32),
        "partial": (49, 47, 32),
        "full_odd": (49, 49, 48),
        "short": (44, 43, 32),
    }
    assert causes(w)["granularity"] == 16 + 15 + 1 + 11


def breakpoint_request(trace_id: str, at: float, n_parts: int, marks: Iterable[int]) -> dict[str, Any]:
    """A 1,100-token system prompt, then one user message of ``n_parts`` one-word parts (2 tokens each).

    Part ``i`` (1-based) sits at block position ``i``; ``marks`` are the positions that carry a breakpoint.
    """
    marked = set(marks)
    content = [part(f"w{1200 + i}", "5m" if i in marked else None) for i in range(1, n_parts + 1)]
    return record(trace_id, at, provider="anthropic", model=SONNET, system=words(0, 1100), messages=[user(content)])


@pytest.mark.parametrize(
    ("written", "read_at", "candidate"),
    [
        ([5], [24], 1100 + 2 * 5),  # 19 blocks back from the breakpoint: found
        ([5], [25], 0),  # 20 blocks back: out of the look-back window
        ([5], [31], 0),
        ([30], [31], 1100 + 2 * 30),
        ([10], [5], 0),  # nothing was written at or before the reader's breakpoint
        ([5, 20], [31], 1100 + 2 * 20),  # the longest written prefix within reach
        ([5, 20], [8, 31], 1100 + 2 * 20),
        ([5, 12], [8, 31], 1100 + 2 * 12),  # 31 - 12 = 19 blocks back
    ],
)
def test_anthropic_reads_a_prefix_only_where_an_earlier_request_wrote_a_breakpoint_within_20_blocks(
    tmp_path, tokenizer_spec, written, read_at, candidate
):
    records = [breakpoint_request("a", 0, 30, written), breakpoint_request("b", 10, 31, read_at)]

    w = run(tmp_path, tokenizer_spec, records)

    b = rows(w)["b"]
    # 31 shared blocks: the system prompt and 30 parts (a had no 32nd block to share part of)
    assert (b["eligible"], b["above_minimum"]) == (1160, 1160)
    assert b["candidate"] == candidate
    assert causes(w)["granularity"] == 1160 - candidate


def test_anthropic_requests_without_recorded_breakpoints_cache_at_the_end_of_the_prompt(tmp_path, tokenizer_spec):
    records = [
        breakpoint_request("a", 0, 10, []),
        breakpoint_request("b", 10, 12, []),  # reads where a's prompt ended
        breakpoint_request("c", 20, 12, []),  # the same prompt as b: reads all of it
    ]

    w = run(tmp_path, tokenizer_spec, records)

    r = rows(w)
    assert (r["b"]["eligible"], r["b"]["candidate"]) == (1120, 1120)
    assert (r["c"]["eligible"], r["c"]["candidate"]) == (1124, 1124)


def test_an_anthropic_breakpoint_below_the_minimum_caches_nothing(tmp_path, tokenizer_spec):
    # a writes its only breakpoint after 500 tokens: too short to be cached at all
    system = [part(words(0, 500), "5m")]
    history = [user(words(600, 700)), assistant(words(1400, 10))]
    records = [
        record("a", 0, provider="anthropic", model=SONNET, system=system, messages=history),
        record(
            "b", 10, provider="anthropic", model=SONNET, system=system, messages=[*history, user([part("w9", "5m")])]
        ),
    ]

    w = run(tmp_path, tokenizer_spec, records)

    b = rows(w)["b"]
    assert b["above_minimum"] == 500 + 701 + 11
    assert b["candidate"] == 0


def test_the_model_sets_the_anthropic_minimum(tmp_path, tokenizer_spec):
    # claude-opus-4-5 needs 4,096 tokens: the 1,100-token system prompt is below it
    records = [
        record(
            "a",
            0,
            provider="anthropic",
            model="claude-opus-4-5",
            system=[part(words(0, 1100), "5m")],
            messages=[user("w3000")],
        ),
        record(
            "b",
            9,
            provider="anthropic",
            model="claude-opus-4-5",
            system=[part(words(0, 1100), "5m")],
            messages=[user("w3001")],
        ),
    ]

    w = run(tmp_path, tokenizer_spec, records)

    assert rows(w)["b"]["candidate"] == 0
    assert causes(w)["below_minimum"] == 1101


def mooncake(path: Path, requests: Sequence[tuple[list[int], int]]) -> Path:
    """A Mooncake-style hash-id trace: (hash ids, input length) a request, one second apart."""
    return write_jsonl(
        path,
        (
            {"timestamp": 1000 * i, "input_length": length, "output_length": 1, "hash_ids": ids}
            for i, (ids, length) in enumerate(requests)
        ),
    )


def hashid_waterfall(tmp_path: Path, requests: Sequence[tuple[list[int], int]], **options: Any) -> list[int]:
    trace = mooncake(tmp_path / "mooncake.jsonl", requests)
    ingest([trace], tmp_path / "data")
    w = compute_waterfall(Dataset(tmp_path / "data"), WaterfallOptions(rules="ideal", **options))
    return [r["candidate"] for r in w.per_request.to_table().to_pylist()]


@pytest.mark.parametrize("sweep_blocks", [2**25, 300])
def test_blocks_spilled_to_files_give_the_same_waterfall_curve_and_bounded_hits(tmp_path, monkeypatch, sweep_blocks):
    rng = random.Random(3)
    requests = []
    for _ in range(300):
        ids = [rng.randrange(4) * 100 + j for j in range(rng.randrange(1, 5))] + rng.sample(range(1000, 1400), 3)
        requests.append((ids, 512 * len(ids) - rng.randrange(400)))
    trace = mooncake(tmp_path / "mooncake.jsonl", requests)
    ingest([trace], tmp_path / "data")
    options = WaterfallOptions(rules="ideal", capacity_tokens=4096, capacities=(1024, 4096, 65_536, None))
    monkeypatch.setattr(levels, "SWEEP_BLOCKS", sweep_blocks)
    held = compute_waterfall(Dataset(tmp_path / "data"), options)
    monkeypatch.setattr(levels, "SPILL_BLOCKS", 10)
    spilled = compute_waterfall(Dataset(tmp_path / "data"), options)

    assert held.summary["capacity_curve"][0]["rate"] < held.summary["capacity_curve"][-1]["rate"]
    held_rows = held.per_request.to_table()
    assert 0 < sum(r["candidate"] for r in held_rows.to_pylist()) < held.summary["total_input_tokens"]["tokens"]
    assert json.dumps(spilled.summary, sort_keys=True) == json.dumps(held.summary, sort_keys=True)
    assert spilled.per_request.to_table().equals(held_rows)


@pytest.mark.parametrize(
    ("capacity_tokens", "expected"),
    [
        (1024, [0, 0, 0]),  # two blocks: b's blocks push a's out
        (1535, [0, 0, 0]),  # capacity counts whole 512-token blocks
        (2048, [0, 0, 1000]),
        (None, [0, 0, 1000]),
    ],
)
def test_a_bounded_cache_evicts_the_least_recently_used_prefix(tmp_path, capacity_tokens, expected):
    requests = [([1, 2], 1024), ([3, 4], 1024), ([1, 2], 1000)]  # c's last block holds 488 tokens

    assert hashid_waterfall(tmp_path, requests, capacity_tokens=capacity_tokens) == expected


def test_eviction_follows_recency_and_is_reported_as_its_own_cause(tmp_path):
    # a warms 1 and 2; b touches 1 again and adds 3; d adds 4 and evicts the least recently used: 2
    requests = [([1, 2], 1024), ([1, 3], 1024), ([4], 512), ([1, 2], 1024)]
    trace = mooncake(tmp_path / "mooncake.jsonl", requests)
    ingest([trace], tmp_path / "data")

    w = compute_waterfall(Dataset(tmp_path / "data"), WaterfallOptions(rules="ideal", capacity_tokens=1536))

    assert [(r["eligible"], r["candidate"]) for r in w.per_request.to_table().to_pylist()] == [
        (0, 0),
        (512, 512),
        (0, 0),
        (1024, 512),
    ]
    assert causes(w)["evicted"] == 512
    assert w.summary["options"]["capacity_tokens"] == 1536
    curve = {p["capacity_tokens"]: p["rate"] for p in w.summary["capacity_curve"]}
    assert curve[None] == round((512 + 1024) / 3584, 6)


@pytest.mark.skipif(not hasattr(capacity, "request_hits"), reason="capacity.request_hits is not there yet")
def test_a_bounded_cache_evicts_old_content_prefixes_too(tmp_path, tokenizer_spec):
    records = [
        vllm_request("a", 0, words(100, 5)),  # 48 tokens
        record("b", 1, provider="vllm", model="qwen", system=words(500, 37), messages=[user(words(600, 5))]),
        vllm_request("c", 2, words(200, 5)),  # shares a's 40-token system prompt: 32 tokens in whole blocks
    ]

    small = run(tmp_path / "small", tokenizer_spec, records, capacity_tokens=60, **lru_blocks(tmp_path))
    large = run(tmp_path / "large", tokenizer_spec, records, capacity_tokens=10_000, **lru_blocks(tmp_path))

    assert rows(small)["c"]["candidate"] == 0
    assert causes(small)["evicted"] == 32
    assert rows(large)["c"]["candidate"] == 32


def test_a_cache_large_enough_for_everything_evicts_nothing(tmp_path, tokenizer_spec):
    system = words(0, 10)
    records = [
        record("a", 0, system=system, messages=[user(words(100, 5))]),
        record("b", 1, system=system, messages=[user(words(100, 3) + " w900")]),  # 13 + 2 + 3 inside a block
    ]

    bounded = run(tmp_path / "bounded", tokenizer_spec, records, rules="ideal", capacity_tokens=10**9)
    unbounded = run(tmp_path / "unbounded", tokenizer_spec, records, rules="ideal")

    assert rows(bounded)["b"]["candidate"] == rows(unbounded)["b"]["candidate"] == 18
    assert causes(bounded)["evicted"] == 0


def test_what_a_bounded_cache_keeps_is_still_rounded_to_whole_blocks(tmp_path, tokenizer_spec):
    records = [
        vllm_request("a", 0, words(100, 27)),  # system 40 + message 30 tokens
        vllm_request("b", 1, words(200, 27)),  # touches the system prompt again, then its own message
        # shares all 70 tokens of a, but a's message is the least recently used unit and is gone
        record(
            "c",
            2,
            provider="vllm",
            model="qwen",
            system=words(0, 37),
            messages=[user(words(100, 27)), assistant(words(300, 5))],
        ),
    ]

    w = run(tmp_path, tokenizer_spec, records, capacity_tokens=80, **lru_blocks(tmp_path / "pack"))

    c = rows(w)["c"]
    assert (c["warm"], c["granular"]) == (70, 64)
    assert c["candidate"] == 32  # the 40 cached tokens of the system prompt hold two whole blocks
    assert causes(w)["evicted"] == 32


def test_a_user_rules_pack_sets_ttl_minimum_and_blocks(tmp_path, tokenizer_spec):
    pack = {
        "name": "lab",
        "version": "2026.1.0",
        "effective_from": "2026-01-01",
        "source": "https://example.com/our-cache",
        "applies_to": {"providers": ["lab"]},
        "ttl_seconds": 60,
        "minimum_tokens": 16,
        "granularity": {"kind": "blocks", "block_size": 8},
        "prices_per_mtok": {},
    }
    rules_file = tmp_path / "lab.json"
    rules_file.write_text(json.dumps(pack))
    system = words(0, 20)  # 23 tokens
    records = [
        record("a", 0, provider="lab", system=system, messages=[user(words(100, 5))]),
        record("b", 30, provider="lab", system=system, messages=[user(words(200, 5))]),  # shares 25: 3 blocks
        record("c", 100, provider="lab", system=system, messages=[user(words(200, 5))]),  # 70 s after b: expired
        record("d", 110, provider="lab", system=words(0, 5), messages=[user("w1")]),  # shares 7: under 16
    ]

    w = run(tmp_path, tokenizer_spec, records, rules_files=(str(rules_file),))

    r = rows(w)
    assert [(r[t]["pack"], r[t]["eligible"], r[t]["candidate"]) for t in "abcd"] == [
        ("lab", 0, 0),
        ("lab", 25, 24),
        ("lab", 31, 0),
        ("lab", 7, 0),
    ]
    assert causes(w) == {
        "other_model": 0,
        "other_tenant": 0,
        "expired": 31,
        "below_minimum": 7,
        "granularity": 1,
        "evicted": 0,
    }
    assert w.summary["rules"] == [
        {
            "name": "lab",
            "version": "2026.1.0",
            "effective_from": "2026-01-01",
            "source": "https://example.com/our-cache",
        }
    ]


def test_the_capacity_curve_of_a_content_trace_counts_whole_content_blocks(tmp_path, tokenizer_spec):
    records = [
        vllm_request("a", 0, words(100, 27)),  # system 40 + message 30 tokens
        vllm_request("b", 1, words(200, 27)),  # hits the system prompt
        record(
            "c", 2, provider="vllm", model="qwen", system=words(0, 37), messages=[user(words(100, 27)), user("w9")]
        ),  # hits a's 70 tokens when a's message is still there
    ]

    w = run(tmp_path, tokenizer_spec, records, curves=True, capacities=(39, 60, 80, None), **lru_blocks(tmp_path / "p"))

    total = 70 + 70 + 74
    assert w.summary["capacity_curve"] == [
        {"capacity_tokens": 39, "rate": 0.0},  # the system prompt alone does not fit
        {"capacity_tokens": 60, "rate": 0.0},  # a's message pushes it out
        {"capacity_tokens": 80, "rate": round((40 + 40) / total, 6)},
        # unbounded: the stages' own token-exact same-key level, the whole blocks and what c shares inside the next
        {"capacity_tokens": None, "rate": round(sum(r["same_key"] or 0 for r in rows(w).values()) / total, 6)},
    ]
    assert sum(r["same_key"] or 0 for r in rows(w).values()) >= 40 + 70


# --- candidate -> realized -> missed --------------------------------------------------------------------


def openai_usage(prompt: int, cached: int | None) -> dict[str, Any]:
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": 5}
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return usage


def test_realized_is_measured_and_missed_is_candidate_minus_realized_per_request(tmp_path, tokenizer_spec):
    system = words(0, 10)  # 13 tokens; every request below is 21 tokens and shares 15 with a
    records = [
        record("a", 0, system=system, messages=[user(words(100, 5))], usage=openai_usage(21, 0)),
        record("b", 1, system=system, messages=[user(words(200, 5))], usage=openai_usage(21, 10)),
        record("c", 2, system=system, messages=[user(words(300, 5))], usage=openai_usage(21, 20)),
        record("d", 3, system=system, messages=[user(words(400, 5))], usage=openai_usage(21, None)),
    ]

    w = run(tmp_path, tokenizer_spec, records, rules="ideal")

    r = rows(w)
    got = {t: (r[t]["candidate"], r[t]["realized"], r[t]["missed"], r[t]["over_realized"]) for t in "abcd"}
    assert got == {"a": (0, 0, 0, 0), "b": (15, 10, 5, 0), "c": (15, 20, 0, 5), "d": (15, None, None, 0)}
    s = w.summary
    assert s["realized"] == {"tokens": 30, "rate": round(30 / 84, 6), "evidence": "measured"}
    assert s["missed"]["tokens"] == 5
    assert (s["over_realized"]["requests"], s["over_realized"]["tokens"]) == (1, 5)
    assert s["over_realized"]["explanation"]
    [unknown] = [c for c in s["cannot_compute"] if c["row"] == "realized"]
    assert "1 of 4" in unknown["reason"]
    assert s["causes"][-1] == {
        "stage": "candidate->realized",
        "cause": "provider_miss_unexplained",
        "label": "provider miss (unexplained)",
        "tokens": 5,
        "requests": 1,
        "evidence": "simulated",
    }


def test_a_trace_without_any_cache_field_cannot_say_what_was_realized(tmp_path, tokenizer_spec):
    system = words(0, 10)
    records = [record(t, i, system=system, messages=[user(words(100 * i, 3))]) for i, t in enumerate("abc")]

    w = run(tmp_path, tokenizer_spec, records)

    assert w.summary["realized"]["tokens"] is None and w.summary["missed"]["tokens"] is None
    assert w.summary["request_weighted"]["realized"] is None
    assert any(c["row"] == "realized" and "3 of 3" in c["reason"] for c in w.summary["cannot_compute"])


def anthropic_usage(fresh: int, read: int, write: int) -> dict[str, Any]:
    return {
        "input_tokens": fresh,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write,
        "output_tokens": 7,
    }


def test_provider_miss_diagnostics_become_the_candidate_to_realized_cause(tmp_path, tokenizer_spec):
    diagnostics = {"cache_miss_reason": {"type": "tools_changed", "cache_missed_input_tokens": 1100}}
    records = [
        anthropic_turn("a", 0, words(1500, 2), usage=anthropic_usage(3, 0, 1100)),  # 1100 + 3 tokens
        anthropic_turn("b", 10, words(1600, 2), usage=anthropic_usage(3, 0, 1100), diagnostics=diagnostics),
        anthropic_turn("c", 20, words(1700, 2), usage=anthropic_usage(3, 600, 500)),
    ]

    w = run(tmp_path, tokenizer_spec, records)

    r = rows(w)
    assert (r["b"]["total"], r["b"]["candidate"], r["b"]["realized"], r["b"]["missed"]) == (1103, 1100, 0, 1100)
    assert (r["c"]["candidate"], r["c"]["realized"], r["c"]["missed"]) == (1100, 600, 500)
    assert r["b"]["miss_reason"] == "tools_changed"
    provider = [c for c in w.summary["causes"] if c["stage"] == "candidate->realized"]
    assert provider == [
        {
            "stage": "candidate->realized",
            "cause": "tools_changed",
            "label": "provider diagnostic: tools_changed",
            "tokens": 1100,
            "requests": 1,
            "evidence": "measured",
        },
        {
            "stage": "candidate->realized",
            "cause": "provider_miss_unexplained",
            "label": "provider miss (unexplained)",
            "tokens": 500,
            "requests": 1,
            "evidence": "simulated",
        },
    ]
    assert w.summary["cache_writes"] == {"tokens": 2700, "evidence": "measured", "requests_known": 3}


def test_anthropic_input_tokens_are_normalised_to_the_whole_prompt(tmp_path, tokenizer_spec):
    records = [
        anthropic_turn("a", 0, words(1500, 2), usage=anthropic_usage(3, 0, 1100)),
        anthropic_turn("b", 10, words(1600, 2), usage=anthropic_usage(3, 1100, 0)),
    ]

    w = run(tmp_path, tokenizer_spec, records)

    assert [r["total"] for r in w.per_request.to_table().to_pylist()] == [1103, 1103]
    assert w.summary["total_input_tokens"] == {"tokens": 2206, "rate": 1.0, "evidence": "measured"}
    assert w.summary["realized"]["tokens"] == 1100
    assert w.summary["missed"]["tokens"] == 0


def test_requests_without_timestamps_keep_log_order_and_say_ttl_was_not_applied(tmp_path, tokenizer_spec):
    records = [anthropic_turn("a", None, words(1500, 2)), anthropic_turn("b", None, words(1600, 2))]

    w = run(tmp_path, tokenizer_spec, records)

    assert rows(w)["b"]["candidate"] == 1100
    assert any(c["row"] == "candidate" and "2 requests" in c["reason"] for c in w.summary["cannot_compute"])


def test_headline_rates_are_token_weighted_and_the_request_weighted_mean_is_beside_them(tmp_path, tokenizer_spec):
    system = words(0, 10)
    records = [
        record("a", 0, system=system, messages=[user(words(100, 5))]),  # 21 tokens, eligible 0
        record("b", 1, system=system, messages=[user(words(100, 5))]),  # 21, eligible 21
        record("c", 2, system=system, messages=[user(words(200, 45))]),  # 61, eligible 15
    ]

    w = run(tmp_path, tokenizer_spec, records, rules="ideal")

    assert w.summary["eligible"]["rate"] == round(36 / 103, 6)
    assert w.summary["request_weighted"]["eligible"] == round((0 + 1 + 15 / 61) / 3, 6)


def test_breakdowns_split_the_same_totals(tmp_path, tokenizer_spec):
    system = words(0, 10)
    records = [
        record(
            f"r{i}",
            i,
            system=system,
            messages=[user(words(100 * i, 3))],
            tenant=f"t{i % 2}",
            model=f"m{i % 3}",
            session_id=f"s{i % 4}",
        )
        for i in range(9)
    ]

    w = run(tmp_path, tokenizer_spec, records, by=("tenant", "model", "session"))

    for key, count in (("tenant", 2), ("model", 3), ("session", 4)):
        table = w.summary["breakdowns"][key]
        assert len(table) == count
        assert sum(row["requests"] for row in table) == 9
        for stage in ("total", "eligible", "candidate"):
            assert (
                sum(row[stage] for row in table)
                == w.summary[stage if stage != "total" else "total_input_tokens"]["tokens"]
            )
    with pytest.raises(ZumikError, match="cannot break down"):
        run(tmp_path / "again", tokenizer_spec, records, by=("colour",))


# --- invariants and a reference implementation, on random traces --------------------------------------------

SESSION_WORDS = 3  # a tiny vocabulary, so that random messages collide and share partial prefixes


@dataclass(frozen=True)
class Req:
    trace_id: str
    at: float
    provider: str
    model: str
    tenant: str
    system: tuple[str, ...]
    messages: tuple[tuple[str, tuple[str, ...]], ...]  # (role, words)
    cached: int | None  # reported cache reads; None: no cache field

    @property
    def anthropic(self) -> bool:
        return self.provider == "anthropic"

    def tokens(self) -> list[str]:
        """The token sequence zumik materializes, written out independently of zumik."""
        if self.anthropic:
            out = list(self.system)
            for role, body in self.messages:
                out += ["Assistant:" if role == "assistant" else "Human:", *body]
            return out
        out = ["<|im_start|>", "system", *self.system, "<|im_end|>"]
        for role, body in self.messages:
            out += ["<|im_start|>", role, *body, "<|im_end|>"]
        return out

    def to_record(self) -> dict[str, Any]:
        total = len(self.tokens())
        usage = None
        if self.cached is not None:
            usage = (
                anthropic_usage(total - self.cached, self.cached, 0)
                if self.anthropic
                else openai_usage(total, self.cached)
            )
        return record(
            self.trace_id,
            self.at,
            provider=self.provider,
            model=self.model,
            tenant=self.tenant,
            system=" ".join(self.system),
            messages=[{"role": role, "content": " ".join(body)} for role, body in self.messages],
            **({"usage": usage} if usage else {}),
        )


def _lcp(a: Sequence[str], b: Sequence[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class Reference:
    """The definitions of DESIGN.md section 4, stated plainly over token lists (quadratic; small traces only)."""

    def __init__(self, requests: Sequence[Req]) -> None:
        self.requests = sorted(requests, key=lambda r: r.at)

    def _best(self, index: int, same: Any) -> int:
        me = self.requests[index]
        mine = me.tokens()
        return max((_lcp(mine, e.tokens()) for e in self.requests[:index] if same(me, e)), default=0)

    def levels(self, ttl: float | None) -> dict[str, tuple[int, int, int, int]]:
        """Per trace id: (eligible, same target, same key, warm within ``ttl``)."""

        def family(a: Req, b: Req) -> bool:
            return a.anthropic == b.anthropic

        def target(a: Req, b: Req) -> bool:
            return family(a, b) and (a.provider, a.model) == (b.provider, b.model)

        def key(a: Req, b: Req) -> bool:
            return target(a, b) and a.tenant == b.tenant

        def warm(a: Req, b: Req) -> bool:
            return key(a, b) and (ttl is None or a.at - b.at <= ttl)

        return {
            r.trace_id: tuple(self._best(i, same) for same in (family, target, key, warm))  # type: ignore[misc]
            for i, r in enumerate(self.requests)
        }


WORD = st.sampled_from([f"w{i}" for i in range(SESSION_WORDS)])
BODY = st.lists(WORD, min_size=1, max_size=4).map(tuple)


@st.composite
def traces(draw: st.DrawFn, providers: Sequence[str] = ("local",)) -> list[Req]:
    """Random sessions that share system prompts and opening turns, interleaved in time."""
    systems = draw(st.lists(BODY, min_size=1, max_size=3))
    openings = draw(st.lists(BODY, min_size=1, max_size=3))
    requests: list[tuple[float, dict[str, Any]]] = []
    for _ in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, 1200))
        fields = {
            "provider": draw(st.sampled_from(providers)),
            "model": draw(st.sampled_from(["m1", "m2"])),
            "tenant": draw(st.sampled_from(["t1", "t2"])),
            "system": draw(st.sampled_from(systems)),
        }
        history: list[tuple[str, tuple[str, ...]]] = [("user", draw(st.sampled_from(openings)))]
        at = float(start)
        for turn in range(draw(st.integers(1, 4))):
            if turn:
                history += [("assistant", draw(BODY)), ("user", draw(BODY))]
                at += draw(st.integers(1, 700))
            requests.append((at, {**fields, "messages": tuple(history)}))
    out = []
    for index, (at, fields) in enumerate(sorted(requests, key=lambda p: p[0])):
        draft = Req(f"r{index:03d}", at + index / 1000, cached=None, **fields)  # distinct times
        total = len(draft.tokens())
        cached = draw(st.none() | st.integers(0, total))
        out.append(
            Req(
                draft.trace_id,
                draft.at,
                draft.provider,
                draft.model,
                draft.tenant,
                draft.system,
                draft.messages,
                cached,
            )
        )
    return out


def _waterfall_of(requests: Sequence[Req], tokenizer_spec: str, **options: Any) -> Waterfall:
    with tempfile.TemporaryDirectory() as folder:
        return run(Path(folder), tokenizer_spec, [r.to_record() for r in requests], **options)


def _granular(pack: str, warm: int, total: int) -> int:
    """What the packs' granularity leaves of ``warm`` (the minimum included), for the random traces' packs."""
    if pack == "vllm":
        return min(warm, total - 1) // 16 * 16
    if pack == "openai":
        return 1024 + (warm - 1024) // 128 * 128 if warm >= 1024 else 0
    return warm


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    requests=traces(providers=("local", "local2", "openai", "vllm", "anthropic")),
    ttl=st.sampled_from([None, 1.0, 300.0, 900.0]),
)
def test_random_traces_match_a_reference_over_plain_token_lists_and_keep_every_invariant(tokenizer_spec, requests, ttl):
    options = {"ttl_none": True} if ttl is None else {"ttl_seconds": ttl}
    w = _waterfall_of(requests, tokenizer_spec, **options)
    table = w.per_request.to_table().to_pylist()
    s = w.summary
    reference = Reference(requests).levels(ttl)
    by_id = {r.trace_id: r for r in requests}

    for r in table:
        # the reference: eligible, same target, same key and warm are longest common prefixes over token lists
        assert (r["eligible"], r["same_target"], r["same_key"], r["warm"]) == reference[r["trace_id"]]
        assert r["total"] == len(by_id[r["trace_id"]].tokens())
        if r["pack"] != "anthropic":  # ideal (local, local2), vllm and openai: rounding only
            assert r["candidate"] == _granular(r["pack"], r["warm"], r["total"]), r
        chain = stages(r)
        assert all(a >= b >= 0 for a, b in zip(chain, chain[1:], strict=False)), (r["trace_id"], chain)
        if r["realized"] is None:
            assert r["missed"] is None and r["over_realized"] == 0
        else:
            assert r["realized"] == by_id[r["trace_id"]].cached
            assert r["missed"] == max(r["candidate"] - r["realized"], 0)
            assert r["over_realized"] == max(r["realized"] - r["candidate"], 0)

    known = [r for r in table if r["realized"] is not None]
    assert s["requests"] == len(table) == len(requests)
    assert s["total_input_tokens"]["tokens"] == sum(r["total"] for r in table)
    for stage in ("eligible", "candidate"):
        assert s[stage]["tokens"] == sum(r[stage] for r in table)
    assert s["candidate"]["tokens"] <= s["eligible"]["tokens"] <= s["total_input_tokens"]["tokens"]
    if known:
        assert s["realized"]["tokens"] == sum(r["realized"] for r in known) >= 0
        assert s["missed"]["tokens"] == sum(r["missed"] for r in known)
        assert s["missed"]["tokens"] - s["over_realized"]["tokens"] == sum(
            r["candidate"] - r["realized"] for r in known
        )
    else:
        assert s["realized"]["tokens"] is None and s["missed"]["tokens"] is None
    assert s["over_realized"]["requests"] == sum(1 for r in known if r["realized"] > r["candidate"])
    drops = causes(w)
    assert all(v >= 0 for v in drops.values())
    assert sum(drops.values()) == s["eligible"]["tokens"] - s["candidate"]["tokens"]
    assert s["cross_tenant_opportunity"]["tokens"] == drops["other_tenant"]
    assert sum(causes(w, "candidate->realized").values()) == (s["missed"]["tokens"] or 0)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests=traces(providers=("local", "anthropic")), data=st.data())
def test_the_order_of_the_input_files_does_not_change_the_result(tokenizer_spec, requests, data):
    in_first = data.draw(st.lists(st.booleans(), min_size=len(requests), max_size=len(requests)))
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        groups = [[r for r, f in zip(requests, in_first, strict=True) if f == side] for side in (True, False)]
        files = [
            write_jsonl(root / f"part{i}.jsonl", [r.to_record() for r in group])
            for i, group in enumerate(groups)
            if group
        ]
        ingest(files, root / "forward", tokenizer=tokenizer_spec)
        for path in reversed(files):  # the other order, and in separate ingest runs
            ingest([path], root / "backward", tokenizer=tokenizer_spec)
        options = WaterfallOptions(curves=False, by=("tenant", "model"))
        forward = compute_waterfall(Dataset(root / "forward"), options)
        backward = compute_waterfall(Dataset(root / "backward"), options)

    assert forward.summary == backward.summary
    assert forward.per_request.to_table().to_pylist() == backward.per_request.to_table().to_pylist()


def test_usage_only_logs_give_total_and_realized_but_never_an_invented_eligible(tmp_path):
    codex = Path(__file__).parent / "fixtures" / "formats" / "codex"
    ingest([codex], tmp_path / "data")
    s = compute_waterfall(Dataset(tmp_path / "data"), WaterfallOptions(curves=False)).summary

    assert s["total_input_tokens"]["tokens"] > 0
    assert s["realized"]["tokens"] is not None
    assert s["eligible"]["tokens"] is None and s["candidate"]["tokens"] is None and s["missed"]["tokens"] is None
    assert any(c["row"] == "eligible" and "usage-only" in c["reason"] for c in s["cannot_compute"])


@pytest.mark.parametrize(("gap", "reaches"), [(200, "conversation"), (1000, "system"), (3601, "nothing")])
def test_blocks_past_the_last_one_hour_breakpoint_live_only_as_long_as_the_five_minute_one(
    tmp_path, tokenizer_spec, gap, reaches
):
    # the usual Anthropic layout: system prompt cached for an hour, the conversation so far for five minutes
    def turn(trace_id: str, at: float, messages: list[dict[str, Any]]) -> dict[str, Any]:
        return record(
            trace_id, at, provider="anthropic", model=SONNET, system=[part(words(0, 1100), "1h")], messages=messages
        )

    first = [user([part(words(5000, 1000), "5m")])]
    records = [turn("a", 0, first), turn("b", gap, [*first, assistant("ok"), user([part(words(7000, 50), "5m")])])]

    w = run(tmp_path, tokenizer_spec, records)

    a, b = rows(w)["a"], rows(w)["b"]
    expected = {"conversation": a["total"], "system": 1100, "nothing": 0}[reaches]
    assert b["candidate"] == expected
    assert causes(w)["expired"] == (b["same_key"] - expected if reaches != "conversation" else 0)


def test_under_the_vllm_pack_a_cache_too_small_for_a_prompt_is_refused_as_the_engine_refuses_it(
    tmp_path, tokenizer_spec
):
    records = [vllm_request("a", 0, words(100, 5)), vllm_request("b", 1, words(200, 5))]  # 48 tokens each

    with pytest.raises(ZumikError, match="more than a cache of 2 blocks holds"):
        run(tmp_path, tokenizer_spec, records, capacity_tokens=32)
    fits = run(tmp_path / "fits", tokenizer_spec, records, capacity_tokens=96)
    assert rows(fits)["b"]["candidate"] == 32  # the shared 40-token system prompt, in whole 16-token blocks


def test_the_per_request_table_is_in_request_order_whatever_order_the_log_was_written_in(tmp_path, tokenizer_spec):
    # written newest first: DuckDB reads the requests in the log's order, and the table must come out in time order
    records = [record(f"r{i}", 10.0 * i, messages=[user(words(0, 40 + i))]) for i in range(300)]
    w = run(tmp_path, tokenizer_spec, list(reversed(records)))

    assert w.per_request.to_table().column("ord").to_pylist() == list(range(1, 301))
    assert w.per_request.to_table().column("trace_id").to_pylist() == [f"r{i}" for i in range(300)]

"""Usage normalisation: every family's prompt total includes cache reads and writes; absent means unknown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zumik_cli.core.model import Usage
from zumik_cli.core.usage import normalize_usage
from zumik_cli.dataset.store import Dataset
from zumik_cli.ingest.pipeline import ingest

counts = st.integers(min_value=0, max_value=10**9)


def test_anthropic_input_tokens_exclude_cache_reads_and_writes() -> None:
    usage = {
        "input_tokens": 12,
        "cache_read_input_tokens": 1800,
        "cache_creation_input_tokens": 300,
        "output_tokens": 5,
    }

    assert normalize_usage(usage) == Usage(
        prompt_tokens=12 + 1800 + 300, cached_tokens=1800, cache_write_tokens=300, output_tokens=5, family="anthropic"
    )


def test_anthropic_cache_writes_split_by_ttl_are_added_up() -> None:
    usage = {
        "input_tokens": 10,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 1000},
        "output_tokens": 1,
    }

    assert normalize_usage(usage) == Usage(
        prompt_tokens=1210, cached_tokens=0, cache_write_tokens=1200, output_tokens=1, family="anthropic"
    )


def test_anthropic_usage_without_cache_fields_leaves_the_cache_unknown() -> None:
    assert normalize_usage({"input_tokens": 30, "output_tokens": 4}) == Usage(
        prompt_tokens=30, cached_tokens=None, cache_write_tokens=None, output_tokens=4, family="anthropic"
    )


def test_openai_prompt_tokens_already_include_the_cached_ones() -> None:
    usage = {"prompt_tokens": 1500, "completion_tokens": 20, "prompt_tokens_details": {"cached_tokens": 1024}}

    assert normalize_usage(usage) == Usage(
        prompt_tokens=1500, cached_tokens=1024, cache_write_tokens=None, output_tokens=20, family="openai"
    )


def test_openai_usage_without_details_means_the_cached_count_is_unknown_not_zero() -> None:
    """vLLM reports cached tokens only with --enable-prompt-tokens-details."""
    usage = normalize_usage({"prompt_tokens": 900, "completion_tokens": 7, "total_tokens": 907})

    assert usage.prompt_tokens == 900
    assert usage.cached_tokens is None


def test_a_reported_zero_stays_zero() -> None:
    usage = normalize_usage(
        {"prompt_tokens": 90, "prompt_tokens_details": {"cached_tokens": 0}, "cache_write_tokens": 0}
    )

    assert (usage.cached_tokens, usage.cache_write_tokens) == (0, 0)


def test_litellm_usage_for_an_anthropic_upstream_keeps_prompt_tokens_as_the_total() -> None:
    """LiteLLM writes Anthropic's cache fields beside an OpenAI-shaped prompt_tokens that includes them."""
    usage = {
        "prompt_tokens": 2006,
        "completion_tokens": 300,
        "total_tokens": 2306,
        "prompt_tokens_details": {"cached_tokens": 1920},
        "cache_creation_input_tokens": 50,
        "cache_read_input_tokens": 1920,
    }

    assert normalize_usage(usage) == Usage(
        prompt_tokens=2006, cached_tokens=1920, cache_write_tokens=50, output_tokens=300, family="openai"
    )


def test_openai_responses_input_tokens_include_the_cached_ones() -> None:
    usage = {
        "input_tokens": 2000,
        "input_tokens_details": {"cached_tokens": 1536},
        "output_tokens": 80,
        "output_tokens_details": {"reasoning_tokens": 64},
        "total_tokens": 2080,
    }

    assert normalize_usage(usage) == Usage(
        prompt_tokens=2000, cached_tokens=1536, output_tokens=80, family="openai-responses"
    )


def test_openai_responses_usage_without_details_leaves_the_cache_unknown() -> None:
    usage = normalize_usage({"input_tokens": 400, "output_tokens": 8, "total_tokens": 408})

    assert (usage.family, usage.prompt_tokens, usage.cached_tokens) == ("openai-responses", 400, None)


def test_gemini_cached_content_is_a_subset_of_the_prompt_count() -> None:
    usage = {"promptTokenCount": 3000, "cachedContentTokenCount": 2048, "candidatesTokenCount": 90}

    assert normalize_usage(usage) == Usage(prompt_tokens=3000, cached_tokens=2048, output_tokens=90, family="gemini")
    assert normalize_usage({"promptTokenCount": 3000}).cached_tokens is None


def test_bedrock_converse_input_tokens_exclude_cache_reads_and_writes() -> None:
    usage = {"inputTokens": 50, "cacheReadInputTokens": 800, "cacheWriteInputTokens": 100, "outputTokens": 9}

    assert normalize_usage(usage) == Usage(
        prompt_tokens=950, cached_tokens=800, cache_write_tokens=100, output_tokens=9, family="bedrock-converse"
    )
    assert normalize_usage({"inputTokens": 50, "outputTokens": 9}).cached_tokens is None


def test_deepseek_prompt_is_cache_hits_plus_misses() -> None:
    reported = {"prompt_tokens": 1000, "prompt_cache_hit_tokens": 640, "prompt_cache_miss_tokens": 360}
    without_total = {"prompt_cache_hit_tokens": 640, "prompt_cache_miss_tokens": 360, "completion_tokens": 3}

    assert normalize_usage(reported) == Usage(prompt_tokens=1000, cached_tokens=640, family="deepseek")
    assert normalize_usage(without_total) == Usage(
        prompt_tokens=1000, cached_tokens=640, output_tokens=3, family="deepseek"
    )


@pytest.mark.parametrize("usage", [None, {}, [], "1200", {"unrelated": 1}])
def test_a_missing_or_unrecognised_usage_is_entirely_unknown(usage: Any) -> None:
    assert normalize_usage(usage) == Usage()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1500", 1500), (1500.0, 1500), (True, None), (-5, None), (2**63, None), ("²", None), ("lots", None), (1.5, None)],
)
def test_a_count_that_is_not_a_token_count_is_unknown(value: Any, expected: int | None) -> None:
    assert normalize_usage({"prompt_tokens": value}).prompt_tokens == expected


@given(counts, counts, counts)
def test_anthropic_prompt_total_is_always_the_sum_and_covers_the_cache_read(base: int, read: int, write: int) -> None:
    usage = normalize_usage(
        {"input_tokens": base, "cache_read_input_tokens": read, "cache_creation_input_tokens": write}
    )

    assert usage.prompt_tokens == base + read + write
    assert usage.cached_tokens is not None and usage.cached_tokens <= usage.prompt_tokens


def test_the_dataset_stores_an_unknown_cached_count_as_null_and_a_reported_zero_as_zero(tmp_path: Path) -> None:
    usages = {
        "anthropic": {"input_tokens": 12, "cache_read_input_tokens": 1800, "cache_creation_input_tokens": 300},
        "openai-zero": {"prompt_tokens": 90, "prompt_tokens_details": {"cached_tokens": 0}},
        "openai-unknown": {"prompt_tokens": 90},
        "gemini": {"promptTokenCount": 3000, "cachedContentTokenCount": 2048},
        "no-usage": None,
    }
    records = [
        {"zumik": 1, "trace_id": name, "model": "m", "messages": [{"role": "user", "content": name}], "usage": usage}
        for name, usage in usages.items()
    ]
    (tmp_path / "usage.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))

    summary = ingest([tmp_path / "usage.jsonl"], tmp_path / "data")

    query = (
        "SELECT trace_id, prompt_tokens_reported, cached_tokens_reported, cache_write_tokens_reported, "
        "usage_family FROM requests"
    )
    rows = Dataset(tmp_path / "data").connect().execute(query)
    assert {row[0]: row[1:] for row in rows.fetchall()} == {
        "anthropic": (2112, 1800, 300, "anthropic"),
        "openai-zero": (90, 0, None, "openai"),
        "openai-unknown": (90, None, None, "openai"),
        "gemini": (3000, 2048, None, "gemini"),
        "no-usage": (None, None, None, "none"),
    }
    assert summary.prompt_tokens_reported == 2112 + 90 + 90 + 3000
    assert summary.cached_tokens_reported == 1800 + 2048

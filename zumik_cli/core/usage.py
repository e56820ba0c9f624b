"""Normalise the usage objects of every provider family into one ``Usage``, and say when one cannot be true.

Invariant: ``prompt_tokens`` is the whole prompt, cache reads and writes included, in every family; a cache
field the log did not carry stays ``None`` (unknown), never zero. Usage that contradicts itself (cache reads or
writes above the prompt, a total that is not the sum of its parts) is never folded into a figure: ``contradiction``
names it, and ingest quarantines the record with that reason, so one bad record cannot push a rate above 100%.
"""

from __future__ import annotations

from typing import Any

from zumik_cli.core.model import Usage

# Counts land in int64 columns: a negative or larger value is not a token count, so it is unknown.
MAX_COUNT = 2**63 - 1


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if (isinstance(value, float) and value.is_integer()) or (isinstance(value, str) and value.strip().isdecimal()):
        value = int(value)
    if isinstance(value, int) and 0 <= value <= MAX_COUNT:
        return value
    return None


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _first_known(*values: Any) -> int | None:
    """The first field the log carried: a reported 0 is a count, only an absent field is unknown."""
    for value in values:
        count = _int(value)
        if count is not None:
            return count
    return None


def _sum_known(*values: int | None) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def contradiction(usage: Usage) -> str:
    """Why these counts cannot all be true, or ``""``: every family's prompt includes its cache reads and writes."""
    prompt, read, write = usage.prompt_tokens, usage.cached_tokens, usage.cache_write_tokens
    if usage.problem:
        return usage.problem
    if prompt is None:
        return ""
    if read is not None and read > prompt:
        return f"{read} cached tokens in a prompt of {prompt}"
    if write is not None and write > prompt:
        return f"{write} cache-write tokens in a prompt of {prompt}"
    if read is not None and write is not None and read + write > prompt:
        return f"{read} cached and {write} cache-write tokens in a prompt of {prompt}"
    return ""


# families whose total_tokens is exactly prompt plus output; Gemini's adds thinking and tool-prompt tokens
_EXACT_TOTAL = {"openai": "total_tokens", "openai-responses": "total_tokens", "deepseek": "total_tokens"}


def normalize_usage(usage: Any) -> Usage:
    """Detect the family from the keys present and return the normalised usage."""
    if not isinstance(usage, dict) or not usage:
        return Usage()
    normalized = _normalize(usage)
    if normalized.family in _EXACT_TOTAL or normalized.family == "gemini":
        total = _int(usage.get("total_tokens", usage.get("totalTokenCount")))
        prompt, output = normalized.prompt_tokens, normalized.output_tokens
        if total is not None and prompt is not None and output is not None:
            exact = normalized.family in _EXACT_TOTAL
            if total < prompt + output or (exact and total != prompt + output):
                return Usage(
                    normalized.prompt_tokens,
                    normalized.cached_tokens,
                    normalized.cache_write_tokens,
                    normalized.output_tokens,
                    normalized.family,
                    f"total {total} tokens is not prompt {prompt} plus output {output}",
                )
    return normalized


def _normalize(usage: dict[str, Any]) -> Usage:
    # LiteLLM adds Anthropic's cache fields beside an OpenAI-shaped prompt_tokens that already includes them.
    if "prompt_tokens" not in usage and (
        "cache_read_input_tokens" in usage
        or "cache_creation_input_tokens" in usage
        or (
            "input_tokens" in usage
            and "input_tokens_details" not in usage
            and "output_tokens" in usage
            and "total_tokens" not in usage
        )
    ):
        return _anthropic(usage)
    if "input_tokens_details" in usage or ("input_tokens" in usage and "total_tokens" in usage):
        return Usage(
            prompt_tokens=_int(usage.get("input_tokens")),
            cached_tokens=_int(_get(usage, "input_tokens_details", "cached_tokens")),
            output_tokens=_int(usage.get("output_tokens")),
            family="openai-responses",
        )
    if "promptTokenCount" in usage or "prompt_token_count" in usage:
        # Gemini: the prompt count includes the cached part; there is no cache-write count (UsageMetadata has none).
        return Usage(
            prompt_tokens=_int(usage.get("promptTokenCount", usage.get("prompt_token_count"))),
            cached_tokens=_int(usage.get("cachedContentTokenCount", usage.get("cached_content_token_count"))),
            output_tokens=_int(usage.get("candidatesTokenCount", usage.get("candidates_token_count"))),
            family="gemini",
        )
    if "inputTokens" in usage:
        # Bedrock Converse: inputTokens excludes cache reads and writes, as Anthropic's input_tokens does.
        read = _int(usage.get("cacheReadInputTokens"))
        write = _first_known(_int(usage.get("cacheWriteInputTokens")), _int(usage.get("cacheCreationInputTokens")))
        base = _int(usage.get("inputTokens"))
        return Usage(
            prompt_tokens=_sum_known(base, read, write) if base is not None else None,
            cached_tokens=read,
            cache_write_tokens=write,
            output_tokens=_int(usage.get("outputTokens")),
            family="bedrock-converse",
        )
    if "prompt_cache_hit_tokens" in usage:
        hit, miss = _int(usage.get("prompt_cache_hit_tokens")), _int(usage.get("prompt_cache_miss_tokens"))
        prompt = _int(usage.get("prompt_tokens"))
        return Usage(
            prompt_tokens=prompt if prompt is not None else _sum_known(hit, miss),
            cached_tokens=hit,
            output_tokens=_int(usage.get("completion_tokens")),
            family="deepseek",
        )
    if "prompt_tokens" in usage:
        details = usage.get("prompt_tokens_details")
        details = details if isinstance(details, dict) else {}
        write = _first_known(
            usage.get("cache_write_tokens"),
            usage.get("cache_creation_tokens"),
            usage.get("cache_creation_input_tokens"),
            details.get("cache_write_tokens"),
            details.get("cache_creation_tokens"),
        )
        return Usage(
            prompt_tokens=_int(usage.get("prompt_tokens")),
            cached_tokens=_first_known(details.get("cached_tokens"), usage.get("cache_read_input_tokens")),
            cache_write_tokens=write,
            output_tokens=_int(usage.get("completion_tokens")),
            family="openai",
        )
    return Usage()


def _anthropic(usage: dict[str, Any]) -> Usage:
    base = _int(usage.get("input_tokens"))
    read = _int(usage.get("cache_read_input_tokens"))
    write = _int(usage.get("cache_creation_input_tokens"))
    if write is None:
        split = usage.get("cache_creation")
        if isinstance(split, dict):
            write = _sum_known(
                _int(split.get("ephemeral_5m_input_tokens")), _int(split.get("ephemeral_1h_input_tokens"))
            )
    return Usage(
        prompt_tokens=_sum_known(base, read, write) if base is not None else None,
        cached_tokens=read,
        cache_write_tokens=write,
        output_tokens=_int(usage.get("output_tokens")),
        family="anthropic",
    )

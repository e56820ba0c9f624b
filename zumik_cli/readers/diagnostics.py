"""Provider miss diagnostics, read into ``Request.miss_reason`` and ``Request.missed_tokens``.

Anthropic (cache diagnostics beta ``cache-diagnosis-2026-04-07``) answers on the response
``diagnostics.cache_miss_reason = {type, cache_missed_input_tokens}``; ``cache_miss_reason: null`` means the
comparison was still running, so it says nothing. OpenAI's Responses API answers
``prompt_cache_diagnostics = {type: cache_miss, reason, cache_missed_tokens, comparison_reusable_tokens?}`` or
``{type: cache_hit | comparison_response_not_found | unavailable}``. A reason is the provider's own word: the
waterfall shows it as a measured candidate -> realized cause.
"""

from __future__ import annotations

from typing import Any

from zumik_cli.readers.fields import count, text

NO_MISS = ("", None)


def anthropic_miss(diagnostics: Any) -> tuple[str, int | None]:
    """``(type, cache_missed_input_tokens)`` from an Anthropic ``diagnostics`` object, or ``("", None)``."""
    reason = diagnostics.get("cache_miss_reason") if isinstance(diagnostics, dict) else None
    if not isinstance(reason, dict) or not reason.get("type"):
        return NO_MISS
    return text(reason["type"]), count(reason.get("cache_missed_input_tokens"), "cache_missed_input_tokens")


def openai_miss(diagnostics: Any) -> tuple[str, int | None]:
    """``(reason, cache_missed_tokens)`` from an OpenAI ``prompt_cache_diagnostics`` object, or ``("", None)``.

    A hit says nothing was missed; ``comparison_response_not_found`` and ``unavailable`` are kept as reasons (as
    Anthropic's ``previous_message_not_found`` and ``unavailable`` are) so that the report can say why a miss
    stayed unexplained.
    """
    if not isinstance(diagnostics, dict):
        return NO_MISS
    kind = text(diagnostics.get("type"))
    if kind == "cache_miss":
        return text(diagnostics.get("reason")) or "cache_miss", count(
            diagnostics.get("cache_missed_tokens"), "cache_missed_tokens"
        )
    if kind in ("comparison_response_not_found", "unavailable"):
        return kind, None
    return NO_MISS

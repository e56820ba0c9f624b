"""Number formatting for people who read reports, not terminals.

Every helper takes whatever the waterfall object holds (a number, ``None`` for "not computed", or in a
broken object something else) and returns plain text, never raising: a report that cannot be drawn because
one field is odd helps nobody, and "n/a" says plainly that a number is missing. The results are plain text;
callers still escape them before they go into HTML.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

NOT_AVAILABLE = "n/a"

_CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}
_TOKEN_UNITS = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"))


def as_number(value: object) -> float | None:
    """The value as a finite float, or None where it is missing or not a number (booleans are not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def share_of(part: object, whole: object) -> float | None:
    """part / whole as a fraction, or None where either is missing or the whole is zero."""
    numerator, denominator = as_number(part), as_number(whole)
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def format_count(value: object) -> str:
    """An exact count with thousands separators (1,234,567), for tables where precision matters."""
    number = as_number(value)
    if number is None:
        return NOT_AVAILABLE
    return f"{round(number):,}"


def format_tokens(value: object) -> str:
    """A compact token count (950, 12.3K, 1.2M, 3.4B), for headlines and chart labels."""
    number = as_number(value)
    if number is None:
        return NOT_AVAILABLE
    sign = "-" if number < 0 else ""
    magnitude = abs(number)
    for threshold, suffix in _TOKEN_UNITS:
        # Round first, so that 999,960 reads 1.0M rather than 1000.0K.
        if round(magnitude / threshold, 1) >= 1:
            return f"{sign}{magnitude / threshold:.1f}{suffix}"
    return f"{sign}{round(magnitude)}"


def format_percent(value: object, digits: int = 1) -> str:
    """A fraction as a percentage (0.4123 -> 41.2%); a tiny non-zero share is not shown as zero."""
    number = as_number(value)
    if number is None:
        return NOT_AVAILABLE
    smallest = 10.0**-digits
    if 0 < abs(number) * 100 < smallest:
        return f"<{smallest:.{digits}f}%"
    return f"{number * 100:.{digits}f}%"


def format_money(value: object, currency: object = "USD") -> str:
    """An amount with its currency ($3.40, €1,204.10, CHF 2.00); sub-cent amounts are not shown as zero."""
    number = as_number(value)
    if number is None:
        return NOT_AVAILABLE
    code = currency if isinstance(currency, str) and currency else "USD"
    symbol = _CURRENCY_SYMBOLS.get(code.upper())
    prefix = symbol if symbol is not None else f"{code} "
    sign = "-" if number < 0 else ""
    magnitude = abs(number)
    if 0 < magnitude < 0.005:
        return f"{sign}<{prefix}0.01"
    return f"{sign}{prefix}{magnitude:,.2f}"


def format_duration(seconds: object) -> str:
    """A TTL in the unit people think in (30 s, 5 min, 1 h, 2 days); None means the entry never expires."""
    if seconds is None:
        return "no expiry"
    number = as_number(seconds)
    if number is None:
        return NOT_AVAILABLE
    for size, unit in ((86400, "day"), (3600, "h"), (60, "min")):
        if number >= size and number % size == 0:
            count = int(number // size)
            plural = "s" if unit == "day" and count != 1 else ""
            return f"{count} {unit}{plural}"
    if number >= 3600:
        return f"{number / 3600:.1f} h"
    if number >= 60:
        return f"{number / 60:.1f} min"
    return f"{number:g} s"


def format_capacity(tokens: object) -> str:
    """A cache capacity in tokens; None is a cache without a size limit."""
    if tokens is None:
        return "unbounded"
    return format_tokens(tokens)


def format_replayed_cache(replayed: Mapping[str, Any]) -> str:
    """The cache a replay measured on, in words: "vllm-cpu, 32-token blocks, 14.7K-token cache". Only a capacity that
    was chosen or confirmed is stated as one; an engine's own allocation that evicted nothing is "unbounded"."""
    engine = str(replayed.get("engine") or "an engine")
    if replayed.get("device") == "cpu":
        engine += "-cpu"
    parts = [engine]
    if as_number(replayed.get("block_size")) is not None:
        parts.append(f"{format_count(replayed.get('block_size'))}-token blocks")
    tokens, source = replayed.get("capacity_tokens"), replayed.get("capacity_source")
    size = format_capacity(tokens)
    if tokens is None:
        parts.append("cache size unknown")
    elif source in ("chosen", "confirmed"):
        parts.append(f"{size}-token cache")
    elif source == "allocated" and replayed.get("capacity_binds") is False:
        parts.append(f"unbounded (the engine's own {size}-token cache, which evicted nothing)")
    elif source == "allocated":
        parts.append(f"the engine's own {size}-token cache (no --kv-blocks)")
    else:
        parts.append(f"a {size}-token cache not recorded as chosen")
    return ", ".join(parts)


def format_latency(milliseconds: object) -> str:
    """A latency in ms below ten seconds (850 ms, 1,240 ms), else in seconds (12.4 s)."""
    number = as_number(milliseconds)
    if number is None:
        return NOT_AVAILABLE
    if abs(number) >= 10_000:
        return f"{number / 1000:.1f} s"
    return f"{round(number):,} ms"


def _instant(value: object) -> datetime | None:
    """An ISO 8601 instant ("2026-06-09T09:00:00Z") as a UTC datetime, or None where it is missing or odd."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def format_period(first: object, last: object) -> str:
    """The span from the first to the last request, in UTC: "9 Jun 2026, 09:00-10:26 UTC" within a day,
    "9 Jun-14 Jun 2026" across days; "an unknown period" when the requests carry no time."""
    start, end = _instant(first), _instant(last)
    if start is None or end is None:
        return "an unknown period"
    day = f"{start.day} {start:%b %Y}"
    if start.date() == end.date():
        return f"{day}, {start:%H:%M}\u2013{end:%H:%M} UTC"
    if start.year == end.year:
        return f"{start.day} {start:%b}\u2013{end.day} {end:%b %Y}"
    return f"{day}\u2013{end.day} {end:%b %Y}"


def format_span(first: object, last: object) -> str:
    """How long the period lasted, in the largest unit that reads well (1 h 26 min, 3 days); "" when unknown."""
    start, end = _instant(first), _instant(last)
    if start is None or end is None:
        return ""
    seconds = int((end - start).total_seconds())
    if seconds >= 2 * 86400:
        return f"{round(seconds / 86400)} days"
    if seconds >= 3600:
        hours, minutes = divmod(seconds // 60, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"

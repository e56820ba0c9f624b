"""Small field parsers shared by readers: times in every spelling logs use, and numbers that fit the dataset."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

MAX_INT64 = 2**63 - 1
# Unix seconds of the years 1 and 9999: what every date type downstream (DuckDB, datetime) can hold.
EARLIEST, LATEST = -62_135_596_800.0, 253_402_300_799.0


def moment(seconds: float, value: Any) -> float:
    """``seconds`` when it is a time some calendar can show; a wrong shape otherwise (NaN and infinities too)."""
    if not EARLIEST <= seconds <= LATEST:
        raise ValueError(f"unreadable time {value!r}"[:120])
    return seconds


def parse_time(value: Any) -> float | None:
    """Unix seconds from ISO 8601 text or a number in seconds or milliseconds; ``None`` when absent or when the
    text is not a time (a number outside the years 1 to 9999 is a wrong shape, not an unknown time)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
        return moment(number / 1000.0 if number > 1e11 else number, value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return parse_time(float(text))
        except ValueError:
            pass
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            # Text that is no time at all leaves the call's time unknown rather than losing its usage: the
            # waterfall says that TTL rules could not be applied to it.
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return moment(when.timestamp(), value)  # year 9999 at -05:00 is past the end of year 9999 in UTC
    raise ValueError(f"unreadable time {value!r}")


def text(value: Any) -> str:
    return "" if value is None else str(value)


def count(value: Any, name: str) -> int | None:
    """A non-negative integer that fits an int64 column; ``None`` when absent; anything else is a wrong shape."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT64:
        raise ValueError(f"{name} must be a non-negative integer, not {value!r}"[:120])
    return value


def number(value: Any, name: str) -> float | None:
    """A float from a JSON number; ``None`` when absent; anything else is a wrong shape."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, not {value!r}"[:120])
    return float(value)

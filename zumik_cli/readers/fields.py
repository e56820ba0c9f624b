"""Small field parsers shared by readers: times in every spelling logs use, and numbers that fit the dataset."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

MAX_INT64 = 2**63 - 1


def parse_time(value: Any) -> float | None:
    """Unix seconds from ISO 8601 text or a number in seconds or milliseconds; ``None`` when absent."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
        return number / 1000.0 if number > 1e11 else number
    if isinstance(value, str):
        text = value.strip()
        try:
            return parse_time(float(text))
        except ValueError:
            pass
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
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

"""Option values people type: durations (``300``, ``5m``, ``1h``, ``none``) and sizes (``1M``, ``64k``, ``10MB``).

The output writes "5 min" and "1M"; the options accept the same words back. Each parser is a typer ``parser``:
a value it refuses raises ``typer.BadParameter`` with what it accepts, which the root command prints as one line.
"""

from __future__ import annotations

import math
import re

import typer

NO_EXPIRY = ("none", "never", "inf", "off")
DURATION = re.compile(r"(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>s|sec|secs|m|min|mins|h|hr|hrs|d)?")
DURATION_UNITS = {"s": 1, "sec": 1, "secs": 1, "m": 60, "min": 60, "mins": 60, "h": 3600, "hr": 3600, "hrs": 3600}
DURATION_UNITS["d"] = 86_400
SIZE = re.compile(r"(?P<number>\d[\d_]*(?:\.\d*)?|\.\d+)\s*(?P<unit>[kmgbt]?)(?P<binary>i?)(?P<bytes>b?)")
# Decimal, as the tables print them ("1.0M" is a million tokens); KiB, MiB and GiB are the binary ones.
SIZE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9, "t": 10**12}


def duration(text: str) -> float:
    """Seconds, above zero; ``math.inf`` for no expiry. ``300``, ``300s``, ``5m``, ``1.5h``, ``none``."""
    value = text.strip().lower()
    if value in NO_EXPIRY:
        return math.inf
    match = DURATION.fullmatch(value)
    if not match:
        raise typer.BadParameter(f"{text!r} is not a duration: pass seconds (300), minutes (5m), hours (1h) or none")
    seconds = float(match["number"]) * DURATION_UNITS[match["unit"] or "s"]
    if seconds <= 0:
        raise typer.BadParameter(f"{text!r} is no time at all: a TTL must be above 0 (or none for no expiry)")
    return seconds


def size(text: str) -> int:
    """A count above zero: ``1000000``, ``1_000_000``, ``64k``, ``1M``, ``1.5M``, ``2G``, ``10MB``, ``64KiB``."""
    value = text.strip().lower()
    match = SIZE.fullmatch(value)
    if not match or (match["binary"] and match["unit"] in ("", "b")):
        raise typer.BadParameter(f"{text!r} is not a size: pass a number such as 1000000, 64k, 1M or 2G")
    number = float(match["number"].replace("_", ""))
    unit = 1024 ** "kmgt".index(match["unit"]) * 1024 if match["binary"] else SIZE_UNITS[match["unit"]]
    amount = math.floor(number * unit)
    if amount <= 0:
        raise typer.BadParameter(f"{text!r} is nothing: pass a size above 0")
    return amount


def sizes(text: str) -> tuple[int, ...]:
    """Comma-separated sizes, at least one: ``1M,3M,10M``."""
    items = [item for item in text.split(",") if item.strip()]
    if not items:
        raise typer.BadParameter(f"{text!r} lists no size: pass sizes separated by commas, e.g. 1M,3M,10M")
    return tuple(size(item) for item in items)

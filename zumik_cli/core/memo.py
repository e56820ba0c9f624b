"""A bounded memo for the work that agent traffic repeats on every call (the history it resends).

Readers and ingest see the same tool definitions, messages and blocks again and again; remembering what they
computed for a key turns that repeated work into a dictionary lookup. Memory stays bounded whatever the input:
two generations of at most ``limit`` entries (or ``weight_limit`` units of weight, e.g. characters), the older
dropped whole when the newer fills, and a hit in the older promoted, so what is still being resent stays.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")
MISSING = object()


class Memo(Generic[V]):
    """Remember values by key; forget the least recently used generation when full."""

    __slots__ = ("limit", "weight_limit", "weight", "new", "old")

    def __init__(self, limit: int, weight_limit: int | None = None) -> None:
        self.limit = limit
        self.weight_limit = weight_limit
        self.weight = 0
        self.new: dict[Hashable, V] = {}
        self.old: dict[Hashable, V] = {}

    def get(self, key: Hashable) -> V | object:
        """The value remembered for ``key``, or ``MISSING``."""
        value = self.new.get(key, MISSING)
        if value is MISSING:
            value = self.old.get(key, MISSING)
            if value is not MISSING:
                self.put(key, value)  # type: ignore[arg-type]
        return value

    def put(self, key: Hashable, value: V, weight: int = 0) -> None:
        if len(self.new) >= self.limit or (self.weight_limit is not None and self.weight >= self.weight_limit):
            self.old, self.new, self.weight = self.new, {}, 0
        self.new[key] = value
        self.weight += weight

    def __len__(self) -> int:
        return len(self.new) + len(self.old)

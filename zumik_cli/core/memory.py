"""Freed memory handed back to the system between the steps of one run.

Arrow's pool and glibc's malloc keep what a step freed for later allocations of the same kind. A run whose next
step allocates differently (ingest's many buffers of a few megabytes, then the waterfall's few large arrays) would
otherwise carry the first step's high-water mark under the second's peak: after ingesting 1M Mooncake requests
about 300 MB is held that way. Releasing changes no result; where the C library has no ``malloc_trim`` (musl,
macOS) only Arrow's pool is released.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from typing import Any

import pyarrow as pa


@functools.cache
def _malloc_trim() -> Callable[[int], Any] | None:
    try:
        trim: Callable[[int], Any] = ctypes.CDLL(None).malloc_trim  # the C library this process runs on
    except (OSError, AttributeError, TypeError):
        return None
    return trim


def release_freed() -> None:
    """Give the memory that Arrow's pool and the C heap hold free back to the system."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)

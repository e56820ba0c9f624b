"""BLAKE2b over millions of short messages at once, for the ids of content-free (hash-id) traces.

A million-request Mooncake trace carries about 30 million hash ids; ``identity`` hashes one message at a time
through ``hashlib``, which costs a microsecond of interpreter time per id. These functions compute the very same
digests (RFC 7693 BLAKE2b, unkeyed, any digest size up to 64 bytes) for a whole array in compiled code, so
``identity``'s ids stay byte for byte what they were: the tests hold every function here equal to ``hashlib``.
The message layout is ``identity._digest``'s: a fixed prefix (version tag and earlier parts, each length-
prefixed), then the decimal text of an integer, itself length-prefixed. Messages are compressed ``LANES`` at a
time, which the compiler vectorizes (``blake2b``, imported only for arrays that large), and large arrays are cut
into one slice per core, hashed side by side on plain threads (the kernels release the GIL); every message's digest
is its own, so no cut changes a result.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt

from zumik_cli.core.cpus import available_cpus

# A hand-off to another thread takes about as long as hashing a thousand messages (some 50 microseconds): a
# slice shorter than a few thousand gains little.
SLICE_MIN = 1 << 13


_cores = available_cpus  # the CPUs this process may use, not the machine's


@functools.cache
def _helpers() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(_cores() - 1, 1), thread_name_prefix="zumik-digest")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_helpers.cache_clear)  # a forked child has none of the parent's threads


def _sliced(hash_slice: Callable[[np.ndarray, np.ndarray], None], messages: np.ndarray, out: np.ndarray) -> None:
    """``hash_slice(messages, out)`` over one slice of rows per core; the caller hashes the first slice."""
    n = len(messages)
    slices = min(_cores(), n // SLICE_MIN)
    cuts = [n * k // slices for k in range(slices + 1)] if slices > 1 else [0, n]
    rest = [_helpers().submit(hash_slice, messages[a:b], out[a:b]) for a, b in zip(cuts[1:-1], cuts[2:], strict=True)]
    try:
        hash_slice(messages[: cuts[1]], out[: cuts[1]])
    finally:
        for future in rest:  # no slice may still be writing into ``out`` once this returns, even on an error
            future.result()


# Below this many messages hashlib does the work: a few tens of milliseconds at most, where the compiled kernels
# cost about 20 s to compile on a fresh install (then a fraction of a second to load from numba's cache on
# every run). Same digests either way: BLAKE2b is BLAKE2b.
COMPILED_MIN = 1 << 16
# Once a large array has loaded the compiled kernels, numba's start is paid and smaller arrays go compiled too:
# a million-request trace is read in chunks of some 50,000 requests, whose request, trace and materialization ids
# hashlib would otherwise take one message at a time (about 4 s of CPU at 1M requests).
LOADED_MIN = 1 << 10


def _compiled_for(n: int, large: bool) -> bool:
    # ``large``: the caller's whole job is large (a batch of a large trace), whatever this one array's size
    return n >= COMPILED_MIN or (n >= LOADED_MIN and (large or "zumik_cli.core.blake2b" in sys.modules))


def digest_decimals(prefix: bytes, values: npt.ArrayLike, size: int, large: bool = False) -> npt.NDArray[np.uint8]:
    """BLAKE2b-``size`` of ``prefix + len(str(v)) (8 bytes LE) + str(v)`` for every int64 ``v``: one row each.

    ``large``: part of a job large enough to repay loading the compiled kernels, whatever this array's size."""
    array = np.ascontiguousarray(values, dtype=np.int64)
    if not _compiled_for(len(array), large):
        texts = (str(v).encode() for v in array.tolist())
        messages = (prefix + len(t).to_bytes(8, "little") + t for t in texts)
        return _hashed(messages, len(array), size)
    out = np.empty((len(array), size), dtype=np.uint8)
    head = np.frombuffer(prefix, dtype=np.uint8)
    from zumik_cli.core import blake2b

    _sliced(lambda part, into: blake2b._digest_decimals_kernel(head, part, into, blake2b._IV), array, out)
    return out


def digest_rows(rows: npt.NDArray[np.uint8], size: int, large: bool = False) -> npt.NDArray[np.uint8]:
    """BLAKE2b-``size`` of every row of a fixed-width byte matrix (``large``: as for ``digest_decimals``)."""
    matrix = np.ascontiguousarray(rows, dtype=np.uint8)
    if not _compiled_for(len(matrix), large):
        return _hashed((row.tobytes() for row in matrix), len(matrix), size)
    out = np.empty((len(matrix), size), dtype=np.uint8)
    from zumik_cli.core import blake2b

    _sliced(lambda part, into: blake2b._digest_rows_kernel(part, into, blake2b._IV), matrix, out)
    return out


def _hashed(messages: Iterable[bytes], count: int, size: int) -> npt.NDArray[np.uint8]:
    joined = b"".join(hashlib.blake2b(m, digest_size=size).digest() for m in messages)
    return np.frombuffer(joined, dtype=np.uint8).reshape(count, size).copy()


def as_int64(digests: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """8-byte digests as the signed little-endian integers ``identity.int64_id`` returns."""
    return np.ascontiguousarray(digests).view("<i8").reshape(-1).astype(np.int64, copy=False)


# every byte's two hex digits, as the little-endian 16-bit word whose first byte is the first digit
_HEX_PAIRS = np.array([ord(f"{b:02x}"[0]) | ord(f"{b:02x}"[1]) << 8 for b in range(256)], dtype="<u2")


def as_hex(prefix: str, digests: npt.NDArray[np.uint8]) -> npt.NDArray[np.bytes_]:
    """Digests as ``prefix + hex`` ids (``identity.hex_id``), as fixed-width ASCII bytes, one per row."""
    n, size = digests.shape
    text = np.empty((n, len(prefix) + 2 * size), dtype=np.uint8)
    text[:, : len(prefix)] = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    text[:, len(prefix) :] = _HEX_PAIRS[digests].view(np.uint8).reshape(n, 2 * size)
    return text.view(f"S{text.shape[1]}").reshape(-1)

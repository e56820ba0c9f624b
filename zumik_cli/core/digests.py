"""BLAKE2b over millions of short messages at once, for the ids of content-free (hash-id) traces.

A million-request Mooncake trace carries about 30 million hash ids; ``identity`` hashes one message at a time
through ``hashlib``, which costs a microsecond of interpreter time per id. These functions compute the very same
digests (RFC 7693 BLAKE2b, unkeyed, any digest size up to 64 bytes) for a whole array in compiled code, so
``identity``'s ids stay byte for byte what they were: the tests hold every function here equal to ``hashlib``.
The message layout is ``identity._digest``'s: a fixed prefix (version tag and earlier parts, each length-
prefixed), then the decimal text of an integer, itself length-prefixed. Messages are compressed ``LANES`` at a
time, which the compiler vectorizes, and large arrays are cut into one slice per core, hashed side by side on
plain threads (the kernels release the GIL); every message's digest is its own, so no cut changes a result.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from zumik_cli.core.cpus import available_cpus


def _jit(func: Any = None, **options: Any) -> Any:
    if func is None:
        return lambda f: numba.njit(cache=True, nogil=True, **options)(f)
    return numba.njit(cache=True, nogil=True)(func)


_IV = np.array(
    [
        0x6A09E667F3BCC908,
        0xBB67AE8584CAA73B,
        0x3C6EF372FE94F82B,
        0xA54FF53A5F1D36F1,
        0x510E527FADE682D1,
        0x9B05688C2B3E6C1F,
        0x1F83D9ABFB41BD6B,
        0x5BE0CD19137E2179,
    ],
    dtype=np.uint64,
)
_SIGMA = np.array(
    [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
        [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
        [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
        [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
        [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
        [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
        [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
        [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
        [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
    ],
    dtype=np.int64,
)
_MAX_DIGITS = 20  # "-9223372036854775808"


@_jit(inline="always")
def _rotr(x: Any, n: int) -> Any:
    return (x >> np.uint64(n)) | (x << np.uint64(64 - n))


@_jit(inline="always")
def _g(a: Any, b: Any, c: Any, d: Any, x: Any, y: Any) -> tuple[Any, Any, Any, Any]:
    a = a + b + x
    d = _rotr(d ^ a, 32)
    c = c + d
    b = _rotr(b ^ c, 24)
    a = a + b + y
    d = _rotr(d ^ a, 16)
    c = c + d
    b = _rotr(b ^ c, 63)
    return a, b, c, d


LANES = 64  # messages compressed side by side: the compiler turns the loop over them into SIMD instructions
# The rows of the lanes' working array, row r of a lane at ``[r * LANES + lane]``: the chaining state (8 words),
# the block being compressed (16 words), the byte count so far, all ones on the lane's last block, all ones
# where the lane has this block at all (a shorter message keeps its state).
_STATE, _BLOCK, _COUNTER, _FINAL, _ACTIVE = 0, 8, 24, 25, 26
_ROWS = 27


def _compress_source() -> str:
    # BLAKE2b's twelve rounds unrolled with the message schedule as constants, inside one loop over the lanes:
    # a lane's state stays in registers and the compiler vectorizes the loop, one lane per SIMD slot (with
    # AVX-512, a third of the time per message of compressing them one by one); rows at constant strides are
    # what lets it.
    def at(row: int) -> str:
        return f"lanes[{row * LANES} + lane]"

    lines = [
        "def _compress_lanes(lanes, count, iv):",
        "    " + ", ".join(f"i{i}" for i in range(8)) + " = " + ", ".join(f"iv[{i}]" for i in range(8)),
        "    for lane in range(count):",
        "        " + ", ".join(f"h{i}" for i in range(8)) + " = " + ", ".join(at(_STATE + i) for i in range(8)),
        "        " + ", ".join(f"m{i}" for i in range(16)) + " = " + ", ".join(at(_BLOCK + i) for i in range(16)),
        "        v0, v1, v2, v3, v4, v5, v6, v7 = h0, h1, h2, h3, h4, h5, h6, h7",
        "        v8, v9, v10, v11, v13, v15 = i0, i1, i2, i3, i5, i7",
        f"        v12 = i4 ^ {at(_COUNTER)}",
        f"        v14 = i6 ^ {at(_FINAL)}",
    ]
    columns = ((0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15))
    diagonals = ((0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14))
    for r in range(12):
        s = _SIGMA[r]
        for k, (a, b, c, d) in enumerate(columns + diagonals):
            x, y = s[2 * k], s[2 * k + 1]
            lines.append(f"        v{a}, v{b}, v{c}, v{d} = _g(v{a}, v{b}, v{c}, v{d}, m{x}, m{y})")
    lines += [f"        {at(_STATE + i)} = h{i} ^ ((v{i} ^ v{i + 8}) & {at(_ACTIVE)})" for i in range(8)]
    return "\n".join(lines) + "\n"


_namespace: dict[str, Any] = {"np": np, "_g": _g}
exec(compile(_compress_source(), "<zumik_cli.core.digests._compress_lanes>", "exec"), _namespace)  # noqa: S102
_compress_lanes = numba.njit(nogil=True)(_namespace["_compress_lanes"])  # generated code: numba cannot cache it alone


@_jit
def _hash_lanes(msg: Any, lengths: Any, count: int, out: Any, iv: Any, lanes: Any) -> None:
    # The messages ``msg[lane, :lengths[lane]]`` (rows zero-padded to whole 128-byte blocks) of the first
    # ``count`` lanes, their digests into ``out[lane]``; ``lanes`` is the working array.
    size = out.shape[1]
    words = msg.view(np.uint64)  # little-endian, as BLAKE2b reads them (x86 and ARM alike)
    for i in range(8):
        start = iv[i] ^ (np.uint64(0x01010000) ^ np.uint64(size) if i == 0 else np.uint64(0))
        lanes[(_STATE + i) * LANES : (_STATE + i + 1) * LANES] = start
    blocks = 1
    for lane in range(count):
        blocks = max(blocks, (lengths[lane] + 127) // 128)
    ones = ~np.uint64(0)
    for b in range(blocks):
        for lane in range(count):
            own = max((lengths[lane] + 127) // 128, 1)
            last = b == own - 1
            lanes[_COUNTER * LANES + lane] = np.uint64(lengths[lane] if last else (b + 1) * 128)
            lanes[_FINAL * LANES + lane] = ones if last else np.uint64(0)
            lanes[_ACTIVE * LANES + lane] = ones if b < own else np.uint64(0)
            if b < own:
                for k in range(16):
                    lanes[(_BLOCK + k) * LANES + lane] = words[lane, b * 16 + k]
        _compress_lanes(lanes, count, iv)
    for lane in range(count):
        for i in range(size):
            out[lane, i] = np.uint8(
                (lanes[(_STATE + i // 8) * LANES + lane] >> np.uint64(8 * (i % 8))) & np.uint64(0xFF)
            )


@_jit
def _digest_decimals_kernel(prefix: Any, values: Any, out: Any, iv: Any) -> None:
    # Each message: prefix, then the 8-byte little-endian length of the decimal text, then the text.
    n = values.shape[0]
    p = prefix.shape[0]
    width = ((p + 8 + _MAX_DIGITS + 127) // 128) * 128
    msg = np.zeros((LANES, width), dtype=np.uint8)
    for lane in range(LANES):
        msg[lane, :p] = prefix
    lengths = np.empty(LANES, dtype=np.int64)
    lanes = np.zeros(_ROWS * LANES, dtype=np.uint64)
    digits = np.empty(_MAX_DIGITS, dtype=np.uint8)
    for first in range(0, n, LANES):
        count = min(LANES, n - first)
        for lane in range(count):
            value = values[first + lane]
            negative = value < 0
            # int64's minimum has no positive counterpart: take the magnitude in uint64
            mag = np.uint64(-(value + 1)) + np.uint64(1) if negative else np.uint64(value)
            digit_count = 0
            while True:
                digits[digit_count] = np.uint8(48 + (mag % np.uint64(10)))
                mag = mag // np.uint64(10)
                digit_count += 1
                if mag == 0:
                    break
            length = digit_count + (1 if negative else 0)
            row = msg[lane]
            for k in range(8):
                row[p + k] = np.uint8((length >> (8 * k)) & 0xFF)
            pos = p + 8
            if negative:
                row[pos] = np.uint8(45)
                pos += 1
            for k in range(digit_count):
                row[pos + k] = digits[digit_count - 1 - k]
            end = pos + digit_count
            row[end:] = 0
            lengths[lane] = end
        _hash_lanes(msg, lengths, count, out[first : first + count], iv, lanes)


@_jit
def _digest_rows_kernel(rows: Any, out: Any, iv: Any) -> None:
    # Each message is one row of a fixed-width byte matrix.
    n, w = rows.shape
    width = max(((w + 127) // 128) * 128, 128)
    msg = np.zeros((LANES, width), dtype=np.uint8)
    lengths = np.full(LANES, w, dtype=np.int64)
    lanes = np.zeros(_ROWS * LANES, dtype=np.uint64)
    for first in range(0, n, LANES):
        count = min(LANES, n - first)
        msg[:count, :w] = rows[first : first + count]
        _hash_lanes(msg, lengths, count, out[first : first + count], iv, lanes)


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


def digest_decimals(prefix: bytes, values: npt.ArrayLike, size: int) -> npt.NDArray[np.uint8]:
    """BLAKE2b-``size`` of ``prefix + len(str(v)) (8 bytes LE) + str(v)`` for every int64 ``v``: one row each."""
    array = np.ascontiguousarray(values, dtype=np.int64)
    if len(array) < COMPILED_MIN:
        texts = (str(v).encode() for v in array.tolist())
        messages = (prefix + len(t).to_bytes(8, "little") + t for t in texts)
        return _hashed(messages, len(array), size)
    out = np.empty((len(array), size), dtype=np.uint8)
    head = np.frombuffer(prefix, dtype=np.uint8)
    _sliced(lambda part, into: _digest_decimals_kernel(head, part, into, _IV), array, out)
    return out


def digest_rows(rows: npt.NDArray[np.uint8], size: int) -> npt.NDArray[np.uint8]:
    """BLAKE2b-``size`` of every row of a fixed-width byte matrix."""
    matrix = np.ascontiguousarray(rows, dtype=np.uint8)
    if len(matrix) < COMPILED_MIN:
        return _hashed((row.tobytes() for row in matrix), len(matrix), size)
    out = np.empty((len(matrix), size), dtype=np.uint8)
    _sliced(lambda part, into: _digest_rows_kernel(part, into, _IV), matrix, out)
    return out


def _hashed(messages: Iterable[bytes], count: int, size: int) -> npt.NDArray[np.uint8]:
    joined = b"".join(hashlib.blake2b(m, digest_size=size).digest() for m in messages)
    return np.frombuffer(joined, dtype=np.uint8).reshape(count, size).copy()


def as_int64(digests: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """8-byte digests as the signed little-endian integers ``identity.int64_id`` returns."""
    return np.ascontiguousarray(digests).view("<i8").reshape(-1).astype(np.int64, copy=False)


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def as_hex(prefix: str, digests: npt.NDArray[np.uint8]) -> npt.NDArray[np.bytes_]:
    """Digests as ``prefix + hex`` ids (``identity.hex_id``), as fixed-width ASCII bytes, one per row."""
    n, size = digests.shape
    text = np.empty((n, len(prefix) + 2 * size), dtype=np.uint8)
    text[:, : len(prefix)] = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    text[:, len(prefix) :: 2] = _HEX[digests >> 4]
    text[:, len(prefix) + 1 :: 2] = _HEX[digests & 15]
    return text.view(f"S{text.shape[1]}").reshape(-1)

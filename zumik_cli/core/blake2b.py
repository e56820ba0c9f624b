"""BLAKE2b compiled: many short messages compressed side by side, for ``digests`` on large arrays.

The very same digests as ``hashlib`` (RFC 7693 BLAKE2b, unkeyed, any digest size up to 64 bytes): the tests hold
them equal. Messages are compressed ``LANES`` at a time, which the compiler vectorizes. Apart from ``digests``
because importing numba and loading these kernels costs a third of a second, which a small input need not pay.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np


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
exec(compile(_compress_source(), "<zumik_cli.core.blake2b._compress_lanes>", "exec"), _namespace)  # noqa: S102
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

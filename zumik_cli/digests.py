"""BLAKE2b over millions of short messages at once, for the ids of content-free (hash-id) traces.

A million-request Mooncake trace carries about 30 million hash ids; ``identity`` hashes one message at a time
through ``hashlib``, which costs a microsecond of interpreter time per id. These functions compute the very same
digests (RFC 7693 BLAKE2b, unkeyed, any digest size up to 64 bytes) for a whole array in compiled code, so
``identity``'s ids stay byte for byte what they were: the tests hold every function here equal to ``hashlib``.
The message layout is ``identity._digest``'s: a fixed prefix (version tag and earlier parts, each length-
prefixed), then the decimal text of an integer, itself length-prefixed.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import numpy.typing as npt


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


def _compress_source() -> str:
    # BLAKE2b's twelve rounds unrolled with the message schedule as constants, so that the whole state and the
    # block stay in registers: about twice as fast as indexing the schedule at run time.
    lines = [
        "def _compress(h, m, counter, last, iv):",
        "    " + ", ".join(f"m{i}" for i in range(16)) + " = " + ", ".join(f"m[{i}]" for i in range(16)),
        "    v0, v1, v2, v3, v4, v5, v6, v7 = h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]",
        "    v8, v9, v10, v11, v13, v15 = iv[0], iv[1], iv[2], iv[3], iv[5], iv[7]",
        "    v12 = iv[4] ^ np.uint64(counter)",
        "    v14 = ~iv[6] if last else iv[6]",
    ]
    columns = ((0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15))
    diagonals = ((0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14))
    for r in range(12):
        s = _SIGMA[r]
        for k, (a, b, c, d) in enumerate(columns + diagonals):
            x, y = s[2 * k], s[2 * k + 1]
            lines.append(f"    v{a}, v{b}, v{c}, v{d} = _g(v{a}, v{b}, v{c}, v{d}, m{x}, m{y})")
    lines += [f"    h[{i}] ^= v{i} ^ v{i + 8}" for i in range(8)]
    return "\n".join(lines) + "\n"


_namespace: dict[str, Any] = {"np": np, "_g": _g}
exec(compile(_compress_source(), "<zumik_cli.digests._compress>", "exec"), _namespace)  # noqa: S102
_compress = numba.njit(nogil=True)(_namespace["_compress"])  # generated code: numba cannot cache it alone


@_jit
def _hash_into(msg: Any, length: int, size: int, out: Any, iv: Any, sigma: Any, h: Any) -> None:
    # One message (``msg[:length]``, zero-padded to whole 128-byte blocks) into ``out[:size]``.
    for i in range(8):
        h[i] = iv[i]
    h[0] ^= np.uint64(0x01010000) ^ np.uint64(size)
    words = msg.view(np.uint64)  # little-endian, as BLAKE2b reads them (x86 and ARM alike)
    blocks = max((length + 127) // 128, 1)
    for b in range(blocks):
        last = b == blocks - 1
        counter = length if last else (b + 1) * 128
        _compress(h, words[b * 16 : (b + 1) * 16], counter, last, iv)
    for i in range(size):
        out[i] = np.uint8((h[i // 8] >> np.uint64(8 * (i % 8))) & np.uint64(0xFF))


@_jit
def _digest_decimals_kernel(prefix: Any, values: Any, size: int, iv: Any, sigma: Any) -> Any:
    # Each message: prefix, then the 8-byte little-endian length of the decimal text, then the text.
    n = values.shape[0]
    out = np.empty((n, size), dtype=np.uint8)
    width = ((prefix.shape[0] + 8 + 20 + 127) // 128) * 128
    msg = np.zeros(width, dtype=np.uint8)
    msg[: prefix.shape[0]] = prefix
    digits = np.empty(20, dtype=np.uint8)
    h = np.empty(8, dtype=np.uint64)
    p = prefix.shape[0]
    for j in range(n):
        value = values[j]
        negative = value < 0
        # int64's minimum has no positive counterpart: take the magnitude in uint64
        mag = np.uint64(-(value + 1)) + np.uint64(1) if negative else np.uint64(value)
        count = 0
        while True:
            digits[count] = np.uint8(48 + (mag % np.uint64(10)))
            mag = mag // np.uint64(10)
            count += 1
            if mag == 0:
                break
        length = count + (1 if negative else 0)
        for k in range(8):
            msg[p + k] = np.uint8((length >> (8 * k)) & 0xFF)
        pos = p + 8
        if negative:
            msg[pos] = np.uint8(45)
            pos += 1
        for k in range(count):
            msg[pos + k] = digits[count - 1 - k]
        end = pos + count
        for k in range(end, width):
            msg[k] = 0
        _hash_into(msg, end, size, out[j], iv, sigma, h)
    return out


@_jit
def _digest_rows_kernel(rows: Any, size: int, iv: Any, sigma: Any) -> Any:
    # Each message is one row of a fixed-width byte matrix.
    n, w = rows.shape
    out = np.empty((n, size), dtype=np.uint8)
    width = max(((w + 127) // 128) * 128, 128)
    msg = np.zeros(width, dtype=np.uint8)
    h = np.empty(8, dtype=np.uint64)
    for j in range(n):
        msg[:w] = rows[j]
        _hash_into(msg, w, size, out[j], iv, sigma, h)
    return out


def digest_decimals(prefix: bytes, values: npt.ArrayLike, size: int) -> npt.NDArray[np.uint8]:
    """BLAKE2b-``size`` of ``prefix + len(str(v)) (8 bytes LE) + str(v)`` for every int64 ``v``: one row each."""
    array = np.ascontiguousarray(values, dtype=np.int64)
    return _digest_decimals_kernel(np.frombuffer(prefix, dtype=np.uint8), array, size, _IV, _SIGMA)  # type: ignore[no-any-return]


def digest_rows(rows: npt.NDArray[np.uint8], size: int) -> npt.NDArray[np.uint8]:
    """BLAKE2b-``size`` of every row of a fixed-width byte matrix."""
    return _digest_rows_kernel(np.ascontiguousarray(rows, dtype=np.uint8), size, _IV, _SIGMA)  # type: ignore[no-any-return]


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

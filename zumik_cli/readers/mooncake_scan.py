"""A compiled reader of plain Mooncake lines, for the million-request traces that ingest reads by the chunk.

``scan_mooncake`` takes a chunk's bytes straight to the arrays ``HashColumns`` holds. It accepts only the plain
shape: one object a line, whose keys are timestamp, input_length, hash_ids and optionally output_length, each at
most once, with integer values (a timestamp may also be a short decimal), and JSON whitespace. On anything else
(strings, escapes, other keys, exponents, long numbers, blank lines) it declines, and the chunk goes the way it
went before. What it accepts it reads exactly as the per-record reader does, float rounding and ``-0`` included.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import pyarrow as pa

from zumik_cli.readers.hashid import MooncakeArrays

_SPACE, _TAB, _CR, _NEWLINE = ord(" "), ord("\t"), ord("\r"), ord("\n")
_COLON, _COMMA = ord(":"), ord(",")
_OPEN, _CLOSE, _OPEN_LIST, _CLOSE_LIST = ord("{"), ord("}"), ord("["), ord("]")
_MINUS, _DOT, _ZERO, _NINE = ord("-"), ord("."), ord("0"), ord("9")
_END = -1  # what ``_byte`` reads past the end of the chunk: equal to no byte

_TIMESTAMP, _INPUT, _OUTPUT, _IDS = 1, 2, 4, 8
_REQUIRED = _TIMESTAMP | _INPUT | _IDS
_TIMESTAMP_KEY, _INPUT_KEY, _OUTPUT_KEY, _IDS_KEY = (
    np.frombuffer(name, dtype=np.uint8)
    for name in (b'"timestamp"', b'"input_length"', b'"output_length"', b'"hash_ids"')
)
_NULL = np.frombuffer(b"null", dtype=np.uint8)

# Every integer up to 2**53 and every power of ten up to 1e22 is exact in a float64, so one division of the two
# is the correctly rounded value of the decimal: the float the JSON parsers of the other paths give.
_EXACT_MANTISSA = 1 << 53
_POWERS_OF_TEN = np.array([10.0**k for k in range(23)], dtype=np.float64)
# -922337203685477580 * 10 - 8 is the smallest int64; any step past it overflows
_LIMIT_TENTH, _LIMIT_LAST_DIGIT = -922337203685477580, 8
_DECLINED = -1  # a position no parse step returns: the chunk is not plain


def scan_mooncake(chunk: bytes, lines: int) -> MooncakeArrays | None:
    """The chunk's ``lines`` lines read as plain Mooncake records, or None where any line is not plain."""
    ok, timestamps, input_length, output_length, output_known, offsets, hash_ids = _scan(
        np.frombuffer(chunk, dtype=np.uint8), lines
    )
    if not ok:
        return None
    return MooncakeArrays(
        timestamps=timestamps,
        input_length=input_length,
        output_length=pa.array(output_length, type=pa.int64(), mask=~output_known),
        offsets=offsets,
        hash_ids=hash_ids,
    )


def _jit(**options: Any) -> Any:
    return numba.njit(cache=True, nogil=True, **options)


@_jit(inline="always")
def _byte(buf: Any, i: int) -> int:
    return int(buf[i]) if i < len(buf) else _END


@_jit(inline="always")
def _skip_space(buf: Any, i: int) -> int:
    """Past JSON whitespace within the line (a newline ends the record, so it is not skipped)."""
    while i < len(buf) and (buf[i] == _SPACE or buf[i] == _TAB or buf[i] == _CR):
        i += 1
    return i


@_jit(inline="always")
def _integer(buf: Any, i: int) -> tuple[int, int]:
    """A JSON integer that fits an int64, and the position after it; ``_DECLINED`` for anything else."""
    negative = _byte(buf, i) == _MINUS
    if negative:
        i += 1
    start = i
    value = 0
    while i < len(buf):
        digit = int(buf[i]) - _ZERO
        if digit < 0 or digit > 9:
            break
        value = value * 10 + digit
        i += 1
    digits = i - start
    if digits == 0 or (digits > 1 and buf[start] == _ZERO):
        return 0, _DECLINED  # no digits, or a leading zero JSON forbids
    if digits > 18:
        return _long_integer(buf, start, negative)  # one that may not fit: read again, with care
    return (-value if negative else value), i


@_jit()
def _long_integer(buf: Any, start: int, negative: bool) -> tuple[int, int]:
    """The digits at ``start`` as an int64, or ``_DECLINED`` where they do not fit one.

    They accumulate negatively, so that the smallest int64 (which has no positive twin) reads too.
    """
    i = start
    value = 0
    while _ZERO <= _byte(buf, i) <= _NINE:
        digit = int(buf[i]) - _ZERO
        if value < _LIMIT_TENTH or (value == _LIMIT_TENTH and digit > _LIMIT_LAST_DIGIT):
            return 0, _DECLINED
        value = value * 10 - digit
        i += 1
    if negative:
        return value, i
    if value == _LIMIT_TENTH * 10 - _LIMIT_LAST_DIGIT:
        return 0, _DECLINED
    return -value, i


@_jit(inline="always")
def _decimal(buf: Any, i: int) -> tuple[float, int]:
    """A JSON integer or plain decimal (no exponent) as the float JSON parsers give, or ``_DECLINED``.

    Only what converts exactly by one division is taken: at most 2**53 as digits, at most 22 after the point.
    """
    negative = _byte(buf, i) == _MINUS
    if negative:
        i += 1
    start = i
    mantissa = 0
    while _ZERO <= _byte(buf, i) <= _NINE:
        mantissa = mantissa * 10 + int(buf[i]) - _ZERO
        if mantissa > _EXACT_MANTISSA:
            return 0.0, _DECLINED
        i += 1
    if i == start or (buf[start] == _ZERO and i - start > 1):
        return 0.0, _DECLINED
    if _byte(buf, i) != _DOT:
        # an integer: -0 is the integer 0, whose float is +0.0
        return float(-mantissa if negative else mantissa), i
    i += 1
    fraction = i
    while _ZERO <= _byte(buf, i) <= _NINE:
        mantissa = mantissa * 10 + int(buf[i]) - _ZERO
        if mantissa > _EXACT_MANTISSA or i - fraction >= 22:
            return 0.0, _DECLINED
        i += 1
    if i == fraction:
        return 0.0, _DECLINED
    value = float(mantissa) / _POWERS_OF_TEN[i - fraction]
    return (-value if negative else value), i


@_jit(inline="always")
def _key(buf: Any, i: int) -> tuple[int, int]:
    """Which of the four keys starts at ``i``, quotes included, and the position after it; ``_DECLINED`` if none.

    Their names hold no quote or backslash, so a match is the whole key, never the start of a longer one.
    """
    if _starts(buf, i, _TIMESTAMP_KEY):
        return _TIMESTAMP, i + len(_TIMESTAMP_KEY)
    if _starts(buf, i, _INPUT_KEY):
        return _INPUT, i + len(_INPUT_KEY)
    if _starts(buf, i, _OUTPUT_KEY):
        return _OUTPUT, i + len(_OUTPUT_KEY)
    if _starts(buf, i, _IDS_KEY):
        return _IDS, i + len(_IDS_KEY)
    return 0, _DECLINED


@_jit(inline="always")
def _starts(buf: Any, i: int, word: Any) -> bool:
    if i + len(word) > len(buf):
        return False
    j = 0
    while j < len(word) and buf[i + j] == word[j]:
        j += 1
    return j == len(word)


@_jit(inline="always")
def _hash_ids(buf: Any, i: int, ids: Any, n_ids: int) -> tuple[int, int]:
    """The list of ids at ``i`` appended to ``ids[:n_ids]``: the position after it and the new count of ids."""
    if _byte(buf, i) != _OPEN_LIST:
        return _DECLINED, n_ids
    i = _skip_space(buf, i + 1)
    if _byte(buf, i) == _CLOSE_LIST:
        return i + 1, n_ids
    while True:
        value, i = _integer(buf, i)
        if i == _DECLINED or n_ids == len(ids):
            return _DECLINED, n_ids
        ids[n_ids] = value
        n_ids += 1
        if _byte(buf, i) == _COMMA:  # the usual ", ": on to the next id at once
            i = _skip_space(buf, i + 1)
            continue
        i = _skip_space(buf, i)
        if _byte(buf, i) == _CLOSE_LIST:
            return i + 1, n_ids
        if _byte(buf, i) != _COMMA:
            return _DECLINED, n_ids
        i = _skip_space(buf, i + 1)


@_jit()
def _scan(buf: Any, lines: int) -> tuple[bool, Any, Any, Any, Any, Any, Any]:
    """Whether every one of the ``lines`` lines is plain, then the arrays (output lengths as values and knowns)."""
    timestamps = np.empty(lines, dtype=np.float64)
    input_length = np.empty(lines, dtype=np.int64)
    output_length = np.zeros(lines, dtype=np.int64)
    output_known = np.zeros(lines, dtype=np.bool_)
    offsets = np.zeros(lines + 1, dtype=np.int64)
    commas = 0
    for byte in buf:
        commas += byte == _COMMA
    ids = np.empty(commas + lines, dtype=np.int64)  # an id is followed by a comma or ends its line's one list
    declined = (False, timestamps, input_length, output_length, output_known, offsets, ids[:0])
    n_ids = 0
    row = 0
    i = 0
    while i < len(buf):
        if row == lines:
            return declined
        i = _skip_space(buf, i)
        if _byte(buf, i) != _OPEN:
            return declined  # a blank line, a BOM, or a value that is not an object
        i = _skip_space(buf, i + 1)
        seen = 0
        while True:
            key, i = _key(buf, i)
            if i == _DECLINED or seen & key:
                return declined  # not one of the four keys, or one of them twice
            seen |= key
            i = _skip_space(buf, i)
            if _byte(buf, i) != _COLON:
                return declined
            i = _skip_space(buf, i + 1)
            if key == _TIMESTAMP:
                milliseconds, i = _decimal(buf, i)
                timestamps[row] = milliseconds / 1000.0
            elif key == _INPUT:
                value, i = _integer(buf, i)
                if value < 0:
                    return declined
                input_length[row] = value
            elif key == _OUTPUT:
                if _starts(buf, i, _NULL):
                    i += len(_NULL)
                else:
                    value, i = _integer(buf, i)
                    # a negative output length is not a count: unknown, as the per-record reader has it
                    output_length[row] = value
                    output_known[row] = value >= 0
            else:
                i, n_ids = _hash_ids(buf, i, ids, n_ids)
            if i == _DECLINED:
                return declined
            i = _skip_space(buf, i)
            if _byte(buf, i) == _CLOSE:
                break
            if _byte(buf, i) != _COMMA:
                return declined
            i = _skip_space(buf, i + 1)
        if seen & _REQUIRED != _REQUIRED:
            return declined
        i = _skip_space(buf, i + 1)
        if i < len(buf):
            if buf[i] != _NEWLINE:
                return declined  # more than one value on the line
            i += 1
        row += 1
        offsets[row] = n_ids
    if row != lines:
        return declined
    return True, timestamps, input_length, output_length, output_known, offsets, ids[:n_ids]

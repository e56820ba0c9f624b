"""The compiled Mooncake scanner: what it accepts it reads as the per-record reader does; anything else it declines.

The per-record reader (``hashid._mooncake`` behind ``parse_json_line``) is the reference. Rows are compared with
their timestamps as ``float.hex``, so that a negative zero or a difference in the last bit shows.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zumik_cli.core.model import Quarantined, Request, Source
from zumik_cli.readers import Sample, convert_guarded, hashid, parse_json_line
from zumik_cli.readers.fields import EARLIEST, LATEST
from zumik_cli.readers.hashid import MOONCAKE, HashColumns, _mooncake, _mooncake_arrays
from zumik_cli.readers.mooncake_scan import MooncakeArrays, scan_mooncake

Row = tuple[int, str, int, int | None, tuple[int, ...]]  # line, timestamp (hex), input length, output length, ids

MIN_INT64, MAX_INT64 = -(2**63), 2**63 - 1
EARLIEST_MS, LATEST_MS = int(EARLIEST) * 1000, int(LATEST) * 1000
PLAIN = b'{"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [46, 47, 48]}'
SCOPE = "mooncake:trace.jsonl"


@pytest.fixture(autouse=True)
def _scanned_whatever_the_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """The files here are small: the scanner reads them all the same (Arrow reads small traces otherwise)."""
    monkeypatch.setattr(hashid, "SCAN_MIN_BYTES", 0)


def lines_of(chunk: bytes) -> int:
    """How many lines the columns reader counts in a chunk."""
    return chunk.count(b"\n") + (0 if chunk.endswith(b"\n") else 1)


def per_record(chunk: bytes) -> list[Row] | None:
    """The rows the per-record reader gives for the chunk's lines; None if it skips or quarantines any line."""
    rows = []
    for number, line in enumerate(chunk.split(b"\n")[: lines_of(chunk)], start=1):
        if not line.strip():
            return None
        value = parse_json_line(Path("trace.jsonl"), number, line)
        if isinstance(value, Quarantined):
            return None
        (item,) = convert_guarded(lambda r, s: _mooncake(r, s, SCOPE), value, Source("trace.jsonl", number))
        if not isinstance(item, Request):
            return None
        rows.append(row_of(item))
    return rows


def row_of(request: Request) -> Row:
    blocks = request.hash_blocks
    assert blocks is not None and request.timestamp is not None
    timestamp = request.timestamp.hex()
    return request.source.line, timestamp, blocks.input_length, request.usage.output_tokens, blocks.hash_ids


def rows_of(arrays: MooncakeArrays | HashColumns) -> list[Row]:
    """Rows of the scanner's arrays (lines from 1) or of the columns reader's batch (its own line numbers)."""
    lines = arrays.lines.tolist() if isinstance(arrays, HashColumns) else range(1, len(arrays.timestamps) + 1)
    offsets, ids = arrays.offsets.tolist(), arrays.hash_ids.tolist()
    outputs = arrays.output_length.to_pylist()
    return [
        (line, float(arrays.timestamps[i]).hex(), int(arrays.input_length[i]), outputs[i], tuple(ids[a:b]))
        for i, (line, a, b) in enumerate(zip(lines, offsets, offsets[1:], strict=False))
    ]


def scanned(chunk: bytes) -> list[Row] | None:
    arrays = scan_mooncake(chunk, lines_of(chunk))
    return None if arrays is None else rows_of(arrays)


def in_range(rows: list[Row]) -> bool:
    return all(EARLIEST <= float.fromhex(timestamp) <= LATEST for _, timestamp, *_ in rows)


# --- hand-written lines -----------------------------------------------------------------------------------------

READ_ALIKE = {
    "a published line": PLAIN,
    "no spaces": b'{"timestamp":1,"input_length":2,"output_length":3,"hash_ids":[4,5]}',
    "keys in another order": b'{"hash_ids": [1], "output_length": 2, "input_length": 3, "timestamp": 4}',
    "no output length": b'{"timestamp": 1, "input_length": 2, "hash_ids": [3]}',
    "a null output length": b'{"timestamp": 1, "input_length": 2, "output_length": null, "hash_ids": [3]}',
    "a negative output length": b'{"timestamp": 1, "input_length": 2, "output_length": -7, "hash_ids": [3]}',
    "an output length of minus zero": b'{"timestamp": 1, "input_length": 2, "output_length": -0, "hash_ids": []}',
    "no hash ids": b'{"timestamp": 1, "input_length": 0, "hash_ids": []}',
    "an empty list with space": b'{"timestamp": 1, "input_length": 0, "hash_ids": [ \t ]}',
    "the int64 extremes as ids": b'{"timestamp": 1, "input_length": 9223372036854775807, '
    b'"hash_ids": [-9223372036854775808, 9223372036854775807, -0, 0, -1]}',
    "nineteen-digit ids": b'{"timestamp": 1, "input_length": 1, '
    b'"hash_ids": [1000000000000000000, -1000000000000000000, 1234567890123456789]}',
    "a decimal timestamp": b'{"timestamp": 27482.5, "input_length": 1, "hash_ids": [1]}',
    "a decimal that does not round trip": b'{"timestamp": 0.1, "input_length": 1, "hash_ids": [1]}',
    "a millisecond clock with decimals": b'{"timestamp": 1712345678901.123, "input_length": 1, "hash_ids": [1]}',
    "fifteen significant digits": b'{"timestamp": 123456789.012345, "input_length": 1, "hash_ids": [1]}',
    "twenty-two fraction digits": b'{"timestamp": 0.0000000000000000000001, "input_length": 1, "hash_ids": [1]}',
    "a timestamp of minus zero": b'{"timestamp": -0, "input_length": 1, "hash_ids": [1]}',
    "a timestamp of minus zero point zero": b'{"timestamp": -0.0, "input_length": 1, "hash_ids": [1]}',
    "a negative timestamp": b'{"timestamp": -1500.25, "input_length": 1, "hash_ids": [1]}',
    "the latest timestamp": b'{"timestamp": 253402300799000, "input_length": 1, "hash_ids": [1]}',
    "JSON whitespace everywhere": b' \t{ "timestamp" :\t1 ,\r"input_length"\t: 2 , "hash_ids" : [ 3 ,4 ] } \r',
}


@pytest.mark.parametrize("line", READ_ALIKE.values(), ids=READ_ALIKE.keys())
def test_the_scanner_reads_a_plain_line_exactly_as_the_per_record_reader_does(line: bytes) -> None:
    expected = per_record(line)

    assert expected is not None, "the reference reads the line"
    assert scanned(line) == expected
    assert scanned(line + b"\n") == expected
    assert scanned(b"\n".join([PLAIN, line, PLAIN]) + b"\n") == per_record(b"\n".join([PLAIN, line, PLAIN]))


def test_the_scanner_reads_crlf_lines_and_a_last_line_without_a_newline() -> None:
    chunk = PLAIN + b"\r\n" + PLAIN.replace(b"27482", b"27483") + b"\r\n" + PLAIN

    assert scanned(chunk) == per_record(chunk) and len(per_record(chunk) or []) == 3


DECLINED = {
    "a string timestamp": b'{"timestamp": "27482", "input_length": 1, "hash_ids": [1]}',
    "a string id": b'{"timestamp": 1, "input_length": 1, "hash_ids": ["1"]}',
    "an escaped key": b'{"time\\u0073tamp": 1, "input_length": 1, "hash_ids": [1]}',
    "an escaped quote in a key": b'{"timestamp\\"": 1, "timestamp": 1, "input_length": 1, "hash_ids": [1]}',
    "another key": b'{"timestamp": 1, "input_length": 1, "hash_ids": [1], "chat_id": 5}',
    "a block size": b'{"timestamp": 1, "input_length": 1, "hash_ids": [1], "block_size": 16}',
    "a key that starts like one of the four": b'{"timestamps": 1, "input_length": 1, "hash_ids": [1]}',
    "a nested object": b'{"timestamp": 1, "input_length": {"n": 1}, "hash_ids": [1]}',
    "a nested list": b'{"timestamp": 1, "input_length": 1, "hash_ids": [[1]]}',
    "an exponent": b'{"timestamp": 1e3, "input_length": 1, "hash_ids": [1]}',
    "a decimal exponent": b'{"timestamp": 1.5E3, "input_length": 1, "hash_ids": [1]}',
    "a decimal past 2**53": b'{"timestamp": 9007199254740.993, "input_length": 1, "hash_ids": [1]}',
    "an integer timestamp past 2**53": b'{"timestamp": 9007199254740993, "input_length": 1, "hash_ids": [1]}',
    "twenty-three fraction digits": b'{"timestamp": 0.00000000000000000000001, "input_length": 1, "hash_ids": [1]}',
    "an id past int64": b'{"timestamp": 1, "input_length": 1, "hash_ids": [9223372036854775808]}',
    "an id below int64": b'{"timestamp": 1, "input_length": 1, "hash_ids": [-9223372036854775809]}',
    "a twenty-digit id": b'{"timestamp": 1, "input_length": 1, "hash_ids": [10000000000000000000]}',
    "an input length past int64": b'{"timestamp": 1, "input_length": 9223372036854775808, "hash_ids": [1]}',
    "an output length past int64": b'{"timestamp": 1, "input_length": 1, "output_length": 9223372036854775808, '
    b'"hash_ids": [1]}',
    "a negative input length": b'{"timestamp": 1, "input_length": -1, "hash_ids": [1]}',
    "a float input length": b'{"timestamp": 1, "input_length": 1.0, "hash_ids": [1]}',
    "a float output length": b'{"timestamp": 1, "input_length": 1, "output_length": 2.5, "hash_ids": [1]}',
    "a float id": b'{"timestamp": 1, "input_length": 1, "hash_ids": [1.0]}',
    "a boolean output length": b'{"timestamp": 1, "input_length": 1, "output_length": true, "hash_ids": [1]}',
    "a null timestamp": b'{"timestamp": null, "input_length": 1, "hash_ids": [1]}',
    "a null id list": b'{"timestamp": 1, "input_length": 1, "hash_ids": null}',
    "NaN": b'{"timestamp": NaN, "input_length": 1, "hash_ids": [1]}',
    "a leading zero": b'{"timestamp": 01, "input_length": 1, "hash_ids": [1]}',
    "a leading zero in an id": b'{"timestamp": 1, "input_length": 1, "hash_ids": [007]}',
    "a plus sign": b'{"timestamp": +1, "input_length": 1, "hash_ids": [1]}',
    "a bare point": b'{"timestamp": .5, "input_length": 1, "hash_ids": [1]}',
    "a trailing point": b'{"timestamp": 5., "input_length": 1, "hash_ids": [1]}',
    "a lone minus": b'{"timestamp": -, "input_length": 1, "hash_ids": [1]}',
    "no timestamp": b'{"input_length": 1, "hash_ids": [1]}',
    "no input length": b'{"timestamp": 1, "hash_ids": [1]}',
    "no hash ids": b'{"timestamp": 1, "input_length": 1}',
    "an empty object": b"{}",
    "a duplicate key": b'{"timestamp": 1, "timestamp": 2, "input_length": 1, "hash_ids": [1]}',
    "a duplicate list": b'{"timestamp": 1, "input_length": 1, "hash_ids": [1], "hash_ids": [2]}',
    "a trailing comma in the list": b'{"timestamp": 1, "input_length": 1, "hash_ids": [1,]}',
    "a trailing comma in the object": b'{"timestamp": 1, "input_length": 1, "hash_ids": [1],}',
    "a missing comma": b'{"timestamp": 1 "input_length": 1, "hash_ids": [1]}',
    "two objects on a line": PLAIN + PLAIN,
    "a list, not an object": b"[" + PLAIN + b"]",
    "null, not an object": b"null",
    "an unterminated object": PLAIN[:-1],
    "an unterminated list": b'{"timestamp": 1, "input_length": 1, "hash_ids": [1',
    "a BOM": b"\xef\xbb\xbf" + PLAIN,
    "a form feed": b"\x0c" + PLAIN,
    "a non-breaking space": PLAIN.replace(b": 27482", b":\xc2\xa027482"),
    "a blank line": b"",
    "a line of spaces": b"  \t ",
}


@pytest.mark.parametrize("line", DECLINED.values(), ids=DECLINED.keys())
def test_the_scanner_declines_a_line_of_any_unusual_shape(line: bytes) -> None:
    assert scanned(line) is None
    assert scanned(b"\n".join([PLAIN, line, PLAIN]) + b"\n") is None, "one unusual line declines the whole chunk"


def test_the_scanner_declines_a_chunk_with_more_lines_than_counted_or_fewer() -> None:
    chunk = PLAIN + b"\n" + PLAIN + b"\n"

    assert scan_mooncake(chunk, 1) is None
    assert scan_mooncake(chunk, 3) is None
    assert scan_mooncake(chunk, 2) is not None


@pytest.mark.parametrize("line", DECLINED.values(), ids=DECLINED.keys())
def test_a_file_the_scanner_declines_is_read_by_columns_as_record_by_record(line: bytes, tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    path.write_bytes(b"\n".join([PLAIN, line, PLAIN.replace(b"27482", b"-0")]) + b"\n")
    sample = Sample(path, "jsonl", ())
    assert MOONCAKE.read_columns is not None

    by_columns = read_rows(MOONCAKE.read_columns(sample))
    by_records = read_rows(MOONCAKE.read(sample))

    assert by_columns == by_records


@pytest.mark.parametrize("scanned", [True, False])
@pytest.mark.parametrize("bad", [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"])
def test_a_line_that_is_not_utf8_is_quarantined_by_columns_too_even_in_a_key_no_reader_needs(
    bad: bytes, scanned: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not scanned:  # Arrow reads the chunk instead
        monkeypatch.setattr(hashid, "SCAN_MIN_BYTES", 1 << 40)
    path = tmp_path / "trace.jsonl"
    damaged = PLAIN.replace(b'"output_length"', b'"o' + bad + b'utput_length"')
    path.write_bytes(b"\n".join([damaged, PLAIN, PLAIN.replace(b"27482", b"27483")]) + b"\n")
    sample = Sample(path, "jsonl", ())
    assert MOONCAKE.read_columns is not None

    rows, quarantined = read_rows(MOONCAKE.read_columns(sample))

    assert [line for line, _ in quarantined] == [1]
    assert [row[0] for row in rows] == [2, 3]
    assert (rows, quarantined) == read_rows(MOONCAKE.read(sample))


def read_rows(items: Iterable[Any]) -> tuple[list[Row], list[tuple[int, str]]]:
    rows: list[Row] = []
    quarantined = []
    for item in items:
        if isinstance(item, HashColumns):
            rows.extend(rows_of(item))
        elif isinstance(item, Quarantined):
            quarantined.append((item.source.line, item.reason))
        else:
            rows.append(row_of(item))
    return rows, quarantined


def test_an_integer_minus_zero_timestamp_is_plus_zero_whichever_parser_reads_the_chunk() -> None:
    # another key makes the scanner decline, so Arrow is asked; it reads -0 as -0.0 and must hand the chunk on
    chunk = b'{"timestamp": -0, "input_length": 1, "hash_ids": [1], "chat_id": 3}\n'
    arrays = _mooncake_arrays(chunk, 1)

    assert arrays is None or float(arrays.timestamps[0]).hex() == (0.0).hex()


# --- generated lines ----------------------------------------------------------------------------------------------

SPACE = st.sampled_from(["", " ", "  ", "\t", " \r", "\r"])


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """Milliseconds as Mooncake writes them, or as a decimal short enough to convert exactly."""
    whole = draw(st.integers(EARLIEST_MS + 1, LATEST_MS - 1))
    if draw(st.booleans()):
        return str(whole)
    room = 15 - len(str(abs(whole)))
    if room < 1:
        return str(whole)
    fraction = draw(st.text("0123456789", min_size=1, max_size=room))
    sign = "-" if whole < 0 or (whole == 0 and draw(st.booleans())) else ""
    return f"{sign}{abs(whole)}.{fraction}"


@st.composite
def mooncake_lines(draw: st.DrawFn) -> bytes:
    """A line in the plain shape: the four keys (output length optional) in any order, any JSON spacing."""
    fields = {
        "timestamp": draw(timestamps()),
        "input_length": str(draw(st.integers(0, MAX_INT64) | st.integers(0, 100_000))),
        "hash_ids": "["
        + ",".join(draw(SPACE) + str(i) + draw(SPACE) for i in draw(st.lists(st.integers(MIN_INT64, MAX_INT64))))
        + draw(SPACE)
        + "]",
    }
    output = draw(st.none() | st.just("null") | st.integers(MIN_INT64, MAX_INT64).map(str))
    if output is not None:
        fields["output_length"] = output
    keys = draw(st.permutations(list(fields)))
    members = [f'{draw(SPACE)}"{key}"{draw(SPACE)}:{draw(SPACE)}{fields[key]}{draw(SPACE)}' for key in keys]
    return f"{draw(SPACE)}{{{','.join(members)}}}{draw(SPACE)}".encode()


GENERATED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@GENERATED
@given(lines=st.lists(mooncake_lines(), min_size=1, max_size=20), newline=st.sampled_from([b"\n", b"\r\n"]))
def test_the_scanner_and_the_per_record_reader_agree_on_generated_mooncake_lines(
    lines: list[bytes], newline: bytes
) -> None:
    chunk = newline.join(lines)
    expected = per_record(chunk)

    assert expected is not None
    assert scanned(chunk) == expected
    assert scanned(chunk + newline) == expected


MUTATION_BYTES = st.sampled_from(list(b'0123456789-+.eE"\\,:[]{} \t\r\nnulxtrf\xef\x00'))


@GENERATED
@given(
    line=mooncake_lines(),
    edits=st.lists(st.tuples(st.sampled_from(["insert", "replace", "delete"]), st.integers(0), MUTATION_BYTES)),
)
def test_whatever_bytes_a_line_holds_the_scanner_declines_it_or_reads_what_the_per_record_reader_reads(
    line: bytes, edits: list[tuple[str, int, int]]
) -> None:
    damaged = bytearray(line)
    for edit, position, byte in edits:
        at = position % (len(damaged) + 1)
        if edit == "insert":
            damaged.insert(at, byte)
        elif at < len(damaged):
            damaged[at : at + 1] = bytes([byte]) if edit == "replace" else b""
    chunk = bytes(damaged)

    rows = scanned(chunk)

    if rows is not None and in_range(rows):  # the caller declines a chunk with a timestamp out of range
        assert rows == per_record(chunk)


def test_a_file_of_many_chunks_read_ahead_on_a_thread_gives_its_lines_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks are read and scanned one ahead on another thread; plain and declined ones alike come back in order."""
    lines = [PLAIN.replace(b"27482", str(27482 + k).encode()) for k in range(40)]
    lines[17] = lines[17].replace(b"27499", b'"27499"')  # a string: its chunk goes record by record
    path = tmp_path / "trace.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    sample = Sample(path, "jsonl", ())
    assert MOONCAKE.read_columns is not None
    by_records = read_rows(MOONCAKE.read(sample))

    monkeypatch.setattr(hashid, "COLUMN_CHUNK_BYTES", 3 * len(PLAIN))
    items = list(MOONCAKE.read_columns(sample))
    by_columns = read_rows(items)

    assert sum(isinstance(item, HashColumns) for item in items) > 5
    assert sum(isinstance(item, Request) for item in items) == 3  # the declined chunk's lines
    assert by_columns == by_records
    assert [row[0] for row in by_columns[0]] == list(range(1, 41))
    reader = MOONCAKE.read_columns(sample)
    assert isinstance(next(reader), HashColumns)
    reader.close()  # type: ignore[attr-defined]
    assert not [t for t in threading.enumerate() if t.name.startswith("zumik-read")], (
        "a reader left early ends its thread"
    )

"""Content-free hash-id traces: Mooncake, Alibaba Bailian and WEKA kv-cache-tester.

Each request carries prefix-chained block ids of a fixed size instead of content; its recorded input length is
its prompt size and nothing says what was cached. Ids are scoped to the trace they come from (the traces number
their blocks locally), so two traces never share a block by accident; see ``_scope``.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from zumik_cli.core.identity import derived_trace_id
from zumik_cli.core.model import HashBlocks, Quarantined, Request, Source, Usage, canonical_json
from zumik_cli.readers import Item, Reader, Sample, convert_guarded, parse_json_line, read_json_lines
from zumik_cli.readers.containers import BOM, open_bytes
from zumik_cli.readers.fields import EARLIEST, LATEST, count, moment, text

COLUMN_CHUNK_BYTES = 1 << 24
_NOT_AN_OBJECT_LINE = re.compile(rb"\n[ \t\r]*[^{ \t\r\n]")


@dataclass(frozen=True)
class MooncakeArrays:
    """A chunk's records as arrays: row i's hash ids are ``hash_ids[offsets[i]:offsets[i + 1]]``."""

    timestamps: np.ndarray  # float64, seconds
    input_length: np.ndarray  # int64
    output_length: pa.Array  # int64, null where the record's was absent, null or negative
    offsets: np.ndarray  # int64, rows + 1, from 0
    hash_ids: np.ndarray  # int64


def _count(value: Any, name: str) -> int:
    known = count(value, name)
    if known is None:
        raise ValueError(f"{name} must be a non-negative integer")
    return known


def _output(value: Any) -> int | None:
    """Output lengths are informative only: one that is not a count is unknown, not a reason to quarantine."""
    try:
        return count(value, "output_length")
    except ValueError:
        return None


def block_size(record: dict[str, Any], default: int) -> int:
    """The trace's documented block size, unless the record names its own (``zumik export --block-size``)."""
    size = _count(record.get("block_size", default), "block_size")
    if size < 1:
        raise ValueError("block_size must be at least 1")
    return size


def _blocks(record: dict[str, Any], length_key: str, block_size: int, scope: str) -> HashBlocks:
    ids = record["hash_ids"]
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValueError("hash_ids must be a list of integers")
    return HashBlocks(tuple(ids), block_size, _count(record[length_key], length_key), scope)


def _hash_request(
    fmt: str, source: Source, key: str, blocks: HashBlocks, timestamp: float, output: Any, **fields: Any
) -> Request:
    return Request(
        trace_id=derived_trace_id(fmt, blocks.scope, key),
        source=source,
        format=fmt,
        timestamp=timestamp,
        request_format="none",
        hash_blocks=blocks,
        usage=Usage(
            prompt_tokens=blocks.input_length,
            output_tokens=_output(output),
            family="hash-id",
        ),
        **fields,
    )


def _scope(sample: Sample, fmt: str) -> str:
    """The trace that numbered the ids: its file name and a digest of its first record (a WEKA document's id and
    first request). A log that grows keeps both, so ingesting it again adds only its new records under the same
    ids; two traces that share a name in different folders get ids and trace ids of their own."""
    first: Any = sample.records[0] if sample.records else None
    if sample.kind == "json" and isinstance(sample.document, dict):
        requests = sample.document.get("requests")
        first = [sample.document.get("id"), requests[0] if isinstance(requests, list) and requests else None]
    digest = hashlib.blake2b(canonical_json(first).encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()
    return f"{fmt}:{sample.filename}:{digest}"


# --- Mooncake: {timestamp (ms), input_length, output_length, hash_ids}, 512-token blocks -----------------


def _mooncake(record: Any, source: Source, scope: str) -> Request:
    blocks = _blocks(record, "input_length", block_size(record, 512), scope)
    return _hash_request(
        "mooncake",
        source,
        str(source.line),
        blocks,
        moment(float(record["timestamp"]) / 1000.0, record["timestamp"]),
        record.get("output_length"),
    )


def _sniff_mooncake(sample: Sample) -> bool:
    return all(
        isinstance(r, dict) and "hash_ids" in r and "input_length" in r and "chat_id" not in r for r in sample.records
    )


@dataclass(frozen=True)
class HashColumns:
    """Consecutive records of one hash-id file as arrays: what ``read`` gives, without a Python object a block.

    Row i is the record on line ``lines[i]``; its hash ids are ``hash_ids[offsets[i]:offsets[i + 1]]``.
    """

    format: str
    path: str
    scope: str
    block_size: int
    lines: np.ndarray  # int64
    timestamps: np.ndarray  # float64, seconds
    input_length: np.ndarray  # int64
    output_length: pa.Array  # int64, null where the record's was absent or not a count
    offsets: np.ndarray  # int64, rows + 1
    hash_ids: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.lines)


_MOONCAKE_SCHEMA = pa.schema(
    [
        ("timestamp", pa.float64()),
        ("input_length", pa.int64()),
        ("output_length", pa.int64()),
        ("hash_ids", pa.list_(pa.int64())),
    ]
)


# A smaller chunk (a whole small trace) is read by Arrow: the compiled scanner takes seconds to compile on a fresh
# install and a fifth of a second to load from numba's cache, more than Arrow takes over a few megabytes.
SCAN_MIN_BYTES = 4 << 20


def _mooncake_arrays(chunk: bytes, lines: int) -> MooncakeArrays | None:
    """The chunk's records as arrays, or None where any record might read otherwise record by record.

    The compiled scanner reads plain chunks (traces as Mooncake publishes them); Arrow reads most of the rest.
    Whichever read it, the records must be ones the per-record reader would keep, every one of them: so a chunk that
    is not UTF-8 throughout (JSON text must be; the per-record reader quarantines such a line, even where the bad
    bytes are in a key neither reader needs) goes the per-record way.
    """
    if not chunk.isascii():
        try:
            chunk.decode("utf-8")
        except UnicodeDecodeError:
            return None
    arrays = None
    if len(chunk) >= SCAN_MIN_BYTES:
        from zumik_cli.readers.mooncake_scan import scan_mooncake  # compiled: numba loads with it

        arrays = scan_mooncake(chunk, lines)
    if arrays is None:
        arrays = _arrow_arrays(chunk, lines)
    if arrays is None or len(arrays.timestamps) != lines:
        return None
    if len(arrays.input_length) and int(arrays.input_length.min()) < 0:
        return None
    seconds = arrays.timestamps
    if not ((seconds >= EARLIEST) & (seconds <= LATEST)).all():
        return None
    return arrays


def _arrow_arrays(chunk: bytes, lines: int) -> MooncakeArrays | None:
    """The chunk parsed by Arrow, or None where Arrow might read a record otherwise than the per-record reader.

    Arrow is strict where the per-record reader is lenient (a string timestamp, a float count, a huge id): any
    such record fails the whole chunk, which then goes the per-record way. What Arrow accepts here, the
    per-record reader reads the same: objects with numeric fields, a list of int64 hash ids, no blank lines,
    no explicit block size (Arrow cannot tell an explicit null from an absent key).
    """
    import pyarrow.compute as pc
    import pyarrow.json as pajson

    if b'"block_size"' in chunk or chunk.startswith(b"\xef\xbb\xbf"):
        return None
    if chunk.lstrip()[:1] != b"{" or _NOT_AN_OBJECT_LINE.search(chunk):
        return None  # Arrow's reader crashes the process (SIGSEGV, pyarrow 26) on a chunk whose first value is null
    try:
        table = pajson.read_json(
            io.BytesIO(chunk),
            read_options=pajson.ReadOptions(use_threads=True, block_size=len(chunk) + 1),
            parse_options=pajson.ParseOptions(explicit_schema=_MOONCAKE_SCHEMA, unexpected_field_behavior="ignore"),
        )
    except (pa.ArrowException, ValueError):
        return None
    ids = table.column("hash_ids").combine_chunks()
    for name in ("timestamp", "input_length"):
        if table.column(name).null_count:
            return None
    if ids.null_count or ids.values.null_count:
        return None
    milliseconds = table.column("timestamp").to_numpy()
    if np.signbit(milliseconds[milliseconds == 0]).any():
        return None  # Arrow reads the integer -0 as -0.0, where the per-record reader has the integer 0
    offsets = ids.offsets.to_numpy().astype(np.int64)
    output = table.column("output_length").combine_chunks()
    return MooncakeArrays(
        timestamps=milliseconds / 1000.0,
        input_length=table.column("input_length").to_numpy(),
        output_length=pc.if_else(pc.less(output, 0), pa.scalar(None, pa.int64()), output),
        offsets=offsets - offsets[0],
        hash_ids=ids.values.to_numpy()[offsets[0] : offsets[-1]],
    )


_Chunk = tuple[int, int, bytes, MooncakeArrays | None]


def _scanned_chunks(path: Path) -> Generator[_Chunk, None, None]:
    """Each chunk of whole lines: its first line's number, its count of lines, its bytes and its arrays (or None)."""
    first = 1
    with open_bytes(path) as handle:
        while chunk := handle.read(COLUMN_CHUNK_BYTES):
            if first == 1:
                chunk = chunk.removeprefix(BOM)
            if not chunk.endswith(b"\n"):
                chunk += handle.readline()
            lines = chunk.count(b"\n") + (0 if chunk.endswith(b"\n") else 1)
            yield first, lines, chunk, _mooncake_arrays(chunk, lines)
            first += lines


def _read_ahead(chunks: Generator[_Chunk, None, None]) -> Iterator[_Chunk]:
    """The chunks in order, the next one read and scanned on a thread of its own while the caller identifies and
    writes this one: the scanner releases the GIL, so on a trace of many chunks reading leaves the caller's
    thread (about a second of CPU a million requests). One chunk is ahead at most."""
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="zumik-read") as pool:
            ahead = pool.submit(next, chunks, None)
            while (chunk := ahead.result()) is not None:
                ahead = pool.submit(next, chunks, None)
                yield chunk
    finally:
        chunks.close()  # the pool has ended: no thread is in the generator


def _read_mooncake_columns(sample: Sample) -> Iterator[HashColumns | Item]:
    if sample.kind != "jsonl":  # a JSON array of records: read record by record
        yield from MOONCAKE.read(sample)
        return
    scope = _scope(sample, "mooncake")
    path = sample.name
    for first, lines, chunk, arrays in _read_ahead(_scanned_chunks(sample.path)):
        if arrays is None:
            parts = chunk.split(b"\n")
            for offset, line in enumerate(parts[:lines]):
                raw = line + b"\n" if offset < len(parts) - 1 else line  # as reading the file line by line
                if raw.isspace():
                    continue
                number = first + offset
                value = parse_json_line(path, number, raw)
                if isinstance(value, Quarantined):
                    yield value
                else:
                    yield from convert_guarded(lambda r, s: _mooncake(r, s, scope), value, Source(path, number))
        else:
            yield HashColumns(
                format="mooncake",
                path=path,
                scope=scope,
                block_size=512,
                lines=np.arange(first, first + lines, dtype=np.int64),
                timestamps=arrays.timestamps,
                input_length=arrays.input_length,
                output_length=arrays.output_length,
                offsets=arrays.offsets,
                hash_ids=arrays.hash_ids,
            )


MOONCAKE = Reader(
    name="mooncake",
    description="Mooncake hash-id trace (JSONL): timestamp (ms), input_length, hash_ids of 512-token "
    "prefix-chained blocks (or the record's block_size)",
    sniff=_sniff_mooncake,
    read=lambda sample: read_json_lines(sample, lambda r, s: _mooncake(r, s, _scope(sample, "mooncake"))),
    read_columns=_read_mooncake_columns,
)


# --- Alibaba Bailian: {chat_id, parent_chat_id, timestamp (s), input_length, ..., hash_ids}, 16-token blocks


def _read_bailian(sample: Sample) -> Iterator[Item]:
    scope = _scope(sample, "bailian")
    roots: dict[str, str] = {}

    def convert(record: Any, source: Source) -> Request:
        chat, parent = text(record["chat_id"]), text(record.get("parent_chat_id"))
        root = roots.get(parent, parent) if parent not in ("", "-1", "None") else chat
        roots[chat] = root
        blocks = _blocks(record, "input_length", block_size(record, 16), scope)
        return _hash_request(
            "bailian",
            source,
            str(source.line),
            blocks,
            moment(float(record["timestamp"]), record["timestamp"]),
            record.get("output_length"),
            session_id=root,
        )

    yield from read_json_lines(sample, convert)


BAILIAN = Reader(
    name="bailian",
    description="Alibaba Bailian hash-id trace (JSONL): chat_id, parent_chat_id, timestamp (s), input_length, "
    "hash_ids of 16-token blocks (or the record's block_size)",
    sniff=lambda sample: (
        sample.kind != "csv"
        and bool(sample.records)
        and all(isinstance(r, dict) and "hash_ids" in r and "chat_id" in r for r in sample.records)
    ),
    read=_read_bailian,
)


# --- WEKA kv-cache-tester: one JSON file a session, 64-token full blocks, nested subagents -----------------


def _weka_requests(entries: list[Any]) -> Iterator[tuple[str, float | None, Any]]:
    """Every request with its position and start, subagents' in place; a loop, not recursion, whatever the nesting.

    A request that is not an object, or whose ``t`` is not a number, comes with start ``None`` (its conversion
    quarantines it, and the requests of such a subagent with it).
    """
    stack: list[tuple[Iterator[tuple[int, Any]], float, str]] = [(enumerate(entries), 0.0, "")]
    while stack:
        items, offset, prefix = stack[-1]
        step = next(items, None)
        if step is None:
            stack.pop()
            continue
        index, entry = step
        start = _start(entry, offset)
        if start is not None and entry.get("type") == "subagent" and isinstance(entry.get("requests"), list):
            stack.append((enumerate(entry["requests"]), start, f"{prefix}{index}."))
        else:
            yield f"{prefix}{index}", start, entry


def _start(entry: Any, offset: float) -> float | None:
    if not isinstance(entry, dict):
        return None
    try:
        return moment(offset + float(entry.get("t", 0.0)), entry.get("t"))
    except (TypeError, ValueError, OverflowError):
        return None


def _read_weka(sample: Sample) -> Iterator[Item]:
    document = sample.document
    path = sample.name
    if not isinstance(document, dict) or not isinstance(document.get("requests") or [], list):
        yield Quarantined(Source(path, 0), "not a WEKA trace (an object with a requests list)")
        return
    scope = _scope(sample, "weka")
    session = text(document.get("id")) or sample.stem
    try:
        size = block_size(document, 64)
    except ValueError as exc:
        yield Quarantined(Source(path, 0), f"wrong shape: {exc}"[:300])
        return
    for position, start, entry in _weka_requests(document.get("requests") or []):
        source = Source(path, int(position.split(".")[0]) + 1)

        def convert(record: Any, src: Source, position: str = position, start: float | None = start) -> Request:
            if start is None:
                raise ValueError("a request is not an object with a numeric t")
            blocks = _blocks(record, "in", size, scope)
            fields = {"session_id": session, "model": text(record.get("model")), "provider": "anthropic"}
            return _hash_request("weka", src, position, blocks, start, record.get("out"), **fields)

        yield from convert_guarded(convert, entry, source)


WEKA = Reader(
    name="weka",
    description="WEKA kv-cache-tester trace (JSON, one session a file): requests with in, out and hash_ids of "
    "block_size-token full blocks, ids local to the file",
    sniff=lambda sample: (
        sample.kind == "json"
        and isinstance(sample.document, dict)
        and isinstance(sample.document.get("requests"), list)
        and "block_size" in sample.document
    ),
    read=_read_weka,
)

"""How a file's bytes become records, decided once for detection and reading alike.

A trace arrives in one of three containers: JSON Lines (one record a line), one JSON document (an object, or an
array of records, pretty-printed or not) and CSV (a header row, then one record a row: database exports), each
possibly gzipped, possibly behind a UTF-8 byte-order mark. ``sample_file`` decides the container from the bytes,
never from the first lines alone: a JSON Lines file whose first lines are garbage is still JSON Lines, and each
bad line is quarantined on its own. Every reader takes its records from ``records``, so that what detection
looked at is what the reader reads.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgspec

from zumik_cli.core.model import Quarantined, Source
from zumik_cli.core.redact import redact

HEAD_BYTES = 1 << 16
SNIFF_RECORDS = 5
MAX_DOCUMENT_BYTES = 1 << 30
# A gzip member starts with its two magic bytes and its compression method, deflate (8), the only one RFC 1952 defines:
# a text file whose first line happens to start with the two bytes is still read as text
GZIP_MAGIC = b"\x1f\x8b\x08"
BOM = b"\xef\xbb\xbf"
# What a gzip stream that was cut short or damaged raises while it is read.
GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)
# A CSV header: comma-separated column names (quoted or not), three or more of them.
_CSV_HEADER = re.compile(rb'^\s*"?[A-Za-z_][\w ]*"?(\s*,\s*"?[A-Za-z_][\w ]*"?){2,}\s*$')


@dataclass(frozen=True)
class Sample:
    """A file's container and its first records: what detection looks at and what ``records`` reads back.

    ``path`` is where the bytes are; ``name`` is what sources record (the path itself, or a stream's name), and
    ``stem`` the fallback session name (the file name without ``.gz`` and its last suffix).
    """

    path: Path
    kind: str  # "jsonl", "json" or "csv"
    records: tuple[Any, ...]
    document: Any = None
    name: str = ""
    stem: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", str(self.path))
        if not self.stem:
            object.__setattr__(self, "stem", Path(self.filename).stem)

    @property
    def filename(self) -> str:
        """The base name of what sources record, without a trailing ``.gz``."""
        return Path(self.name).name.removesuffix(".gz")


def open_bytes(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed when they are gzip (told by its magic number, not its name)."""
    handle = path.open("rb")
    if handle.read(len(GZIP_MAGIC)) == GZIP_MAGIC:
        handle.seek(0)
        return gzip.GzipFile(fileobj=handle, mode="rb")  # type: ignore[return-value]
    handle.seek(0)
    return handle


# msgspec parses a line about three times faster than the json module and gives the same value for every line it
# accepts (big integers included, unlike orjson); what it refuses (NaN, lone surrogate escapes, floats that
# overflow, malformed text) goes through the json module, which decides and words the quarantine as before.
_decode = msgspec.json.Decoder().decode


def iter_json_lines(path: Path, name: str | None = None) -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed value or Quarantined) for every non-blank line; ``name`` is what sources say."""
    name = name or str(path)
    number = 0
    try:
        with open_bytes(path) as handle:
            for number, raw in enumerate(handle, start=1):
                if number == 1 and raw.startswith(BOM):
                    raw = raw[len(BOM) :]
                if not raw.isspace() and raw:
                    yield number, parse_json_line(name, number, raw)
    except GZIP_ERRORS as exc:
        yield number + 1, Quarantined(Source(name, number + 1), f"damaged gzip, the rest is unreadable: {exc}"[:300])


def parse_json_line(path: Path | str, number: int, raw: bytes) -> Any:
    """One line's JSON value, or a Quarantined naming why it is not one."""
    try:
        return _decode(raw)
    except (msgspec.DecodeError, RecursionError, ValueError):  # ValueError: UnicodeDecodeError among others
        pass
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Quarantined(Source(str(path), number), f"not UTF-8 ({exc.reason} at byte {exc.start})")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        return Quarantined(Source(str(path), number), f"not JSON: {exc}", excerpt(text))


def excerpt(text: str) -> str:
    """The start of a bad record, for the quarantine, with header values, bearer tokens and API keys redacted.

    Only a window is redacted (a bad line may be 50 MB), wide enough that no secret in the first 200 characters is
    cut by it."""
    return redact(text[:2048], 0, 200)[:200]


def records(sample: Sample) -> Iterator[tuple[int, Any]]:
    """Every record of the sample's file in its container, numbered as sources number them: the line of a JSON
    Lines file or a CSV row, the position (from 1) in a JSON array, 1 for a document that is one object."""
    if sample.kind == "json":
        document = sample.document
        yield from enumerate(document if isinstance(document, list) else [document], start=1)
    elif sample.kind == "csv":
        yield from _csv_rows(sample.path, sample.name)
    else:
        yield from iter_json_lines(sample.path, sample.name)


def _csv_rows(path: Path, name: str) -> Iterator[tuple[int, Any]]:
    csv.field_size_limit(1 << 30)  # a spend row holds whole conversations in one cell
    line = 0
    try:
        with open_bytes(path) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as handle:
            rows = csv.DictReader(handle)
            while True:
                line = rows.line_num + 1
                try:
                    row = next(rows)
                except StopIteration:
                    return
                except csv.Error as exc:
                    yield line, Quarantined(Source(name, line), f"not CSV: {exc}"[:300])
                    return
                if None in row:
                    reason = "a CSV row with more cells than names"
                    yield rows.line_num, Quarantined(Source(name, rows.line_num), reason)
                    continue
                yield rows.line_num, row
    except UnicodeDecodeError as exc:
        yield line, Quarantined(Source(name, line), f"not UTF-8 ({exc.reason}): the rest is unreadable")
    except GZIP_ERRORS as exc:
        yield line, Quarantined(Source(name, line), f"damaged gzip, the rest is unreadable: {exc}"[:300])


def sample_file(path: Path, name: str = "", stem: str = "") -> Sample | Quarantined:
    """Decide the file's container and read its first records; quarantine what holds no record at all."""
    name = name or str(path)
    where = Source(name, 0)
    try:
        with open_bytes(path) as handle:
            head = handle.read(HEAD_BYTES)
    except GZIP_ERRORS as exc:
        return Quarantined(where, f"damaged gzip: {exc}"[:300])
    head = head.removeprefix(BOM)
    if not head.strip():
        return Quarantined(where, "empty file")
    if b"\x00" in head[:8192]:
        return Quarantined(where, "binary file (NUL bytes): not a JSON, JSON Lines or CSV trace")
    lines = [line for line in head.splitlines() if line.strip()]
    first = lines[0].strip()
    objects = any(line.lstrip().startswith(b"{") for line in lines)
    if first[:1] not in (b"{", b"[") and (
        name.removesuffix(".gz").endswith(".csv") or (_CSV_HEADER.match(first) and not objects)
    ):
        rows = tuple(row for _, row in _take(_csv_rows(path, name)))
        return Sample(path, "csv", rows, name=name, stem=stem)
    if len(lines) > 1 and isinstance(_single_value(first), dict):
        return _json_lines(path, name, stem)
    if first[:1] in (b"{", b"["):
        document = _document(path)
        if not isinstance(document, Quarantined):
            firsts = tuple(document[:SNIFF_RECORDS]) if isinstance(document, list) else (document,)
            return Sample(path, "json", firsts, document, name=name, stem=stem)
        found = _json_lines(path, name, stem)
        if found.records:
            return found
        return Quarantined(where, f"neither JSON nor JSON Lines: {document.reason}"[:300])
    found = _json_lines(path, name, stem)
    if found.records:
        return found
    return Quarantined(where, "no line is a JSON object: neither JSON, JSON Lines nor CSV")


def _take(items: Iterator[tuple[int, Any]]) -> Iterator[tuple[int, dict[str, Any]]]:
    """The first few records that are objects (bad lines before them are passed over, not judged)."""
    found = 0
    for number, value in items:
        if isinstance(value, dict):
            yield number, value
            found += 1
            if found >= SNIFF_RECORDS:
                return


def _json_lines(path: Path, name: str, stem: str) -> Sample:
    found = tuple(value for _, value in _take(iter_json_lines(path, name)))
    return Sample(path, "jsonl", found, name=name, stem=stem)


def _single_value(line: bytes) -> Any:
    try:
        return _decode(line)
    except (msgspec.DecodeError, RecursionError, ValueError):
        return None


def _document(path: Path) -> Any:
    """The whole file as one JSON value, or a Quarantined saying why it is not one."""
    if path.stat().st_size > MAX_DOCUMENT_BYTES:
        return Quarantined(Source(str(path), 0), "a JSON document over 1 GiB: write it as JSON Lines")
    try:
        with open_bytes(path) as handle:
            data = handle.read(MAX_DOCUMENT_BYTES + 1)
    except GZIP_ERRORS as exc:
        return Quarantined(Source(str(path), 0), f"damaged gzip: {exc}")
    if len(data) > MAX_DOCUMENT_BYTES:
        return Quarantined(Source(str(path), 0), "a JSON document over 1 GiB: write it as JSON Lines")
    try:
        return json.loads(data.decode("utf-8-sig"))
    except (ValueError, RecursionError) as exc:
        return Quarantined(Source(str(path), 0), str(exc))

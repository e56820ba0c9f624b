"""Trace readers: a plain registry of formats, auto-detected from a file's first records.

Each reader turns one file into ``Request`` values and ``Quarantined`` entries; a record it cannot read is
quarantined with a reason and the rest of the file goes on. Adding a format is one module and one line below.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from zumik_cli.core.errors import InputError
from zumik_cli.core.model import Quarantined, Request, Source
from zumik_cli.core.redact import redact
from zumik_cli.core.usage import contradiction

HEAD_BYTES = 1 << 16
SNIFF_RECORDS = 5
MAX_DOCUMENT_BYTES = 1 << 30

Item = Request | Quarantined


@dataclass(frozen=True)
class Sample:
    """What detection looks at: the first records of a JSONL file, or the whole document of a JSON file."""

    path: Path
    kind: str  # "jsonl" or "json"
    records: tuple[Any, ...]
    document: Any = None


@dataclass(frozen=True)
class Reader:
    name: str
    description: str
    sniff: Callable[[Sample], bool]
    read: Callable[[Sample], Iterator[Item]]
    # Formats read by the million (content-free traces) may also yield whole batches as arrays; ingest uses this
    # when present, and the batches hold exactly what ``read`` would have yielded, record for record.
    read_columns: Callable[[Sample], Iterator[Any]] | None = None


# msgspec parses a line about three times faster than the json module and gives the same value for every line it
# accepts (big integers included, unlike orjson); what it refuses (NaN, lone surrogate escapes, floats that
# overflow, malformed text) goes through the json module, which decides and words the quarantine as before.
_decode = msgspec.json.Decoder().decode


def iter_json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed value or Quarantined) for every non-blank line."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.isspace():
                yield number, parse_json_line(path, number, raw)


def parse_json_line(path: Path, number: int, raw: bytes) -> Any:
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


def read_json_lines(sample: Sample, convert: Callable[[Any, Source], Request | list[Request] | None]) -> Iterator[Item]:
    """The shared loop of every JSONL reader: parse, convert, quarantine what fails."""
    for number, value in iter_json_lines(sample.path):
        source = Source(str(sample.path), number)
        if isinstance(value, Quarantined):
            yield value
            continue
        yield from convert_guarded(convert, value, source)


# What a record of an unexpected shape raises while it is converted: a quarantine reason, never a crash.
SHAPE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError)


def convert_guarded(
    convert: Callable[[Any, Source], Request | list[Request] | None], value: Any, source: Source
) -> Iterator[Item]:
    try:
        result = convert(value, source)
    except SHAPE_ERRORS as exc:
        yield Quarantined(source, f"wrong shape: {type(exc).__name__}: {exc}"[:300], _excerpt(value))
        return
    if result is None:
        return
    requests = result if isinstance(result, list) else [result]
    for request in requests:
        try:
            _check_encodable(request)
        except UnicodeEncodeError:
            yield Quarantined(source, "not valid Unicode (a lone surrogate escape such as \\ud800)", _excerpt(value))
            return
    yield from requests


def _check_encodable(request: Request) -> None:
    """JSON escapes such as ``\\ud800`` parse into strings that no tokenizer or Parquet file accepts."""
    for artifact in (*request.artifacts, *request.output):
        artifact.body.encode("utf-8")
        artifact.name.encode("utf-8")
        artifact.ref.encode("utf-8")
    for value in vars(request).values():
        if isinstance(value, str):
            value.encode("utf-8")


def excerpt(text: str) -> str:
    """The start of a bad record, for the quarantine, with header values, bearer tokens and API keys redacted.

    Only a window is redacted (a bad line may be 50 MB), wide enough that no secret in the first 200 characters is
    cut by it."""
    return redact(text[:2048], 0, 200)[:200]


def _excerpt(value: Any) -> str:
    try:
        return excerpt(json.dumps(value, default=str))
    except (ValueError, RecursionError):
        return ""


def sample_file(path: Path) -> Sample | Quarantined:
    """Read just enough of a file to tell its format; quarantine empty, binary and non-JSON files."""
    with path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
    if not head.strip():
        return Quarantined(Source(str(path), 0), "empty file")
    if b"\x00" in head[:8192]:
        return Quarantined(Source(str(path), 0), "binary file (NUL bytes): not a JSON or JSONL trace")
    records: list[Any] = []
    lines = 0
    for number, value in iter_json_lines(path):
        lines += 1
        if isinstance(value, dict):
            records.append(value)
        if len(records) >= SNIFF_RECORDS or number > 50:
            break
    first_is_record = bool(records) and lines >= 1 and _first_line_is_object(head)
    if first_is_record and lines > 1:
        return Sample(path, "jsonl", tuple(records))
    if path.stat().st_size > MAX_DOCUMENT_BYTES:
        return Quarantined(Source(str(path), 0), "JSON document over 1 GiB: write it as JSONL, one record a line")
    try:
        document = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        if records:
            return Sample(path, "jsonl", tuple(records))
        return Quarantined(Source(str(path), 0), f"neither JSON nor JSONL: {exc}"[:300])
    firsts = tuple(document[:SNIFF_RECORDS]) if isinstance(document, list) else (document,)
    return Sample(path, "json", firsts, document)


def _first_line_is_object(head: bytes) -> bool:
    line = head.lstrip().split(b"\n", 1)[0]
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, RecursionError):
        return False


def detect(sample: Sample, forced: str | None = None) -> Reader | None:
    formats = load_formats()
    if forced:
        if forced not in formats:
            raise InputError(f"unknown format {forced!r}; known formats: {', '.join(formats)}")
        return formats[forced]
    for reader in formats.values():
        try:
            if reader.sniff(sample):
                return reader
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError):
            continue
    return None


def iter_files(paths: list[Path]) -> Iterator[Path]:
    """Inputs may be files or folders (searched recursively for .json/.jsonl/.jsonl.gz-less traces)."""
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.suffix in (".json", ".jsonl", ".ndjson"):
                    yield child
        elif path.exists():
            yield path
        else:
            raise InputError(f"{path} does not exist: check the path (folders are searched for .json and .jsonl)")


def read_all(reader: Reader, sample: Sample) -> Iterator[Any]:
    """Everything ``reader`` reads from ``sample`` (batches too). Readers quarantine bad records themselves; should
    one still fail on a shape nobody foresaw, what it read is kept and the rest of the file is quarantined. A
    request whose usage contradicts itself is quarantined with the contradiction, whichever reader read it."""
    try:
        for item in (reader.read_columns or reader.read)(sample):
            problem = contradiction(item.usage) if isinstance(item, Request) else ""
            yield Quarantined(item.source, f"impossible usage: {problem}") if problem else item
    except SHAPE_ERRORS as exc:
        reason = f"the {reader.name} reader stopped, the rest of the file is unread: {type(exc).__name__}: {exc}"
        yield Quarantined(Source(str(sample.path), 0), reason[:300])


def _registry() -> dict[str, Reader]:
    from zumik_cli.readers import (
        anthropic,
        claude_code,
        codex,
        hashid,
        helicone,
        langfuse,
        litellm,
        mini_swe_agent,
        openai_chat,
        openai_responses,
        otel_genai,
        tau_bench,
        zumik_jsonl,
    )

    readers = [
        zumik_jsonl.READER,
        mini_swe_agent.READER,
        tau_bench.READER,
        # formats with a distinctive envelope go before the loose request/response sniffers below
        claude_code.READER,
        claude_code.STREAM_JSON,
        codex.READER,
        otel_genai.READER,
        litellm.READER,
        langfuse.READER,
        helicone.READER,
        openai_responses.READER,
        anthropic.READER,
        openai_chat.READER,
        hashid.MOONCAKE,
        hashid.BAILIAN,
        hashid.WEKA,
    ]
    return {reader.name: reader for reader in readers}


FORMATS: dict[str, Reader] = {}


def load_formats() -> dict[str, Reader]:
    if not FORMATS:
        FORMATS.update(_registry())
    return FORMATS

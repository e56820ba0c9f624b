"""Trace readers: a plain registry of formats, auto-detected from a file's first records.

Each reader turns one file into ``Request`` values and ``Quarantined`` entries; a record it cannot read is
quarantined with a reason and the rest of the file goes on. Adding a format is one module and one line below.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from zumik_cli.core.errors import InputError
from zumik_cli.core.model import Quarantined, Request, Source
from zumik_cli.core.usage import contradiction
from zumik_cli.readers.containers import (
    Sample,
    excerpt,
    iter_json_lines,
    parse_json_line,
    records,
    sample_file,
)

__all__ = [
    "SHAPE_ERRORS",
    "FROM_DOCUMENTATION_ONLY",
    "Item",
    "Reader",
    "Sample",
    "convert_guarded",
    "detect",
    "evidence",
    "excerpt",
    "iter_json_lines",
    "load_formats",
    "parse_json_line",
    "read_all",
    "read_json_lines",
    "records",
    "sample_file",
]

Item = Request | Quarantined


@dataclass(frozen=True)
class Reader:
    name: str
    description: str
    sniff: Callable[[Sample], bool]
    read: Callable[[Sample], Iterator[Item]]
    # Formats read by the million (content-free traces) may also yield whole batches as arrays; ingest uses this
    # when present, and the batches hold exactly what ``read`` would have yielded, record for record.
    read_columns: Callable[[Sample], Iterator[Any]] | None = None


def read_json_lines(
    sample: Sample,
    convert: Callable[[Any, Source], Request | list[Request] | None],
    refuse: Callable[[Any], str] | None = None,
) -> Iterator[Item]:
    """The shared loop of every JSONL reader: parse, convert, quarantine what fails; ``refuse`` gives the reason a
    record is not a call at all (quarantined with it), or "" for one to convert."""
    for number, value in records(sample):
        source = Source(sample.name, number)
        if isinstance(value, Quarantined):
            yield value
        elif refuse is not None and (reason := refuse(value)):
            yield Quarantined(source, reason)
        else:
            yield from convert_guarded(convert, value, source)


# What a record of an unexpected shape raises while it is converted: a quarantine reason, never a crash.
SHAPE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError)


def convert_guarded(
    convert: Callable[[Any, Source], Request | list[Request] | None], value: Any, source: Source, shown: Any = None
) -> Iterator[Item]:
    """``convert(value, source)``, a quarantine when it fails; the excerpt shows ``shown`` (the input record) when
    ``value`` is a reader's own grouping of records rather than one of them."""
    shown = value if shown is None else shown
    try:
        result = convert(value, source)
    except SHAPE_ERRORS as exc:
        yield Quarantined(source, f"wrong shape: {type(exc).__name__}: {exc}"[:300], _excerpt(shown))
        return
    if result is None:
        return
    requests = result if isinstance(result, list) else [result]
    for request in requests:
        try:
            _check_encodable(request)
        except UnicodeEncodeError:
            yield Quarantined(source, "not valid Unicode (a lone surrogate escape such as \\ud800)", _excerpt(shown))
            return
    yield from requests


def _check_encodable(request: Request) -> None:
    """JSON escapes such as ``\\ud800`` parse into strings that no tokenizer or Parquet file accepts.

    An ASCII string holds no surrogate, and ``isascii`` answers without the copy that encoding makes: agent traffic
    resends its whole history on every call, so most of what is checked is the same text again."""
    for artifact in (*request.artifacts, *request.output):
        for text in (artifact.body, artifact.name, artifact.ref):
            if not text.isascii():
                text.encode("utf-8")
    for value in vars(request).values():
        if isinstance(value, str) and not value.isascii():
            value.encode("utf-8")


def _excerpt(value: Any) -> str:
    try:
        return excerpt(json.dumps(value, default=str))
    except (ValueError, RecursionError):
        return ""


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
        yield Quarantined(Source(sample.name, 0), reason[:300])


def _registry() -> dict[str, Reader]:
    from zumik_cli.readers import (
        anthropic,
        claude_code,
        claude_trace,
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
        claude_trace.READER,
        codex.READER,
        otel_genai.READER,
        litellm.SPEND_LOGS,
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

# Formats read as their documentation and producers' source describe them, with no real log under a
# redistributable licence to check the reader against; every other format has a real sample in
# tests/fixtures/real/<name>/ or among the real traces beside the checkout (tests/test_corpus_real.py keeps the
# two in step).
FROM_DOCUMENTATION_ONLY = frozenset(
    {
        "claude-trace",
        "otel-genai",
        "langfuse",
        "helicone",
        "bailian",
    }
)


def evidence(name: str) -> str:
    """How a reader was checked: against a real public log, or only against its format's documentation."""
    if name == "zumik":
        return "zumik's own format"
    return "from documentation only" if name in FROM_DOCUMENTATION_ONLY else "real sample"


def load_formats() -> dict[str, Reader]:
    if not FORMATS:
        FORMATS.update(_registry())
    return FORMATS

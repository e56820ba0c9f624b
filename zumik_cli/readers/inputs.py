"""What ingest reads from the paths it is given: files, folders walked, and streams read exactly once.

A folder is searched for trace files (``.json``, ``.jsonl``, ``.ndjson``, ``.csv`` and their ``.gz``); what it
holds that is not read (other extensions, symlinked folders, FIFOs, broken links) is listed with the reason, never
skipped without a word. A pipe, a process substitution (``<(...)``) or ``-`` (stdin) can be read only once: it is
copied to a spool file while its digest is computed, and recorded under a name made of its digest, so that two
different streams never share a name (nor the sessions named after it) and the same bytes are known again.
A URI on object storage (``s3://bucket/logs/``) is read as a folder is: every trace object under the prefix, in
the order of their names; each is copied to a spool file when ingest comes to it and recorded under its URI.
"""

from __future__ import annotations

import hashlib
import os
import select
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from zumik_cli.core.errors import InputError
from zumik_cli.core.model import Quarantined, Source
from zumik_cli.core.storage import download, is_uri, remote

TRACE_SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv")
STDIN = "-"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Input:
    """One input to read: ``path`` holds its bytes (a stream's spool file), ``name`` is what the dataset records."""

    path: Path
    name: str
    sha256: str
    size: int
    stem: str = ""
    stream: bool = False
    lines: int = 0  # newlines in its bytes: turns a record's line number into how far through the input ingest is


@dataclass(frozen=True)
class StoredObject:
    """One object on object storage to read: its URI, and its file system and path there."""

    uri: str
    fs: Any  # pyarrow.fs.FileSystem
    path: str


@dataclass
class Found:
    """Regular files to read (digests computed when read), streams, objects on object storage, and what a folder
    or a prefix holds that is not read."""

    files: list[Path] = field(default_factory=list)
    streams: list[Path] = field(default_factory=list)
    not_read: list[dict[str, str]] = field(default_factory=list)
    objects: list[StoredObject] = field(default_factory=list)


def is_trace_name(name: str) -> bool:
    return name.lower().removesuffix(".gz").endswith(TRACE_SUFFIXES)


def find_inputs(paths: Iterable[Path | str]) -> Found:
    """Sort the given paths into files, streams and folders (walked, not following symlinked folders), and URIs
    into the objects under them."""
    found = Found()
    for given in paths:
        if is_uri(given):
            _list_objects(str(given), found)
            continue
        path = Path(given)
        if str(path) == STDIN:
            found.streams.append(path)
        elif path.is_dir():
            _walk(path, found)
        elif path.is_file():
            found.files.append(path)
        elif path.exists():  # a FIFO, a process substitution, a character device named on purpose
            found.streams.append(path)
        else:
            raise InputError(
                f"{path} does not exist: check the path (folders are searched for .json, .jsonl, .ndjson and .csv, "
                "gzipped or not; `-` reads stdin)"
            )
    return found


def _walk(folder: Path, found: Found) -> None:
    """The folder's trace files in the order of their sorted paths; what is not read goes to ``not_read``."""
    files_before = len(found.files)
    for root, dirs, files in os.walk(folder, followlinks=False):
        here = Path(root)
        dirs.sort()
        for name in list(dirs):
            if (here / name).is_symlink():
                dirs.remove(name)
                found.not_read.append(
                    {"path": str(here / name), "reason": "a symlink to a folder: not followed (name it to read it)"}
                )
        for name in sorted(files):
            path = here / name
            reason = _why_not_read(path)
            if reason:
                found.not_read.append({"path": str(path), "reason": reason})
            else:
                found.files.append(path)
    found.files[files_before:] = sorted(found.files[files_before:])


def _list_objects(uri: str, found: Found) -> None:
    """One object, or every object under a prefix (what is not a trace name goes to ``not_read``)."""
    import pyarrow.fs as pafs

    where = remote(uri)
    if where.fs.get_file_info(where.base).type == pafs.FileType.File:
        found.objects.append(StoredObject(where.uri, where.fs, where.base))
        return
    infos = where.files()
    for info in infos:
        name = where.uri_of(where.relative(info.path))
        if is_trace_name(info.base_name):
            found.objects.append(StoredObject(name, where.fs, info.path))
        else:
            found.not_read.append(
                {"path": name, "reason": "not a trace file name (.json, .jsonl, .ndjson, .csv, gzipped or not)"}
            )
    if not infos:
        raise InputError(f"{uri} holds no objects: check the URI (a prefix is read as a folder is)")


def fetch_object(stored: StoredObject, spool: Path) -> Input:
    """Copy an object to ``spool`` once, digesting it on the way; the dataset records it under its URI."""
    digest, size, lines = download(stored.fs, stored.path, stored.uri, spool)
    return Input(spool, stored.uri, digest, size, stem_of(stored.uri), lines=lines)


def _why_not_read(path: Path) -> str:
    if not is_trace_name(path.name):
        return "not a trace file name (.json, .jsonl, .ndjson, .csv, gzipped or not)"
    try:
        mode = path.stat().st_mode
    except OSError:
        return "a broken symlink"
    if not stat.S_ISREG(mode):
        return "not a regular file (a FIFO or device in a folder is not read; name it to read it)"
    return ""


def file_digest(path: Path) -> str:
    return digest_and_lines(path)[0]


def digest_and_lines(path: Path) -> tuple[str, int]:
    """The file's SHA-256 and its number of lines, in one read."""
    h = hashlib.sha256()
    lines = 0
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            h.update(chunk)
            lines += chunk.count(b"\n")
    return h.hexdigest(), lines


def stem_of(name: str) -> str:
    return Path(Path(name).name.removesuffix(".gz")).stem


def regular_input(path: Path) -> Input:
    digest, lines = digest_and_lines(path)
    return Input(path, str(path), digest, path.stat().st_size, stem_of(str(path)), lines=lines)


def spool_stream(path: Path, spool: Path, wait_s: float) -> Input | Quarantined:
    """Copy a stream to ``spool`` once, digesting it on the way; a FIFO whose writer sends nothing within
    ``wait_s`` seconds is quarantined rather than waited on forever."""
    label = "stdin" if str(path) == STDIN else str(path)
    try:
        handle = _open_stream(path, wait_s)
    except TimeoutError:
        return Quarantined(Source(label, 0), f"no data from {label} within {wait_s:g} s: nothing read")
    except OSError as exc:
        return Quarantined(Source(label, 0), f"{label} cannot be read: {exc.strerror or exc}")
    h = hashlib.sha256()
    size = lines = 0
    try:
        with spool.open("wb") as out:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                h.update(chunk)
                out.write(chunk)
                size += len(chunk)
                lines += chunk.count(b"\n")
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()
    digest = h.hexdigest()
    short = digest[:16]
    kind = "stdin" if str(path) == STDIN else "pipe"
    name = f"<stdin sha256:{short}>" if kind == "stdin" else f"<pipe {path} sha256:{short}>"
    return Input(spool, name, digest, size, f"{kind}-{short}", stream=True, lines=lines)


def _open_stream(path: Path, wait_s: float) -> IO[bytes]:
    if str(path) == STDIN:
        if sys.stdin is None or sys.stdin.isatty():
            raise InputError(
                "`-` reads traces from stdin, but stdin is a terminal: pipe a trace in (zumik ingest - < x)"
            )
        return sys.stdin.buffer
    # Opened without blocking: a FIFO with no writer would otherwise hold the open itself forever.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            poller = select.poll()
            poller.register(fd, select.POLLIN | select.POLLHUP)
            if not poller.poll(int(wait_s * 1000)):
                raise TimeoutError(path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")

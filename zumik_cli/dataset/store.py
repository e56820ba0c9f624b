"""A zumik dataset: a folder of Parquet parts plus ``manifest.json``, the only source of truth.

Readers see exactly the parts the manifest lists, so a writer that dies half-way leaves the previous dataset
intact: parts are written under a staging folder, moved into place, and only then does an atomic replace of the
manifest publish them. One writer at a time holds ``.lock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import duckdb

from zumik_cli import __version__
from zumik_cli.core.errors import DatasetError
from zumik_cli.dataset.schema import SCHEMA_VERSION, TABLES

MANIFEST = "manifest.json"
TABLE_NAME = re.compile(r"[a-z][a-z0-9_]*")
DUCKDB_MEMORY = os.environ.get("ZUMIK_DUCKDB_MEMORY", "1GB")


@dataclass
class Manifest:
    schema_version: int = SCHEMA_VERSION
    zumik_version: str = __version__
    parts: dict[str, list[str]] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    quarantine: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "zumik_version": self.zumik_version,
            "parts": self.parts,
            "inputs": self.inputs,
            "quarantine": self.quarantine,
            **self.extra,
        }


def read_manifest(root: Path) -> Manifest:
    path = root / MANIFEST
    if root.exists() and not root.is_dir():
        raise DatasetError(f"{root} is a file, not a dataset folder: pass the folder that `zumik ingest --data` wrote")
    if not path.exists():
        raise DatasetError(f"{root} is not a zumik dataset (no {MANIFEST}): run `zumik ingest TRACES --data {root}`")
    try:
        raw = json.loads(path.read_text())
    except ValueError as exc:
        raise DatasetError(f"{path} is unreadable ({exc}): re-create the dataset with `zumik ingest`") from exc
    if not isinstance(raw, dict):
        raise DatasetError(f"{path} is unreadable (not a JSON object): re-create the dataset with `zumik ingest`")
    version = raw.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:  # JSON true is not schema 1
        newer = type(version) is int and version > SCHEMA_VERSION
        raise DatasetError(
            f"{root} was written with dataset schema {version} (by zumik {raw.get('zumik_version')}); this zumik "
            f"reads schema {SCHEMA_VERSION}: {'upgrade zumik to read it, or ' if newer else ''}re-ingest the traces "
            "into a new folder with `zumik ingest`"
        )
    known = {"schema_version", "zumik_version", "parts", "inputs", "quarantine"}
    parts, inputs, quarantine = raw.get("parts", {}), raw.get("inputs", []), raw.get("quarantine", [])
    _check_listing(path, parts, inputs, quarantine)
    return Manifest(
        schema_version=version,
        zumik_version=raw.get("zumik_version", ""),
        parts=parts,
        inputs=inputs,
        quarantine=quarantine,
        extra={k: v for k, v in raw.items() if k not in known},
    )


def _check_listing(path: Path, parts: Any, inputs: Any, quarantine: Any) -> None:
    """A manifest lists tables by name and parts by relative path inside the dataset: anything else (a damaged or
    edited file) is refused before a table name reaches SQL or a path leaves the folder."""
    redo = "re-create the dataset with `zumik ingest`"
    shaped = (
        isinstance(parts, dict)
        and all(isinstance(v, list) and all(isinstance(p, str) for p in v) for v in parts.values())
        and isinstance(inputs, list)
        and isinstance(quarantine, list)
        and all(isinstance(q, str) for q in quarantine)
    )
    if not shaped:
        raise DatasetError(f"{path} is malformed (parts, inputs or quarantine of the wrong shape): {redo}")
    for table in parts:
        if not TABLE_NAME.fullmatch(table):
            raise DatasetError(f"{path} names a table {table!r} zumik never writes: {redo}")
    for part in [*(p for listed in parts.values() for p in listed), *quarantine]:
        pure = PurePosixPath(part)
        if pure.is_absolute() or ".." in pure.parts or "\\" in part or len(pure.parts) != 2:
            raise DatasetError(f"{path} lists a part outside the dataset ({part!r}): {redo}")


def write_manifest(root: Path, manifest: Manifest) -> None:
    write_atomic(root / MANIFEST, json.dumps(manifest.to_json(), indent=2, sort_keys=True).encode())


def write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def writer_lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_orphans(root: Path, manifest: Manifest) -> None:
    """Parts, staging folders and half-written manifests a killed writer left behind are not in the manifest:
    delete them (under the writer lock, so no live writer owns them)."""
    listed = {p for parts in manifest.parts.values() for p in parts} | set(manifest.quarantine)
    for staging in root.glob(".staging-*"):
        shutil.rmtree(staging, ignore_errors=True)
    for temporary in root.glob(f".{MANIFEST}.*"):
        temporary.unlink(missing_ok=True)
    for table in [*TABLES, "quarantine"]:
        folder = root / table
        if folder.is_dir():
            for part in folder.iterdir():
                if f"{table}/{part.name}" not in listed:
                    part.unlink()


class Dataset:
    """Read access: DuckDB views over exactly the parts the manifest lists (a consistent snapshot)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root)

    def parts(self, table: str) -> list[str]:
        return [str(self.root / p) for p in self.manifest.parts.get(table, [])]

    def connect(self, threads: int | None = None) -> duckdb.DuckDBPyConnection:
        # Bounded memory whatever the dataset's size: past the limit DuckDB spills its sorts, joins and temp
        # tables to a folder inside the dataset rather than growing (80% of the machine by default).
        con = duckdb.connect(
            ":memory:", config={"memory_limit": DUCKDB_MEMORY, "temp_directory": str(self.root / ".duckdb-tmp")}
        )
        # DuckDB draws a progress bar on stdout for any query over two seconds, terminal or not: stdout is data.
        # Inside Jupyter the setting is refused (it wants ipywidgets), and there stdout is not data anyway.
        with contextlib.suppress(duckdb.InvalidInputException):
            con.execute("SET enable_progress_bar_print = false")
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        for table in self.manifest.parts:
            parts = self.parts(table)
            if parts:
                listed = ", ".join("'" + p.replace("'", "''") + "'" for p in parts)
                con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{listed}], union_by_name = true)")
        for table, schema in TABLES.items():
            if not self.parts(table):
                columns = ", ".join(f"NULL::{_duck_type(f.type)} AS {f.name}" for f in schema)
                con.execute(f"CREATE VIEW {table} AS SELECT {columns} WHERE false")
        return con

    def quarantine_entries(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        for part in self.manifest.quarantine:
            with (self.root / part).open() as handle:
                entries.extend(json.loads(line) for line in handle if line.strip())
        return entries


def _duck_type(arrow_type: Any) -> str:
    import pyarrow as pa

    if pa.types.is_list(arrow_type):
        return _duck_type(arrow_type.value_type) + "[]"
    return {
        pa.string(): "VARCHAR",
        pa.int64(): "BIGINT",
        pa.int32(): "INTEGER",
        pa.float64(): "DOUBLE",
        pa.bool_(): "BOOLEAN",
    }[arrow_type]


def stage_parts(root: Path, parts: dict[str, Any]) -> list[str]:
    """Write Arrow tables to their part paths through a staging folder and move them into place.

    Moved parts are not yet published: the caller, holding the writer lock, lists them in the manifest.
    """
    import uuid

    import pyarrow.parquet as pq

    staging = root / f".staging-{uuid.uuid4().hex[:12]}"
    try:
        for part, table in parts.items():
            (staging / part).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, staging / part, compression="zstd")
        for part in parts:
            (root / part).parent.mkdir(exist_ok=True)
            os.replace(staging / part, root / part)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return list(parts)


def publish(root: Path, tables: dict[str, Any], *, extra: dict[str, Any] | None = None) -> list[str]:
    """Add one Parquet part per table (Arrow tables) and publish them all with one atomic manifest write."""
    import uuid

    root = Path(root)
    with writer_lock(root):
        manifest = read_manifest(root)
        remove_orphans(root, manifest)
        run = uuid.uuid4().hex[:12]
        written = stage_parts(root, {f"{table}/part-{run}.parquet": data for table, data in tables.items()})
        for part in written:
            manifest.parts.setdefault(part.split("/", 1)[0], []).append(part)
        manifest.extra.update(extra or {})
        write_manifest(root, manifest)
    return written

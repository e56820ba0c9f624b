"""A zumik dataset: a folder of Parquet parts plus ``manifest.json``, the only source of truth.

Readers see exactly the parts the manifest lists, so a writer that dies half-way leaves the previous dataset
intact: parts are written under a staging folder, fsynced, moved into place, and only then does an atomic replace
of the manifest publish them. One writer at a time holds ``.lock``.

A reader finishes on the snapshot it opened. Each manifest has a generation; a part a writer drops from the
manifest is *retired* with the generation that dropped it, not deleted. Each open ``Dataset`` holds a lease (a
locked file under ``.readers/`` naming the generation it read), and a retired part is deleted only once no live
lease is older than its retirement, as Delta Lake and Iceberg keep the files of snapshots a reader may still use.

The root may also be a URI on object storage (``s3://bucket/prefix``, ``gs://``, ``abfss://``): there is no
rename, lock or lease there, so ``dataset.object_store`` publishes parts first and the manifest last, checks the
generation instead of holding a lock, and deletes unlisted and retired parts only once they are a day old. Each
function here takes either root and hands a URI to that module; a ``Path`` root takes the local path, unchanged.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import re
import shutil
import tempfile
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import duckdb

from zumik_cli import __version__
from zumik_cli.core.cpus import available_cpus, size_arrow_pools
from zumik_cli.core.errors import DatasetError
from zumik_cli.core.redact import redact
from zumik_cli.core.storage import Remote, local_or_uri, parquet_files, remote
from zumik_cli.dataset.schema import SCHEMA_VERSION, TABLES

MANIFEST = "manifest.json"
READERS = ".readers"  # one locked lease file per open Dataset
TABLE_NAME = re.compile(r"[a-z][a-z0-9_]*")
DUCKDB_MEMORY = os.environ.get("ZUMIK_DUCKDB_MEMORY", "1GB")


@dataclass
class Manifest:
    schema_version: int = SCHEMA_VERSION
    zumik_version: str = __version__
    parts: dict[str, list[str]] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    quarantine: list[str] = field(default_factory=list)
    generation: int = 0  # how many times the manifest was published
    retired: list[dict[str, Any]] = field(default_factory=list)  # {"part", "generation"}: dropped, not yet deleted
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "zumik_version": self.zumik_version,
            "parts": self.parts,
            "inputs": self.inputs,
            "quarantine": self.quarantine,
            "generation": self.generation,
            "retired": self.retired,
            **self.extra,
        }

    def retire(self, parts: list[str]) -> None:
        """Drop parts from the manifest about to be published; their files stay while a reader may list them."""
        dropped = set(parts)
        for table, listed in self.parts.items():
            self.parts[table] = [p for p in listed if p not in dropped]
        self.retired.extend({"part": p, "generation": self.generation + 1} for p in parts)


def read_manifest(root: Path | str) -> Manifest:
    if isinstance(root, str):
        from zumik_cli.dataset import object_store

        return object_store.read_manifest(root)
    path = root / MANIFEST
    if root.exists() and not root.is_dir():
        raise DatasetError(f"{root} is a file, not a dataset folder: pass the folder that `zumik ingest --data` wrote")
    if not path.exists():
        raise DatasetError(f"{root} is not a zumik dataset (no {MANIFEST}): run `zumik ingest TRACES --data {root}`")
    return parse_manifest(root, path, path.read_text())


def parse_manifest(root: Path | str, path: Path | str, text: str | bytes) -> Manifest:
    """The manifest of the dataset at ``root`` from the text of ``path``, checked."""
    try:
        raw = json.loads(text)
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
    known = {"schema_version", "zumik_version", "parts", "inputs", "quarantine", "generation", "retired"}
    parts, inputs, quarantine = raw.get("parts", {}), raw.get("inputs", []), raw.get("quarantine", [])
    _check_listing(path, parts, inputs, quarantine)
    return Manifest(
        schema_version=version,
        zumik_version=raw.get("zumik_version", ""),
        parts=parts,
        inputs=inputs,
        quarantine=quarantine,
        generation=int(raw.get("generation") or 0),
        retired=list(raw.get("retired") or []),
        extra={k: v for k, v in raw.items() if k not in known},
    )


def _check_listing(path: Path | str, parts: Any, inputs: Any, quarantine: Any) -> None:
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
    """Publish the manifest as the next generation (the caller holds the writer lock)."""
    manifest.generation += 1
    try:
        write_atomic(root / MANIFEST, manifest_bytes(manifest))
    except BaseException:
        manifest.generation -= 1
        raise


def manifest_bytes(manifest: Manifest) -> bytes:
    return json.dumps(manifest.to_json(), indent=2, sort_keys=True).encode()


def manifest_or_new(root: Path | str) -> Manifest:
    """The dataset's manifest, or an empty one where none was published yet (a first ingest)."""
    if isinstance(root, str):
        from zumik_cli.dataset import object_store

        return object_store.read_manifest(root, missing_ok=True)
    return read_manifest(root) if (root / MANIFEST).exists() else Manifest()


def write_atomic(path: Path, data: bytes) -> None:
    """Replace a file whole: a temporary file, fsynced, renamed over it, and the folder fsynced so that the rename
    survives a power cut."""
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
    fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Make the names in a folder (files created, moved or removed) durable."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


@contextlib.contextmanager
def writer_lock(root: Path | str) -> Iterator[None]:
    """One writer at a time on a local dataset; on object storage, nothing to hold (the publish checks instead)."""
    if isinstance(root, str):
        yield
        return
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_orphans(root: Path | str, manifest: Manifest) -> None:
    """Delete what a killed writer left behind (staging folders, half-written manifests, parts moved into place
    but never published: a failing writer removes its own, a killed one cannot), and the retired parts no reader
    can still list. Under the writer lock, so no live writer owns any of them."""
    if isinstance(root, str):
        from zumik_cli.dataset import object_store

        object_store.remove_orphans(root, manifest)
        return
    listed = {p for parts in manifest.parts.values() for p in parts} | set(manifest.quarantine)
    listed |= {entry["part"] for entry in manifest.retired}
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
    expire_retired(root, manifest)


def expire_retired(root: Path, manifest: Manifest) -> None:
    """Delete the retired parts that every live reader's snapshot no longer lists, and forget them in the next
    manifest the caller publishes (a manifest that still names a deleted retired part harms no reader)."""
    if not manifest.retired:
        return
    oldest = _oldest_reader(root)
    keep = []
    for entry in manifest.retired:
        if oldest is not None and oldest < entry["generation"]:
            keep.append(entry)
            continue
        (root / entry["part"]).unlink(missing_ok=True)
    manifest.retired = keep


def _oldest_reader(root: Path) -> int | None:
    """The oldest generation a live reader holds (a reader still opening counts as generation 0); None when no
    reader is open. A lease whose lock is free belonged to a process that is gone: it is removed."""
    oldest: int | None = None
    folder = root / READERS
    if not folder.is_dir():
        return None
    for lease in folder.iterdir():
        if lease.name.startswith("."):
            continue  # a reader still taking its lease has not read the manifest yet
        try:
            with lease.open("r") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    text = handle.read().strip()
                    generation = int(text) if text.isdecimal() else 0
                    oldest = generation if oldest is None else min(oldest, generation)
                    continue
            lease.unlink(missing_ok=True)
        except FileNotFoundError:
            continue
    return oldest


def _take_lease(root: Path) -> tuple[Any, Path] | None:
    """A lease file under ``.readers/``, locked for as long as the returned handle is open, that says generation 0
    (still opening) until the reader has read the manifest. It is locked under a hidden name and only then given
    the name writers look at, so no writer can take it for a dead reader's. None where the dataset cannot be
    written to: there no writer can retire a part either."""
    name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    try:
        (root / READERS).mkdir(exist_ok=True)
        handle = (root / READERS / f".{name}").open("w+")
    except OSError:
        return None
    fcntl.flock(handle, fcntl.LOCK_EX)
    handle.write("0")
    handle.flush()
    os.replace(root / READERS / f".{name}", root / READERS / name)
    return handle, root / READERS / name


def _keep(dataset: Dataset) -> None:
    """Nothing: holding ``dataset`` as a finalizer's argument keeps it (and its lease) alive."""


def _release_lease(handle: Any, path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
    handle.close()


class Dataset:
    """Read access: DuckDB views over exactly the parts the manifest lists (a consistent snapshot).

    The lease taken before the manifest is read keeps the parts of that snapshot on disk until ``close`` (or the
    object's collection, or the process's end). On object storage the tables are Arrow datasets over the parts,
    which DuckDB scans lazily (only the columns and row groups a query needs), registered on each connection."""

    _lease: Any = None
    _database: duckdb.DuckDBPyConnection | None = None  # the snapshot's views, opened once; callers get cursors
    _remote_tables: dict[str, Any] | None = None  # on object storage: each table's Arrow dataset, built once

    def __init__(self, root: Path | str) -> None:
        self.root = local_or_uri(root)
        if isinstance(self.root, str):
            self.manifest = read_manifest(self.root)
            return
        lease = _take_lease(self.root) if (self.root / MANIFEST).exists() else None
        try:
            self.manifest = read_manifest(self.root)
        except BaseException:
            if lease is not None:
                _release_lease(*lease)
            raise
        if lease is not None:
            handle, _ = lease
            handle.seek(0)
            handle.write(str(self.manifest.generation))  # only ever grows from "0": a torn read is older, not newer
            handle.flush()
            self._lease = weakref.finalize(self, _release_lease, *lease)

    def close(self) -> None:
        """Let writers delete the parts this snapshot lists once newer manifests have dropped them."""
        if self._lease is not None:
            self._lease()

    @functools.cached_property
    def store(self) -> Remote:
        """The object-storage folder of a dataset whose root is a URI."""
        return remote(str(self.root))

    def parts(self, table: str) -> list[str]:
        if isinstance(self.root, str):
            return [self.store.uri_of(p) for p in self.manifest.parts.get(table, [])]
        return [str(self.root / p) for p in self.manifest.parts.get(table, [])]

    def connect(self, threads: int | None = None) -> duckdb.DuckDBPyConnection:
        """A connection to DuckDB with a view of each table; its temp tables and registered objects are its own.

        The views live in one in-memory database per snapshot, opened by the first call: starting DuckDB and
        reading each table's Parquet schema is done once, not once for every step of a run that connects.
        ``threads`` asks for a database of its own with that many threads.
        """
        if threads is not None:
            con = self._open(threads)
        else:
            if self._database is None:
                self._database = self._open(None)
            con = self._database.cursor()
        # DuckDB draws a progress bar on stdout for any query over two seconds, terminal or not: stdout is data.
        # The setting is the connection's own. Inside Jupyter it is refused (it wants ipywidgets), and there
        # stdout is not data anyway.
        with contextlib.suppress(duckdb.InvalidInputException):
            con.execute("SET enable_progress_bar_print = false")
        for table, arrow in self._remote_views().items():
            con.register(table, arrow)  # a connection's own name, ahead of the database's view of the same name
        # the connection reads this snapshot's parts until it is closed: it keeps the snapshot's lease, so that
        # ``Dataset(path).connect()`` is safe although the Dataset itself is gone at once
        weakref.finalize(con, _keep, self)
        return con

    def _remote_views(self) -> dict[str, Any]:
        """Each table with a part on object storage, as one Arrow dataset over its parts in order: DuckDB cannot
        read a URI here without an extension, so Arrow reads the parts and DuckDB scans what Arrow reads."""
        if self._remote_tables is None:
            remote_root = self.store if isinstance(self.root, str) else None
            self._remote_tables = {
                table: parquet_files(parts, remote_root, TABLES.get(table))
                for table in self.manifest.parts
                if (parts := self.parts(table)) and any("://" in p for p in parts)
            }
        return self._remote_tables

    def _open(self, threads: int | None) -> duckdb.DuckDBPyConnection:
        # Bounded memory whatever the dataset's size: past the limit DuckDB spills its sorts, joins and temp
        # tables to a folder inside the dataset rather than growing (80% of the machine by default); for a dataset
        # on object storage, to a local temporary folder of this process's own.
        spill = (
            self.root / ".duckdb-tmp"
            if isinstance(self.root, Path)
            else Path(tempfile.gettempdir()) / f"zumik-duckdb-{os.getpid()}"
        )
        con = duckdb.connect(":memory:", config={"memory_limit": DUCKDB_MEMORY, "temp_directory": str(spill)})
        # as many threads as CPUs this process may use, not the machine's cores (``core.cpus``)
        con.execute(f"SET threads = {int(threads or available_cpus())}")
        size_arrow_pools()
        for table in self.manifest.parts:
            parts = self.parts(table)
            if parts and not any("://" in p for p in parts):  # else a view of each connection's own (connect)
                listed = ", ".join("'" + p.replace("'", "''") + "'" for p in parts)
                read = f"read_parquet([{listed}], union_by_name = true)"
                # a column the schema gained later reads as NULL (unknown) in parts written before it
                present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {read}").fetchall()}
                added = "".join(
                    f", NULL::{_duck_type(f.type)} AS {f.name}" for f in TABLES.get(table, []) if f.name not in present
                )
                con.execute(f"CREATE VIEW {table} AS SELECT *{added} FROM {read}")
        for table, schema in TABLES.items():
            if not self.parts(table):
                columns = ", ".join(f"NULL::{_duck_type(f.type)} AS {f.name}" for f in schema)
                con.execute(f"CREATE VIEW {table} AS SELECT {columns} WHERE false")
        return con

    def quarantine_entries(self) -> list[dict[str, Any]]:
        """The quarantined records, reasons and excerpts redacted again: a dataset written by an older zumik may
        hold a credential its redaction did not know."""
        entries: list[dict[str, Any]] = []
        for part in self.manifest.quarantine:
            if isinstance(self.root, str):
                lines = (self.store.read(part) or b"").decode().splitlines()
            else:
                lines = (self.root / part).read_text().splitlines()
            entries.extend(json.loads(line) for line in lines if line.strip())
        for entry in entries:
            for key in ("reason", "excerpt"):
                if isinstance(entry.get(key), str):
                    entry[key] = redact(entry[key])
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


def publish_staged(root: Path | str, staging: Path, parts: list[str], manifest: Manifest) -> None:
    """Publish parts written under ``staging`` with the manifest that lists them (the caller holds the writer lock).

    Each part is fsynced, moved into place, its folder and the dataset folder fsynced, and only then is the manifest
    replaced: after a power cut the manifest never names a part that is not whole on disk. Should anything fail,
    the parts this writer moved are removed again, by this writer; the previous manifest stays in force.
    """
    if isinstance(root, str):
        from zumik_cli.dataset import object_store

        object_store.publish_staged(root, staging, parts, manifest)
        return
    moved: list[str] = []
    try:
        for part in parts:
            fsync_file(staging / part)
            (root / part).parent.mkdir(exist_ok=True)
            os.replace(staging / part, root / part)
            moved.append(part)
        for folder in sorted({(root / part).parent for part in parts} | {root}):
            fsync_folder(folder)
        write_manifest(root, manifest)
    except BaseException:
        for part in moved:
            with contextlib.suppress(OSError):
                (root / part).unlink()
        raise
    expire_retired(root, manifest)


@contextlib.contextmanager
def staging_folder(root: Path | str, run: str) -> Iterator[Path]:
    """Where a writer puts its parts before publishing them: a hidden folder inside a local dataset (one rename
    away from its place), a temporary local folder for a dataset on object storage; removed afterwards."""
    if isinstance(root, str):
        with tempfile.TemporaryDirectory(prefix=f"zumik-staging-{run}-") as folder:
            yield Path(folder)
        return
    staging = root / f".staging-{run}"
    staging.mkdir(parents=True)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish_tables(root: Path | str, manifest: Manifest, parts: dict[str, Any]) -> None:
    """Write Arrow tables to their part paths through a staging folder and publish them with ``manifest``, which
    the caller (holding the writer lock) has already changed to list them."""
    import pyarrow.parquet as pq

    with staging_folder(root, uuid.uuid4().hex[:12]) as staging:
        for part, table in parts.items():
            (staging / part).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, staging / part, compression="zstd")
        publish_staged(root, staging, list(parts), manifest)


def publish(root: Path | str, tables: dict[str, Any], *, extra: dict[str, Any] | None = None) -> list[str]:
    """Add one Parquet part per table (Arrow tables) and publish them all with one atomic manifest write."""
    root = local_or_uri(root)
    with writer_lock(root):
        manifest = read_manifest(root)
        remove_orphans(root, manifest)
        run = uuid.uuid4().hex[:12]
        parts = {f"{table}/part-{run}.parquet": data for table, data in tables.items()}
        for part in parts:
            manifest.parts.setdefault(part.split("/", 1)[0], []).append(part)
        manifest.extra.update(extra or {})
        publish_tables(root, manifest, parts)
    return list(parts)

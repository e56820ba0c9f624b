"""A zumik dataset on object storage: the same manifest and parts as a local folder, published without rename.

Object stores have no rename and no lock, but a PUT of one object is atomic. So a writer uploads its parts to their
final names first (names unique to the run, which no manifest lists yet) and writes the manifest last, in one PUT:
that is the commit. A reader sees the old manifest or the new one, never half of one, and reads only what it lists.

One writer at a time. pyarrow's file systems expose no conditional write, so a writer reads the manifest again
just before its own and refuses to publish when another has published meanwhile (the generation moved); the window
left is the time between that read and the PUT. Run one writer per dataset (one scheduled job), as for Delta Lake
on S3 without a commit service.

A writer that dies leaves only parts no manifest lists; a later publish deletes those older than ``ORPHAN_AGE``, so
that the parts of a writer still uploading are never taken. Readers hold no lease (there is nothing to lock), so a
part a manifest drops (``retired``) is deleted by a later publish only once it was dropped ``RETIRED_AGE`` ago: a
reader that spends longer than that on one snapshot may find a part gone, and runs again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from zumik_cli.core.errors import DatasetError
from zumik_cli.core.storage import Remote, remote
from zumik_cli.dataset.schema import TABLES
from zumik_cli.dataset.store import MANIFEST, Manifest, manifest_bytes, parse_manifest

ORPHAN_AGE = 24 * 3600.0  # seconds: an unlisted part younger than this may belong to a writer still uploading
RETIRED_AGE = 24 * 3600.0  # seconds: how long a dropped part stays for the readers of older snapshots


def read_manifest(uri: str, *, missing_ok: bool = False) -> Manifest:
    where = remote(uri)
    text = where.read(MANIFEST)
    if text is None:
        if missing_ok:
            return Manifest()
        raise DatasetError(f"{uri} is not a zumik dataset (no {MANIFEST}): run `zumik ingest TRACES --data {uri}`")
    return parse_manifest(uri, where.uri_of(MANIFEST), text)


def publish_staged(uri: str, staging: Path, parts: list[str], manifest: Manifest) -> None:
    """Upload the parts written under ``staging``, then publish ``manifest`` in one PUT, unless another writer
    published since ``manifest`` was read. Parts uploaded before a failure are deleted again (a failed manifest
    PUT leaves them: the manifest may have been written, and an unlisted part is removed later by age)."""
    where = remote(uri)
    uploaded: list[str] = []
    try:
        for part in parts:
            where.upload(staging / part, part)
            uploaded.append(part)
        _refuse_concurrent(where, manifest)
    except BaseException:
        for part in uploaded:
            where.delete(part)
        raise
    now = time.time()
    for entry in manifest.retired:
        entry.setdefault("at", now)  # when it was dropped: no reader lease says when it may go
    manifest.generation += 1
    try:
        where.write(MANIFEST, manifest_bytes(manifest))
    except BaseException:
        manifest.generation -= 1
        raise
    _expire_retired(where, manifest, now)


def _refuse_concurrent(where: Remote, manifest: Manifest) -> None:
    text = where.read(MANIFEST)
    current = int(json.loads(text).get("generation") or 0) if text is not None else 0
    if current != manifest.generation:
        raise DatasetError(
            f"another writer published {where.uri} (generation {current}) while this one ran from generation "
            f"{manifest.generation}: nothing of this run was published; run it again, one writer at a time"
        )


def remove_orphans(uri: str, manifest: Manifest) -> None:
    """Delete the parts no manifest lists that are older than ``ORPHAN_AGE`` (a killed writer's), and the retired
    parts older than ``RETIRED_AGE``."""
    where = remote(uri)
    listed = {p for parts in manifest.parts.values() for p in parts} | set(manifest.quarantine)
    listed |= {entry["part"] for entry in manifest.retired}
    now = time.time()
    for info in where.files():
        part = where.relative(info.path)
        if part.split("/", 1)[0] not in {*TABLES, "quarantine"} or part in listed:
            continue
        if info.mtime is not None and now - info.mtime.timestamp() > ORPHAN_AGE:
            where.delete(part)
    _expire_retired(where, manifest, now)


def _expire_retired(where: Remote, manifest: Manifest, now: float) -> None:
    keep = []
    for entry in manifest.retired:
        if now - float(entry.get("at", now)) < RETIRED_AGE:
            keep.append(entry)
        else:
            where.delete(entry["part"])
    manifest.retired = keep

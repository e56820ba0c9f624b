"""Deriving a new alias release from an existing one, and writing history files.

The invariant: an existing release is never edited. A new release gets the next id of its creation day, supersedes
its alias's latest release, must differ from the release it was derived from, and is appended as a new YAML
document, so every byte already in the file stays where it was.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from zumik_cli.core.errors import ReleaseError
from zumik_cli.dataset.store import write_atomic
from zumik_cli.routing.release_store import check_history
from zumik_cli.routing.releases import (
    ID_RE,
    History,
    Release,
    canonical_content,
    dump_document,
    iso,
    load_history,
    parse_release,
)

HEADER = (
    "# zumik alias release history: one YAML document per release (docs/releases.md).\n"
    "# Releases are immutable: derive a new one with `zumik releases new`, never edit one in place.\n"
)


def parse_assignment(text: str) -> tuple[str, Any]:
    """``path=value`` with a JSON value where it parses as one (3.5, null, ["a"]), else the text itself."""
    if "=" not in text:
        raise ReleaseError(f"--set takes PATH=VALUE (e.g. targets[0].model_revision=rev-2), not {text!r}")
    path, raw = text.split("=", 1)
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return path.strip(), value


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    parts: list[str | int] = []
    for piece in re.sub(r"\[(\d+)\]", r".\1", path).split("."):
        if not piece:
            raise ReleaseError(f"--set path {path!r} is empty somewhere: write e.g. targets[0].model_revision")
        parts.append(int(piece) if piece.isdigit() else piece)
    if parts[0] in ("id", "created_at", "supersedes", "digest"):
        raise ReleaseError(f"--set cannot change {parts[0]}: zumik assigns it to every new release")
    node: Any = doc
    for here, nxt in zip(parts, parts[1:], strict=False):
        if isinstance(node, list) and isinstance(here, int):
            if here == len(node):
                node.append({} if isinstance(nxt, str) else [])
            if here >= len(node):
                raise ReleaseError(f"--set {path}: index {here} is past the end of the list (length {len(node)})")
            node = node[here]
        elif isinstance(node, dict) and isinstance(here, str):
            if node.get(here) is None:
                node[here] = [] if isinstance(nxt, int) else {}
            node = node[here]
        else:
            raise ReleaseError(f"--set {path}: {here!r} does not fit the release's shape (docs/releases.md)")
    last = parts[-1]
    if isinstance(node, list) and isinstance(last, int) and last <= len(node):
        if last == len(node):
            node.append(value)
        else:
            node[last] = value
    elif isinstance(node, dict) and isinstance(last, str):
        node[last] = value
    else:
        raise ReleaseError(f"--set {path}: {last!r} does not fit the release's shape (docs/releases.md)")


def next_id(history: History, created_at: datetime) -> str:
    """``alr_<UTC day of creation>_<NNN>``, one past the highest number used that day."""
    day = created_at.astimezone(UTC).strftime("%Y_%m_%d")
    used = [int(m.group(4)) for r in history.releases if (m := ID_RE.match(r.id)) and r.id[4:14] == day]
    number = max(used, default=0) + 1
    if number > 999:
        raise ReleaseError(f"1,000 releases on {day} already: create this one on another day (--created-at)")
    return f"alr_{day}_{number:03d}"


def derive_release(
    history: History,
    *,
    base: str | None = None,
    alias: str | None = None,
    changes: Mapping[str, Any] | None = None,
    created_at: datetime | None = None,
) -> Release:
    """A new release from an existing one with changes: next id, supersedes the alias's latest release."""
    if base is None and alias is None:
        raise ReleaseError("say which release to derive from: --from ID, or --alias NAME for its latest release")
    source = history.get(base) if base else history.latest(alias or "")
    if source is None:
        raise ReleaseError(f"alias {alias!r} has no release in {history.source} to derive from")
    latest = history.latest(source.alias)
    assert latest is not None
    moment = (created_at or datetime.now(UTC)).astimezone(UTC)
    if moment <= latest.created_at:
        raise ReleaseError(
            f"a new release of {source.alias} must be created after its latest one, {latest.id} "
            f"({iso(latest.created_at)}); pass a later --created-at"
        )
    doc = copy.deepcopy(canonical_content(source))
    for path, value in (changes or {}).items():
        _set(doc, path, value)
    doc.update(id=next_id(history, moment), created_at=iso(moment), supersedes=latest.id)
    derived = parse_release(doc, f"new release of {source.alias}")
    if {k: v for k, v in canonical_content(derived).items() if k not in ("id", "created_at", "supersedes")} == {
        k: v for k, v in canonical_content(source).items() if k not in ("id", "created_at", "supersedes")
    }:
        raise ReleaseError(f"the new release would not differ from {source.id}: pass at least one --set PATH=VALUE")
    return derived


def append_release(path: Path, release: Release) -> None:
    """Append one document; every byte already in the file stays where it is (atomic replace)."""
    path = Path(path)
    existing = path.read_bytes() if path.exists() else HEADER.encode()
    if existing and not existing.endswith(b"\n"):
        existing += b"\n"
    write_atomic(path, existing + dump_document(release).encode("utf-8"))


def write_history(path: Path, releases: list[Release]) -> None:
    """Write a whole history (used for new files only: ``new`` appends)."""
    write_atomic(Path(path), (HEADER + "".join(dump_document(r) for r in releases)).encode("utf-8"))


def new_release(
    path: Path,
    *,
    base: str | None = None,
    alias: str | None = None,
    changes: dict[str, Any] | None = None,
    created_at: datetime | None = None,
) -> Release:
    """Derive a release from an existing one with changes and append it to the history file.

    Refuses to extend a history that does not verify; the file's existing bytes are left untouched.
    """
    history = load_history(path)
    errors = [p for p in check_history(history) if p.severity == "error"]
    if errors:
        first = errors[0]
        raise ReleaseError(
            f"{path} does not verify (release {first.release}, field {first.field}: {first.message}); fix it before "
            "adding releases (`zumik releases verify`)"
        )
    release = derive_release(history, base=base, alias=alias, changes=changes, created_at=created_at)
    append_release(path, release)
    return release

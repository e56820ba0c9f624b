"""Releases as a dataset knows them, and the checks that keep a history honest.

A dataset keeps the canonical content and digest of every release it has seen (the ``releases`` table), so a
history in which a known release id now has other content is refused with the release and the field named. The
same module checks a history on its own: ids, dates, the supersedes chain of each alias, policies, targets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from zumik_cli.core.errors import ReleaseError
from zumik_cli.dataset.schema import RELEASES
from zumik_cli.dataset.store import Dataset
from zumik_cli.routing.releases import (
    ID_RE,
    History,
    Release,
    changed_fields,
    parse_release,
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a history: which release, which field, what to do."""

    release: str
    field: str
    message: str
    severity: str = "error"

    def to_json(self) -> dict[str, Any]:
        return {"release": self.release, "field": self.field, "severity": self.severity, "message": self.message}


@dataclass(frozen=True)
class Verification:
    source: str
    dataset: str | None
    releases: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "source": self.source,
            "dataset": self.dataset,
            "releases": self.releases,
            "problems": [p.to_json() for p in self.problems],
        }


def recorded_history(dataset: Dataset, con: duckdb.DuckDBPyConnection | None = None) -> History:
    """The releases a dataset has recorded (by `zumik simulate`), rebuilt from their canonical content."""
    con = con or dataset.connect()
    rows = con.execute("SELECT content FROM releases ORDER BY created_at, release_id").fetchall()
    source = f"releases recorded in {dataset.root}"
    return History(tuple(parse_release(json.loads(c), source) for (c,) in rows), source)


def check_history(history: History) -> list[Problem]:
    """Internal consistency: ids and their dates, stated digests, one supersedes chain per alias, policies."""
    from zumik_cli.routing.policies import POLICIES, RELEASE_POLICIES

    problems: list[Problem] = []
    for r in history.releases:
        match = ID_RE.match(r.id)
        if match and r.id[4:14] != r.created_at.strftime("%Y_%m_%d"):
            problems.append(
                Problem(r.id, "id", f"the id's date is not the UTC day of created_at ({r.created_at:%Y-%m-%d})")
            )
        if r.stated_digest and r.stated_digest != r.digest:
            problems.append(
                Problem(
                    r.id,
                    "digest",
                    f"the content no longer matches its digest {r.stated_digest} (now {r.digest}): the release was "
                    "edited after it was created; restore it and derive a new one with `zumik releases new`",
                )
            )
        if r.policy not in RELEASE_POLICIES:
            known = ", ".join(p for p in POLICIES if p in RELEASE_POLICIES)
            problems.append(Problem(r.id, "policy", f"unknown policy {r.policy!r}; a release may use: {known}"))
        keys = [t.key for t in r.targets]
        for i, key in enumerate(keys):
            if key in keys[:i]:
                problems.append(Problem(r.id, f"targets[{i}]", f"target {key} is listed twice"))
        for i, t in enumerate(r.targets):
            if t.latency and t.latency.ttft_p95_ms < t.latency.ttft_p50_ms:
                problems.append(Problem(r.id, f"targets[{i}].latency.ttft_ms.p95", "is below p50"))
        if not any(r.constraints.allows(t) for t in r.targets):
            problems.append(Problem(r.id, "constraints", "no target satisfies allowed_providers / allowed_regions"))
    problems.extend(_chain_problems(history))
    return problems


def _chain_problems(history: History) -> list[Problem]:
    problems = []
    for r in history.releases:
        if r.supersedes and history.find(r.supersedes) is None:
            problems.append(Problem(r.id, "supersedes", f"names {r.supersedes}, which is not in the history"))
        elif r.supersedes and history.get(r.supersedes).alias != r.alias:
            problems.append(Problem(r.id, "supersedes", f"names {r.supersedes}, a release of another alias"))
    for alias in history.aliases():
        chain = history.of_alias(alias)
        for before, after in zip(chain, chain[1:], strict=False):
            if after.created_at == before.created_at:
                problems.append(
                    Problem(
                        after.id, "created_at", f"same creation time as {before.id}: resolution by time is ambiguous"
                    )
                )
            elif after.supersedes != before.id:
                problems.append(
                    Problem(
                        after.id,
                        "supersedes",
                        f"should be {before.id}, the release of {alias} created just before it "
                        f"(is {after.supersedes or 'empty'}): each alias has one line of releases",
                    )
                )
        if chain and chain[0].supersedes and history.find(chain[0].supersedes) is not None:
            problems.append(Problem(chain[0].id, "supersedes", "the first release of an alias supersedes nothing"))
    return problems


def check_against_recorded(history: History, recorded: History, dataset: str) -> list[Problem]:
    """A known release id with other content, or a recorded release missing from the history, is an error."""
    problems = []
    for old in recorded.releases:
        new = history.find(old.id)
        if new is None:
            problems.append(
                Problem(old.id, "id", f"recorded in {dataset} but missing from {history.source}: keep every release")
            )
            continue
        if new.digest == old.digest:
            continue
        diffs = changed_fields(old.content, new.content)
        path, was, now = diffs[0]
        more = (
            f" (and {', '.join(d[0] for d in diffs[1:4])}{'...' if len(diffs) > 4 else ''})" if len(diffs) > 1 else ""
        )
        problems.append(
            Problem(
                old.id,
                path,
                f"changed since {dataset} recorded it: was {was!r}, now {now!r}{more}. Releases are "
                f"immutable: restore it and derive a new one with `zumik releases new --from {old.id} --set ...`",
            )
        )
    return problems


def check_requests(history: History, dataset: Dataset) -> list[Problem]:
    """Releases the traces name that the history lacks: their requests fall back to resolution by time."""
    rows = (
        dataset.connect()
        .execute("""
        SELECT alias_release, any_value(alias), count(*) FROM requests
        WHERE coalesce(alias_release, '') <> '' GROUP BY 1 ORDER BY 1
    """)
        .fetchall()
    )
    problems = []
    for release_id, alias, count in rows:
        if history.find(release_id) is None:
            problems.append(
                Problem(
                    release_id,
                    "id",
                    f"{count} request(s) of alias {alias} name this release, which {history.source} lacks: "
                    "add it to the history (their decisions keep the recorded target meanwhile)",
                    "warning",
                )
            )
    return problems


def verify(history: History, dataset: Dataset | None = None) -> Verification:
    problems = check_history(history)
    if dataset is not None:
        changed = check_against_recorded(history, recorded_history(dataset), str(dataset.root))
        named = {p.release for p in changed}
        # the dataset names the field that changed: more than the file's own digest can say
        problems = changed + [p for p in problems if not (p.field == "digest" and p.release in named)]
        problems += check_requests(history, dataset)
    return Verification(history.source, str(dataset.root) if dataset else None, len(history), tuple(problems))


def refuse_changed(history: History, dataset: Dataset) -> None:
    """Raise on the first release the dataset knows whose content changed (the history is then not trusted)."""
    errors = [p for p in verify(history, dataset).problems if p.severity == "error"]
    if errors:
        first = errors[0]
        more = f" ({len(errors) - 1} more problem(s): run `zumik releases verify`)" if len(errors) > 1 else ""
        raise ReleaseError(f"release {first.release}, field {first.field}: {first.message}{more}")


def new_release_rows(history: History, recorded: History, source: str) -> pa.Table:
    """Rows for the releases the dataset has not recorded yet (known ones were checked to be unchanged)."""
    rows = [_row(r, source) for r in history.releases if recorded.find(r.id) is None]
    return pa.Table.from_pylist(rows, schema=RELEASES)


def _row(release: Release, source: str) -> dict[str, Any]:
    from zumik_cli.core.model import canonical_json

    content = release.content
    return {
        "release_id": release.id,
        "alias": release.alias,
        "created_at": content["created_at"],
        "supersedes": release.supersedes,
        "policy": release.policy,
        "digest": release.digest,
        "content": canonical_json(content),
        "source": source,
    }

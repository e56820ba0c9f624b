"""Alias releases: the immutable history of what each alias resolves to, kept by the user as a YAML file.

Owns the release model (targets with prices and a latency profile, a policy and its constraints), parsing, the
canonical form and its versioned digest, and resolution by time. A release never changes once created: deriving
a new one lives in ``release_derivation`` (append-only), and the dataset keeps every release's canonical content
so ``release_store`` can name the release and the field of a history that was edited.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NoReturn

import yaml

from zumik_cli.core.errors import ReleaseError
from zumik_cli.core.identity import hex_id
from zumik_cli.core.model import canonical_json

RELEASE_V = b"zumik-release-v1"
HISTORY_V = b"zumik-release-history-v1"
ID_RE = re.compile(r"^alr_(\d{4})_(\d{2})_(\d{2})_(\d{3})$")
Z95 = 1.6448536269514722  # standard normal quantile of 0.95: a lognormal's p95 = p50 * exp(Z95 * sigma)


@dataclass(frozen=True)
class Prices:
    """List prices per million tokens; cache reads and writes priced on their own."""

    input: float
    output: float
    cache_read: float
    cache_write: float
    cache_write_1h: float | None = None


@dataclass(frozen=True)
class Latency:
    """A latency profile: time to first token (median and p95) plus per-token times for prefill and output."""

    ttft_p50_ms: float
    ttft_p95_ms: float
    input_ms_per_ktok: float = 0.0
    cached_input_ms_per_ktok: float = 0.0
    output_ms_per_token: float = 0.0

    def ttft_ms(self, z: float) -> float:
        """TTFT at standard-normal score ``z`` of a lognormal through p50 and p95 (z=0: median)."""
        if self.ttft_p95_ms <= self.ttft_p50_ms or self.ttft_p50_ms <= 0:
            return self.ttft_p50_ms
        sigma = math.log(self.ttft_p95_ms / self.ttft_p50_ms) / Z95
        return self.ttft_p50_ms * math.exp(z * sigma)


@dataclass(frozen=True)
class Target:
    """One place an alias can send a request. ``key`` names its KV cache: same key, same physical cache."""

    provider: str
    model: str
    model_revision: str = ""
    engine: str = ""
    region: str = ""
    deployment: str = ""
    rules: str = ""
    prices: Prices | None = None
    latency: Latency | None = None

    @property
    def key(self) -> str:
        key = f"{self.provider}/{self.model}"
        if self.model_revision:
            key += f"@{self.model_revision}"
        for name in ("engine", "region", "deployment"):
            value = getattr(self, name)
            if value:
                key += f"|{name}={value}"
        return key

    @property
    def resolved_model(self) -> str:
        return f"{self.provider}/{self.model}"

    def matches(self, provider: str, model: str, revision: str, engine: str = "", region: str = "") -> bool:
        """Whether a recorded request went here; a blank revision, engine or region on either side matches any."""

        def same(a: str, b: str) -> bool:
            return not a or not b or a.lower() == b.lower()

        return (
            self.provider.lower() == provider.lower()
            and self.model.lower() == model.lower()
            and same(self.model_revision, revision)
            and same(self.engine, engine)
            and same(self.region, region)
        )

    def cost(self, prompt: int, output: int, read: int = 0, write: int = 0, write_ttl: str = "5m") -> float:
        """Money for one request: uncached input, cache reads, cache writes and output, at this target's prices."""
        if self.prices is None:
            return 0.0
        p = self.prices
        write_price = p.cache_write_1h if write_ttl == "1h" and p.cache_write_1h is not None else p.cache_write
        uncached = max(prompt - read - write, 0)
        return (uncached * p.input + read * p.cache_read + write * write_price + output * p.output) / 1e6

    def list_cost(self, prompt: int, output: int) -> float:
        """Money on list prices without any cache: what ``cheapest`` minimises."""
        return self.cost(prompt, output)

    def latency_ms(self, prompt: int, output: int, read: int = 0, z: float = 0.0) -> float | None:
        """Estimated latency; ``None`` when the target has no latency profile."""
        if self.latency is None:
            return None
        lat = self.latency
        uncached = max(prompt - read, 0)
        return (
            lat.ttft_ms(z)
            + uncached / 1000 * lat.input_ms_per_ktok
            + read / 1000 * lat.cached_input_ms_per_ktok
            + output * lat.output_ms_per_token
        )


@dataclass(frozen=True)
class Constraints:
    """What the release's policy must respect, whatever policy decides."""

    max_latency_ms: float | None = None
    allowed_providers: tuple[str, ...] = ()
    allowed_regions: tuple[str, ...] = ()

    def allows(self, target: Target) -> bool:
        return (not self.allowed_providers or target.provider in self.allowed_providers) and (
            not self.allowed_regions or target.region in self.allowed_regions
        )


@dataclass(frozen=True)
class Release:
    id: str
    alias: str
    created_at: datetime
    supersedes: str | None
    policy: str
    constraints: Constraints
    targets: tuple[Target, ...]
    notes: str = ""
    stated_digest: str | None = None  # the digest the document carries, if any
    line: int = 0  # where the document starts in its file (0: not from a file)

    @property
    def created_ts(self) -> float:
        return self.created_at.timestamp()

    @property
    def content(self) -> dict[str, Any]:
        return canonical_content(self)

    @property
    def digest(self) -> str:
        return release_digest(self)

    def target(self, key: str) -> Target | None:
        return next((t for t in self.targets if t.key == key), None)


# --- canonical form and digest ---------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _target_content(t: Target) -> dict[str, Any]:
    content: dict[str, Any] = {
        "provider": t.provider,
        "model": t.model,
        "model_revision": t.model_revision,
        "engine": t.engine,
        "region": t.region,
        "deployment": t.deployment,
        "rules": t.rules,
    }
    if t.prices is not None:
        content["prices_per_mtok"] = {
            "input": t.prices.input,
            "output": t.prices.output,
            "cache_read": t.prices.cache_read,
            "cache_write": t.prices.cache_write,
            "cache_write_1h": t.prices.cache_write_1h,
        }
    if t.latency is not None:
        content["latency"] = {
            "ttft_ms": {"p50": t.latency.ttft_p50_ms, "p95": t.latency.ttft_p95_ms},
            "input_ms_per_ktok": t.latency.input_ms_per_ktok,
            "cached_input_ms_per_ktok": t.latency.cached_input_ms_per_ktok,
            "output_ms_per_token": t.latency.output_ms_per_token,
        }
    return content


def canonical_content(release: Release) -> dict[str, Any]:
    """Every field with defaults filled and numbers as floats: equal meaning gives equal content."""
    return {
        "id": release.id,
        "alias": release.alias,
        "created_at": iso(release.created_at),
        "supersedes": release.supersedes,
        "policy": release.policy,
        "constraints": {
            "max_latency_ms": release.constraints.max_latency_ms,
            "allowed_providers": list(release.constraints.allowed_providers),
            "allowed_regions": list(release.constraints.allowed_regions),
        },
        "targets": [_target_content(t) for t in release.targets],
        "notes": release.notes,
    }


def release_digest(release: Release) -> str:
    return hex_id("rdg_", RELEASE_V, [canonical_json(canonical_content(release))])


def document(release: Release) -> dict[str, Any]:
    """The YAML document of a release as zumik writes it: canonical content plus its digest."""
    return {**canonical_content(release), "digest": release.digest}


def dump_document(release: Release) -> str:
    return "---\n" + yaml.safe_dump(document(release), sort_keys=False, allow_unicode=True, width=120)


# --- parsing ---------------------------------------------------------------------------------------------------

_RELEASE_KEYS = {"id", "alias", "created_at", "supersedes", "policy", "constraints", "targets", "notes", "digest"}
_TARGET_KEYS = {
    "provider",
    "model",
    "model_revision",
    "engine",
    "region",
    "deployment",
    "rules",
    "prices_per_mtok",
    "latency",
}
_PRICE_KEYS = {"input", "output", "cache_read", "cache_write", "cache_write_1h"}
_LATENCY_KEYS = {"ttft_ms", "input_ms_per_ktok", "cached_input_ms_per_ktok", "output_ms_per_token"}
_CONSTRAINT_KEYS = {"max_latency_ms", "allowed_providers", "allowed_regions"}


class _Fields:
    """Typed access to one document's fields; every failure names the document, the release and the field."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, path: str, message: str) -> NoReturn:
        what = f"field {path}" if path else "the document (a release is a YAML mapping of its fields)"
        raise ReleaseError(f"{self.where}: {what} {message}: is this a release history? see docs/releases.md")

    def mapping(self, value: Any, path: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(path, "must be a mapping")
        unknown = sorted(set(value) - allowed)
        if unknown:
            self.fail(
                f"{path}.{unknown[0]}" if path else unknown[0], f"is not a release field (known: {sorted(allowed)})"
            )
        return value

    def text(self, value: Any, path: str, required: bool = False) -> str:
        if value is None:
            if required:
                self.fail(path, "is missing")
            return ""
        if isinstance(value, bool | dict | list):
            self.fail(path, "must be text")
        return value.isoformat() if isinstance(value, date) else str(value)

    def number(self, value: Any, path: str, required: bool = False) -> float | None:
        if value is None:
            if required:
                self.fail(path, "is missing")
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.fail(path, f"must be a number, not {value!r}")
        if value < 0:
            self.fail(path, f"must not be negative ({value})")
        return float(value)

    def names(self, value: Any, path: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(path, "must be a list of names")
        return tuple(value)

    def moment(self, value: Any, path: str) -> datetime:
        if isinstance(value, datetime):
            moment = value
        elif isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                self.fail(path, f"must be an ISO 8601 time, not {value!r}")
        else:
            self.fail(path, "is missing" if value is None else f"must be an ISO 8601 time, not {value!r}")
        if moment.tzinfo is None:
            self.fail(path, f"needs a time zone ({value!r}): write it as 2026-06-09T09:00:00Z")
        return moment.astimezone(UTC)


def _prices(f: _Fields, value: Any, path: str) -> Prices:
    raw = f.mapping(value, path, _PRICE_KEYS)
    req = {
        k: f.number(raw.get(k), f"{path}.{k}", required=True) for k in ("input", "output", "cache_read", "cache_write")
    }
    return Prices(
        input=req["input"] or 0.0,
        output=req["output"] or 0.0,
        cache_read=req["cache_read"] or 0.0,
        cache_write=req["cache_write"] or 0.0,
        cache_write_1h=f.number(raw.get("cache_write_1h"), f"{path}.cache_write_1h"),
    )


def _latency(f: _Fields, value: Any, path: str) -> Latency:
    raw = f.mapping(value, path, _LATENCY_KEYS)
    ttft = f.mapping(raw.get("ttft_ms"), f"{path}.ttft_ms", {"p50", "p95"})
    return Latency(
        ttft_p50_ms=f.number(ttft.get("p50"), f"{path}.ttft_ms.p50", required=True) or 0.0,
        ttft_p95_ms=f.number(ttft.get("p95"), f"{path}.ttft_ms.p95", required=True) or 0.0,
        input_ms_per_ktok=f.number(raw.get("input_ms_per_ktok"), f"{path}.input_ms_per_ktok") or 0.0,
        cached_input_ms_per_ktok=f.number(raw.get("cached_input_ms_per_ktok"), f"{path}.cached_input_ms_per_ktok")
        or 0.0,
        output_ms_per_token=f.number(raw.get("output_ms_per_token"), f"{path}.output_ms_per_token") or 0.0,
    )


def _target(f: _Fields, value: Any, path: str) -> Target:
    raw = f.mapping(value, path, _TARGET_KEYS)
    if raw.get("prices_per_mtok") is None:
        f.fail(f"{path}.prices_per_mtok", "is missing")
    if raw.get("latency") is None:
        f.fail(f"{path}.latency", "is missing")
    return Target(
        provider=f.text(raw.get("provider"), f"{path}.provider", required=True).lower(),
        model=f.text(raw.get("model"), f"{path}.model", required=True),
        model_revision=f.text(raw.get("model_revision"), f"{path}.model_revision"),
        engine=f.text(raw.get("engine"), f"{path}.engine"),
        region=f.text(raw.get("region"), f"{path}.region"),
        deployment=f.text(raw.get("deployment"), f"{path}.deployment"),
        rules=f.text(raw.get("rules"), f"{path}.rules"),
        prices=_prices(f, raw["prices_per_mtok"], f"{path}.prices_per_mtok"),
        latency=_latency(f, raw["latency"], f"{path}.latency"),
    )


def parse_release(doc: Any, where: str, line: int = 0) -> Release:
    """One release from a parsed YAML (or JSON) document; raises ``ReleaseError`` naming the field."""
    f = _Fields(where)
    raw = f.mapping(doc, "", _RELEASE_KEYS)
    release_id = f.text(raw.get("id"), "id", required=True)
    f.where = f"{where}: release {release_id}"
    if not ID_RE.match(release_id):
        f.fail("id", f"must look like alr_YYYY_MM_DD_NNN, not {release_id!r}")
    targets = raw.get("targets")
    if not isinstance(targets, list) or not targets:
        f.fail("targets", "must list at least one target")
    constraints = f.mapping(raw.get("constraints") or {}, "constraints", _CONSTRAINT_KEYS)
    supersedes = f.text(raw.get("supersedes"), "supersedes") or None
    digest = f.text(raw.get("digest"), "digest") or None
    return Release(
        id=release_id,
        alias=f.text(raw.get("alias"), "alias", required=True),
        created_at=f.moment(raw.get("created_at"), "created_at"),
        supersedes=supersedes,
        policy=f.text(raw.get("policy"), "policy", required=True),
        constraints=Constraints(
            max_latency_ms=f.number(constraints.get("max_latency_ms"), "constraints.max_latency_ms"),
            allowed_providers=tuple(
                p.lower() for p in f.names(constraints.get("allowed_providers"), "constraints.allowed_providers")
            ),
            allowed_regions=f.names(constraints.get("allowed_regions"), "constraints.allowed_regions"),
        ),
        targets=tuple(_target(f, t, f"targets[{i}]") for i, t in enumerate(targets)),
        notes=f.text(raw.get("notes"), "notes"),
        stated_digest=digest,
        line=line,
    )


# --- the history -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class History:
    """Releases in file order, indexed by id and, per alias, by creation time (for resolution)."""

    releases: tuple[Release, ...]
    source: str
    _by_id: dict[str, Release] = field(init=False, repr=False, compare=False)
    _by_alias: dict[str, tuple[list[float], list[Release]]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_id: dict[str, Release] = {}
        for release in self.releases:
            if release.id in by_id:
                raise ReleaseError(
                    f"{self.source}: release id {release.id} appears twice (lines {by_id[release.id].line} and "
                    f"{release.line}): ids are unique; derive new releases with `zumik releases new`"
                )
            by_id[release.id] = release
        by_alias: dict[str, list[Release]] = {}
        for release in sorted(self.releases, key=lambda r: (r.created_ts, r.id)):
            by_alias.setdefault(release.alias, []).append(release)
        object.__setattr__(self, "_by_id", by_id)
        object.__setattr__(self, "_by_alias", {a: ([r.created_ts for r in rs], rs) for a, rs in by_alias.items()})

    def __len__(self) -> int:
        return len(self.releases)

    def find(self, release_id: str) -> Release | None:
        return self._by_id.get(release_id)

    def get(self, release_id: str) -> Release:
        release = self._by_id.get(release_id)
        if release is None:
            known = ", ".join(sorted(self._by_id)[:8]) or "none"
            raise ReleaseError(f"no release {release_id} in {self.source} (known: {known}); see `zumik releases list`")
        return release

    def aliases(self) -> list[str]:
        return sorted(self._by_alias)

    def of_alias(self, alias: str) -> list[Release]:
        return list(self._by_alias.get(alias, ([], []))[1])

    def latest(self, alias: str) -> Release | None:
        releases = self._by_alias.get(alias, ([], []))[1]
        return releases[-1] if releases else None

    def resolve(self, alias: str, timestamp: float | None) -> Release | None:
        """The newest release of the alias created at or before the time, as a gateway would have resolved it."""
        if not alias or timestamp is None or alias not in self._by_alias:
            return None
        times, releases = self._by_alias[alias]
        index = bisect.bisect_right(times, timestamp)
        return releases[index - 1] if index else None

    @property
    def digest(self) -> str:
        """One digest of the whole history, independent of file order: tags a simulation's decisions."""
        return hex_id("rhd_", HISTORY_V, sorted(f"{r.id}={r.digest}" for r in self.releases))


def load_history(path: Path) -> History:
    """Read a YAML release history; each document is one release. Raises ``ReleaseError`` naming the field."""
    path = Path(path)
    if not path.exists():
        raise ReleaseError(f"release history {path} not found: pass --releases FILE (see docs/releases.md)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ReleaseError(
            f"{path} is not text (not UTF-8): pass the YAML release history (docs/releases.md)"
        ) from None
    return History(tuple(_documents(text, str(path))), str(path))


def _documents(text: str, source: str) -> list[Release]:
    loader = yaml.SafeLoader(text)
    releases = []
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                break
            index += 1
            line = node.start_mark.line + 1
            doc = loader.construct_document(node)
            if doc is None:
                continue
            releases.append(parse_release(doc, f"{source} line {line}", line))
    except yaml.YAMLError as exc:
        raise ReleaseError(f"{source} is not valid YAML ({exc}): fix the file (docs/releases.md)") from exc
    finally:
        loader.dispose()
    return releases


def history_from_documents(docs: list[dict[str, Any]], source: str) -> History:
    return History(tuple(parse_release(d, f"{source} #{i + 1}") for i, d in enumerate(docs)), source)


# --- differences between two versions of a release -------------------------------------------------------------


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Paths such as ``targets[0].model_revision`` to leaf values, to name exactly which field changed."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else key))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def changed_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    a, b = flatten(dict(old)), flatten(dict(new))
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def describe(release: Release) -> dict[str, Any]:
    """The document plus each target's key: what `zumik releases list|show --json` prints."""
    doc = document(release)
    doc["targets"] = [{"key": t.key, **content} for t, content in zip(release.targets, doc["targets"], strict=True)]
    return doc

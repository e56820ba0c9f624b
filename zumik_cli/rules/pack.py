"""Rules packs: versioned, dated, sourced data files that say what a provider's or engine's cache allows.

Packs ship inside the package (``rules/data/*.json``); a user adds their own by putting a file of the same shape in
a folder named by ``ZUMIK_RULES_PATH`` (or passing ``--rules-file``), which wins over a shipped pack of the same
name. Code never hard-codes a TTL, a minimum or a price: it asks the pack.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zumik_cli.core.errors import RulesError

if TYPE_CHECKING:
    import duckdb

REQUIRED = ("name", "version", "effective_from", "source", "granularity", "prices_per_mtok")
DEFAULT_PACK = "ideal"


@dataclass(frozen=True)
class RulesPack:
    name: str
    version: str
    effective_from: str
    source: str
    raw: dict[str, Any]
    origin: str

    @property
    def ttl_seconds(self) -> float | None:
        return self.raw.get("ttl_seconds")

    @property
    def granularity(self) -> dict[str, Any]:
        return dict(self.raw["granularity"])

    @property
    def capacity_tokens(self) -> int | None:
        return self.raw.get("capacity_tokens")

    def minimum_tokens(self, model: str) -> int:
        found = _by_model(self.raw.get("minimum_tokens_by_model", {}), model)
        return int(found if found is not None else self.raw.get("minimum_tokens", 0))

    def prices(self, model: str) -> dict[str, float] | None:
        return _by_model(self.raw.get("prices_per_mtok", {}), model)

    def read_multiplier(self, model: str) -> float:
        found = _by_model(self.raw.get("cache_read_multiplier_by_model", {}), model)
        return float(found if found is not None else self.raw.get("cache_read_multiplier", 1.0))

    def write_multiplier(self, ttl: str = "5m") -> float:
        table = self.raw.get("cache_write_multiplier", {})
        return float(table.get(ttl, table.get("5m", table.get("default", 1.0))))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "effective_from": self.effective_from,
            "source": self.source,
            "origin": self.origin,
            "ttl_seconds": self.ttl_seconds,
            "minimum_tokens": self.raw.get("minimum_tokens", 0),
            "granularity": self.granularity,
            "capacity_tokens": self.capacity_tokens,
            "prices_as_of": self.raw.get("prices_as_of"),
            "applies_to": self.raw.get("applies_to", {}),
        }


def _by_model(table: dict[str, Any], model: str) -> Any:
    """Longest key that prefixes the model name (provider prefix and date suffix ignored)."""
    name = model.lower().rsplit("/", 1)[-1].replace(".", "-")
    best = None
    for key in table:
        normal = key.lower().replace(".", "-")
        if name.startswith(normal) and (best is None or len(normal) > len(best[0])):
            best = (normal, table[key])
    return best[1] if best else None


def _parse(text: str, origin: str) -> RulesPack:
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise RulesError(f"rules pack {origin} is not valid JSON ({exc}): fix the file") from exc
    missing = [key for key in REQUIRED if key not in raw]
    if missing:
        raise RulesError(f"rules pack {origin} lacks {', '.join(missing)}: see zumik_cli/rules/data/ for the shape")
    return RulesPack(raw["name"], raw["version"], raw["effective_from"], raw["source"], raw, origin)


def load_packs(extra: tuple[str, ...] = ()) -> dict[str, RulesPack]:
    """Shipped packs, then those in the ``ZUMIK_RULES_PATH`` folders, then the ``extra`` files (later wins)."""
    return _load_packs(tuple(extra), os.environ.get("ZUMIK_RULES_PATH", ""))


@lru_cache(maxsize=8)
def _load_packs(extra: tuple[str, ...], rules_path: str) -> dict[str, RulesPack]:
    # cached on the folders too, so that a changed ZUMIK_RULES_PATH is read, not hidden behind the cache
    packs: dict[str, RulesPack] = {}
    for entry in sorted(resources.files("zumik_cli.rules.data").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            pack = _parse(entry.read_text(), f"zumik_cli/rules/data/{entry.name}")
            packs[pack.name] = pack
    folders = [p for p in rules_path.split(os.pathsep) if p]
    files = [path for folder in folders for path in sorted(Path(folder).glob("*.json"))]
    files += [Path(f) for f in extra]  # an explicit --rules-file wins over a pack found in a folder
    for path in files:
        if not path.exists():
            raise RulesError(f"rules file {path} not found")
        pack = _parse(path.read_text(), str(path))
        packs[pack.name] = pack
    return packs


def pack_for(provider: str, engine: str, packs: dict[str, RulesPack]) -> RulesPack:
    """The pack of the engine or provider a request went to; ``ideal`` when none claims it."""
    for pack in packs.values():
        applies = pack.raw.get("applies_to", {})
        if engine and engine.lower() in applies.get("engines", []):
            return pack
    for pack in packs.values():
        if provider and provider.lower() in pack.raw.get("applies_to", {}).get("providers", []):
            return pack
    return packs[DEFAULT_PACK]


def get_pack(name: str, packs: dict[str, RulesPack]) -> RulesPack:
    if name not in packs:
        raise RulesError(f"no rules pack named {name!r}; loaded: {', '.join(packs)} (see `zumik rules`)")
    return packs[name]


def register_target_rules(
    con: duckdb.DuckDBPyConnection, name: str, packs: dict[str, RulesPack], forced: RulesPack | None
) -> dict[tuple[Any, ...], RulesPack]:
    """Register table ``name``: for each (provider, engine, model) in ``requests``, the rules of the pack that applies
    (``forced`` when given) that SQL joins on. Returns the pack chosen for each."""
    import pyarrow as pa

    schema = pa.schema(
        [(column, pa.string()) for column in ("provider", "engine", "model", "gran_kind")]
        + [(column, pa.int64()) for column in ("min_tokens", "max_breakpoints", "lookback")]
        + [(column, pa.float64()) for column in ("ttl", "ttl_1h")]
    )
    rows, chosen = [], {}
    for provider, engine, model in con.execute("SELECT DISTINCT provider, engine, model FROM requests").fetchall():
        pack = forced or pack_for(provider or "", engine or "", packs)
        chosen[(provider, engine, model)] = pack
        gran = pack.granularity
        rows.append(
            {
                "provider": provider,
                "engine": engine,
                "model": model,
                "gran_kind": gran.get("kind", "tokens"),
                "min_tokens": pack.minimum_tokens(model or ""),
                "max_breakpoints": int(gran.get("max_breakpoints", 4)),
                "lookback": int(gran.get("lookback_blocks", 20)),
                "ttl": pack.ttl_seconds,
                "ttl_1h": (pack.raw.get("ttl_choices") or {}).get("1h"),
            }
        )
    con.register(name, pa.Table.from_pylist(rows, schema=schema))
    return chosen

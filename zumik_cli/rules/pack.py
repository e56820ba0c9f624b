"""Rules packs: versioned, dated, sourced data files that say what a provider's or engine's cache allows.

Packs ship inside the package (``rules/data/*.json``); a user adds their own by putting a file of the same shape in
a folder named by ``ZUMIK_RULES_PATH`` (or passing ``--rules-file``), which wins over a shipped pack of the same
name. Each file is parsed once, here, into typed fields with one set of defaults (``Granularity``'s and
``RulesPack``'s); code elsewhere never reads the JSON, never hard-codes a TTL, a minimum or a price: it asks the
pack (and ``rules.prices`` for money, ``rules.targets`` for the table SQL joins on).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from zumik_cli.core.errors import RulesError
from zumik_cli.rules.media import MediaRules, parse_media

REQUIRED = ("name", "version", "effective_from", "source", "granularity", "prices_per_mtok")
DEFAULT_PACK = "ideal"
GRANULARITY_KINDS = ("tokens", "blocks", "increments", "breakpoints")
# Anthropic documents about 20 block boundaries looked at before each breakpoint; a breakpoints pack that does not
# say otherwise gets the same.
DEFAULT_LOOKBACK_BLOCKS = 20
DEFAULT_MAX_BREAKPOINTS = 4


@dataclass(frozen=True)
class Granularity:
    """How a cache rounds what it serves: ``tokens`` (any length), ``blocks`` of ``block_size`` (the last prompt
    token recomputed when ``recompute_last_token``), OpenAI-style ``increments`` (``first``, then ``step``), or
    Anthropic-style ``breakpoints`` (at most ``max_breakpoints``, each looking back ``lookback_blocks`` blocks)."""

    kind: str = "tokens"
    block_size: int = 1
    recompute_last_token: bool = False
    first: int = 0
    step: int = 1
    max_breakpoints: int = DEFAULT_MAX_BREAKPOINTS
    lookback_blocks: int = DEFAULT_LOOKBACK_BLOCKS
    when_unrecorded: str = "end_of_prompt"

    def to_json(self) -> dict[str, Any]:
        """The fields that mean something for this kind, as a pack file writes them."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == "blocks":
            out |= {"block_size": self.block_size, "recompute_last_token": self.recompute_last_token}
        elif self.kind == "increments":
            out |= {"first": self.first, "step": self.step}
        elif self.kind == "breakpoints":
            out |= {
                "max_breakpoints": self.max_breakpoints,
                "lookback_blocks": self.lookback_blocks,
                "when_unrecorded": self.when_unrecorded,
            }
        return out


@dataclass(frozen=True)
class ModelPrices:
    """List prices of one model, in USD per million tokens."""

    input: float
    output: float


@dataclass(frozen=True)
class PriceTable:
    """The list prices in force from ``effective_from`` (an ISO date; None: since the pack's first date)."""

    effective_from: str | None
    by_model: dict[str, ModelPrices]


@dataclass(frozen=True)
class RulesPack:
    name: str
    version: str
    effective_from: str
    source: str
    origin: str
    granularity: Granularity = field(default_factory=Granularity)
    ttl_seconds: float | None = None
    ttl_choices: dict[str, float] = field(default_factory=dict)
    default_minimum_tokens: int = 0
    minimum_tokens_by_model: dict[str, int] = field(default_factory=dict)
    capacity_tokens: int | None = None
    eviction: str = "lru"
    default_read_multiplier: float = 1.0
    read_multiplier_by_model: dict[str, float] = field(default_factory=dict)
    write_multipliers: dict[str, float] = field(default_factory=dict)
    prices_as_of: str | None = None
    price_tables: tuple[PriceTable, ...] = ()  # oldest first; the last is the pack's current prices
    providers: tuple[str, ...] = ()
    engines: tuple[str, ...] = ()
    unpriced_reason: str = ""  # why a pack without prices has none
    media: MediaRules | None = None  # what an image or a document costs in tokens; None: the pack does not say
    notes: str = ""

    @property
    def ttl_1h_seconds(self) -> float | None:
        """The 1-hour TTL a request may ask for (Anthropic's ``ttl: 1h`` breakpoints); None where there is none."""
        return self.ttl_choices.get("1h")

    @property
    def priced(self) -> bool:
        return any(table.by_model for table in self.price_tables)

    def minimum_tokens(self, model: str) -> int:
        found = _by_model(self.minimum_tokens_by_model, model)
        return int(found if found is not None else self.default_minimum_tokens)

    def read_multiplier(self, model: str) -> float:
        found = _by_model(self.read_multiplier_by_model, model)
        return float(found if found is not None else self.default_read_multiplier)

    def write_multiplier(self, ttl: str = "5m") -> float:
        """The cache write multiplier for a TTL; a pack without one for ``ttl`` bills it as a 5-minute write."""
        table = self.write_multipliers
        return float(table.get(ttl, table.get("5m", table.get("default", 1.0))))

    @property
    def write_multiplier_1h(self) -> float | None:
        """The 1-hour write multiplier; None where the pack offers no 1-hour writes."""
        return self.write_multipliers.get("1h")

    def prices(self, model: str, on: str | None = None) -> ModelPrices | None:
        """List prices of ``model`` on the date ``on`` (ISO; None: the current ones), or None when unlisted.

        A date before the oldest table gets the oldest prices: nothing earlier is known."""
        table = self.price_table(on)
        return _by_model(table.by_model, model) if table else None

    def price_table(self, on: str | None = None) -> PriceTable | None:
        if not self.price_tables:
            return None
        if on is None:
            return self.price_tables[-1]
        dated = [t for t in self.price_tables if t.effective_from is None or t.effective_from <= on]
        return dated[-1] if dated else self.price_tables[0]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "effective_from": self.effective_from,
            "source": self.source,
            "origin": self.origin,
            "ttl_seconds": self.ttl_seconds,
            "minimum_tokens": self.default_minimum_tokens,
            "granularity": self.granularity.to_json(),
            "capacity_tokens": self.capacity_tokens,
            "prices_as_of": self.prices_as_of,
            "priced": self.priced,
            "applies_to": {"providers": list(self.providers), "engines": list(self.engines)},
            "media": self.media.describe() if self.media else None,
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


def _granularity(raw: Any, origin: str) -> Granularity:
    if not isinstance(raw, dict) or raw.get("kind", "tokens") not in GRANULARITY_KINDS:
        raise RulesError(f"rules pack {origin}: granularity.kind must be one of {', '.join(GRANULARITY_KINDS)}")
    return Granularity(
        kind=raw.get("kind", "tokens"),
        block_size=max(int(raw.get("block_size", 1)), 1),
        recompute_last_token=bool(raw.get("recompute_last_token", False)),
        first=int(raw.get("first", 0)),
        step=max(int(raw.get("step", 1)), 1),
        max_breakpoints=int(raw.get("max_breakpoints", DEFAULT_MAX_BREAKPOINTS)),
        lookback_blocks=int(raw.get("lookback_blocks", DEFAULT_LOOKBACK_BLOCKS)),
        when_unrecorded=str(raw.get("when_unrecorded", "end_of_prompt")),
    )


def _price_table(raw: Any, effective_from: str | None, origin: str) -> PriceTable:
    if not isinstance(raw, dict):
        raise RulesError(f"rules pack {origin}: prices_per_mtok must map model names to input and output prices")
    by_model = {}
    for model, entry in raw.items():
        if not isinstance(entry, dict) or "input" not in entry:
            raise RulesError(f"rules pack {origin}: the price of {model} needs at least an input price per Mtok")
        by_model[model] = ModelPrices(float(entry["input"]), float(entry.get("output", 0.0)))
    return PriceTable(effective_from, by_model)


def _parse(text: str, origin: str) -> RulesPack:
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise RulesError(f"rules pack {origin} is not valid JSON ({exc}): fix the file") from exc
    if not isinstance(raw, dict):
        raise RulesError(f"rules pack {origin} is not a JSON object: see zumik_cli/rules/data/ for the shape")
    missing = [key for key in REQUIRED if key not in raw]
    if missing:
        raise RulesError(f"rules pack {origin} lacks {', '.join(missing)}: see zumik_cli/rules/data/ for the shape")
    try:
        return _typed(raw, origin)
    except (TypeError, ValueError, AttributeError) as exc:
        raise RulesError(f"rules pack {origin} has a field of the wrong type ({exc}): fix the file") from exc


def _typed(raw: dict[str, Any], origin: str) -> RulesPack:
    # earlier price tables (``price_history``: each with its own effective_from), then the current one
    history = sorted(raw.get("price_history") or [], key=lambda t: str(t.get("effective_from", "")))
    tables = [_price_table(t.get("prices_per_mtok"), t.get("effective_from"), origin) for t in history]
    current_from = raw.get("prices_as_of") if history else None
    tables.append(_price_table(raw["prices_per_mtok"], current_from, origin))
    applies = raw.get("applies_to") or {}
    write = raw.get("cache_write_multiplier") or {}
    capacity = raw.get("capacity_tokens")
    return RulesPack(
        name=str(raw["name"]),
        version=str(raw["version"]),
        effective_from=str(raw["effective_from"]),
        source=str(raw["source"]),
        origin=origin,
        granularity=_granularity(raw["granularity"], origin),
        ttl_seconds=_seconds(raw.get("ttl_seconds")),
        ttl_choices={str(k): float(v) for k, v in (raw.get("ttl_choices") or {}).items()},
        default_minimum_tokens=int(raw.get("minimum_tokens", 0)),
        minimum_tokens_by_model={k: int(v) for k, v in (raw.get("minimum_tokens_by_model") or {}).items()},
        capacity_tokens=int(capacity) if capacity is not None else None,
        eviction=str(raw.get("eviction", "lru")),
        default_read_multiplier=float(raw.get("cache_read_multiplier", 1.0)),
        read_multiplier_by_model={k: float(v) for k, v in (raw.get("cache_read_multiplier_by_model") or {}).items()},
        write_multipliers={str(k): float(v) for k, v in write.items()},
        prices_as_of=raw.get("prices_as_of"),
        price_tables=tuple(tables),
        providers=tuple(p.lower() for p in applies.get("providers", [])),
        engines=tuple(e.lower() for e in applies.get("engines", [])),
        unpriced_reason=str(raw.get("unpriced_reason", "")),
        media=parse_media(raw.get("media"), origin),
        notes=str(raw.get("notes", "")),
    )


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)


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
            raise RulesError(f"rules file {path} not found: check the path given to --rules-file or ZUMIK_RULES_PATH")
        pack = _parse(path.read_text(), str(path))
        packs[pack.name] = pack
    return packs


def pack_for(provider: str, engine: str, packs: dict[str, RulesPack]) -> RulesPack:
    """The pack of the engine or provider a request went to; ``ideal`` when none claims it."""
    for pack in packs.values():
        if engine and engine.lower() in pack.engines:
            return pack
    for pack in packs.values():
        if provider and provider.lower() in pack.providers:
            return pack
    return packs[DEFAULT_PACK]


def media_rules(
    provider: str, engine: str, model: str, request_format: str, packs: dict[str, RulesPack]
) -> MediaRules | None:
    """The image-token rule of the provider a request went to; where its pack has none (an engine, an unknown
    provider), the rule of the family the model or wire shape names."""
    own = pack_for(provider, engine, packs).media
    if own is not None:
        return own
    name = model.lower().rsplit("/", 1)[-1]
    if request_format == "anthropic" or name.startswith("claude"):
        family = "anthropic"
    else:
        family = "gemini" if name.startswith("gemini") else "openai"
    pack = packs.get(family)
    return pack.media if pack is not None else None


def get_pack(name: str, packs: dict[str, RulesPack]) -> RulesPack:
    if name not in packs:
        raise RulesError(f"no rules pack named {name!r}; loaded: {', '.join(packs)} (see `zumik rules`)")
    return packs[name]


def resolve_packs(
    rules: str | None, rules_files: tuple[str, ...] | list[str] = ()
) -> tuple[dict[str, RulesPack], RulesPack | None]:
    """The packs loaded, and the one ``--rules`` forces on every request (None: each request's own)."""
    packs = load_packs(tuple(str(f) for f in rules_files))
    return packs, get_pack(rules, packs) if rules else None

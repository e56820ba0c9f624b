"""The rules of each target, resolved once: which pack applies and what it allows, as one row SQL joins on.

The waterfall, the checks, recommendations and the simulated caches all read a target's rules from
``target_rules`` (one set of defaults: those of ``rules.pack``), so that no two commands can disagree on a TTL,
a look-back or whether the last token is recomputed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zumik_cli.rules.pack import RulesPack, pack_for

if TYPE_CHECKING:
    import duckdb


@dataclass(frozen=True)
class TargetRules:
    """What a cache allows one model under one pack, with ``--ttl`` applied (``ttl_fixed``: the user set the TTL)."""

    pack: str
    ttl: float | None
    ttl_fixed: bool
    ttl_1h: float | None
    min_tokens: int
    gran_kind: str
    block_size: int
    recompute_last: bool
    inc_first: int
    inc_step: int
    max_breakpoints: int
    lookback: int
    capacity_tokens: int | None


def target_rules(
    pack: RulesPack, model: str, *, ttl_seconds: float | None = None, ttl_none: bool = False
) -> TargetRules:
    """``pack``'s rules for ``model``; ``ttl_seconds`` replaces the pack's TTL, ``ttl_none`` removes it."""
    gran = pack.granularity
    ttl = None if ttl_none else ttl_seconds if ttl_seconds is not None else pack.ttl_seconds
    return TargetRules(
        pack=pack.name,
        ttl=ttl,
        ttl_fixed=ttl_seconds is not None or ttl_none,
        ttl_1h=pack.ttl_1h_seconds,
        min_tokens=pack.minimum_tokens(model),
        gran_kind=gran.kind,
        block_size=gran.block_size,
        recompute_last=gran.recompute_last_token,
        inc_first=gran.first,
        inc_step=gran.step,
        max_breakpoints=gran.max_breakpoints,
        lookback=gran.lookback_blocks,
        capacity_tokens=pack.capacity_tokens,
    )


def _schema() -> Any:
    import pyarrow as pa

    types = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}
    hints = {"pack": str, "ttl": float, "ttl_fixed": bool, "ttl_1h": float, "gran_kind": str, "recompute_last": bool}
    columns = [(name, pa.string()) for name in ("provider", "engine", "model")]
    for f in dataclasses.fields(TargetRules):
        columns.append((f.name, types[hints.get(f.name, int)]))
    return pa.schema(columns)


def register_target_rules(
    con: duckdb.DuckDBPyConnection,
    name: str,
    packs: dict[str, RulesPack],
    forced: RulesPack | None,
    *,
    ttl_seconds: float | None = None,
    ttl_none: bool = False,
) -> dict[tuple[Any, ...], RulesPack]:
    """Register table ``name``: for each (provider, engine, model) in ``requests``, the ``TargetRules`` of the pack
    that applies (``forced`` when given), one column a field. Returns the pack chosen for each."""
    import pyarrow as pa

    rows, chosen = [], {}
    for provider, engine, model in con.execute("SELECT DISTINCT provider, engine, model FROM requests").fetchall():
        pack = forced or pack_for(provider or "", engine or "", packs)
        chosen[(provider, engine, model)] = pack
        rules = target_rules(pack, model or "", ttl_seconds=ttl_seconds, ttl_none=ttl_none)
        rows.append({"provider": provider, "engine": engine, "model": model, **dataclasses.asdict(rules)})
    con.register(name, pa.Table.from_pylist(rows, schema=_schema()))
    return chosen

"""Rules packs, read in one place: what each provider's or engine's cache allows, and what tokens cost there."""

from zumik_cli.rules.pack import (
    Granularity,
    ModelPrices,
    PriceTable,
    RulesPack,
    get_pack,
    load_packs,
    pack_for,
    resolve_packs,
)
from zumik_cli.rules.prices import Cost, Rates, Tokens, Unpriced, price, rates
from zumik_cli.rules.targets import TargetRules, register_target_rules, target_rules

__all__ = [
    "Cost",
    "Granularity",
    "ModelPrices",
    "PriceTable",
    "Rates",
    "RulesPack",
    "TargetRules",
    "Tokens",
    "Unpriced",
    "get_pack",
    "load_packs",
    "pack_for",
    "price",
    "rates",
    "register_target_rules",
    "resolve_packs",
    "target_rules",
]

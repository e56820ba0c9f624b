"""Money: the one place where token counts become dollars.

``rates`` turns a pack's list prices for a model, on a date, into per-token rates (cache reads and writes at the
pack's multipliers); ``price`` bills a ``Tokens`` count at those rates. Every command that shows money (the
waterfall, recommendations, reconciliation, simulated routing, synth's releases) goes through them, so the same
traffic costs the same everywhere. A pack or model without a list price is ``Unpriced``, with the reason: never
zero dollars.
"""

from __future__ import annotations

from dataclasses import dataclass

from zumik_cli.rules.pack import RulesPack

MTOK = 1_000_000


@dataclass(frozen=True)
class Unpriced:
    """Why a request cannot be priced (the pack lists no prices, or none for its model)."""

    reason: str


@dataclass(frozen=True)
class Rates:
    """List prices of one model under one pack on one date, in USD per million tokens."""

    pack: str
    model: str
    as_of: str | None
    input: float
    output: float
    cache_read: float
    cache_write_5m: float
    cache_write_1h: float | None  # None: the pack offers no 1-hour writes (a '1h' write bills at the 5-minute rate)

    def cache_write(self, ttl: str) -> float:
        return self.cache_write_1h if ttl == "1h" and self.cache_write_1h is not None else self.cache_write_5m


@dataclass(frozen=True)
class Tokens:
    """Tokens to bill: ``input`` is the input billed at the full price (neither read from nor written to a cache)."""

    input: int = 0
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    output: int = 0


@dataclass(frozen=True)
class Cost:
    """What some tokens cost, in USD, by part; ``billed`` is input side plus output."""

    input_usd: float = 0.0
    cache_read_usd: float = 0.0
    cache_write_usd: float = 0.0
    output_usd: float = 0.0

    @property
    def billed_input_usd(self) -> float:
        return self.input_usd + self.cache_read_usd + self.cache_write_usd

    @property
    def billed_usd(self) -> float:
        return self.billed_input_usd + self.output_usd

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.input_usd + other.input_usd,
            self.cache_read_usd + other.cache_read_usd,
            self.cache_write_usd + other.cache_write_usd,
            self.output_usd + other.output_usd,
        )


def rates(pack: RulesPack, model: str, on: str | None = None) -> Rates | Unpriced:
    """Per-Mtok rates of ``model`` under ``pack`` on the ISO date ``on`` (None: the pack's current prices)."""
    if not pack.priced:
        why = f": {pack.unpriced_reason}" if pack.unpriced_reason else ""
        return Unpriced(f"the {pack.name} rules pack lists no prices{why}")
    listed = pack.prices(model, on)
    if listed is None:
        return Unpriced(f"the {pack.name} rules pack lists no price for {model or 'a request without a model'}")
    table = pack.price_table(on)
    one_hour = pack.write_multiplier_1h
    return Rates(
        pack=pack.name,
        model=model,
        as_of=(table.effective_from if table else None) or pack.prices_as_of,
        input=listed.input,
        output=listed.output,
        cache_read=listed.input * pack.read_multiplier(model),
        cache_write_5m=listed.input * pack.write_multiplier("5m"),
        cache_write_1h=listed.input * one_hour if one_hour is not None else None,
    )


def price(pack: RulesPack, model: str, tokens: Tokens, on: str | None = None) -> Cost | Unpriced:
    """What ``tokens`` of ``model`` cost at ``pack``'s list prices on the date ``on``."""
    rate = rates(pack, model, on)
    if isinstance(rate, Unpriced):
        return rate
    return Cost(
        input_usd=tokens.input * rate.input / MTOK,
        cache_read_usd=tokens.cache_read * rate.cache_read / MTOK,
        cache_write_usd=(tokens.cache_write_5m * rate.cache_write_5m + tokens.cache_write_1h * rate.cache_write("1h"))
        / MTOK,
        output_usd=tokens.output * rate.output / MTOK,
    )

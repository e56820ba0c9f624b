"""The one pricing function: list prices from the packs, cache reads and writes at their multipliers, by date."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zumik_cli.rules import Cost, Rates, Tokens, Unpriced, load_packs, price, rates

TOKENS = Tokens(input=1_000, cache_read=20_000, cache_write_5m=3_000, cache_write_1h=4_000, output=500)


def test_anthropic_prices_input_reads_writes_by_ttl_and_output_from_the_pack_file():
    # anthropic.json: claude-sonnet-4 input $3 and output $15 per Mtok, reads x0.1, writes x1.25 (5m) and x2 (1h)
    cost = price(load_packs()["anthropic"], "claude-sonnet-4-5-20250929", TOKENS)

    assert isinstance(cost, Cost)
    assert cost.input_usd == pytest.approx(1_000 * 3.0 / 1e6, abs=1e-9)
    assert cost.cache_read_usd == pytest.approx(20_000 * 0.3 / 1e6, abs=1e-9)
    assert cost.cache_write_usd == pytest.approx((3_000 * 3.75 + 4_000 * 6.0) / 1e6, abs=1e-9)
    assert cost.output_usd == pytest.approx(500 * 15.0 / 1e6, abs=1e-9)
    assert cost.billed_input_usd == pytest.approx(0.003 + 0.006 + 0.03525, abs=1e-9)
    assert cost.billed_usd == pytest.approx(0.04425 + 0.0075, abs=1e-9)


def test_a_pack_without_one_hour_writes_bills_them_at_the_five_minute_rate():
    # openai.json: gpt-4.1 input $2 and output $8, reads x0.25 for gpt-4.1, writes x1.0 whatever the TTL
    cost = price(load_packs()["openai"], "gpt-4.1", TOKENS)

    assert isinstance(cost, Cost)
    assert cost.input_usd == pytest.approx(1_000 * 2.0 / 1e6, abs=1e-9)
    assert cost.cache_read_usd == pytest.approx(20_000 * 0.5 / 1e6, abs=1e-9)
    assert cost.cache_write_usd == pytest.approx(7_000 * 2.0 / 1e6, abs=1e-9)
    assert cost.output_usd == pytest.approx(500 * 8.0 / 1e6, abs=1e-9)


def test_rates_are_the_list_prices_per_mtok_with_the_multipliers_applied():
    found = rates(load_packs()["anthropic"], "claude-haiku-4-5")

    assert found == Rates(
        pack="anthropic",
        model="claude-haiku-4-5",
        as_of="2025-11-24",
        input=1.0,
        output=5.0,
        cache_read=0.1,
        cache_write_5m=1.25,
        cache_write_1h=2.0,
    )


@pytest.mark.parametrize("name", ["ideal", "vllm", "sglang"])
def test_a_pack_without_prices_is_unpriced_with_its_reason_never_zero_dollars(name):
    found = price(load_packs()[name], "claude-sonnet-4-5", TOKENS)

    assert isinstance(found, Unpriced)
    assert found.reason.startswith(f"the {name} rules pack lists no prices: ")
    assert not isinstance(found, Cost)


def test_a_model_the_pack_does_not_list_is_unpriced_and_named():
    found = price(load_packs()["openai"], "davinci-002", TOKENS)

    assert found == Unpriced("the openai rules pack lists no price for davinci-002")


def test_dated_prices_follow_the_date_of_the_request(tmp_path: Path):
    path = tmp_path / "dated.json"
    path.write_text(
        json.dumps(
            {
                "name": "dated",
                "version": "1",
                "effective_from": "2025-01-01",
                "source": "https://example.com",
                "granularity": {"kind": "tokens"},
                "prices_as_of": "2025-06-01",
                "prices_per_mtok": {"m": {"input": 2.0, "output": 4.0}},
                "price_history": [
                    {"effective_from": "2025-01-01", "prices_per_mtok": {"m": {"input": 4.0, "output": 8.0}}}
                ],
            }
        )
    )
    pack = load_packs((str(path),))["dated"]
    one = Tokens(input=1_000_000, output=1_000_000)

    def billed(on: str | None) -> float:
        cost = price(pack, "m", one, on)
        assert isinstance(cost, Cost)
        return cost.billed_usd

    assert billed("2025-03-01") == pytest.approx(12.0, abs=1e-9)
    assert billed("2025-06-01") == pytest.approx(6.0, abs=1e-9)
    assert billed(None) == pytest.approx(6.0, abs=1e-9)
    assert billed("2024-12-31") == pytest.approx(12.0, abs=1e-9)  # before every table: the oldest known prices
    assert rates(pack, "m", "2025-03-01").as_of == "2025-01-01"  # type: ignore[union-attr]

"""One accounting core: the same traffic gets the same rules and the same money in every command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import runner

from zumik_cli.analysis import block_pool
from zumik_cli.analysis import waterfall as waterfall_module
from zumik_cli.analysis.prefix_cache import CacheRules
from zumik_cli.analysis.waterfall import WaterfallOptions, compute_waterfall
from zumik_cli.cli import app
from zumik_cli.dataset.store import Dataset
from zumik_cli.diagnosis import check as check_module
from zumik_cli.diagnosis.check import check_dataset
from zumik_cli.diagnosis.recommend import simulated_cost
from zumik_cli.diagnosis.reconcile import parse_period, reconcile
from zumik_cli.ingest.pipeline import ingest
from zumik_cli.replay import run as replay_run
from zumik_cli.rules import load_packs, register_target_rules, target_rules

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("anthropic", "gemini", "ideal", "openai", "sglang", "vllm")
OPTIONS = WaterfallOptions(curves=False)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    folder = tmp_path_factory.mktemp("money") / "data"
    assert ingest([ROOT / "sample_traces"], folder).quarantined == 0
    return Dataset(folder)


# --- one table of rules ---------------------------------------------------------------------------------------


def _registered(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[dict[str, Any]]:
    """The rows ``module`` registers through ``rules.register_target_rules`` (the function itself runs)."""
    rows: list[dict[str, Any]] = []

    def spy(con: duckdb.DuckDBPyConnection, name: str, *args: Any, **kwargs: Any) -> Any:
        chosen = register_target_rules(con, name, *args, **kwargs)
        rows.extend(con.table(name).to_arrow_table().to_pylist())
        return chosen

    monkeypatch.setattr(module, "register_target_rules", spy)
    return rows


@pytest.mark.parametrize("name", SHIPPED)
def test_the_waterfall_check_simulation_and_replay_read_the_same_lookback_and_recompute(
    sample: Dataset, monkeypatch: pytest.MonkeyPatch, name: str
):
    pack = load_packs()[name]
    in_waterfall = _registered(monkeypatch, waterfall_module)
    in_check = _registered(monkeypatch, check_module)
    compute_waterfall(sample, WaterfallOptions(rules=name, curves=False))
    check_dataset(sample, rules=name)

    seen = {(row["lookback"], row["recompute_last"], row["max_breakpoints"]) for row in in_waterfall + in_check}
    simulated = CacheRules.from_pack(pack, "claude-sonnet-4-5")
    expected = (pack.granularity.lookback_blocks, pack.granularity.recompute_last_token, 4)
    assert in_waterfall and in_check
    assert seen == {expected}
    assert (simulated.lookback, simulated.recompute_last) == expected[:2]
    assert {row["pack"] for row in in_waterfall + in_check} == {name}


def test_replay_recomputes_the_last_token_as_the_vllm_pack_says(monkeypatch: pytest.MonkeyPatch):
    read = []
    monkeypatch.setattr(
        block_pool, "target_rules", lambda pack, model: read.append(pack.name) or target_rules(pack, model)
    )
    # a prompt of two whole blocks sent twice: the second finds both, less the block of the recomputed last token
    import numpy as np

    prompt = np.arange(32, dtype=np.int64)
    assert list(replay_run.predict([prompt, prompt], 16, None)) == [0, 16]  # replay predicts with the block pool
    assert read == ["vllm"] and target_rules(load_packs()["vllm"], "").recompute_last is True


def test_one_set_of_defaults_for_a_pack_that_leaves_fields_out():
    rules = target_rules(load_packs()["openai"], "gpt-4.1")

    assert (rules.lookback, rules.recompute_last, rules.max_breakpoints, rules.block_size) == (20, False, 4, 1)
    assert (rules.gran_kind, rules.inc_first, rules.inc_step, rules.min_tokens, rules.ttl) == (
        "increments",
        1024,
        128,
        1024,
        600.0,
    )


def test_the_ttl_option_replaces_the_pack_ttl_in_the_one_table():
    con = duckdb.connect()
    con.execute("CREATE TABLE requests AS SELECT 'anthropic' AS provider, '' AS engine, 'claude-sonnet-4-5' AS model")
    register_target_rules(con, "t", load_packs(), None, ttl_seconds=60.0)
    row = con.table("t").to_arrow_table().to_pylist()[0]

    assert (row["pack"], row["ttl"], row["ttl_fixed"], row["ttl_1h"], row["min_tokens"]) == (
        "anthropic",
        60.0,
        True,
        3600.0,
        1024,
    )


# --- one money story ------------------------------------------------------------------------------------------


def test_reconciliation_compares_the_invoice_with_exactly_the_waterfall_bill(sample: Dataset):
    money = compute_waterfall(sample, OPTIONS).summary["money"]
    result = reconcile(sample, 0.40, parse_period(None))

    assert money["unpriced_requests"] == 0 and result.requests == 107
    assert money["billed"] == pytest.approx(money["billed_input"] + money["billed_output"], abs=1e-9)
    assert result.computed_usd == pytest.approx(money["billed"], abs=1e-9)
    assert result.input_usd == pytest.approx(money["billed_input"], abs=1e-9)
    assert result.output_usd == pytest.approx(money["billed_output"], abs=1e-9)
    assert result.difference_usd == pytest.approx(0.40 - money["billed"], abs=1e-9)


def test_the_bill_includes_output_tokens_at_the_output_price(sample: Dataset):
    money = compute_waterfall(sample, OPTIONS).summary["money"]
    con = sample.connect()
    rows = con.execute("SELECT provider, model, sum(output_tokens_reported) FROM requests GROUP BY ALL").fetchall()
    packs = load_packs()
    by_hand = 0.0
    for provider, model, output in rows:
        pack = packs["anthropic" if provider == "anthropic" else "openai"]
        listed = pack.prices(model)
        assert listed is not None
        by_hand += output * listed.output / 1e6

    assert money["billed_output"] == pytest.approx(by_hand, abs=1e-6)


def test_an_unpriced_pack_gives_no_amount_and_says_why(sample: Dataset):
    options = WaterfallOptions(rules="ideal", curves=False)
    waterfall = compute_waterfall(sample, options)
    money = waterfall.summary["money"]
    cost = simulated_cost(sample, waterfall, options)
    result = reconcile(sample, 0.40, parse_period(None), options=options)
    reason = (
        "the ideal rules pack lists no prices: "
        "the upper bound of a cache without rules, not a provider with a price list"
    )

    assert money["unpriced_requests"] == 107
    assert money["unpriced"] == [{"reason": reason, "requests": 107}]
    assert all(money[key] is None for key in ("billed", "billed_input", "billed_output", "without_cache"))
    assert (cost.cost_usd, cost.write_cost_usd, cost.unpriced_requests, cost.unpriced_reasons) == (
        None,
        None,
        107,
        (reason,),
    )
    assert result.computed_usd is None and result.status == "not reconciled"
    assert result.reasons == [f"107 requests unpriced: {reason}"]


def test_the_waterfall_command_says_unpriced_instead_of_zero_dollars(sample: Dataset):
    result = runner().invoke(app, ["waterfall", "--data", str(sample.root), "--rules", "ideal"])

    assert result.exit_code == 0, result.stderr
    assert "Money: unpriced. 107 requests unpriced: the ideal rules pack lists no prices" in " ".join(
        result.stdout.split()
    )
    assert "$0.00" not in result.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["waterfall"],
        ["report", "--output", "{tmp}/r.html"],
        ["recommend"],
        ["check"],
        ["divergence"],
    ],
)
def test_an_unknown_rules_pack_is_one_clear_error_in_every_command(sample: Dataset, tmp_path: Path, command):
    args = [part.replace("{tmp}", str(tmp_path)) for part in command]
    result = runner().invoke(app, [*args, "--data", str(sample.root), "--rules", "nope"])

    assert result.exit_code == 5, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: no rules pack named 'nope'; loaded: ")
    assert "(see `zumik rules`)" in lines[0]

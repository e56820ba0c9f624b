"""Rules packs: shipped data files, per-model lookups, which pack a request gets, and user packs."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from zumik_cli.core.errors import RulesError
from zumik_cli.rules.pack import REQUIRED, Granularity, get_pack, load_packs, pack_for

SHIPPED = {"anthropic", "gemini", "ideal", "openai", "sglang", "vllm"}


def user_pack(folder: Path, name: str, file: str | None = None, **fields: Any) -> Path:
    raw = {
        "name": name,
        "version": "2026.1.0",
        "effective_from": "2026-01-01",
        "source": "https://example.com/our-cache",
        "applies_to": {"providers": [name]},
        "ttl_seconds": 60,
        "granularity": {"kind": "blocks", "block_size": 8},
        "prices_per_mtok": {},
        **fields,
    }
    path = folder / (file or f"{name}.json")
    path.write_text(json.dumps(raw))
    return path


def test_every_shipped_pack_is_dated_sourced_and_complete():
    packs = load_packs()

    assert set(packs) >= SHIPPED
    for name in SHIPPED:
        pack = packs[name]
        assert set(REQUIRED) <= set(
            json.loads(resources.files("zumik_cli.rules.data").joinpath(f"{name}.json").read_text())
        ), name
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", pack.effective_from), name
        assert pack.version and pack.source, name
        assert pack.granularity.kind in {"tokens", "blocks", "increments", "breakpoints"}, name
        assert pack.origin == f"zumik_cli/rules/data/{name}.json"
        assert pack.describe()["name"] == name


def test_the_shipped_packs_say_what_the_providers_document():
    packs = load_packs()

    assert packs["anthropic"].ttl_seconds == 300
    assert packs["anthropic"].granularity == Granularity(
        kind="breakpoints", max_breakpoints=4, lookback_blocks=20, when_unrecorded="end_of_prompt"
    )
    assert packs["anthropic"].ttl_1h_seconds == 3600
    assert packs["openai"].granularity == Granularity(kind="increments", first=1024, step=128)
    assert packs["vllm"].granularity == Granularity(kind="blocks", block_size=16, recompute_last_token=True)
    assert packs["vllm"].describe()["granularity"] == {"kind": "blocks", "block_size": 16, "recompute_last_token": True}
    assert packs["ideal"].ttl_seconds is None and packs["ideal"].minimum_tokens("anything") == 0
    assert all(packs[name].capacity_tokens is None for name in SHIPPED)


@pytest.mark.parametrize(
    ("provider", "engine", "expected"),
    [
        ("openai", "", "openai"),
        ("OpenAI", "", "openai"),
        ("azure", "", "openai"),
        ("anthropic", "", "anthropic"),
        ("bedrock", "", "anthropic"),
        ("google", "", "gemini"),
        ("vllm", "", "vllm"),
        ("sglang", "", "sglang"),
        ("openai", "vllm", "vllm"),  # the engine that served it decides before the provider
        ("acme", "sglang", "sglang"),
        ("acme", "", "ideal"),
        ("", "", "ideal"),
    ],
)
def test_a_request_gets_the_pack_of_its_engine_else_its_provider_else_ideal(provider, engine, expected):
    assert pack_for(provider, engine, load_packs()).name == expected


@pytest.mark.parametrize(
    ("pack", "model", "minimum"),
    [
        ("anthropic", "claude-sonnet-4-5-20250929", 1024),
        ("anthropic", "claude-opus-4-5", 4096),
        ("anthropic", "claude-opus-4-1-20250805", 1024),
        ("anthropic", "anthropic/claude-3-5-haiku-20241022", 2048),
        ("anthropic", "claude-3-haiku-20240307", 2048),
        ("anthropic", "claude-haiku-4-5", 4096),
        ("gemini", "gemini-2.5-pro", 4096),
        ("gemini", "models/gemini-3-pro-preview", 4096),
        ("gemini", "gemini-2.5-flash", 1024),
        ("openai", "gpt-4o", 1024),
        ("vllm", "Qwen/Qwen3-8B", 0),
    ],
)
def test_the_minimum_is_looked_up_by_the_longest_model_prefix(pack, model, minimum):
    assert load_packs()[pack].minimum_tokens(model) == minimum


@pytest.mark.parametrize(
    ("pack", "model", "input_price", "read"),
    [
        ("openai", "gpt-4.1-mini-2025-04-14", 0.4, 0.25),  # gpt-4.1-mini, not gpt-4.1
        ("openai", "gpt-4.1", 2.0, 0.25),
        ("openai", "openai/gpt-4o-2024-08-06", 2.5, 0.5),
        ("openai", "gpt-4o-mini", 0.15, 0.5),
        ("openai", "gpt-5-mini", 0.25, 0.1),
        ("anthropic", "claude-sonnet-4-5", 3.0, 0.1),
        ("gemini", "gemini-2.5-flash-lite", 0.3, 0.1),
    ],
)
def test_prices_and_read_multipliers_follow_the_model(pack, model, input_price, read):
    rules = load_packs()[pack]

    assert rules.prices(model).input == input_price
    assert rules.read_multiplier(model) == read


def test_a_model_without_a_price_has_none():
    assert load_packs()["openai"].prices("davinci-002") is None
    assert load_packs()["ideal"].prices("gpt-4o") is None


def test_cache_writes_cost_by_their_ttl():
    packs = load_packs()

    assert packs["anthropic"].write_multiplier("5m") == 1.25
    assert packs["anthropic"].write_multiplier("1h") == 2.0
    assert packs["anthropic"].write_multiplier() == 1.25
    assert packs["openai"].write_multiplier("1h") == 1.0


def test_an_unknown_pack_name_says_which_are_loaded():
    with pytest.raises(RulesError, match=r"no rules pack named 'nope'.*ideal.*zumik rules"):
        get_pack("nope", load_packs())


def test_a_rules_file_adds_a_pack_and_replaces_a_shipped_one_of_the_same_name(tmp_path):
    ours = user_pack(tmp_path, "lab")
    stricter = user_pack(tmp_path, "openai", ttl_seconds=30)

    packs = load_packs((str(ours), str(stricter)))

    assert packs["lab"].granularity == Granularity(kind="blocks", block_size=8)
    assert packs["openai"].ttl_seconds == 30 and packs["openai"].origin == str(stricter)
    assert pack_for("lab", "", packs).name == "lab"
    assert load_packs()["openai"].ttl_seconds == 600  # the shipped one is untouched


def test_packs_in_zumik_rules_path_are_read_even_after_packs_were_loaded_once(tmp_path, monkeypatch):
    load_packs()
    folder = tmp_path / "packs"
    folder.mkdir()
    user_pack(folder, "lab")
    monkeypatch.setenv("ZUMIK_RULES_PATH", str(folder))

    assert "lab" in load_packs()


def test_an_explicit_rules_file_wins_over_a_pack_in_zumik_rules_path(tmp_path, monkeypatch):
    folder = tmp_path / "packs"
    folder.mkdir()
    user_pack(folder, "lab", ttl_seconds=10)
    explicit = user_pack(tmp_path, "lab", ttl_seconds=20)
    monkeypatch.setenv("ZUMIK_RULES_PATH", str(folder))

    assert load_packs((str(explicit),))["lab"].ttl_seconds == 20


def test_a_broken_rules_file_is_refused_with_what_to_fix(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"name": "partial", "version": "1"}))

    with pytest.raises(RulesError, match="broken.json is not valid JSON"):
        load_packs((str(broken),))
    with pytest.raises(RulesError, match="lacks effective_from, source, granularity, prices_per_mtok"):
        load_packs((str(partial),))
    with pytest.raises(RulesError, match="not found"):
        load_packs((str(tmp_path / "missing.json"),))


def test_zumik_rules_lists_each_packs_image_and_document_rule_with_its_source_and_date() -> None:
    from rich.console import Console
    from typer.testing import CliRunner

    from zumik_cli.cli import app
    from zumik_cli.render.terminal import tables

    result = CliRunner().invoke(app, ["rules", "--json"])
    assert result.exit_code == 0, result.output
    media = {pack["name"]: pack["media"] for pack in json.loads(result.stdout)}
    assert media["ideal"] is None and media["vllm"] is None
    assert media["anthropic"]["source"] == "https://docs.anthropic.com/en/docs/build-with-claude/vision"
    assert {name: rule["as_of"][:2] for name, rule in media.items() if rule} == {
        "anthropic": "20",
        "gemini": "20",
        "openai": "20",
    }
    assert CliRunner().invoke(app, ["rules"]).stdout.count("Image and document tokens") == 1
    console = Console(width=250, record=True)
    tables.rules(console, [pack.describe() for pack in load_packs().values()])
    table = console.export_text()
    assert "https://ai.google.dev/gemini-api/docs/tokens#multimodal-tokens" in table
    assert "openai: Nominal estimates, not published figures" in table


def test_a_pack_with_unknown_size_figures_must_say_they_are_nominal(tmp_path: Path) -> None:
    media = {"rule": "area", "source": "https://example.com/vision", "as_of": "2026-01-01", "unknown_image_tokens": 9}
    user_pack(tmp_path, "ours", media=media)
    with pytest.raises(RulesError, match="media.nominal"):
        load_packs((str(tmp_path / "ours.json"),))

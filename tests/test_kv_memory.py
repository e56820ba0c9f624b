"""KV-cache memory: the capacity curve in GiB for a model, and the cache a share of the reuse needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zumik_cli.analysis.kv_memory import GIB, kv_shape, memory
from zumik_cli.cli import app
from zumik_cli.core.errors import InputError
from zumik_cli.ingest.pipeline import ingest

TINY = Path(__file__).resolve().parents[1] / "zumik_cli" / "replay" / "models" / "tiny-llama"


def test_a_tokens_kv_entry_is_a_key_and_a_value_per_layer_and_kv_head():
    llama = kv_shape("llama-3.1-8b")
    assert llama.bytes_per_token == 2 * 32 * 8 * 128 * 2 == 131_072
    assert kv_shape("Llama-3.1-8B", dtype="fp8").bytes_per_token == 65_536
    assert kv_shape("qwen2.5-7b").bytes_per_token == 2 * 28 * 4 * 128 * 2


def test_a_local_config_gives_its_own_shape_and_a_folder_is_read_through_its_config():
    shape = kv_shape(str(TINY))
    assert (shape.layers, shape.kv_heads, shape.head_dim, shape.dtype) == (2, 2, 64, "bfloat16")
    assert shape.bytes_per_token == 2 * 2 * 2 * 64 * 2
    assert kv_shape(str(TINY / "config.json")).bytes_per_token == shape.bytes_per_token


def test_an_unknown_model_or_a_config_without_a_shape_is_a_clear_error(tmp_path: Path):
    with pytest.raises(InputError, match="give a shipped name or a model folder"):
        kv_shape(str(tmp_path / "nothing"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mystery"}))
    with pytest.raises(InputError, match="does not describe a transformer"):
        kv_shape(str(tmp_path))
    with pytest.raises(InputError, match="unknown KV dtype"):
        kv_shape("llama-3.1-8b", dtype="int3")


def test_the_smallest_capacity_that_keeps_the_share_is_the_answer_and_none_when_no_point_does():
    curve = [
        {"capacity_tokens": 1_000, "rate": 0.10},
        {"capacity_tokens": 4_000, "rate": 0.45},
        {"capacity_tokens": 16_000, "rate": 0.55},
        {"capacity_tokens": None, "rate": 0.60},
    ]
    shape = kv_shape("llama-3.1-8b")
    found = memory(curve, shape)
    assert found["for_share"]["capacity_tokens"] == 16_000  # 0.55 >= 0.9 * 0.60; 0.45 is not
    assert found["points"][1]["gib"] == round(4_000 * 131_072 / GIB, 3)
    assert memory(curve, shape, share=0.99)["for_share"] is None


def test_the_waterfall_shows_its_own_curve_in_gib_for_the_model_asked(tmp_path: Path):
    ingest([Path(__file__).resolve().parents[1] / "sample_traces"], tmp_path / "d")
    result = CliRunner().invoke(
        app, ["waterfall", "--data", str(tmp_path / "d"), "--kv-model", "mistral-7b-v0.3", "--json"]
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    kv = summary["kv_memory"]
    assert [p["rate"] for p in kv["points"]] == [p["rate"] for p in summary["capacity_curve"]]
    for point in kv["points"]:
        if point["capacity_tokens"] is not None:
            assert point["gib"] == round(point["capacity_tokens"] * 131_072 / GIB, 3)
    assert kv["for_share"] is not None and kv["for_share"]["rate"] >= 0.9 * summary["capacity_curve"][-1]["rate"]

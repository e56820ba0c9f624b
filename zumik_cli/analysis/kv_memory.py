"""KV-cache memory: what a cache of so many tokens costs in bytes for a given model, and the cache a share of the
reuse needs.

A token's KV entry is a key and a value per layer and KV head: ``2 x layers x kv_heads x head_dim x dtype bytes``.
The shapes of a few common open models ship here (from their published ``config.json``); any local Hugging Face
``config.json`` (or the folder holding it) works too. Nothing is downloaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zumik_cli.core.errors import InputError

GIB = 1 << 30
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "fp8": 1, "float8_e4m3fn": 1, "float8_e5m2": 1}


@dataclass(frozen=True)
class KvShape:
    """The KV geometry of one model: what each cached token holds."""

    name: str
    layers: int
    kv_heads: int
    head_dim: int
    dtype: str
    source: str

    @property
    def bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * DTYPE_BYTES[self.dtype]

    def gib(self, tokens: int) -> float:
        return tokens * self.bytes_per_token / GIB

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "layers": self.layers,
            "kv_heads": self.kv_heads,
            "head_dim": self.head_dim,
            "dtype": self.dtype,
            "bytes_per_token": self.bytes_per_token,
            "source": self.source,
        }


def _shipped(name: str, layers: int, kv_heads: int, head_dim: int) -> KvShape:
    return KvShape(name, layers, kv_heads, head_dim, "bfloat16", f"config.json of {name} as published")


# Layers, KV heads and head size from each model's published config.json; bf16 KV, vLLM's default for these.
SHAPES = {
    shape.name: shape
    for shape in (
        _shipped("llama-3.1-8b", 32, 8, 128),
        _shipped("llama-3.1-70b", 80, 8, 128),
        _shipped("qwen2.5-7b", 28, 4, 128),
        _shipped("qwen2.5-72b", 80, 8, 128),
        _shipped("mistral-7b-v0.3", 32, 8, 128),
        _shipped("gemma-2-9b", 42, 8, 256),
    )
}


def kv_shape(model: str, dtype: str | None = None) -> KvShape:
    """A shipped model's shape by name, or a local ``config.json`` (or its folder); ``dtype`` overrides the KV type
    (``fp8`` for an FP8 KV cache)."""
    if dtype is not None and dtype not in DTYPE_BYTES:
        raise InputError(f"unknown KV dtype {dtype!r}; choose from {', '.join(DTYPE_BYTES)}")
    shape = SHAPES.get(model.lower())
    if shape is None:
        shape = _from_config(Path(model))
    if dtype is not None:
        shape = KvShape(shape.name, shape.layers, shape.kv_heads, shape.head_dim, dtype, shape.source)
    return shape


def _from_config(path: Path) -> KvShape:
    config = path / "config.json" if path.is_dir() else path
    if not config.is_file():
        raise InputError(
            f"no model named {str(path)!r} ships with zumik ({', '.join(SHAPES)}) and no config.json is at {config}: "
            "give a shipped name or a model folder"
        )
    try:
        raw = json.loads(config.read_text(encoding="utf-8"))
        raw = raw.get("text_config", raw)  # multimodal configs keep the language model's shape here
        heads = int(raw["num_attention_heads"])
        kv_heads = int(raw.get("num_key_value_heads") or heads)
        head_dim = int(raw.get("head_dim") or int(raw["hidden_size"]) // heads)
        layers = int(raw["num_hidden_layers"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{config} does not describe a transformer's KV shape ({exc!r}): give another config") from exc
    dtype = str(raw.get("torch_dtype") or "bfloat16")
    return KvShape(
        path.name or str(path), layers, kv_heads, head_dim, dtype if dtype in DTYPE_BYTES else "bfloat16", str(config)
    )


def memory(curve: list[dict[str, Any]], shape: KvShape, share: float = 0.9) -> dict[str, Any]:
    """The capacity curve in GiB of KV memory for ``shape``, and the smallest capacity on it that keeps ``share`` of
    the unbounded point's reuse (None when the curve has no such point)."""
    points = [
        {**point, "gib": None if point["capacity_tokens"] is None else round(shape.gib(point["capacity_tokens"]), 3)}
        for point in curve
    ]
    ceiling = next((p["rate"] for p in points if p["capacity_tokens"] is None), None)
    enough = sorted(
        (p for p in points if p["capacity_tokens"] is not None and ceiling and p["rate"] >= share * ceiling),
        key=lambda p: p["capacity_tokens"],
    )
    return {
        **shape.to_json(),
        "points": points,
        "share": share,
        "for_share": enough[0] if enough else None,
        "evidence": "simulated",
    }

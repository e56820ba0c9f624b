"""The canonical, provider-neutral model of one recorded model call.

Every reader turns its format into ``Request`` values; nothing after the readers knows which format a request
came from except through ``Request.format``. Artifacts are logical (what the request means); how they are
rendered to bytes and tokens is the materialization layer's business (``identity``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Artifact:
    """One logical unit of a prompt: a tool definition, a system instruction or one message part."""

    kind: str
    role: str
    body: str
    name: str = ""
    ref: str = ""
    # A materialization hint (Anthropic cache breakpoint: "5m" or "1h"), never part of logical identity.
    cache_control: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    """Usage normalised across usage families; ``None`` means the log did not say (unknown, not zero)."""

    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None
    output_tokens: int | None = None
    family: str = "none"
    problem: str = ""  # why the log's counts cannot all be true (its totals do not add up); empty when they can


@dataclass(frozen=True, slots=True)
class HashBlocks:
    """A content-free request: prefix-chained block ids of a fixed size, as hash-id traces record them."""

    hash_ids: tuple[int, ...]
    block_size: int
    input_length: int
    scope: str = ""


@dataclass(frozen=True, slots=True)
class Source:
    path: str
    line: int


@dataclass(frozen=True)
class Request:
    trace_id: str
    source: Source
    format: str
    model: str = ""
    provider: str = ""
    timestamp: float | None = None
    model_revision: str = ""
    engine: str = ""
    region: str = ""
    quantization: str = ""
    tenant: str = "default"
    session_id: str = ""
    alias: str = ""
    alias_release: str = ""
    request_format: str = "openai"
    artifacts: tuple[Artifact, ...] = ()
    output: tuple[Artifact, ...] = ()
    usage: Usage = field(default_factory=Usage)
    miss_reason: str = ""
    missed_tokens: int | None = None
    latency_ms: float | None = None
    hash_blocks: HashBlocks | None = None

    @property
    def has_content(self) -> bool:
        return bool(self.artifacts)


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A record that could not be read, with where it was and why; counted, never dropped silently."""

    source: Source
    reason: str
    excerpt: str = ""


def canonical_json(value: Any) -> str:
    """Key-sorted compact JSON, so that equal structures give equal bytes whatever the producer's order."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def canonical_arguments(arguments: Any) -> str:
    """Tool-call arguments arrive as a JSON string (OpenAI) or an object (Anthropic); both become one form."""
    if isinstance(arguments, str):
        try:
            return canonical_json(json.loads(arguments))
        except ValueError:
            return arguments
    return canonical_json(arguments if arguments is not None else {})

"""One request body, read from a file as a provider would receive it, and materialized as zumik materializes.

Accepts an Anthropic Messages body, an OpenAI Chat Completions or Responses body, or one zumik JSONL record,
optionally wrapped (``{"request": {...}}``, ``{"body": {...}}``). The blocks are rendered and tokenized like
ingest does, so a check on a file sees the same offsets as a check on a dataset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zumik_cli.core import identity
from zumik_cli.core.errors import InputError
from zumik_cli.core.model import Artifact
from zumik_cli.ingest.tokenization import tokenizer_for_model
from zumik_cli.readers.messages import (
    anthropic_messages,
    anthropic_tools,
    content_parts,
    openai_messages,
    openai_tools,
    ordered,
    system_artifacts,
)

WRAPPERS = ("request", "body", "request_body", "params")


@dataclass(frozen=True)
class Block:
    kind: str
    role: str
    name: str
    text: str
    tokens: int
    end_token: int
    cache_control: str


@dataclass(frozen=True)
class RequestBody:
    """A materialized body: what the provider caches (blocks in order, with breakpoints) and its cache key."""

    path: str
    provider: str
    model: str
    request_format: str
    blocks: tuple[Block, ...]
    prompt_cache_key: str | None
    automatic_cache: str  # the TTL of top-level (automatic) caching, "" when the body does not ask for it
    tokenizer_exact: bool

    @property
    def breakpoints(self) -> list[tuple[int, str]]:
        """(block index, TTL) of every breakpoint; automatic caching marks the last block."""
        marked = [(i, b.cache_control) for i, b in enumerate(self.blocks) if b.cache_control]
        last = len(self.blocks) - 1
        if self.automatic_cache and self.blocks and all(i != last for i, _ in marked):
            marked.append((last, self.automatic_cache))
        return marked


def _unwrap(body: Any) -> dict[str, Any]:
    for _ in range(3):
        if not isinstance(body, dict):
            break
        inner = next((body[k] for k in WRAPPERS if isinstance(body.get(k), dict) and "messages" not in body), None)
        if inner is None:
            break
        body = inner
    if not isinstance(body, dict):
        raise InputError("a request body must be a JSON object with messages (or input)")
    return body


def _is_anthropic(body: dict[str, Any]) -> bool:
    if body.get("zumik") == 1:
        return str(body.get("request_format") or body.get("provider") or "") == "anthropic"
    tools = body.get("tools") or []
    return (
        "system" in body
        or "cache_control" in json.dumps(body.get("messages") or [])
        or any(isinstance(t, dict) and "input_schema" in t for t in tools)
        or str(body.get("model", "")).startswith("claude")
        or "anthropic_version" in body
    )


def _artifacts(body: dict[str, Any], anthropic: bool) -> tuple[Artifact, ...]:
    if body.get("zumik") == 1:
        messages = []
        for message in body.get("messages") or []:
            messages.extend(content_parts(message.get("role", "user"), message.get("content")))
        return ordered(anthropic_tools(body.get("tools")), system_artifacts(body.get("system")), messages)
    if anthropic:
        return ordered(
            anthropic_tools(body.get("tools")),
            system_artifacts(body.get("system")),
            anthropic_messages(body.get("messages")),
        )
    if "input" in body and "messages" not in body:
        items = body["input"]
        messages = openai_messages([{"role": "user", "content": items}] if isinstance(items, str) else items)
        return ordered(openai_tools(body.get("tools")), system_artifacts(body.get("instructions")), messages)
    return ordered(openai_tools(body.get("tools")), [], openai_messages(body.get("messages")))


def _automatic(body: dict[str, Any]) -> str:
    control = body.get("cache_control")
    if not isinstance(control, dict):
        return ""
    return "1h" if control.get("ttl") == "1h" else "5m"


def read_body(path: Path) -> RequestBody:
    """Read and materialize one request body file; a clear error when it is not one."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path} as a JSON request body ({exc})") from exc
    body = _unwrap(raw)
    if not isinstance(body.get("messages"), list) and "input" not in body:
        raise InputError(f"{path} has no messages (or input): not a Messages, Chat Completions or Responses body")
    anthropic = _is_anthropic(body)
    fmt = "anthropic" if anthropic else "openai"
    try:
        artifacts = _artifacts(body, anthropic)
    except ValueError as exc:
        raise InputError(f"{path} is not a request body zumik can read: {exc}") from exc
    model = str(body.get("model") or "")
    tokenizer = tokenizer_for_model(model)
    ordered_artifacts = identity.materialization_order(artifacts, fmt)
    texts = [identity.render(a, fmt) for a in ordered_artifacts]
    sizes = [len(ids) for ids in tokenizer.encode_batch(texts)] if texts else []
    blocks, end = [], 0
    for artifact, text, size in zip(ordered_artifacts, texts, sizes, strict=True):
        end += size
        blocks.append(Block(artifact.kind, artifact.role, artifact.name, text, size, end, artifact.cache_control))
    provider = str(body.get("provider") or ("anthropic" if anthropic else "openai")).lower()
    key = body.get("prompt_cache_key")
    return RequestBody(
        path=str(path),
        provider=provider,
        model=model,
        request_format=fmt,
        blocks=tuple(blocks),
        prompt_cache_key=str(key) if key is not None else None,
        automatic_cache=_automatic(body) if anthropic else "",
        tokenizer_exact=tokenizer.exact,
    )

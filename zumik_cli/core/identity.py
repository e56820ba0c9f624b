"""The three identity layers: logical (snapshot), materialization, and KV compatibility.

Every hash input starts with a version tag, bumped whenever a canonical form changes, so ids are deterministic
across runs and machines and never silently change meaning. Sequences are prefix-chained: the chain id of a
block covers every block before it, so "shares a prefix" is "shares a chain id".
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from zumik_cli.core.model import Artifact, Request

ARTIFACT_V = b"zumik-artifact-v1"
SNAPSHOT_V = b"zumik-snapshot-v1"
BLOCK_V = b"zumik-block-v1"
CHAIN_V = b"zumik-chain-v1"
MATERIALIZATION_V = b"zumik-mat-v1"
KVC_V = b"zumik-kvc-v1"
TRACE_V = b"zumik-trace-v1"
COMPILER_VERSION = "zc1"
ROOT_CHAIN = 0
STAND_IN_V = b"zumik-replay-v1"  # the tag of stand-in ids: changing it changes every replayed stand-in prompt
TOKEN_ID_RANGE = (1_000, 30_000)  # stand-in ids: inside every vocabulary zumik ships


def _digest(tag: bytes, parts: Iterable[str | bytes], size: int = 16) -> bytes:
    h = hashlib.blake2b(tag, digest_size=size)
    for part in parts:
        data = part.encode("utf-8", "surrogatepass") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.digest()


def hex_id(prefix: str, tag: bytes, parts: Iterable[str | bytes]) -> str:
    return prefix + _digest(tag, parts, 12).hex()


def int64_id(tag: bytes, parts: Iterable[str | bytes]) -> int:
    """A signed 64-bit id for join keys inside the dataset (never shown to users)."""
    return int.from_bytes(_digest(tag, parts, 8), "little", signed=True)


def artifact_hash(artifact: Artifact) -> str:
    return _digest(ARTIFACT_V, (artifact.kind, artifact.role, artifact.name, artifact.ref, artifact.body)).hex()


def snapshot_id(artifacts: Sequence[Artifact]) -> str:
    return snapshot_id_of_hashes([artifact_hash(a) for a in artifacts])


def snapshot_id_of_hashes(artifact_hashes: Sequence[str]) -> str:
    """``snapshot_id`` from the artifacts' hashes, for callers that remember them (ingest does)."""
    return hex_id("snp_", SNAPSHOT_V, artifact_hashes)


def derived_trace_id(*parts: str) -> str:
    """A trace id for logs that have none: stable across re-ingests of the same record."""
    return hex_id("trc_", TRACE_V, parts)


# --- materialization -------------------------------------------------------------------------------------

_OPENAI_ORDER = {"system": 0, "tool": 1}


def materialization_order(artifacts: Sequence[Artifact], request_format: str) -> list[Artifact]:
    """The order the wire format puts artifacts in front of the model.

    Anthropic caches tools -> system -> messages; OpenAI-style chat templates put instructions first and the
    tool definitions beside them. Messages keep their order in both.
    """
    if request_format != "openai":
        return list(artifacts)
    head = sorted((a for a in artifacts if a.kind in _OPENAI_ORDER), key=lambda a: _OPENAI_ORDER[a.kind])
    return head + [a for a in artifacts if a.kind not in _OPENAI_ORDER]


def render(artifact: Artifact, request_format: str) -> str:
    """The model-visible text of one artifact under a wire format's template (prompt compiler ``zc1``)."""
    body = artifact.body
    if request_format == "anthropic":
        if artifact.kind == "tool":
            return f"<tool_definition>{body}</tool_definition>\n"
        if artifact.kind == "system":
            return f"{body}\n\n"
        if artifact.kind == "tool_call":
            return f"<tool_use id={artifact.ref} name={artifact.name}>{body}</tool_use>"
        if artifact.kind == "tool_result":
            return f"\n\nHuman: <tool_result id={artifact.ref}>{body}</tool_result>"
        speaker = "Assistant" if artifact.role == "assistant" else "Human"
        return f"\n\n{speaker}: {body}"
    if artifact.kind == "tool":
        return f"<|im_start|>tools\n{body}<|im_end|>\n"
    if artifact.kind == "tool_call":
        return f"<|im_start|>assistant to={artifact.name} id={artifact.ref}\n{body}<|im_end|>\n"
    if artifact.kind == "tool_result":
        return f"<|im_start|>tool id={artifact.ref}\n{body}<|im_end|>\n"
    return f"<|im_start|>{artifact.role}\n{body}<|im_end|>\n"


def materialization_family(tokenizer_id: str, request_format: str) -> str:
    """Requests of one family can share token prefixes: same tokenizer, same prompt compiler."""
    return f"{tokenizer_id}|{COMPILER_VERSION}:{request_format}"


def block_id(family: str, text: str) -> int:
    return int64_id(BLOCK_V, (family, text))


def media_block_id(family: str, label: str, digest: str) -> int:
    """An image's or a document's block: its bytes (``digest``) and what they count (``label``), never its text."""
    return int64_id(BLOCK_V, (family, label, digest))


def stand_in_tokens(seed: bytes, count: int) -> np.ndarray:
    """Deterministic token ids standing in for content that has no text: hash-id blocks, namespaces, images."""
    digest = hashlib.blake2b(STAND_IN_V + seed, digest_size=8).digest()
    rng = np.random.default_rng(int.from_bytes(digest, "little"))
    return rng.integers(*TOKEN_ID_RANGE, size=count, dtype=np.int64)


_INT64 = struct.Struct("<q")
_EIGHT = (8).to_bytes(8, "little")
_CHAIN_HEAD = CHAIN_V + _EIGHT


def chain_id(parent: int, block: int) -> int:
    # int64_id(CHAIN_V, (parent as 8 bytes, block as 8 bytes)) with the message laid out in one buffer: the same
    # digest, without the per-part loop (this runs once per block of every request)
    data = _CHAIN_HEAD + _INT64.pack(parent) + _EIGHT + _INT64.pack(block)
    return int(_INT64.unpack(hashlib.blake2b(data, digest_size=8).digest())[0])


def chain_ids(blocks: Sequence[int], root: int = ROOT_CHAIN) -> list[int]:
    out, parent = [], root
    for block in blocks:
        parent = chain_id(parent, block)
        out.append(parent)
    return out


def hash_chain_ids(scope: str, hash_ids: Sequence[int]) -> list[int]:
    """Chain ids of a hash-id trace's blocks: its ids are already prefix-chained, so each is scoped, not chained."""
    return [int64_id(CHAIN_V, (scope, str(h))) for h in hash_ids]


def materialization_key(family: str, last_chain: int) -> str:
    return hex_id("mat_", MATERIALIZATION_V, (family, str(last_chain)))


@dataclass(frozen=True, slots=True)
class KvTarget:
    """Everything that decides whether a physical KV cache can be reused across two requests."""

    provider: str
    model: str
    model_revision: str
    quantization: str
    engine: str
    region: str
    tenant: str
    family: str


def kv_target(request: Request, family: str) -> KvTarget:
    return KvTarget(
        request.provider,
        request.model,
        request.model_revision,
        request.quantization,
        request.engine,
        request.region,
        request.tenant,
        family,
    )


def _target_parts(target: KvTarget, *, isolated: bool) -> tuple[str, ...]:
    """The target's fields in hash order; the tenant (the isolation namespace) sits just before the family."""
    namespace = (target.tenant,) if isolated else ()
    return (
        target.provider,
        target.model,
        target.model_revision,
        target.quantization,
        target.engine,
        target.region,
        *namespace,
        target.family,
    )


def kv_compatibility_key(target: KvTarget) -> str:
    return hex_id("kvc_", KVC_V, _target_parts(target, isolated=True))


def target_key(target: KvTarget) -> str:
    """The same target with the isolation namespace left out: used to show cross-tenant opportunity."""
    return hex_id("tgt_", KVC_V, _target_parts(target, isolated=False))

"""vLLM's block pool as a cache model: which leading blocks of each prompt a bounded KV cache still holds.

The one bounded-cache model for a rules pack whose ``eviction`` is vLLM's (``VLLM_EVICTION``): replay's prediction
and the waterfall's ``--capacity-tokens`` candidate under such a pack both come from ``predict``, so a figure the
engine can measure is computed one way. Prompts are token ids; blocks are full blocks of ``block_size`` tokens,
prefix-chained by hash, as vLLM names them.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import duckdb
import numpy as np
import pyarrow as pa

from zumik_cli.core.errors import ZumikError
from zumik_cli.core.identity import stand_in_tokens
from zumik_cli.rules.pack import load_packs
from zumik_cli.rules.targets import target_rules

VLLM_EVICTION = "lru_tail_first_hashless_first"

PROMPTS_SQL = """
SELECT b.rid, b.pos, b.chain, b.tokens, t.token_ids
FROM request_blocks b LEFT JOIN tokens t USING (block_id)
WHERE b.rid IN (SELECT rid FROM pool_rids)
ORDER BY b.rid, b.pos
"""


def token_prompts(con: duckdb.DuckDBPyConnection, rids: list[int]) -> dict[int, np.ndarray]:
    """Each request's prompt as token ids: its content blocks' tokens, or stand-in ids for each hash-id block."""
    con.register("pool_rids", pa.table({"rid": pa.array(rids, pa.int64())}))
    pieces: dict[int, list[np.ndarray]] = {}
    for rid, _pos, chain, size, ids in con.execute(PROMPTS_SQL).fetchall():
        if ids is None:
            ids = stand_in_tokens(int(chain).to_bytes(8, "little", signed=True), int(size))
        pieces.setdefault(rid, []).append(np.asarray(ids, dtype=np.int64))
    return {rid: np.concatenate(parts) for rid, parts in pieces.items()}


def namespaced_prompts(prompts: list[np.ndarray], keys: list[str], block_size: int) -> list[np.ndarray]:
    """Each prompt behind a block of its KV key's own ids, so two keys never share a prefix in one pool."""
    spaces: dict[str, np.ndarray] = {}
    return [
        np.concatenate([spaces.setdefault(key, stand_in_tokens(key.encode(), block_size)), prompt])
        for prompt, key in zip(prompts, keys, strict=True)
    ]


def own_hits(predicted: np.ndarray, block_size: int) -> np.ndarray:
    """Cached tokens of each request's own prompt: the namespace block in front is counted out."""
    return np.maximum(np.asarray(predicted, dtype=np.int64) - block_size, 0)


def _chain(prompt: np.ndarray, block_size: int) -> list[int]:
    """Prefix-chained ids of the prompt's full blocks (a partial last block is never cached)."""
    chain, out = b"", []
    for k in range(len(prompt) // block_size):
        chain = hashlib.blake2b(chain + prompt[k * block_size : (k + 1) * block_size].tobytes(), digest_size=8).digest()
        out.append(int.from_bytes(chain, "little"))
    return out


def predict(
    prompts: list[np.ndarray], block_size: int, capacity_blocks: int | None, second_tier_blocks: int | None = None
) -> np.ndarray:
    """Cached tokens the vLLM rules predict for each prompt, sent one after another to a fresh engine (both tiers
    together where there is a second one)."""
    first, second, _ = predict_tiers(prompts, block_size, capacity_blocks, second_tier_blocks)
    return first + second


def predict_tiers(
    prompts: list[np.ndarray], block_size: int, capacity_blocks: int | None, second_tier_blocks: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per prompt: the cached tokens served by the engine's own blocks, those served by a second tier, and whether
    the first block came from the second tier.

    The engine's block pool, as vLLM v1 keeps it: a request takes the leading cached blocks of its prompt (all
    but the last token's block when everything is cached), then allocates its other blocks from the free queue:
    empty blocks first, then the least recently freed cached block, whose content is evicted. When it finishes,
    its blocks are freed tail first; blocks without a hash (the partial last block) go to the front of the queue
    and are reused first. A recomputed block whose content is still cached elsewhere makes a second copy.

    A second tier of ``second_tier_blocks`` (CPU memory or disk behind the engine, as KV offloading adds one) takes
    each block whose last copy the pool evicts and keeps the least recently used of them; the prompt's leading
    blocks may come from either tier, and a block found only in the second tier is loaded back into a block of the
    pool (promoted: it leaves the second tier, and the pool allocates for it as for a computed block).
    """
    recompute_last = target_rules(load_packs()["vllm"], "").recompute_last
    unbounded = capacity_blocks is None
    empty = 0 if unbounded else int(capacity_blocks or 0)
    queue: OrderedDict[tuple[int, int], None] = OrderedDict()  # cached blocks, least recently freed first
    copies: dict[int, list[int]] = {}  # content -> the slots of its cached copies in the queue
    tier2: OrderedDict[int, None] = OrderedDict()  # the second tier's contents, least recently used first
    tier2_size = int(second_tier_blocks or 0)
    slot = 0
    first_out, second_out, head_out = [], [], []
    for prompt in prompts:
        blocks = _chain(prompt, block_size)
        hits, from_tier2 = 0, []
        while hits < len(blocks):
            content = blocks[hits]
            if not copies.get(content):
                if content not in tier2:
                    break
                from_tier2.append(hits)
            hits += 1
        if recompute_last:
            hits = min(hits, max(len(prompt) - 1, 0) // block_size)
            from_tier2 = [k for k in from_tier2 if k < hits]
        promoted = set(from_tier2)
        for k, content in enumerate(blocks[:hits]):
            if k in promoted:  # loaded back: out of the second tier, into a block allocated below
                del tier2[content]
            else:  # taken into use: out of the free queue
                del queue[(content, copies[content].pop(0))]
        needed = len(blocks) - hits + len(promoted) + (1 if len(prompt) % block_size else 0)
        if not unbounded and needed > empty + len(queue):
            raise ZumikError(
                f"a prompt of {len(prompt):,} tokens needs {len(blocks) + (1 if len(prompt) % block_size else 0)} "
                f"blocks of {block_size} tokens, more than a cache of {capacity_blocks} blocks holds (an engine "
                "refuses it): give a larger capacity"
            )
        if not unbounded:
            taken = min(needed, empty)
            empty -= taken
            for _ in range(needed - taken):
                (content, evicted), _ = queue.popitem(last=False)
                copies[content].remove(evicted)
                if tier2_size and not copies[content]:  # its last copy: offloaded to the second tier
                    tier2[content] = None
                    tier2.move_to_end(content)
                    if len(tier2) > tier2_size:
                        tier2.popitem(last=False)
            empty += 1 if len(prompt) % block_size else 0  # the partial block goes back, holding nothing
        for content in reversed(blocks):
            slot += 1
            queue[(content, slot)] = None
            copies.setdefault(content, []).append(slot)
        first_out.append((hits - len(promoted)) * block_size)
        second_out.append(len(promoted) * block_size)
        head_out.append(0 in promoted)
    return (
        np.asarray(first_out, dtype=np.int64),
        np.asarray(second_out, dtype=np.int64),
        np.asarray(head_out, dtype=np.bool_),
    )


def own_tier_hits(
    prompts: list[np.ndarray], block_size: int, capacity_blocks: int | None, second_tier_blocks: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Each namespaced prompt's own cached tokens per tier: the namespace block in front is counted out of the tier
    that served it."""
    first, second, head = predict_tiers(prompts, block_size, capacity_blocks, second_tier_blocks)
    served = (first + second) > 0
    second_own = np.maximum(second - np.where(head & served, block_size, 0), 0)
    first_own = np.maximum(first - np.where(~head & served, block_size, 0), 0)
    return first_own, second_own

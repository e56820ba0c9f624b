"""Dataset rows built as whole arrays: request_blocks for any batch, and every table for hash-id batches.

A million-request hash-id trace has tens of millions of blocks; one Python object or append per block would
cost more than everything else ingest does. Here a batch's columns are computed with numpy and Arrow, and its
ids with ``digests`` (the same BLAKE2b as ``identity``, vectorised), so every id equals what ``identity`` gives
for the same request one at a time.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from zumik_cli.core import identity
from zumik_cli.core.kernels import compiled, kernel
from zumik_cli.readers.hashid import HashColumns

Columns = dict[str, Any]
# Below this many blocks (or ids) a batch's loops run interpreted, over lists: 5 to 10 ms at 31,000, where importing
# numba and loading a compiled loop from its cache take a third of a second, and compiling them on a fresh install
# about a second
COMPILED_MIN = 1 << 17


def block_rows(
    rids: np.ndarray, offsets: np.ndarray, chain: np.ndarray, tokens: np.ndarray, block_ids: Any = None
) -> Columns:
    """request_blocks columns from per-block arrays; request i (id ``rids[i]``) owns ``offsets[i]:offsets[i + 1]``."""
    # numpy allocates the outputs: it asks for huge pages, where numba's allocator page-faults 4 KiB at a time
    rid, pos, parent, end_token = (np.empty(len(chain), dtype=np.int64) for _ in range(4))
    if len(chain) >= COMPILED_MIN:
        compiled(_fill_block_columns)(offsets, rids, chain, tokens, identity.ROOT_CHAIN, rid, pos, parent, end_token)
    else:
        filled: list[list[int]] = [[0] * len(chain) for _ in range(4)]
        given = (offsets.tolist(), rids.tolist(), chain.tolist(), tokens.tolist())
        _fill_block_columns(*given, identity.ROOT_CHAIN, *filled)
        for column, values in zip((rid, pos, parent, end_token), filled, strict=True):
            column[:] = values
    if block_ids is None:
        block_id = chain
    else:
        block_id = np.fromiter((b for ids in block_ids for b in ids), dtype=np.int64, count=len(chain))
    return {
        "rid": rid,
        "pos": pos,
        "block_id": block_id,
        "chain": chain,
        "parent": parent,
        "tokens": tokens,
        "end_token": end_token,
    }


@kernel
def _fill_block_columns(
    offsets: Any, rids: Any, chain: Any, tokens: Any, root: int, rid: Any, pos: Any, parent: Any, end_token: Any
) -> None:
    # One pass over the blocks instead of a repeat and a temporary per column: a batch has millions of them.
    for r in range(len(offsets) - 1):
        above = root
        running = 0
        for i in range(offsets[r], offsets[r + 1]):
            rid[i] = rids[r]
            pos[i] = i - offsets[r]
            parent[i] = above
            above = chain[i]
            running += tokens[i]
            end_token[i] = running


def _hash_block_tokens(offsets: np.ndarray, input_length: np.ndarray, size: int) -> np.ndarray:
    tokens = np.empty(offsets[-1], dtype=np.int64)
    if len(tokens) >= COMPILED_MIN:
        compiled(_fill_hash_block_tokens)(offsets, input_length, size, tokens)
    else:
        filled = [0] * len(tokens)
        _fill_hash_block_tokens(offsets.tolist(), input_length.tolist(), size, filled)
        tokens[:] = filled
    return tokens


@kernel
def _fill_hash_block_tokens(offsets: Any, input_length: Any, size: int, tokens: Any) -> None:
    # A hash-id request's input fills its blocks in order: whole blocks, then the remainder, then nothing.
    for r in range(len(offsets) - 1):
        for i in range(offsets[r], offsets[r + 1]):
            tokens[i] = min(max(input_length[r] - (i - offsets[r]) * size, 0), size)


def _part(data: bytes) -> bytes:
    """One part of an ``identity`` hash input: its 8-byte little-endian length, then its bytes."""
    return len(data).to_bytes(8, "little") + data


def _strings(fixed: np.ndarray) -> pa.Array:
    """Fixed-width ASCII ids (numpy ``S`` array) as an Arrow string array, without a Python string each."""
    width = fixed.dtype.itemsize
    offsets = np.arange(len(fixed) + 1, dtype=np.int32) * width
    return pa.Array.from_buffers(pa.string(), len(fixed), [None, pa.py_buffer(offsets), pa.py_buffer(fixed.tobytes())])


def _repeated(value: str, n: int) -> pa.Array:
    """``n`` copies of one string as an Arrow string array, its buffers written whole rather than cast."""
    data = value.encode()
    if n * len(data) >= 1 << 31:  # past 32-bit offsets: Arrow's cast says so
        return pa.DictionaryArray.from_arrays(np.zeros(n, dtype=np.int32), pa.array([value])).cast(pa.string())
    offsets = np.arange(n + 1, dtype=np.int32) * np.int32(len(data))
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data * n)])


@functools.lru_cache(maxsize=256)
def _target_keys(family: str) -> tuple[str, str]:
    target = identity.KvTarget("", "", "", "", "", "", "default", family)
    return identity.kv_compatibility_key(target), identity.target_key(target)


DENSE_IDS = 1 << 25  # ids below this are looked up in a flat table (9 bytes an entry), not dictionary-encoded


class ChainCache:
    """Chain ids already computed, per scope, kept across the batches of an ingest run.

    Trace files number their blocks 0, 1, 2, ...: such ids index a flat array of chain ids (and a flag saying
    which are computed) that grows as larger ids arrive, so each distinct id is hashed once per run and no hash
    table is built. A batch with a negative id or one past ``DENSE_IDS`` goes the dictionary-encoding way.
    """

    def __init__(self) -> None:
        self.tables: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def chains(self, scope: str, hash_ids: np.ndarray) -> np.ndarray | None:
        if not len(hash_ids):
            return np.empty(0, dtype=np.int64)
        low, high = int(hash_ids.min()), int(hash_ids.max())
        if low < 0 or high >= DENSE_IDS:
            return None
        values, known = self.tables.get(scope, (np.empty(0, np.int64), np.empty(0, np.bool_)))
        if high >= len(values):
            size = min(max(high + 1, 2 * len(values)), DENSE_IDS)
            values = np.concatenate([values, np.zeros(size - len(values), np.int64)])
            known = np.concatenate([known, np.zeros(size - len(known), np.bool_)])
        fresh = _unknown(hash_ids, known)  # marks them known
        if len(fresh):
            values[fresh] = _digest_chains(scope, fresh)
        self.tables[scope] = (values, known)
        return values[hash_ids]


def _unknown(ids: np.ndarray, known: np.ndarray) -> np.ndarray:
    # The ids not yet known, each once, in first-seen order; they are marked known.
    if len(ids) >= COMPILED_MIN:
        out = np.empty(len(ids), dtype=np.int64)
        return out[: compiled(_first_seen)(ids, known, out)].copy()
    fresh = [0] * len(ids)
    n = _first_seen(ids.tolist(), known, fresh)  # ``known`` as it is: as long as the largest id, however few ids
    return np.array(fresh[:n], dtype=np.int64)


@kernel
def _first_seen(ids: Any, known: Any, out: Any) -> int:
    # Writes the ids not yet known to ``out``, each once, in first-seen order, marks them known, and counts them.
    n = 0
    for i in range(len(ids)):
        v = ids[i]
        if not known[v]:
            known[v] = True
            out[n] = v
            n += 1
    return n


def _digest_chains(scope: str, distinct: np.ndarray) -> np.ndarray:
    from zumik_cli.core import digests

    prefix = identity.CHAIN_V + _part(scope.encode("utf-8", "surrogatepass"))
    return digests.as_int64(digests.digest_decimals(prefix, distinct, 8))


def _chains(scope: str, hash_ids: np.ndarray, cache: ChainCache | None = None) -> np.ndarray:
    """``identity.hash_chain_ids`` for every id: hashed once per distinct id in the batch (or run, with a cache)."""
    if cache is not None:
        known = cache.chains(scope, hash_ids)
        if known is not None:
            return known
    encoded = pa.array(hash_ids, type=pa.int64()).dictionary_encode()
    chains = _digest_chains(scope, encoded.dictionary.to_numpy())
    return chains[encoded.indices.to_numpy(zero_copy_only=False)]


class KnownTraces:
    """The trace ids already read, the dataset's and this run's: a request whose id is among them is not read again.

    A hash-id batch's ids follow from its format, scope and line numbers, so two batches share an id only where
    they share a scope and a line: such batches are kept as their line numbers (and ids as fixed-width bytes), made
    into a string each only when a string is looked up. A million-request trace read on its own never builds its
    million id strings (about 0.4 s of CPU and 100 MB).
    """

    def __init__(self, ids: set[str]) -> None:
        self.ids = ids  # the dataset's, and those of requests read one by one
        self.lines: dict[tuple[str, str], list[tuple[int, int, np.ndarray]]] = {}  # each batch's lowest, highest, all
        self.unsettled: list[np.ndarray] = []  # hash-id batches' ids, not yet in ``ids``

    def __contains__(self, trace_id: str) -> bool:
        if self.unsettled:
            for text in self.unsettled:
                self.ids.update(text.astype(str).tolist())
            self.unsettled.clear()
        return trace_id in self.ids

    def add(self, trace_id: str) -> None:
        self.ids.add(trace_id)

    def fresh(self, columns: HashColumns, trace_text: np.ndarray) -> np.ndarray:
        """Which of the batch's records have ids not read before (their ids ``trace_text``); they count as read."""
        keep = np.ones(len(trace_text), dtype=np.bool_)
        scope = (columns.format, columns.scope)
        if len(columns.lines):
            low, high = int(columns.lines.min()), int(columns.lines.max())
            # the same trace read again in this run; a file's next chunk (lines past its last) is not compared
            earlier = [lines for first, last, lines in self.lines.get(scope, []) if first <= high and last >= low]
            if earlier:
                keep &= ~np.isin(columns.lines, np.concatenate(earlier))
        if self.ids:
            trace_ids = trace_text.astype(str).tolist()
            if not self.ids.isdisjoint(trace_ids):
                keep &= np.fromiter((t not in self.ids for t in trace_ids), dtype=np.bool_, count=len(trace_ids))
        kept = columns.lines[keep]
        if len(kept):
            self.lines.setdefault(scope, []).append((int(kept.min()), int(kept.max()), kept))
        self.unsettled.append(trace_text[keep])
        return keep


def hash_rows(
    columns: HashColumns, seq0: int, known_traces: KnownTraces, chain_cache: ChainCache | None = None
) -> tuple[Columns, ...]:
    """Rows of the four tables for a batch of hash-id records; records already in the dataset are skipped."""
    from zumik_cli.core import digests

    scope_part = _part(columns.scope.encode("utf-8", "surrogatepass"))
    trace_prefix = identity.TRACE_V + _part(columns.format.encode()) + scope_part
    large = len(columns.hash_ids) >= COMPILED_MIN  # its request ids go compiled from the first batch on
    trace_text = digests.as_hex("trc_", digests.digest_decimals(trace_prefix, columns.lines, 12, large))
    keep = known_traces.fresh(columns, trace_text)
    if not keep.all():
        columns = _select(columns, keep)
        trace_text = trace_text[keep]
    n = len(columns)
    width = trace_text.dtype.itemsize
    message = np.empty((n, len(identity.TRACE_V) + 8 + width), dtype=np.uint8)
    message[:, : len(identity.TRACE_V)] = np.frombuffer(identity.TRACE_V, dtype=np.uint8)
    message[:, len(identity.TRACE_V) : len(identity.TRACE_V) + 8] = np.frombuffer(
        width.to_bytes(8, "little"), dtype=np.uint8
    )
    message[:, len(identity.TRACE_V) + 8 :] = trace_text.view(np.uint8).reshape(n, width)
    rid = digests.as_int64(digests.digest_rows(message, 8, large))

    offsets = columns.offsets
    counts = np.diff(offsets)
    chain = _chains(columns.scope, columns.hash_ids, chain_cache)
    size = columns.block_size
    tokens = _hash_block_tokens(offsets, columns.input_length, size)
    blocks = block_rows(rid, offsets, chain, tokens)

    family = f"hashid:{columns.scope}:{size}"
    last = np.where(counts > 0, chain[np.maximum(offsets[1:] - 1, 0)] if len(chain) else 0, 0)
    mat_prefix = identity.MATERIALIZATION_V + _part(family.encode("utf-8", "surrogatepass"))
    materialization = digests.as_hex("mat_", digests.digest_decimals(mat_prefix, last, 12, large))
    kvc, target = _target_keys(family)

    def same(value: str) -> pa.Array:
        return _repeated(value, n)

    nulls = pa.nulls(n, pa.int64())
    empty_lists = pa.ListArray.from_arrays(np.zeros(n + 1, dtype=np.int32), pa.array([], pa.int64()))
    requests = {
        "trace_id": _strings(trace_text),
        "rid": rid,
        "seq": seq0 + np.arange(n, dtype=np.int64),
        "source_path": same(columns.path),
        "source_line": columns.lines,
        "format": same(columns.format),
        "timestamp": columns.timestamps,
        "provider": same(""),
        "model": same(""),
        "model_revision": same(""),
        "engine": same(""),
        "region": same(""),
        "quantization": same(""),
        "tenant": same("default"),
        "session_id": same(""),
        "alias": same(""),
        "alias_release": same(""),
        "request_format": same("none"),
        "snapshot_id": same(""),
        "materialization_key": _strings(materialization),
        "materialization_family": same(family),
        "kv_compatibility_key": same(kvc),
        "target_key": same(target),
        "tokenizer": same(""),
        "tokenizer_exact": np.zeros(n, dtype=np.bool_),
        "block_granularity": np.full(n, size, dtype=np.int64),
        "n_blocks": counts,
        "prompt_tokens_counted": nulls,
        "prompt_tokens_reported": columns.input_length,
        "cached_tokens_reported": nulls,
        "cache_write_tokens_reported": nulls,
        "output_tokens_reported": columns.output_length,
        "usage_family": same("hash-id"),
        "miss_reason": same(""),
        "missed_tokens_reported": nulls,
        "latency_ms": pa.nulls(n, pa.float64()),
        "breakpoints": empty_lists,
        "breakpoint_ttls": pa.ListArray.from_arrays(np.zeros(n + 1, dtype=np.int32), pa.array([], pa.string())),
        "output_chain": nulls,
        "unlogged_prefix_tokens": nulls,
    }
    empty: Columns = {"block_id": [], "family": [], "kind": [], "role": [], "name": [], "artifact_hash": []}
    empty.update({"n_tokens": [], "text": []})
    return requests, blocks, empty, {"block_id": [], "token_ids": []}


def _select(columns: HashColumns, keep: np.ndarray) -> HashColumns:
    counts = np.diff(columns.offsets)[keep]
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    block_keep = np.repeat(keep, np.diff(columns.offsets))
    return HashColumns(
        format=columns.format,
        path=columns.path,
        scope=columns.scope,
        block_size=columns.block_size,
        lines=columns.lines[keep],
        timestamps=columns.timestamps[keep],
        input_length=columns.input_length[keep],
        output_length=pc.filter(columns.output_length, pa.array(keep)),
        offsets=offsets,
        hash_ids=columns.hash_ids[block_keep],
    )

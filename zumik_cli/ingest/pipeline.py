"""Ingest: read traces, compute the three identities, tokenize unique blocks once, write the dataset.

Streaming in batches with bounded memory (what grows is the set of unique blocks, not the input); a record that
cannot be read is quarantined with file, line and reason; re-ingesting an input already in the manifest adds
nothing; new parts are published by one atomic manifest replace.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq

from zumik_cli import readers
from zumik_cli.core import identity
from zumik_cli.core.cpus import size_arrow_pools
from zumik_cli.core.errors import DatasetError, InputError
from zumik_cli.core.media import MEDIA_KINDS, parse_body
from zumik_cli.core.memo import MISSING, Memo
from zumik_cli.core.model import Artifact, Quarantined, Request, Source
from zumik_cli.core.redact import redact
from zumik_cli.core.storage import local_or_uri
from zumik_cli.dataset.schema import BLOCKS, REQUEST_BLOCKS, REQUESTS, TABLES, TOKENS
from zumik_cli.dataset.store import (
    Manifest,
    manifest_or_new,
    publish_staged,
    remove_orphans,
    staging_folder,
    writer_lock,
)
from zumik_cli.ingest.tokenization import Tokenizer, load_tokenizer, tokenizer_for_model
from zumik_cli.readers.hashid import HashColumns
from zumik_cli.readers.inputs import Input, fetch_object, find_inputs, regular_input, spool_stream
from zumik_cli.rules.pack import load_packs, media_rules

BATCH_REQUESTS = 2000
# Formats whose logs leave out what every call sends first (Claude Code writes neither its system prompt nor its
# tool definitions): each session's calls get one estimated leading block for it, see ``_Materializer.release``.
UNLOGGED_PREFIX_FORMATS = frozenset({"claude-code", "claude-code-stream"})
UNLOGGED_PREFIX_METHOD = "minimum over the session's calls of reported minus counted prompt tokens"
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class IngestSummary:
    dataset: str
    requests: int
    quarantined: int
    duplicates_skipped: int
    inputs_skipped: list[str]
    prompt_tokens_reported: int
    cached_tokens_reported: int
    formats: dict[str, int]
    unique_blocks: int
    tokens_counted: int
    calibration: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    # What a folder held that was not read, each with the reason (other extensions, symlinked folders, FIFOs).
    not_read: list[dict[str, str]] = field(default_factory=list)
    # What ingest spent its time on (seconds, wall clock: identify, tokenize on the worker thread, wait for it,
    # rows, write) and how many characters it tokenized: the evidence that cost follows unique content.
    tokenized_chars: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


# request_blocks is integers only, tens of millions of rows for a large trace: dictionary pages there cost more
# time than they save space, and lz4 writes (and DuckDB reads) it several times faster than zstd. lz4 shrinks the
# counting columns twentyfold; the chain columns are 64-bit hashes, which it shrinks by a sixth for more CPU,
# writing them, than it saves reading them back, so they go uncompressed.
_HASH_COLUMNS = ("block_id", "chain", "parent")
# A dictionary finds little to share in a column that is unique (or nearly) per request: building it is wasted work.
_UNIQUE_PER_REQUEST = ("trace_id", "rid", "seq", "source_line", "timestamp", "materialization_key")
_PARQUET_OPTIONS: dict[str, dict[str, Any]] = {
    "request_blocks": {
        "compression": {name: "none" if name in _HASH_COLUMNS else "lz4" for name in REQUEST_BLOCKS.names},
        "use_dictionary": False,
    },
    "requests": {
        "compression": "zstd",
        "use_dictionary": [name for name in REQUESTS.names if name not in _UNIQUE_PER_REQUEST],
    },
}


class _PartWriter:
    """One Parquet part per table per ingest run, written batch by batch under the staging folder.

    Arrow builds each batch in the calling thread; the Parquet encoding and compression of all its tables run on
    a writer thread (Arrow releases the GIL there) while the caller reads and identifies the next batch. One
    batch is in flight at a time, so memory holds at most two batches.
    """

    def __init__(self, staging: Path, run: str) -> None:
        self.staging, self.run = staging, run
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zumik-write")
        self.pending: Future[None] | None = None

    def write(self, rows: dict[str, Columns]) -> None:
        """Queue one batch: its rows for each table (a table without rows is skipped)."""
        tables: dict[str, pa.Table] = {}
        for table, columns in rows.items():
            schema = TABLES[table]
            if not columns or not len(next(iter(columns.values()))):
                continue
            tables[table] = pa.table({name: _array(columns[name], schema.field(name).type) for name in schema.names})
            if table not in self.writers:
                (self.staging / table).mkdir(parents=True, exist_ok=True)
                options = _PARQUET_OPTIONS.get(table, {"compression": "zstd"})
                path = self.staging / table / f"part-{self.run}.parquet"
                self.writers[table] = pq.ParquetWriter(path, schema, **options)
        self.wait()
        if tables:
            self.pending = self.pool.submit(self._write_tables, tables)

    def _write_tables(self, tables: dict[str, pa.Table]) -> None:
        for table, batch in tables.items():
            self.writers[table].write_table(batch)

    def wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()

    def abandon(self) -> None:
        """On a failed run: let the write in flight end (its error, if any, is not the one to report)."""
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.exception()
        self.pool.shutdown()

    def close(self) -> list[str]:
        try:
            self.wait()
        finally:
            self.pool.shutdown()
            for writer in self.writers.values():
                writer.close()
        return [f"{table}/part-{self.run}.parquet" for table in self.writers]


Columns = dict[str, Any]  # column name -> Python list, numpy array or Arrow array


def _array(values: Any, type: pa.DataType) -> pa.Array:
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values if values.type == type else values.cast(type)
    return pa.array(values, type=type)


def _columns(schema: pa.Schema) -> dict[str, list[Any]]:
    return {name: [] for name in schema.names}


def _manifest_columns(
    rids: list[int], bids: list[list[int]], chains: list[list[int]], sizes: list[list[int]]
) -> Columns:
    """request_blocks columns for a batch, built with numpy rather than seven appends per block."""
    from zumik_cli.ingest.rows import block_rows

    offsets = np.zeros(len(bids) + 1, dtype=np.int64)
    np.cumsum(np.fromiter((len(b) for b in bids), dtype=np.int64, count=len(bids)), out=offsets[1:])
    total = int(offsets[-1])
    chain = np.fromiter(itertools.chain.from_iterable(chains), dtype=np.int64, count=total)
    tokens = np.fromiter(itertools.chain.from_iterable(sizes), dtype=np.int64, count=total)
    return block_rows(np.asarray(rids, dtype=np.int64), offsets, chain, tokens, bids)


@dataclass
class _Prepared:
    """A content request between identification and its rows: what it renders to, before its blocks' sizes."""

    family: str
    tokenizer: Tokenizer
    artifacts: list[Artifact]
    bids: list[int]
    output_bids: list[int]
    estimated: bool = False  # an image or a document whose size could not be read counted at a nominal figure


@dataclass
class _Pending:
    """A batch whose new blocks are being tokenized on the worker thread while the next batch is read."""

    batch: list[Request]
    seq0: int
    prepared: list[_Prepared | None]
    new_blocks: list[tuple[int, str, Artifact, str]]
    encoded: Future[list[list[list[int]]]] | None


class _Materializer:
    """Turns canonical requests into rows: blocks are content-addressed and tokenized once per dataset.

    Resent history is the bulk of agent traffic, so each artifact's rendering, block id and content hash are
    remembered (bounded, ``Memo``) and each block pair's chain id too: a resent message costs lookups, not
    hashing. New blocks are tokenized on a worker thread (the tokenizers release the GIL) while the next batch
    is read and identified, which is how ingest uses the second core.
    """

    def __init__(self, tokenizer_override: str | None, known_blocks: dict[int, int]) -> None:
        self.override = tokenizer_override
        self.block_tokens = known_blocks
        self.scheduled: set[int] = set()
        self.notes: set[str] = set()
        self.calibration: dict[tuple[str, str], list[int]] = {}
        # content calls of UNLOGGED_PREFIX_FORMATS by session, held until every call of it is counted
        self.held: dict[tuple[str, str], list[tuple[Request, _Prepared, int]]] = {}
        self.unlogged_prefix = True
        self.prefixes: list[dict[str, Any]] = []
        self.rendered: Memo[tuple[str, int]] = Memo(1 << 18, weight_limit=1 << 27)
        self.hashes: Memo[str] = Memo(1 << 18, weight_limit=1 << 27)
        self.chains: Memo[int] = Memo(1 << 20)
        self.media: dict[int, tuple[str, int]] = {}  # an image's or a document's block: its digest and its tokens
        self.unsized: set[str] = set()  # digests of media counted at a nominal figure
        self.packs = load_packs()
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zumik-tokenize")
        self.timings: dict[str, float] = defaultdict(float)

    def close(self) -> None:
        self.worker.shutdown(wait=True)

    def tokenizer(self, model: str, counts: bool = True) -> Tokenizer:
        """The tokenizer for ``model``; its note (a proxy's) is kept only when it ``counts`` some content."""
        tokenizer = tokenizer_for_model(model, self.override)
        if tokenizer.note and counts:
            self.notes.add(tokenizer.note)
        return tokenizer

    def start(self, batch: list[Request], seq0: int) -> _Pending:
        """Identify a batch and send its new blocks to the tokenizer; rows come from ``finish``."""
        began = time.perf_counter()
        prepared = [None if r.hash_blocks is not None else self._prepare(r) for r in batch]
        new: list[tuple[int, str, Artifact, str]] = []
        by_tokenizer: dict[str, tuple[Tokenizer, list[str]]] = {}
        for prep in prepared:
            if prep is None:
                continue
            for bid, artifact in zip(prep.bids, prep.artifacts, strict=True):
                if bid not in self.block_tokens and bid not in self.scheduled:
                    self.scheduled.add(bid)
                    if bid in self.media:  # counted by its provider's rule, never tokenized
                        new.append((bid, artifact.body, artifact, prep.family))
                        continue
                    text = self._render(artifact, prep.family)[0]
                    new.append((bid, text, artifact, prep.family))
                    by_tokenizer.setdefault(prep.tokenizer.id, (prep.tokenizer, []))[1].append(text)
        groups = list(by_tokenizer.values())
        encoded = self.worker.submit(self._encode, groups) if groups else None
        self.timings["identify"] += time.perf_counter() - began
        return _Pending(batch, seq0, prepared, new, encoded)

    def _encode(self, groups: list[tuple[Tokenizer, list[str]]]) -> list[list[list[int]]]:
        began = time.perf_counter()
        out = [tokenizer.encode_batch(texts) for tokenizer, texts in groups]
        self.timings["tokenize"] += time.perf_counter() - began
        self.timings["tokenized_chars"] += sum(len(t) for _, texts in groups for t in texts)
        return out

    def finish(self, pending: _Pending) -> tuple[Columns, ...]:
        """The rows of a started batch, once its new blocks are tokenized."""
        blocks, tokens = _columns(BLOCKS), _columns(TOKENS)
        waited = time.perf_counter()
        texts = iter(itertools.chain.from_iterable(pending.encoded.result()) if pending.encoded else ())
        encoded = (self._stand_ins(bid) if bid in self.media else next(texts) for bid, *_ in pending.new_blocks)
        began = time.perf_counter()
        self.timings["wait_tokenize"] += began - waited
        for (bid, text, artifact, family), ids in zip(pending.new_blocks, encoded, strict=True):
            self.block_tokens[bid] = len(ids)
            self.scheduled.discard(bid)
            for name, value in (
                ("block_id", bid),
                ("family", family),
                ("kind", artifact.kind),
                ("role", artifact.role),
                ("name", artifact.name),
                ("artifact_hash", self._artifact_hash(artifact)),
                ("n_tokens", len(ids)),
                ("text", text),
            ):
                blocks[name].append(value)
            tokens["block_id"].append(bid)
            tokens["token_ids"].append(ids)
        requests = _columns(REQUESTS)
        rids: list[int] = []
        all_bids: list[list[int]] = []
        all_chains: list[list[int]] = []
        all_sizes: list[list[int]] = []
        for offset, (request, prep) in enumerate(zip(pending.batch, pending.prepared, strict=True)):
            if (
                self.unlogged_prefix
                and prep is not None
                and request.artifacts
                and request.format in UNLOGGED_PREFIX_FORMATS
            ):
                key = (request.source.path, request.session_id)
                self.held.setdefault(key, []).append((request, prep, pending.seq0 + offset))
                continue
            rid, bids, chains, sizes = self._request_row(request, prep, pending.seq0 + offset, requests)
            rids.append(rid)
            all_bids.append(bids)
            all_chains.append(chains)
            all_sizes.append(sizes)
        manifest = _manifest_columns(rids, all_bids, all_chains, all_sizes)
        self.timings["rows"] += time.perf_counter() - began
        return requests, manifest, blocks, tokens

    def _stand_ins(self, bid: int) -> list[int]:
        """An image's tokens: a run of its rule's length drawn from its bytes' digest, the same wherever it recurs."""
        digest, count = self.media[bid]
        return identity.stand_in_tokens(bytes.fromhex(digest), count).tolist()  # type: ignore[no-any-return]

    def _sized(self, artifact: Artifact, request: Request) -> tuple[Artifact, bool]:
        """A media artifact as its block, labelled with what its provider's rule counts for it (the digest and the
        count ride in ``ref``, for ``_render``); and whether its size was read (else the count is nominal)."""
        media = parse_body(artifact.body)
        rules = media_rules(request.provider, request.engine, request.model, request.request_format, self.packs)
        tokens = rules.tokens(media, request.model) if rules else 0
        if not media.sized:
            self.unsized.add(media.sha256)
        label = media.label(tokens)
        ref = f"{media.sha256}:{tokens}"
        return Artifact(artifact.kind, artifact.role, label, media.format, ref, artifact.cache_control), media.sized

    def release(self) -> tuple[Columns, ...]:
        """The rows of the held sessions, each call led by one block for the prefix its log leaves out.

        The prefix is the same in every call of a session, so its length is estimated once: the least gap between
        a call's reported and counted prompt tokens (never negative). What a proxy tokenizer undercounts grows with
        the conversation; the prefix does not, so the smallest gap bounds it best. The block has a token count and
        no text, like a hash-id block; its id is derived from the session and the length, so every call of the
        session shares it and the second call on can reuse it, as a system prompt is."""
        requests = _columns(REQUESTS)
        rids: list[int] = []
        all_bids: list[list[int]] = []
        all_chains: list[list[int]] = []
        all_sizes: list[list[int]] = []
        for (path, session), calls in self.held.items():
            gaps = [
                r.usage.prompt_tokens - sum(self.block_tokens[b] for b in p.bids)
                for r, p, _ in calls
                if r.usage.prompt_tokens is not None
            ]
            prefix = max(min(gaps), 0) if gaps else 0
            if prefix:
                self.prefixes.append({"session": session, "source": path, "tokens": prefix, "calls": len(calls)})
            for request, prep, seq in calls:
                rid, bids, chains, sizes = self._request_row(request, prep, seq, requests, prefix)
                rids.append(rid)
                all_bids.append(bids)
                all_chains.append(chains)
                all_sizes.append(sizes)
        self.held.clear()
        manifest = _manifest_columns(rids, all_bids, all_chains, all_sizes)
        return requests, manifest, _columns(BLOCKS), _columns(TOKENS)

    def _render(self, artifact: Artifact, family: str) -> tuple[str, int]:
        key = (family, artifact)
        known = self.rendered.get(key)
        if known is MISSING and artifact.kind in MEDIA_KINDS:
            digest, _, tokens = artifact.ref.partition(":")
            known = (artifact.body, identity.media_block_id(family, artifact.body, digest))
            self.media[known[1]] = (digest, int(tokens))
            self.rendered.put(key, known, len(artifact.body))  # type: ignore[arg-type]
        elif known is MISSING:
            text = identity.render(artifact, family.rsplit(":", 1)[1])
            known = (text, identity.block_id(family, text))
            self.rendered.put(key, known, len(text))  # type: ignore[arg-type]
        return known  # type: ignore[return-value]

    def _artifact_hash(self, artifact: Artifact) -> str:
        known = self.hashes.get(artifact)
        if known is MISSING:
            known = identity.artifact_hash(artifact)
            self.hashes.put(artifact, known, len(artifact.body))  # type: ignore[arg-type]
        return known  # type: ignore[return-value]

    def _chain_ids(self, blocks: list[int], root: int = identity.ROOT_CHAIN) -> list[int]:
        out, parent = [], root
        memo = self.chains
        for block in blocks:
            key = (parent, block)
            chain = memo.get(key)
            if chain is MISSING:
                chain = identity.chain_id(parent, block)
                memo.put(key, chain)
            out.append(chain)  # type: ignore[arg-type]
            parent = chain  # type: ignore[assignment]
        return out  # type: ignore[return-value]

    def _prepare(self, request: Request) -> _Prepared:
        tokenizer = self.tokenizer(request.model, counts=bool(request.artifacts))
        family = identity.materialization_family(tokenizer.id, request.request_format)
        artifacts = identity.materialization_order(request.artifacts, request.request_format)
        estimated = False
        if any(a.kind in MEDIA_KINDS for a in artifacts):
            sized = []
            for artifact in artifacts:
                if artifact.kind in MEDIA_KINDS:
                    artifact, known = self._sized(artifact, request)
                    estimated |= not known
                sized.append(artifact)
            artifacts = sized
        return _Prepared(
            family=family,
            tokenizer=tokenizer,
            artifacts=artifacts,
            bids=[self._render(a, family)[1] for a in artifacts],
            output_bids=[self._render(a, family)[1] for a in request.output if a.kind not in MEDIA_KINDS],
            estimated=estimated,
        )

    def _request_row(
        self, request: Request, prep: _Prepared | None, seq: int, out: dict[str, list[Any]], prefix: int = 0
    ) -> tuple[int, list[int], list[int], list[int]]:
        rid = identity.int64_id(identity.TRACE_V, (request.trace_id,))
        breakpoints: list[int] = []
        ttls: list[str] = []
        output_chain = None
        tokenizer = None
        if prep is None:
            hb = request.hash_blocks
            assert hb is not None
            family = f"hashid:{hb.scope}:{hb.block_size}"
            chains = identity.hash_chain_ids(hb.scope, hb.hash_ids)
            sizes = [max(0, min(hb.block_size, hb.input_length - i * hb.block_size)) for i in range(len(chains))]
            bids = chains
            counted = None
            granularity = hb.block_size
            snapshot = ""
        else:
            family = prep.family
            bids = prep.bids
            sizes = [self.block_tokens[b] for b in bids]
            # a usage-only request (no content in its log) was not counted: unknown, not zero
            content = sum(sizes) if request.artifacts else None
            if prefix:
                parts = (family, "unlogged prefix", request.source.path, request.session_id, str(prefix))
                lead = identity.int64_id(identity.BLOCK_V, parts)
                bids, sizes = [lead, *bids], [prefix, *sizes]
            chains = self._chain_ids(bids)
            counted = None if content is None else content + prefix
            granularity = 0
            snapshot = (
                identity.snapshot_id_of_hashes([self._artifact_hash(a) for a in request.artifacts])
                if request.artifacts
                else ""
            )
            end = prefix
            for artifact, size in zip(prep.artifacts, sizes[1:] if prefix else sizes, strict=True):
                end += size
                if artifact.cache_control:
                    breakpoints.append(end)
                    ttls.append(artifact.cache_control)
            if prep.output_bids:
                output_chain = self._chain_ids(prep.output_bids, chains[-1] if chains else 0)[-1]
            tokenizer = prep.tokenizer
            if request.usage.prompt_tokens is not None and content is not None:
                pair = self.calibration.setdefault((tokenizer.id, request.model), [0, 0, 0])
                pair[0] += content
                pair[1] += request.usage.prompt_tokens
                pair[2] += 1
        target = identity.kv_target(request, family)
        keys = _target_keys(target)
        usage = request.usage
        row = {
            "trace_id": request.trace_id,
            "rid": rid,
            "seq": seq,
            "source_path": request.source.path,
            "source_line": request.source.line,
            "format": request.format,
            "timestamp": request.timestamp,
            "provider": request.provider,
            "model": request.model,
            "model_revision": request.model_revision,
            "engine": request.engine,
            "region": request.region,
            "quantization": request.quantization,
            "tenant": request.tenant,
            "session_id": request.session_id,
            "alias": request.alias,
            "alias_release": request.alias_release,
            "request_format": request.request_format,
            "snapshot_id": snapshot,
            "materialization_key": identity.materialization_key(family, chains[-1] if chains else 0),
            "materialization_family": family,
            "kv_compatibility_key": keys[0],
            "target_key": keys[1],
            "tokenizer": tokenizer.id if tokenizer else "",
            "tokenizer_exact": bool(tokenizer and tokenizer.exact and not (prep and prep.estimated)),
            "block_granularity": granularity,
            "n_blocks": len(bids),
            "prompt_tokens_counted": counted,
            "prompt_tokens_reported": usage.prompt_tokens,
            "cached_tokens_reported": usage.cached_tokens,
            "cache_write_tokens_reported": usage.cache_write_tokens,
            "output_tokens_reported": usage.output_tokens,
            "usage_family": usage.family,
            "miss_reason": request.miss_reason,
            "missed_tokens_reported": request.missed_tokens,
            "latency_ms": request.latency_ms,
            "breakpoints": breakpoints,
            "breakpoint_ttls": ttls,
            "output_chain": output_chain,
            "unlogged_prefix_tokens": prefix or None,
        }
        for name, value in row.items():
            out[name].append(value)
        return rid, bids, chains, sizes


@functools.lru_cache(maxsize=4096)
def _target_keys(target: identity.KvTarget) -> tuple[str, str]:
    """A trace has few distinct targets: their two keys are hashed once each."""
    return identity.kv_compatibility_key(target), identity.target_key(target)


# What tells two calls apart when a log gives both the same trace id: the same call logged twice (a resumed
# Claude Code session copies its earlier lines) has the same model and usage; two different calls rarely do.
Fingerprint = tuple[str, int | None, int | None, int | None]


def _fingerprint(request: Request) -> Fingerprint:
    usage = request.usage
    return (request.model, usage.prompt_tokens, usage.cached_tokens, usage.output_tokens)


@dataclass
class _Known:
    """What the dataset already holds: blocks, trace ids (with each content call's fingerprint and where it was
    read), and the last sequence number, so that re-ingest adds nothing and a clash is named."""

    blocks: dict[int, int] = field(default_factory=dict)
    traces: set[str] = field(default_factory=set)
    calls: dict[str, tuple[Fingerprint, str]] = field(default_factory=dict)
    seq: int = 0


def _existing(root: Path | str, manifest: Manifest) -> _Known:
    from zumik_cli.dataset.store import Dataset

    if not manifest.parts:
        return _Known()
    con = Dataset(root).connect()
    blocks = dict(con.execute("SELECT block_id, n_tokens FROM blocks").fetchall())
    traces = {row[0] for row in con.execute("SELECT trace_id FROM requests").fetchall()}
    calls = {
        trace: ((model, prompt, cached, output), f"{path}:{line}")
        for trace, model, prompt, cached, output, path, line in con.execute(
            "SELECT trace_id, model, prompt_tokens_reported, cached_tokens_reported, output_tokens_reported, "
            "source_path, source_line FROM requests WHERE block_granularity = 0"
        ).fetchall()
    }
    seq = con.execute("SELECT coalesce(max(seq), 0) FROM requests").fetchone()
    return _Known(blocks, traces, calls, int(seq[0]) if seq else 0)


def _already_read(digest: str, earlier: dict[str, dict[str, Any]], forced: str | None) -> bool:
    """An input whose bytes are in the manifest is not read again, unless a format is forced on one that gave no
    request under another (or no) format: forcing the format is how a file quarantined whole gets read."""
    entry = earlier.get(digest)
    if entry is None:
        return False
    return not (forced and not entry.get("requests") and entry.get("format") != forced)


PROGRESS_STEPS = 100  # progress moves at most this many times a file, as its records are read


def _items(
    sources: list[Input | Quarantined],
    forced: str | None,
    inputs: list[dict[str, Any]],
    progress: Progress | None,
) -> Iterator[Request | Quarantined | HashColumns]:
    total = sum(s.size for s in sources if isinstance(s, Input))
    done = 0
    detected = 0
    refused: list[str] = []  # why each input was refused whole, for the error when none could be read
    for source in sources:
        if isinstance(source, Quarantined):  # a stream that could not be read at all
            inputs.append({"path": source.source.path, "sha256": None, "bytes": 0, "format": None, "requests": 0})
            inputs[-1]["quarantined"] = 1
            refused.append(f"{source.source.path}: {source.reason}")
            yield source
            continue
        sample = readers.sample_file(source.path, source.name, source.stem)
        entry: dict[str, Any] = {
            "path": source.name,
            "sha256": source.sha256,
            "bytes": source.size,
            "format": None,
            "requests": 0,
            "quarantined": 0,
        }
        if source.stream:
            entry["stream"] = True
        inputs.append(entry)
        if isinstance(sample, Quarantined):
            entry["quarantined"] += 1
            refused.append(f"{source.name}: {sample.reason}")
            yield sample
        else:
            reader = readers.detect(sample, forced)
            if reader is None:
                entry["quarantined"] += 1
                tried = ", ".join(readers.load_formats())
                refused.append(f"{source.name}: JSON, but in no format zumik knows")
                yield Quarantined(
                    Source(source.name, 0), f"unknown format (tried: {tried}); pass --format to force one"
                )
            else:
                detected += 1
                entry["format"] = reader.name
                size, in_file, shown = source.size, source.lines, 0
                for item in readers.read_all(reader, sample):
                    if isinstance(item, HashColumns):
                        entry["requests"] += len(item)
                    else:
                        entry["quarantined" if isinstance(item, Quarantined) else "requests"] += 1
                        at = size * min(item.source.line, in_file) // in_file if in_file else 0
                        if progress and at - shown >= size // PROGRESS_STEPS:
                            shown = at
                            progress(done + at, total)
                    yield item
        done += source.size
        if progress:
            progress(done, total)
    if inputs and not detected:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise InputError(
            f"no input could be read as a trace: {refused[0]}{more}; check the files, or force one of the formats "
            "of `zumik formats` with --format"
        )


def ingest(
    paths: Iterable[Path | str],
    data: Path | str,
    *,
    format: str | None = None,
    tokenizer: str | None = None,
    progress: Progress | None = None,
    batch_size: int = BATCH_REQUESTS,
    stream_wait: float = 30.0,
    unlogged_prefix: bool = True,
) -> IngestSummary:
    """Ingest trace files, folders or streams (``-`` is stdin) into the dataset at ``data`` (created if missing).

    Inputs and ``data`` may be URIs on object storage (``s3://bucket/prefix``: see ``dataset.object_store``).

    A stream (stdin, a pipe, a FIFO) is read once; one that sends nothing within ``stream_wait`` seconds is
    quarantined, never waited on forever. Without ``unlogged_prefix``, what a Claude Code log leaves out is not
    modelled as a leading block, and the waterfall scales the counted content up to the reported total instead."""
    paths = [local_or_uri(p) for p in paths]
    data = local_or_uri(data)
    if format is not None and format not in readers.load_formats():
        raise InputError(f"unknown format {format!r}; known formats: {', '.join(readers.load_formats())}")
    if tokenizer is not None:
        load_tokenizer(tokenizer)  # a tokenizer that cannot load fails before the dataset is touched
    if isinstance(data, Path) and data.exists() and not data.is_dir():
        raise DatasetError(f"{data} is a file, not a dataset folder: pass a folder to --data (created if missing)")
    found = find_inputs(paths)
    size_arrow_pools()
    with _removed_on_failure(data), writer_lock(data):
        manifest = manifest_or_new(data)
        remove_orphans(data, manifest)
        known = _existing(data, manifest)
        run = uuid.uuid4().hex[:12]
        with staging_folder(data, run) as staging:
            sources: list[Input | Quarantined] = [regular_input(path) for path in found.files]
            for number, stored in enumerate(found.objects):
                (staging / "objects").mkdir(exist_ok=True)
                name = stored.path.rsplit("/", 1)[-1]
                sources.append(fetch_object(stored, staging / "objects" / f"{number}-{name}"))
            for number, stream in enumerate(found.streams):
                (staging / "streams").mkdir(exist_ok=True)
                sources.append(spool_stream(stream, staging / "streams" / str(number), stream_wait))
            return _ingest_run(
                sources,
                found.not_read,
                data,
                manifest,
                staging,
                run,
                format,
                tokenizer,
                progress,
                batch_size,
                known,
                unlogged_prefix,
            )


@contextlib.contextmanager
def _removed_on_failure(data: Path | str) -> Iterator[None]:
    """A failed first ingest leaves no folder behind: the folders it created go again if they hold nothing but the
    writer lock (a dataset another writer published meanwhile has its manifest, and stays). On object storage a
    failed ingest has published nothing and uploaded nothing it did not delete: there are no folders."""
    if isinstance(data, str):
        yield
        return
    created = [folder for folder in (data, *data.parents) if not folder.exists()]
    try:
        yield
    except BaseException:
        for folder in created:
            with contextlib.suppress(OSError):
                if {entry.name for entry in folder.iterdir()} <= {".lock"}:
                    (folder / ".lock").unlink(missing_ok=True)
                    folder.rmdir()
        raise


def _ingest_run(
    sources: list[Input | Quarantined],
    not_read: list[dict[str, str]],
    data: Path | str,
    manifest: Manifest,
    staging: Path,
    run: str,
    format: str | None,
    tokenizer: str | None,
    progress: Progress | None,
    batch_size: int,
    known: _Known,
    unlogged_prefix: bool,
) -> IngestSummary:
    from zumik_cli.ingest.rows import ChainCache, KnownTraces, hash_rows  # compiled kernels: numba loads with them

    writer = _PartWriter(staging, run)
    chain_cache = ChainCache()
    materializer = _Materializer(tokenizer, known.blocks)
    materializer.unlogged_prefix = unlogged_prefix
    known_traces, seq = KnownTraces(known.traces), known.seq
    inputs: list[dict[str, Any]] = []
    quarantine: list[dict[str, Any]] = []
    formats: Counter[str] = Counter()
    counts = {"requests": 0, "duplicates": 0, "prompt": 0, "cached": 0, "tokens": 0, "blocks": 0}
    batch: list[Request] = []
    pending: list[_Pending] = []
    began = time.perf_counter()

    def write(rows: tuple[Columns, ...]) -> None:
        started = time.perf_counter()
        writer.write(dict(zip(("requests", "request_blocks", "blocks", "tokens"), rows, strict=True)))
        counts["blocks"] += len(rows[2]["block_id"])
        counted = rows[0]["prompt_tokens_counted"]
        if isinstance(counted, pa.Array):
            counts["tokens"] += int(pa.compute.sum(counted).as_py() or 0)
        else:
            counts["tokens"] += sum(c or 0 for c in counted)
        materializer.timings["write"] += time.perf_counter() - started

    def drain(keep: int) -> None:
        while len(pending) > keep:
            write(materializer.finish(pending.pop(0)))

    def flush() -> None:
        # the batch's new blocks tokenize on the worker while the next batch is read; one batch in flight
        nonlocal seq
        drain(1)
        pending.append(materializer.start(list(batch), seq + 1))
        seq += len(batch)
        batch.clear()

    earlier = {entry["sha256"]: entry for entry in manifest.inputs if entry.get("sha256")}
    known_inputs = [s for s in sources if isinstance(s, Input) and s.sha256 in earlier]
    skipped = {s.name for s in known_inputs if _already_read(s.sha256, earlier, format)}
    reread = {s.sha256 for s in known_inputs if s.name not in skipped}
    unread = [s for s in sources if not (isinstance(s, Input) and s.name in skipped)]
    try:
        for item in _items(unread, format, inputs, progress):
            if isinstance(item, Quarantined):
                quarantine.append(
                    {
                        "file": item.source.path,
                        "line": item.source.line,
                        "reason": redact(item.reason),  # a reason may quote a logged error message
                        "excerpt": item.excerpt,
                    }
                )
                continue
            if isinstance(item, HashColumns):
                if batch:
                    flush()
                drain(0)
                started = time.perf_counter()
                rows = hash_rows(item, seq + 1, known_traces, chain_cache)
                materializer.timings["identify"] += time.perf_counter() - started
                kept = len(rows[0]["rid"])
                counts["duplicates"] += len(item) - kept
                counts["requests"] += kept
                counts["prompt"] += int(pa.compute.sum(rows[0]["prompt_tokens_reported"]).as_py() or 0)
                formats[item.format] += kept
                seq += kept
                write(rows)
                continue
            if item.trace_id in known_traces:
                clash = known.calls.get(item.trace_id)
                if clash is not None and clash[0] != _fingerprint(item):
                    quarantine.append(
                        {
                            "file": item.source.path,
                            "line": item.source.line,
                            "reason": f"trace id {item.trace_id[:80]!r} was already read from {clash[1][:200]} for "
                            "another call (other model or usage): this one is left out, a trace id names one call",
                            "excerpt": "",
                        }
                    )
                else:
                    counts["duplicates"] += 1
                continue
            known_traces.add(item.trace_id)
            known.calls[item.trace_id] = (_fingerprint(item), f"{item.source.path}:{item.source.line}")
            formats[item.format] += 1
            counts["requests"] += 1
            counts["prompt"] += item.usage.prompt_tokens or 0
            counts["cached"] += item.usage.cached_tokens or 0
            batch.append(item)
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
        drain(0)
        if materializer.held:
            write(materializer.release())
    except BaseException:
        writer.abandon()
        raise
    finally:
        materializer.close()
    new_parts = writer.close()
    if quarantine:
        (staging / "quarantine").mkdir(exist_ok=True)
        (staging / "quarantine" / f"part-{run}.jsonl").write_text(
            "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in quarantine)
        )
        new_parts.append(f"quarantine/part-{run}.jsonl")
    for part in new_parts:
        table = part.split("/", 1)[0]
        if table == "quarantine":
            manifest.quarantine.append(part)
        else:
            manifest.parts.setdefault(table, []).append(part)
    # an input read again under a forced format replaces the entry that read nothing from it
    manifest.inputs[:] = [e for e in manifest.inputs if e.get("sha256") not in reread]
    manifest.inputs.extend(inputs)
    calibration = [
        {
            "tokenizer": tok,
            "model": model,
            "requests": n,
            "counted": counted,
            "reported": reported,
            "ratio": round(reported / counted, 6) if counted else None,
        }
        for (tok, model), (counted, reported, n) in sorted(materializer.calibration.items())
    ]
    manifest.extra["calibration"] = _merge_calibration(manifest.extra.get("calibration", []), calibration)
    publish_staged(data, staging, new_parts, manifest)
    timings = {k: round(v, 3) for k, v in sorted(materializer.timings.items()) if k != "tokenized_chars"}
    timings["total"] = round(time.perf_counter() - began, 3)
    return IngestSummary(
        dataset=str(data),
        requests=counts["requests"],
        quarantined=len(quarantine),
        duplicates_skipped=counts["duplicates"],
        inputs_skipped=sorted(skipped),
        prompt_tokens_reported=counts["prompt"],
        cached_tokens_reported=counts["cached"],
        formats=dict(formats),
        unique_blocks=counts["blocks"],
        tokens_counted=counts["tokens"],
        calibration=calibration,
        notes=sorted(materializer.notes | _media_notes(materializer.unsized)) + _prefix_notes(materializer.prefixes),
        not_read=not_read,
        tokenized_chars=int(materializer.timings["tokenized_chars"]),
        timings=timings,
    )


def _media_notes(unsized: set[str]) -> set[str]:
    if not unsized:
        return set()
    return {
        f"{len(unsized)} distinct images or documents had no size to read (documents, images given by URL): counted "
        "at their rules pack's nominal figure, never as their encoded text"
    }


def _prefix_notes(prefixes: list[dict[str, Any]]) -> list[str]:
    if not prefixes:
        return []
    tokens = sorted(p["tokens"] for p in prefixes)
    return [
        f"{len(prefixes)} sessions' logs leave out the system prompt and tool definitions: each call starts with one "
        f"estimated block for them ({tokens[0]:,} to {tokens[-1]:,} tokens a session; {UNLOGGED_PREFIX_METHOD})"
    ]


def _merge_calibration(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in [*old, *new]:
        key = (entry["tokenizer"], entry["model"])
        acc = merged.setdefault(key, {"tokenizer": key[0], "model": key[1], "requests": 0, "counted": 0, "reported": 0})
        for name in ("requests", "counted", "reported"):
            acc[name] += entry[name]
    for acc in merged.values():
        acc["ratio"] = round(acc["reported"] / acc["counted"], 6) if acc["counted"] else None
    return [merged[k] for k in sorted(merged)]

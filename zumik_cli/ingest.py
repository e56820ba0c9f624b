"""Ingest: read traces, compute the three identities, tokenize unique blocks once, write the dataset.

Streaming in batches with bounded memory (what grows is the set of unique blocks, not the input); a record that
cannot be read is quarantined with file, line and reason; re-ingesting an input already in the manifest adds
nothing; new parts are published by one atomic manifest replace.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from . import identity, readers
from .dataset import Manifest, read_manifest, remove_orphans, write_manifest, writer_lock
from .errors import InputError
from .model import Quarantined, Request, Source
from .schema import BLOCKS, REQUEST_BLOCKS, REQUESTS, TABLES, TOKENS
from .tokenization import Tokenizer, tokenizer_for_model

BATCH_REQUESTS = 2000
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

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _PartWriter:
    """One Parquet part per table per ingest run, written batch by batch under the staging folder."""

    def __init__(self, staging: Path, run: str) -> None:
        self.staging, self.run = staging, run
        self.writers: dict[str, pq.ParquetWriter] = {}

    def write(self, table: str, rows: dict[str, list[Any]]) -> None:
        schema = TABLES[table]
        if not rows or not next(iter(rows.values())):
            return
        batch = pa.table({name: pa.array(rows[name], type=schema.field(name).type) for name in schema.names})
        if table not in self.writers:
            (self.staging / table).mkdir(parents=True, exist_ok=True)
            self.writers[table] = pq.ParquetWriter(
                self.staging / table / f"part-{self.run}.parquet", schema, compression="zstd"
            )
        self.writers[table].write_table(batch)

    def close(self) -> list[str]:
        for writer in self.writers.values():
            writer.close()
        return [f"{table}/part-{self.run}.parquet" for table in self.writers]


def _columns(schema: pa.Schema) -> dict[str, list[Any]]:
    return {name: [] for name in schema.names}


class _Materializer:
    """Turns canonical requests into rows: blocks are content-addressed and tokenized once per dataset."""

    def __init__(self, tokenizer_override: str | None, known_blocks: dict[int, int]) -> None:
        self.override = tokenizer_override
        self.block_tokens = known_blocks
        self.notes: set[str] = set()
        self.calibration: dict[tuple[str, str], list[int]] = {}

    def tokenizer(self, model: str) -> Tokenizer:
        tokenizer = tokenizer_for_model(model, self.override)
        if tokenizer.note:
            self.notes.add(tokenizer.note)
        return tokenizer

    def rows(self, batch: list[Request], seq0: int) -> tuple[dict[str, list[Any]], ...]:
        requests, manifest, blocks, tokens = (_columns(s) for s in (REQUESTS, REQUEST_BLOCKS, BLOCKS, TOKENS))
        prepared = [self._prepare(r) for r in batch]
        self._tokenize_new(prepared, blocks, tokens)
        for offset, (request, prep) in enumerate(zip(batch, prepared, strict=True)):
            self._request_rows(request, prep, seq0 + offset, requests, manifest)
        return requests, manifest, blocks, tokens

    def _prepare(self, request: Request) -> dict[str, Any]:
        if request.hash_blocks is not None:
            family = f"hashid:{request.hash_blocks.scope}:{request.hash_blocks.block_size}"
            return {"family": family, "tokenizer": None, "texts": [], "artifacts": [], "bids": []}
        tokenizer = self.tokenizer(request.model)
        family = identity.materialization_family(tokenizer.id, request.request_format)
        artifacts = identity.materialization_order(request.artifacts, request.request_format)
        texts = [identity.render(a, request.request_format) for a in artifacts]
        outputs = [identity.render(a, request.request_format) for a in request.output]
        return {
            "family": family,
            "tokenizer": tokenizer,
            "texts": texts,
            "artifacts": artifacts,
            "bids": [identity.block_id(family, t) for t in texts],
            "output_bids": [identity.block_id(family, t) for t in outputs],
        }

    def _tokenize_new(
        self, prepared: list[dict[str, Any]], blocks: dict[str, list[Any]], tokens: dict[str, list[Any]]
    ) -> None:
        pending: dict[str, dict[int, tuple[str, Any, str]]] = {}
        tokenizers: dict[str, Tokenizer] = {}
        for prep in prepared:
            if prep["tokenizer"] is None:
                continue
            tokenizers[prep["tokenizer"].id] = prep["tokenizer"]
            bucket = pending.setdefault(prep["tokenizer"].id, {})
            for bid, text, artifact in zip(prep["bids"], prep["texts"], prep["artifacts"], strict=True):
                if bid not in self.block_tokens and bid not in bucket:
                    bucket[bid] = (text, artifact, prep["family"])
        for tokenizer_id, bucket in pending.items():
            items = list(bucket.items())
            encoded = tokenizers[tokenizer_id].encode_batch([text for _, (text, _, _) in items])
            for (bid, (text, artifact, family)), ids in zip(items, encoded, strict=True):
                self.block_tokens[bid] = len(ids)
                for name, value in (
                    ("block_id", bid),
                    ("family", family),
                    ("kind", artifact.kind),
                    ("role", artifact.role),
                    ("name", artifact.name),
                    ("artifact_hash", identity.artifact_hash(artifact)),
                    ("n_tokens", len(ids)),
                    ("text", text),
                ):
                    blocks[name].append(value)
                tokens["block_id"].append(bid)
                tokens["token_ids"].append(ids)

    def _request_rows(
        self,
        request: Request,
        prep: dict[str, Any],
        seq: int,
        out: dict[str, list[Any]],
        manifest: dict[str, list[Any]],
    ) -> None:
        rid = identity.int64_id(identity.TRACE_V, (request.trace_id,))
        family = prep["family"]
        breakpoints: list[int] = []
        ttls: list[str] = []
        output_chain = None
        if request.hash_blocks is not None:
            hb = request.hash_blocks
            chains = [identity.int64_id(identity.CHAIN_V, (hb.scope, str(h))) for h in hb.hash_ids]
            sizes = [max(0, min(hb.block_size, hb.input_length - i * hb.block_size)) for i in range(len(chains))]
            bids = chains
            counted = None
            granularity = hb.block_size
            snapshot = ""
        else:
            bids = prep["bids"]
            chains = identity.chain_ids(bids)
            sizes = [self.block_tokens[b] for b in bids]
            # a usage-only request (no content in its log) was not counted: unknown, not zero
            counted = sum(sizes) if request.artifacts else None
            granularity = 0
            snapshot = identity.snapshot_id(request.artifacts) if request.artifacts else ""
            end = 0
            for artifact, size in zip(prep["artifacts"], sizes, strict=True):
                end += size
                if artifact.cache_control:
                    breakpoints.append(end)
                    ttls.append(artifact.cache_control)
            if prep["output_bids"]:
                output_chain = identity.chain_ids(prep["output_bids"], chains[-1] if chains else 0)[-1]
            tokenizer = prep["tokenizer"]
            if request.usage.prompt_tokens is not None and counted is not None:
                pair = self.calibration.setdefault((tokenizer.id, request.model), [0, 0, 0])
                pair[0] += counted
                pair[1] += request.usage.prompt_tokens
                pair[2] += 1
        target = identity.kv_target(request, family)
        end_token = 0
        parent = identity.ROOT_CHAIN
        for pos, (bid, chain, size) in enumerate(zip(bids, chains, sizes, strict=True)):
            end_token += size
            for name, value in (
                ("rid", rid),
                ("pos", pos),
                ("block_id", bid),
                ("chain", chain),
                ("parent", parent),
                ("tokens", size),
                ("end_token", end_token),
            ):
                manifest[name].append(value)
            parent = chain
        usage = request.usage
        tokenizer = prep["tokenizer"]
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
            "kv_compatibility_key": identity.kv_compatibility_key(target),
            "target_key": identity.target_key(target),
            "tokenizer": tokenizer.id if tokenizer else "",
            "tokenizer_exact": bool(tokenizer and tokenizer.exact),
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
        }
        for name, value in row.items():
            out[name].append(value)


def _existing(root: Path, manifest: Manifest) -> tuple[dict[int, int], set[str], int]:
    """Blocks, trace ids and the last sequence number already in the dataset, so re-ingest adds nothing."""
    from .dataset import Dataset

    if not manifest.parts:
        return {}, set(), 0
    con = Dataset(root).connect()
    blocks = dict(con.execute("SELECT block_id, n_tokens FROM blocks").fetchall())
    traces = {row[0] for row in con.execute("SELECT trace_id FROM requests").fetchall()}
    seq = con.execute("SELECT coalesce(max(seq), 0) FROM requests").fetchone()
    return blocks, traces, int(seq[0]) if seq else 0


def _items(
    paths: list[Path], forced: str | None, skip: set[str], inputs: list[dict[str, Any]], progress: Progress | None
) -> Iterator[Request | Quarantined]:
    files = list(readers.iter_files(paths))
    total = sum(f.stat().st_size for f in files)
    done = 0
    detected = 0
    for path in files:
        digest = file_digest(path)
        size = path.stat().st_size
        if digest in skip:
            done += size
            if progress:
                progress(done, total)
            continue
        sample = readers.sample_file(path)
        entry: dict[str, Any] = {
            "path": str(path),
            "sha256": digest,
            "bytes": size,
            "format": None,
            "requests": 0,
            "quarantined": 0,
        }
        inputs.append(entry)
        if isinstance(sample, Quarantined):
            entry["quarantined"] += 1
            yield sample
        else:
            reader = readers.detect(sample, forced)
            if reader is None:
                entry["quarantined"] += 1
                tried = ", ".join(readers.load_formats())
                yield Quarantined(Source(str(path), 0), f"unknown format (tried: {tried}); pass --format to force one")
            else:
                detected += 1
                entry["format"] = reader.name
                for item in reader.read(sample):
                    entry["quarantined" if isinstance(item, Quarantined) else "requests"] += 1
                    yield item
        done += size
        if progress:
            progress(done, total)
    if inputs and not detected:
        tried = ", ".join(readers.load_formats())
        raise InputError(
            f"no input could be read as a known trace format (tried: {tried}); check the files or pass --format"
        )


def ingest(
    paths: Iterable[Path],
    data: Path,
    *,
    format: str | None = None,
    tokenizer: str | None = None,
    progress: Progress | None = None,
    batch_size: int = BATCH_REQUESTS,
) -> IngestSummary:
    """Ingest trace files or folders into the dataset at ``data`` (created if missing)."""
    paths = [Path(p) for p in paths]
    data = Path(data)
    with writer_lock(data):
        manifest = read_manifest(data) if (data / "manifest.json").exists() else Manifest()
        remove_orphans(data, manifest)
        known_blocks, known_traces, seq = _existing(data, manifest)
        already = {entry["sha256"] for entry in manifest.inputs}
        run = uuid.uuid4().hex[:12]
        staging = data / f".staging-{run}"
        staging.mkdir(parents=True)
        try:
            return _ingest_run(
                paths,
                data,
                manifest,
                staging,
                run,
                format,
                tokenizer,
                progress,
                batch_size,
                known_blocks,
                known_traces,
                seq,
                already,
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _ingest_run(
    paths: list[Path],
    data: Path,
    manifest: Manifest,
    staging: Path,
    run: str,
    format: str | None,
    tokenizer: str | None,
    progress: Progress | None,
    batch_size: int,
    known_blocks: dict[int, int],
    known_traces: set[str],
    seq: int,
    already: set[str],
) -> IngestSummary:
    writer = _PartWriter(staging, run)
    materializer = _Materializer(tokenizer, known_blocks)
    inputs: list[dict[str, Any]] = []
    quarantine: list[dict[str, Any]] = []
    formats: Counter[str] = Counter()
    counts = {"requests": 0, "duplicates": 0, "prompt": 0, "cached": 0, "tokens": 0, "blocks": 0}
    batch: list[Request] = []

    def flush() -> None:
        nonlocal seq
        rows = materializer.rows(batch, seq + 1)
        seq += len(batch)
        for table, columns in zip(("requests", "request_blocks", "blocks", "tokens"), rows, strict=True):
            writer.write(table, columns)
        counts["blocks"] += len(rows[2]["block_id"])
        counts["tokens"] += sum(c or 0 for c in rows[0]["prompt_tokens_counted"])
        batch.clear()

    skipped = [str(p) for p in readers.iter_files(paths) if file_digest(p) in already]
    for item in _items(paths, format, already, inputs, progress):
        if isinstance(item, Quarantined):
            quarantine.append(
                {"file": item.source.path, "line": item.source.line, "reason": item.reason, "excerpt": item.excerpt}
            )
            continue
        if item.trace_id in known_traces:
            counts["duplicates"] += 1
            continue
        known_traces.add(item.trace_id)
        formats[item.format] += 1
        counts["requests"] += 1
        counts["prompt"] += item.usage.prompt_tokens or 0
        counts["cached"] += item.usage.cached_tokens or 0
        batch.append(item)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    new_parts = writer.close()
    if quarantine:
        (staging / "quarantine").mkdir(exist_ok=True)
        (staging / "quarantine" / f"part-{run}.jsonl").write_text(
            "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in quarantine)
        )
        new_parts.append(f"quarantine/part-{run}.jsonl")
    for part in new_parts:
        (data / part).parent.mkdir(exist_ok=True)
        os.replace(staging / part, data / part)
    for part in new_parts:
        table = part.split("/", 1)[0]
        if table == "quarantine":
            manifest.quarantine.append(part)
        else:
            manifest.parts.setdefault(table, []).append(part)
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
    write_manifest(data, manifest)
    return IngestSummary(
        dataset=str(data),
        requests=counts["requests"],
        quarantined=len(quarantine),
        duplicates_skipped=counts["duplicates"],
        inputs_skipped=skipped,
        prompt_tokens_reported=counts["prompt"],
        cached_tokens_reported=counts["cached"],
        formats=dict(formats),
        unique_blocks=counts["blocks"],
        tokens_counted=counts["tokens"],
        calibration=calibration,
        notes=sorted(materializer.notes),
    )


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

"""Ingest on Spark (`zumik ingest --engine spark`): trace files split across executors, the dataset published once.

One task a file, so a session's records (which every supported format keeps in one file) stay together. Each task
runs zumik's own ``ingest`` on its file into a scratch dataset of its own (the same readers, identities and
tokenizers as the embedded engine), then moves the parts into the dataset's staging folder: requests and
request_blocks as they are, with ``seq`` lifted by the file's index (``index << 32``: the request order breaks a
timestamp tie by file, then by line, as one embedded run over the same files does), blocks and tokens to be
deduplicated. Blocks are content-addressed, so the same block read by two tasks is one row: a shuffle by
``block_id`` brings its copies together and each partition writes its distinct blocks. The driver then merges the
tasks' manifests and publishes every part with one manifest write (``dataset.store.publish_staged``), under the
writer lock: a failed task, a lost executor or a clash leaves the dataset as it was, never half-written.

The staging folder must be one path every executor and the driver reach (a local disk for ``local[*]`` or a
cluster on one machine, a shared mount otherwise).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from zumik_cli.core.errors import DatasetError, InputError, StorageError, ZumikError
from zumik_cli.core.storage import local_or_uri
from zumik_cli.dataset import spark
from zumik_cli.dataset.schema import TABLES
from zumik_cli.dataset.store import Manifest, publish_staged, read_manifest, writer_lock
from zumik_cli.ingest.pipeline import IngestSummary, _merge_calibration, ingest
from zumik_cli.readers.inputs import find_inputs

SEQ_SHIFT = 32  # a file's requests take seq (index << 32) + their own: 4 billion a file, 2 billion files
DEDUPLICATED = ("blocks", "tokens")
TASK_SCHEMA = "idx BIGINT, summary STRING, manifest STRING"
WRITTEN_SCHEMA = "table STRING, part STRING, rows BIGINT"


def ingest_spark(
    paths: Sequence[Path | str], data: Path | str, *, format: str | None = None, tokenizer: str | None = None
) -> IngestSummary:
    """Ingest ``paths`` into a new dataset at ``data`` on the Spark cluster ``spark.session()`` connects to.

    Paths and ``data`` are local (``file://`` URIs too): the executors write their parts into the dataset's
    staging folder, which must be one path every node reaches (see docs/scale.md)."""
    located = [local_or_uri(p) for p in [*paths, data]]
    remote = next((str(p) for p in located if isinstance(p, str)), None)
    if remote is not None:
        raise StorageError(
            f"--engine spark reads and writes a shared file system, not {remote}: ingest it with the embedded "
            "engine (drop --engine spark), or mount the bucket on every node and pass the mount's path"
        )
    found = find_inputs(located[:-1])
    if found.streams:
        raise InputError("--engine spark reads files, not streams or stdin: save the stream to a file first")
    if not found.files:
        raise InputError("no trace files to ingest: pass files or folders that hold them")
    data = Path(located[-1])
    if (data / "manifest.json").exists():
        raise DatasetError(
            f"--engine spark ingests into a new dataset, and {data} has one: pass a new --data folder, or add "
            "files to this one with the embedded engine"
        )
    session = spark.session()
    data.mkdir(parents=True, exist_ok=True)
    with writer_lock(data):
        run = uuid.uuid4().hex[:12]
        staging = data / f".staging-{run}"
        staging.mkdir()
        try:
            with spark.jobs("ingest"):
                files = [str(p) for p in found.files]
                return _run(session, files, data, staging, run, format, tokenizer, found.not_read)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _run(
    session: Any,
    files: list[str],
    data: Path,
    staging: Path,
    run: str,
    format: str | None,
    tokenizer: str | None,
    not_read: list[dict[str, str]],
) -> IngestSummary:
    listing = session.createDataFrame([(i, f) for i, f in enumerate(files)], "idx INT, path STRING")
    task = _file_task(str(staging), run, format, tokenizer)
    results = sorted(listing.repartition(len(files), "idx").mapInArrow(task, TASK_SCHEMA).collect())
    summaries = [json.loads(r.summary) for r in results]
    manifests = [json.loads(r.manifest) for r in results]
    parts: dict[str, list[str]] = {}
    for i in range(len(files)):
        for table in ("requests", "request_blocks"):
            if (staging / table / f"part-{run}-{i}.parquet").exists():
                parts.setdefault(table, []).append(f"{table}/part-{run}-{i}.parquet")
    _refuse_repeated_traces(session, staging, parts.get("requests", []))
    unique_blocks = 0
    for table in DEDUPLICATED:
        written = _deduplicate(session, staging, run, table)
        parts[table] = [part for part, _ in written]
        unique_blocks += sum(rows for _, rows in written) if table == "blocks" else 0
    manifest = Manifest(parts=parts)
    for i, entry in enumerate(manifests):
        manifest.inputs.extend(entry.get("inputs", []))
        manifest.extra["calibration"] = _merge_calibration(
            manifest.extra.get("calibration", []), entry.get("calibration", [])
        )
        for number, quarantined in enumerate(entry.get("quarantine", [])):
            part = f"quarantine/part-{run}-{i}-{number}.jsonl"
            (staging / "quarantine").mkdir(exist_ok=True)
            shutil.move(staging / "scratch" / str(i) / quarantined, staging / part)
            manifest.quarantine.append(part)
    publish_staged(data, staging, [p for listed in parts.values() for p in listed] + manifest.quarantine, manifest)
    return _summary(str(data), summaries, manifest, unique_blocks, not_read)


def _file_task(staging: str, run: str, format: str | None, tokenizer: str | None) -> Any:
    """The function each executor runs on its files: zumik's own ingest, then its parts moved to ``staging``."""

    def task(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for idx, path in zip(batch.column("idx").to_pylist(), batch.column("path").to_pylist(), strict=True):
                summary, manifest = _ingest_file(Path(staging), run, idx, Path(path), format, tokenizer)
                yield pa.RecordBatch.from_pydict(
                    {"idx": [idx], "summary": [json.dumps(summary)], "manifest": [json.dumps(manifest)]}
                )

    return task


def _ingest_file(
    staging: Path, run: str, idx: int, path: Path, format: str | None, tokenizer: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    scratch = staging / "scratch" / str(idx)
    with tempfile.TemporaryDirectory(prefix="zumik-spark-") as local:
        own = Path(local) / "data"
        summary = ingest([path], own, format=format, tokenizer=tokenizer)
        manifest = read_manifest(own) if (own / "manifest.json").exists() else Manifest()
        for table, listed in manifest.parts.items():
            rows = pa.concat_tables([pq.read_table(own / part, schema=TABLES[table]) for part in listed])
            if table == "requests":
                seq = rows.column("seq").to_numpy() + (idx << SEQ_SHIFT)
                rows = rows.set_column(rows.schema.get_field_index("seq"), "seq", pa.array(seq, pa.int64()))
            if table in DEDUPLICATED:
                target = staging / "shuffle" / table / f"{idx}.parquet"
            else:
                target = staging / table / f"part-{run}-{idx}.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(rows, target, compression="zstd")
        for part in manifest.quarantine:
            (scratch / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(own / part, scratch / part)
    return summary.to_json(), manifest.to_json()


def _refuse_repeated_traces(session: Any, staging: Path, parts: list[str]) -> None:
    """A trace id names one call: the embedded engine keeps its first reading, and files read apart cannot know
    which came first, so a trace id in two files stops the run before anything is published."""
    if not parts:
        return
    requests = session.read.parquet(*(str(staging / p) for p in parts))
    repeated = requests.groupBy("trace_id").count().where("count > 1").limit(1).collect()
    if repeated:
        raise ZumikError(
            f"trace id {repeated[0]['trace_id'][:80]!r} is in more than one input file: ingest these files with the "
            "embedded engine (--engine duckdb), which keeps the first"
        )


def _deduplicate(session: Any, staging: Path, run: str, table: str) -> list[tuple[str, int]]:
    """The table's rows from every task, one row a block: shuffled by ``block_id``, each partition writes its own."""
    folder = staging / "shuffle" / table
    if not folder.is_dir() or not any(folder.iterdir()):
        return []
    rows = session.read.parquet(str(folder))
    schema = TABLES[table]

    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        received = list(batches)
        if not received:
            return
        own = pa.Table.from_batches(received).select(schema.names)
        ids = own.column("block_id").to_numpy()
        _, first = _first_of_each(ids)
        own = own.take(pa.array(first)).cast(schema)
        context = TaskContext.get()
        part = f"{table}/part-{run}-{context.partitionId() if context else 0}.parquet"
        (staging / table).mkdir(parents=True, exist_ok=True)
        pq.write_table(own, staging / part, compression="zstd")
        yield pa.RecordBatch.from_pydict({"table": [table], "part": [part], "rows": [own.num_rows]})

    partitions = max(1, spark.SHUFFLE_PARTITIONS)
    written = rows.repartition(partitions, "block_id").mapInArrow(write, WRITTEN_SCHEMA).collect()
    return sorted((r.part, int(r.rows)) for r in written)


def _first_of_each(ids: Any) -> tuple[Any, Any]:
    import numpy as np

    unique, first = np.unique(ids, return_index=True)
    return unique, np.sort(first)


def _summary(
    data: str, summaries: list[dict[str, Any]], manifest: Manifest, unique_blocks: int, not_read: list[dict[str, str]]
) -> IngestSummary:
    formats: Counter[str] = Counter()
    for s in summaries:
        formats.update(s["formats"])
    return IngestSummary(
        dataset=data,
        requests=sum(s["requests"] for s in summaries),
        quarantined=sum(s["quarantined"] for s in summaries),
        duplicates_skipped=sum(s["duplicates_skipped"] for s in summaries),
        inputs_skipped=[],
        prompt_tokens_reported=sum(s["prompt_tokens_reported"] for s in summaries),
        cached_tokens_reported=sum(s["cached_tokens_reported"] for s in summaries),
        formats=dict(formats),
        unique_blocks=unique_blocks,
        tokens_counted=sum(s["tokens_counted"] for s in summaries),
        calibration=manifest.extra.get("calibration", []),
        notes=sorted({note for s in summaries for note in s["notes"]}),
        not_read=not_read,
        tokenized_chars=sum(s["tokenized_chars"] for s in summaries),
        timings={"tasks": float(len(summaries))},
    )

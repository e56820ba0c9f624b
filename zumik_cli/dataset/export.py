"""Export a dataset as an anonymised hash-id trace in the Mooncake or Alibaba Bailian shape.

Each request's token ids (the ``tokens`` of its blocks, in order) are cut into blocks of ``block_size`` tokens,
the last one partial, and every block gets a prefix-chained id: a keyed BLAKE2b of the salt, the request's
materialization family, the previous block's digest and the block's tokens. Equal ids therefore mean equal
prefixes (the property the replay tools and zumik's own hash-id readers rely on), while without the salt the
ids say nothing about the content. Ids are cut to 53 bits so that JavaScript tools read them exactly; a cut
that collides is re-derived, so two prefixes never share an id. Times are relative to the first request.
Requests are written in the order the waterfall reads the dataset (time, then ingest order), so that
``zumik ingest`` of the export gives the same eligible tokens at the export's block granularity; that figure is
returned as ``eligible_tokens``. Usage-only requests (no content) and hash-id requests (no token ids) cannot be
re-blocked and are counted as skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa

from zumik_cli.core.errors import ZumikError
from zumik_cli.dataset.schema import SESSION_KEY
from zumik_cli.dataset.store import Dataset

TARGETS = {"mooncake": 512, "bailian": 16}
ID_BITS = 53
BATCH = 1000

# a conversation is one tenant's session: another tenant's session of the same id is another conversation
REQUESTS_SQL = f"""
SELECT rid, timestamp, CASE WHEN session_id = '' THEN '' ELSE {SESSION_KEY} END AS session,
       materialization_family AS family, output_tokens_reported AS output, block_granularity > 0 AS hashid, n_blocks
FROM requests ORDER BY timestamp NULLS LAST, seq
"""

TOKENS_SQL = """
SELECT b.rid, t.token_ids FROM request_blocks b JOIN tokens t USING (block_id) JOIN batch USING (rid)
ORDER BY b.rid, b.pos
"""


@dataclass(frozen=True)
class ExportSummary:
    path: str
    target: str
    block_size: int
    salt: str
    requests: int
    blocks: int
    unique_blocks: int
    input_tokens: int
    eligible_tokens: int
    skipped_usage_only: int
    skipped_hashid: int

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _BlockIds:
    """Salted, prefix-chained block ids, unique per distinct prefix, and the prefixes seen so far."""

    def __init__(self, salt: str) -> None:
        self.key = hashlib.blake2b(salt.encode("utf-8"), digest_size=32).digest()
        self.ids: dict[bytes, int] = {}
        self.taken: set[int] = set()

    def chain(self, family: str, tokens: list[int], size: int) -> tuple[list[int], list[int], list[bool]]:
        """Ids, block sizes and whether each block's prefix was seen before, for one request's tokens."""
        ids, sizes, seen = [], [], []
        parent = family.encode("utf-8")
        for start in range(0, len(tokens), size):
            piece = tokens[start : start + size]
            digest = hashlib.blake2b(parent + array("i", piece).tobytes(), key=self.key, digest_size=16).digest()
            known = digest in self.ids
            if not known:
                self.ids[digest] = self._fresh(digest)
            ids.append(self.ids[digest])
            sizes.append(len(piece))
            seen.append(known)
            parent = digest
        return ids, sizes, seen

    def _fresh(self, digest: bytes) -> int:
        candidate, attempt = int.from_bytes(digest[:8], "little") >> (64 - ID_BITS), 0
        while candidate in self.taken:
            attempt += 1
            rehash = hashlib.blake2b(digest + attempt.to_bytes(4, "little"), digest_size=8).digest()
            candidate = int.from_bytes(rehash, "little") >> (64 - ID_BITS)
        self.taken.add(candidate)
        return candidate


def _with_tokens(con: Any, rows: list[tuple[Any, ...]]) -> Iterator[tuple[tuple[Any, ...], list[int]]]:
    """Each request row with its token ids, a batch of requests at a time (memory bounded by the batch)."""
    for start in range(0, len(rows), BATCH):
        chunk = rows[start : start + BATCH]
        con.register("batch", pa.table({"rid": pa.array([row[0] for row in chunk], pa.int64())}))
        tokens: dict[int, list[int]] = {row[0]: [] for row in chunk}
        for rid, ids in con.execute(TOKENS_SQL).fetchall():
            tokens[rid].extend(ids)
        con.unregister("batch")
        for row in chunk:
            yield row, tokens[row[0]]


class _Writer:
    """One target shape; keeps the per-session state Bailian's parent links need."""

    def __init__(self, target: str, block_size: int, stream: TextIO) -> None:
        self.target, self.block_size, self.stream = target, block_size, stream
        self.default = block_size == TARGETS[target]
        self.t0: float | None = None
        self.last_time = 0.0
        self.sessions: dict[str, tuple[int, int]] = {}
        self.count = 0

    def write(self, timestamp: float | None, session: str, ids: list[int], length: int, output: int | None) -> None:
        if timestamp is not None and self.t0 is None:
            self.t0 = timestamp
        # a request without a time keeps its place: it follows the last timed one (the waterfall puts it last)
        offset = timestamp - self.t0 if timestamp is not None and self.t0 is not None else self.last_time
        self.last_time = max(self.last_time, offset)
        record: dict[str, Any]
        if self.target == "mooncake":
            record = {"timestamp": int(round(offset * 1000)), "input_length": length, "output_length": output or 0}
        else:
            parent, turn = self.sessions.get(session, (-1, 0)) if session else (-1, 0)
            record = {
                "chat_id": self.count,
                "parent_chat_id": parent,
                "timestamp": round(offset, 3),
                "input_length": length,
                "output_length": output or 0,
                "type": "text",
                "turn": turn + 1,
            }
            if session:
                self.sessions[session] = (self.count, turn + 1)
        if not self.default:
            record["block_size"] = self.block_size
        record["hash_ids"] = ids
        self.stream.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.count += 1


def export_trace(
    dataset: Dataset, target: str, output: Path, *, block_size: int | None = None, salt: str | None = None
) -> ExportSummary:
    """Write ``dataset`` to ``output`` as a ``target`` hash-id trace; a missing salt is drawn at random."""
    if target not in TARGETS:
        raise ZumikError(f"unknown export target {target!r}: use one of {', '.join(TARGETS)}")
    size = block_size or TARGETS[target]
    if size < 1:
        raise ZumikError(f"--block-size must be at least 1, not {size}")
    salt = salt if salt is not None else secrets.token_hex(16)
    con = dataset.connect()
    rows = con.execute(REQUESTS_SQL).fetchall()
    content = [r for r in rows if not r[5] and r[6] > 0]
    skipped_hashid = sum(1 for r in rows if r[5])
    skipped_usage = sum(1 for r in rows if not r[5] and r[6] == 0)
    ids = _BlockIds(salt)
    totals = {"blocks": 0, "input": 0, "eligible": 0}
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            writer = _Writer(target, size, handle)
            for (_, timestamp, session, family, out_tokens, _, _), tokens in _with_tokens(con, content):
                block_ids, sizes, seen = ids.chain(family, tokens, size)
                leading = next((i for i, known in enumerate(seen) if not known), len(seen))
                totals["eligible"] += sum(sizes[:leading])
                totals["blocks"] += len(block_ids)
                totals["input"] += len(tokens)
                writer.write(timestamp, session or "", block_ids, len(tokens), out_tokens)
        os.replace(staging, output)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return ExportSummary(
        path=str(output),
        target=target,
        block_size=size,
        salt=salt,
        requests=writer.count,
        blocks=totals["blocks"],
        unique_blocks=len(ids.ids),
        input_tokens=totals["input"],
        eligible_tokens=totals["eligible"],
        skipped_usage_only=skipped_usage,
        skipped_hashid=skipped_hashid,
    )

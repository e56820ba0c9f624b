"""The workload a simulation replays: every request in time order with its prefix chain, streamed from DuckDB.

The order is the waterfall's (timestamp, then ingest sequence); each request carries its blocks' chain ids and
end offsets from ``request_blocks``, so the simulated caches reuse zumik's own prefix identity.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from zumik_cli.analysis.prefix_cache import Prompt
from zumik_cli.dataset.store import Dataset

BATCH_ROWS = 512

WORKLOAD_SQL = """
WITH chains AS (
    SELECT rid, list(chain ORDER BY pos) AS chains, list(end_token ORDER BY pos) AS ends
    FROM request_blocks GROUP BY rid
)
SELECT r.rid, r.trace_id, r.timestamp, r.session_id, r.tenant, r.alias, r.alias_release, r.provider, r.model,
       r.model_revision, r.engine, r.region, r.snapshot_id, r.breakpoints, r.breakpoint_ttls,
       coalesce(r.output_tokens_reported, 0) AS output_tokens, r.latency_ms,
       (r.block_granularity > 0 OR NOT r.tokenizer_exact) AS approximate,
       coalesce(c.chains, []) AS chains, coalesce(c.ends, []) AS ends
FROM requests r LEFT JOIN chains c USING (rid)
ORDER BY r.timestamp NULLS LAST, r.seq
"""


@dataclass(frozen=True)
class WorkRequest:
    """One recorded request as the simulation needs it."""

    rid: int
    trace_id: str
    session_id: str
    alias: str
    alias_release: str
    provider: str
    model: str
    model_revision: str
    engine: str
    region: str
    snapshot_id: str
    output_tokens: int
    latency_ms: float | None
    approximate: bool  # token counts from a proxy tokenizer or coarse hash-id blocks
    prompt: Prompt

    @property
    def timestamp(self) -> float | None:
        return self.prompt.timestamp

    @property
    def tenant(self) -> str:
        return self.prompt.tenant


def load_workload(dataset: Dataset) -> Iterator[WorkRequest]:
    """Requests in time order, in batches: memory holds one batch of prefix chains, not the whole workload."""
    con = dataset.connect()  # held by this generator while the reader streams
    reader = con.sql(WORKLOAD_SQL).to_arrow_reader(BATCH_ROWS)
    for batch in reader:
        for row in batch.to_pylist():
            yield WorkRequest(
                rid=row["rid"],
                trace_id=row["trace_id"],
                session_id=row["session_id"] or "",
                alias=row["alias"] or "",
                alias_release=row["alias_release"] or "",
                provider=row["provider"] or "",
                model=row["model"] or "",
                model_revision=row["model_revision"] or "",
                engine=row["engine"] or "",
                region=row["region"] or "",
                snapshot_id=row["snapshot_id"] or "",
                output_tokens=int(row["output_tokens"] or 0),
                latency_ms=row["latency_ms"],
                approximate=bool(row["approximate"]),
                prompt=Prompt(
                    tenant=row["tenant"] or "default",
                    timestamp=row["timestamp"],
                    chains=tuple(row["chains"]),
                    ends=tuple(row["ends"]),
                    breakpoints=tuple(row["breakpoints"] or ()),
                    breakpoint_ttls=tuple(row["breakpoint_ttls"] or ()),
                ),
            )

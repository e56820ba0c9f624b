"""The Arrow schema of every dataset table, and the schema version written into the dataset.

Declared once: writers build tables with these schemas and readers refuse a dataset whose manifest carries
another ``SCHEMA_VERSION``.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1

REQUESTS = pa.schema(
    [
        ("trace_id", pa.string()),
        ("rid", pa.int64()),
        ("seq", pa.int64()),
        ("source_path", pa.string()),
        ("source_line", pa.int64()),
        ("format", pa.string()),
        ("timestamp", pa.float64()),
        ("provider", pa.string()),
        ("model", pa.string()),
        ("model_revision", pa.string()),
        ("engine", pa.string()),
        ("region", pa.string()),
        ("quantization", pa.string()),
        ("tenant", pa.string()),
        ("session_id", pa.string()),
        ("alias", pa.string()),
        ("alias_release", pa.string()),
        ("request_format", pa.string()),
        ("snapshot_id", pa.string()),
        ("materialization_key", pa.string()),
        ("materialization_family", pa.string()),
        ("kv_compatibility_key", pa.string()),
        ("target_key", pa.string()),
        ("tokenizer", pa.string()),
        ("tokenizer_exact", pa.bool_()),
        ("block_granularity", pa.int64()),
        ("n_blocks", pa.int64()),
        ("prompt_tokens_counted", pa.int64()),
        ("prompt_tokens_reported", pa.int64()),
        ("cached_tokens_reported", pa.int64()),
        ("cache_write_tokens_reported", pa.int64()),
        ("output_tokens_reported", pa.int64()),
        ("usage_family", pa.string()),
        ("miss_reason", pa.string()),
        ("missed_tokens_reported", pa.int64()),
        ("latency_ms", pa.float64()),
        ("breakpoints", pa.list_(pa.int64())),
        ("breakpoint_ttls", pa.list_(pa.string())),
        ("output_chain", pa.int64()),
    ]
)

REQUEST_BLOCKS = pa.schema(
    [
        ("rid", pa.int64()),
        ("pos", pa.int64()),
        ("block_id", pa.int64()),
        ("chain", pa.int64()),
        ("parent", pa.int64()),
        ("tokens", pa.int64()),
        ("end_token", pa.int64()),
    ]
)

BLOCKS = pa.schema(
    [
        ("block_id", pa.int64()),
        ("family", pa.string()),
        ("kind", pa.string()),
        ("role", pa.string()),
        ("name", pa.string()),
        ("artifact_hash", pa.string()),
        ("n_tokens", pa.int64()),
        ("text", pa.string()),
    ]
)

TOKENS = pa.schema(
    [
        ("block_id", pa.int64()),
        ("token_ids", pa.list_(pa.int32())),
    ]
)

# One row per alias release the dataset has seen: the canonical content and its digest, so that a history in
# which a known release id now has other content is refused, naming the field that changed.
RELEASES = pa.schema(
    [
        ("release_id", pa.string()),
        ("alias", pa.string()),
        ("created_at", pa.string()),
        ("supersedes", pa.string()),
        ("policy", pa.string()),
        ("digest", pa.string()),
        ("content", pa.string()),
        ("source", pa.string()),
    ]
)

# One resolution record per request per policy: the five fields of the record, what was resolved, the policy
# inputs needed to recompute the decision (JSON), and what the simulation measured for it.
DECISIONS = pa.schema(
    [
        ("run_id", pa.string()),
        ("policy", pa.string()),
        ("seed", pa.int64()),
        ("trace_id", pa.string()),
        ("rid", pa.int64()),
        ("snapshot_id", pa.string()),
        ("session_id", pa.string()),
        ("tenant", pa.string()),
        ("timestamp", pa.float64()),
        ("requested_model", pa.string()),
        ("alias_release", pa.string()),
        ("release_source", pa.string()),
        ("release_digest", pa.string()),
        ("resolved_model", pa.string()),
        ("resolved_target", pa.string()),
        ("resolution_reason", pa.string()),
        ("recorded_target", pa.string()),
        ("policy_inputs", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("realized_tokens", pa.int64()),
        ("cache_write_tokens", pa.int64()),
        ("cost", pa.float64()),
        ("list_cost", pa.float64()),
        ("latency_ms", pa.float64()),
        ("evidence", pa.string()),
    ]
)

TABLES: dict[str, pa.Schema] = {
    "requests": REQUESTS,
    "request_blocks": REQUEST_BLOCKS,
    "blocks": BLOCKS,
    "tokens": TOKENS,
    "releases": RELEASES,
    "decisions": DECISIONS,
}

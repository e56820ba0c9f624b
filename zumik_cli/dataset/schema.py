"""The Arrow schema of every dataset table, and the schema version written into the dataset.

Declared once: writers build tables with these schemas and readers refuse a dataset whose manifest carries
another ``SCHEMA_VERSION``.
"""

from __future__ import annotations

import pyarrow as pa

# A session belongs to its tenant: SQL that groups, orders or joins requests by session uses this key, never
# ``session_id`` alone, so that two tenants that happen to use one session id are two sessions. The tenant's length
# leads, so no pair of tenant and session id spells another pair's key.
SESSION_KEY = "concat(length(tenant), ':', tenant, '/', session_id)"
SESSION_LABEL = "CASE WHEN tenant = '' THEN session_id ELSE concat(tenant, ' / ', session_id) END"  # as people read it

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
        ("unlogged_prefix_tokens", pa.int64()),
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

REPLAYS = pa.schema(
    [
        ("run_id", pa.string()),
        ("trace_id", pa.string()),
        ("rid", pa.int64()),
        ("position", pa.int64()),
        ("policy", pa.string()),
        ("alias_release", pa.string()),
        ("kv_compatibility_key", pa.string()),
        ("engine", pa.string()),
        ("engine_version", pa.string()),
        ("device", pa.string()),
        ("model", pa.string()),
        ("block_size", pa.int64()),
        ("capacity_blocks", pa.int64()),
        ("prompt_tokens", pa.int64()),
        ("predicted_tokens", pa.int64()),
        ("measured_tokens", pa.int64()),
        ("reason", pa.string()),
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
    "replays": REPLAYS,
}

# What each table and column means, one line each: docs/schema.md is generated from these (`make docs`), and a
# test fails when a column of TABLES has no entry here. Documentation only: nothing reads them at run time.
TABLE_DOCS: dict[str, str] = {
    "requests": "One row per recorded model call: where it came from, its three identities and its reported usage.",
    "request_blocks": "The prompt of each request as an ordered chain of block references.",
    "blocks": "Each unique content block, rendered and tokenized once per dataset.",
    "tokens": "The token ids of each unique content block.",
    "releases": "Every alias release the dataset has seen, with its canonical content and digest.",
    "decisions": "One resolution record per request per routing policy, written by `zumik simulate`.",
    "replays": "One row per request replayed on a real engine: zumik's prediction beside the engine's measurement; "
    "one part per run, whose Parquet metadata (`zumik.replay_run`) holds the run's summary.",
}

COLUMN_DOCS: dict[str, dict[str, str]] = {
    "requests": {
        "trace_id": "The call's id: the log's own, else `trc_` + a hash of the record (stable across re-ingests).",
        "rid": "64-bit join key hashed from `trace_id`; links `request_blocks` and `decisions`.",
        "seq": "Ingest order across every run, from 1; breaks timestamp ties in the waterfall's request order.",
        "source_path": "The trace file the record was read from.",
        "source_line": "Where the record sits in that file (its line in line-based formats).",
        "format": "The reader that read it (`zumik formats`).",
        "timestamp": "When the call was made, Unix seconds (UTC); null when the log has no time.",
        "provider": "Provider or serving stack (`openai`, `anthropic`, `vllm`, ...).",
        "model": "The model as the log names it.",
        "model_revision": "Dated snapshot or revision of the model; empty when the log does not say.",
        "engine": "Serving engine of a self-hosted target; empty for hosted APIs.",
        "region": "Region or deployment location; empty when unknown.",
        "quantization": "Weight quantization of a self-hosted target; empty when unknown.",
        "tenant": "Isolation namespace: caches are never shared across tenants (`default` when the log names none).",
        "session_id": "The agent session or conversation the call belongs to; empty when unknown.",
        "alias": "The name the caller asked for (`code.fast`), when it is not the model itself.",
        "alias_release": "The alias release the trace records (`alr_...`); empty when it records none.",
        "request_format": "Wire format whose prompt template renders the request for tokenization (`openai`, "
        "`anthropic`; `none` for hash-id traces).",
        "snapshot_id": "`snp_` + hash of the logical artifacts: what the request means, whatever the tokenizer; "
        "empty for usage-only and hash-id requests.",
        "materialization_key": "`mat_` + hash of the family and the last chain id: the exact token sequence sent.",
        "materialization_family": "Tokenizer and prompt compiler (`tiktoken:cl100k_base|zc1:openai`) or "
        "`hashid:<scope>:<block size>`: only requests of one family can share token prefixes.",
        "kv_compatibility_key": "`kvc_` + hash of provider, model, revision, quantization, engine, region, tenant "
        "and family: equal keys can reuse each other's KV cache.",
        "target_key": "`tgt_` + the same hash without the tenant: shows prefixes shared across tenants.",
        "tokenizer": "Tokenizer that counted the blocks (`tiktoken:NAME`, `hf:...`); empty for hash-id requests.",
        "tokenizer_exact": "True when the tokenizer is the model's own; false for a proxy whose counts are estimated "
        "and scaled to the reported totals.",
        "block_granularity": "Block size of a hash-id trace; 0 for traces with content.",
        "n_blocks": "Number of blocks in the prompt (content artifacts, or hash-id blocks).",
        "prompt_tokens_counted": "Prompt tokens zumik counted (the sum of its blocks); null when the log has no "
        "content.",
        "prompt_tokens_reported": "Prompt tokens the provider reported, cache reads and writes included; null when "
        "not logged.",
        "cached_tokens_reported": "Cache-read tokens the provider reported; null means unknown, never zero.",
        "cache_write_tokens_reported": "Cache-write tokens the provider reported; null when unknown.",
        "output_tokens_reported": "Output tokens the provider reported; null when not logged.",
        "usage_family": "The usage shape normalised from (`openai`, `anthropic`, `gemini`, ...); `none` when absent.",
        "miss_reason": "The provider's own cache-miss diagnostic, when the log carries one; empty otherwise.",
        "missed_tokens_reported": "Tokens that diagnostic says missed the cache; null when not reported.",
        "latency_ms": "Recorded latency of the call in milliseconds; null when not logged.",
        "breakpoints": "Token offsets of the cache breakpoints the prompt set (Anthropic `cache_control`), each at "
        "the end of its block.",
        "breakpoint_ttls": "The TTL each breakpoint asked for (`5m` or `1h`), parallel to `breakpoints`.",
        "output_chain": "Chain id of the prompt followed by the reply's blocks, so a later request that resends the "
        "reply matches it; null when no reply was logged.",
        "unlogged_prefix_tokens": "Tokens of the leading block that stands for what the log leaves out (a Claude "
        "Code transcript's system prompt and tool definitions): estimated once per session from reported minus "
        "counted prompt tokens, the same block in every call of the session, and part of `prompt_tokens_counted`; "
        "null when no such block was added.",
    },
    "request_blocks": {
        "rid": "The request (`requests.rid`).",
        "pos": "Position of the block in the prompt, from 0.",
        "block_id": "The content block (`blocks.block_id`); in hash-id traces, an id of the trace's own block id "
        "scoped to its trace (file name and first record).",
        "chain": "Prefix chain id: covers this block and every block before it, so an equal chain is an equal prefix.",
        "parent": "Chain id of the block before (0 for the first block).",
        "tokens": "Tokens in this block.",
        "end_token": "Prompt tokens up to and including this block.",
    },
    "blocks": {
        "block_id": "64-bit content address of the rendered text within its family.",
        "family": "The materialization family the text was rendered and tokenized under.",
        "kind": "Artifact kind: `tool`, `system`, `text`, `tool_call`, `tool_result` or `media`.",
        "role": "Speaker role of the artifact (`system`, `user`, `assistant`, `tool`).",
        "name": "Tool name for tool definitions and calls; empty otherwise.",
        "artifact_hash": "Hash of the logical artifact before rendering, equal across families.",
        "n_tokens": "Tokens in `text` under the family's tokenizer.",
        "text": "The model-visible text of the block (prompt content: treat as sensitive).",
    },
    "tokens": {
        "block_id": "The block (`blocks.block_id`).",
        "token_ids": "Token ids of the block's text: token-exact overlaps, replay and export read them.",
    },
    "releases": {
        "release_id": "Release id, `alr_<UTC day>_<NNN>`.",
        "alias": "The alias it resolves.",
        "created_at": "Creation time, ISO 8601 UTC with milliseconds.",
        "supersedes": "The alias's previous release; null for its first.",
        "policy": "The routing policy the release names.",
        "digest": "`rdg_` + hash of the canonical content: any change of meaning changes it.",
        "content": "The release's canonical JSON, kept so that an edited history is caught field by field.",
        "source": "The history file the release was first recorded from.",
    },
    "decisions": {
        "run_id": "`sim_` + hash of the request parts, the history and the seed the simulation read.",
        "policy": "The routing policy that decided (`recorded` is the baseline).",
        "seed": "Seed of the latency samples, shared by every policy of a run.",
        "trace_id": "The request (`requests.trace_id`).",
        "rid": "The request (`requests.rid`).",
        "snapshot_id": "The request's logical snapshot.",
        "session_id": "The request's session.",
        "tenant": "The request's tenant.",
        "timestamp": "The request's time, Unix seconds.",
        "requested_model": "What the caller asked for: the alias, else the model.",
        "alias_release": "The release that resolved it; null when none did.",
        "release_source": "How the release was found: `trace` or `resolved_by_time`; null when unresolved.",
        "release_digest": "Digest of the release content the decision used.",
        "resolved_model": "The model the chosen target serves.",
        "resolved_target": "Target key the policy chose (`provider/model@revision|region=...`).",
        "resolution_reason": "Why the policy chose it, in the policy's own words.",
        "recorded_target": "Target key the trace recorded.",
        "policy_inputs": "JSON of everything the policy saw, enough to recompute the decision (`zumik explain`).",
        "prompt_tokens": "Prompt tokens of the request.",
        "output_tokens": "Output tokens of the request.",
        "realized_tokens": "Tokens the simulated cache of the chosen target served.",
        "cache_write_tokens": "Tokens written to that cache.",
        "cost": "USD at the target's prices, cache reads and writes included.",
        "list_cost": "USD at the target's list prices without any cache.",
        "latency_ms": "Estimated latency from the target's profile (the recorded latency where the recorded target has "
        "none); null otherwise.",
        "evidence": "`simulated`, or `estimated` where counts come from a proxy tokenizer or hash-id blocks.",
    },
    "replays": {
        "run_id": "Id of the `zumik replay` run that wrote the row.",
        "trace_id": "The replayed request.",
        "rid": "Join key of the request (see `requests.rid`).",
        "position": "Order in which the request was sent to the engine, from 0.",
        "policy": "Whose decisions selected the request (`recorded` or a simulated policy).",
        "alias_release": "The alias release the request resolved through.",
        "kv_compatibility_key": "The request's KV compatibility key; each key gets its own namespace on the engine.",
        "engine": "Engine name (`vllm` in process, or `openai-http`).",
        "engine_version": "Engine version as it reported itself.",
        "device": "Where the engine ran (`cpu`, a GPU name, or a remote URL).",
        "model": "Model path or name the engine loaded (the shipped tiny config runs dummy weights).",
        "block_size": "KV block size in tokens.",
        "capacity_blocks": "Usable KV blocks of the engine.",
        "prompt_tokens": "Tokens sent, the request's own (the namespace block is not counted).",
        "predicted_tokens": "Cached tokens zumik predicted under the vLLM rules with the same block size and capacity.",
        "measured_tokens": "Cached tokens the engine reported; null when it did not say.",
        "reason": "Why prediction and measurement differ; empty when they agree.",
        "evidence": "`replayed` for the measurement (the prediction is `simulated`).",
    },
}

-- The waterfall's per-request table: its stages from the per_request view (per_request.sql) with each request's
-- text from ``requests``, one row a request in ``ord`` order. Written to a Parquet file by DuckDB (per_request.py)
-- and read from there by every consumer: it is never held whole in memory.
-- Requests with usage but no content (usage-only logs) have no eligible or candidate: NULL, never zero.
WITH stages AS (
    SELECT *,
           CASE WHEN NOT usage_only THEN e1 END AS eligible,
           CASE WHEN NOT usage_only THEN t1 END AS same_target,
           CASE WHEN NOT usage_only THEN k1 END AS same_key,
           CASE WHEN NOT usage_only THEN w1 END AS warm,
           CASE WHEN NOT usage_only THEN m1 END AS above_minimum,
           CASE WHEN NOT usage_only THEN g1 END AS granular,
           CASE WHEN NOT usage_only THEN c1 END AS candidate,
           CASE WHEN NOT usage_only THEN ttl300 END AS candidate_ttl_300,
           CASE WHEN NOT usage_only THEN ttl3600 END AS candidate_ttl_3600,
           cached AS realized,
           CASE WHEN cached IS NOT NULL AND NOT usage_only THEN greatest(c1 - cached, 0) END AS missed,
           CASE WHEN cached IS NOT NULL AND NOT usage_only THEN greatest(cached - c1, 0) ELSE 0 END AS over_realized,
           -- estimated rows (proxy tokenizer, coarse blocks) carry rounding error: an excess inside it is noted apart
           CASE WHEN scaled OR hashid THEN ceil(total * $over_tolerance)::BIGINT ELSE 0 END AS over_tolerance
    FROM per_request
)
-- seq only finds each request's text (ingest numbers every request once): it says nothing of the request itself
SELECT s.rid, t.trace_id, s.ord, s.ts, t.model, t.provider, t.engine, t.tenant, t.session_id, t.alias,
       t.alias_release, t.materialization_family AS family, t.kv_compatibility_key AS kvc, t.miss_reason,
       s.* EXCLUDE (rid, seq, ord, ts)
FROM stages s
JOIN requests t ON t.seq = s.seq AND t.rid = s.rid
ORDER BY s.ord

-- One row per request: every waterfall stage in the request's own token units, the rule that cut each stage,
-- and what the provider reported. Inputs: req, levels, partial, bp_hits, cap_hits (temp tables). Numbers only:
-- the request's text (trace id, model, tenant, ...) joins the result in stages.sql. Views, not tables: the one
-- reader is stages.sql, whose result DuckDB writes straight to a Parquet file (per_request.py).

-- What a target serves of a reusable prefix of x tokens: nothing under its minimum, then x rounded down to its
-- granularity (whole blocks short of the recomputed last token, increments, or the longest prefix readable at a
-- breakpoint an earlier request wrote; a breakpoint under the minimum wrote nothing). Monotone in x.
CREATE OR REPLACE TEMP MACRO servable(x, counted, min_tokens, gran_kind, block_size, recompute_last, inc_first,
                                      inc_step, t_bp) AS
    CASE
        WHEN x < min_tokens THEN 0
        WHEN gran_kind = 'blocks' THEN
            (least(x, CASE WHEN recompute_last THEN greatest(counted - 1, 0) ELSE counted END) // block_size)
            * block_size
        WHEN gran_kind = 'increments' THEN
            CASE WHEN x >= inc_first THEN inc_first + ((x - inc_first) // inc_step) * inc_step ELSE 0 END
        WHEN gran_kind = 'breakpoints' THEN
            CASE WHEN coalesce(t_bp, 0) >= min_tokens THEN least(x, coalesce(t_bp, 0)) ELSE 0 END
        ELSE x
    END;

-- Leading counted tokens x in the provider's tokens: the estimated unlogged prefix (a Claude Code transcript's system
-- prompt and tools, already in provider tokens) as it is, the rest scaled. With no prefix: round(x * scale). NULL
-- stays NULL (least and greatest skip NULLs).
CREATE OR REPLACE TEMP MACRO provider(x, prefix, scale) AS
    CASE WHEN x IS NOT NULL THEN least(x, prefix) + round(greatest(x - prefix, 0) * scale)::BIGINT END;

CREATE OR REPLACE TEMP VIEW per_request AS
WITH joined AS (
    SELECT r.*,
           coalesce(l.t_fam, 0) + coalesce(p.p_fam, 0) AS e0,
           coalesce(l.t_tgt, 0) + coalesce(p.p_tgt, 0) AS t0,
           coalesce(l.t_kvc, 0) + coalesce(p.p_kvc, 0) AS k0,
           coalesce(l.t_warm, 0) + coalesce(p.p_warm, 0) AS w0,
           coalesce(l.t_warm, 0) AS warm_blocks0,
           coalesce(l.t_ttl_300, 0) AS ttl300_0,
           coalesce(l.t_ttl_3600, 0) AS ttl3600_0,
           bp.t_bp AS t_bp0,
           cap.t_cap AS t_cap0,
           coalesce(cap.exact, false) AS cap_exact,
           coalesce(r.reported, r.counted) AS total,
           -- counted figures are scaled to the reported total when a proxy tokenizer counted them, before any
           -- rule is applied: minimums, increments and blocks are in the provider's own tokens. An estimated
           -- unlogged prefix is in provider tokens already: only what is left is scaled (REQUEST_SCALE_SQL)
           CASE WHEN r.reported IS NOT NULL AND NOT r.tokenizer_exact AND NOT r.hashid AND r.counted > r.prefix
                THEN greatest(r.reported - r.prefix, 0)::DOUBLE / (r.counted - r.prefix) ELSE 1.0 END AS scale
    FROM req r
    LEFT JOIN levels l USING (rid)
    LEFT JOIN partial p USING (rid)
    LEFT JOIN bp_hits bp USING (rid)
    LEFT JOIN cap_hits cap USING (rid)
), provider_units AS (
    -- each stage can only keep what the stage before it kept
    SELECT *,
           least(provider(least(e0, counted), prefix, scale), total) AS e1,
           least(provider(least(t0, e0, counted), prefix, scale), total) AS t1,
           least(provider(least(k0, t0, e0, counted), prefix, scale), total) AS k1,
           least(provider(least(w0, k0, t0, e0, counted), prefix, scale), total) AS w1,
           least(provider(warm_blocks0, prefix, scale), total) AS warm_blocks,
           least(provider(least(ttl300_0, k0, counted), prefix, scale), total) AS ttl300,
           least(provider(least(ttl3600_0, k0, counted), prefix, scale), total) AS ttl3600,
           provider(t_bp0, prefix, scale) AS t_bp,
           provider(t_cap0, prefix, scale) AS t_cap
    FROM joined
), ruled AS (
    SELECT *,
           CASE WHEN w1 < min_tokens THEN 0 ELSE w1 END AS m1
    FROM provider_units
), granular AS (
    SELECT *,
           servable(m1, total, min_tokens, gran_kind, block_size, recompute_last, inc_first, inc_step, t_bp) AS g1,
           -- a bounded cache keeps the leading whole blocks it still holds (t_cap); when it holds every shared
           -- whole block, the shared tokens inside the next block are kept too. What it keeps is then rounded to
           -- the target's granularity like any other prefix.
           -- an engine's block pool (cap_exact) says exactly what it serves.
           CASE WHEN t_cap IS NULL OR (NOT cap_exact AND t_cap >= warm_blocks) THEN m1 ELSE least(m1, t_cap) END
               AS cap1
    FROM ruled
), capped AS (
    SELECT *,
           servable(cap1, total, min_tokens, gran_kind, block_size, recompute_last, inc_first, inc_step, t_bp)
               AS c1
    FROM granular
)
SELECT rid, seq, ord, ts, pack,
       tokenizer_exact, hashid, usage_only, counted, reported, cached, writes, write_ttl, total, scale,
       (reported IS NOT NULL AND NOT tokenizer_exact AND NOT hashid) AS scaled,
       least(e0, counted) AS eligible_counted, e1, t1, k1, w1, m1, g1, c1, ttl300, ttl3600,
       -- same key and warm in zumik's own count, and the lifetimes this request gives the blocks it uses: what
       -- divergence reads to judge a session's idle gap exactly as the waterfall's expired cut
       least(k0, t0, e0, counted) AS same_key_counted, least(w0, k0, t0, e0, counted) AS warm_counted,
       ttl, ttl_long, long_until
FROM capped;

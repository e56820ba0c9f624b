-- Per request: how many leading blocks it shares with an earlier request at four widening levels of strictness,
-- and the token offset where that shared prefix ends. Chain ids are prefix-closed, so "unit k was seen before"
-- implies every unit before it was too, and a max over matching units is the length of the shared prefix.
--   fam:  any earlier request of the same materialization family (eligible)
--   tgt:  same target, any tenant (what isolation forbids shows as tgt - kvc)
--   kvc:  same KV compatibility key (same target and tenant), any time gap
--   warm: same key, still alive: some earlier use plus the TTL that use asked for (a 1-hour breakpoint keeps what
--         it wrote for an hour, whatever the reader asks) is not yet past; every use refreshes
-- Inputs: temp tables req (rid, ord, ts, family, target, kvc, ttl) and request_blocks (the dataset view).
CREATE OR REPLACE TEMP TABLE units AS
SELECT b.rid, b.pos, b.block_id, b.chain, b.parent, b.tokens, b.end_token,
       r.ord, r.ts, r.family, r.target, r.kvc, r.ttl,
       min(r.ord) OVER (PARTITION BY r.family, b.chain) AS first_fam,
       min(r.ord) OVER (PARTITION BY r.target, b.chain) AS first_tgt,
       min(r.ord) OVER (PARTITION BY r.kvc, b.chain) AS first_kvc,
       lag(r.ts) OVER (PARTITION BY r.kvc, b.chain ORDER BY r.ord) AS prev_ts,
       max(r.ts + coalesce(r.ttl, 'infinity'::DOUBLE)) OVER (
           PARTITION BY r.kvc, b.chain ORDER BY r.ord ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
       ) AS alive_until
FROM request_blocks b JOIN req r USING (rid);

CREATE OR REPLACE TEMP TABLE levels AS
SELECT rid,
       max(CASE WHEN first_fam < ord THEN pos + 1 ELSE 0 END) AS n_fam,
       max(CASE WHEN first_fam < ord THEN end_token ELSE 0 END) AS t_fam,
       max(CASE WHEN first_tgt < ord THEN pos + 1 ELSE 0 END) AS n_tgt,
       max(CASE WHEN first_tgt < ord THEN end_token ELSE 0 END) AS t_tgt,
       max(CASE WHEN first_kvc < ord THEN pos + 1 ELSE 0 END) AS n_kvc,
       max(CASE WHEN first_kvc < ord THEN end_token ELSE 0 END) AS t_kvc,
       max(CASE WHEN first_kvc < ord AND (ts IS NULL OR alive_until IS NULL OR ts <= alive_until)
                THEN pos + 1 ELSE 0 END) AS n_warm,
       max(CASE WHEN first_kvc < ord AND (ts IS NULL OR alive_until IS NULL OR ts <= alive_until)
                THEN end_token ELSE 0 END) AS t_warm,
       max(CASE WHEN first_kvc < ord AND (ts IS NULL OR prev_ts IS NULL OR ts - prev_ts <= 300)
                THEN end_token ELSE 0 END) AS t_ttl_300,
       max(CASE WHEN first_kvc < ord AND (ts IS NULL OR prev_ts IS NULL OR ts - prev_ts <= 3600)
                THEN end_token ELSE 0 END) AS t_ttl_3600
FROM units GROUP BY rid;

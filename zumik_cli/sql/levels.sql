-- Per request: how many leading blocks it shares with an earlier request at four widening levels of strictness,
-- and the token offset where that shared prefix ends. Chain ids are prefix-closed, so "unit k was seen before"
-- implies every unit before it was too, and a max over matching units is the length of the shared prefix.
--   fam:  any earlier request of the same materialization family (eligible)
--   tgt:  same target, any tenant (what isolation forbids shows as tgt - kvc)
--   kvc:  same KV compatibility key (same target and tenant), any time gap
--   warm: same key, still alive: some earlier use plus the TTL that use asked for (a 1-hour breakpoint keeps what
--         it wrote for an hour, whatever the reader asks) is not yet past, and every use refreshes
-- Inputs: temp tables req (rid, ord, ts, ttl, hashid, and fam_id, tgt_id, kvc_id: the family, target and key as
-- small integers) and request_blocks (the dataset view).
-- Cost: one window (one sort) per block, over (key, chain); the key determines the target and the target the
-- family, so the earliest use per target and per family is the least of the earliest uses per key, taken over
-- the distinct (key, chain) pairs rather than over every block. $levels_coincide is true when each family has
-- one target and each target one key (hash-id traces, single-tenant logs): then all three are the same.
CREATE OR REPLACE TEMP TABLE units AS
SELECT b.rid, b.pos, b.block_id, b.chain, b.parent, b.tokens, b.end_token,
       r.ord, r.ts, r.ttl, r.hashid, r.fam_id, r.tgt_id, r.kvc_id,
       first_value(r.ord) OVER w AS first_kvc,
       lag(r.ts) OVER w AS prev_ts,
       max(r.ts + coalesce(r.ttl, 'infinity'::DOUBLE)) OVER (
           w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
       ) AS alive_until
FROM request_blocks b JOIN req r USING (rid)
WINDOW w AS (PARTITION BY r.kvc_id, b.chain ORDER BY r.ord);

CREATE OR REPLACE TEMP TABLE firsts AS
SELECT kvc_id, chain, first_kvc,
       min(first_kvc) OVER (PARTITION BY tgt_id, chain) AS first_tgt,
       min(first_kvc) OVER (PARTITION BY fam_id, chain) AS first_fam
FROM (SELECT DISTINCT kvc_id, tgt_id, fam_id, chain, first_kvc FROM units)
WHERE NOT $levels_coincide;

CREATE OR REPLACE TEMP TABLE levels AS
WITH seen AS (
    SELECT u.rid, u.pos, u.end_token, u.ord, u.ts, u.prev_ts, u.alive_until, u.first_kvc,
           CASE WHEN $levels_coincide THEN u.first_kvc ELSE f.first_tgt END AS first_tgt,
           CASE WHEN $levels_coincide THEN u.first_kvc ELSE f.first_fam END AS first_fam
    FROM units u
    LEFT JOIN firsts f ON NOT $levels_coincide AND f.kvc_id = u.kvc_id AND f.chain = u.chain
)
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
FROM seen GROUP BY rid;

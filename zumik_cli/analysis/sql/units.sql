-- Every block of every request with its request's order and time, its own TTL (that of the breakpoints that
-- cover it, see REQ_SQL in waterfall.py) and the request's numbered family, target and key: the
-- input of analysis/siblings.py and the breakpoint hits. A view, not a table: hash-id traces (millions of blocks) never
-- read it (their levels and capacity come from ``zumik_cli/analysis/levels.py``), and content traces join it cheaply.
-- Inputs: temp table req and the dataset view request_blocks.
CREATE OR REPLACE TEMP VIEW units AS
SELECT b.rid, b.pos, b.block_id, b.chain, b.parent, b.tokens, b.end_token,
       r.ord, r.ts, CASE WHEN b.end_token <= r.long_until THEN r.ttl_long ELSE r.ttl END AS ttl,
       r.hashid, r.fam_id, r.tgt_id, r.kvc_id
FROM request_blocks b JOIN req r USING (rid);

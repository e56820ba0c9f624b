-- The first block each request does NOT share at a level, and the earlier blocks that follow the same parent
-- chain at that level (its "siblings"): the shared prefix may go on for some tokens inside that block.
-- Only the most recent siblings (by first use) are compared, at most $max_siblings per request and level.
-- Family, target and key are compared as the small integers req numbers them with (fam_id, tgt_id, kvc_id).
WITH nxt AS (
    SELECT l.rid, lv.level, u.block_id, u.parent, u.ord, u.ts, u.fam_id, u.tgt_id, u.kvc_id, u.ttl
    FROM levels l
    CROSS JOIN (VALUES ('fam'), ('tgt'), ('kvc'), ('warm')) AS lv(level)
    JOIN units u ON u.rid = l.rid AND u.pos = CASE lv.level WHEN 'fam' THEN l.n_fam WHEN 'tgt' THEN l.n_tgt
                                                             WHEN 'kvc' THEN l.n_kvc ELSE l.n_warm END
    WHERE NOT u.hashid
), pairs AS (
    SELECT n.rid, n.level, n.block_id AS a, s.block_id AS b, max(s.ord) AS last_ord
    FROM nxt n JOIN units s ON s.parent = n.parent AND s.fam_id = n.fam_id AND s.ord < n.ord
                             AND s.block_id <> n.block_id
    WHERE n.level = 'fam'
       OR (n.level = 'tgt' AND s.tgt_id = n.tgt_id)
       OR (n.level = 'kvc' AND s.kvc_id = n.kvc_id)
       OR (n.level = 'warm' AND s.kvc_id = n.kvc_id AND (s.ttl IS NULL OR n.ts IS NULL OR s.ts IS NULL
                                                         OR n.ts - s.ts <= s.ttl))
    GROUP BY ALL
)
SELECT rid, level, a, b FROM (
    SELECT *, row_number() OVER (PARTITION BY rid, level ORDER BY last_ord DESC) AS k FROM pairs
) WHERE k <= $max_siblings

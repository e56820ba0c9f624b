"""How much of the waterfall images and documents carry: their tokens inside each request's eligible, candidate and
missed spans.

A waterfall stage is a prefix of a request's prompt (missed is the span from the realized prefix to the candidate
one), so an image block counts for a stage with the part of it that lies inside that span, in zumik's count, then
scaled to the waterfall's units like the stage itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zumik_cli.analysis.waterfall import Waterfall
from zumik_cli.core.media import MEDIA_KINDS
from zumik_cli.dataset.store import Dataset

SHARES_SQL = """
WITH spans AS (
    SELECT rid, coalesce(scale, 1.0) AS scale, eligible_counted AS eligible,
           candidate / coalesce(scale, 1.0) AS candidate, realized / coalesce(scale, 1.0) AS realized
    FROM waterfall_rows WHERE NOT hashid
), media AS (
    SELECT rb.rid, rb.end_token - rb.tokens AS start, rb.end_token AS stop
    FROM request_blocks rb JOIN blocks b USING (block_id)
    WHERE b.kind IN (SELECT unnest(?)) AND rb.rid IN (SELECT rid FROM spans)
)
SELECT coalesce(sum(s.scale * greatest(0, least(m.stop, s.eligible) - m.start)), 0),
       coalesce(sum(s.scale * greatest(0, least(m.stop, s.candidate) - greatest(m.start, s.realized)))
                FILTER (WHERE s.realized IS NOT NULL), 0),
       coalesce(sum(s.scale * (m.stop - m.start)), 0)
FROM media m JOIN spans s USING (rid)
"""


@dataclass(frozen=True)
class MediaShare:
    """Image and document tokens in the waterfall's units, beside the stages they are part of."""

    total: int
    eligible: int
    missed: int
    of_total: int
    of_eligible: int
    of_missed: int

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def media_share(dataset: Dataset, waterfall: Waterfall) -> MediaShare:
    con = dataset.connect()
    waterfall.per_request.register(con, "waterfall_rows")
    eligible, missed, total = con.execute(SHARES_SQL, [list(MEDIA_KINDS)]).fetchone() or (0, 0, 0)
    stages = con.execute(
        "SELECT sum(coalesce(total, counted)), sum(eligible), sum(missed) FROM waterfall_rows WHERE NOT hashid"
    ).fetchone() or (0, 0, 0)
    return MediaShare(
        total=int(stages[0] or 0),
        eligible=int(stages[1] or 0),
        missed=int(stages[2] or 0),
        of_total=round(total),
        of_eligible=round(eligible),
        of_missed=round(missed),
    )

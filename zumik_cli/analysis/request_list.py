"""Requests one by one, from the waterfall's per-request rows: find a trace id to explain, and why it lost reuse.

Every figure is the waterfall's own (``Waterfall.per_request``, read with DuckDB); this module only filters,
orders and names the step of the waterfall where each request lost the most tokens (its cause: the first step
that lost any is often a rounding of a few tokens before a provider miss of thousands). "Worst" means the most tokens
that an earlier request shared (eligible) and that were not read from the cache (realized): the rules' losses
and the provider's together.
"""

from __future__ import annotations

from typing import Any

import duckdb

from zumik_cli.analysis.waterfall import CAUSE_LABELS, Waterfall
from zumik_cli.core.errors import ZumikError

# Each step of the waterfall that can lose a request's tokens: the eligible -> candidate causes in order, then the
# provider's miss. The step that lost the most is the request's cause (ties go to the earlier step).
STEPS_SQL = """[
    {'tokens': eligible - same_target, 'step': 6, 'cause': 'other_model'},
    {'tokens': same_target - same_key, 'step': 5, 'cause': 'other_tenant'},
    {'tokens': same_key - warm, 'step': 4, 'cause': 'expired'},
    {'tokens': warm - above_minimum, 'step': 3, 'cause': 'below_minimum'},
    {'tokens': above_minimum - granular, 'step': 2, 'cause': 'granularity'},
    {'tokens': granular - candidate, 'step': 1, 'cause': 'evicted'},
    {'tokens': missed, 'step': 0, 'cause': coalesce(nullif(miss_reason, ''), 'provider_miss_unexplained')}
]"""
REQUESTS_SQL = f"""
SELECT trace_id, session_id AS session, tenant, model, total, eligible, candidate, realized, missed,
       CASE WHEN eligible IS NOT NULL AND realized IS NOT NULL THEN greatest(eligible - realized, 0) END AS lost,
       CASE WHEN main.tokens > 0 THEN main.cause END AS cause, ts, ord
FROM (SELECT *, list_sort(list_filter({STEPS_SQL}, lambda s: s.tokens IS NOT NULL), 'DESC')[1] AS main
      FROM per_request)
WHERE $session IS NULL OR session_id = $session
"""
IN_TIME = " ORDER BY ord"
WORST = " ORDER BY lost DESC NULLS LAST, missed DESC NULLS LAST, ord LIMIT $worst"


def list_requests(
    waterfall: Waterfall, *, session: str | None = None, worst: int | None = None
) -> list[dict[str, Any]]:
    """The requests of the waterfall (of one ``session`` when given), in time order, or the ``worst`` N first."""
    if worst is not None and worst < 1:
        raise ZumikError(f"--worst takes how many requests to list, 1 or more, not {worst}")
    con = duckdb.connect(":memory:")
    waterfall.per_request.register(con, "per_request")
    query = REQUESTS_SQL + (IN_TIME if worst is None else WORST)
    parameters: dict[str, Any] = {"session": session}
    if worst is not None:
        parameters["worst"] = worst
    cursor = con.execute(query, parameters)
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    if session is not None and not rows:
        raise ZumikError(
            f"no session {session!r} in this dataset: list the sessions with `zumik waterfall --by session`"
        )
    for row in rows:
        del row["ord"]
        row["cause_label"] = (
            CAUSE_LABELS.get(row["cause"], f"provider diagnostic: {row['cause']}") if row["cause"] else ""
        )
    return rows


# keyed as the session breakdown labels its rows (``SESSION_LABEL``): a tenant's session, never two tenants' merged
WORST_PER_SESSION_SQL = f"""
SELECT CASE WHEN coalesce(tenant, '') = '' THEN session ELSE concat(tenant, ' / ', session) END AS label,
       first(trace_id ORDER BY lost DESC NULLS LAST, missed DESC NULLS LAST, ord) AS worst
FROM ({REQUESTS_SQL}) GROUP BY label
"""


def worst_per_session(waterfall: Waterfall) -> dict[str, str]:
    """Each session's worst request (as ``list_requests`` orders them): the trace id to explain first."""
    con = duckdb.connect(":memory:")
    waterfall.per_request.register(con, "per_request")
    return {session: worst for session, worst in con.execute(WORST_PER_SESSION_SQL, {"session": None}).fetchall()}

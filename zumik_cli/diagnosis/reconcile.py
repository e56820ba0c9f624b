"""Invoice reconciliation: zumik's computed bill for a period beside the amount the provider invoiced.

The computed bill is the waterfall's ``money.billed`` for the period, the same figure ``zumik waterfall`` shows:
the recorded usage at list prices, input (cache reads and writes at their multipliers, as measured) plus output.
Money is called *reconciled* only when the difference is within a stated tolerance and nothing in the period went
unpriced; otherwise zumik's money figures stay list-price estimates and say so.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from zumik_cli.analysis.waterfall import WaterfallOptions, compute_waterfall
from zumik_cli.core.errors import ZumikError
from zumik_cli.dataset.scenario import ScenarioBuilder
from zumik_cli.dataset.store import Dataset

DEFAULT_TOLERANCE = 0.05
_MONTH = re.compile(r"^\d{4}-\d{2}$")


@dataclass(frozen=True)
class Period:
    """A half-open time range in Unix seconds; None on a side means unbounded."""

    start: float | None
    end: float | None
    label: str

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "start": _iso(self.start), "end": _iso(self.end)}


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _moment(text: str, end: bool) -> float:
    """A date (whole day: its start, or the next day's start when it ends a range) or an ISO time, in UTC."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC) + (timedelta(days=1) if end else timedelta())
            return moment.timestamp()
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ZumikError(
            f"--period {text!r} is not a date or time: use 2026-06, 2026-06-09, or 2026-06-01..2026-06-30"
        ) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def parse_period(text: str | None) -> Period:
    """``2026-06`` (a month), ``2026-06-09`` (a day), ``A..B`` (dates inclusive, or ISO times), or all time."""
    if not text:
        return Period(None, None, "all recorded requests")
    text = text.strip()
    if _MONTH.match(text):
        year, month = (int(x) for x in text.split("-"))
        if not 1 <= month <= 12:
            raise ZumikError(f"--period {text!r} has no month {month}")
        after = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
        return Period(datetime(year, month, 1, tzinfo=UTC).timestamp(), after.timestamp(), text)
    if ".." in text:
        first, last = text.split("..", 1)
        start = _moment(first, end=False) if first else None
        stop = _moment(last, end=True) if last else None
        if start is not None and stop is not None and stop <= start:
            raise ZumikError(f"--period {text!r} ends before it starts")
        return Period(start, stop, text)
    return Period(_moment(text, end=False), _moment(text, end=True), text)


@dataclass(frozen=True)
class Reconciliation:
    invoice_usd: float
    computed_usd: float | None  # None: nothing in the period has a list price
    input_usd: float | None
    output_usd: float | None
    difference_usd: float | None
    tolerance: float
    status: str
    period: Period
    requests: int
    reasons: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "invoice_usd": round(self.invoice_usd, 6),
            "computed_usd": _round(self.computed_usd),
            "computed": {"input_usd": _round(self.input_usd), "output_usd": _round(self.output_usd)},
            "difference_usd": _round(self.difference_usd),
            "difference_share": _round(self.difference_usd / self.invoice_usd)
            if self.invoice_usd and self.difference_usd is not None
            else None,
            "tolerance": self.tolerance,
            "status": self.status,
            "reconciled": self.status == "reconciled",
            "period": self.period.to_json(),
            "requests": self.requests,
            "reasons": self.reasons,
            "evidence": "estimated",
            "note": "computed at list prices from the recorded usage; the difference is invoice minus computed",
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def reconcile(
    dataset: Dataset,
    invoice_usd: float,
    period: Period,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    options: WaterfallOptions | None = None,
) -> Reconciliation:
    """Compare the computed bill of the requests in ``period`` with the invoiced amount."""
    if invoice_usd < 0 or not 0 <= tolerance < 1:
        raise ZumikError("--invoice-usd must be 0 or more and --tolerance between 0 and 1 (e.g. 0.05 for 5%)")
    options = dataclasses.replace(options or WaterfallOptions(), by=(), curves=False)
    with tempfile.TemporaryDirectory(prefix="zumik-reconcile-") as scratch:
        scoped = _in_period(dataset, period, Path(scratch))
        con = scoped.connect()
        count = con.execute("SELECT count(*) FROM requests").fetchone()
        if not count or not count[0]:
            span = dataset.connect().execute("SELECT min(timestamp), max(timestamp) FROM requests").fetchone()
            recorded = f"{_iso(span[0])} to {_iso(span[1])}" if span and span[0] is not None else "no timestamps"
            raise ZumikError(f"no requests in the period {period.label} (the dataset spans {recorded}): check --period")
        money = compute_waterfall(scoped, options).summary["money"]
        unreported = con.execute("SELECT count(*) FROM requests WHERE prompt_tokens_reported IS NULL").fetchone()
    no_output, no_prompt = int(money["output_unknown_requests"]), int(unreported[0]) if unreported else 0
    reasons = [f"{item['requests']} requests unpriced: {item['reason']}" for item in money["unpriced"]]
    reasons += [
        f"{n} requests have no {part} tokens reported"
        for part, n in (("output", no_output), ("prompt", no_prompt))
        if n
    ]
    computed = money["billed"]
    difference = None if computed is None else invoice_usd - computed
    within = difference is not None and abs(difference) <= tolerance * invoice_usd
    if difference is not None and not within:
        share = f"{abs(difference) / invoice_usd:.1%} of the invoice" if invoice_usd else "more than a zero invoice"
        reasons.insert(0, f"the difference is {share}, outside the {tolerance:.0%} tolerance")
    complete = not money["unpriced_requests"] and not no_output
    return Reconciliation(
        invoice_usd=invoice_usd,
        computed_usd=computed,
        input_usd=money["billed_input"],
        output_usd=money["billed_output"],
        difference_usd=difference,
        tolerance=tolerance,
        status="reconciled" if within and complete else "not reconciled",
        period=period,
        requests=int(count[0]),
        reasons=reasons,
    )


def _in_period(dataset: Dataset, period: Period, scratch: Path) -> Dataset:
    """The dataset limited to the period's requests (all of them when the period is unbounded)."""
    if period.start is None and period.end is None:
        return dataset
    con = dataset.connect()
    bounds = [period.start, period.end]
    con.execute("CREATE TEMP TABLE period_bounds AS SELECT ?::DOUBLE AS lo, ?::DOUBLE AS hi", bounds)
    sql = """
        SELECT r.* FROM requests r, period_bounds b
        WHERE r.timestamp >= coalesce(b.lo, r.timestamp) AND r.timestamp < coalesce(b.hi, r.timestamp + 1)
    """
    return ScenarioBuilder(dataset, scratch).build("period", con, replace_sql={"requests": sql})

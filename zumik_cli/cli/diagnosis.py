"""Commands that say why prefixes break and what to change: ``divergence``, ``check`` and ``recommend``.

Each parses its options, calls one core function (``divergence``, ``check``, ``recommend``, ``reconcile``) and
renders the result (tables through ``render.terminal.diagnosis``, ``--json`` as data on stdout). ``check`` exits 1
when a check fails, so that it can gate a CI job. ``zumik_cli.cli`` registers them with ``register(app)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zumik_cli.cli.options import (
    DataOpt,
    JsonOpt,
    RulesOpt,
    TtlOpt,
    err,
    handles_errors,
    out,
    print_json,
    waterfall_options,
)
from zumik_cli.core.errors import InputError, ZumikError
from zumik_cli.render.terminal import diagnosis as terminal_diagnosis

TOP = 3

TopOpt = Annotated[int, typer.Option("--top", min=1, help="How many recommendations to show.")]


def divergence(
    data: DataOpt = Path("data/zumik"),
    session: Annotated[str | None, typer.Option("--session", "-s", help="Only this session id.")] = None,
    rules: RulesOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Breaks to show in the table (largest first).")] = 30,
    as_json: JsonOpt = False,
) -> None:
    """Find where each request stopped extending the previous one in its session or branch, and why."""
    from zumik_cli.dataset.store import Dataset
    from zumik_cli.diagnosis.divergence import compute_divergence

    result = compute_divergence(Dataset(data), session, rules=rules).to_json()
    if session and not any(s["session_id"] == session for s in result["sessions"]):
        raise ZumikError(f"no session {session!r} with content in {data}: see `zumik waterfall --by session`")
    if as_json:
        print_json(result)
    else:
        terminal_diagnosis.divergence(out, result, limit)


def check(
    data: Annotated[
        Path | None, typer.Option("--data", "-d", help="Dataset folder: check every recorded request.")
    ] = None,
    request: Annotated[
        Path | None, typer.Option("--request", "-r", help="One request body (JSON) to check, e.g. in CI.")
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 on warnings too, not only on failures.")] = False,
    rules: RulesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check cache configuration (breakpoints, TTL order, minimums, volatile content, prompt_cache_key); exit 1 on
    a failure."""
    from zumik_cli.dataset.store import Dataset
    from zumik_cli.diagnosis.check import check_body, check_dataset
    from zumik_cli.ingest.request_body import read_body

    if (data is None) == (request is None):
        raise InputError("pass exactly one of --data DIR (a dataset) or --request FILE (one request body)")
    if request is not None:
        report = check_body(read_body(request))
    else:
        assert data is not None
        report = check_dataset(Dataset(data), rules)
    result = report.to_json()
    if as_json:
        print_json(result)
    else:
        terminal_diagnosis.check(out, result)
    code = report.exit_code(strict)
    if code:
        err.print(f"Check failed: {result['counts']['fail']} failure(s), {result['counts']['warn']} warning(s)")
        raise typer.Exit(code)


def recommend(
    data: DataOpt = Path("data/zumik"),
    top: TopOpt = TOP,
    invoice_usd: Annotated[
        float | None, typer.Option("--invoice-usd", min=0, help="Invoiced amount to reconcile with, in USD.")
    ] = None,
    period: Annotated[
        str | None,
        typer.Option("--period", help="Invoice period: 2026-06, 2026-06-09 or 2026-06-01..2026-06-30 (UTC)."),
    ] = None,
    tolerance: Annotated[
        float, typer.Option("--tolerance", min=0.0, max=0.99, help="Reconciled within this share of the invoice.")
    ] = 0.05,
    rules: RulesOpt = None,
    ttl: TtlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rank the changes worth most (volatile spans moved, 1-hour TTL, sticky routing, breakpoints) by savings
    simulated by re-running the waterfall; optionally reconcile with an invoice."""
    from zumik_cli.dataset.store import Dataset
    from zumik_cli.diagnosis.recommend import compute_recommendations
    from zumik_cli.diagnosis.reconcile import parse_period, reconcile

    if period is not None and invoice_usd is None:
        raise InputError("--period goes with --invoice-usd: pass the invoiced amount for that period")
    dataset = Dataset(data)
    options = waterfall_options(rules, ttl, None, None, None)
    reconciliation = None
    if invoice_usd is not None:
        result = reconcile(dataset, invoice_usd, parse_period(period), tolerance=tolerance, options=options)
        reconciliation = result.to_json()
    recs = compute_recommendations(dataset, options, reconciliation=reconciliation).to_json(limit=top)
    if as_json:
        print_json(recs)
    else:
        terminal_diagnosis.recommendations(out, recs, top)


def register(app: typer.Typer) -> None:
    """Add ``divergence``, ``check`` and ``recommend`` to the app, with zumik's one-place error handling."""
    app.command()(handles_errors(divergence))
    app.command()(handles_errors(check))
    app.command()(handles_errors(recommend))

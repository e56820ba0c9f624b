"""Terminal rendering of session divergence, cache-configuration checks, recommendations and reconciliation.

Only the CLI imports this module; it renders the plain dicts of the core's ``to_json`` methods, so the terminal
and ``--json`` show the same numbers. Every string from the data is escaped: prompt spans are user text.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console

from zumik_cli.render.terminal.tables import badge, escape, numbers_table, plural, tokens

SEVERITY_STYLE = {"fail": "bold red", "warn": "yellow", "info": "dim"}


def _money(value: float | None) -> str:
    if value is None:
        return "n/a"
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.4f}" if abs(value) < 1 else f"{sign}${abs(value):,.2f}"


def _write_cost(change: float | None) -> str:
    """A change in cache-write spending in words, so that its sign cannot be read against the saving beside it."""
    if change is None:
        return "n/a"
    if abs(change) < 5e-5:
        return "no change"
    return f"{_money(abs(change))} {'more' if change > 0 else 'less'}"


def divergence(console: Console, result: dict[str, Any], limit: int = 30) -> None:
    totals = result["totals"]
    console.print(
        f"Compared {plural(totals['requests_compared'], 'request')} with their parent: "
        f"{plural(totals['breaks'], 'break')}, "
        f"{tokens(totals['lost_tokens'])} tokens lost ({badge(result['evidence'])})",
        highlight=False,
    )
    if totals["by_cause"]:
        table = numbers_table("Tokens lost, by cause", ("cause", "breaks", "tokens"), ("breaks", "tokens"))
        for row in totals["by_cause"]:
            table.add_row(row["label"], f"{row['breaks']:,}", tokens(row["tokens"]))
        console.print(table)
    breaks = sorted(result["breaks"], key=lambda b: -b["lost_tokens"])
    if breaks:
        table = numbers_table(
            f"Breaks ({len(breaks):,}, largest first)",
            ("session", "request", "parent", "cause", "token", "lost", "detail"),
            ("request", "parent", "token", "lost"),
        )
        for b in breaks[:limit]:
            table.add_row(
                escape(b["session_id"]),
                str(b["index"]),
                str(b["parent_index"]),
                b["label"],
                f"{b['token']:,}",
                tokens(b["lost_tokens"]),
                escape(_detail(b)),
            )
        console.print(table)
        if len(breaks) > limit:
            console.print(f"[dim]{len(breaks) - limit:,} more breaks not shown (--json lists all)[/]")
    spans = result["volatile_spans"]
    if spans:
        table = numbers_table(
            "Volatile spans in system and tool text",
            ("where", "shape", "example", "values", "requests", "breaks"),
            ("values", "requests", "breaks"),
        )
        for span in spans[:limit]:
            table.add_row(
                escape(span["where"]),
                span["shape"] or "-",
                escape(repr(span["example"])),
                str(span["values"] or "-"),
                str(span["requests"] or "-"),
                str(span["breaks"]),
            )
        console.print(table)
    for note in result["notes"]:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)


def _detail(b: dict[str, Any]) -> str:
    detail = b["detail"]
    parts = []
    if b["gap_seconds"] is not None and b["cause"] == "idle_gap":
        parts.append(f"idle {b['gap_seconds'] / 60:.1f} min > TTL {detail.get('ttl_seconds', 0) / 60:.0f} min")
    if "target" in detail:
        parts.append(f"{detail['target']['from']} -> {detail['target']['to']}")
    tools = detail.get("tools")
    if tools:
        changed = [f"{k} {', '.join(tools[k])}" for k in ("added", "removed", "edited") if tools[k]]
        parts.append("tools " + ("; ".join(changed) or tools["change"]))
    for section in ("system", "tools"):
        span = (detail.get(section) or {}).get("span")
        if span:
            flag = "VOLATILE " if span["volatile"] else ""
            parts.append(f"{flag}{span['where']}: {span['old']!r} -> {span['new']!r}")
    history = detail.get("history")
    if history:
        parts.append(f"{history.get('change', 'changed')} at block {history['block'] + 1} ({history['kind']})")
    if detail.get("also"):
        parts.append("also " + ", ".join(detail["also"]))
    return "; ".join(parts)


def check(console: Console, report: dict[str, Any]) -> None:
    checked = report["checked"]
    counts = report["counts"]
    console.print(
        f"Checked {escape(report['target'])}: {plural(checked.get('requests', 0), 'request')} — "
        f"{counts['fail']} fail, {counts['warn']} warn, {counts['info']} info",
        highlight=False,
    )
    if report["findings"]:
        # tokens at risk are known for some checks only: the column shows when one finding has them
        at_risk = any(f["tokens_at_risk"] is not None for f in report["findings"])
        table = numbers_table(
            "Cache-configuration findings",
            ("severity", "check", "requests", *(("tokens at risk",) if at_risk else ()), "finding", "fix"),
            ("requests", "tokens at risk"),
        )
        for f in report["findings"]:
            style = SEVERITY_STYLE[f["severity"]]
            risk = (tokens(f["tokens_at_risk"]) if f["tokens_at_risk"] is not None else "-",) if at_risk else ()
            table.add_row(
                f"[{style}]{f['severity']}[/]",
                f["check"],
                f"{f['requests']:,}",
                *risk,
                escape(f["message"]),
                escape(f["fix"]),
            )
        console.print(table)
    for note in report["notes"]:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)


def recommendations(console: Console, result: dict[str, Any], top: int = 3) -> None:
    ranked = result["recommendations"][:top]
    if not ranked:
        console.print("No change zumik can simulate would save tokens or money on this data.", highlight=False)
    else:
        numbers = ("sessions", "requests", "tokens saved", "money saved", "cache writes")
        table = numbers_table(
            "Recommendations, ranked by simulated savings", ("#", "change", *numbers, "tag"), ("#", *numbers)
        )
        for rank, rec in enumerate(ranked, start=1):
            table.add_row(
                str(rank),
                escape(rec["title"]),
                f"{rec['scope']['sessions']:,}",
                f"{rec['scope']['requests']:,}",
                tokens(rec["tokens_saved"]),
                _money(rec["money_saved_usd"]),
                _write_cost(rec["extra_write_cost_usd"]),
                f"{rec['tag']} {badge(rec['evidence'])}",
            )
        console.print(table)
        for rank, rec in enumerate(ranked, start=1):
            console.print(f"[bold]{rank}.[/] {escape(rec['action'])}", highlight=False)
            for assumption in rec["assumptions"]:
                console.print(f"   [dim]assumes: {escape(assumption)}[/]", highlight=False)
        console.print(f"[dim]Money: {escape(ranked[0]['money_basis'])}.[/]", highlight=False)
    if result.get("reconciliation"):
        reconciliation(console, result["reconciliation"])
    for note in result.get("notes", []):
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)


def reconciliation(console: Console, rec: dict[str, Any]) -> None:
    style = "bold green" if rec["reconciled"] else "bold red"
    console.print(
        f"Invoice {_money(rec['invoice_usd'])} for {escape(rec['period']['label'])} vs computed "
        f"{_money(rec['computed_usd'])} (input {_money(rec['computed']['input_usd'])}, output "
        f"{_money(rec['computed']['output_usd'])}, {rec['requests']:,} requests): difference "
        f"{_money(rec['difference_usd'])} -> [{style}]{rec['status']}[/] (tolerance {rec['tolerance']:.0%})",
        highlight=False,
    )
    for reason in rec["reasons"]:
        console.print(f"   [dim]{escape(reason)}[/]", highlight=False)

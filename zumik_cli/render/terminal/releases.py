"""Terminal rendering of releases, verification, the policy comparison and explanations (rich).

Only the CLI imports this module; it renders the plain dicts that the core's ``to_json`` methods return, so the
terminal and ``--json`` always show the same numbers.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from zumik_cli.render.terminal.tables import badge, escape, percent, tokens


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"${value:,.4f}" if abs(value) < 1 else f"${value:,.2f}"


def _signed_money(value: float | None) -> str:
    if value is None:
        return ""
    return ("+" if value >= 0 else "-") + _money(abs(value))


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"


def releases(console: Console, rows: list[dict[str, Any]], title: str) -> None:
    table = Table(title=title)
    for column in ("id", "alias", "created (UTC)", "supersedes", "policy", "targets"):
        table.add_column(column, overflow="fold", min_width=18 if column in ("id", "supersedes") else None)
    for row in rows:
        created = row["created_at"][:16].replace("T", " ")
        table.add_row(
            row["id"], row["alias"], created, row["supersedes"] or "-", row["policy"], str(len(row["targets"]))
        )
    console.print(table)


def release(console: Console, doc: dict[str, Any]) -> None:
    head = Table(title=f"Release {doc['id']}", show_header=False)
    constraints = doc["constraints"]
    for name, value in (
        ("alias", doc["alias"]),
        ("created at", doc["created_at"]),
        ("supersedes", doc["supersedes"] or "-"),
        ("policy", doc["policy"]),
        ("max latency", _ms(constraints["max_latency_ms"]) if constraints["max_latency_ms"] else "-"),
        ("allowed providers", ", ".join(constraints["allowed_providers"]) or "any"),
        ("allowed regions", ", ".join(constraints["allowed_regions"]) or "any"),
        ("digest", doc["digest"]),
        ("notes", doc["notes"] or "-"),
    ):
        head.add_row(name, str(value))
    console.print(head)
    table = Table(title="Targets (in release order; prices per Mtok)")
    for column in ("target", "in / out $", "read / write $", "TTFT p50 / p95", "ms/ktok in", "ms/tok out"):
        table.add_column(column, justify="left" if column == "target" else "right", overflow="fold")
    for target in doc["targets"]:
        prices, latency = target["prices_per_mtok"], target["latency"]
        table.add_row(
            target["key"],
            f"{prices['input']:g} / {prices['output']:g}",
            f"{prices['cache_read']:g} / {prices['cache_write']:g}",
            f"{latency['ttft_ms']['p50']:g} / {latency['ttft_ms']['p95']:g}",
            f"{latency['input_ms_per_ktok']:g}",
            f"{latency['output_ms_per_token']:g}",
        )
    console.print(table)


def verification(console: Console, report: dict[str, Any]) -> None:
    for p in report["problems"]:
        style = "red" if p["severity"] == "error" else "yellow"
        console.print(f"[{style}]{p['severity']}[/] {p['release']} {p['field']}: {p['message']}", highlight=False)
    against = f" against {report['dataset']}" if report["dataset"] else ""
    state = "[green]verified[/]" if report["ok"] else "[red]NOT verified[/]"
    console.print(f"{report['releases']} release(s) in {report['source']}{against}: {state}", highlight=False)


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 1000:.1f}"


def simulation(console: Console, result: dict[str, Any]) -> None:
    """One row per policy; the deltas are against ``recorded``, the first row."""
    table = Table(
        title=f"Routing policies: {result['requests']:,} requests, seed {result['seed']}, evidence "
        f"{badge(result['evidence'])}",
        box=box.SIMPLE_HEAD,
        padding=(0, 0, 0, 1),
        pad_edge=False,
    )
    table.add_column("policy", no_wrap=True, min_width=23)
    for column in ("cost", "vs rec.", "reuse", "vs rec. ", "p50/p95 s", "writes", "churn"):
        table.add_column(column.strip(), justify="right", no_wrap=True, min_width=len(column.strip()))
    for row in result["policies"]:
        versus = row.get("vs_recorded")
        cost_delta = reuse_delta = ""
        if versus:
            share = versus["cost_share"]
            cost_delta = f"{share * 100:+.1f}%" if share is not None else _signed_money(versus["cost"])
            reuse_delta = f"{versus['realized_rate'] * 100:+.1f}pt"
        table.add_row(
            row["policy"],
            _money(row["cost"]),
            cost_delta,
            percent(row["realized_rate"]),
            reuse_delta,
            f"{_seconds(row['latency_p50_ms'])}/{_seconds(row['latency_p95_ms'])}",
            tokens(row["cache_write_tokens"]),
            percent(row["churn"]),
        )
    console.print(table)
    for reason, count in result["unresolved"].items():
        console.print(
            f"[yellow]{count} request(s) kept their recorded target:[/] {reason.replace('_', ' ')}", highlight=False
        )
    console.print(
        "[dim]Churn: share of decisions whose target differs from the recorded one. "
        + " ".join(f"{n[0].upper()}{n[1:]}." for n in result["notes"])
        + "[/]",
        highlight=False,
    )


def explanation(console: Console, result: dict[str, Any]) -> None:
    record = Table(title=f"Resolution record — {result['trace_id']} ({result['policy']})", show_header=False)
    for name, value in result["record"].items():
        record.add_row(name, str(value if value is not None else "-"))
    decision = result["decision"]
    for name in ("resolved_target", "release_source", "prompt_tokens", "realized_tokens", "cache_write_tokens"):
        record.add_row(name, str(decision[name] if decision[name] is not None else "-"))
    record.add_row("cost", _money(decision["cost"]))
    record.add_row("latency", _ms(decision["latency_ms"]))
    record.add_row("evidence", badge(decision["evidence"]))
    console.print(record)
    reuse = result["reuse"]
    stages = Table(title="Reuse accounting (waterfall stages of this request)")
    stages.add_column("stage")
    stages.add_column("tokens", justify="right")
    for name, value in reuse["stages"].items():
        stages.add_row(name.replace("_", " "), tokens(value))
    stages.add_row("realized (reported)", tokens(reuse["realized_reported"]))
    console.print(stages)
    for label, key in (
        ("Shares its longest prefix with", "shares_prefix_with"),
        ("Shares a prefix on the same KV key with", "shares_prefix_on_same_key_with"),
    ):
        sharer = reuse[key]
        if sharer:
            console.print(
                f"{label} {sharer['trace_id']}: {sharer['tokens']:,} tokens ({sharer['blocks']} blocks), "
                f"{sharer['model']}, tenant {sharer['tenant']}, {sharer['seconds_before']} s earlier",
                highlight=False,
            )
    if not reuse["shares_prefix_with"]:
        console.print("No earlier request shares a prefix with it.")
    for cut in reuse["cuts"]:
        console.print(f"[yellow]{cut['label']}[/] cut {cut['tokens']:,} tokens: {cut['why']}", highlight=False)
    found = reuse.get("session_break")
    if found:
        gap = f", {found['gap_seconds']:,.0f} s after it" if found["gap_seconds"] is not None else ""
        console.print(
            f"Session break: [yellow]{found['label']}[/] lost {found['lost_tokens']:,} tokens of the cache of its "
            f"parent {escape(found['parent_trace_id'])} (request {found['parent_index']} of session "
            f"{escape(found['session_id'])}, this is {found['index']}){gap}, from token {found['token']:,}",
            highlight=False,
        )
    if reuse.get("session_break_vs_cut"):
        console.print(escape(reuse["session_break_vs_cut"]), highlight=False)
    again = result["recomputation"]
    style = "green" if again["outcome"] == "same" else "red"
    name = f" ({again['divergence']})" if again.get("divergence") else ""
    console.print(f"Recomputation: [{style}]{again['outcome']}{name}[/] — {again['detail']}", highlight=False)

"""Terminal rendering with rich: the waterfall table with evidence badges, causes, money and footnotes.

Only the CLI imports this module; it turns core results (plain dicts and dataclasses) into text.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape as markup_escape
from rich.table import Table

from zumik_cli.core.printable import printable

PIPED_WIDTH = 160


def escape(text: object) -> str:
    """A string from the data as terminal text: rich markup escaped, bidi overrides and control characters shown
    as escapes (``core.printable``), so that no name can reorder or rewrite the line it is printed on."""
    return markup_escape(printable(text))


def console(stderr: bool = False) -> Console:
    """A console for the command's output: the terminal's width, or 160 columns when piped or logged, where rich's
    default of 80 would cut release ids, models and prices short (COLUMNS, when set, still decides)."""
    made = Console(stderr=stderr, soft_wrap=True)
    if not made.is_terminal and "COLUMNS" not in os.environ:
        made.width = PIPED_WIDTH
    return made


EVIDENCE_STYLE = {
    "measured": "bold green",
    "replayed": "bold cyan",
    "simulated": "bold yellow",
    "estimated": "bold magenta",
}


def tokens(value: int | None) -> str:
    if value is None:
        return "unknown"
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= size:
            return f"{value / size:.1f}{suffix}"
    return str(value)


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 request``, ``2 requests``: counts read as English in every table title and sentence."""
    return f"{count:,} {word if count == 1 else words or word + 's'}"


def numbers_table(title: str, columns: Sequence[str], numbers: Collection[str]) -> Table:
    """A titled table whose number columns are right-justified and the rest left, as every listing here is."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right" if column in numbers else "left")
    return table


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def badge(evidence: str) -> str:
    return f"[{EVIDENCE_STYLE.get(evidence, 'bold')}]{evidence}[/]"


def ingest_summary(console: Console, summary: Any) -> None:
    if not summary.requests and not summary.quarantined:
        skipped = len(summary.inputs_skipped)
        already = f"{plural(skipped, 'file')} already ingested" if skipped else "no new request in the inputs"
        duplicates = summary.duplicates_skipped
        known = f", {plural(duplicates, 'request')} already there" if duplicates else ""
        console.print(f"Nothing new for {escape(summary.dataset)}: {already}{known}.", highlight=False)
        return
    table = Table(title=f"Ingested into {escape(summary.dataset)}", show_header=False)
    table.add_row("requests", f"{summary.requests:,}")
    table.add_row("quarantined", f"{summary.quarantined:,}")
    table.add_row("duplicates skipped", f"{summary.duplicates_skipped:,}")
    table.add_row("formats", escape(", ".join(f"{k}: {v:,}" for k, v in summary.formats.items()) or "-"))
    table.add_row("prompt tokens reported", f"{summary.prompt_tokens_reported:,}")
    table.add_row("cached tokens reported", f"{summary.cached_tokens_reported:,}")
    table.add_row("unique blocks tokenized", f"{summary.unique_blocks:,}")
    console.print(table)


def ingest_warnings(console: Console, summary: Any) -> None:
    """Paths and notes are the user's text, never markup: a folder named ``[red]`` is printed as it is."""
    if summary.quarantined:
        console.print(
            f"[yellow]{plural(summary.quarantined, 'record')} quarantined[/] with reasons in "
            f"{escape(summary.dataset)}/quarantine/ (see `zumik quarantine`)"
        )
    for path in summary.inputs_skipped:
        console.print(f"[dim]{escape(path)} was already ingested: skipped[/]")
    for entry in getattr(summary, "not_read", ()):
        console.print(f"[yellow]{escape(entry['path'])} not read[/]: {escape(entry['reason'])}")
    for note in summary.notes:
        console.print(f"[dim]note: {escape(note)}; counts marked estimated[/]")


def simple_table(console: Console, title: str, rows: list[dict[str, Any]]) -> None:
    table = Table(title=title)
    for column in rows[0] if rows else []:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)


def assumptions(options: dict[str, Any] | None) -> str:
    """One line naming what the figures were computed under: a what-if never reads like the baseline."""
    if not options:
        return ""
    phrases = escape(", ".join(str(p) for p in options.get("assumptions", ())))
    return f"[bold yellow]What-if:[/] {phrases}" if options.get("what_if") else f"[dim]Baseline: {phrases}[/]"


def waterfall(
    console: Console,
    summary: dict[str, Any],
    *,
    worst: list[dict[str, Any]] | None = None,
    worst_by_session: dict[str, str] | None = None,
    definitions: bool = False,
) -> None:
    """The waterfall's tables; ``worst`` requests and each session's worst one give trace ids to explain, and the
    stage definitions print only when asked (they are the same every run)."""
    header = assumptions(summary.get("options"))
    if header:
        console.print(header, highlight=False)
    table = Table(title=f"Reuse waterfall — {plural(summary['requests'], 'request')}")
    table.add_column("stage")
    table.add_column("tokens", justify="right")
    table.add_column("share of input", justify="right")
    table.add_column("request-weighted", justify="right")
    table.add_column("evidence")
    weighted = summary.get("request_weighted", {})
    for key, label in (
        ("total_input_tokens", "Total input"),
        ("eligible", "Eligible"),
        ("candidate", "Candidate"),
        ("realized", "Realized"),
        ("missed", "Missed"),
    ):
        stage = summary[key]
        table.add_row(
            label,
            tokens(stage["tokens"]),
            percent(stage["rate"]),
            percent(weighted.get(key)) if key in weighted else "",
            badge(stage["evidence"]),
        )
    console.print(table)
    bridge(console, summary)
    over = summary["over_realized"]
    if over["requests"]:
        console.print(
            f"Over-realized: {over['requests']} requests, {tokens(over['tokens'])} tokens above "
            f"candidate ({over['explanation']})",
            highlight=False,
        )
    causes = [c for c in summary["causes"] if c["tokens"]]
    if causes:
        cause_table = numbers_table(
            "Where reuse was lost", ("stage", "cause", "tokens", "requests", "evidence"), ("tokens", "requests")
        )
        for cause in sorted(causes, key=lambda c: -c["tokens"]):
            cause_table.add_row(
                cause["stage"],
                cause["label"],
                tokens(cause["tokens"]),
                str(cause["requests"]),
                badge(cause["evidence"]),
            )
        console.print(cause_table)
    money = summary["money"]
    unpriced = "; ".join(f"{row['requests']:,} requests unpriced: {row['reason']}" for row in money.get("unpriced", []))
    if money.get("billed") is None:
        console.print(f"Money: unpriced. {unpriced or 'No list prices.'}", highlight=False)
    else:
        console.print(
            f"Money ({money['currency']}, list prices as of {money['prices_as_of']}, {badge(money['evidence'])}): "
            f"billed ${money['billed']:,.2f} (input ${money['billed_input']:,.2f} + output "
            f"${money['billed_output']:,.2f}), without cache ${money['without_cache']:,.2f}, "
            f"realized savings ${money['realized_savings']:,.2f}, missed savings ${money['missed_savings']:,.2f}"
            + (f"; {unpriced}" if unpriced else "")
        )
    for name, rows in summary.get("breakdowns", {}).items():
        if rows:
            breakdown(console, name, rows, worst_by_session if name == "session" else None)
    if worst:
        requests(console, worst, f"Worst {plural(len(worst), 'request')} (most eligible tokens not read from cache)")
        console.print("[dim]Why one request lost reuse: zumik explain TRACE_ID; all of them: zumik requests[/]")
    for note in summary.get("cannot_compute", []):
        console.print(f"[yellow]{note['row']}:[/] {escape(note['reason'])}", highlight=False)
    kv_memory(console, summary.get("kv_memory"))
    tiers(console, summary)
    if definitions:
        for key in ("eligible", "candidate", "realized", "missed"):
            console.print(f"[dim]{key}: {escape(summary['definitions'][key])}[/]", highlight=False)
    else:
        console.print("[dim]What each stage counts: --definitions[/]", highlight=False)
    console.print(
        "[dim]Rules: "
        + ", ".join(f"{r['name']} {r['version']} ({r['effective_from']})" for r in summary["rules"])
        + "[/]",
        highlight=False,
    )


BRIDGE_WIDTH = 24  # characters of bar for the whole input


def bridge(console: Console, summary: dict[str, Any]) -> None:
    """The report's reuse bridge as compact text: each stage a bar, each loss a step down from it (the steps are the
    report's own, ``bridge_steps``: one computation for both)."""
    from zumik_cli.render.report.sections import bridge_steps

    total = summary["total_input_tokens"]["tokens"] or 0
    steps = [
        step for step in bridge_steps(summary) if step.tokens is not None and (step.kind == "stage" or step.tokens)
    ]
    if not total or not steps:
        return
    width = max(len(step.label) for step in steps) + 4
    console.print("Where the input went", style="bold", highlight=False)
    for step in steps:
        stage = step.kind == "stage"
        count = int(round(step.tokens or 0))
        bar = ("█" if stage else "▒") * max(round(BRIDGE_WIDTH * count / total), 1 if count else 0)
        name = step.label if stage else f"  {'-' if step.kind == 'loss' else '+'} {step.label}"
        console.print(f"{escape(name):<{width}}{tokens(count):>7}  {bar}", highlight=False)


def tiers(console: Console, summary: dict[str, Any]) -> None:
    """The bounded candidate by the cache tier that served it, and the curve's second-tier share at each point."""
    split = summary.get("second_tier")
    if split:
        first, second = split["first_tier"], split["second_tier"]
        console.print(
            f"Candidate by tier: {tokens(first['tokens'])} ({percent(first['rate'])}) from a first tier of "
            f"{split['first_tier_capacity_tokens']:,} tokens, {tokens(second['tokens'])} ({percent(second['rate'])}) "
            f"from a second tier of {split['capacity_tokens']:,} tokens [{badge(split['evidence'])}]",
            highlight=False,
        )
    points = [p for p in summary.get("capacity_curve", []) if "second_tier_rate" in p and p["capacity_tokens"]]
    if points:
        shown = ", ".join(
            f"{p['capacity_tokens']:,} {percent(p['rate'])} ({percent(p['second_tier_rate'])} tier 2)" for p in points
        )
        console.print(f"Capacity curve with the second tier: {shown}", highlight=False)


def kv_memory(console: Console, memory: dict[str, Any] | None) -> None:
    """The capacity curve in GiB of KV memory for one model, and what a share of the unbounded reuse needs."""
    if not memory:
        return
    points = ", ".join(
        f"{p['gib']:,.1f} GiB {percent(p['rate'])}" for p in memory["points"] if p["capacity_tokens"] is not None
    )
    console.print(
        f"KV memory for {escape(memory['model'])} ({memory['bytes_per_token']:,} bytes a token, {memory['dtype']}): "
        f"{points} [{badge(memory['evidence'])}]",
        highlight=False,
    )
    found = memory["for_share"]
    share = f"{memory['share']:.0%} of the unbounded reuse"
    console.print(
        f"{share} needs {found['capacity_tokens']:,} tokens = {found['gib']:,.1f} GiB of KV cache"
        if found
        else f"No capacity on the curve keeps {share}: add larger ones with --curve",
        highlight=False,
    )


BREAKDOWN_ROWS = 10
STAGES = ("total", "eligible", "candidate", "realized", "missed")
# Below this width the listings keep the columns that say what happened (total, realized, missed) and drop the
# ones that say how (eligible, candidate), so that keys and trace ids are printed whole on an 80-column terminal.
NARROW = 110


def listing(console: Console, title: str, columns: Sequence[tuple[str, bool]]) -> Table:
    """A compact table (no inner rules) whose text columns (``False``) are never cut and numbers right-aligned."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for name, number in columns:
        if number:
            table.add_column(name, justify="right", min_width=len(name), no_wrap=True)
        else:
            table.add_column(name, overflow="fold")
    return table


def breakdown(console: Console, name: str, rows: list[dict[str, Any]], worst: dict[str, str] | None = None) -> None:
    """One breakdown, the keys that missed most first; sessions name their worst request, to explain it."""
    stages = STAGES if console.width >= NARROW else ("total", "realized", "missed")
    more = f", top {BREAKDOWN_ROWS} of {len(rows):,}" if len(rows) > BREAKDOWN_ROWS else ""
    columns = [(name, False), ("requests", True), *((s, True) for s in stages)]
    table = listing(console, f"By {name}{more}", columns + ([("worst request", False)] if worst is not None else []))
    for row in rows[:BREAKDOWN_ROWS]:
        cells = [escape(str(row["key"] or "-")), f"{row['requests']:,}", *(tokens(row[c]) for c in stages)]
        if worst is not None:
            cells.append(worst.get(row["key"], ""))
        table.add_row(*cells)
    console.print(table)


def requests(console: Console, rows: list[dict[str, Any]], title: str) -> None:
    """Requests with their trace ids (never cut: they are what `zumik explain` takes) and their main cause."""
    wide = console.width >= NARROW
    numbers = ("total", "candidate", "realized", "missed") if wide else ("total", "missed")
    texts = ("trace id", "session", "model") if wide else ("trace id", "model")
    table = listing(console, title, [*((t, False) for t in texts), *((n, True) for n in numbers), ("cause", False)])
    keys = {"trace id": "trace_id", "session": "session", "model": "model"}
    for row in rows:
        table.add_row(
            *(escape(row[keys[t]] or "-") for t in texts),
            *(tokens(row[c]) for c in numbers),
            escape(row["cause_label"] or "-"),
        )
    console.print(table)


def rules(console: Console, packs: list[dict[str, Any]]) -> None:
    table = Table(title="Rules packs")
    for column in ("name", "version", "effective from", "TTL s", "minimum", "granularity", "source"):
        table.add_column(column)
    for pack in packs:
        gran = pack["granularity"]
        detail = gran.get("kind", "") + (f" {gran['block_size']}" if "block_size" in gran else "")
        table.add_row(
            pack["name"],
            pack["version"],
            pack["effective_from"],
            str(pack["ttl_seconds"] or "none"),
            str(pack["minimum_tokens"]),
            detail,
            pack["source"],
        )
    console.print(table)
    media = [(pack["name"], pack["media"]) for pack in packs if pack.get("media")]
    if media:
        table = Table(title="Image and document tokens")
        for column in ("name", "rule", "as of", "unknown image", "document page", "source"):
            table.add_column(column)
        for name, rule in media:
            table.add_row(
                name,
                rule["rule"],
                rule["as_of"],
                str(rule["unknown_image_tokens"]),
                str(rule["document_page_tokens"]),
                rule["source"],
            )
        console.print(table)
        for name, rule in media:
            console.print(f"{name}: {rule['nominal']}", highlight=False)


def replay(console: Console, summary: dict[str, Any]) -> None:
    engine = summary["engine"]
    header = assumptions(summary.get("options"))
    if header:
        console.print(header, highlight=False)
    console.print(
        f"Replayed {summary['requests']} requests of {summary['release'] or 'every release'} ({summary['policy']}) "
        f"on {engine['name']} "
        f"{engine['version']} ({engine['device']}), block size {engine['block_size']}, "
        f"capacity {engine['capacity_blocks']} blocks"
        + ("" if engine.get("capacity_confirmed", True) else " (as given: the server did not report its capacity)")
        + (" (what the engine allocated: no --kv-blocks)" if engine.get("capacity_source") == "allocated" else ""),
        highlight=False,
    )
    table = numbers_table(
        "Predicted vs measured prefix-cache hits",
        ("", "tokens", "share of prompt", "evidence"),
        ("tokens", "share of prompt"),
    )
    table.add_row("prompt", tokens(summary["prompt_tokens"]), "", "")
    table.add_row(
        "predicted", tokens(summary["predicted_tokens"]), percent(summary["predicted_rate"]), badge("simulated")
    )
    table.add_row("measured", tokens(summary["measured_tokens"]), percent(summary["measured_rate"]), badge("replayed"))
    console.print(table)
    console.print(
        f"Exact agreement: {percent(summary['exact_agreement'])} of requests; token-weighted error "
        f"{summary['token_error_pp']} percentage points",
        highlight=False,
    )
    for row in summary["disagreements"]:
        console.print(
            f"  {row['trace_id']}: predicted {row['predicted_tokens']}, measured {row['measured_tokens']} "
            f"— {row['reason']}",
            highlight=False,
            markup=False,
        )


def replay_comparison(console: Console, result: dict[str, Any]) -> None:
    """One row a policy: simulated, predicted and measured reuse of the requests its decisions sent."""
    table = numbers_table(
        f"Policies replayed on {result['engine']['name']} ({result['release'] or 'every release'})",
        ("policy", "requests", "simulated", "predicted", "measured", "measured - simulated", "agreement"),
        ("requests", "simulated", "predicted", "measured", "measured - simulated", "agreement"),
    )
    for row in result["policies"]:
        gap = row["measured_minus_simulated_pp"]
        table.add_row(
            escape(row["policy"]),
            f"{row['requests']:,}",
            percent(row["simulated_rate"]),
            percent(row["predicted_rate"]),
            percent(row["measured_rate"]),
            "n/a" if gap is None else f"{gap:+.2f} pt",
            percent(row["exact_agreement"]),
        )
    console.print(table)
    console.print(". ".join(note[0].upper() + note[1:] for note in result["notes"]) + ".", highlight=False)

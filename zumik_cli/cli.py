"""zumik's command line: each command parses options, calls one core function and renders the result.

stdout carries data (tables, ``--json``); stderr carries talk (progress, warnings, errors). Every
``ZumikError`` becomes a one-line ``Error: ...`` and its exit code here, in one place.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

from . import __version__, terminal
from .errors import ZumikError

app = typer.Typer(
    help="Measure how much of your LLM agents' input could be reused as prefix (KV) cache, how much the "
    "provider's rules allowed, how much was reused, and why the rest was missed.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)

out = terminal.console()
err = terminal.console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

DataOpt = Annotated[Path, typer.Option("--data", "-d", help="Dataset folder (Parquet + manifest.json).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout instead of tables.")]


def handles_errors(func: F) -> F:
    """Turn zumik's own errors into one line on stderr and a meaningful exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ZumikError as exc:
            err.print(f"[bold red]Error:[/] {escape(str(exc))}", highlight=False, markup=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def progress_bar(label: str) -> tuple[Progress, Callable[[int, int], None]]:
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    task = bar.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return bar, update


@app.callback(invoke_without_command=True)
def main(
    version: Annotated[bool, typer.Option("--version", help="Show zumik's version and exit.")] = False,
) -> None:
    if version:
        out.print(f"zumik {__version__}")
        raise typer.Exit()


@app.command()
@handles_errors
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Trace files or folders.", exists=False)],
    data: DataOpt = Path("data/zumik"),
    format: Annotated[str | None, typer.Option("--format", "-f", help="Force a format (see `zumik formats`).")] = None,
    tokenizer: Annotated[
        str | None, typer.Option(help="Tokenizer for every request: tiktoken:NAME or hf:/path/tokenizer.json.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Read traces into a dataset: normalise, identify, tokenize unique blocks once, quarantine bad records."""
    from .ingest import ingest as run_ingest

    bar, update = progress_bar("ingest")
    with bar:
        summary = run_ingest(paths, data, format=format, tokenizer=tokenizer, progress=update)
    if as_json:
        print_json(summary.to_json())
    else:
        terminal.ingest_summary(out, summary)
    terminal.ingest_warnings(err, summary)


@app.command()
@handles_errors
def quarantine(data: DataOpt = Path("data/zumik"), as_json: JsonOpt = False) -> None:
    """List the records ingest could not read, with file, line and reason."""
    from .dataset import Dataset

    entries = Dataset(data).quarantine_entries()
    if as_json:
        print_json(entries)
    elif entries:
        terminal.simple_table(
            out,
            f"Quarantine ({len(entries)})",
            [{"file": e["file"], "line": e["line"], "reason": e["reason"]} for e in entries],
        )
    else:
        err.print("Nothing quarantined.")


@app.command()
@handles_errors
def formats(as_json: JsonOpt = False) -> None:
    """List the trace formats zumik reads, in the order auto-detection tries them."""
    from .readers import load_formats

    rows = [{"name": r.name, "description": r.description} for r in load_formats().values()]
    if as_json:
        print_json(rows)
    else:
        terminal.simple_table(out, "Formats", rows)


def _options(
    rules: str | None,
    ttl: str | None,
    capacity_tokens: int | None,
    by: list[str] | None,
    rules_file: list[Path] | None,
) -> Any:
    from .waterfall import WaterfallOptions

    ttl_seconds, ttl_none = None, False
    if ttl is not None:
        if ttl.lower() in ("none", "inf", "off"):
            ttl_none = True
        else:
            try:
                ttl_seconds = float(ttl)
            except ValueError:
                raise ZumikError(f"--ttl takes seconds or 'none', not {ttl!r}") from None
    return WaterfallOptions(
        rules=rules,
        ttl_seconds=ttl_seconds,
        ttl_none=ttl_none,
        capacity_tokens=capacity_tokens,
        by=tuple(by or ()),
        rules_files=tuple(str(p) for p in rules_file or ()),
    )


RulesOpt = Annotated[
    str | None, typer.Option("--rules", help="Force one rules pack for every request (see `zumik rules`).")
]
TtlOpt = Annotated[str | None, typer.Option("--ttl", help="Override the packs' TTL: seconds, or 'none'.")]
CapOpt = Annotated[int | None, typer.Option("--capacity-tokens", help="LRU cache capacity in tokens.")]
ByOpt = Annotated[
    list[str] | None,
    typer.Option("--by", help="Break down by model, alias, release, tenant, session, day (repeatable)."),
]
RulesFileOpt = Annotated[list[Path] | None, typer.Option("--rules-file", help="Add a rules pack file of your own.")]


@app.command()
@handles_errors
def waterfall(
    data: DataOpt = Path("data/zumik"),
    by: ByOpt = None,
    rules: RulesOpt = None,
    ttl: TtlOpt = None,
    capacity_tokens: CapOpt = None,
    rules_file: RulesFileOpt = None,
    curve: Annotated[
        str | None,
        typer.Option(help="Capacities (tokens, comma-separated) for the LRU curve, e.g. 1000000,3000000,10000000."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compute the reuse waterfall (total, eligible, candidate, realized, missed) with causes and money."""
    import dataclasses

    from .dataset import Dataset
    from .waterfall import CAPACITY_LADDER, compute_waterfall

    options = _options(rules, ttl, capacity_tokens, by, rules_file)
    if curve is not None:
        try:
            ladder = tuple(int(float(c)) for c in curve.split(",") if c.strip())
        except ValueError:
            raise ZumikError(f"--curve takes capacities in tokens separated by commas, not {curve!r}") from None
        options = dataclasses.replace(options, capacities=(*ladder, None) if ladder else CAPACITY_LADDER)
    result = compute_waterfall(Dataset(data), options)
    if as_json:
        print_json(result.summary)
    else:
        terminal.waterfall(out, result.summary)


@app.command()
@handles_errors
def diagnose(
    paths: Annotated[list[Path], typer.Argument(help="Trace files or folders.")],
    data: Annotated[
        Path | None, typer.Option("--data", "-d", help="Dataset folder (default: data/<name of the first input>).")
    ] = None,
    format: Annotated[str | None, typer.Option("--format", "-f", help="Force a format.")] = None,
    rules: RulesOpt = None,
    ttl: TtlOpt = None,
    capacity_tokens: CapOpt = None,
    report: Annotated[
        Path | None, typer.Option("--report", "-o", help="HTML report path (default: reports/<name>.html).")
    ] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip the HTML report.")] = False,
    releases: Annotated[
        Path | None,
        typer.Option("--releases", help="Alias release history (YAML): also simulate every routing policy."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest traces, compute the waterfall and write the HTML report: the main job, in one go."""
    from .dataset import Dataset
    from .ingest import ingest as run_ingest
    from .waterfall import compute_waterfall

    name = paths[0].name.split(".")[0] or "traces"
    data = data or Path("data") / name
    bar, update = progress_bar("ingest")
    with bar:
        summary = run_ingest(paths, data, format=format, progress=update)
    terminal.ingest_warnings(err, summary)
    options = _options(rules, ttl, capacity_tokens, ["model", "alias", "release", "tenant", "session"], None)
    result = compute_waterfall(Dataset(data), options)
    simulation = None
    if releases is not None:
        from .releases import load_history
        from .simulate import simulate as run_simulation

        simulation = run_simulation(data, load_history(releases)).to_json()

    # The few changes worth most, simulated by re-running the waterfall (cli_diagnosis, recommend): they end the
    # terminal output, open the report, and sit under "recommendations" in --json.
    from .cli_diagnosis import diagnose_recommendations, show_recommendations

    recommendations = diagnose_recommendations(Dataset(data), options, baseline=result)

    report_path = None
    if not no_report:
        from .report import write_dataset_report

        report_path = write_dataset_report(
            Dataset(data), result.summary, report or Path("reports") / f"{name}.html", recommendations=recommendations
        )
    if as_json:
        print_json(
            {
                **result.summary,
                "ingest": summary.to_json(),
                "simulation": simulation,
                "report": str(report_path) if report_path else None,
                "recommendations": recommendations,
            }
        )
    else:
        terminal.waterfall(out, result.summary)
        if simulation is not None:
            from . import terminal_releases

            terminal_releases.simulation(out, simulation)
        show_recommendations(out, recommendations)
        if report_path:
            err.print(f"Report: {report_path}")


@app.command()
@handles_errors
def report(
    data: DataOpt = Path("data/zumik"),
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the HTML file.")] = Path(
        "reports/zumik.html"
    ),
    rules: RulesOpt = None,
    ttl: TtlOpt = None,
    capacity_tokens: CapOpt = None,
    generated_at: Annotated[
        str | None, typer.Option(help="Fixed generation time to print (for reproducible files).")
    ] = None,
    include_text: Annotated[
        bool,
        typer.Option(help="Show the prompt text where system prompts and tool definitions changed (off by default)."),
    ] = False,
) -> None:
    """Write the self-contained HTML report of a dataset, recommendations included (one file, no network needed)."""
    from .cli_diagnosis import diagnose_recommendations
    from .dataset import Dataset
    from .report import write_dataset_report
    from .waterfall import compute_waterfall

    dataset = Dataset(data)
    options = _options(rules, ttl, capacity_tokens, ["model", "alias", "release", "tenant", "session"], None)
    result = compute_waterfall(dataset, options)
    recommendations = diagnose_recommendations(dataset, options, baseline=result)
    path = write_dataset_report(
        dataset,
        result.summary,
        output,
        generated_at=generated_at,
        include_text=include_text,
        recommendations=recommendations,
    )
    out.print(str(path))


@app.command()
@handles_errors
def replay(
    release: Annotated[
        str | None,
        typer.Option("--release", help="Replay the requests resolved through this alias release (default: all)."),
    ] = None,
    data: DataOpt = Path("data/zumik"),
    policy: Annotated[
        str, typer.Option(help="Whose decisions select the requests: recorded or a simulated policy.")
    ] = ("recorded"),
    engine: Annotated[str, typer.Option(help="vllm (in process) or openai-http (a running server).")] = "vllm",
    model: Annotated[Path | None, typer.Option(help="A real model folder for the in-process engine.")] = None,
    dummy_model: Annotated[
        str | None, typer.Option(help="A model config shipped with zumik, run with dummy weights (default tiny-llama).")
    ] = None,
    block_size: Annotated[int, typer.Option(help="KV block size in tokens (a multiple of 32 on the CPU).")] = 32,
    kv_blocks: Annotated[int | None, typer.Option(help="KV cache capacity in blocks (default: what fits).")] = None,
    limit: Annotated[int | None, typer.Option(help="Replay at most this many requests (the first in time).")] = None,
    url: Annotated[str | None, typer.Option(help="Server URL for --engine openai-http.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay chosen requests on a real vLLM engine and set its measured prefix-cache hits beside zumik's prediction."""
    from .dataset import Dataset
    from .replay import ReplayOptions
    from .replay import replay as run_replay

    options = ReplayOptions(
        release=release,
        policy=policy,
        engine=engine,
        model=model,
        dummy_model=dummy_model,
        block_size=block_size,
        kv_blocks=kv_blocks,
        limit=limit,
        url=url,
    )
    err.print("Starting the engine (tens of seconds on a CPU)...")
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        "{task.completed}/{task.total}",
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    task = bar.add_task("replay", total=None)
    with bar:
        result = run_replay(
            Dataset(data), options, progress=lambda done, total: bar.update(task, completed=done, total=total)
        )
    if as_json:
        print_json(result.summary)
    else:
        terminal.replay(out, result.summary)


@app.command("rules")
@handles_errors
def rules_list(
    rules_file: RulesFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the rules packs loaded (shipped ones, ZUMIK_RULES_PATH folders and --rules-file)."""
    from .rules import load_packs

    packs = [p.describe() for p in load_packs(tuple(str(f) for f in rules_file or ())).values()]
    if as_json:
        print_json(packs)
    else:
        terminal.rules(out, packs)


@app.command()
@handles_errors
def synth(
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL file to write.")] = Path(
        "sample_traces/agents.jsonl"
    ),
    sessions: Annotated[int, typer.Option(help="Number of agent sessions.")] = 40,
    tenants: Annotated[int, typer.Option(help="Number of tenants.")] = 3,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same bytes.")] = 0,
    parts: Annotated[
        int, typer.Option(help="Spread whole sessions over N files named NAME-1.jsonl ... NAME-N.jsonl.")
    ] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Generate realistic agent traffic in zumik JSONL and its alias release history (deterministic for a seed)."""
    from .synth import SynthConfig, write_jsonl, write_jsonl_parts
    from .synth_releases import write_release_history

    output.parent.mkdir(parents=True, exist_ok=True)
    config = SynthConfig(seed=seed, sessions=sessions, tenants=tenants)
    if parts > 1:
        paths = [output.with_name(f"{output.stem}-{i}{output.suffix}") for i in range(1, parts + 1)]
        summary = write_jsonl_parts(config, paths)
    else:
        paths = [output]
        summary = write_jsonl(config, output)
    releases = output.with_name("releases.yaml")
    write_release_history(config, releases)
    if as_json:
        print_json({"paths": [str(p) for p in paths], "releases": str(releases), **summary.__dict__})
    else:
        err.print(
            f"Wrote {summary.requests} requests in {summary.sessions} sessions to {', '.join(map(str, paths))} "
            f"and their release history to {releases}"
        )


from .cli_export import register as register_export  # noqa: E402

register_export(app)

from .cli_releases import register, releases_app  # noqa: E402

app.add_typer(releases_app, name="releases")
register(app)

from .cli_diagnosis import register as register_diagnosis  # noqa: E402

register_diagnosis(app)

"""zumik's command line: each command parses options, calls one core function and renders the result.

stdout carries data (tables, ``--json``); stderr carries talk (progress, warnings, errors). This module holds
the app and the pipeline's own commands; ``zumik_cli.cli`` registers the other command groups on it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TimeRemainingColumn

from zumik_cli import __version__
from zumik_cli.cli import values
from zumik_cli.cli.options import (
    ByOpt,
    CapOpt,
    DataOpt,
    DefinitionsOpt,
    EngineOpt,
    JsonOpt,
    RulesFileOpt,
    RulesOpt,
    SecondTierOpt,
    TtlOpt,
    ZumikGroup,
    err,
    handles_errors,
    location,
    out,
    print_json,
    progress_bar,
    show_notes,
    show_recommendations,
    waterfall_options,
    write_report_of,
)
from zumik_cli.core.errors import InputError
from zumik_cli.render.terminal import tables as terminal
from zumik_cli.render.terminal.tables import plural

app = typer.Typer(
    help="Measure how much of your LLM agents' input could be reused as prefix (KV) cache, how much the "
    "provider's rules allowed, how much was reused, and why the rest was missed.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    cls=ZumikGroup,
)


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
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="TRACES", parser=location, help="Trace files or folders, or s3:// (gs://, ...) prefixes."
        ),
    ],
    data: DataOpt = Path("data/zumik"),
    format: Annotated[str | None, typer.Option("--format", "-f", help="Force a format (see `zumik formats`).")] = None,
    tokenizer: Annotated[
        str | None, typer.Option(help="Tokenizer for every request: tiktoken:NAME or hf:/path/tokenizer.json.")
    ] = None,
    engine: EngineOpt = "duckdb",
    as_json: JsonOpt = False,
) -> None:
    """Read traces into a dataset: normalise, identify, tokenize unique blocks once, quarantine bad records."""
    from zumik_cli.ingest.pipeline import ingest as run_ingest

    if engine == "spark":  # a file a task on the cluster; a new dataset, published once
        from zumik_cli.ingest.spark_ingest import ingest_spark

        summary = ingest_spark(paths, data, format=format, tokenizer=tokenizer)
    elif engine != "duckdb":
        raise InputError(f"unknown engine {engine!r}: use one of duckdb, spark")
    else:
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
    from zumik_cli.dataset.store import Dataset

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
    """List the trace formats zumik reads, in the order auto-detection tries them, and whether each reader was
    checked against a real public log or built from documentation only."""
    from zumik_cli.readers import evidence, load_formats

    rows = [
        {"name": r.name, "checked": evidence(r.name), "description": r.description} for r in load_formats().values()
    ]
    if as_json:
        print_json(rows)
    else:
        terminal.simple_table(out, "Formats", rows)


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
        typer.Option(metavar="TOKENS,...", help="Capacities in tokens, comma-separated, for the LRU curve: 1M,3M,10M."),
    ] = None,
    kv_model: Annotated[
        str | None,
        typer.Option(
            help="Show the curve in GiB of KV memory for this model: a shipped name (llama-3.1-8b, llama-3.1-70b, "
            "qwen2.5-7b, qwen2.5-72b, mistral-7b-v0.3, gemma-2-9b) or a model folder with a config.json."
        ),
    ] = None,
    kv_dtype: Annotated[
        str | None, typer.Option(help="KV cache type for --kv-model: bfloat16 (default), float16, fp8, float32.")
    ] = None,
    second_tier_tokens: SecondTierOpt = None,
    curve_sample: Annotated[
        float | None,
        typer.Option(
            metavar="RATE",
            help="Compute the LRU curve from a SHARDS sample of the blocks at this rate (0.01: one in a hundred), for "
            "hash-id traces too large for one pass; the rate and the error bound are printed beside the curve.",
        ),
    ] = None,
    definitions: DefinitionsOpt = False,
    engine: EngineOpt = "duckdb",
    as_json: JsonOpt = False,
) -> None:
    """Compute the reuse waterfall (total, eligible, candidate, realized, missed) with causes and money."""
    from zumik_cli.analysis.waterfall import compute_waterfall
    from zumik_cli.dataset.store import Dataset

    options = waterfall_options(rules, ttl, capacity_tokens, by, rules_file)
    if curve is not None:
        try:
            ladder = values.sizes(curve)
        except typer.BadParameter as exc:
            raise InputError(f"--curve takes capacities in tokens separated by commas: {exc.message}") from None
        options = dataclasses.replace(options, capacities=(*ladder, None))
    options = dataclasses.replace(
        options,
        kv_model=kv_model,
        kv_dtype=kv_dtype,
        second_tier_tokens=second_tier_tokens,
        engine=engine,
        curve_sample_rate=curve_sample,
    )
    result = compute_waterfall(Dataset(data), options)
    if as_json:
        print_json(result.summary)
    else:
        show_waterfall(result, definitions)
        if (sampling := result.summary.get("capacity_curve_sampling")) is not None:
            bound = f"±{sampling['error_bound']:.4f}"
            rows = [
                {"capacity tokens": p["capacity_tokens"] or "unbounded", "rate": p["rate"], "error bound": bound}
                for p in result.summary["capacity_curve"]
            ]
            terminal.simple_table(out, f"LRU curve, SHARDS sample at rate {sampling['rate']:g}", rows)


@app.command("requests")
@handles_errors
def list_requests(
    data: DataOpt = Path("data/zumik"),
    session: Annotated[str | None, typer.Option("--session", "-s", help="Only this session's requests.")] = None,
    worst: Annotated[
        int | None,
        typer.Option(
            "--worst", metavar="N", help="Only the N requests that lost most (eligible tokens not read from cache)."
        ),
    ] = None,
    rules: RulesOpt = None,
    ttl: TtlOpt = None,
    capacity_tokens: CapOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List requests with their trace id, session, model, waterfall figures and main cause, to pick one to explain."""
    from zumik_cli.analysis.request_list import list_requests as run_listing
    from zumik_cli.analysis.waterfall import compute_waterfall
    from zumik_cli.dataset.store import Dataset

    if worst is not None and worst < 1:
        raise InputError(f"--worst takes how many requests to list, 1 or more, not {worst}")
    options = dataclasses.replace(waterfall_options(rules, ttl, capacity_tokens, None, None), curves=False)
    rows = run_listing(compute_waterfall(Dataset(data), options), session=session, worst=worst)
    if as_json:
        print_json(rows)
    else:
        which = f"Worst {plural(len(rows), 'request')}" if worst else f"{plural(len(rows), 'request').capitalize()}"
        terminal.requests(out, rows, which + (f" of session {session}" if session else ""))


@app.command()
@handles_errors
def diagnose(
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="TRACES", parser=location, help="Trace files or folders, or s3:// (gs://, ...) prefixes."
        ),
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", "-d", parser=location, help="Dataset folder or URI (default: data/<name of the first input>)."
        ),
    ] = None,
    format: Annotated[str | None, typer.Option("--format", "-f", help="Force a format.")] = None,
    rules: RulesOpt = None,
    ttl: TtlOpt = None,
    capacity_tokens: CapOpt = None,
    second_tier_tokens: SecondTierOpt = None,
    report: Annotated[
        Path | None, typer.Option("--report", "-o", help="HTML report path (default: reports/<name>.html).")
    ] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip the HTML report.")] = False,
    releases: Annotated[
        Path | None,
        typer.Option("--releases", help="Alias release history (YAML): also simulate every routing policy."),
    ] = None,
    definitions: DefinitionsOpt = False,
    engine: EngineOpt = "duckdb",
    as_json: JsonOpt = False,
) -> None:
    """Ingest traces, compute the waterfall and write the HTML report: the main job, in one go."""
    from zumik_cli.diagnosis.diagnose import diagnose as run_diagnosis

    name = str(paths[0]).rstrip("/").rsplit("/", 1)[-1].split(".")[0] or "traces"
    options = waterfall_options(rules, ttl, capacity_tokens, None, None)
    options = dataclasses.replace(options, second_tier_tokens=second_tier_tokens, engine=engine)
    bar, update = progress_bar("ingest")
    with bar:
        diagnosis = run_diagnosis(
            paths, data or Path("data") / name, options, format=format, releases=releases, progress=update
        )
    if diagnosis.ingest is not None:
        terminal.ingest_warnings(err, diagnosis.ingest)
    show_notes(diagnosis.notes)
    report_path = None if no_report else write_report_of(diagnosis, report or Path("reports") / f"{name}.html")
    if as_json:
        print_json({**diagnosis.to_json(), "report": str(report_path) if report_path else None})
    else:
        show_waterfall(diagnosis.waterfall, definitions)
        if diagnosis.simulation is not None:
            from zumik_cli.render.terminal import releases as terminal_releases

            terminal_releases.simulation(out, diagnosis.simulation)
        show_recommendations(out, diagnosis.recommendations)
        if report_path:
            err.print(f"Report: {report_path}")


WORST_SHOWN = 5


def show_waterfall(result: Any, definitions: bool) -> None:
    """The waterfall's tables with the trace ids to explain: the worst requests, and each session's worst."""
    from zumik_cli.analysis.request_list import list_requests as run_listing
    from zumik_cli.analysis.request_list import worst_per_session

    by_session = worst_per_session(result) if "session" in result.summary.get("breakdowns", {}) else None
    terminal.waterfall(
        out,
        result.summary,
        worst=run_listing(result, worst=WORST_SHOWN),
        worst_by_session=by_session,
        definitions=definitions,
    )


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
    second_tier_tokens: SecondTierOpt = None,
    generated_at: Annotated[
        str | None, typer.Option(help="Fixed generation time to print (for reproducible files).")
    ] = None,
    include_text: Annotated[
        bool,
        typer.Option(help="Show the prompt text where system prompts and tool definitions changed (off by default)."),
    ] = False,
) -> None:
    """Write the self-contained HTML report of a dataset, recommendations included (one file, no network needed)."""
    from zumik_cli.dataset.store import Dataset
    from zumik_cli.diagnosis.diagnose import diagnose_dataset

    options = waterfall_options(rules, ttl, capacity_tokens, None, None)
    options = dataclasses.replace(options, second_tier_tokens=second_tier_tokens)
    diagnosis = diagnose_dataset(Dataset(data), options, include_text=include_text)
    show_notes(diagnosis.notes)
    out.print(str(write_report_of(diagnosis, output, generated_at=generated_at, include_text=include_text)))


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
    compare: Annotated[
        str | None,
        typer.Option(
            help="Replay several policies' decisions, comma-separated (e.g. recorded,cheapest,reuse_aware), "
            "each into the targets it chose, and compare simulated, predicted and measured reuse."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay chosen requests on a real vLLM engine and set its measured prefix-cache hits beside zumik's prediction.

    A simulated policy's requests are replayed into the targets it chose, each target a cache of its own."""
    from zumik_cli.dataset.store import Dataset
    from zumik_cli.replay.run import ReplayOptions
    from zumik_cli.replay.run import compare as run_compare
    from zumik_cli.replay.run import replay as run_replay

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

    def progress(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    if compare is not None:
        policies = [p.strip() for p in compare.split(",") if p.strip()]
        if not policies:
            raise InputError("--compare takes policy names separated by commas, e.g. recorded,cheapest")
        with bar:
            comparison = run_compare(Dataset(data), options, policies, progress=progress)
        if as_json:
            print_json(comparison)
        else:
            terminal.replay_comparison(out, comparison)
        return
    with bar:
        result = run_replay(Dataset(data), options, progress=progress)
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
    from zumik_cli.rules.pack import load_packs

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
    sessions: Annotated[int, typer.Option(min=0, help="Number of agent sessions (subagents come on top).")] = 40,
    size: Annotated[
        int | None,
        typer.Option(
            parser=values.size,
            metavar="BYTES",
            help="Instead of --sessions, about this much JSONL: 10MB, 500k, 1GB (a session is the smallest step).",
        ),
    ] = None,
    tenants: Annotated[int, typer.Option(min=1, help="Number of tenants.")] = 3,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same bytes.")] = 0,
    parts: Annotated[
        int, typer.Option(min=1, help="Spread whole sessions over N files named NAME-1.jsonl ... NAME-N.jsonl.")
    ] = 1,
    force: Annotated[bool, typer.Option("--force", help="Replace files that already exist.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate realistic agent traffic in zumik JSONL and its alias release history (deterministic for a seed)."""
    from zumik_cli.synth.releases import write_release_history
    from zumik_cli.synth.traffic import SynthConfig, sessions_for_size, write_jsonl, write_jsonl_parts

    config = SynthConfig(seed=seed, sessions=sessions, tenants=tenants)
    if size is not None:
        config = dataclasses.replace(config, sessions=sessions_for_size(config, size))
    paths = (
        [output.with_name(f"{output.stem}-{i}{output.suffix}") for i in range(1, parts + 1)] if parts > 1 else [output]
    )
    releases = output.with_name("releases.yaml")
    existing = [str(p) for p in (*paths, releases) if p.exists() or p.is_symlink()]
    if existing and not force:
        raise InputError(f"{existing[0]} already exists: pass --force to replace it, or -o a path in another folder")
    output.parent.mkdir(parents=True, exist_ok=True)
    summary = write_jsonl_parts(config, paths) if parts > 1 else write_jsonl(config, output)
    write_release_history(config, releases)
    if as_json:
        print_json({"paths": [str(p) for p in paths], "releases": str(releases), **summary.__dict__})
    else:
        subagents = f" (and {plural(summary.subagents, 'subagent conversation')} in them)" if summary.subagents else ""
        err.print(
            f"Wrote {plural(summary.requests, 'request')} in {plural(summary.sessions, 'session')}{subagents}, "
            f"{summary.bytes / 1e6:,.1f} MB, to {', '.join(map(str, paths))} and their release history to {releases}",
            highlight=False,
        )

"""The benchmark harness: ``python -m bench.run``. Generates the workloads, runs zumik and its peers on the same
inputs in one run, and writes a table (markdown and JSON) and a plot.

Every measurement is a separate process measured by ``bench.measure`` (wall time, CPU time, peak memory),
repeated ``--repeat`` times; the table shows the median and the spread, and zumik's throughput ratio to each
peer on the same input. Nothing here asserts a speed: the smoke test runs it on tiny inputs without peers.
See docs/benchmarks.md for the commands and what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import measure, peers, workloads

DEFAULT_MOONCAKE = (1_000, 10_000, 100_000, 1_000_000)
DEFAULT_SESSIONS = (20, 150, 1_500)  # about 10 MB, 100 MB and 1 GB of agent JSONL
MARK_START = "<!-- bench:results:start -->"
MARK_END = "<!-- bench:results:end -->"


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip()) if text else ()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mooncake", type=_ints, default=DEFAULT_MOONCAKE, help="requests per Mooncake trace")
    parser.add_argument("--sessions", type=_ints, default=DEFAULT_SESSIONS, help="zumik synth sessions per trace")
    parser.add_argument(
        "--resend",
        type=_ints,
        default=(1, 2, 4),
        help="resend factors for the tokenization experiment, on the middle content trace",
    )
    parser.add_argument(
        "--contention",
        type=_ints,
        default=(1_000, 1_000_000),
        help="Mooncake sizes measured again with CPU-bound burner processes running beside each tool",
    )
    parser.add_argument(
        "--contention-sessions", type=_ints, default=(), help="content traces (sessions) measured again so"
    )
    parser.add_argument("--burners", type=int, default=2, help="CPU-bound processes beside each contended run")
    parser.add_argument("--tools", default=",".join(peers.TOOLS), help="tools to run (comma-separated)")
    parser.add_argument("--no-peers", action="store_true", help="run zumik only (no peer venv needed)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per tool and input (median is reported)")
    parser.add_argument("--peer-repeat-above", type=int, default=100_000, help="peers run once above this size")
    parser.add_argument("--timeout", type=float, default=900, help="seconds before a run is killed")
    parser.add_argument("--memory-limit-mb", type=float, default=16_000, help="peak memory before a run is killed")
    parser.add_argument("--out", type=Path, default=Path("bench/out"), help="results folder")
    parser.add_argument("--docs", type=Path, default=None, help="also write the results into this markdown file")
    return parser.parse_args(argv)


def _machine() -> dict[str, Any]:
    memory = 0
    with contextlib.suppress(OSError, IndexError, ValueError):
        memory = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    cpu = next((line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo") if line.startswith("model name")), "")
    return {
        "cores": os.cpu_count(),
        "memory_mb": memory,
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
    }


def _lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def _count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            count += chunk.count(b"\n")
    return count


def _measure(tool: peers.Tool, inputs: dict[str, Path], repeat: int, args: argparse.Namespace) -> dict[str, Any]:
    runs, headline = [], {}
    for _ in range(repeat):
        work = Path(tempfile.mkdtemp(prefix=f"zumik-bench-{tool.name}-", dir=args.out))
        try:
            result = measure.run(
                tool.command(inputs, work),
                cwd=work,
                timeout_s=args.timeout,
                memory_limit_mb=args.memory_limit_mb,
                stdout=work / "stdout.txt",
            )
            runs.append(result)
            if result.exit_code == 0 and not result.killed:
                try:
                    headline = tool.headline(work, result.stdout_tail)
                except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
                    # no figure to read back means the tool did not do the job (some exit 0 on a missing file)
                    runs[-1] = dataclasses.replace(result, exit_code=result.exit_code or 1, stderr_tail=f"{exc}")
                    break
            else:
                break  # a failed or killed run is not repeated
        finally:
            shutil.rmtree(work, ignore_errors=True)
    ok = [r for r in runs if r.exit_code == 0 and not r.killed]
    status = "ok" if len(ok) == len(runs) else (f"killed ({runs[-1].killed} limit)" if runs[-1].killed else "failed")
    walls = [r.wall_s for r in ok] or [runs[-1].wall_s]
    cpus = [r.cpu_s for r in ok] or [runs[-1].cpu_s]
    return {
        "tool": tool.name,
        "status": status,
        "runs": [r.to_json() | {"stdout_tail": r.stdout_tail[-300:]} for r in runs],
        "wall_s": round(statistics.median(walls), 3),
        "wall_min_s": min(walls),
        "wall_max_s": max(walls),
        "cpu_s": round(statistics.median(cpus), 3),
        "peak_mb": max(r.peak_mb for r in runs),
        "headline": headline,
        "error": "" if status == "ok" else (runs[-1].stderr_tail[-500:] or runs[-1].stdout_tail[-500:]),
    }


def _inputs(kind: str, source: Path, tool: str) -> dict[str, Path]:
    inputs = {"zumik": source}
    if kind == "content" and tool == "llmtrafficlens":
        inputs["gateway_csv"] = workloads.gateway_csv(source)
    if kind == "content" and tool == "cacheeconomics":
        inputs["bodies"] = workloads.bodies_jsonl(source)
    return inputs


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    args.out = args.out.resolve()  # every tool runs in its own scratch folder: paths must not be relative
    args.out.mkdir(parents=True, exist_ok=True)
    folder = args.out / "workloads"
    tools = [peers.TOOLS[name] for name in args.tools.split(",") if name]
    if args.no_peers:
        tools = [peers.TOOLS["zumik"]]
    if any(t.name != "zumik" for t in tools):
        peers.install_peers()
    plan: list[tuple[str, str, Path, int]] = []  # kind, label, file, requests
    for requests in args.mooncake:
        plan.append(("mooncake", f"{requests:,} requests", workloads.mooncake(folder, requests), requests))
    for sessions in args.sessions:
        path = workloads.agents(folder, sessions)
        plan.append(("content", f"{sessions:,} sessions", path, _count_lines(path)))
    results: dict[str, Any] = {"machine": _machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rows": []}
    results["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    _warm_up(plan, args)
    for kind, label, path, requests in plan:
        size = path.stat().st_size
        for tool in tools:
            if kind not in tool.kinds:
                continue
            repeat = args.repeat if tool.name == "zumik" or requests <= args.peer_repeat_above else 1
            print(f"[bench] {kind} {label}: {tool.name} x{repeat}", file=sys.stderr, flush=True)
            row = _measure(tool, _inputs(kind, path, tool.name), repeat, args)
            row.update({"kind": kind, "label": label, "requests": requests, "bytes": size, "input": path.name})
            results["rows"].append(row)
    for kind, label, path, requests in plan:
        contended = requests in args.contention if kind == "mooncake" else _sessions(path) in args.contention_sessions
        if not contended:
            continue
        for tool in tools:
            if kind not in tool.kinds:
                continue
            repeat = args.repeat if tool.name == "zumik" or requests <= args.peer_repeat_above else 1
            print(f"[bench] {kind} {label}: {tool.name} x{repeat}, {args.burners} burners", file=sys.stderr, flush=True)
            with measure.burners(args.burners):
                row = _measure(tool, _inputs(kind, path, tool.name), repeat, args)
            row.update({"kind": kind, "label": label, "requests": requests, "bytes": path.stat().st_size})
            row.update({"input": path.name, "burners": args.burners})
            results["rows"].append(row)
    results["resend"] = _resend_experiment(plan, args)
    _ratios(results["rows"])
    results["contention"] = _slowdowns(results["rows"])
    return results


def _sessions(path: Path) -> int:
    return int(path.stem.split("-")[1])


def _slowdowns(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each tool's wall time with burners over its wall time without, and zumik's slowdown over each peer's.

    A ratio of ratios below 1 means zumik loses less to the other work than that peer does.
    """
    quiet = {(r["input"], r["tool"]): r for r in rows if not r.get("burners")}
    out = []
    for row in rows:
        alone = quiet.get((row["input"], row["tool"]))
        if not row.get("burners") or alone is None or row["status"] != "ok" or alone["status"] != "ok":
            continue
        out.append(
            {
                "kind": row["kind"],
                "label": row["label"],
                "input": row["input"],
                "tool": row["tool"],
                "burners": row["burners"],
                "quiet_wall_s": alone["wall_s"],
                "contended_wall_s": row["wall_s"],
                "quiet_cpu_s": alone["cpu_s"],
                "contended_cpu_s": row["cpu_s"],
                "slowdown": round(row["wall_s"] / alone["wall_s"], 2),
            }
        )
    zumik = {r["input"]: r["slowdown"] for r in out if r["tool"] == "zumik"}
    for row in out:
        if row["tool"] != "zumik" and row["input"] in zumik:
            row["zumik_slowdown_ratio"] = round(zumik[row["input"]] / row["slowdown"], 2)
    return out


def _warm_up(plan: list[tuple[str, str, Path, int]], args: argparse.Namespace) -> None:
    """One unmeasured zumik run per kind, so that numba's compiled kernels are in its on-disk cache.

    zumik's modules are compiled to bytecode first, as installing a wheel does (the peers' are): an editable
    install under PYTHONDONTWRITEBYTECODE would compile them again on every run.
    """
    import compileall

    import zumik_cli

    compileall.compile_dir(str(Path(zumik_cli.__file__).parent), quiet=1)
    seen = set()
    for kind, _, path, _ in plan:
        if kind not in seen:
            seen.add(kind)
            _measure(peers.TOOLS["zumik"], {"zumik": path}, 1, args)


def _resend_experiment(plan: list[tuple[str, str, Path, int]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Tokenization against how often the same history is resent: the unique content stays, the bytes grow."""
    content = [p for p in plan if p[0] == "content"]
    if not content or not args.resend:
        return []
    _, label, source, requests = content[len(content) // 2] if len(content) > 2 else content[0]
    rows = []
    for times in args.resend:
        path = workloads.resent(source, times)
        print(f"[bench] resend x{times} of {label}: zumik", file=sys.stderr, flush=True)
        row = _measure(peers.TOOLS["zumik"], {"zumik": path}, args.repeat, args)
        timings = row["headline"].get("ingest_timings") or {}
        rows.append(
            {
                "resend": times,
                "base": label,
                "requests": requests * times,
                "bytes": path.stat().st_size,
                "status": row["status"],
                "wall_s": row["wall_s"],
                "cpu_s": row["cpu_s"],
                "peak_mb": row["peak_mb"],
                "tokenize_s": timings.get("tokenize"),
                "ingest_s": timings.get("total"),
                "tokenized_chars": row["headline"].get("tokenized_chars"),
                "unique_blocks": row["headline"].get("unique_blocks"),
            }
        )
    return rows


def _ratios(rows: list[dict[str, Any]]) -> None:
    """zumik's throughput over each peer's on the same input (their wall time over zumik's), and CPU alike."""
    by_input: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_input.setdefault((row["input"], row.get("burners", 0)), {})[row["tool"]] = row
    for tools in by_input.values():
        zumik = tools.get("zumik")
        for row in tools.values():
            row["throughput_rps"] = round(row["requests"] / row["wall_s"], 1) if row["wall_s"] else None
            row["mb_per_s"] = round(row["bytes"] / 1e6 / row["wall_s"], 2) if row["wall_s"] else None
            if zumik is None or row is zumik or zumik["status"] != "ok":
                continue
            complete = row["status"] == "ok"
            row["zumik_speedup_wall"] = round(row["wall_s"] / zumik["wall_s"], 2) if zumik["wall_s"] else None
            row["zumik_speedup_cpu"] = round(row["cpu_s"] / zumik["cpu_s"], 2) if zumik["cpu_s"] else None
            row["speedup_is_lower_bound"] = not complete


def _figure(row: dict[str, Any]) -> str:
    headline = row.get("headline") or {}
    for key in ("eligible", "hit_rate_unbounded", "cache_hit_rate_request_weighted", "input_from_cache"):
        if headline.get(key) is not None:
            text = f"{key.replace('_', ' ')} {headline[key]:.1%}"
            if key == "eligible":
                text += f" (req-weighted {headline['eligible_request_weighted']:.1%}"
                text += f", realized {headline['realized']:.1%})" if headline.get("realized") is not None else ")"
            return text
    return ""


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        f"Measured {results['started']} on {machine['cores']} cores ({machine['cpu'] or 'unknown CPU'}), "
        f"{machine['memory_mb']:,} MB of memory, Python {machine['python']}; load average at start "
        f"{', '.join(f'{x:.1f}' for x in machine['load_average_at_start'])} (other work shares this machine: "
        "wall time is inflated by it, CPU time much less). Medians of the runs; wall spread in brackets.",
        "",
        "| input | size | tool | status | wall s | CPU s | peak MB | requests/s | zumik speed-up (wall / CPU) "
        "| headline figure |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in results["rows"]:
        if row.get("burners"):
            continue
        speed = ""
        if row.get("zumik_speedup_wall") is not None:
            bound = "> " if row.get("speedup_is_lower_bound") else ""
            speed = f"{bound}{row['zumik_speedup_wall']}x / {bound}{row['zumik_speedup_cpu']}x"
        spread = f" [{row['wall_min_s']:.1f}-{row['wall_max_s']:.1f}]" if len(row["runs"]) > 1 else ""
        lines.append(
            f"| {row['kind']} {row['label']} | {row['bytes'] / 1e6:,.1f} MB | {row['tool']} | {row['status']} | "
            f"{row['wall_s']:.2f}{spread} | {row['cpu_s']:.2f} | {row['peak_mb']:,.0f} | "
            f"{row.get('throughput_rps') or 0:,.0f} | {speed} | {_figure(row)} |"
        )
    if results.get("contention"):
        lines += [
            "",
            f"Under contention: the same inputs with {results['contention'][0]['burners']} CPU-bound burner "
            "processes running beside each tool (a busy loop each, on this machine's cores). Slowdown is the wall "
            "time with them over the wall time without (the rows above); zumik's slowdown over a peer's is below 1 "
            "where zumik loses less to the other work than that peer:",
            "",
            "| input | tool | wall s alone | wall s with burners | CPU s alone / with | slowdown "
            "| zumik's slowdown / the peer's |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for row in results["contention"]:
            ratio = row.get("zumik_slowdown_ratio")
            lines.append(
                f"| {row['kind']} {row['label']} | {row['tool']} | {row['quiet_wall_s']:.2f} | "
                f"{row['contended_wall_s']:.2f} | {row['quiet_cpu_s']:.2f} / {row['contended_cpu_s']:.2f} | "
                f"{row['slowdown']:.2f}x | {'' if ratio is None else f'{ratio:.2f}'} |"
            )
    if results.get("resend"):
        lines += [
            "",
            "Tokenization against resending (zumik ingest, same unique content sent k times). The work is the "
            "characters tokenized; tokenize s is the tokenizer thread's wall time, which the reading and writing "
            "threads stretch as they share the two cores with it, more so the more is resent:",
            "",
            "| resend | requests | size | wall s | CPU s | tokenize s | characters tokenized | unique blocks |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in results["resend"]:
            lines.append(
                f"| x{row['resend']} | {row['requests']:,} | {row['bytes'] / 1e6:,.1f} MB | {row['wall_s']:.2f} | "
                f"{row['cpu_s']:.2f} | {row['tokenize_s'] if row['tokenize_s'] is not None else '-'} | "
                f"{row['tokenized_chars'] or 0:,} | {row['unique_blocks'] or 0:,} |"
            )
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """Wall time and peak memory against input size, per tool and kind, log-log: one self-contained HTML file."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figure = make_subplots(
        rows=2,
        cols=2,
        subplot_titles=(
            "Content-free (Mooncake): wall time",
            "Agent JSONL: wall time",
            "Content-free: peak memory",
            "Agent JSONL: peak memory",
        ),
    )
    palette = ("#1f6feb", "#d97706", "#059669", "#9333ea", "#dc2626")
    colours = {tool: palette[i % len(palette)] for i, tool in enumerate(peers.TOOLS)}
    shown: set[str] = set()
    for col, kind in enumerate(("mooncake", "content"), start=1):
        for tool in peers.TOOLS:
            rows = [r for r in results["rows"] if r["kind"] == kind and r["tool"] == tool and not r.get("burners")]
            if not rows:
                continue
            x = [r["requests"] if kind == "mooncake" else r["bytes"] / 1e6 for r in rows]
            text = [r["status"] for r in rows]
            line = {"color": colours[tool]}
            figure.add_trace(
                go.Scatter(x=x, y=[r["wall_s"] for r in rows], name=tool, legendgroup=tool, text=text, line=line,
                           marker=line, showlegend=tool not in shown),
                row=1, col=col,
            )  # fmt: skip
            shown.add(tool)
            figure.add_trace(
                go.Scatter(x=x, y=[r["peak_mb"] for r in rows], name=tool, legendgroup=tool, line=line, marker=line,
                           showlegend=False),
                row=2, col=col,
            )  # fmt: skip
        figure.update_xaxes(type="log", title_text="requests" if kind == "mooncake" else "MB of JSONL", col=col)
    figure.update_yaxes(type="log", title_text="seconds", row=1)
    figure.update_yaxes(type="log", title_text="peak MB", row=2)
    figure.update_layout(title="zumik and its peers on the same inputs", height=800, width=1100)
    figure.write_html(path, include_plotlyjs=True, full_html=True)


def picture(html: Path, png: Path) -> bool:
    """The plot as a PNG, taken by headless Chromium where it is installed (``make browser``); False without it."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("[bench] no chromium: plot.png not written", file=sys.stderr)
        return False
    png.unlink(missing_ok=True)
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1120,820"]
    subprocess.run([*command, f"--screenshot={png}", html.resolve().as_uri()], capture_output=True, timeout=120)
    return png.exists() and png.stat().st_size > 0


def write_outputs(results: dict[str, Any], out: Path, docs: Path | None) -> str:
    table = markdown(results)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "results.md").write_text(table)
    plot(results, out / "plot.html")
    if docs is not None and picture(out / "plot.html", out / "plot.png"):
        shutil.copyfile(out / "plot.png", docs.with_suffix(".png"))
    if docs is not None and docs.exists():
        text = docs.read_text()
        if MARK_START in text and MARK_END in text:
            head, rest = text.split(MARK_START, 1)
            _, tail = rest.split(MARK_END, 1)
            docs.write_text(f"{head}{MARK_START}\n{table}{MARK_END}{tail}")
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run_benchmark(args)
    table = write_outputs(results, args.out, args.docs)
    sys.stdout.write(table)
    print(f"[bench] wrote {args.out / 'results.md'}, results.json and the plot", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

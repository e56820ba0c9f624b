"""Small inputs and the first run: ``python -m bench.small``.

``zumik diagnose --no-report`` on a 1,000-request Mooncake trace, warm (numba's cache filled) and as a fresh
install's first run (an empty numba cache, so every kernel it needs compiles), beside ``llmtrafficlens`` on the
same file (when ``bench/.venv-peers`` holds it), runs interleaved so that the machine's load falls on both alike.
Prints one markdown table of medians.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench import measure, peers, workloads


def _zumik(source: Path, work: Path, cache: Path | None = None) -> measure.Run:
    env = None if cache is None else {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    command = [peers._zumik_bin(), "diagnose", str(source), "--data", str(work / "data"), "--no-report", "--json"]
    return measure.run(command, cwd=work, env=env, stdout=work / "stdout.txt")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.small", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--first-runs", type=int, default=2, help="runs with an empty numba cache")
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args(argv)
    source = workloads.mooncake(args.out.resolve() / "workloads", args.requests)
    lens = peers.TOOLS["llmtrafficlens"]
    runs: dict[str, list[measure.Run]] = {"zumik warm": [], "zumik first run": []}
    if peers.PEERS_VENV.exists():
        runs["llmtrafficlens"] = []
    for k in range(args.repeat):
        for name in runs:
            if name == "zumik first run" and k >= args.first_runs:
                continue
            work = Path(tempfile.mkdtemp(prefix="zumik-small-", dir=args.out))
            try:
                if name == "llmtrafficlens":
                    run = measure.run(lens.command({"zumik": source}, work), cwd=work, stdout=work / "stdout.txt")
                else:
                    run = _zumik(source, work, work / "numba-cache" if name == "zumik first run" else None)
                if run.exit_code != 0:
                    print(f"[small] {name} failed: {run.stderr_tail[-500:]}", file=sys.stderr)
                runs[name].append(run)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    warm = statistics.median(r.wall_s for r in runs["zumik warm"])
    print(
        f"| {args.requests:,} Mooncake requests | runs | wall s (median) [spread] | CPU s | peak MB | over zumik warm |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, measured in runs.items():
        walls = [r.wall_s for r in measured]
        wall = statistics.median(walls)
        print(
            f"| {name} | {len(measured)} | {wall:.2f} [{min(walls):.2f}-{max(walls):.2f}] | "
            f"{statistics.median(r.cpu_s for r in measured):.2f} | {max(r.peak_mb for r in measured):,.0f} | "
            f"{wall / warm:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The Spark engine beside the embedded one on Mooncake-shape traffic: ``python -m bench.spark --requests 1000000``.

Generates the trace (``bench/mooncake.py``), ingests it once, then measures the waterfall (``--rules ideal``, the
default curve) through the embedded engine and through ``--engine spark`` on a standalone cluster of this machine (a
master and two one-core workers, as ``tests/spark_cluster.py`` starts them). Every process is its own: the command's
wall time, CPU time and peak memory come from ``bench.measure``; the cluster's JVMs and Python workers are sampled
from /proc every quarter second, and the peak of each role is printed (driver JVM, executor JVMs, executors' Python
workers). It also checks that both engines print the same JSON, and prints the SHARDS curve (``--curve-sample``)
against the exact one: the largest difference and the bound stated beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import measure
from bench.mooncake import write_trace

ROOT = Path(__file__).resolve().parents[1]
ZUMIK = str(Path(sys.executable).with_name("zumik"))
ROLES = {
    "executor JVM": "CoarseGrainedExecutorBackend",
    "executor Python": "pyspark.daemon",
    "driver JVM": "SparkSubmit",
    "worker JVM": "deploy.worker.Worker",
    "master JVM": "deploy.master.Master",
}
CURVE = "1M,3M,10M,30M,100M"


class Sampler(threading.Thread):
    """Peak resident memory of every process whose command line names a Spark role and this interpreter's prefix (the
    JVMs' class path and the Python workers both run from it), by role."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peaks: dict[str, float] = {}
        self.cpu: dict[tuple[str, str], float] = {}  # (role, pid) -> CPU seconds at the last sample
        self.stop = threading.Event()

    def cpu_by_role(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for (role, _), seconds in self.cpu.items():
            totals[role] = totals.get(role, 0.0) + seconds
        return {role: round(seconds, 1) for role, seconds in sorted(totals.items())}

    def run(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        ticks = os.sysconf("SC_CLK_TCK")
        while not self.stop.is_set():
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    rss = int((proc / "statm").read_text().split()[1]) * page / 2**20
                    fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
                except (OSError, IndexError, ValueError):
                    continue
                if sys.prefix not in command:  # another checkout's Spark on the same machine
                    continue
                for role, mark in ROLES.items():
                    if mark in command:
                        self.peaks[role] = max(self.peaks.get(role, 0.0), rss)
                        self.cpu[(role, proc.name)] = cpu
            time.sleep(0.25)


def _measured(label: str, command: list[str], env: dict[str, str], out: Path) -> dict[str, Any]:
    run = measure.run(command, env=env, stdout=out, timeout_s=3600, memory_limit_mb=12_000)
    row = {"step": label, **{k: v for k, v in run.to_json().items() if k not in ("stdout_tail",)}}
    print(json.dumps(row), flush=True)
    if run.exit_code:
        raise SystemExit(f"{label} failed: {run.stderr_tail[-2000:]}")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.spark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--sample-rate", type=float, default=0.01)
    parser.add_argument("--work", type=Path, default=None, help="folder for the trace and datasets (default: tmp)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="zumik-bench-spark-"))
    trace, data = work / f"mooncake-{args.requests}.jsonl", work / f"data-{args.requests}"
    if not trace.exists():
        write_trace(trace, args.requests, seed=0)
    env = dict(os.environ)
    rows = []
    if not (data / "manifest.json").exists():
        rows.append(_measured("ingest (embedded)", [ZUMIK, "ingest", str(trace), "--data", str(data)], env, work / "i"))
    base = [ZUMIK, "waterfall", "--data", str(data), "--rules", "ideal", "--curve", CURVE, "--json"]
    rows.append(_measured("waterfall (embedded)", base, env, work / "embedded.json"))
    sys.path.insert(0, str(ROOT / "tests"))
    from spark_cluster import Cluster

    cluster = Cluster(work / "cluster").start()
    sampler = Sampler()
    sampler.start()
    try:
        spark_env = {**env, "ZUMIK_SPARK_MASTER": cluster.url, "SPARK_LOCAL_IP": "127.0.0.1"}
        rows.append(_measured("waterfall (spark)", [*base, "--engine", "spark"], spark_env, work / "spark.json"))
    finally:
        sampler.stop.set()
        cluster.stop()
    print(json.dumps({"spark peaks MB": {k: round(v) for k, v in sorted(sampler.peaks.items())}}), flush=True)
    print(json.dumps({"spark CPU s (last sample)": sampler.cpu_by_role()}), flush=True)
    embedded = json.loads((work / "embedded.json").read_text())
    on_spark = json.loads((work / "spark.json").read_text())
    print(json.dumps({"identical JSON": embedded == on_spark}), flush=True)
    sampled_run = _measured(
        f"waterfall (embedded, --curve-sample {args.sample_rate:g})",
        [*base, "--curve-sample", str(args.sample_rate)],
        env,
        work / "sampled.json",
    )
    rows.append(sampled_run)
    sampled = json.loads((work / "sampled.json").read_text())
    differences = [
        abs(s["rate"] - e["rate"]) for s, e in zip(sampled["capacity_curve"], embedded["capacity_curve"], strict=True)
    ]
    info = sampled["capacity_curve_sampling"]
    within = all(d <= b for d, b in zip(differences, info["point_bounds"], strict=True))
    print(
        json.dumps(
            {
                "sampled curve": {
                    "rate": info["rate"],
                    "largest difference": round(max(differences), 6),
                    "error bound": info["error_bound"],
                    "every point within its bound": within,
                    "sampled accesses": info["sampled_accesses"],
                    "accesses": info["accesses"],
                }
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()

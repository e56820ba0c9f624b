"""The CPUs zumik sizes its thread pools to: the affinity mask and the cgroup quota, not the machine's cores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from zumik_cli.core.cpus import cgroup_quota, count_cpus

SAMPLE = Path(__file__).parent.parent / "sample_traces"


def test_a_cgroup_v2_quota_reads_as_cpus_and_max_as_no_limit(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_quota(tmp_path) is None


def test_a_cgroup_v1_quota_reads_as_cpus_and_minus_one_as_no_limit(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    assert cgroup_quota(tmp_path) == 0.5
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_quota(tmp_path) is None
    assert cgroup_quota(tmp_path / "missing") is None


def test_the_count_is_the_smaller_of_affinity_and_quota_rounded_up_and_at_least_one():
    assert count_cpus(8, 1.5) == 2
    assert count_cpus(2, 4.0) == 2
    assert count_cpus(4, 0.2) == 1
    assert count_cpus(4, None) == 4
    assert count_cpus(4, None, override="3") == 3
    assert count_cpus(4, None, override="none") == 4


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_a_process_pinned_to_one_cpu_gives_duckdb_and_arrow_one_thread(tmp_path):
    script = (
        "import sys; from pathlib import Path\n"
        "import pyarrow as pa\n"
        "from zumik_cli.ingest.pipeline import ingest\n"
        "from zumik_cli.dataset.store import Dataset\n"
        "ingest([Path(sys.argv[1])], Path(sys.argv[2]))\n"
        "con = Dataset(Path(sys.argv[2])).connect()\n"
        "print(con.execute(\"SELECT current_setting('threads')\").fetchone()[0], pa.cpu_count())\n"
    )
    source = next(p for p in sorted(SAMPLE.glob("*.jsonl")))
    env = {k: v for k, v in os.environ.items() if k != "ZUMIK_THREADS"}
    out = subprocess.run(
        [sys.executable, "-c", script, str(source), str(tmp_path / "d")],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}),
        check=True,
    )
    assert out.stdout.split() == ["1", "1"]

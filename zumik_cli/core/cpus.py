"""How many CPUs this process may actually use, and the thread pools of zumik's libraries sized to it.

``os.cpu_count()`` counts the machine's cores, not the ones this process may run on: a CPU affinity mask
(``taskset``, a container's cpuset) or a cgroup CPU quota (``docker --cpus``, Kubernetes limits) gives it
fewer. DuckDB, Arrow and tiktoken size their pools from the machine's count by default; on a busy or
limited machine their threads then queue behind one another and behind everything else (and a pool that
waits for its slowest thread waits for the one the scheduler left out). Every pool zumik starts, and every
library pool it uses, takes its size from ``available_cpus`` instead. ``ZUMIK_THREADS`` overrides it.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def cgroup_quota(root: Path = CGROUP) -> float | None:
    """The CPUs a cgroup quota allows (``cpu.max`` in cgroup v2, ``cpu.cfs_quota_us`` in v1); None if unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def count_cpus(affinity: int, quota: float | None, override: str | None = None) -> int:
    """The smaller of the affinity mask and the quota (rounded up: 1.5 CPUs keep two threads busy), at least one."""
    if override and override.strip().isdigit() and int(override) > 0:
        return int(override)
    cpus = max(affinity, 1)
    if quota is not None and quota > 0:
        cpus = min(cpus, max(math.ceil(quota), 1))
    return cpus


@functools.cache
def available_cpus() -> int:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return count_cpus(affinity, cgroup_quota(), os.environ.get("ZUMIK_THREADS"))


@functools.cache
def size_arrow_pools() -> None:
    """Arrow's CPU pool (its JSON and Parquet readers) to the available CPUs; called before the first read."""
    import pyarrow as pa

    pa.set_cpu_count(available_cpus())

"""Run one command and measure it as the operating system saw it: wall time, CPU time and peak memory.

CPU time and peak resident memory come from ``wait4`` on the child (its own threads included, and any
children it waited for), so they need neither ``/usr/bin/time`` nor sampling; other work on the machine
inflates wall time but not CPU time, which is why both are kept. A run past its time or memory limit is
killed and recorded as such rather than waited for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Run:
    wall_s: float
    cpu_s: float
    peak_mb: float
    exit_code: int
    killed: str = ""  # "time" or "memory" when the limit ended it
    stdout_tail: str = ""
    stderr_tail: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_PAGE = os.sysconf("SC_PAGE_SIZE")


def _resident_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def run(
    command: list[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout_s: float = 900,
    memory_limit_mb: float = 16_000,
    stdout: Path | None = None,
) -> Run:
    out = stdout.open("wb") if stdout else subprocess.PIPE
    began = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.PIPE, start_new_session=True)
    killed: list[str] = []
    done = threading.Event()

    def watch() -> None:
        # the child's resident memory, sampled to enforce the limit; wait4 gives the exact peak afterwards
        while not done.wait(0.2):
            rss = _resident_bytes(process.pid)
            over_time = time.perf_counter() - began > timeout_s
            if over_time or rss > memory_limit_mb * 1e6:
                killed.append("time" if over_time else "memory")
                os.killpg(process.pid, signal.SIGKILL)
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stderr_reader: list[bytes] = []
    reader = threading.Thread(target=lambda: stderr_reader.append(process.stderr.read() if process.stderr else b""))
    reader.start()
    stdout_text = b""
    if stdout is None and process.stdout is not None:
        stdout_text = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - began
    done.set()
    reader.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    if stdout:
        out.close()  # type: ignore[union-attr]
        stdout_text = stdout.read_bytes()[-4000:]
    return Run(
        wall_s=round(wall, 3),
        cpu_s=round(usage.ru_utime + usage.ru_stime, 3),
        peak_mb=round(usage.ru_maxrss / 1024, 1),
        exit_code=process.returncode,
        killed=killed[0] if killed else "",
        stdout_tail=stdout_text[-4000:].decode("utf-8", "replace"),
        stderr_tail=(stderr_reader[0] if stderr_reader else b"")[-2000:].decode("utf-8", "replace"),
    )

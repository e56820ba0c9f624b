"""Run one command and measure it as the operating system saw it: wall time, CPU time and peak memory.

CPU time and peak resident memory come from ``wait4`` on the command (its own threads included, and any
children it waited for), called by a small launcher (``bench/launch.py``) that starts it, so that the harness's
own memory is not counted in it, and neither ``/usr/bin/time`` nor sampling is needed; other work on the machine
inflates wall time but not CPU time, which is why both are kept. A run past its time or memory limit is
killed and recorded as such rather than waited for.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
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
_LAUNCHER = Path(__file__).with_name("launch.py")


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
    report_read, report_write = os.pipe()
    # started through bench/launch.py, so that the command's peak memory is not floored at the harness's own
    process = subprocess.Popen(
        [sys.executable, "-I", "-S", str(_LAUNCHER), str(report_write), *command],
        cwd=cwd,
        env=env,
        stdout=out,
        stderr=subprocess.PIPE,
        start_new_session=True,
        pass_fds=(report_write,),
    )
    os.close(report_write)
    report = os.fdopen(report_read, "rb")
    pid = int(report.readline() or b"-1")
    killed: list[str] = []
    sampled_peak = [0]
    done = threading.Event()

    def watch() -> None:
        # the command's resident memory, sampled to enforce the limit; wait4 gives the exact peak afterwards
        while not done.wait(0.2):
            rss = _resident_bytes(pid) if pid > 0 else 0
            sampled_peak[0] = max(sampled_peak[0], rss)
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
    launcher_code = process.wait()
    wall = time.perf_counter() - began
    done.set()
    reader.join()
    measured = json.loads(report.read() or b"{}")
    report.close()
    if stdout:
        out.close()  # type: ignore[union-attr]
        stdout_text = stdout.read_bytes()[-4000:]
    stderr_text = stderr_reader[0] if stderr_reader else b""
    if "error" in measured:
        stderr_text += f"could not start {command[0]}: {measured['error']}".encode()
    return Run(
        # a killed run has no report from the launcher: its wall time and sampled peak are the harness's
        wall_s=round(measured.get("wall_s", wall), 3),
        cpu_s=round(measured.get("cpu_s", 0.0), 3),
        peak_mb=round(measured["peak_kb"] / 1024 if "peak_kb" in measured else sampled_peak[0] / 2**20, 1),
        exit_code=measured.get("exit_code", launcher_code),
        killed=killed[0] if killed else "",
        stdout_tail=stdout_text[-4000:].decode("utf-8", "replace"),
        stderr_tail=stderr_text[-2000:].decode("utf-8", "replace"),
    )


@contextlib.contextmanager
def burners(count: int) -> Iterator[None]:
    """``count`` CPU-bound processes (a busy loop each) running beside whatever is measured inside the block.

    They stand for the other work of a shared machine: a tool whose threads wait on one another, or spin, slows
    more under them than one that uses the CPU time it is given.
    """
    loops = [
        subprocess.Popen([sys.executable, "-I", "-S", "-c", "while True: pass"], start_new_session=True)
        for _ in range(count)
    ]
    try:
        time.sleep(0.2)  # running before the measured command starts
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()

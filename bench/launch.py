"""Start one command from a small process and report what the operating system counted for it.

Run as ``python -I -S bench/launch.py FD COMMAND...`` by ``bench.measure``. A process's peak resident memory
(``ru_maxrss``) starts from that of the process that forked it, since the forked copy counts its parent's pages
until it execs: measured straight from the harness, every tool would carry the harness's own peak (a few
hundred MB once it has generated the workloads). Forked from this launcher instead, whose interpreter starts
without ``site`` and imports nothing but ``os``, ``time`` and ``json``, a tool's peak is its own plus about 10 MB.

Writes two lines to FD: the command's process id as soon as it is started (so that the harness can watch its
memory), then its wall time, exit status and resource use as JSON when it has ended.
"""

import json
import os
import sys
import time


def main() -> None:
    fd, command = int(sys.argv[1]), sys.argv[2:]
    os.set_inheritable(fd, False)  # the command must not hold the report open: the harness reads it to its end
    began = time.perf_counter()
    try:
        pid = os.posix_spawnp(command[0], command, os.environ)
    except OSError as exc:
        os.write(fd, f"-1\n{json.dumps({'error': str(exc)})}\n".encode())
        sys.exit(127)
    os.write(fd, f"{pid}\n".encode())
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - began
    result = {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_kb": usage.ru_maxrss,
        "exit_code": os.waitstatus_to_exitcode(status),
    }
    os.write(fd, f"{json.dumps(result)}\n".encode())


if __name__ == "__main__":
    main()

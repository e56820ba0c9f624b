"""A standalone Spark cluster on this machine for the Spark engine's tests: one master and two workers, each its own
JVM started by pyspark's bundled ``bin/spark-class``, as a real cluster runs them (not ``local[*]``, where every
task shares the driver's JVM).

Each worker offers 1 core and ~1 GB; ports are free ones picked at start; logs and work folders live under the
given folder. ``stop()`` ends the JVMs this module started, by their process ids.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
WORKER_MEMORY = "1200m"
EXECUTOR_MEMORY = "900m"
START_TIMEOUT_S = 90


def spark_home() -> Path | None:
    try:
        import pyspark
    except ImportError:
        return None
    return Path(pyspark.__file__).parent


def missing() -> str | None:
    """Why no cluster can start here, or None."""
    if spark_home() is None:
        return "pyspark is not installed: pip install -e '.[dev]'"
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        return "no Java runtime: make java (as root) installs Java 17"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    folder: Path
    master_port: int = 0
    master_ui: int = 0
    master: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"spark://{HOST}:{self.master_port}"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            SPARK_HOME=str(spark_home()),
            SPARK_LOCAL_IP=HOST,
            SPARK_LOG_DIR=str(self.folder / "logs"),
            PYSPARK_PYTHON=sys.executable,
            SPARK_NO_DAEMONIZE="1",
        )
        return env

    def _spark_class(self, name: str, log: str, *args: str) -> subprocess.Popen[bytes]:
        command = [str(spark_home() / "bin" / "spark-class"), name, *args]
        with (self.folder / f"{log}.log").open("wb") as out:
            return subprocess.Popen(command, env=self._env(), stdout=out, stderr=subprocess.STDOUT, cwd=self.folder)

    def start(self) -> Cluster:
        (self.folder / "logs").mkdir(parents=True, exist_ok=True)
        self.master_port, self.master_ui = _free_port(), _free_port()
        self.master = self._spark_class(
            "org.apache.spark.deploy.master.Master",
            "master",
            "--host", HOST, "--port", str(self.master_port), "--webui-port", str(self.master_ui),
        )  # fmt: skip
        self._wait(lambda state: state is not None, "the master")
        for i in range(2):
            self.start_worker(i)
        self._wait(lambda state: state is not None and state.get("aliveworkers", 0) >= 2, "two workers")
        return self

    def start_worker(self, i: int) -> subprocess.Popen[bytes]:
        work = self.folder / f"worker{i}"
        work.mkdir(exist_ok=True)
        worker = self._spark_class(
            "org.apache.spark.deploy.worker.Worker",
            f"worker{i}-{len(self.workers)}",
            "--host", HOST, "--port", str(_free_port()), "--webui-port", str(_free_port()),
            "--cores", "1", "--memory", WORKER_MEMORY, "--work-dir", str(work), self.url,
        )  # fmt: skip
        self.workers.append(worker)
        return worker

    def state(self) -> dict[str, object] | None:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.master_ui}/json/", timeout=2) as response:
                return dict(json.load(response))
        except OSError:
            return None

    def alive_workers(self) -> int:
        state = self.state() or {}
        return int(str(state.get("aliveworkers", 0)))

    def _wait(self, ready: object, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.master is not None and self.master.poll() is not None:
                break
            if ready(self.state()):  # type: ignore[operator]
                return
            time.sleep(0.5)
        logs = "\n".join(p.read_text()[-2000:] for p in sorted(self.folder.glob("*.log")))
        self.stop()
        raise RuntimeError(f"{what} did not start within {START_TIMEOUT_S} s:\n{logs}")

    def stop(self) -> None:
        for process in [*self.workers, self.master]:
            if process is not None and process.poll() is None:
                process.terminate()
        for process in [*self.workers, self.master]:
            if process is not None:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()

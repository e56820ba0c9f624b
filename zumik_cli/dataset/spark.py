"""The Spark session the `--engine spark` paths run on, and the one place pyspark is imported.

pyspark (and the Java runtime under it) is an optional extra: importing this module imports nothing heavy, and
``session()`` says what to install when either is missing. The master comes from ``ZUMIK_SPARK_MASTER``
(``local[*]`` by default; ``spark://host:7077`` for a standalone cluster), so the same command runs on a laptop
and against a cluster.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from typing import Any

from zumik_cli.core.errors import MissingExtraError, ZumikError

ENGINES = ("duckdb", "spark")
MASTER_ENV = "ZUMIK_SPARK_MASTER"
DEFAULT_MASTER = "local[*]"
INSTALL = "pip install 'zumik[spark]' and a Java 17 runtime (Debian/Ubuntu: apt-get install openjdk-17-jre-headless)"
# Spark's defaults assume a big cluster: 200 shuffle partitions make a small dataset thousands of tiny tasks.
SHUFFLE_PARTITIONS = int(os.environ.get("ZUMIK_SPARK_PARTITIONS", "8"))


def master() -> str:
    return os.environ.get(MASTER_ENV) or DEFAULT_MASTER


def session(conf: dict[str, str] | None = None) -> Any:
    """The active Spark session, or a new one on ``master()`` with ``conf`` added; a missing pyspark or Java names
    what to install."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise MissingExtraError(f"--engine spark needs pyspark: {INSTALL}") from None
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise MissingExtraError(f"--engine spark needs a Java runtime, and none was found: {INSTALL}")
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # the executors' Python runs zumik's own code: this interpreter, unless the cluster names another
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(master())
        .appName("zumik")
        .config("spark.sql.shuffle.partitions", str(SHUFFLE_PARTITIONS))
        .config("spark.sql.session.timeZone", "UTC")
        # a window holds one (key, chain) timeline; a shared system prompt's is every request that sends it, so keep
        # a million rows (about 100 MB) in memory before the sorter, not Spark's 4,096
        .config("spark.sql.windowExec.buffer.in.memory.threshold", str(1 << 20))
        .config("spark.ui.enabled", "false")
        # Arrow both ways: a task's rows leave it as Arrow batches, the driver collects them as Arrow
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.pyspark.fallback.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        # the driver holds one row a request (the request table it sends as a local relation, the levels and the
        # bounded cache's hits it takes back), never a block: room for those, in the driver JVM
        .config("spark.driver.memory", os.environ.get("ZUMIK_SPARK_DRIVER_MEMORY", "4g"))
        .config("spark.driver.maxResultSize", "0")
    )
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    try:
        return builder.getOrCreate()
    except Exception as exc:  # the JVM did not start: Java missing or too old, or the master unreachable
        raise MissingExtraError(
            f"Spark could not start against {master()} ({str(exc).splitlines()[0][:200]}): check {MASTER_ENV} "
            f"and the Java runtime ({INSTALL})"
        ) from None


@contextlib.contextmanager
def jobs(what: str) -> Iterator[None]:
    """Spark jobs that failed after Spark's own retries (a lost executor is retried; four failures of one task, or a
    cluster that went away, are not) as one ZumikError; zumik's own errors pass as they are."""
    try:
        yield
    except ZumikError:
        raise
    except Exception as exc:
        from py4j.protocol import Py4JError
        from pyspark.errors import PySparkException

        if not isinstance(exc, PySparkException | Py4JError):
            raise
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ZumikError(
            f"the Spark job for {what} failed on {master()} ({first[:300]}): nothing was written; check the cluster "
            f"({MASTER_ENV}) and run the command again"
        ) from None

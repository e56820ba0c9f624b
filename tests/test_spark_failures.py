"""A worker lost in the middle of a Spark job: the waterfall comes out the same after Spark's retry, and an ingest
either publishes a whole dataset or none."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest

from zumik_cli.analysis.waterfall import WaterfallOptions, compute_waterfall
from zumik_cli.dataset.store import Dataset
from zumik_cli.ingest.pipeline import ingest

SAMPLE_TRACES = Path(__file__).resolve().parents[1] / "sample_traces"
KILL_AFTER_S = 4.0

pytestmark = [pytest.mark.spark, pytest.mark.xdist_group("spark")]


def _kill_a_worker_soon(cluster, delay: float) -> threading.Thread:
    victim = cluster.workers[-1]

    def kill() -> None:
        time.sleep(delay)
        victim.kill()  # SIGKILL to the worker JVM: its executor loses its worker and exits with it

    thread = threading.Thread(target=kill)
    thread.start()
    return thread


def _replace_the_killed_worker(cluster) -> None:
    cluster.start_worker(len(cluster.workers))
    deadline = time.monotonic() + 60
    while cluster.alive_workers() < 2 and time.monotonic() < deadline:
        time.sleep(0.5)


def _kill_a_worker_mid_job(cluster, done: threading.Event) -> tuple[threading.Thread, threading.Event]:
    """Kill the last worker as soon as a stage of the running job is active (not after a fixed delay, which a fast
    job outruns); the event returned says that it was killed while the job still ran."""
    from pyspark import SparkContext

    victim, killed_mid_job = cluster.workers[-1], threading.Event()

    def kill() -> None:
        while not done.is_set():
            context = SparkContext._active_spark_context
            if context is not None and context.statusTracker().getActiveStageIds():
                victim.kill()
                killed_mid_job.set()
                return
            time.sleep(0.05)

    thread = threading.Thread(target=kill)
    thread.start()
    return thread, killed_mid_job


def test_a_worker_killed_during_a_spark_waterfall_leaves_the_figures_unchanged(spark_cluster, tmp_path):
    ingest([SAMPLE_TRACES], tmp_path / "data")
    dataset = Dataset(tmp_path / "data")
    options = WaterfallOptions(by=("session",))
    embedded = compute_waterfall(dataset, options).summary
    assert spark_cluster.alive_workers() == 2

    done = threading.Event()
    killer, killed_mid_job = _kill_a_worker_mid_job(spark_cluster, done)
    try:
        on_spark = compute_waterfall(dataset, dataclasses.replace(options, engine="spark")).summary
    finally:
        done.set()
        killer.join()
        if killed_mid_job.is_set():
            spark_cluster.workers[-1].wait(timeout=30)
        _replace_the_killed_worker(spark_cluster)

    assert killed_mid_job.is_set()  # the worker was killed while a stage of the job ran
    assert on_spark == embedded


def test_a_worker_killed_during_a_spark_ingest_leaves_a_whole_dataset_or_none(spark_cluster, tmp_path):
    from zumik_cli.core.errors import ZumikError
    from zumik_cli.ingest.spark_ingest import ingest_spark

    data = tmp_path / "data"
    killer = _kill_a_worker_soon(spark_cluster, KILL_AFTER_S)
    try:
        try:
            ingest_spark([SAMPLE_TRACES], data)
            published = True
        except ZumikError:  # pragma: no cover - Spark gave up: then nothing may be published
            published = False
    finally:
        killer.join()
        _replace_the_killed_worker(spark_cluster)

    if published:
        ingest([SAMPLE_TRACES], tmp_path / "embedded")
        options = WaterfallOptions()
        assert compute_waterfall(Dataset(data), options).summary == (
            compute_waterfall(Dataset(tmp_path / "embedded"), options).summary
        )
    else:
        assert not (data / "manifest.json").exists()
    # no staging folder or stray part is left behind either way
    assert not list(data.glob(".staging-*"))

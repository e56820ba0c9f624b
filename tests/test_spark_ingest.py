"""`zumik ingest --engine spark`: one task a file on the two-worker cluster, one dataset published at the end, and the
same waterfall as the embedded ingest of the same files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zumik_cli.analysis.waterfall import WaterfallOptions, compute_waterfall
from zumik_cli.cli import app
from zumik_cli.dataset.store import Dataset
from zumik_cli.ingest.pipeline import ingest

SAMPLE_TRACES = Path(__file__).resolve().parents[1] / "sample_traces"

pytestmark = [pytest.mark.spark, pytest.mark.xdist_group("spark")]


def test_a_spark_ingested_dataset_gives_the_embedded_ingests_waterfall(spark_cluster, tmp_path):
    result = CliRunner().invoke(
        app, ["ingest", str(SAMPLE_TRACES), "--data", str(tmp_path / "spark"), "--engine", "spark", "--json"]
    )
    ingest([SAMPLE_TRACES], tmp_path / "embedded")

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    spark_data, embedded = Dataset(tmp_path / "spark"), Dataset(tmp_path / "embedded")
    assert summary["requests"] == embedded.connect().execute("SELECT count(*) FROM requests").fetchone()[0]
    # one requests part a file: the files were ingested apart, by their own tasks
    assert len(spark_data.parts("requests")) == len(list(SAMPLE_TRACES.glob("*.jsonl"))) == 2
    # a block read by both tasks is one row
    blocks = spark_data.connect().execute("SELECT count(*), count(DISTINCT block_id) FROM blocks").fetchone()
    assert blocks[0] == blocks[1] == summary["unique_blocks"]
    options = WaterfallOptions(by=("session", "model", "tenant"))
    assert compute_waterfall(spark_data, options).summary == compute_waterfall(embedded, options).summary


def test_a_trace_id_in_two_files_stops_the_spark_ingest_before_anything_is_published(spark_cluster, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(SAMPLE_TRACES / "agents-1.jsonl", inputs / "a.jsonl")
    shutil.copy(SAMPLE_TRACES / "agents-1.jsonl", inputs / "b.jsonl")
    data = tmp_path / "data"

    result = CliRunner().invoke(app, ["ingest", str(inputs), "--data", str(data), "--engine", "spark"])

    assert result.exit_code == 1
    assert "is in more than one input file: ingest these files with the embedded engine" in result.stderr
    assert not (data / "manifest.json").exists()
    assert [p.name for p in data.iterdir()] == [".lock"] or not any(p.suffix == ".parquet" for p in data.rglob("*"))


def test_spark_ingest_refuses_a_dataset_that_already_exists(tmp_path):
    ingest([SAMPLE_TRACES / "agents-1.jsonl"], tmp_path / "data")

    result = CliRunner().invoke(
        app, ["ingest", str(SAMPLE_TRACES), "--data", str(tmp_path / "data"), "--engine", "spark"]
    )

    assert result.exit_code == 4
    assert "--engine spark ingests into a new dataset" in result.stderr


def test_spark_ingest_reads_and_writes_file_uris_as_the_paths_they_name(spark_cluster, tmp_path):
    from zumik_cli.ingest.spark_ingest import ingest_spark

    summary = ingest_spark([f"file://{SAMPLE_TRACES}"], f"file://{tmp_path / 'spark'}")
    ingest([SAMPLE_TRACES], tmp_path / "embedded")

    assert summary.requests > 0 and (tmp_path / "spark" / "manifest.json").is_file()
    options = WaterfallOptions()
    spark_data, embedded = Dataset(tmp_path / "spark"), Dataset(tmp_path / "embedded")
    assert compute_waterfall(spark_data, options).summary == compute_waterfall(embedded, options).summary


def test_spark_ingest_refuses_object_storage_before_starting_spark(tmp_path):
    result = CliRunner().invoke(
        app, ["ingest", "s3://logs/june/", "--data", str(tmp_path / "data"), "--engine", "spark"]
    )

    assert result.exit_code == 7
    assert "--engine spark reads and writes a shared file system, not s3://logs/june" in result.stderr
    assert not (tmp_path / "data").exists()

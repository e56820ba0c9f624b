"""`--engine spark` gives the embedded engine's waterfall, figure for figure, on a two-worker standalone cluster.

The levels (the per-request shared prefixes at every level) run as Spark SQL windows over each key's timeline on
the cluster's executors; every step after them is shared. So the test compares the whole JSON document: every
stage, cause, money figure and curve point, on the sample traces, every real trace beside the checkout and three
synth seeds, under the recorded rules and under a what-if (ideal rules, a 300 s TTL, a bounded cache).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from zumik_cli.analysis.waterfall import WaterfallOptions, compute_waterfall
from zumik_cli.cli import app
from zumik_cli.dataset.store import Dataset
from zumik_cli.ingest.pipeline import ingest
from zumik_cli.synth.traffic import SynthConfig, write_jsonl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from mooncake import write_trace  # noqa: E402

SAMPLE_TRACES = Path(__file__).resolve().parents[1] / "sample_traces"
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
REAL_TRACES = sorted(p.name for p in REAL.iterdir()) if REAL.is_dir() else []
SYNTH_SEEDS = (1, 2, 3)

pytestmark = [pytest.mark.spark, pytest.mark.xdist_group("spark")]

OPTIONS = {
    "recorded": WaterfallOptions(by=("session", "model", "tenant", "day")),
    "what-if": WaterfallOptions(rules="ideal", ttl_seconds=300, capacity_tokens=65_536),
}
# no curve and no bounded cache: the blocks never leave the executors
NO_CURVE = WaterfallOptions(curves=False, ttl_seconds=3600)


def _both(dataset: Dataset, options: WaterfallOptions) -> tuple[dict[str, Any], dict[str, Any]]:
    embedded = compute_waterfall(dataset, options).summary
    on_spark = compute_waterfall(dataset, dataclasses.replace(options, engine="spark")).summary
    return embedded, on_spark


def _assert_identical(embedded: dict[str, Any], on_spark: dict[str, Any]) -> None:
    differing = [key for key in embedded if embedded[key] != on_spark.get(key)]
    assert not differing, f"the engines differ in {differing}"
    # the document as written, byte for byte
    assert json.dumps(on_spark, sort_keys=True) == json.dumps(embedded, sort_keys=True)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    data = tmp_path_factory.mktemp("sample") / "data"
    ingest([SAMPLE_TRACES], data)
    return Dataset(data)


@pytest.mark.parametrize("options", [*OPTIONS, "no-curve"])
def test_the_sample_traces_waterfall_is_identical_on_the_cluster(spark_cluster, sample, options):
    embedded, on_spark = _both(sample, OPTIONS.get(options, NO_CURVE))

    assert embedded["eligible"]["tokens"] > 0 and embedded["candidate"]["tokens"] > 0
    assert bool(embedded["capacity_curve"]) == (options != "no-curve")
    _assert_identical(embedded, on_spark)


def _collected_rows(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows of every Spark result the driver takes in, as they arrive (Arrow and row collects alike)."""
    from zumik_cli.dataset import spark

    DataFrame = type(spark.session().range(0))  # the session's own class (classic Spark overrides the base's methods)
    rows: list[int] = []
    to_arrow, collect = DataFrame.toArrow, DataFrame.collect

    def counted_arrow(frame: Any) -> Any:
        table = to_arrow(frame)
        rows.append(table.num_rows)
        return table

    def counted_collect(frame: Any) -> Any:
        found = collect(frame)
        rows.append(len(found))
        return found

    monkeypatch.setattr(DataFrame, "toArrow", counted_arrow)
    monkeypatch.setattr(DataFrame, "collect", counted_collect)
    return rows


def test_the_driver_takes_in_no_block_rows_for_the_curve_and_the_bounded_cache(spark_cluster, sample, monkeypatch):
    options = WaterfallOptions(rules="ideal", capacity_tokens=16_384, engine="spark")
    blocks = sample.connect().execute("SELECT count(*) FROM request_blocks").fetchall()[0][0]
    requests = sample.connect().execute("SELECT count(*) FROM requests").fetchall()[0][0]
    assert blocks > 3 * requests  # a block row each would show

    rows = _collected_rows(monkeypatch)
    summary = compute_waterfall(sample, options).summary

    evicted = next(cause for cause in summary["causes"] if cause["cause"] == "evicted")
    assert summary["capacity_curve"] and evicted["tokens"] > 0
    # the levels (one row a request), the bounded cache's hits (one a request) and one row of curve points
    assert sum(rows) <= 2 * requests + 1, rows


def test_vllms_block_pool_on_the_cluster_takes_in_only_the_levels_and_gives_the_embedded_figures(
    spark_cluster, sample, monkeypatch
):
    options = WaterfallOptions(rules="vllm", capacity_tokens=65_536)
    requests = sample.connect().execute("SELECT count(*) FROM requests").fetchall()[0][0]
    embedded = compute_waterfall(sample, options).summary

    rows = _collected_rows(monkeypatch)
    on_spark = compute_waterfall(sample, dataclasses.replace(options, engine="spark")).summary

    assert embedded["capacity_curve"] and embedded["candidate"]["tokens"] > 0
    _assert_identical(embedded, on_spark)
    # the pool reads the requests in time order and their token prompts from the dataset, never the blocks
    assert sum(rows) <= requests, rows


def test_a_sampled_curve_on_the_cluster_is_the_embedded_one(spark_cluster, tmp_path):
    write_trace(tmp_path / "mooncake.jsonl", 3_000, seed=5)
    ingest([tmp_path / "mooncake.jsonl"], tmp_path / "data")
    options = WaterfallOptions(rules="ideal", curve_sample_rate=0.05, capacity_tokens=1_000_000)

    embedded, on_spark = _both(Dataset(tmp_path / "data"), options)

    assert embedded["capacity_curve_sampling"]["sampled_accesses"] < embedded["capacity_curve_sampling"]["accesses"]
    _assert_identical(embedded, on_spark)


def _streamed_units(dataset: Dataset, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """The units the cluster numbers for the LRU task, in time order, beside the levels pass's."""
    import numpy as np

    from zumik_cli.analysis import spark_levels
    from zumik_cli.analysis.levels import compute_levels
    from zumik_cli.analysis.waterfall import REQ_SQL
    from zumik_cli.rules.pack import resolve_packs
    from zumik_cli.rules.targets import register_target_rules

    seen: list[Any] = []
    stream = spark_levels._lru_stream

    def kept(*args: Any) -> Any:
        found = stream(*args)
        seen.append(found.orderBy("slot", "pos").select("unit").toArrow().column("unit").to_numpy())
        return found

    monkeypatch.setattr(spark_levels, "_lru_stream", kept)
    compute_waterfall(dataset, WaterfallOptions(engine="spark"))
    con = dataset.connect()
    packs, forced = resolve_packs(None)
    register_target_rules(con, "packs_in", packs, forced)
    con.execute(REQ_SQL)
    coincide = bool(con.execute("SELECT count(DISTINCT fam_id) = count(DISTINCT kvc_id) FROM req").fetchall()[0][0])
    embedded = compute_levels(con, coincide, dataset.parts("request_blocks"))
    return np.asarray(seen[0]), embedded.units


@pytest.mark.parametrize("traces", ["mooncake", "sample"])
def test_the_cluster_numbers_each_unit_as_the_levels_pass_does(spark_cluster, sample, tmp_path, traces, monkeypatch):
    # the SHARDS sample hashes the unit numbers, so both engines must number (KV key, chain) pairs alike
    dataset = sample
    if traces == "mooncake":
        write_trace(tmp_path / "mooncake.jsonl", 1_500, seed=7)
        ingest([tmp_path / "mooncake.jsonl"], tmp_path / "data")
        dataset = Dataset(tmp_path / "data")

    on_cluster, embedded = _streamed_units(dataset, monkeypatch)

    assert len(embedded) > 1_000 and len(set(embedded.tolist())) > 100
    assert on_cluster.tolist() == embedded.tolist()


@pytest.mark.realdata
@pytest.mark.skipif(not REAL_TRACES, reason=f"the real traces are not here ({REAL}); CI has them beside the checkout")
@pytest.mark.parametrize("folder", REAL_TRACES)
def test_every_real_trace_gives_the_same_waterfall_on_the_cluster(spark_cluster, tmp_path, folder):
    data = tmp_path / "data"
    ingest([REAL / folder], data)
    for options in OPTIONS.values():
        _assert_identical(*_both(Dataset(data), options))


@pytest.mark.parametrize("seed", SYNTH_SEEDS)
def test_synth_traffic_of_three_seeds_gives_the_same_waterfall_on_the_cluster(spark_cluster, tmp_path, seed):
    trace = tmp_path / f"synth-{seed}.jsonl"
    write_jsonl(SynthConfig(seed=seed, sessions=8), trace)
    ingest([trace], tmp_path / "data")
    for options in OPTIONS.values():
        _assert_identical(*_both(Dataset(tmp_path / "data"), options))


def test_zumik_waterfall_engine_spark_prints_the_embedded_json(spark_cluster, sample):
    runner = CliRunner()
    embedded = runner.invoke(app, ["waterfall", "--data", str(sample.root), "--json"])
    on_spark = runner.invoke(app, ["waterfall", "--data", str(sample.root), "--json", "--engine", "spark"])

    assert embedded.exit_code == 0 and on_spark.exit_code == 0, on_spark.output
    assert json.loads(on_spark.stdout) == json.loads(embedded.stdout)


def test_an_unknown_engine_is_refused_with_the_ones_there_are(sample):
    result = CliRunner().invoke(app, ["waterfall", "--data", str(sample.root), "--engine", "hadoop"])

    assert result.exit_code == 1
    assert "unknown engine 'hadoop': use one of duckdb, spark" in result.stderr


def test_zumik_diagnose_engine_spark_ingests_on_the_cluster_and_reports_the_embedded_figures(spark_cluster, tmp_path):
    (tmp_path / "traces").mkdir()
    write_jsonl(SynthConfig(seed=4, sessions=6), tmp_path / "traces" / "agents.jsonl")
    runner = CliRunner()
    args = ["diagnose", str(tmp_path / "traces"), "--no-report", "--json"]
    embedded = runner.invoke(app, [*args, "--data", str(tmp_path / "embedded")])
    on_spark = runner.invoke(app, [*args, "--data", str(tmp_path / "spark"), "--engine", "spark"])

    assert embedded.exit_code == 0 and on_spark.exit_code == 0, on_spark.output
    spark_json, embedded_json = json.loads(on_spark.stdout), json.loads(embedded.stdout)
    # the Spark ingest ran: one task a file, its summary says so
    assert spark_json["ingest"]["timings"] == {"tasks": 1.0}
    for key in ("total_input_tokens", "eligible", "candidate", "realized", "missed", "causes", "money", "breakdowns"):
        assert spark_json[key] == embedded_json[key], key
    assert spark_json["recommendations"] == embedded_json["recommendations"]

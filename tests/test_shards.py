"""The SHARDS-sampled LRU curve against the exact one on Mooncake-shape traffic (``bench/mooncake.py``): at every
capacity the difference stays within the error bound printed beside the point."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from zumik_cli.analysis import capacity, shards
from zumik_cli.cli import app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from mooncake import generate_lines, write_trace  # noqa: E402

SAMPLE_TRACES = Path(__file__).resolve().parents[1] / "sample_traces"
CAPACITIES = [1_000_000, 3_000_000, 10_000_000, 30_000_000, None]
BLOCK = 512


@pytest.fixture(scope="module")
def mooncake_workload() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids = [json.loads(line)["hash_ids"] for line in generate_lines(60_000, seed=3)]
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in ids])]).astype(np.int64)
    units = np.concatenate([np.asarray(x, dtype=np.int64) for x in ids])
    return offsets, units, np.full(len(units), BLOCK, dtype=np.int64)


@pytest.mark.parametrize("rate", [0.1, 0.02])
def test_the_sampled_curve_is_within_its_stated_bound_of_the_exact_curve(mooncake_workload, rate):
    offsets, units, sizes = mooncake_workload
    exact = capacity.capacity_curve(offsets, units, sizes, CAPACITIES, BLOCK)
    curve = shards.sampled_curve(offsets, units, sizes, CAPACITIES, rate, BLOCK)

    total = int(sizes.sum())
    differences = [abs(hits / total - ratio) for (_, hits), (_, ratio) in zip(exact, curve.points, strict=True)]
    print(f"rate {rate}: largest difference {max(differences):.4f}, largest bound {max(curve.bounds):.4f}")
    assert all(d <= b for d, b in zip(differences, curve.bounds, strict=True)), (differences, curve.bounds)
    assert curve.sampled_accesses < len(units)
    # a bound that says nothing would pass anything
    assert max(curve.bounds) < 0.05


def test_a_sample_without_the_hot_units_misses_by_more_than_the_hot_set_does(mooncake_workload):
    # the reason the hottest units are kept whole: plain spatial sampling at a low rate leans on a few of them
    offsets, units, sizes = mooncake_workload
    exact = capacity.capacity_curve(offsets, units, sizes, [1_000_000], BLOCK)[0][1] / int(sizes.sum())
    keep = shards.sampled(units, 0.01)
    plain_units, plain_offsets = units[keep], [0]
    for start, end in zip(offsets[:-1], offsets[1:], strict=True):
        plain_offsets.append(plain_offsets[-1] + int(keep[start:end].sum()))
    depths = capacity.lru_prefix_depths(np.unique(plain_offsets), plain_units)
    plain = float((depths <= 1_000_000 // BLOCK * 0.01).mean())
    stratified = shards.sampled_curve(offsets, units, sizes, [1_000_000], 0.01, BLOCK).points[0][1]

    assert abs(stratified - exact) < abs(plain - exact)


def test_zumik_waterfall_prints_the_sampling_rate_and_bound_beside_the_curve(tmp_path):
    write_trace(tmp_path / "mooncake.jsonl", 5_000, seed=1)
    runner = CliRunner()
    assert (
        runner.invoke(app, ["ingest", str(tmp_path / "mooncake.jsonl"), "--data", str(tmp_path / "d")]).exit_code == 0
    )
    args = ["waterfall", "--data", str(tmp_path / "d"), "--rules", "ideal", "--curve", "1M,3M"]

    as_json = runner.invoke(app, [*args, "--curve-sample", "0.1", "--json"])
    table = runner.invoke(app, [*args, "--curve-sample", "0.1"])
    exact = runner.invoke(app, [*args, "--json"])

    assert as_json.exit_code == 0, as_json.output
    summary, exact_summary = json.loads(as_json.stdout), json.loads(exact.stdout)
    sampling = summary["capacity_curve_sampling"]
    assert sampling["rate"] == 0.1 and 0 < sampling["error_bound"] < 1
    for point, exact_point, bound in zip(
        summary["capacity_curve"], exact_summary["capacity_curve"], sampling["point_bounds"], strict=True
    ):
        assert abs(point["rate"] - exact_point["rate"]) <= bound
    assert "capacity_curve_sampling" not in exact_summary
    assert "SHARDS sample at rate 0.1" in table.stdout and f"±{sampling['error_bound']:.4f}" in table.stdout


def test_a_sampled_curve_is_refused_for_content_traces_with_what_to_do(tmp_path):
    runner = CliRunner()
    runner.invoke(app, ["ingest", str(SAMPLE_TRACES / "agents-1.jsonl"), "--data", str(tmp_path / "d")])

    result = runner.invoke(app, ["waterfall", "--data", str(tmp_path / "d"), "--curve-sample", "0.1"])

    assert result.exit_code == 1
    assert "a sampled curve (--curve-sample) is for hash-id traces of one block size" in result.stderr

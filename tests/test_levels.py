"""The levels pass, compiled and interpreted: one id per chain, batches, parts and table growth change nothing, order
is checked."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pytest

from zumik_cli.analysis import capacity, levels
from zumik_cli.analysis.levels import _Pass


@pytest.fixture(autouse=True, params=["compiled", "interpreted"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs the pass both ways, whatever the size of its input."""
    monkeypatch.setattr(levels, "COMPILED_MIN", 0 if request.param == "compiled" else 2**62)
    return str(request.param)


def _feed(run: _Pass, blocks: dict[str, np.ndarray], units: np.ndarray, checked: bool = True) -> bool:
    with ThreadPoolExecutor(2) as pool:
        futures = run.start(pool, *(blocks[k] for k in ("rids", "pos", "chain", "end_token")), units, checked)
        return all(f.result() for f in futures)


def _requests(counts: np.ndarray, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = len(counts)
    return pa.table(
        {
            "rid": np.arange(n, dtype=np.int64) * 7 + 3,
            "ts": np.sort(rng.uniform(0, 10_000, n)),
            "ttl": pa.array([300.0] * n),
            "ttl_long": pa.array([3600.0] * n),
            "long_until": pa.array(rng.integers(-1, 3, n) * 16),  # none, or the end of the first or second block
            "fam_id": np.ones(n, dtype=np.int64),
            "tgt_id": rng.integers(1, 3, n),
            "kvc_id": rng.integers(1, 4, n),
        }
    )


def _blocks(counts: np.ndarray, req: pa.Table, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    total = int(counts.sum())
    rids = np.repeat(req.column("rid").to_numpy(), counts)
    pos = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    chain = rng.integers(0, 3_000, total) * 1_000_003 - 2**40  # past the first table of 512 units
    return {"rids": rids, "pos": pos, "chain": chain, "end_token": (pos + 1) * 16}


def _run(req: pa.Table, counts: np.ndarray, coincide: bool, blocks: dict[str, np.ndarray], cuts=()) -> tuple:
    run = _Pass(req, counts, coincide, 2)  # the smallest tables: they must grow along the way
    units = np.empty(len(blocks["pos"]), dtype=np.int32)
    bounds = [0, *cuts, len(units)]
    for a, b in zip(bounds, bounds[1:], strict=False):
        assert _feed(run, {k: v[a:b] for k, v in blocks.items()}, units[a:b])
    assert run.complete()
    return run.out.copy(), units, run.n_units


def test_units_give_each_chain_one_id_below_the_bound() -> None:
    counts = np.random.default_rng(1).integers(0, 9, 2_000)
    req = _requests(counts)
    blocks = _blocks(counts, req)
    _, units, n = _run(req, counts, True, blocks)
    pairs = set(zip(blocks["chain"].tolist(), units.tolist(), strict=True))
    assert len(pairs) == len(set(blocks["chain"].tolist())) == len(set(units.tolist()))
    assert units.min() >= 0 and units.max() < n <= 2 * len(pairs) + 2


def test_batches_and_table_growth_change_no_level() -> None:
    counts = np.random.default_rng(2).integers(0, 9, 3_000)
    req = _requests(counts, 2)
    blocks = _blocks(counts, req, 2)
    for coincide in (True, False):
        whole = _run(req, counts, coincide, blocks)
        cut = _run(req, counts, coincide, blocks, cuts=(1, 777, 5_000, 5_001))
        assert np.array_equal(whole[0], cut[0]) and np.array_equal(whole[1], cut[1]) and whole[2] == cut[2]
        assert whole[0].any()


def test_a_block_out_of_time_order_stops_the_pass() -> None:
    counts = np.array([2, 0, 3])
    req = _requests(counts)
    blocks = _blocks(counts, req)
    swapped = {k: v.copy() for k, v in blocks.items()}
    swapped["rids"][[1, 2]] = swapped["rids"][[2, 1]]
    run = _Pass(req, counts, True, 5)
    units = np.empty(5, dtype=np.int32)
    assert not _feed(run, swapped, units)
    short = _Pass(req, counts, True, 5)
    assert _feed(short, {k: v[:4] for k, v in blocks.items()}, units[:4])
    assert not short.complete()


def test_capacity_curve_with_given_dense_units_matches_renumbered() -> None:
    counts = np.random.default_rng(3).integers(0, 12, 400)
    req = _requests(counts, 3)
    blocks = _blocks(counts, req, 3)
    _, dense, n_units = _run(req, counts, True, blocks)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    tokens = np.random.default_rng(3).integers(1, 17, len(dense))
    caps = [0, 16, 160, 1600, None]
    assert capacity.capacity_curve(offsets, dense, tokens, caps, 16, n_units=n_units) == capacity.capacity_curve(
        offsets, blocks["chain"], tokens, caps, 16
    )

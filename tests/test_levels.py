"""The levels pass, compiled and interpreted: one id per chain, batches, parts and table growth change nothing, order
is checked."""

import gc
import os
from concurrent.futures import ThreadPoolExecutor

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from zumik_cli.analysis import capacity, levels
from zumik_cli.analysis.levels import _Pass, compute_levels


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


def test_token_offsets_past_int32_widen_the_results_and_change_no_level() -> None:
    # the results start in int32; a batch whose token offsets pass it widens them before the pass reads it
    counts = np.random.default_rng(4).integers(0, 9, 2_000)
    req = _requests(counts, 4)
    blocks = _blocks(counts, req, 4)
    later = np.repeat(np.arange(len(counts)) >= 1_000, counts)  # the blocks of the second half of the requests
    shift = 2**32
    far_blocks = {**blocks, "end_token": blocks["end_token"] + np.where(later, shift, 0)}
    long_until = req.column("long_until").to_numpy()
    far_until = np.where((np.arange(len(counts)) >= 1_000) & (long_until >= 0), long_until + shift, long_until)
    far_req = req.set_column(req.schema.get_field_index("long_until"), "long_until", pa.array(far_until))
    near, _, _ = _run(req, counts, True, blocks, cuts=(int(counts[:1_000].sum()),))
    far, _, _ = _run(far_req, counts, True, far_blocks, cuts=(int(counts[:1_000].sum()),))
    # the rows of token offsets (of six rows, the family's and target's are the key's); the others count blocks
    tokens = sorted({levels.level_row(k, len(near)) for k in (1, 3, 5, 7, 8, 9)})
    expected = near.astype(np.int64)
    expected[np.ix_(tokens, np.arange(1_000, len(counts)))] += np.where(near[tokens, 1_000:] > 0, shift, 0)
    assert far.dtype == np.int64 and (far[tokens] > 2**31).any()
    assert np.array_equal(far, expected)


def _stored(folder, counts: np.ndarray, req: pa.Table, blocks: dict, tokens: np.ndarray) -> tuple:
    """A connection with ``req`` and the blocks stored in Parquet in time order, small row groups: as the waterfall
    hands them to ``compute_levels``."""
    path = folder / "blocks.parquet"
    stored = {"rid": blocks["rids"], "pos": blocks["pos"], "chain": blocks["chain"], "tokens": tokens}
    pq.write_table(pa.table({**stored, "end_token": blocks["end_token"]}), path, row_group_size=256)
    con = duckdb.connect()
    ords = pa.array(np.arange(1, len(counts) + 1))
    con.register("req_in", req.append_column("ord", ords).append_column("n_blocks", pa.array(counts)))
    con.execute("CREATE TEMP TABLE req AS SELECT * FROM req_in")
    con.execute(f"CREATE VIEW request_blocks AS SELECT * FROM read_parquet('{path}')")
    return con, [str(path)]


def test_block_sizes_past_int16_are_kept_whole(tmp_path) -> None:
    counts = np.random.default_rng(5).integers(1, 9, 500)
    req = _requests(counts, 5)
    blocks = _blocks(counts, req, 5)
    tokens = np.full(len(blocks["pos"]), 16, dtype=np.int64)
    tokens[-3:] = 40_000  # in the last row group, after the sizes were taken as int16
    con, parts = _stored(tmp_path, counts, req, blocks, tokens)
    workload = compute_levels(con, True, parts)
    assert np.array_equal(workload.sizes, tokens)
    assert con.execute("SELECT count(*) FROM levels").fetchall()[0][0] == len(counts)


def test_a_trace_past_one_sweep_reads_its_blocks_once_a_sweep_to_the_same_levels(tmp_path, monkeypatch) -> None:
    counts = np.random.default_rng(7).integers(0, 9, 1_500)
    req = _requests(counts, 7)
    blocks = _blocks(counts, req, 7)
    tokens = np.random.default_rng(7).integers(1, 17, len(blocks["pos"]))
    con, parts = _stored(tmp_path, counts, req, blocks, tokens)
    one = compute_levels(con, False, parts)
    one_levels = con.execute("SELECT * FROM levels ORDER BY rid").fetchall()
    monkeypatch.setattr(levels, "SWEEP_BLOCKS", 1_000)  # about 6,000 blocks: eight sweeps
    swept = compute_levels(con, False, parts)
    assert con.execute("SELECT * FROM levels ORDER BY rid").fetchall() == one_levels
    assert np.array_equal(swept.sizes, tokens) and np.array_equal(swept.offsets, one.offsets)
    # the same pairs, numbered apart: each unit of one pass is one unit of the other
    assert len(set(zip(one.units.tolist(), swept.units.tolist(), strict=True))) == len(set(one.units.tolist()))
    assert len(set(swept.units.tolist())) == len(set(one.units.tolist())) and swept.units.max() < swept.n_units


@pytest.mark.parametrize("sweep_blocks", [2**25, 1_000])
def test_a_trace_past_the_spill_threshold_keeps_its_blocks_on_files_and_gives_the_same_levels_and_blocks(
    tmp_path, monkeypatch, sweep_blocks
) -> None:
    counts = np.random.default_rng(8).integers(0, 9, 1_500)
    req = _requests(counts, 8)
    blocks = _blocks(counts, req, 8)
    tokens = np.random.default_rng(8).integers(1, 17, len(blocks["pos"]))
    tokens[-3:] = 40_000  # past int16 in the last row group: the spilled sizes are widened on file
    con, parts = _stored(tmp_path, counts, req, blocks, tokens)
    monkeypatch.setattr(levels, "SWEEP_BLOCKS", sweep_blocks)  # one sweep, or eight
    held = compute_levels(con, False, parts)
    held_levels = con.execute("SELECT * FROM levels ORDER BY rid").fetchall()
    monkeypatch.setattr(levels, "SPILL_BLOCKS", 100)
    spilled = compute_levels(con, False, parts)

    assert spilled.timeline.is_spilled and not held.timeline.is_spilled
    assert con.execute("SELECT * FROM levels ORDER BY rid").fetchall() == held_levels
    assert np.array_equal(spilled.units, held.units) and np.array_equal(spilled.sizes, tokens)
    assert spilled.sizes.dtype == np.int32 and spilled.block_tokens == held.block_tokens == int(tokens.sum())
    assert spilled.n_units == held.n_units and np.array_equal(spilled.offsets, held.offsets)
    # batches of whole requests, read back from the files a range at a time
    pieces = list(spilled.batches(blocks=500))
    assert len(pieces) > 5 and all(offsets[0] == 0 for offsets, _, _ in pieces)
    assert sum(len(offsets) - 1 for offsets, _, _ in pieces) == len(spilled.rids)
    assert np.array_equal(np.concatenate([units for _, units, _ in pieces]), held.units)
    assert np.array_equal(np.concatenate([sizes for _, _, sizes in pieces]), tokens)


def test_the_spilled_blocks_files_go_with_the_workload(tmp_path, monkeypatch) -> None:
    counts = np.random.default_rng(9).integers(1, 9, 300)
    req = _requests(counts, 9)
    blocks = _blocks(counts, req, 9)
    con, parts = _stored(tmp_path, counts, req, blocks, np.full(len(blocks["pos"]), 16))
    monkeypatch.setattr(levels, "SPILL_BLOCKS", 10)
    workload = compute_levels(con, True, parts)
    folder = workload.timeline._folder
    assert folder is not None and len(os.listdir(folder)) == 2

    del workload
    gc.collect()

    assert not os.path.exists(folder)


def test_sweeps_over_shares_of_the_chains_change_no_level_and_number_each_pair_once() -> None:
    counts = np.random.default_rng(6).integers(0, 9, 2_000)
    req = _requests(counts, 6)
    blocks = _blocks(counts, req, 6)
    kvc = np.repeat(req.column("kvc_id").to_numpy(), counts)
    for coincide in (True, False):
        whole, _, _ = _run(req, counts, coincide, blocks)
        run = _Pass(req, counts, coincide, 2, sweeps=4)
        units = np.full(len(blocks["pos"]), -1, dtype=np.int32)
        more = True
        while more:
            for a, b in ((0, 1_000), (1_000, len(units))):
                assert _feed(run, {k: v[a:b] for k, v in blocks.items()}, units[a:b])
            assert run.complete()
            more = run.next_sweep()
        assert run.sweeps == 4 and np.array_equal(run.out, whole)
        # a unit is a (key, chain) pair; with coincide the key is one
        keys = (np.zeros_like(kvc) if coincide else kvc).tolist()
        pairs = set(zip(keys, blocks["chain"].tolist(), strict=True))
        numbered = set(zip(keys, blocks["chain"].tolist(), units.tolist(), strict=True))
        assert len(numbered) == len(pairs) == len(set(units.tolist()))
        assert units.min() >= 0 and units.max() < run.n_units

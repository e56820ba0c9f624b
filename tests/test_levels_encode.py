"""The compiled numbering of levels and the capacity curve's pre-numbered path agree with their references."""

import numpy as np
import pyarrow as pa

from zumik_cli import capacity
from zumik_cli.levels import _encode


def test_encode_numbers_in_first_seen_order_like_arrow() -> None:
    rng = np.random.default_rng(7)
    cases = [
        np.array([], dtype=np.int64),
        np.array([5, 5, -3, 2**63 - 1, -(2**63), 5, 0], dtype=np.int64),
        rng.integers(-(2**63), 2**63 - 1, 100_000),
        rng.integers(0, 500, 100_000),
        np.arange(70_000, dtype=np.int64) * 4096,
    ]
    for values in cases:
        numbers, n = _encode(values)
        expected = pa.array(values, type=pa.int64()).dictionary_encode()
        assert n == len(expected.dictionary)
        assert np.array_equal(numbers, expected.indices.to_numpy(zero_copy_only=False))


def test_capacity_curve_with_given_dense_units_matches_renumbered() -> None:
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 12, 400)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    ids = rng.integers(0, 300, int(offsets[-1])) * 1_000_003
    tokens = rng.integers(1, 17, ids.shape[0])
    dense, n_units = _encode(ids)
    caps = [0, 16, 160, 1600, None]
    assert capacity.capacity_curve(offsets, dense, tokens, caps, 16, n_units=n_units) == capacity.capacity_curve(
        offsets, ids, tokens, caps, 16
    )

"""The run-wide chain-id cache gives the ids that hashing each batch on its own gives."""

import numpy as np

from zumik_cli.core import identity
from zumik_cli.ingest import rows


def test_chain_cache_matches_per_batch_and_identity() -> None:
    cache = rows.ChainCache()
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 5000, 3000), np.arange(4000, 9000), np.array([], dtype=np.int64), np.array([7, 7, 0])]
    for ids in batches:
        ids = ids.astype(np.int64)
        cached = rows._chains("mooncake:t.jsonl", ids, cache)
        assert np.array_equal(cached, rows._chains("mooncake:t.jsonl", ids))
    sample = [0, 7, 4999, 8999]
    expected = [identity.hash_chain_ids("mooncake:t.jsonl", [i])[0] for i in sample]
    assert rows._chains("mooncake:t.jsonl", np.array(sample, dtype=np.int64), cache).tolist() == expected


def test_ids_outside_the_dense_range_take_the_dictionary_way() -> None:
    cache = rows.ChainCache()
    ids = np.array([-3, 5, rows.DENSE_IDS, 5], dtype=np.int64)
    assert cache.chains("s", ids) is None
    assert np.array_equal(rows._chains("s", ids, cache), rows._chains("s", ids))
    # a second scope keeps its own table
    assert not np.array_equal(rows._chains("a", np.array([1]), cache), rows._chains("b", np.array([1]), cache))

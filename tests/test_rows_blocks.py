"""request_blocks columns built in one pass equal the per-column array arithmetic they replace."""

import numpy as np
import pyarrow as pa

from zumik_cli.core import identity
from zumik_cli.ingest import rows


def _by_arrays(rids: np.ndarray, offsets: np.ndarray, chain: np.ndarray, tokens: np.ndarray) -> dict[str, np.ndarray]:
    counts = np.diff(offsets)
    starts = offsets[:-1]
    nonempty = counts > 0
    parent = np.empty_like(chain)
    if len(chain):
        parent[1:] = chain[:-1]
        parent[starts[nonempty]] = identity.ROOT_CHAIN
    running = np.cumsum(tokens)
    before = np.repeat(running[starts[nonempty]] - tokens[starts[nonempty]], counts[nonempty])
    return {
        "rid": np.repeat(rids, counts),
        "pos": np.arange(len(chain), dtype=np.int64) - np.repeat(starts, counts),
        "parent": parent,
        "end_token": running - before,
    }


def test_block_columns_equal_the_array_arithmetic_with_empty_requests_among_them() -> None:
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 6, 400)
    counts[:3] = 0
    counts[-1] = 0
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    rids = rng.integers(-(2**63), 2**63 - 1, len(counts), dtype=np.int64)
    chain = rng.integers(-(2**63), 2**63 - 1, int(offsets[-1]), dtype=np.int64)
    tokens = rng.integers(0, 513, int(offsets[-1]))
    got = rows.block_rows(rids, offsets, chain, tokens)
    for name, expected in _by_arrays(rids, offsets, chain, tokens).items():
        assert np.array_equal(got[name], expected), name
    assert got["block_id"] is chain and got["tokens"] is tokens


def test_hash_id_blocks_split_the_input_into_whole_blocks_then_the_rest() -> None:
    offsets = np.array([0, 3, 3, 5, 6], dtype=np.int64)
    input_length = np.array([1100, 0, 1024, 0], dtype=np.int64)
    tokens = np.empty(6, dtype=np.int64)
    rows._fill_hash_block_tokens(offsets, input_length, 512, tokens)
    counts = np.diff(offsets)
    pos = np.arange(6) - np.repeat(offsets[:-1], counts)
    assert tokens.tolist() == np.clip(np.repeat(input_length, counts) - pos * 512, 0, 512).tolist()
    assert tokens.tolist() == [512, 512, 76, 512, 512, 0]


def test_a_repeated_string_column_equals_arrows_cast() -> None:
    for value in ("", "default", "hashid:mooncake:é.jsonl:512"):
        for n in (0, 1, 7):
            got = rows._repeated(value, n)
            got.validate(full=True)
            assert got.equals(pa.array([value] * n, type=pa.string()))

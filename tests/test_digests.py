"""The vectorised BLAKE2b equals hashlib however the messages fall into lanes, blocks, slices and threads."""

import hashlib
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from zumik_cli.core import blake2b, digests


@pytest.fixture(autouse=True)
def _compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test here checks the compiled kernels, whatever the size below which hashlib does the work."""
    monkeypatch.setattr(digests, "COMPILED_MIN", 0)


def _decimal_digest(prefix: bytes, value: int, size: int) -> bytes:
    text = str(value).encode()
    return hashlib.blake2b(prefix + len(text).to_bytes(8, "little") + text, digest_size=size).digest()


def test_decimal_digests_equal_hashlib_when_messages_of_one_group_span_different_block_counts() -> None:
    rng = np.random.default_rng(1)
    extremes = np.array([0, 7, -1, 10, 2**63 - 1, -(2**63), 123_456_789, -987], dtype=np.int64)
    values = np.concatenate([extremes, rng.integers(-(2**63), 2**63 - 1, 150, dtype=np.int64)])  # not whole lanes
    # prefixes around 128 bytes: "7" fits in the first block, "-9223372036854775808" spills into a second
    for length in (0, 50, 100, 101, 108, 119, 120, 127, 128, 300):
        prefix = bytes(rng.integers(0, 256, length, dtype=np.uint8))
        for size in (8, 12, 64):
            got = digests.digest_decimals(prefix, values, size)
            assert [bytes(row) for row in got] == [_decimal_digest(prefix, int(v), size) for v in values]


def test_row_digests_equal_hashlib_for_any_width() -> None:
    rng = np.random.default_rng(2)
    for width in (0, 1, 44, 127, 128, 129, 256, 300):
        rows = rng.integers(0, 256, (blake2b.LANES + 3, width), dtype=np.uint8)
        for size in (8, 12, 64):
            expected = [hashlib.blake2b(bytes(row), digest_size=size).digest() for row in rows]
            assert [bytes(row) for row in digests.digest_rows(rows, size)] == expected


def test_no_messages_give_no_digests() -> None:
    assert digests.digest_decimals(b"p", np.array([], dtype=np.int64), 8).shape == (0, 8)
    assert digests.digest_rows(np.zeros((0, 5), dtype=np.uint8), 12).shape == (0, 12)


def test_slices_hashed_on_helper_threads_give_what_one_slice_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    values = np.random.default_rng(3).integers(0, 1 << 23, 10_001)
    rows = np.random.default_rng(4).integers(0, 256, (10_001, 44), dtype=np.uint8)
    monkeypatch.setattr(digests, "SLICE_MIN", 1 << 62)
    whole = digests.digest_decimals(b"scope", values, 8), digests.digest_rows(rows, 8)
    monkeypatch.setattr(digests, "SLICE_MIN", 1000)
    monkeypatch.setattr(digests, "_cores", lambda: 3)  # three uneven slices, whatever this machine has
    sliced = digests.digest_decimals(b"scope", values, 8), digests.digest_rows(rows, 8)
    assert np.array_equal(whole[0], sliced[0]) and np.array_equal(whole[1], sliced[1])
    assert bytes(sliced[0][-1]) == _decimal_digest(b"scope", int(values[-1]), 8)


def test_callers_on_several_threads_each_get_their_own_digests() -> None:
    arrays = [np.arange(k * 20_000, (k + 1) * 20_000) for k in range(4)]
    alone = [digests.digest_decimals(b"p", a, 8) for a in arrays]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda a: digests.digest_decimals(b"p", a, 8), arrays))
    assert all(np.array_equal(x, y) for x, y in zip(alone, together, strict=True))


def test_small_arrays_hashed_by_hashlib_give_what_the_compiled_kernels_give(monkeypatch: pytest.MonkeyPatch) -> None:
    values = np.concatenate([[0, -1, 2**63 - 1, -(2**63)], np.random.default_rng(5).integers(0, 1 << 40, 300)])
    rows = np.random.default_rng(6).integers(0, 256, (300, 44), dtype=np.uint8)
    compiled = digests.digest_decimals(b"scope", values, 8), digests.digest_rows(rows, 12)
    monkeypatch.setattr(digests, "COMPILED_MIN", 1 << 16)
    small = digests.digest_decimals(b"scope", values, 8), digests.digest_rows(rows, 12)
    assert small[0].shape == (304, 8) and small[1].shape == (300, 12)
    assert np.array_equal(compiled[0], small[0]) and np.array_equal(compiled[1], small[1])
    assert digests.digest_decimals(b"p", np.array([], dtype=np.int64), 8).shape == (0, 8)
    assert digests.digest_rows(np.zeros((0, 5), dtype=np.uint8), 12).shape == (0, 12)


def test_once_the_compiled_kernels_are_loaded_a_batch_below_the_threshold_is_hashed_by_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A large trace's chunks hold fewer requests than the threshold: their ids go compiled once numba is paid for."""
    monkeypatch.setattr(digests, "COMPILED_MIN", 1 << 16)
    values = np.arange(-2000, 3000)
    rows = np.random.default_rng(7).integers(0, 256, (5000, 44), dtype=np.uint8)
    expected_rows = [hashlib.blake2b(bytes(row), digest_size=8).digest() for row in rows]
    expected = [_decimal_digest(b"scope", int(v), 12) for v in values]
    assert "zumik_cli.core.blake2b" in sys.modules  # imported above, as a large array's digests import it

    def hashlib_path(*args: object) -> np.ndarray:
        raise AssertionError("hashlib hashed an array that the loaded kernels should have")

    monkeypatch.setattr(digests, "_hashed", hashlib_path)
    assert [bytes(row) for row in digests.digest_decimals(b"scope", values, 12)] == expected
    assert [bytes(row) for row in digests.digest_rows(rows, 8)] == expected_rows
    with pytest.raises(AssertionError, match="hashlib hashed"):
        digests.digest_decimals(b"scope", values[: digests.LOADED_MIN - 1], 12)  # a few: hashlib, still


def test_digests_as_hex_ids_are_prefix_and_lowercase_hex_of_every_byte() -> None:
    rows = np.vstack([np.arange(256, dtype=np.uint8).reshape(-1, 8), np.full((1, 8), 255, dtype=np.uint8)])
    ids = digests.as_hex("trc_", rows)
    assert ids.dtype == np.dtype("S20")
    assert [i.decode() for i in ids] == ["trc_" + bytes(row).hex() for row in rows]
    assert digests.as_hex("mat_", np.zeros((0, 12), dtype=np.uint8)).shape == (0,)

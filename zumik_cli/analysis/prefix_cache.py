"""A simulated prefix cache for one target, driven by the target's rules pack.

Entries are prefix-chain ids (``request_blocks.chain``) per tenant: a chain id covers every block before it, so
"this prefix is cached" is "this chain id is fresh". The rules pack decides the rest: TTL (refreshed on use),
the minimum cacheable length, granularity (token blocks, increments or Anthropic-style breakpoints with
look-back) and, for engines with a bounded KV cache, LRU capacity. ``probe`` never changes state, so a policy
can ask every target what it would find before choosing one; ``commit`` applies the request that was sent.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from zumik_cli.rules.pack import RulesPack
from zumik_cli.rules.targets import target_rules

SWEEP_EVERY = 2048


@dataclass(frozen=True)
class CacheRules:
    pack: str
    ttl_s: float | None
    ttl_1h_s: float | None
    min_tokens: int
    kind: str
    block_size: int = 1
    recompute_last: bool = False
    inc_first: int = 0
    inc_step: int = 1
    lookback: int = 1_000_000
    capacity_tokens: int | None = None

    @classmethod
    def from_pack(cls, pack: RulesPack, model: str) -> CacheRules:
        rules = target_rules(pack, model)
        return cls(
            pack=pack.name,
            ttl_s=rules.ttl,
            ttl_1h_s=rules.ttl_1h,
            min_tokens=rules.min_tokens,
            kind=rules.gran_kind,
            block_size=rules.block_size,
            recompute_last=rules.recompute_last,
            inc_first=rules.inc_first,
            inc_step=rules.inc_step,
            lookback=rules.lookback,
            capacity_tokens=rules.capacity_tokens,
        )

    def usable(self, hit: int, prompt: int) -> int:
        """What a cache hit of ``hit`` tokens serves after the minimum and the granularity."""
        if hit <= 0 or hit < self.min_tokens:
            return 0
        if self.kind == "blocks":
            limit = max(prompt - 1, 0) if self.recompute_last else prompt
            return min(hit, limit) // self.block_size * self.block_size
        if self.kind == "increments":
            return (
                self.inc_first + (hit - self.inc_first) // self.inc_step * self.inc_step if hit >= self.inc_first else 0
            )
        return hit

    def describe(self) -> dict[str, Any]:
        return {
            "pack": self.pack,
            "ttl_s": self.ttl_s,
            "min_tokens": self.min_tokens,
            "granularity": self.kind,
            "capacity_tokens": self.capacity_tokens,
        }


@dataclass(frozen=True)
class Probe:
    """What a request would find and leave on one target, if it were sent there now."""

    read_tokens: int
    write_tokens: int
    write_ttl: str
    ttl_s: float | None
    hit_pos: int  # index of the block whose entry served the read; -1 for none
    marks: tuple[tuple[int, str], ...]  # breakpoint positions to write, with their TTL name


@dataclass(frozen=True)
class Prompt:
    """The part of a request a cache sees: chain ids and the token offset where each block ends."""

    tenant: str
    timestamp: float | None
    chains: tuple[int, ...]
    ends: tuple[int, ...]
    breakpoints: tuple[int, ...] = ()
    breakpoint_ttls: tuple[str, ...] = ()

    @property
    def tokens(self) -> int:
        return self.ends[-1] if self.ends else 0


class PrefixCache:
    """One target's cache: (tenant, chain) -> [last use, TTL, block tokens], oldest use first."""

    def __init__(self, rules: CacheRules) -> None:
        self.rules = rules
        self.entries: OrderedDict[tuple[str, int], list[Any]] = OrderedDict()
        self.used_tokens = 0
        self.commits = 0

    def _fresh(self, key: tuple[str, int], now: float | None) -> bool:
        entry = self.entries.get(key)
        if entry is None:
            return False
        last, ttl = entry[0], entry[1]
        return ttl is None or now is None or last is None or now - last <= ttl

    def _ttl(self, name: str) -> float | None:
        return self.rules.ttl_1h_s if name == "1h" and self.rules.ttl_1h_s is not None else self.rules.ttl_s

    def probe(self, prompt: Prompt) -> Probe:
        rules, n = self.rules, len(prompt.chains)
        total = prompt.tokens
        if n == 0:
            return Probe(0, 0, "5m", rules.ttl_s, -1, ())
        if rules.kind == "breakpoints":
            return self._probe_breakpoints(prompt)
        k = 0
        while k < n and self._fresh((prompt.tenant, prompt.chains[k]), prompt.timestamp):
            k += 1
        read = rules.usable(prompt.ends[k - 1] if k else 0, total)
        write = total - read if total >= rules.min_tokens else 0
        return Probe(read, write, "5m", rules.ttl_s, k - 1 if read else -1, ())

    def _probe_breakpoints(self, prompt: Prompt) -> Probe:
        rules, n = self.rules, len(prompt.chains)
        ttl_at = dict(zip(prompt.breakpoints, prompt.breakpoint_ttls, strict=False))
        marks = [(i, ttl_at.get(end) or "5m") for i, end in enumerate(prompt.ends) if end in ttl_at]
        if not marks:
            marks = [(n - 1, "5m")]  # breakpoints not recorded: the provider caches at the end of the prompt
        best = -1
        for position, _ in marks:
            for i in range(position, max(position - rules.lookback, -1), -1):
                if self._fresh((prompt.tenant, prompt.chains[i]), prompt.timestamp):
                    best = max(best, i)
                    break
        read = rules.usable(prompt.ends[best] if best >= 0 else 0, prompt.tokens)
        writes = tuple((i, ttl) for i, ttl in marks if prompt.ends[i] >= rules.min_tokens)
        written = max((prompt.ends[i] for i, _ in writes), default=0)
        write_ttl = "1h" if any(ttl == "1h" for _, ttl in writes) and rules.ttl_1h_s is not None else "5m"
        return Probe(read, max(written - read, 0), write_ttl, self._ttl(write_ttl), best if read else -1, writes)

    def commit(self, prompt: Prompt, probe: Probe) -> None:
        """Apply a request sent here: refresh what it read (TTL restarts on use), store what it wrote."""
        now, tenant = prompt.timestamp, prompt.tenant
        if self.rules.kind == "breakpoints":
            if probe.hit_pos >= 0:
                entry = self.entries.get((tenant, prompt.chains[probe.hit_pos]))
                self._touch(prompt, probe.hit_pos, entry[1] if entry else self.rules.ttl_s)
            for position, ttl in probe.marks:
                self._touch(prompt, position, self._ttl(ttl))
        else:
            for position in range(len(prompt.chains)):
                self._touch(prompt, position, self.rules.ttl_s)
        self.commits += 1
        if self.commits % SWEEP_EVERY == 0 and now is not None:
            self._sweep(now)

    def _touch(self, prompt: Prompt, position: int, ttl: float | None) -> None:
        key = (prompt.tenant, prompt.chains[position])
        size = prompt.ends[position] - (prompt.ends[position - 1] if position else 0)
        entry = self.entries.pop(key, None)
        if entry is not None:
            self.used_tokens -= entry[2]
        self.entries[key] = [prompt.timestamp, ttl, size]
        self.used_tokens += size
        capacity = self.rules.capacity_tokens
        while capacity is not None and self.used_tokens > capacity and self.entries:
            _, evicted = self.entries.popitem(last=False)
            self.used_tokens -= evicted[2]

    def _sweep(self, now: float) -> None:
        """Drop expired entries, so memory follows recent traffic rather than the whole workload."""
        for key in [
            k for k, (last, ttl, _) in self.entries.items() if ttl is not None and last is not None and now - last > ttl
        ]:
            self.used_tokens -= self.entries.pop(key)[2]

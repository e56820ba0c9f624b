"""Synthetic agent traffic in zumik JSONL: the bundled demo and benchmark sets behind `zumik synth`.

Owns the shape of the traffic: tenants, agents whose sessions resend a growing history, forks and subagents,
alias releases, think-time gaps, and the usage a provider would have reported, from a small model of its
prefix cache. Invariants: one `SynthConfig` always gives the same records, byte for byte; records come in
timestamp order; memory is bounded by the sessions active at one time, not by the size of the set.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
import os
import random
import tempfile
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO, cast

from zumik_cli.core.errors import ZumikError
from zumik_cli.synth.text import (
    CHARS_PER_TOKEN,
    CODING_RULES,
    CODING_SECTIONS,
    CODING_TOOLS,
    SUPPORT_RULES,
    SUPPORT_SECTIONS,
    SUPPORT_TOOLS,
    TRACKER_TOOLS,
    CodingTask,
    SupportCase,
    Writer,
)

_HASH_VERSION = b"zumik-synth-v1"
_MESSAGE_TOKENS = 4  # role and separators that every message adds
_TRAILING_TOKENS = 3  # the assistant turn header after the last breakpoint: never cached
_LOOKBACK_BLOCKS = 20  # Anthropic checks about 20 blocks before each breakpoint for an earlier entry
_OPENAI_INCREMENT = 128
_TTL_MS = {"5m": 300_000, "1h": 3_600_000}
_OPENAI_TTL_MS = 300_000  # OpenAI keeps prefixes 5 to 10 minutes after last use: serve the 5 it always keeps
_COMPACT_AT_TOKENS = 80_000  # agents summarise their history before it grows past this
_TOOLS_CHANGE_P = 0.03  # per user turn of a coding session: an MCP server connects, tools change
_SYSTEM_CHANGE_P = 0.02  # per user turn: project notes get appended to the system prompt
_DIAGNOSTICS_P = 0.5  # share of Anthropic calls after a known change that carry cache_miss_reason
_UNAVAILABLE_P = 0.25  # share of injected Anthropic misses that the provider explains as unavailable
_TENANT_NAMES = ("acme", "globex", "initech", "umbrella", "hooli", "wonka", "stark", "tyrell")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of a synthetic trace set; every default is what the bundled demo uses."""

    seed: int = 0
    sessions: int = 40
    tenants: int = 3
    start: datetime = datetime(2026, 6, 9, 9, 0, tzinfo=UTC)
    session_interarrival_s: float = 90.0  # mean time between session starts (exponential)
    mean_turns: float = 3.0  # user turns per session
    mean_tool_steps: float = 3.0  # tool-calling model calls per user turn, before the answer
    coding_share: float = 0.6  # the rest of the sessions talk to the support agent
    fork_probability: float = 0.1  # per follow-up turn: rewind to an earlier turn and ask differently
    retry_probability: float = 0.03  # per call: the same request is sent again (regenerate)
    subagent_probability: float = 0.05  # per coding tool step: dispatch a subagent with the same prompt
    model_switch_probability: float = 0.08  # per follow-up coding turn: switch code.smart <-> code.fast
    long_gap_probability: float = 0.08  # per human think-time gap (a fifth of it per tool gap): over 5 min
    very_long_gap_probability: float = 0.02  # per human think-time gap: over an hour
    provider_miss_rate: float = 0.05  # a possible cache hit that the provider did not serve
    unknown_cache_rate: float = 0.002  # OpenAI records whose usage lacks the cached-tokens field

    def __post_init__(self) -> None:
        if self.sessions < 0 or self.tenants < 1:
            raise ZumikError(f"synth needs sessions >= 0 and tenants >= 1, not {self.sessions} and {self.tenants}")
        if self.start.tzinfo is None:
            raise ZumikError("synth needs a start time with a time zone, e.g. 2026-06-09T09:00:00Z")
        if self.session_interarrival_s <= 0 or self.mean_turns < 1 or self.mean_tool_steps < 0:
            raise ZumikError("synth needs session_interarrival_s > 0, mean_turns >= 1 and mean_tool_steps >= 0")
        for knob in fields(self):
            value = getattr(self, knob.name)
            if knob.name.endswith(("_probability", "_rate", "_share")) and not 0.0 <= value <= 1.0:
                raise ZumikError(f"synth needs {knob.name} between 0 and 1, not {value}")


@dataclass(frozen=True)
class SynthSummary:
    """What `write_jsonl` wrote."""

    requests: int
    sessions: int  # the sessions asked for: distinct session ids apart from subagents'
    subagents: int  # subagent conversations inside them, each with its own session id (ROOT.sub-N)
    bytes: int
    prompt_tokens: int  # estimated, 4 characters a token
    cache_read_tokens: int
    first_timestamp: str | None
    last_timestamp: str | None


@dataclass(frozen=True)
class _Model:
    provider: str
    min_cache_tokens: int
    ttft_ms: float
    prefill_tokens_per_s: float
    ms_per_output_token: float


_MODELS = {
    "claude-sonnet-4-5": _Model("anthropic", 1024, 600, 9_000, 18),
    "claude-haiku-4-5": _Model("anthropic", 4096, 300, 16_000, 7),
    "gpt-4.1": _Model("openai", 1024, 400, 10_000, 14),
    "gpt-4o-mini": _Model("openai", 1024, 250, 20_000, 8),
}
# alias, creation as a fraction of the expected arrival span (None: before the trace), model, revision
_RELEASE_PLAN = (
    ("code.smart", None, "claude-sonnet-4-5", "claude-sonnet-4-5-20250929"),
    ("code.fast", None, "gpt-4.1", "gpt-4.1-2025-04-14"),
    ("support.default", None, "gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
    ("code.fast", 0.35, "claude-haiku-4-5", "claude-haiku-4-5-20251001"),
    ("code.smart", 0.55, "claude-sonnet-4-5", "claude-sonnet-4-5-20260604"),
    ("support.default", 0.7, "claude-haiku-4-5", "claude-haiku-4-5-20251001"),
)


@dataclass(frozen=True)
class _Release:
    release_id: str
    alias: str
    created_ms: int  # relative to config.start; negative before the trace
    model: str
    revision: str
    supersedes: str | None

    @property
    def provider(self) -> str:
        return _MODELS[self.model].provider


def _releases(config: SynthConfig) -> list[_Release]:
    """The alias release history: a few immutable releases per alias, some created while the trace runs."""
    span_ms = config.sessions * config.session_interarrival_s * 1000
    planned = sorted(
        ((-2 * 86_400_000 + 60_000 * i if when is None else int(when * span_ms)), alias, model, revision)
        for i, (alias, when, model, revision) in enumerate(_RELEASE_PLAN)
    )
    per_day: dict[str, int] = {}
    latest: dict[str, str] = {}
    releases = []
    for created_ms, alias, model, revision in planned:
        day = (config.start + timedelta(milliseconds=created_ms)).strftime("%Y_%m_%d")
        per_day[day] = per_day.get(day, 0) + 1
        release_id = f"alr_{day}_{per_day[day]:03d}"
        releases.append(_Release(release_id, alias, created_ms, model, revision, latest.get(alias)))
        latest[alias] = release_id
    return releases


def alias_releases(config: SynthConfig) -> list[dict[str, Any]]:
    """The release history behind `generate(config)`, for a user to keep beside the traces."""
    return [
        {
            "alias_release": r.release_id,
            "alias": r.alias,
            "created_at": _timestamp(config.start, r.created_ms),
            "supersedes": r.supersedes,
            "targets": [{"provider": r.provider, "model": r.model, "model_revision": r.revision}],
        }
        for r in _releases(config)
    ]


def _digest(*chunks: bytes) -> bytes:
    return hashlib.blake2b(b"".join(chunks), digest_size=12).digest()


_ROOT = _digest(_HASH_VERSION)


def _tokens(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)


def _part_tokens(part: dict[str, Any]) -> int:
    kind = part["type"]
    if kind == "text":
        return _tokens(len(part["text"]))
    if kind == "tool_call":
        return _tokens(len(part["name"]) + len(json.dumps(part["arguments"])) + 24)
    return _tokens(len(part["content"]) + 16)


def _block_hash(role: str, item: Any) -> bytes:
    return _digest(json.dumps([role, item], sort_keys=True, separators=(",", ":")).encode())


@dataclass(frozen=True)
class _Head:
    """Tools and system parts: the start of every prompt of an agent, with one chained hash per block."""

    tools: list[dict[str, Any]]
    system: list[str]
    system_ttl: str  # of the system breakpoint
    chains: tuple[bytes, ...]
    cum: tuple[int, ...]  # running token estimate after each block

    @staticmethod
    def build(tools: list[dict[str, Any]], system: list[str], system_ttl: str) -> _Head:
        chains, cum = [], []
        chain, total = _ROOT, 0
        blocks = [("tool", t, len(json.dumps(t))) for t in tools] + [("system", s, len(s)) for s in system]
        for role, item, chars in blocks:
            chain, total = _digest(chain, _block_hash(role, item)), total + _tokens(chars)
            chains.append(chain)
            cum.append(total)
        return _Head(tools, system, system_ttl, tuple(chains), tuple(cum))

    def system_field(self, provider: str) -> str | list[dict[str, Any]]:
        if provider == "openai":
            return self.system[0] if len(self.system) == 1 else [{"type": "text", "text": s} for s in self.system]
        parts: list[dict[str, Any]] = [{"type": "text", "text": s} for s in self.system]
        control = {"type": "ephemeral"} if self.system_ttl == "5m" else {"type": "ephemeral", "ttl": self.system_ttl}
        parts[-1]["cache_control"] = control
        return parts


class _Conversation:
    """The message list of one thread, kept with a chained hash and running token count per block."""

    def __init__(self, head: _Head) -> None:
        self._reset(head)

    def _reset(self, head: _Head) -> None:
        self.head = head
        self.messages: list[dict[str, Any]] = []
        self.chains = list(head.chains)
        self.cum = list(head.cum)
        self._ends: list[int] = []  # block count after each message
        self.turn_starts: list[int] = []  # index of each follow-up user message: where a rewind can go back to

    @property
    def tokens(self) -> int:
        return self.cum[-1]

    def append(self, message: dict[str, Any], turn_start: bool = False) -> None:
        if turn_start:
            self.turn_starts.append(len(self.messages))
        chain, total = self.chains[-1], self.cum[-1] + _MESSAGE_TOKENS
        for part in message["content"]:
            chain, total = _digest(chain, _block_hash(message["role"], part)), total + _part_tokens(part)
            self.chains.append(chain)
            self.cum.append(total)
        self.messages.append(message)
        self._ends.append(len(self.chains))

    def truncate(self, count: int) -> None:
        keep = self._ends[count - 1] if count else len(self.head.chains)
        del self.messages[count:], self._ends[count:], self.chains[keep:], self.cum[keep:]
        self.turn_starts = [start for start in self.turn_starts if start < count]

    def replace_head(self, head: _Head) -> None:
        messages, turn_starts = self.messages, self.turn_starts
        self._reset(head)
        for message in messages:
            self.append(message)
        self.turn_starts = turn_starts


@dataclass
class _Thread:
    """A line of calls under one session id: a session's main conversation or one of its subagents."""

    session_id: str
    tenant: str
    alias: str
    conv: _Conversation
    subagent: bool = False
    calls: int = 0
    subagents: int = 0
    last_target: tuple[str, str] | None = None
    last_prompt_tokens: int = 0
    last_ms: int = 0
    event: str | None = None  # a change the next call's provider diagnostics may name


@dataclass(frozen=True)
class _Call:
    """One request as its session sent it; the provider's usage is decided when it is served."""

    time_ms: int
    trace_id: str
    session_id: str
    tenant: str
    alias: str
    release: _Release
    head: _Head
    messages: list[dict[str, Any]]
    chains: tuple[bytes, ...]
    cum: tuple[int, ...]
    output: dict[str, Any]
    output_tokens: int
    event: str | None
    previous_prompt_tokens: int


class _World:
    """Everything sessions share: tenants, agents (system prompts and tools) and alias releases."""

    def __init__(self, config: SynthConfig) -> None:
        self.config = config
        writer = Writer(random.Random(f"zumik-synth/{config.seed}/agents"))
        self.coding_system = writer.instructions(
            "You are Forge, a coding agent that works in the user's repository through the tools below. "
            "Follow these instructions over any habit of your own.",
            CODING_SECTIONS,
            CODING_RULES,
            3600,
        )
        self.coding_tools = writer.tool_definitions(CODING_TOOLS, CODING_RULES)
        self.tracker_tools = writer.tool_definitions(TRACKER_TOOLS, CODING_RULES)
        self.support_system = writer.instructions(
            "You are Harbor, the customer support assistant of an online store platform. Each store has its "
            "own house rules, which follow these general instructions.",
            SUPPORT_SECTIONS,
            SUPPORT_RULES,
            3000,
        )
        self.support_tools = writer.tool_definitions(SUPPORT_TOOLS, SUPPORT_RULES)
        self.tenants = [
            _TENANT_NAMES[i] if i < len(_TENANT_NAMES) else f"tenant-{i:03d}" for i in range(config.tenants)
        ]
        self.tenant_weights = [1 / (i + 1) for i in range(config.tenants)]
        self.releases = _releases(config)
        self._heads: dict[tuple[str, str, bool], _Head] = {}

    def head(self, agent: str, tenant: str, tracker: bool = False, notes: str | None = None) -> _Head:
        """The head for an agent; shared by all its sessions (and tenants) unless notes make it private."""
        key = (agent, tenant if agent == "support" else "", tracker)
        if notes is None and key in self._heads:
            return self._heads[key]
        if agent == "support":
            rules = Writer(random.Random(f"zumik-synth/{self.config.seed}/tenant/{tenant}")).instructions(
                f"# House rules of {tenant}", SUPPORT_SECTIONS[3:], SUPPORT_RULES, 700
            )
            head = _Head.build(self.support_tools, [self.support_system, rules], "1h")
        else:
            tools = self.coding_tools + self.tracker_tools if tracker else self.coding_tools
            system = [self.coding_system] if notes is None else [self.coding_system, notes]
            head = _Head.build(tools, system, "5m")
        if notes is None:
            self._heads[key] = head
        return head

    def resolve(self, alias: str, time_ms: int) -> _Release:
        """The newest release of the alias created at or before the time, as a gateway resolves it."""
        current = None
        for release in self.releases:
            if release.alias == alias and release.created_ms <= time_ms:
                current = release
        assert current is not None, alias
        return current


def _geometric(rng: random.Random, mean: float) -> int:
    """A count >= 1 with the given mean: most sessions are short, a few run long."""
    if mean <= 1:
        return 1
    return 1 + int(math.log(1.0 - rng.random()) / math.log(1.0 - 1.0 / mean))


def _hex_id(prefix: str, *parts: object) -> str:
    return prefix + hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).hexdigest()


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


class _Session:
    """One top-level session, written as a script: it yields calls and is sent each call's latency (ms)."""

    def __init__(self, world: _World, index: int, start_ms: int) -> None:
        self.world = world
        self.config = world.config
        self.index = index
        self.rng = random.Random(f"zumik-synth/{self.config.seed}/session/{index}")
        self.clock = start_ms
        self.coding = self.rng.random() < self.config.coding_share
        self.tenant = self.rng.choices(world.tenants, weights=world.tenant_weights)[0]
        writer = Writer(self.rng)
        self.content: CodingTask | SupportCase = CodingTask(writer) if self.coding else SupportCase(writer)
        self.writer = writer

    def run(self) -> Generator[_Call, int, None]:
        agent = "coding" if self.coding else "support"
        alias = ("code.smart" if self.rng.random() < 0.7 else "code.fast") if self.coding else "support.default"
        thread = _Thread(
            _hex_id("ses_", self.config.seed, "session", self.index),
            self.tenant,
            alias,
            _Conversation(self.world.head(agent, self.tenant)),
        )
        thread.conv.append({"role": "user", "content": [_text(t) for t in self.content.opening()]})
        for turn in range(min(_geometric(self.rng, self.config.mean_turns), 10)):
            if turn:
                self.clock += self._gap(human=True)
                if self.coding:
                    self._change_between_turns(thread)
                if thread.conv.turn_starts and self.rng.random() < self.config.fork_probability:
                    thread.conv.truncate(self.rng.choice(thread.conv.turn_starts))  # rewind, then ask differently
                    thread.event = "messages_changed"
                thread.conv.append({"role": "user", "content": [_text(self.content.follow_up())]}, turn_start=True)
            steps = min(_geometric(self.rng, self.config.mean_tool_steps + 1) - 1, 15)
            yield from self._turn(thread, steps)

    def _change_between_turns(self, thread: _Thread) -> None:
        """Rare changes of a coding session: another model, new tools, or a longer system prompt."""
        rng, conv = self.rng, thread.conv
        if rng.random() < self.config.model_switch_probability:
            thread.alias = "code.fast" if thread.alias == "code.smart" else "code.smart"
        if rng.random() < _TOOLS_CHANGE_P and len(conv.head.tools) == len(self.world.coding_tools):
            conv.replace_head(self.world.head("coding", thread.tenant, True, self._notes(conv.head)))
            assert isinstance(self.content, CodingTask)
            self.content.tracker = True
            thread.event = "tools_changed"
        elif rng.random() < _SYSTEM_CHANGE_P and len(conv.head.system) == 1:
            notes = self.writer.instructions("# Project notes", CODING_SECTIONS[6:9], CODING_RULES, 400)
            tracker = len(conv.head.tools) > len(self.world.coding_tools)
            conv.replace_head(self.world.head("coding", thread.tenant, tracker, notes))
            thread.event = "system_changed"

    @staticmethod
    def _notes(head: _Head) -> str | None:
        return head.system[1] if len(head.system) > 1 else None

    def _turn(self, thread: _Thread, steps: int) -> Generator[_Call, int, None]:
        """Model calls until a final answer: each tool-calling reply is followed by the tools' results."""
        for step in range(steps + 1):
            final = step == steps
            for attempt in range(3):
                release = self.world.resolve(thread.alias, self.clock)
                output, calls = self._output(thread, release, final)
                latency = yield self._call(thread, release, output)
                if attempt == 2 or self.rng.random() >= self.config.retry_probability:
                    break
                self.clock += latency + int(self.rng.uniform(2_000, 20_000))  # regenerate the same request
            thread.conv.append(output)
            self.clock += latency
            if final:
                return
            for call_id, name, arguments in calls:
                if name == "dispatch_agent":
                    result = yield from self._subagent(thread, arguments["prompt"])
                else:
                    result = self.content.result(name, arguments)
                part = {"type": "tool_result", "tool_call_id": call_id, "content": result}
                thread.conv.append({"role": "tool", "content": [part]})
            self.clock += self._gap(human=False)
            if thread.conv.tokens > _COMPACT_AT_TOKENS:
                self._compact(thread)

    def _subagent(self, parent: _Thread, task: str) -> Generator[_Call, int, str]:
        """A subagent: same system prompt and tools, a fresh conversation, its own session id."""
        parent.subagents += 1
        alias = parent.alias if self.rng.random() < 0.5 else "code.fast"
        thread = _Thread(
            f"{parent.session_id}.sub{parent.subagents}",
            parent.tenant,
            alias,
            _Conversation(parent.conv.head),
            subagent=True,
        )
        thread.conv.append({"role": "user", "content": [_text(task)]})
        yield from self._turn(thread, min(_geometric(self.rng, 3), 8))
        return str(thread.conv.messages[-1]["content"][0]["text"])

    def _compact(self, thread: _Thread) -> None:
        """Replace a history grown too long by a summary, as agents do: everything after the head changes."""
        summary = "\n".join(self.writer.sentence() for _ in range(30))
        intro = "This session continues an earlier conversation that ran out of context. Summary of it:\n"
        thread.conv.truncate(0)
        thread.conv.append({"role": "user", "content": [_text(intro + summary)]})

    def _output(
        self, thread: _Thread, release: _Release, final: bool
    ) -> tuple[dict[str, Any], list[tuple[str, str, dict[str, Any]]]]:
        """The assistant reply of one call: text, plus tool calls with provider-style ids unless final."""
        content = self.content
        parts: list[dict[str, Any]] = [_text(content.note(final))]
        calls: list[tuple[str, str, dict[str, Any]]] = []
        if not final:
            wanted = content.tool_calls()
            if (
                isinstance(content, CodingTask)
                and not thread.subagent
                and self.rng.random() < self.config.subagent_probability
            ):
                wanted = [("dispatch_agent", content.subagent_task())]
            for name, arguments in wanted:
                call_id = (
                    "toolu_01" + "".join(self.rng.choices(_BASE62, k=22))
                    if release.provider == "anthropic"
                    else "call_" + "".join(self.rng.choices(_BASE62, k=24))
                )
                calls.append((call_id, name, arguments))
                parts.append({"type": "tool_call", "id": call_id, "name": name, "arguments": arguments})
        return {"role": "assistant", "content": parts}, calls

    def _call(self, thread: _Thread, release: _Release, output: dict[str, Any]) -> _Call:
        target = (release.model, release.revision)
        event = thread.event
        if thread.last_target not in (None, target):
            event = "model_changed"
        if self.clock - thread.last_ms > _TTL_MS["5m"]:
            event = None  # the cache had expired: the change is not what lost it
        conv = thread.conv
        call = _Call(
            time_ms=self.clock,
            trace_id=_hex_id("trc_", self.config.seed, thread.session_id, thread.calls),
            session_id=thread.session_id,
            tenant=thread.tenant,
            alias=thread.alias,
            release=release,
            head=conv.head,
            messages=list(conv.messages),
            chains=tuple(conv.chains),
            cum=tuple(conv.cum),
            output=output,
            output_tokens=sum(_part_tokens(p) for p in output["content"]),
            event=event,
            previous_prompt_tokens=thread.last_prompt_tokens,
        )
        thread.calls += 1
        thread.event = None
        thread.last_target = target
        thread.last_prompt_tokens = conv.tokens + _TRAILING_TOKENS
        thread.last_ms = self.clock
        return call

    def _gap(self, human: bool) -> int:
        """Think time before the next call: seconds for tools, up to minutes for people, rarely hours."""
        rng, config = self.rng, self.config
        roll = rng.random()
        very_long = config.very_long_gap_probability if human else 0.0
        long = config.long_gap_probability if human else config.long_gap_probability / 5
        if roll < very_long:
            seconds = rng.uniform(3_700, 4 * 3_600)
        elif roll < very_long + long:
            seconds = rng.uniform(310, 45 * 60)
        elif human:
            seconds = min(rng.lognormvariate(math.log(25), 0.9), 240)
        else:
            seconds = min(rng.lognormvariate(math.log(1.5), 1.0), 60)
        return int(seconds * 1000)


@dataclass
class _ProviderCache:
    """What providers would have served: prefixes seen on the same model, revision and tenant within TTL.

    Entries map (compatibility key, chained block hash) to (expiry, ttl) in ms; expired ones are swept as time
    moves on, so memory follows the traffic of the last hour, not of the whole set.
    """

    entries: dict[tuple[str, bytes], tuple[int, int]] = field(default_factory=dict)
    served: int = 0

    def _fresh(self, key: tuple[str, bytes], now: int) -> bool:
        entry = self.entries.get(key)
        return entry is not None and entry[0] >= now

    def sweep(self, now: int) -> None:
        self.served += 1
        if self.served % 4096 == 0:
            for key in [k for k, (expiry, _) in self.entries.items() if expiry < now]:
                del self.entries[key]

    def anthropic(self, compat: str, call: _Call, model: _Model, now: int) -> tuple[int, int]:
        """Cache read and write at breakpoints (last system part, last message part) with look-back."""
        breakpoints = [
            (len(call.head.chains) - 1, _TTL_MS[call.head.system_ttl]),
            (len(call.chains) - 1, _TTL_MS["5m"]),
        ]
        best = -1
        for position, _ in breakpoints:
            for i in range(position, max(position - _LOOKBACK_BLOCKS, -1), -1):
                if self._fresh((compat, call.chains[i]), now):
                    best = max(best, i)
                    break
        if best >= 0:
            ttl = self.entries[(compat, call.chains[best])][1]
            self.entries[(compat, call.chains[best])] = (now + ttl, ttl)
        written = 0
        for position, ttl in breakpoints:
            if call.cum[position] >= model.min_cache_tokens:
                self.entries[(compat, call.chains[position])] = (now + ttl, ttl)
                written = max(written, call.cum[position])
        return (call.cum[best] if best >= 0 else 0), written

    def openai(self, compat: str, call: _Call, model: _Model, now: int) -> int:
        """Longest fresh prefix, at least 1024 tokens and then in 128-token increments."""
        best = 0
        for i in range(len(call.chains) - 1, -1, -1):
            if call.cum[i] < model.min_cache_tokens:
                break
            if self._fresh((compat, call.chains[i]), now):
                best = call.cum[i]
                break
        for chain, tokens in zip(call.chains, call.cum, strict=True):
            if tokens >= model.min_cache_tokens:
                self.entries[(compat, chain)] = (now + _OPENAI_TTL_MS, _OPENAI_TTL_MS)
        if best < model.min_cache_tokens:
            return 0
        return model.min_cache_tokens + (best - model.min_cache_tokens) // _OPENAI_INCREMENT * _OPENAI_INCREMENT


@dataclass(frozen=True)
class _Served:
    record: dict[str, Any]
    latency_ms: int
    prompt_tokens: int
    cache_read_tokens: int


def _timestamp(start: datetime, ms: int) -> str:
    moment = (start + timedelta(milliseconds=ms)).astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _with_breakpoint(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy whose last message part carries cache_control, as agents mark the end of the prompt."""
    last = messages[-1]
    parts = [*last["content"][:-1], {**last["content"][-1], "cache_control": {"type": "ephemeral"}}]
    return [*messages[:-1], {**last, "content": parts}]


def _serve(call: _Call, cache: _ProviderCache, rng: random.Random, config: SynthConfig) -> _Served:
    """Turn a call into a record with the usage, diagnostics and latency its provider would report."""
    release = call.release
    model = _MODELS[release.model]
    now = call.time_ms
    compat = f"{release.provider}|{release.model}|{release.revision}|{call.tenant}"
    total = call.cum[-1] + _TRAILING_TOKENS
    cache.sweep(now)
    diagnostics = None
    if release.provider == "anthropic":
        possible, written = cache.anthropic(compat, call, model, now)
        missed = possible > 0 and rng.random() < config.provider_miss_rate
        read = 0 if missed else possible
        creation = max(written - read, 0)
        usage: dict[str, Any] = {
            "input_tokens": total - read - creation,
            "cache_creation_input_tokens": creation,
            "cache_read_input_tokens": read,
            "output_tokens": call.output_tokens,
        }
        if call.event and rng.random() < _DIAGNOSTICS_P:
            lost = min(call.previous_prompt_tokens, total) - read
            if lost > 0:
                diagnostics = {"cache_miss_reason": {"type": call.event, "cache_missed_input_tokens": lost}}
        elif missed and rng.random() < _UNAVAILABLE_P:
            diagnostics = {"cache_miss_reason": {"type": "unavailable", "cache_missed_input_tokens": possible}}
        messages = _with_breakpoint(call.messages)
    else:
        possible = cache.openai(compat, call, model, now)
        read = 0 if possible and rng.random() < config.provider_miss_rate else possible
        usage = {
            "prompt_tokens": total,
            "completion_tokens": call.output_tokens,
            "total_tokens": total + call.output_tokens,
            "prompt_tokens_details": {"cached_tokens": read},
        }
        if rng.random() < config.unknown_cache_rate:
            del usage["prompt_tokens_details"]
        messages = call.messages
    seconds = (
        model.ttft_ms / 1000
        + (total - read) / model.prefill_tokens_per_s
        + read / (model.prefill_tokens_per_s * 10)
        + call.output_tokens * model.ms_per_output_token / 1000
    )
    latency = max(int(seconds * 1000 * rng.lognormvariate(0, 0.2)), 1)
    record: dict[str, Any] = {
        "zumik": 1,
        "trace_id": call.trace_id,
        "timestamp": _timestamp(config.start, now),
        "provider": release.provider,
        "model": release.model,
        "model_revision": release.revision,
        "request_format": release.provider,
        "tenant": call.tenant,
        "session_id": call.session_id,
        "alias": call.alias,
        "alias_release": release.release_id,
        "tools": call.head.tools,
        "system": call.head.system_field(release.provider),
        "messages": messages,
        "output": call.output,
        "usage": usage,
    }
    if diagnostics:
        record["diagnostics"] = diagnostics
    record["latency_ms"] = latency
    return _Served(record, latency, total, read)


def _serve_all(config: SynthConfig) -> Iterator[_Served]:
    """Run every session on one clock: start sessions as they arrive, serve calls in time order."""
    world = _World(config)
    cache = _ProviderCache()
    provider_rng = random.Random(f"zumik-synth/{config.seed}/provider")
    arrivals = random.Random(f"zumik-synth/{config.seed}/arrivals")
    pending: list[tuple[int, int, _Call, Generator[_Call, int, None]]] = []
    order = 0
    started, next_start = 0, 0
    while started < config.sessions or pending:
        if started < config.sessions and (not pending or next_start <= pending[0][0]):
            script = _Session(world, started, next_start).run()
            heapq.heappush(pending, (next_start, order, next(script), script))
            started, order = started + 1, order + 1
            next_start += int(arrivals.expovariate(1.0 / config.session_interarrival_s) * 1000)
            continue
        _, _, call, script = heapq.heappop(pending)
        served = _serve(call, cache, provider_rng, config)
        yield served
        try:
            following = script.send(served.latency_ms)
        except StopIteration:
            continue
        heapq.heappush(pending, (following.time_ms, order, following, script))
        order += 1


def generate(config: SynthConfig) -> Iterator[dict[str, Any]]:
    """Records of zumik JSONL in timestamp order, streamed; the same config always gives the same records.

    Records share nested objects (tools, earlier messages) with one another, so treat them as read-only.
    """
    for served in _serve_all(config):
        yield served.record


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def write_jsonl(config: SynthConfig, path: str | os.PathLike[str] | TextIO) -> SynthSummary:
    """Write the records as JSONL to a path (atomically: temporary file, then rename) or an open text stream."""
    if not isinstance(path, str | os.PathLike):
        return _write(config, path)
    target = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
            summary = _write(config, stream)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return summary


def write_jsonl_parts(config: SynthConfig, paths: list[Path]) -> SynthSummary:
    """Spread whole sessions over several files (each small enough to commit); their union is one workload."""
    if not paths:
        raise ZumikError("write_jsonl_parts needs at least one path")
    temporaries = []
    try:
        streams = []
        for target in paths:
            handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            temporaries.append(temporary)
            streams.append(os.fdopen(handle, "w", encoding="utf-8", newline="\n"))
        try:
            summary = _write(config, streams)
        finally:
            for stream in streams:
                stream.close()
        for temporary, target in zip(temporaries, paths, strict=True):
            os.chmod(temporary, 0o644)
            os.replace(temporary, target)
    except BaseException:
        for temporary in temporaries:
            Path(temporary).unlink(missing_ok=True)
        raise
    return summary


def _write(config: SynthConfig, stream: TextIO | Sequence[TextIO]) -> SynthSummary:
    streams = list(stream) if isinstance(stream, Sequence) else [stream]
    written = [0] * len(streams)
    placed: dict[str, int] = {}  # a session and its subagents stay in one file; new ones go to the smallest
    requests = size = prompt = cached = 0
    sessions: set[str] = set()
    first = last = None
    for served in _serve_all(config):
        line = _dumps(served.record)
        root = served.record["session_id"].split(".", 1)[0]
        part = placed.setdefault(root, written.index(min(written)))
        streams[part].write(line)
        written[part] += len(line)
        requests += 1
        size += len(line) if line.isascii() else len(line.encode())
        prompt += served.prompt_tokens
        cached += served.cache_read_tokens
        sessions.add(served.record["session_id"])
        last = served.record["timestamp"]
        first = first or last
    roots = {session.split(".", 1)[0] for session in sessions}
    return SynthSummary(requests, len(roots), len(sessions) - len(roots), size, prompt, cached, first, last)


class _Discard:
    """A text stream that keeps nothing: the size of a config's output without writing it."""

    def write(self, text: str) -> int:
        return len(text)


def sessions_for_size(config: SynthConfig, target_bytes: int, *, tolerance: float = 0.05, rounds: int = 8) -> int:
    """How many sessions make about ``target_bytes`` of JSONL for this config (within ``tolerance`` when a few
    rounds find it; else the closest tried). Sessions vary in length, so each round generates the candidate count
    and scales it by how far the output fell from the target."""
    if target_bytes < 1:
        raise ZumikError(f"synth needs a size above 0 bytes, not {target_bytes}")
    sessions, tried = 20, {}
    for _ in range(rounds):
        size = _write(replace(config, sessions=sessions), cast(TextIO, _Discard())).bytes
        tried[sessions] = size
        if abs(size - target_bytes) <= tolerance * target_bytes or size == 0:
            break
        sessions = max(1, round(sessions * target_bytes / max(size, 1)))
        if sessions in tried:  # sizes are not monotonic in sessions: step to the untried neighbour
            step = 1 if tried[sessions] < target_bytes else -1
            while sessions in tried and sessions > 0:
                sessions += step
            if sessions < 1:
                break
    return min(tried, key=lambda n: abs(tried[n] - target_bytes))


__all__ = [
    "SynthConfig",
    "SynthSummary",
    "alias_releases",
    "generate",
    "sessions_for_size",
    "write_jsonl",
    "write_jsonl_parts",
]

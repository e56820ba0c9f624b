"""Content-free Mooncake-format traces of any size, shaped like the FAST'25 release, for the benchmark.

The published trace (``shared/data/real/mooncake_fast25``, 3,993 requests) is too small to show how a tool
scales, so the benchmark makes its own: conversations that resend a growing history after one of a few hundred
shared system prefixes (Zipf popularity), interleaved on one clock. The shape matches the real file where it
matters for cost: about 30 hash ids a request, about a third of them never seen before, 512-token blocks,
timestamps in milliseconds. Hash ids are prefix-chained by construction: a shared prefix owns a range of ids,
and each conversation owns a range it grows into, so an id always names the same whole prefix.

Deterministic for a seed; memory is a few arrays of one number per request, written out in time order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BLOCK_TOKENS = 512


@dataclass(frozen=True)
class MooncakeShape:
    """Knobs of the generated traffic; the defaults land near the real trace's averages."""

    prefixes: int = 400  # shared system prompts and tool sets
    prefix_blocks: tuple[int, int] = (2, 10)  # blocks per shared prefix, uniform between
    zipf: float = 1.1  # popularity of the shared prefixes
    mean_turns: float = 3.0  # requests per conversation (geometric)
    first_blocks: float = 14.0  # new blocks of a conversation's first request (mean, geometric)
    turn_blocks: float = 5.0  # new blocks each later request adds (mean, geometric)
    max_blocks: int = 240  # a prompt stops growing here (120K tokens), as contexts do
    interarrival_ms: float = 40.0  # mean gap between conversation starts, for 1K-request scale
    think_ms: float = 30_000.0  # mean gap between the requests of one conversation
    mean_output: float = 150.0


def _geometric(rng: np.random.Generator, mean: float, size: int) -> np.ndarray:
    return rng.geometric(1.0 / max(mean, 1.0), size=size).astype(np.int64)


def generate_lines(requests: int, seed: int = 0, shape: MooncakeShape | None = None) -> list[str]:
    """The trace as JSONL lines, in timestamp order; exactly ``requests`` lines."""
    return list(_lines(requests, seed, shape or MooncakeShape()))


def write_trace(path: Path, requests: int, seed: int = 0, shape: MooncakeShape | None = None) -> int:
    """Write the trace atomically (temporary file, then rename); returns the bytes written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    size = 0
    with temporary.open("w", encoding="ascii") as handle:
        chunk: list[str] = []
        for line in _lines(requests, seed, shape or MooncakeShape()):
            chunk.append(line)
            if len(chunk) >= 20_000:
                text = "".join(chunk)
                handle.write(text)
                size += len(text)
                chunk.clear()
        text = "".join(chunk)
        handle.write(text)
        size += len(text)
    os.replace(temporary, path)
    return size


def _lines(requests: int, seed: int, shape: MooncakeShape):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    # Shared prefixes own the first ids: prefix p is ids [prefix_start[p], prefix_start[p] + prefix_len[p]).
    low, high = shape.prefix_blocks
    prefix_len = rng.integers(low, high + 1, size=shape.prefixes)
    prefix_start = np.concatenate([[0], np.cumsum(prefix_len)[:-1]])
    popularity = 1.0 / np.arange(1, shape.prefixes + 1) ** shape.zipf
    popularity /= popularity.sum()

    # Enough conversations to reach the request count, each a few turns long.
    conversations = int(requests / shape.mean_turns * 1.3) + 16
    turns = _geometric(rng, shape.mean_turns, conversations)
    ends = np.cumsum(turns)
    conversations = int(np.searchsorted(ends, requests)) + 1
    turns = turns[:conversations]
    turns[-1] -= int(ends[conversations - 1]) - requests
    prefix_of = rng.choice(shape.prefixes, size=conversations, p=popularity)
    start_ms = np.cumsum(rng.exponential(shape.interarrival_ms, size=conversations))

    # One row per request: its conversation, its turn, its time and how many own blocks it has.
    conv = np.repeat(np.arange(conversations), turns)
    first_of_conv = np.concatenate([[0], np.cumsum(turns)[:-1]])
    turn = np.arange(requests) - np.repeat(first_of_conv, turns)
    growth = np.where(
        turn == 0, _geometric(rng, shape.first_blocks, requests), _geometric(rng, shape.turn_blocks, requests)
    )
    own = np.cumsum(growth)
    own -= np.repeat(own[first_of_conv] - growth[first_of_conv], turns)
    room = np.maximum(shape.max_blocks - prefix_len[prefix_of[conv]], 1)
    own = np.minimum(own, room)
    gaps = rng.exponential(shape.think_ms, size=requests)
    gaps[first_of_conv] = 0.0
    elapsed = np.cumsum(gaps)
    elapsed -= np.repeat(elapsed[first_of_conv], turns)
    time_ms = (start_ms[conv] + elapsed).astype(np.int64)
    # Each conversation's own ids follow the shared ones; its range is as long as its longest request.
    span = np.zeros(conversations, dtype=np.int64)
    np.maximum.at(span, conv, own)
    own_start = int(prefix_len.sum()) + np.concatenate([[0], np.cumsum(span)[:-1]])
    partial = rng.integers(1, BLOCK_TOKENS + 1, size=requests)  # tokens in the last, partial block
    outputs = _geometric(rng, shape.mean_output, requests)

    for index in np.argsort(time_ms, kind="stable").tolist():
        c = int(conv[index])
        p = int(prefix_of[c])
        head = range(int(prefix_start[p]), int(prefix_start[p]) + int(prefix_len[p]))
        tail = range(int(own_start[c]), int(own_start[c]) + int(own[index]))
        blocks = len(head) + len(tail)
        input_length = (blocks - 1) * BLOCK_TOKENS + int(partial[index])
        ids = ", ".join(map(str, (*head, *tail)))
        yield (
            f'{{"timestamp": {int(time_ms[index])}, "input_length": {input_length}, '
            f'"output_length": {int(outputs[index])}, "hash_ids": [{ids}]}}\n'
        )

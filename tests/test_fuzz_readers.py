"""Every reader against damaged input: mutated fixture records, cut lines, bad bytes, deep nesting, huge lines.

The promise under test (DESIGN.md section 10): nothing escapes ``ingest``; every record that cannot be read is
quarantined with file, line and reason; the good records around the damage are still ingested. Damaged records are
near-valid on purpose: each is a fixture record with one field replaced, deleted or buried deep, so that the
readers' own conversions (not only the JSON parser) meet the damage.

``ZUMIK_FUZZ_EXAMPLES`` raises the number of Hypothesis examples per format for a longer run.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zumik_cli import readers
from zumik_cli.core.model import Quarantined, Request
from zumik_cli.dataset.store import Dataset
from zumik_cli.ingest.pipeline import ingest
from zumik_cli.readers.hashid import HashColumns

FIXTURES = Path(__file__).parent / "fixtures"
FORMATS_DIR = FIXTURES / "formats"
CLAUDE_SESSION = "3f9c2a7e-51d4-4b8e-9a0c-6e1d2f7b8c90"

# the fixture each format's damaged records are made from
SEEDS = {
    "zumik": FIXTURES / "zumik.jsonl",
    "mini-swe-agent": FIXTURES / "mini-swe-agent-demo.json",
    "tau-bench": FIXTURES / "gpt-4o-retail.json",
    "claude-code": FORMATS_DIR / "claude_code" / "projects" / "-home-dev-shop" / f"{CLAUDE_SESSION}.jsonl",
    "claude-code-stream": FORMATS_DIR / "claude_code_stream" / "headless-run.jsonl",
    "codex": next((FORMATS_DIR / "codex").rglob("rollout-*.jsonl")),
    "otel-genai": FORMATS_DIR / "otel" / "otlp_traces.json",
    "litellm": FORMATS_DIR / "litellm" / "litellm_spend.jsonl",
    "litellm-spend": FORMATS_DIR / "litellm_spend" / "spend_logs.jsonl",
    "claude-trace": FORMATS_DIR / "claude_trace" / "log-2025-09-14-10-00-00.jsonl",
    "langfuse": FORMATS_DIR / "langfuse" / "observations.jsonl",
    "helicone": FORMATS_DIR / "helicone" / "helicone_export.jsonl",
    "openai-responses": FORMATS_DIR / "openai_responses" / "responses.jsonl",
    "anthropic": FIXTURES / "anthropic_messages.jsonl",
    "openai-chat": FIXTURES / "openai_chat.jsonl",
    "mooncake": FIXTURES / "mooncake.jsonl",
    "bailian": FIXTURES / "bailian.jsonl",
    "weka": FIXTURES / "weka_trace.json",
}
FORMATS = sorted(SEEDS)
JSONL_FORMATS = [f for f in FORMATS if SEEDS[f].suffix == ".jsonl"]
DOCUMENT_FORMATS = [f for f in FORMATS if SEEDS[f].suffix == ".json"]
EXAMPLES = int(os.environ.get("ZUMIK_FUZZ_EXAMPLES", "8"))
STOPPED = "reader stopped"  # the reason ``readers.read_all`` gives when a reader itself failed

# --- damage -------------------------------------------------------------------------------------------------

# Field names the readers look at, so that generated objects meet their conversions rather than being ignored.
KEYS = [
    "role",
    "content",
    "type",
    "text",
    "messages",
    "message",
    "usage",
    "id",
    "model",
    "timestamp",
    "hash_ids",
    "input",
    "output",
    "input_length",
    "tool_calls",
    "function",
    "arguments",
    "parameters",
    "payload",
    "info",
    "attributes",
    "spans",
    "scopeSpans",
    "requests",
    "t",
    "in",
    "traj",
    "uuid",
    "parentUuid",
    "sessionId",
    "request",
    "response",
    "choices",
    "metadata",
    "call_type",
    "startTime",
    "usageDetails",
    "request_id",
]
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["\ud800", "", "2026-13-45T99:99:99Z", "user", "assistant", "text", "tool_use"])
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner),
    max_leaves=8,
)
# JSON texts no generated value spells: numbers out of every range, NaN, nesting past every parser's limit
RAW_FRAGMENTS = st.sampled_from(
    ["1e400", "-1e400", "NaN", "Infinity", "123456789012345678901234567890", "1e300", '"\\ud800\\udfff\\ud800"']
) | st.builds(
    lambda depth, brace: ('{"content":' * depth + '"x"' + "}" * depth) if brace else ("[" * depth + "1" + "]" * depth),
    st.sampled_from([64, 600, 999, 1500, 20_000]),
    st.booleans(),
)
PLACEHOLDER = "\x00zumik-fuzz\x00"


@dataclass(frozen=True)
class Mutation:
    """Replace (or delete) the ``pick``-th node of a record, depth first, with a generated JSON text."""

    pick: int
    delete: bool
    fragment: str

    def __repr__(self) -> str:
        return f"Mutation({self.pick}, delete={self.delete}, {self.fragment[:60]!r}, {len(self.fragment)} chars)"

    def apply(self, record: Any) -> str:
        nodes = list(_nodes(record))
        path = nodes[self.pick % len(nodes)]
        if not path:
            return self.fragment
        copy = json.loads(json.dumps(record))
        parent = functools.reduce(lambda node, key: node[key], path[:-1], copy)
        if self.delete:
            del parent[path[-1]]
            return json.dumps(copy)
        parent[path[-1]] = PLACEHOLDER
        return json.dumps(copy).replace(json.dumps(PLACEHOLDER), self.fragment)


def mutate(text: str, mutations: list[Mutation]) -> str:
    """The mutations one after another, as long as the text is still JSON this test can walk."""
    for mutation in mutations:
        try:
            record = json.loads(text)
            text = mutation.apply(record)
        except (ValueError, RecursionError):
            break
    return text


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> Any:
    yield path
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield from _nodes(child, (*path, key))


MUTATIONS = st.builds(
    Mutation,
    pick=st.integers(min_value=0, max_value=10_000),
    delete=st.booleans(),
    fragment=st.one_of(VALUES.map(json.dumps), RAW_FRAGMENTS),
)
BAD_UTF8 = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80")


@dataclass(frozen=True)
class Garbage:
    """A line that is not a JSON object: a good line cut short or with bad bytes inside, noise, deep nesting."""

    kind: str
    pick: int
    at: float
    noise: bytes

    def line(self, good: list[bytes]) -> bytes:
        source = good[self.pick % len(good)]
        cut = max(1, min(len(source) - 1, int(len(source) * self.at)))
        if self.kind == "cut":
            return source[:cut]
        if self.kind == "utf8":
            return source[:cut] + BAD_UTF8[self.pick % len(BAD_UTF8)] + source[cut:]
        if self.kind == "deep":
            return b"[" * 100_000 + b"]" * 100_000
        if self.kind == "huge":
            return source[: len(source) // 2] + b'"' + b"x" * 2_000_000  # an unterminated 2 MB string
        return self.noise


def _is_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, RecursionError):
        return False


GARBAGE = st.builds(
    Garbage,
    kind=st.sampled_from(["cut", "utf8", "deep", "noise", "noise", "huge"]),
    pick=st.integers(min_value=0, max_value=1000),
    at=st.floats(min_value=0.0, max_value=1.0),
    noise=st.binary(min_size=1, max_size=200)
    .map(lambda b: b.replace(b"\n", b" ").replace(b"\x00", b"\x01"))
    .filter(lambda b: not b.isspace() and not _is_object(b)),
)

# --- helpers ------------------------------------------------------------------------------------------------


def good_lines(fmt: str) -> list[bytes]:
    return [line for line in SEEDS[fmt].read_bytes().splitlines() if line.strip()]


def good_name(fmt: str) -> str:
    return f"good-{SEEDS[fmt].name}"


@functools.cache
def baseline(fmt: str) -> tuple[int, frozenset[int]]:
    """Requests and source lines of the undamaged fixture, ingested alone under the name the fuzz runs use."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / good_name(fmt)
        if SEEDS[fmt].suffix == ".jsonl":
            path.write_bytes(b"\n".join(good_lines(fmt)) + b"\n")
        else:
            shutil.copy(SEEDS[fmt], path)
        summary = ingest([path], Path(tmp) / "data", format=fmt)
        lines = Dataset(Path(tmp) / "data").connect().execute("SELECT source_line FROM requests").fetchall()
    assert summary.requests > 0 and summary.quarantined == 0 or fmt in ("litellm", "helicone")
    return summary.requests, frozenset(line for (line,) in lines)


def source_lines(data: Path, path: Path) -> set[int]:
    rows = Dataset(data).connect().execute("SELECT source_line FROM requests WHERE source_path = ?", [str(path)])
    return {line for (line,) in rows.fetchall()}


def check_quarantine(data: Path) -> list[dict[str, Any]]:
    entries = Dataset(data).quarantine_entries()
    for entry in entries:
        assert entry["file"] and entry["line"] >= 0 and entry["reason"].strip(), entry
        assert len(entry["excerpt"]) <= 200
        assert STOPPED not in entry["reason"], f"a reader failed instead of quarantining one record: {entry}"
    return entries


def read_directly(fmt: str, path: Path) -> list[Any]:
    """The reader's own items, with no guard around it: an exception here is a reader bug."""
    sample = readers.sample_file(path)
    if isinstance(sample, Quarantined):
        return [sample]
    reader = readers.detect(sample, fmt)
    assert reader is not None
    return list((reader.read_columns or reader.read)(sample))


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# --- tests --------------------------------------------------------------------------------------------------


def test_every_registered_format_has_a_fixture_to_damage() -> None:
    assert set(SEEDS) == set(readers.load_formats())


@pytest.mark.parametrize("fmt", FORMATS)
@settings(FUZZ, max_examples=EXAMPLES * 8)
@given(mutations=st.lists(MUTATIONS, min_size=1, max_size=3), pick=st.integers(min_value=0, max_value=1000))
def test_a_mutated_record_is_read_or_quarantined_by_its_reader_never_raised(
    fmt: str, mutations: list[Mutation], pick: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / good_name(fmt)
        if fmt in DOCUMENT_FORMATS:
            path.write_text(mutate(SEEDS[fmt].read_text(), mutations))
        else:
            lines = [line.decode() for line in good_lines(fmt)]
            index = pick % len(lines)
            lines[index] = mutate(lines[index], mutations)
            path.write_text("\n".join(lines) + "\n")

        items = read_directly(fmt, path)

    for item in items:
        assert isinstance(item, Request | Quarantined | HashColumns)
        if isinstance(item, Quarantined):
            assert item.reason.strip() and len(item.excerpt) <= 200


@pytest.mark.parametrize("fmt", JSONL_FORMATS)
@settings(FUZZ)
@given(
    data=st.data(),
    garbage=st.lists(GARBAGE, min_size=1, max_size=4),
    mutations=st.lists(st.tuples(st.integers(min_value=0, max_value=1000), MUTATIONS), max_size=3),
)
def test_a_damaged_jsonl_file_is_ingested_around_every_bad_line(
    fmt: str, data: st.DataObject, garbage: list[Garbage], mutations: list[tuple[int, Mutation]]
) -> None:
    good = good_lines(fmt)
    expected, good_sources = baseline(fmt)
    # garbage goes anywhere (it never changes what the good lines mean); mutated records go after the good ones,
    # since a near-valid record may rightly take part in a conversation the good lines continue
    lines: list[tuple[str, bytes]] = [("good", line) for line in good]
    for item in garbage:
        position = data.draw(st.integers(min_value=0, max_value=len(lines)), label="position")
        lines.insert(position, ("garbage", item.line(good)))
    for pick, mutation in mutations:
        lines.append(("mutated", mutate(good[pick % len(good)].decode(), [mutation]).encode()))

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / good_name(fmt)
        path.write_bytes(b"".join(line + b"\n" for _, line in lines))
        summary = ingest([path], Path(tmp) / "data", format=fmt)

        entries = check_quarantine(Path(tmp) / "data")
        quarantined_lines = {entry["line"] for entry in entries}
        numbered = list(enumerate(lines, start=1))
        garbage_lines = {n for n, (kind, _) in numbered if kind == "garbage"}
        assert garbage_lines <= quarantined_lines, "every line that is not a JSON object is quarantined"
        good_numbers = [n for n, (kind, _) in numbered if kind == "good"]
        moved = {good_numbers[line - 1] for line in good_sources}
        assert moved <= source_lines(Path(tmp) / "data", path), "every good record is still ingested"
        assert summary.requests >= expected
        assert summary.quarantined == len(entries) >= len(garbage_lines)


@pytest.mark.parametrize("fmt", DOCUMENT_FORMATS)
@settings(FUZZ)
@given(mutations=st.lists(MUTATIONS, min_size=1, max_size=3), cut=st.floats(min_value=0.01, max_value=0.99))
def test_a_damaged_json_document_beside_a_good_one_spoils_only_itself(
    fmt: str, mutations: list[Mutation], cut: float
) -> None:
    expected, good_sources = baseline(fmt)
    text = SEEDS[fmt].read_text()
    damaged = mutate(text, mutations)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "traces"
        folder.mkdir()
        shutil.copy(SEEDS[fmt], folder / good_name(fmt))
        (folder / f"mutated-{SEEDS[fmt].name}").write_text(damaged)
        (folder / f"truncated-{SEEDS[fmt].name}").write_text(text[: int(len(text) * cut)])
        raw = text.encode()
        (folder / f"wrongly-encoded-{SEEDS[fmt].name}").write_bytes(raw[:100] + b"\xff\xfe" + raw[100:])

        summary = ingest([folder], Path(tmp) / "data", format=fmt)

        entries = check_quarantine(Path(tmp) / "data")
        whole_file = {Path(e["file"]).name: e["reason"] for e in entries if e["line"] == 0}
        assert f"wrongly-encoded-{SEEDS[fmt].name}" in whole_file
        assert good_sources <= source_lines(Path(tmp) / "data", folder / good_name(fmt))
        assert summary.requests >= expected


def test_a_50_mb_line_is_quarantined_with_a_short_excerpt_and_the_lines_after_it_are_ingested(tmp_path: Path) -> None:
    good = good_lines("zumik")
    huge_cut = b'{"zumik": 1, "trace_id": "huge-1", "messages": [{"role": "user", "content": "' + b"y" * 50_000_000
    huge_shape = json.dumps({"zumik": 1, "trace_id": "huge-2", "messages": "z" * 50_000_000}).encode()
    path = tmp_path / "huge.jsonl"
    path.write_bytes(b"\n".join([good[0], huge_cut, good[1], huge_shape, good[2]]) + b"\n")

    summary = ingest([path], tmp_path / "data")

    entries = check_quarantine(tmp_path / "data")
    assert [(e["line"], e["reason"].split(":")[0]) for e in entries] == [(2, "not JSON"), (4, "wrong shape")]
    assert summary.requests == 3
    assert source_lines(tmp_path / "data", path) == {1, 3, 5}
    assert os.path.getsize(tmp_path / "data" / Dataset(tmp_path / "data").manifest.quarantine[0]) < 2_000


def test_a_two_megabyte_prompt_is_ingested_whole(tmp_path: Path) -> None:
    record = json.loads(good_lines("zumik")[0])
    record["trace_id"] = "two-megabytes"
    record["messages"] = [{"role": "user", "content": "word " * 400_000}]
    (tmp_path / "big.jsonl").write_text(json.dumps(record) + "\n")

    summary = ingest([tmp_path / "big.jsonl"], tmp_path / "data")

    assert (summary.requests, summary.quarantined) == (1, 0)
    assert summary.tokens_counted > 400_000


def test_damaged_files_of_every_format_in_one_folder_are_each_detected_and_read_around_their_damage(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "traces"
    folder.mkdir()
    expected_lines: dict[str, set[int]] = {}
    for fmt in FORMATS:
        target = folder / fmt / good_name(fmt)
        target.parent.mkdir()
        if fmt in DOCUMENT_FORMATS:
            shutil.copy(SEEDS[fmt], target)
            expected_lines[str(target)] = set(baseline(fmt)[1])
            (folder / fmt / f"cut-{SEEDS[fmt].name}").write_bytes(SEEDS[fmt].read_bytes()[:-40])
            continue
        good = good_lines(fmt)
        damage = [good[0][:-7], good[-1][:9] + b"\xff" + good[-1][9:], b"[" * 50_000, b"\x01\x02 not json"]
        lines = [damage[0], *good[:1], damage[1], *good[1:], damage[2], damage[3]]
        target.write_bytes(b"\n".join(lines) + b"\n")
        good_numbers = [n for n, line in enumerate(lines, start=1) if line in good]
        expected_lines[str(target)] = {good_numbers[line - 1] for line in baseline(fmt)[1]}

    summary = ingest([folder], tmp_path / "data")

    entries = check_quarantine(tmp_path / "data")
    assert set(summary.formats) == set(FORMATS)
    for path, lines in expected_lines.items():
        assert lines <= source_lines(tmp_path / "data", Path(path)), path
    assert summary.requests == sum(baseline(fmt)[0] for fmt in FORMATS)
    per_file = {Path(e["file"]).parent.name for e in entries if e["reason"].startswith(("not JSON", "not UTF-8"))}
    assert set(JSONL_FORMATS) <= per_file

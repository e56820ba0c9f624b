"""Real public logs, read exactly: one small excerpt per format in tests/fixtures/real/<format>/, each with the
SOURCE.md that names its repository, commit, path and licence; for the formats of the real traces beside the
checkout (../shared/data/real, whose README names their sources), one of those files, read from there.

The expected figures are counted from the raw files without zumik (a few lines of json per format, see each
case), and written here as literals. VCR cassettes (recorded API calls) are read as one ``{request, response}``
record per interaction that has a JSON request body: the recorded request and response, unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import real_data_path

from zumik_cli.dataset.store import Dataset
from zumik_cli.ingest.pipeline import ingest
from zumik_cli.readers import FROM_DOCUMENTATION_ONLY, evidence, load_formats

CORPUS = Path(__file__).parent / "fixtures" / "real"
DOCS = Path(__file__).parent.parent / "docs" / "formats.md"
# formats whose real sample is one of the real traces beside the checkout (its licence file beside it)
SHARED = {
    "mini-swe-agent": "mini_swe_agent_gemini3pro/django__django-11133.traj.json",
    "mooncake": "mooncake_fast25/synthetic_trace.jsonl",
    "tau-bench": "tau_bench_airline/gpt-4o-airline.json",
    "weka": "weka_claude_code/trace_0165.json",
}


@dataclass(frozen=True)
class Expected:
    calls: int
    input_tokens: int | None  # the sum of reported prompt tokens, cache reads and writes included
    cache_reads: int | None
    holds_content: bool = True  # False where the log holds neither content nor block hashes: every call usage-only


EXPECTED = {
    # token_count events whose total_token_usage moved: last_token_usage input 42772+44218+48969+49326+49647+63441,
    # cached 3456+42880+44288+49152+49408+49664
    "codex": Expected(6, 298373, 238848, holds_content=False),
    # distinct message.id with usage: input + cache_creation + cache_read summed once per id
    "claude-code": Expected(4, 105981, 88231),
    # message.usage of the two assistant events: 10+21570+0 and 10+3556+17254; each is the first call of a headless
    # run, whose -p prompt the stream does not hold
    "claude-code-stream": Expected(2, 42400, 17254, holds_content=False),
    # the 30 assistant messages' extra.response.usage: prompt_tokens and prompt_tokens_details.cached_tokens summed
    "mini-swe-agent": Expected(30, 244653, 164807),
    # assistant turns in the 200 conversations' traj; the log has no usage
    "tau-bench": Expected(2454, None, None),
    # input_length of the 3,993 lines; no cache figures
    "mooncake": Expected(3993, 61194628, None),
    # requests[].in of the 7 requests; no cache figures
    "weka": Expected(7, 134786, None),
    # 276 (image call) + 3+0+1111 + 3+418+1111 (cache calls); cache_read_input_tokens 1111 twice
    "anthropic": Expected(3, 2922, 2222),
    # prompt_tokens (and response.usage.prompt_tokens) of the one record; no cache figures
    "litellm": Expected(1, 10, None),
    # prompt_tokens (and metadata.usage_object.prompt_tokens); messages is "{}": the log holds no content
    "litellm-spend": Expected(1, 10, None, holds_content=False),
    # usage.prompt_tokens of the one call after the image download
    "openai-chat": Expected(1, 515, 0),
    # usage.input_tokens of the one call
    "openai-responses": Expected(1, 515, 0),
}


def excerpt_formats() -> list[str]:
    return sorted(p.name for p in CORPUS.iterdir() if p.is_dir())


def corpus_formats() -> list[str]:
    return sorted({*excerpt_formats(), *SHARED})


def cassette_calls(path: Path) -> list[dict[str, object]]:
    """A VCR cassette's API calls as ``{request, response}`` records (an image download has no JSON body)."""
    interactions = yaml.safe_load(path.read_text())["interactions"]
    return [
        {"request": i["request"]["parsed_body"], "response": i["response"]["parsed_body"]}
        for i in interactions
        if "parsed_body" in i["request"]
    ]


def sample_inputs(fmt: str, tmp_path: Path) -> list[Path]:
    if fmt in SHARED:
        path = real_data_path() / SHARED[fmt]
        if not path.is_file():
            pytest.skip(f"the real trace {path} is not here (CI puts shared/data/real beside the checkout)")
        return [path]
    inputs = []
    for path in sorted((CORPUS / fmt).iterdir()):
        if path.name == "SOURCE.md":
            continue
        if path.suffix == ".yaml":
            records = tmp_path / f"{path.stem}.jsonl"
            records.write_text("".join(json.dumps(call) + "\n" for call in cassette_calls(path)))
            path = records
        inputs.append(path)
    return inputs


def test_every_format_has_a_real_sample_or_is_marked_from_documentation_only() -> None:
    formats = set(load_formats()) - {"zumik"}
    assert set(corpus_formats()) == formats - FROM_DOCUMENTATION_ONLY
    assert formats >= FROM_DOCUMENTATION_ONLY
    assert set(EXPECTED) == set(corpus_formats())


def test_each_sample_names_its_repository_commit_path_and_licence() -> None:
    assert not set(SHARED) & set(excerpt_formats())
    for fmt in excerpt_formats():
        source = (CORPUS / fmt / "SOURCE.md").read_text()
        for field in ("- repository: https://github.com/", "- commit: ", "- path: ", "- licence: "):
            assert field in source, (fmt, field)


def test_formats_and_the_docs_mark_the_same_readers_from_documentation_only() -> None:
    marked = {name for name in load_formats() if evidence(name) == "from documentation only"}
    assert marked == FROM_DOCUMENTATION_ONLY
    docs = DOCS.read_text()
    section = docs.split("## Real samples", 1)[1].split("\n## ", 1)[0]
    listed = {line.split("`")[1] for line in section.splitlines() if line.startswith("| `")}
    only = {line.split("`")[1] for line in section.splitlines() if "from documentation only" in line}
    assert listed == set(load_formats()) - {"zumik"}
    assert only == FROM_DOCUMENTATION_ONLY


@pytest.mark.parametrize("fmt", sorted(EXPECTED))
def test_a_real_sample_is_read_exactly(fmt: str, tmp_path: Path) -> None:
    expected = EXPECTED[fmt]
    summary = ingest(sample_inputs(fmt, tmp_path), tmp_path / "data")
    assert summary.quarantined == 0
    row = (
        Dataset(tmp_path / "data")
        .connect()
        .execute(
            "SELECT list(DISTINCT format), count(*), sum(prompt_tokens_reported), sum(cached_tokens_reported), "
            "count(*) FILTER (WHERE n_blocks = 0) FROM requests"
        )
        .fetchone()
    )
    assert row is not None
    formats, calls, input_tokens, cache_reads, usage_only = row
    assert formats == [fmt]
    assert (calls, input_tokens, cache_reads) == (expected.calls, expected.input_tokens, expected.cache_reads)
    assert usage_only == (0 if expected.holds_content else expected.calls)


# Recorded calls with a base64 image, and (counted, reported) prompt tokens measured on them: the text as zumik
# counts it plus the image by its provider's rule, against the provider's reported prompt tokens.
IMAGE_CALLS = {
    # claude-haiku-4-5, 540x360 JPEG: 540 x 360 / 750 = 260 image tokens
    "anthropic/test_image_url_input_force_download.yaml": (268, 276),
    # gpt-4.1-nano, the same JPEG: 17 x 12 patches x 2.46 = 502 image tokens
    "openai-chat/test_image_url_input_force_download.yaml": (520, 515),
    "openai-responses/test_image_url_input_force_download_response_api.yaml": (520, 515),
}


@pytest.mark.parametrize("sample", sorted(IMAGE_CALLS))
def test_requests_with_images_in_real_recordings_count_within_ten_percent_of_reported(
    sample: str, tmp_path: Path
) -> None:
    records = tmp_path / "calls.jsonl"
    records.write_text("".join(json.dumps(call) + "\n" for call in cassette_calls(CORPUS / sample)))
    ingest([records], tmp_path / "data")
    connection = Dataset(tmp_path / "data").connect()
    counted, reported = IMAGE_CALLS[sample]
    assert connection.execute("SELECT prompt_tokens_counted, prompt_tokens_reported FROM requests").fetchall() == [
        (counted, reported)
    ]
    assert abs(counted / reported - 1) <= 0.10
    kinds = connection.execute("SELECT kind FROM blocks WHERE text LIKE '[image 540x360 JPEG%'").fetchall()
    assert kinds == [("image",)]

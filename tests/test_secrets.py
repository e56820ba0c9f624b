"""Credentials logged beside the calls never reach the dataset nor a report (DESIGN.md section 10).

Every format's fixture is re-written with credentials where real logs carry them: request and response headers,
gateway metadata (LiteLLM's raw virtual key, proxy request headers, a failed call's error text), Helicone's
request headers and target URL, OpenTelemetry ``http.request.header.*`` attributes, a Codex environment, a
mini-swe-agent model config. Some lines are damaged too, cut inside a credential, so that the quarantine (which
keeps an excerpt of a bad line) meets them. Then every file under the dataset folder is searched, Parquet text
columns included, and so is the HTML report.

A key inside the prompt text itself is different: it is what the user sent and chose to log, so the dataset keeps
it as logged (block text); a report never shows it (no prompt text by default; key-shaped strings redacted when
asked for text).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_fuzz_readers import DOCUMENT_FORMATS, FORMATS, SEEDS, baseline, good_lines

from zumik_cli.dataset.store import Dataset
from zumik_cli.ingest.pipeline import ingest
from zumik_cli.render.report.page import ReportInputs, render_report

# credential -> the marker searched for (each marker is unique to its credential)
SECRETS = {
    "Bearer sk-proj-Zq1authorizationMARK0000": "Zq1authorizationMARK",
    "sk-ant-api03-Zq1xapikeyMARK000000": "Zq1xapikeyMARK",
    "0f1e2d3c4b5a69788796a5b4c3d2e1f0": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",  # Azure api-key: no telling shape
    "session=Zq1cookieMARK0000; csrftoken=Zq1csrfMARK0000": "Zq1cookieMARK",
    "sid=Zq1setcookieMARK0000; HttpOnly": "Zq1setcookieMARK",
    "AIzaSyZq1googMARK00000000000000000": "Zq1googMARK",
    "Basic dXNlcjpacTFiYXNpY01BUks=": "dXNlcjpacTFiYXNpY01BUks",
    "Zq1litellmvirtualkeyMARK": "Zq1litellmvirtualkeyMARK",
    "Zq1accesstokenMARK0000": "Zq1accesstokenMARK",
}
MARKERS = list(SECRETS.values())
(AUTH, XKEY, AZURE, COOKIE, SET_COOKIE, GOOGLE, BASIC, VIRTUAL_KEY, TOKEN) = SECRETS
HEADERS = {
    "Authorization": AUTH,
    "X-Api-Key": XKEY,
    "api-key": AZURE,
    "Cookie": COOKIE,
    "x-goog-api-key": GOOGLE,
    "Proxy-Authorization": BASIC,
    "Set-Cookie": SET_COOKIE,
}
PROMPT_KEY = "sk-proj-Zq1promptkeyMARK00000000"


def with_secrets(fmt: str, record: Any) -> Any:
    """The record with credentials where this format's producers log them; headers first, so cut lines hold them."""
    if not isinstance(record, dict):
        return record
    out = {"headers": dict(HEADERS), **record}
    metadata = record.get("metadata") if isinstance(record.get("metadata"), dict) else {}
    out["metadata"] = {**metadata, "headers": dict(HEADERS), "api_key": XKEY, "access_token": TOKEN}
    for key in ("request", "response", "payload", "info"):
        if isinstance(record.get(key), dict):
            out[key] = {**record[key], "headers": {**HEADERS, "Set-Cookie": SET_COOKIE}}
    if fmt == "litellm":
        out["metadata"]["user_api_key"] = VIRTUAL_KEY
        out["proxy_server_request"] = {"headers": dict(HEADERS), "body": {"api_key": XKEY}}
        out["hidden_params"] = {"additional_headers": {"llm_provider-set-cookie": SET_COOKIE}}
        out["litellm_params"] = {"api_key": XKEY, "api_base": f"https://example.test/v1?key={GOOGLE}"}
    if fmt == "helicone":
        out["request_headers"] = dict(HEADERS)
        out["target_url"] = f"https://generativelanguage.googleapis.com/v1/models?key={GOOGLE}"
    if fmt == "codex" and isinstance(out.get("payload"), dict):
        out["payload"]["env"] = {"OPENAI_API_KEY": XKEY, "AZURE_OPENAI_API_KEY": AZURE}
    if fmt == "mini-swe-agent":
        out["info"] = {**out.get("info", {}), "config": {"model": {"model_kwargs": {"api_key": XKEY}}}}
    if fmt == "otel-genai":
        header_attributes = [
            {"key": f"http.request.header.{name.lower()}", "value": {"arrayValue": {"values": [{"stringValue": v}]}}}
            for name, v in HEADERS.items()
        ]
        for resource in out.get("resourceSpans", []):
            for scope in resource.get("scopeSpans", []):
                for span in scope.get("spans", []):
                    span["attributes"] = [*span.get("attributes", []), *header_attributes]
    if fmt == "weka":
        out["requests"] = [with_secrets("", r) for r in out.get("requests", [])]
    return out


def damaged_lines(line: str) -> list[str]:
    """The line cut short inside each credential it holds, and the record wrapped where an object is expected."""
    cuts = [line[: line.index(marker) + 4] for marker in MARKERS if marker in line]
    return [*cuts, f"[{line}]"]


def litellm_failures(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Failed calls whose logged error text quotes the credential the provider refused."""
    return [
        {**record, "id": f"failed-{n}", "status": "failure", "error_str": error}
        for n, error in enumerate(
            [
                f"AuthenticationError: Incorrect API key provided: {XKEY}. You can find your API key at ...",
                f"Upstream refused the request headers {{'Authorization': '{BASIC}', 'api-key': '{AZURE}'}}",
            ]
        )
    ]


HASH_ID_FORMATS = ("bailian", "mooncake", "weka")


def dataset_of(root: Path, fmt: str) -> Path:
    """Content traces share one dataset; each hash-id trace gets its own (a waterfall over traces of several block
    sizes fails today: see test_mixed_granularity.py)."""
    return root / (f"data-{fmt}" if fmt in HASH_ID_FORMATS else "data")


@pytest.fixture(scope="module")
def leaky(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """Datasets of every format's secret-laden traces, each ingested with its format named."""
    root = tmp_path_factory.mktemp("secrets")
    requests = {}
    for fmt in FORMATS:
        folder = root / fmt
        folder.mkdir()
        target = folder / f"good-{SEEDS[fmt].name}"
        if fmt in DOCUMENT_FORMATS:
            document = json.loads(SEEDS[fmt].read_text())
            document = [with_secrets(fmt, d) for d in document] if isinstance(document, list) else document
            text = json.dumps(with_secrets(fmt, document))
            target.write_text(text)
            (folder / f"cut-{SEEDS[fmt].name}").write_text(text[: text.index(MARKERS[0]) + 4])
        else:
            records = [with_secrets(fmt, json.loads(line)) for line in good_lines(fmt)]
            lines = [json.dumps(record) for record in records]
            if fmt == "litellm":
                lines += [json.dumps(failure) for failure in litellm_failures(records[0])]
            target.write_text("\n".join([*lines, *damaged_lines(lines[0])]) + "\n")
        requests[fmt] = ingest([folder], dataset_of(root, fmt), format=fmt).requests
    return root, requests


def parquet_text(path: Path) -> str:
    """Every string in a Parquet file, lists of strings included."""
    table = pq.read_table(path)
    values = []
    for column in table.columns:
        if pa.types.is_string(column.type) or (
            pa.types.is_list(column.type) and pa.types.is_string(column.type.value_type)
        ):
            values.append(json.dumps(column.to_pylist()))
    return "\n".join(values)


def leaks(folder: Path, markers: list[str]) -> list[tuple[str, str]]:
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        text = path.read_bytes().decode("utf-8", "replace")
        if path.suffix == ".parquet":
            text += parquet_text(path)
        found += [(str(path.relative_to(folder)), marker) for marker in markers if marker in text]
    return found


def test_every_format_is_fed_credentials_in_its_headers_or_metadata(leaky: tuple[Path, dict[str, int]]) -> None:
    root, _ = leaky
    for fmt in FORMATS:
        written = "".join(p.read_text() for p in (root / fmt).iterdir())
        assert all(marker in written for marker in MARKERS if marker != "Zq1litellmvirtualkeyMARK"), fmt


def test_no_credential_reaches_any_file_of_the_dataset_parquet_text_included(
    leaky: tuple[Path, dict[str, int]],
) -> None:
    root, _ = leaky

    assert sorted({dataset_of(root, fmt).name for fmt in FORMATS}) == ["data", *(f"data-{f}" for f in HASH_ID_FORMATS)]
    assert [leak for fmt in FORMATS for leak in leaks(dataset_of(root, fmt), MARKERS)] == []


def test_every_format_still_reads_its_records_beside_the_credentials(leaky: tuple[Path, dict[str, int]]) -> None:
    _, requests = leaky

    assert requests == {fmt: baseline(fmt)[0] for fmt in FORMATS}


def test_the_quarantine_keeps_redacted_excerpts_and_reasons_of_lines_cut_inside_a_credential(
    leaky: tuple[Path, dict[str, int]],
) -> None:
    root, _ = leaky

    entries = [e for data in root.glob("data*") for e in Dataset(data).quarantine_entries()]

    cut = [e for e in entries if e["reason"].startswith("not JSON")]
    assert len(cut) >= len(MARKERS)
    assert sum("[redacted]" in e["excerpt"] for e in entries) >= len(cut)
    failures = [e["reason"] for e in entries if e["reason"].startswith("failed call")]
    assert len(failures) == 2 and all("[redacted]" in reason for reason in failures)


def test_no_credential_reaches_a_report_rendered_with_prompt_text(
    leaky: tuple[Path, dict[str, int]], tmp_path: Path
) -> None:
    from test_cli_ingest import zumik

    root, _ = leaky

    for data in sorted(root.glob("data*")):
        report = tmp_path / f"{data.name}.html"
        result = zumik("report", "--data", data, "--output", report, "--include-text", "--generated-at", "2026-06-12")
        assert result.exit_code == 0, result.stderr

    assert len(list(tmp_path.glob("*.html"))) == 1 + len(HASH_ID_FORMATS)
    assert leaks(tmp_path, MARKERS) == []


def prompt_with_a_key(path: Path) -> Path:
    record = json.loads(good_lines("zumik")[0])
    record["trace_id"] = "pasted-key"
    record["messages"] = [{"role": "user", "content": f"Why does the client fail with OPENAI_API_KEY={PROMPT_KEY}?"}]
    path.write_text(json.dumps(record) + "\n")
    return path


def test_a_key_pasted_into_the_prompt_is_kept_in_the_dataset_as_the_users_logged_text(tmp_path: Path) -> None:
    ingest([prompt_with_a_key(tmp_path / "pasted.jsonl")], tmp_path / "data")

    texts = Dataset(tmp_path / "data").connect().execute("SELECT text FROM blocks").fetchall()

    assert any(PROMPT_KEY in text for (text,) in texts)


@pytest.mark.parametrize("include_text", [False, True])
def test_a_key_pasted_into_the_prompt_never_reaches_a_report(include_text: bool, tmp_path: Path) -> None:
    from test_cli_ingest import zumik

    ingest([prompt_with_a_key(tmp_path / "pasted.jsonl")], tmp_path / "data")
    flag = "--include-text" if include_text else "--no-include-text"

    result = zumik("report", "--data", tmp_path / "data", "--output", tmp_path / "r.html", flag)

    assert result.exit_code == 0, result.stderr
    assert "Zq1promptkeyMARK" not in (tmp_path / "r.html").read_text()


@pytest.mark.parametrize("filler", [0, 7, 23, 31])
def test_a_key_in_an_edited_system_prompt_is_redacted_where_the_report_shows_the_edit(
    filler: int, tmp_path: Path
) -> None:
    from test_cli_ingest import zumik

    # the key sits just before the edited word, at several distances, so that a context cut through it would show
    first, second = json.loads(good_lines("zumik")[0]), json.loads(good_lines("zumik")[0])
    rules = " ".join(f"Rule {i}: check the build log before answering." for i in range(40))
    edits = (("k-1", "2026-03-03T09:00:00Z", "staging"), ("k-2", "2026-03-03T09:00:30Z", "production"))
    for record, (trace, stamp, level) in zip((first, second), edits, strict=True):
        text = f"You fix failing tests. {'x' * filler} {PROMPT_KEY} deploys to {level}. {rules}"
        record.update(trace_id=trace, timestamp=stamp)
        record["system"] = [{"type": "text", "text": text}]
    (tmp_path / "edit.jsonl").write_text(f"{json.dumps(first)}\n{json.dumps(second)}\n")
    ingest([tmp_path / "edit.jsonl"], tmp_path / "data")

    result = zumik("report", "--data", tmp_path / "data", "--output", tmp_path / "r.html", "--include-text")

    assert result.exit_code == 0, result.stderr
    page = re.sub(r"<[^>]+>", "", (tmp_path / "r.html").read_text())
    assert "deploys to staging" in page and "deploys to production" in page  # the edit is shown
    assert "[redacted] deploys to staging" in page
    assert "promptkey" not in page and "Zq1" not in page


def test_prompt_samples_shown_on_request_have_key_shaped_strings_redacted(
    report_waterfall: dict[str, Any], report_manifest: dict[str, Any]
) -> None:
    samples = [
        {"trace_id": "pasted-key", "text": f"user: my key is {PROMPT_KEY}, header Authorization: {BASIC}"},
        {"trace_id": "plain", "text": "user: make the suite green"},
    ]
    inputs = ReportInputs(report_waterfall, report_manifest, "2026-06-12", "Samples", samples=samples)

    hidden = render_report(inputs)
    shown = render_report(ReportInputs(**{**inputs.__dict__, "include_text": True}))

    assert "make the suite green" not in hidden
    assert "make the suite green" in shown
    assert "Zq1promptkeyMARK" not in shown and "dXNlcjpacTFiYXNpY01BUks" not in shown
    assert "my key is [redacted]" in shown

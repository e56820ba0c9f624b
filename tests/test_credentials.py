"""No credential leaves the dataset's prompt text: every output of every command is searched for planted ones.

Twenty kinds of credential, each in the shape its issuer gives it, are planted in every field of every format the
tests can generate: appended to every prompt, tool description and tool result, in request and response headers,
in metadata under their usual names, and in lines that cannot be read (cut inside each credential, or not JSON at
all). A session whose system prompt carries them beside a value that changes on every call makes divergence,
recommend and the report show edited text around them. Then every file the commands write, everything they print
and every Parquet column but ``blocks.text`` (the prompt text, documented as sensitive) is searched for each
credential's secret part.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_cli_ingest import zumik
from test_fuzz_readers import DOCUMENT_FORMATS, FORMATS, JSONL_FORMATS, SEEDS, baseline, good_lines

from zumik_cli.core.redact import MARK, redact
from zumik_cli.dataset.store import Dataset
from zumik_cli.ingest.pipeline import ingest

_RANDOM = random.Random(21)


def rnd(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    """Seeded random characters: no run of them occurs in anything else the commands write (plotly.js included)."""
    return "".join(_RANDOM.choice(alphabet) for _ in range(n))


PEM_LINES = (rnd(64), rnd(60) + "==")
UPPER = string.ascii_uppercase + string.digits
# kind -> (how it is written where it is logged, with {s} for the secret part; the secret part, which must never be
# found outside prompt text)
KINDS = [
    ("aws access key id", "AWS_ACCESS_KEY_ID={s}", "AKIA" + rnd(16, UPPER)),
    ("aws secret access key", 'aws_secret_access_key = "{s}"', rnd(40)),
    (
        "pem private key",
        "-----BEGIN RSA PRIVATE KEY-----\n" + PEM_LINES[0] + "\n{s}\n-----END RSA PRIVATE KEY-----",
        PEM_LINES[1],
    ),
    ("token field", '"token": "{s}"', rnd(24)),
    ("stripe live key", "{s}", "sk_live_51" + rnd(90)),
    ("github fine-grained token", "{s}", f"github_pat_11{rnd(22)}_{rnd(59)}"),
    ("github classic token", "{s}", "ghp_" + rnd(36)),
    ("hugging face token", "{s}", "hf_" + rnd(34, string.ascii_letters)),
    ("google oauth token", "{s}", "ya29.a0" + rnd(40)),
    ("database url password", "postgres://app:{s}@db.internal:5432/orders", rnd(16)),
    ("openai project key", "{s}", "sk-proj-" + rnd(40)),
    ("anthropic key", "{s}", "sk-ant-api03-" + rnd(40)),
    ("slack bot token", "{s}", f"xoxb-{rnd(12, string.digits)}-{rnd(24, string.ascii_lowercase + string.digits)}"),
    ("json web token", "eyJhbGciOiJIUzI1NiJ9.eyJ" + rnd(20) + ".{s}", rnd(43)),
    ("google api key", "{s}", "AIza" + rnd(35)),
    ("sendgrid key", "{s}", f"SG.{rnd(22)}.{rnd(43)}"),
    ("password field", "password={s}", rnd(20)),
    ("bearer header", "Authorization: Bearer {s}", rnd(32)),
    ("gitlab token", "{s}", "glpat-" + rnd(20)),
    ("npm token", "{s}", "npm_" + rnd(36)),
    ("azure storage key", "AccountKey={s}==", rnd(86)),
]
CREDENTIALS = {kind: (template.replace("{s}", secret), secret) for kind, template, secret in KINDS}
SECRETS = [secret for _, secret in CREDENTIALS.values()]
PARAGRAPH = "Configuration we were given:\n" + "\n".join(written for written, _ in CREDENTIALS.values())
FIELDS = {
    "aws_secret_access_key": CREDENTIALS["aws secret access key"][1],
    "AWS_ACCESS_KEY_ID": CREDENTIALS["aws access key id"][1],
    "token": CREDENTIALS["token field"][1],
    "password": CREDENTIALS["password field"][1],
    "Authorization": f"Bearer {CREDENTIALS['bearer header'][1]}",
    "private_key": CREDENTIALS["pem private key"][0],
    "database_url": CREDENTIALS["database url password"][0],
    "api_key": CREDENTIALS["stripe live key"][0],
    "hf_token": CREDENTIALS["hugging face token"][0],
    "x-goog-api-key": CREDENTIALS["google api key"][0],
    "github_token": CREDENTIALS["github fine-grained token"][0],
    "google_oauth": CREDENTIALS["google oauth token"][0],
}
TEXT_KEYS = {"content", "text", "description", "system", "instructions", "prompt", "output", "input"}
HASH_ID_FORMATS = ("bailian", "mooncake", "weka")


def planted(value: Any, record: bool = True) -> Any:
    """The record with the credentials appended to every text field and added as headers and metadata (to the
    record and to every call, request or response inside it)."""
    if isinstance(value, list):
        return [planted(v, record=False) for v in value]
    if not isinstance(value, dict):
        return value
    out = {
        k: (f"{v}\n{PARAGRAPH}" if k in TEXT_KEYS and isinstance(v, str) else planted(v, record=False))
        for k, v in value.items()
    }
    if record or any(k in value for k in ("messages", "model", "usage", "request", "response", "payload", "input")):
        headers = out.get("headers") if isinstance(out.get("headers"), dict) else {}
        metadata = out.get("metadata") if isinstance(out.get("metadata"), dict) else {}
        # headers first, so that a line's excerpt in the quarantine (its first characters) holds credentials
        out = {"headers": {**FIELDS, **headers}, **out, "metadata": {**metadata, **FIELDS, "note": PARAGRAPH}}
    return out


def unreadable(line: str) -> list[str]:
    """The line cut just inside each credential, the whole paragraph as a line that is not JSON, and the record
    wrapped in a list where an object is expected."""
    cuts = [line[: line.index(secret) + 6] for secret in SECRETS if secret in line]
    return [*cuts, PARAGRAPH.replace("\n", " "), f"[{line}]"]


def rotating_session(path: Path) -> Path:
    """One session whose system prompt carries the credentials beside a date and a deploy token that change on
    every call: divergence, recommend and the report show the edited text around them."""
    lines = []
    for turn in range(6):
        system = (
            f"You are the billing agent. Today is 2026-03-{turn + 1:02d}.\n"
            f"deploy_token={'Q7rotating' + 'aBcD1234'[turn:] + 'xYz' * (turn + 2)}\n{PARAGRAPH}\nAnswer briefly."
        )
        lines.append(
            {
                "zumik": 1,
                "trace_id": f"cred-{turn}",
                "timestamp": 1772528400 + 60 * turn,
                "provider": "anthropic",
                "model": "claude-sonnet-4-5",
                "tenant": "acme",
                "session_id": "cred-session",
                "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
                "messages": [{"role": "user", "content": f"Question {turn}: what is due?"}],
                "usage": {"input_tokens": 900, "cache_read_input_tokens": 0, "output_tokens": 12},
            }
        )
    path.write_text("".join(json.dumps(planted(line)) + "\n" for line in lines))
    return path


@pytest.fixture(scope="module")
def planted_datasets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """One dataset of every content format (and the rotating session), one per hash-id format."""
    root = tmp_path_factory.mktemp("credentials")
    requests = {}
    for fmt in FORMATS:
        folder = root / "traces" / fmt
        folder.mkdir(parents=True)
        target = folder / f"good-{SEEDS[fmt].name}"
        if fmt in DOCUMENT_FORMATS:
            text = json.dumps(planted(json.loads(SEEDS[fmt].read_text())))
            target.write_text(text)
            (folder / f"cut-{SEEDS[fmt].name}").write_text(text[: text.index(SECRETS[0]) + 6])
        else:
            lines = [json.dumps(planted(json.loads(line))) for line in good_lines(fmt)]
            target.write_text("\n".join([*lines, *unreadable(lines[0])]) + "\n")
        data = root / (f"data-{fmt}" if fmt in HASH_ID_FORMATS else "data")
        requests[fmt] = ingest([folder], data, format=fmt).requests
    session = rotating_session(root / "traces" / "session.jsonl")
    requests["session"] = ingest([session], root / "data", format="zumik").requests
    return root, requests


def parquet_text(path: Path) -> str:
    """Every string in a Parquet part, lists of strings included, but the prompt text of ``blocks``."""
    table = pq.read_table(path)
    values = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        if path.parent.name == "blocks" and name == "text":
            continue
        if pa.types.is_string(column.type) or (
            pa.types.is_list(column.type) and pa.types.is_string(column.type.value_type)
        ):
            values.append(json.dumps(column.to_pylist()))
    return "\n".join(values)


def found(text: str) -> list[str]:
    """The secrets found whole, or by a 12-character piece of them (a cut that kept part of one)."""
    return [s for s in SECRETS if s in text or any(s[i : i + 12] in text for i in range(0, len(s) - 11, 6))]


def leaks_in(folder: Path) -> list[tuple[str, list[str]]]:
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != ".lock"):
        text = parquet_text(path) if path.suffix == ".parquet" else path.read_bytes().decode("utf-8", "replace")
        if found(text):
            out.append((str(path.relative_to(folder)), found(text)))
    return out


def test_at_least_fifteen_kinds_are_planted_in_every_format_and_detected_where_they_are_written() -> None:
    assert len(CREDENTIALS) >= 15
    for kind, (written, secret) in CREDENTIALS.items():
        assert secret in written, kind
        assert found(redact(written)) == [], (kind, redact(written))
        assert found(redact(json.dumps({"note": written}))) == [], kind
    for fmt in FORMATS:
        record = json.loads(SEEDS[fmt].read_text()) if fmt in DOCUMENT_FORMATS else json.loads(good_lines(fmt)[0])
        assert set(found(json.dumps(planted(record)))) == set(SECRETS), fmt


def test_every_record_is_still_read_beside_the_credentials(planted_datasets: tuple[Path, dict[str, int]]) -> None:
    _, requests = planted_datasets

    assert requests == {**{fmt: baseline(fmt)[0] for fmt in FORMATS}, "session": 6}


def test_the_prompt_text_keeps_what_the_user_sent_so_the_search_below_can_find_a_leak(
    planted_datasets: tuple[Path, dict[str, int]],
) -> None:
    root, _ = planted_datasets

    texts = "\n".join(
        t or "" for (t,) in Dataset(root / "data").connect().execute("SELECT text FROM blocks").fetchall()
    )

    assert set(found(texts)) == set(SECRETS)


def test_no_credential_reaches_any_dataset_file_or_parquet_column_but_the_prompt_text(
    planted_datasets: tuple[Path, dict[str, int]],
) -> None:
    root, _ = planted_datasets

    datasets = sorted(root.glob("data*"))
    assert len(datasets) == 1 + len(HASH_ID_FORMATS)
    assert [leak for data in datasets for leak in leaks_in(data)] == []


def test_quarantined_lines_keep_redacted_excerpts_and_zumik_quarantine_prints_no_credential(
    planted_datasets: tuple[Path, dict[str, int]],
) -> None:
    root, _ = planted_datasets

    redacted = 0
    for data in sorted(root.glob("data*")):
        redacted += sum(MARK in e["excerpt"] for e in Dataset(data).quarantine_entries())
        for args in (["quarantine", "--data", data], ["quarantine", "--data", data, "--json"]):
            result = zumik(*args)
            assert result.exit_code == 0, result.stderr
            assert found(result.stdout + result.stderr) == [], (data.name, args)
    # every JSONL format has lines cut inside its credentials (a document's quarantine keeps no excerpt)
    assert redacted >= len(JSONL_FORMATS) * 2


def test_divergence_recommend_check_and_waterfall_print_no_credential_in_json_or_tables(
    planted_datasets: tuple[Path, dict[str, int]],
) -> None:
    root, _ = planted_datasets
    data = root / "data"

    printed = {}
    for args in (
        ["divergence", "--json"],
        ["divergence"],
        ["recommend", "--json"],
        ["recommend"],
        ["waterfall", "--json", "--by", "session", "--by", "tenant"],
        ["waterfall", "--by", "session"],
        ["check"],
    ):
        result = zumik(*args, "--data", data)
        assert result.exit_code == (1 if args == ["check"] else 0), (args, result.stderr)  # check finds faults
        printed[" ".join(args)] = result.stdout + result.stderr

    spans = json.loads(printed["divergence --json"])["volatile_spans"]
    assert any(MARK in json.dumps(s) for s in spans), "the edited text around the credentials was not shown"
    assert {name: found(text) for name, text in printed.items() if found(text)} == {}


def test_the_report_with_prompt_text_holds_no_credential(
    planted_datasets: tuple[Path, dict[str, int]], tmp_path: Path
) -> None:
    root, _ = planted_datasets

    for data in sorted(root.glob("data*")):
        report = tmp_path / f"{data.name}.html"
        result = zumik("report", "--data", data, "--output", report, "--include-text", "--generated-at", "2026-06-12")
        assert result.exit_code == 0, result.stderr

    assert MARK in (tmp_path / "data.html").read_text()
    assert leaks_in(tmp_path) == []


@pytest.mark.parametrize("kind", ["database url password", "aws access key id", "token field", "pem private key"])
def test_an_error_message_that_quotes_what_the_user_typed_prints_a_credential_redacted(
    kind: str, planted_datasets: tuple[Path, dict[str, int]]
) -> None:
    root, _ = planted_datasets
    written, secret = CREDENTIALS[kind]

    result = zumik("waterfall", "--data", root / "data", "--ttl", written)

    assert result.exit_code != 0
    assert "Error:" in result.stderr and MARK in result.stderr
    assert found(result.stdout + result.stderr) == []


def test_redacting_a_quarantine_window_stays_fast() -> None:
    import time

    line = json.dumps({"messages": [{"role": "user", "content": "word " * 2000 + PARAGRAPH}]})
    started = time.perf_counter()
    for _ in range(50):
        redact(line[:2048], 0, 200)

    assert (time.perf_counter() - started) / 50 < 0.05

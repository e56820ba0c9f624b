"""A dataset written by another schema version is refused by every command that reads it, through the real CLI.

The refusal is one line on stderr that names both versions and says what to do, exit code 4, nothing on stdout,
and the dataset left byte for byte as it was (no part, report or lock contents written).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import FIXTURES
from test_cli_ingest import words, zumik

from zumik_cli.dataset.schema import SCHEMA_VERSION
from zumik_cli.ingest.pipeline import ingest

RE_INGEST = "re-ingest the traces into a new folder with `zumik ingest`"
SAMPLE_RELEASES = Path(__file__).parents[1] / "sample_traces" / "releases.yaml"


def commands(data: Path, out: Path) -> dict[str, list[str | Path]]:
    """Every command that opens a dataset, with the least it needs to get that far."""
    return {
        "ingest": ["ingest", FIXTURES / "bailian.jsonl", "--data", data],
        "diagnose": ["diagnose", FIXTURES / "bailian.jsonl", "--data", data, "--report", out / "d.html"],
        "waterfall": ["waterfall", "--data", data],
        "waterfall --json": ["waterfall", "--data", data, "--json"],
        "report": ["report", "--data", data, "--output", out / "r.html"],
        "quarantine": ["quarantine", "--data", data],
        "export": ["export", "--to", "mooncake", "--output", out / "e.jsonl", "--data", data],
        "simulate": ["simulate", "--data", data, "--releases", SAMPLE_RELEASES],
        "explain": ["explain", "some-trace", "--data", data],
        "divergence": ["divergence", "--data", data],
        "check": ["check", "--data", data],
        "recommend": ["recommend", "--data", data],
        "replay": ["replay", "--data", data],
    }


def fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def foreign(tmp_path: Path) -> Path:
    """A dataset whose manifest says a newer zumik wrote it."""
    data = tmp_path / "data"
    ingest([FIXTURES / "zumik.jsonl"], data)
    manifest = json.loads((data / "manifest.json").read_text())
    manifest.update(schema_version=SCHEMA_VERSION + 1, zumik_version="9.0.0")
    (data / "manifest.json").write_text(json.dumps(manifest))
    return data


@pytest.mark.parametrize("command", list(commands(Path("d"), Path("o"))))
def test_every_command_refuses_a_dataset_of_a_newer_schema_with_what_to_do(
    command: str, foreign: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    before = fingerprint(foreign)

    result = zumik(*commands(foreign, out)[command])

    assert result.exit_code == 4, result.stdout + result.stderr
    assert result.stdout == ""
    error = words(result.stderr).split("Error: ", 1)[1]
    assert error == (
        f"{foreign} was written with dataset schema {SCHEMA_VERSION + 1} (by zumik 9.0.0); this zumik reads schema "
        f"{SCHEMA_VERSION}: upgrade zumik to read it, or {RE_INGEST}"
    )
    assert "Traceback" not in result.stderr
    assert fingerprint(foreign) == before
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize(
    ("version", "written_by"), [(SCHEMA_VERSION - 1, "0.0.1"), (None, None), ("1", "0.0.1"), (True, "0.0.1")]
)
def test_an_older_or_unversioned_dataset_is_refused_with_the_advice_to_re_ingest(
    version: object, written_by: str | None, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    ingest([FIXTURES / "zumik.jsonl"], data)
    manifest = json.loads((data / "manifest.json").read_text())
    manifest.pop("schema_version")
    manifest.pop("zumik_version")
    if version is not None:
        manifest.update(schema_version=version, zumik_version=written_by)
    (data / "manifest.json").write_text(json.dumps(manifest))

    result = zumik("waterfall", "--data", data)

    assert result.exit_code == 4
    assert words(result.stderr) == (
        f"Error: {data} was written with dataset schema {version} (by zumik {written_by}); this zumik reads schema "
        f"{SCHEMA_VERSION}: {RE_INGEST}"
    )


@pytest.mark.parametrize("text", ["[]", "null", '"schema_version"', '{"schema_version": 1, "parts": '])
def test_a_manifest_that_is_not_a_json_object_says_to_recreate_the_dataset(text: str, tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(text)

    result = zumik("waterfall", "--data", tmp_path)

    assert result.exit_code == 4
    assert words(result.stderr).startswith(f"Error: {tmp_path / 'manifest.json'} is unreadable (")
    assert words(result.stderr).endswith("re-create the dataset with `zumik ingest`")

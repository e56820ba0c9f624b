"""Docs that cannot drift: every command has help and a section in docs/cli.md, the generated pages match the code,
every column, manifest key and quarantine field zumik writes has a meaning in docs/schema.md, and
docs/architecture.md names every module of the package."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES
from typer.main import get_command

from zumik_cli.cli import app
from zumik_cli.dataset.schema import COLUMN_DOCS, TABLE_DOCS, TABLES
from zumik_cli.ingest.pipeline import ingest

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ("docs/cli.md", "docs/schema.md")


def commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """Every visible command and group under ``command``, named as a user types it."""
    yield " ".join(("zumik", *path)), command
    for name, sub in (getattr(command, "commands", None) or {}).items():
        if not sub.hidden:
            yield from commands(sub, (*path, name))


COMMANDS = list(commands(get_command(app)))


def test_the_command_tree_is_walked_from_the_typer_app() -> None:
    names = [name for name, _ in COMMANDS]
    assert {"zumik", "zumik ingest", "zumik waterfall", "zumik releases", "zumik releases list"} <= set(names)


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_every_command_and_each_of_its_parameters_has_help_text(name: str, command: Any) -> None:
    assert (command.help or "").strip(), f"`{name}` has no help: give its function a docstring"
    silent = [param.name for param in command.params if not (getattr(param, "help", None) or "").strip()]
    assert not silent, f"`{name}`: these parameters have no help text: {', '.join(silent)}"


def test_every_command_has_a_section_in_docs_cli_md() -> None:
    sections = set(re.findall(r"^## (.+?)\s*$", (ROOT / "docs" / "cli.md").read_text(), flags=re.MULTILINE))
    missing = [name for name, _ in COMMANDS if name not in sections]
    assert not missing, f"not in docs/cli.md: {', '.join(missing)}; run `make docs`"


def test_the_generated_docs_match_the_code() -> None:
    """Regenerates docs/cli.md and docs/schema.md in a fresh interpreter, as `make docs-check` does, and compares."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "PY_COLORS", "TYPER_USE_RICH")}
    result = subprocess.run(
        [sys.executable, "-m", "cogapp", "--check", "--diff", *GENERATED],
        cwd=ROOT,
        env={**env, "COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\nthe docs are out of date: run `make docs`"


def test_every_table_and_column_has_a_meaning_beside_its_schema() -> None:
    missing = [table for table in TABLES if not TABLE_DOCS.get(table)]
    missing += [
        f"{table}.{field.name}"
        for table, schema in TABLES.items()
        for field in schema
        if not COLUMN_DOCS.get(table, {}).get(field.name)
    ]
    stale = [
        f"{table}.{column}"
        for table, columns in COLUMN_DOCS.items()
        for column in columns
        if table not in TABLES or column not in TABLES[table].names
    ]
    assert not missing, f"add to TABLE_DOCS / COLUMN_DOCS in zumik_cli/dataset/schema.py: {', '.join(missing)}"
    assert not stale, f"COLUMN_DOCS describes columns that no longer exist: {', '.join(stale)}"


def test_every_manifest_key_and_quarantine_field_an_ingest_writes_is_in_docs_schema_md(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ingest([FIXTURES / "zumik.jsonl", FIXTURES / "bad" / "truncated.jsonl", FIXTURES / "bad" / "empty.jsonl"], data)
    manifest = json.loads((data / "manifest.json").read_text())
    quarantine = [
        json.loads(line) for part in manifest["quarantine"] for line in (data / part).read_text().splitlines()
    ]
    assert manifest["inputs"] and manifest["calibration"] and quarantine, "the fixtures no longer exercise every key"

    written = {
        "manifest.json": set(manifest),
        "inputs entries": {key for entry in manifest["inputs"] for key in entry},
        "calibration entries": {key for entry in manifest["calibration"] for key in entry},
        "quarantine entries": {key for entry in quarantine for key in entry},
    }
    documented = set(re.findall(r"^\| `([^`]+)` \|", (ROOT / "docs" / "schema.md").read_text(), flags=re.MULTILINE))
    undocumented = {where: sorted(keys - documented) for where, keys in written.items() if keys - documented}
    assert not undocumented, f"document these in docs/schema.md: {undocumented}"


def _modules() -> list[str]:
    """Every module under zumik_cli/ by its path there; an empty ``__init__.py`` only marks a package."""
    package = ROOT / "zumik_cli"
    return sorted(
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if not (path.name == "__init__.py" and not path.read_text().strip())
    )


def test_docs_architecture_md_names_every_module_and_no_module_that_is_gone() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`([\w/]+\.py)`", text))
    modules = _modules()
    missing = [module for module in modules if module not in named]
    assert not missing, f"docs/architecture.md does not name: {', '.join(missing)}"
    stages = {module.split("/")[0] for module in modules if "/" in module}
    gone = [name for name in named if name.split("/")[0] in stages and name not in modules]
    assert not gone, f"docs/architecture.md names modules that do not exist: {', '.join(sorted(gone))}"

"""The dataset folder: the manifest is the only source of truth, parts are plain Parquet, versions are checked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from conftest import FIXTURES

from zumik_cli.core.errors import DatasetError
from zumik_cli.dataset.schema import SCHEMA_VERSION, TABLES
from zumik_cli.dataset.store import Dataset, read_manifest
from zumik_cli.ingest.pipeline import ingest


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """Two ingest runs (two parts per content table), one of them with a quarantined line."""
    data = tmp_path / "data"
    ingest([FIXTURES / "openai_chat.jsonl", FIXTURES / "mooncake.jsonl"], data)
    ingest([FIXTURES / "zumik.jsonl", FIXTURES / "bad" / "truncated.jsonl"], data)
    return data


def listed_parts(data: Path) -> set[str]:
    manifest = read_manifest(data)
    return {part for parts in manifest.parts.values() for part in parts} | set(manifest.quarantine)


def test_the_manifest_lists_exactly_the_parts_on_disk(dataset: Path) -> None:
    on_disk = {
        path.relative_to(dataset).as_posix()
        for path in dataset.rglob("*")
        if path.is_file() and path.parent != dataset and not path.parent.name.startswith(".")
    }

    assert listed_parts(dataset) == on_disk
    assert len(read_manifest(dataset).parts["requests"]) == 2


def test_every_part_is_plain_parquet_that_duckdb_reads_with_the_declared_schema(dataset: Path) -> None:
    manifest = read_manifest(dataset)
    con = duckdb.connect()

    for table, parts in manifest.parts.items():
        for part in parts:
            path = dataset / part
            assert pq.read_schema(path).remove_metadata() == TABLES[table]
            rows = con.execute("SELECT count(*) FROM read_parquet(?)", [str(path)]).fetchone()
            assert rows is not None and rows[0] > 0


def test_the_views_show_every_listed_part_and_nothing_else(dataset: Path) -> None:
    con = Dataset(dataset).connect()

    assert con.execute("SELECT count(*) FROM requests").fetchone() == (3 + 4 + 3 + 2,)
    assert con.execute("SELECT count(DISTINCT rid), count(*) FROM requests").fetchone() == (12, 12)


def test_connections_to_one_snapshot_share_its_views_and_keep_their_temp_tables_and_settings_apart(
    dataset: Path,
) -> None:
    snapshot = Dataset(dataset)
    first, second = snapshot.connect(), snapshot.connect()
    first.execute("CREATE TEMP TABLE req AS SELECT 1 AS x")
    second.execute("CREATE TEMP TABLE req AS SELECT 2 AS x")  # the waterfall's temp names, in two connections
    first.execute("SET enable_progress_bar_print = true")

    assert (first.execute("SELECT x FROM req").fetchall(), second.execute("SELECT x FROM req").fetchall()) == (
        [(1,)],
        [(2,)],
    )
    assert second.execute("SELECT current_setting('enable_progress_bar_print')").fetchone() == (False,)
    assert (
        first.execute("SELECT count(*) FROM requests").fetchone()
        == second.execute("SELECT count(*) FROM requests").fetchone()
    )


def test_a_table_with_no_parts_is_an_empty_view_with_its_columns(tmp_path: Path) -> None:
    ingest([FIXTURES / "mooncake.jsonl"], tmp_path / "data")

    con = Dataset(tmp_path / "data").connect()

    for table in ("blocks", "tokens"):
        cursor = con.execute(f"SELECT * FROM {table}")
        assert [column[0] for column in cursor.description] == TABLES[table].names
        assert cursor.fetchall() == []


def test_parts_a_killed_writer_left_behind_are_never_read_and_are_removed_by_the_next_ingest(dataset: Path) -> None:
    listed = read_manifest(dataset).parts["requests"][0]
    shutil.copy(dataset / listed, dataset / "requests" / "part-killed.parquet")
    (dataset / ".staging-killed" / "requests").mkdir(parents=True)

    assert Dataset(dataset).connect().execute("SELECT count(*) FROM requests").fetchone() == (12,)

    ingest([FIXTURES / "bailian.jsonl"], dataset)

    assert not (dataset / "requests" / "part-killed.parquet").exists()
    assert not (dataset / ".staging-killed").exists()
    assert Dataset(dataset).connect().execute("SELECT count(*) FROM requests").fetchone() == (16,)


def test_no_temporary_file_is_left_after_an_ingest(dataset: Path) -> None:
    leftovers = [path.name for path in dataset.rglob("*") if path.name.startswith((".staging-", ".manifest.json."))]

    assert leftovers == []


def test_the_quarantine_entries_say_file_line_and_reason(dataset: Path) -> None:
    (entry,) = Dataset(dataset).quarantine_entries()

    assert Path(entry["file"]).name == "truncated.jsonl"
    assert entry["line"] == 2
    assert entry["reason"].startswith("not JSON: ")


def test_a_dataset_of_another_schema_version_is_refused_with_a_way_forward(dataset: Path) -> None:
    manifest = json.loads((dataset / "manifest.json").read_text())
    manifest["schema_version"] = SCHEMA_VERSION + 1
    (dataset / "manifest.json").write_text(json.dumps(manifest))

    with pytest.raises(DatasetError, match=f"schema {SCHEMA_VERSION + 1}.*re-ingest the traces into a new folder"):
        Dataset(dataset)
    with pytest.raises(DatasetError, match="re-ingest"):
        ingest([FIXTURES / "bailian.jsonl"], dataset)
    assert json.loads((dataset / "manifest.json").read_text()) == manifest, "the refused dataset is left as it was"


def test_a_folder_without_a_manifest_is_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"is not a zumik dataset \(no manifest.json\): run `zumik ingest"):
        Dataset(tmp_path)


def test_an_unreadable_manifest_says_to_recreate_the_dataset(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"schema_version": 1, "parts": ')

    with pytest.raises(DatasetError, match="unreadable .*re-create the dataset with `zumik ingest`"):
        Dataset(tmp_path)


def test_the_manifest_records_its_versions_and_every_input_with_its_digest(dataset: Path) -> None:
    manifest = json.loads((dataset / "manifest.json").read_text())

    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["zumik_version"]
    names = [Path(entry["path"]).name for entry in manifest["inputs"]]
    assert names == ["openai_chat.jsonl", "mooncake.jsonl", "zumik.jsonl", "truncated.jsonl"]
    assert all(len(entry["sha256"]) == 64 for entry in manifest["inputs"])

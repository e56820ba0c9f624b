"""Alias release histories: parsing, digests, resolution by time, verify, and `new` (append-only)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import runner
from release_workloads import (
    CHEAP,
    FAST,
    cheap_target,
    fast_target,
    ingest_records,
    release,
    session,
    when,
    write_history,
)

from zumik_cli.cli import app
from zumik_cli.core.errors import ReleaseError
from zumik_cli.dataset.store import Dataset
from zumik_cli.routing.release_derivation import new_release
from zumik_cli.routing.release_store import check_history, verify
from zumik_cli.routing.releases import History, history_from_documents, load_history, release_digest
from zumik_cli.synth.releases import release_history, write_release_history
from zumik_cli.synth.traffic import SynthConfig

SCHEMA = json.loads((Path(__file__).parents[1] / "docs" / "releases.schema.json").read_text())


def two_releases() -> list[dict]:
    return [
        release("alr_2026_06_01_001", -3600, [fast_target(), cheap_target()], policy="cheapest"),
        release("alr_2026_06_01_002", 3600, [cheap_target(), fast_target()], supersedes="alr_2026_06_01_001"),
    ]


@pytest.fixture
def history_file(tmp_path: Path) -> Path:
    return write_history(tmp_path / "releases.yaml", two_releases())


@pytest.fixture
def recorded(tmp_path: Path, history_file: Path) -> tuple[Path, Path]:
    """A dataset whose `zumik simulate` run has recorded the history's releases."""
    data = ingest_records(tmp_path / "work", session("s1", "billing", 0, [FAST, FAST]))
    result = runner().invoke(app, ["simulate", "--data", str(data), "--releases", str(history_file), "--json"])
    assert result.exit_code == 0, result.stderr
    return history_file, data


def test_a_release_resolves_to_the_newest_one_of_its_alias_created_at_or_before_the_request(history_file):
    history = load_history(history_file)
    start = history.get("alr_2026_06_01_001").created_ts

    assert history.resolve("chat", start - 1) is None
    assert history.resolve("chat", start).id == "alr_2026_06_01_001"
    assert history.resolve("chat", start + 7199).id == "alr_2026_06_01_001"
    assert history.resolve("chat", start + 7200).id == "alr_2026_06_01_002"
    assert history.resolve("other", start + 7200) is None


def test_the_digest_ignores_quoting_key_order_and_whole_numbers_but_not_meaning(tmp_path):
    doc = release("alr_2026_06_01_001", 0, [fast_target()])
    same = dict(reversed(list(doc.items())))
    same["targets"] = [
        {**fast_target(), "prices_per_mtok": {"input": 5, "output": 10, "cache_read": 0.5, "cache_write": 6.25}}
    ]
    other = release("alr_2026_06_01_001", 0, [fast_target(revision="r2")])

    a, b, c = (history_from_documents([d], "test").releases[0] for d in (doc, same, other))

    assert release_digest(a) == release_digest(b)
    assert release_digest(a) != release_digest(c)
    assert a.digest.startswith("rdg_") and len(a.digest) == 28


def test_a_malformed_release_is_refused_naming_the_release_and_the_field(tmp_path):
    doc = release("alr_2026_06_01_001", 0, [fast_target()])
    del doc["targets"][0]["prices_per_mtok"]["cache_read"]
    path = write_history(tmp_path / "bad.yaml", [doc])

    with pytest.raises(ReleaseError, match=r"release alr_2026_06_01_001: field targets\[0\]\.prices_per_mtok"):
        load_history(path)


def test_a_created_at_without_a_time_zone_is_refused(tmp_path):
    doc = release("alr_2026_06_01_001", 0, [fast_target()])
    doc["created_at"] = "2026-06-01T09:00:00"
    with pytest.raises(ReleaseError, match="created_at needs a time zone"):
        load_history(write_history(tmp_path / "naive.yaml", [doc]))


def test_verify_names_a_broken_supersedes_chain_a_wrong_id_date_and_an_unknown_policy(tmp_path):
    docs = two_releases()
    docs[1]["supersedes"] = None
    docs[0]["policy"] = "fastest"
    docs.append(release("alr_2026_07_01_001", 86_400, [fast_target()], alias="chat", supersedes="alr_2026_06_01_002"))
    problems = {(p.release, p.field) for p in check_history(load_history(write_history(tmp_path / "h.yaml", docs)))}

    assert ("alr_2026_06_01_002", "supersedes") in problems
    assert ("alr_2026_06_01_001", "policy") in problems
    assert ("alr_2026_07_01_001", "id") in problems


def test_duplicate_release_ids_are_refused(tmp_path):
    docs = two_releases()
    docs[1]["id"] = docs[0]["id"]
    with pytest.raises(ReleaseError, match="appears twice"):
        load_history(write_history(tmp_path / "dup.yaml", docs))


def test_editing_a_field_of_a_recorded_release_makes_verify_fail_naming_release_and_field(recorded):
    history_file, data = recorded
    text = history_file.read_text()
    history_file.write_text(text.replace("model: m-fast", "model: m-fast\n  model_revision: m-fast-2", 1))

    result = runner().invoke(app, ["releases", "verify", "--releases", str(history_file), "--data", str(data)])

    assert result.exit_code == 6
    assert "alr_2026_06_01_001" in result.stderr
    assert "targets[0].model_revision" in result.stderr
    assert "'m-fast-2'" in result.stderr
    assert "alr_2026_06_01_001" in result.stdout  # the problem table is data


def test_simulate_refuses_a_history_in_which_a_recorded_release_changed(recorded):
    history_file, data = recorded
    history_file.write_text(history_file.read_text().replace("input: 5.0", "input: 4.0", 1))

    result = runner().invoke(app, ["simulate", "--data", str(data), "--releases", str(history_file)])

    assert result.exit_code == 6
    assert "alr_2026_06_01_001" in result.stderr and "prices_per_mtok.input" in result.stderr


def test_editing_a_release_that_carries_its_digest_fails_verify_without_a_dataset(tmp_path):
    path = tmp_path / "synth.yaml"
    write_release_history(SynthConfig(sessions=4), path)
    text = path.read_text()
    path.write_text(text.replace("output_ms_per_token: 18.0", "output_ms_per_token: 9.0", 1))

    result = runner().invoke(app, ["releases", "verify", "--releases", str(path), "--json"])

    assert result.exit_code == 6
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert [(p["release"], p["field"]) for p in report["problems"]] == [("alr_2026_06_07_001", "digest")]


def test_new_appends_the_next_release_and_leaves_existing_releases_byte_identical(history_file):
    before = history_file.read_bytes()
    result = runner().invoke(
        app,
        [
            "releases",
            "new",
            "--releases",
            str(history_file),
            "--alias",
            "chat",
            "--set",
            "targets[0].model_revision=m-cheap-2",
            "--set",
            "constraints.max_latency_ms=5000",
            "--created-at",
            when(7200),
            "--json",
        ],
    )

    assert result.exit_code == 0, result.stderr
    after = history_file.read_bytes()
    assert after.startswith(before)
    created = json.loads(result.stdout)
    assert created["id"] == "alr_2026_06_01_003"
    assert created["supersedes"] == "alr_2026_06_01_002"
    assert created["targets"][0]["model_revision"] == "m-cheap-2"
    assert created["constraints"]["max_latency_ms"] == 5000.0
    assert "Appended alr_2026_06_01_003" in result.stderr
    history = load_history(history_file)
    assert verify(history).ok
    assert history.get("alr_2026_06_01_003").digest == created["digest"]
    assert history.get("alr_2026_06_01_002").digest == load_history(history_file).get("alr_2026_06_01_002").digest


def test_new_starts_the_numbering_again_on_another_day(history_file):
    first = new_release(
        history_file,
        alias="chat",
        changes={"policy": "reuse_aware"},
        created_at=load_history(history_file).get("alr_2026_06_01_002").created_at.replace(day=3),
    )
    second = new_release(
        history_file,
        base=first.id,
        changes={"policy": "cheapest"},
        created_at=first.created_at.replace(hour=first.created_at.hour + 1),
    )

    assert (first.id, second.id) == ("alr_2026_06_03_001", "alr_2026_06_03_002")
    assert second.supersedes == first.id


def test_new_refuses_a_release_that_changes_nothing(history_file):
    before = history_file.read_bytes()
    result = runner().invoke(
        app, ["releases", "new", "--releases", str(history_file), "--alias", "chat", "--created-at", when(7200)]
    )

    assert result.exit_code == 6
    assert "would not differ" in result.stderr
    assert history_file.read_bytes() == before


def test_new_refuses_a_creation_time_before_the_alias_latest_release(history_file):
    result = runner().invoke(
        app,
        [
            "releases",
            "new",
            "--releases",
            str(history_file),
            "--alias",
            "chat",
            "--set",
            "policy=cheapest",
            "--created-at",
            when(0),
        ],
    )
    assert result.exit_code == 6
    assert "after its latest one" in result.stderr


def test_list_and_show_read_the_file_or_the_releases_a_dataset_recorded(recorded):
    history_file, data = recorded
    from_file = runner().invoke(app, ["releases", "list", "--releases", str(history_file), "--json"])
    from_data = runner().invoke(app, ["releases", "list", "--data", str(data), "--json"])
    shown = runner().invoke(app, ["releases", "show", "alr_2026_06_01_002", "--data", str(data), "--json"])
    table = runner().invoke(app, ["releases", "show", "alr_2026_06_01_002", "--releases", str(history_file)])

    assert from_file.exit_code == from_data.exit_code == shown.exit_code == table.exit_code == 0
    assert json.loads(from_file.stdout) == json.loads(from_data.stdout)
    assert [r["id"] for r in json.loads(from_data.stdout)] == ["alr_2026_06_01_001", "alr_2026_06_01_002"]
    doc = json.loads(shown.stdout)
    assert doc["targets"][0]["key"] == f"{CHEAP[0]}/{CHEAP[1]}"
    assert "alr_2026_06_01_001" in table.stdout and table.stderr == ""


def test_a_command_without_a_history_says_what_to_pass():
    result = runner().invoke(app, ["releases", "list"])
    assert result.exit_code == 6
    assert "--releases FILE" in result.stderr


def test_verify_warns_about_releases_the_traces_name_but_the_history_lacks(tmp_path, history_file):
    data = ingest_records(tmp_path / "w", session("s9", "ops", 0, [FAST], release="alr_2026_05_30_004"))
    report = verify(load_history(history_file), Dataset(data))

    assert report.ok
    assert [(p.release, p.severity) for p in report.problems] == [("alr_2026_05_30_004", "warning")]


def test_the_synth_history_verifies_and_matches_the_json_schema(tmp_path):
    config = SynthConfig(sessions=6)
    path = tmp_path / "releases.yaml"
    written = write_release_history(config, path)

    assert verify(load_history(path)).ok
    assert [r.digest for r in load_history(path).releases] == [r.digest for r in written]
    for doc in yaml.safe_load_all(path.read_text()):
        jsonschema.validate(doc, SCHEMA)
    aliases = {r.alias for r in written}
    assert all(2 <= len([r for r in written if r.alias == a]) <= 3 for a in aliases)
    revision_changes = [
        r
        for r in written
        if r.supersedes and History(tuple(written), "synth").get(r.supersedes).targets[0].model == r.targets[0].model
    ]
    assert revision_changes, "one alias changes only its model revision"
    assert path.read_bytes() == (
        write_release_history(config, tmp_path / "again.yaml") and (tmp_path / "again.yaml").read_bytes()
    )
    assert release_history(config) == written

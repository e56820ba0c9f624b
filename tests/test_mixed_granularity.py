"""A dataset may hold traces of several block granularities: content traces and hash-id traces side by side."""

from __future__ import annotations

from pathlib import Path

from conftest import FIXTURES

from zumik_cli.analysis.waterfall import compute_waterfall
from zumik_cli.dataset.store import Dataset
from zumik_cli.ingest.pipeline import ingest


def test_a_dataset_mixing_hash_id_and_content_traces_has_a_waterfall(tmp_path: Path) -> None:
    ingest([FIXTURES / "bailian.jsonl", FIXTURES / "zumik.jsonl"], tmp_path / "data")

    summary = compute_waterfall(Dataset(tmp_path / "data")).summary

    assert summary["requests"] == 4 + 3

"""Ingest's progress moves while a file is parsed, not only when the file is done."""

from __future__ import annotations

from pathlib import Path

from zumik_cli.ingest.pipeline import ingest
from zumik_cli.synth.traffic import SynthConfig, write_jsonl


def test_progress_reports_bytes_part_way_through_one_large_file(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    write_jsonl(SynthConfig(sessions=4, seed=3), trace)
    size = trace.stat().st_size
    calls: list[tuple[int, int]] = []

    ingest([trace], tmp_path / "ds", progress=lambda done, total: calls.append((done, total)))

    inside = [done for done, total in calls if 0 < done < total]
    assert len(inside) >= 10, calls
    assert inside == sorted(inside) and calls[-1] == (size, size)

"""The benchmark harness runs end to end on tiny inputs and writes its table; it asserts no speed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from zumik_cli.core import digests, identity

# bench/ sits beside the package, not in it: the harness is run from the checkout (python -m bench.run)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import measure, mooncake, run, workloads  # noqa: E402


def test_the_harness_runs_zumik_on_tiny_inputs_and_writes_its_table_json_and_plot(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text(f"# Benchmarks\n\n{run.MARK_START}\nold\n{run.MARK_END}\n\nafter\n")

    code = run.main(
        [
            "--no-peers",
            "--mooncake",
            "200",
            "--sessions",
            "2",
            "--resend",
            "1,2",
            "--repeat",
            "1",
            "--contention",
            "200",
        ]
        + ["--out", str(tmp_path / "out"), "--docs", str(docs)]
    )

    assert code == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert sorted((row["kind"], row["tool"], row["status"], row.get("burners", 0)) for row in results["rows"]) == [
        ("content", "zumik", "ok", 0),
        ("mooncake", "zumik", "ok", 0),
        ("mooncake", "zumik", "ok", 2),
    ]
    for row in results["rows"]:
        assert row["wall_s"] > 0 and row["cpu_s"] > 0 and row["peak_mb"] > 0
        assert 0 <= row["headline"]["eligible"] <= 1
    assert [row["resend"] for row in results["resend"]] == [1, 2]
    (contended,) = results["contention"]
    assert contended["tool"] == "zumik" and contended["slowdown"] > 0
    assert contended["contended_wall_s"] == next(r["wall_s"] for r in results["rows"] if r.get("burners"))
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| mooncake 200 requests |" in table and "| x2 |" in table and "Under contention" in table
    rows = [line for line in table.splitlines() if line.startswith("| mooncake 200 requests |")]
    assert len(rows) == 2 and "| zumik | ok |" in rows[0] and "x |" in rows[1], "one quiet row, one slowdown row"
    assert (tmp_path / "out" / "plot.html").stat().st_size > 0
    written = docs.read_text()
    assert "old" not in written and "| mooncake 200 requests |" in written and written.endswith("after\n")


def test_a_measured_command_has_its_own_peak_memory_not_the_harness_s(tmp_path: Path) -> None:
    held = np.ones(300_000_000 // 8)  # the harness holding 300 MB, as it does after generating workloads
    script = "b = bytearray(120_000_000)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint('done')"

    small = measure.run([sys.executable, "-c", "print('done')"])
    large = measure.run([sys.executable, "-c", script])
    failed = measure.run([sys.executable, "-c", "raise SystemExit(3)"])
    slow = measure.run([sys.executable, "-c", "import time; time.sleep(30)"], timeout_s=0.5)
    missing = measure.run([str(tmp_path / "no-such-tool")])

    assert held.sum() > 0
    assert small.exit_code == 0 and small.stdout_tail.strip() == "done" and small.peak_mb < 100
    assert 120 < large.peak_mb < 220 and large.cpu_s > 0
    assert failed.exit_code == 3 and not failed.killed
    assert slow.killed == "time" and slow.wall_s < 10
    assert missing.exit_code != 0 and "could not start" in missing.stderr_tail


def test_resending_keeps_the_unique_content_and_so_the_tokenized_characters(tmp_path: Path) -> None:
    source = workloads.agents(tmp_path, 2)
    twice = workloads.resent(source, 2)

    lines, doubled = source.read_bytes().splitlines(), twice.read_bytes().splitlines()

    assert len(doubled) == 2 * len(lines)
    assert doubled[0] == lines[0] and doubled[1] != lines[0]
    assert doubled[1].replace(b'-r1"', b'"', 1) == lines[0]


def test_the_mooncake_generator_is_deterministic_time_ordered_and_prefix_chained() -> None:
    lines = mooncake.generate_lines(500, seed=3)
    records = [json.loads(line) for line in lines]

    assert lines == mooncake.generate_lines(500, seed=3) and len(records) == 500
    assert [r["timestamp"] for r in records] == sorted(r["timestamp"] for r in records)
    prefix_of: dict[int, tuple[int, ...]] = {}
    for record in records:
        ids = record["hash_ids"]
        assert (len(ids) - 1) * 512 < record["input_length"] <= len(ids) * 512
        for k, block in enumerate(ids):
            assert prefix_of.setdefault(block, tuple(ids[:k])) == tuple(ids[:k]), "an id names one whole prefix"


def test_vectorised_digests_equal_identity_hashes_for_every_kind_of_integer() -> None:
    values = [0, 7, -1, 10, 2**63 - 1, -(2**63), 123_456_789, -987]
    for scope in ("mooncake:a.jsonl", "s" * 300):
        prefix = identity.CHAIN_V + len(scope).to_bytes(8, "little") + scope.encode()
        got = digests.as_int64(digests.digest_decimals(prefix, np.array(values, dtype=np.int64), 8))
        assert got.tolist() == identity.hash_chain_ids(scope, values)
    prefix = identity.TRACE_V + (8).to_bytes(8, "little") + b"mooncake" + (1).to_bytes(8, "little") + b"x"
    ids = digests.as_hex("trc_", digests.digest_decimals(prefix, np.array([1, 2]), 12)).astype(str).tolist()
    assert ids == [identity.derived_trace_id("mooncake", "x", "1"), identity.derived_trace_id("mooncake", "x", "2")]

"""The sibling walk gives the pairs of the one SQL join it replaces, on random requests and on a real dataset.

``REFERENCE_SQL`` is that join, the definition of a request's siblings (see ``zumik_cli/analysis/siblings.py``):
Hypothesis builds ``levels`` and ``units`` tables whose requests share parents, families, targets, keys, times and
TTLs at random, and both must name the same (rid, level, a, b) rows, interpreted and compiled alike.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zumik_cli.analysis import siblings
from zumik_cli.analysis.siblings import sibling_pairs

REFERENCE_SQL = """
WITH nxt AS (
    SELECT l.rid, lv.level, u.block_id, u.parent, u.ord, u.ts, u.fam_id, u.tgt_id, u.kvc_id, u.ttl
    FROM levels l
    CROSS JOIN (VALUES ('fam'), ('tgt'), ('kvc'), ('warm')) AS lv(level)
    JOIN units u ON u.rid = l.rid AND u.pos = CASE lv.level WHEN 'fam' THEN l.n_fam WHEN 'tgt' THEN l.n_tgt
                                                             WHEN 'kvc' THEN l.n_kvc ELSE l.n_warm END
    WHERE NOT u.hashid
), pairs AS (
    SELECT n.rid, n.level, n.block_id AS a, s.block_id AS b, max(s.ord) AS last_ord
    FROM nxt n JOIN units s ON s.parent = n.parent AND s.fam_id = n.fam_id AND s.ord < n.ord
                             AND s.block_id <> n.block_id
    WHERE n.level = 'fam'
       OR (n.level = 'tgt' AND s.tgt_id = n.tgt_id)
       OR (n.level = 'kvc' AND s.kvc_id = n.kvc_id)
       OR (n.level = 'warm' AND s.kvc_id = n.kvc_id AND (s.ttl IS NULL OR n.ts IS NULL OR s.ts IS NULL
                                                         OR n.ts - s.ts <= s.ttl))
    GROUP BY ALL
)
SELECT rid, level, a, b FROM (
    SELECT *, row_number() OVER (PARTITION BY rid, level ORDER BY last_ord DESC) AS k FROM pairs
) WHERE k <= $limit
"""

BRANCHES = 3  # blocks to choose from after each parent: few, so that requests share parents often


@st.composite
def requests(draw: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``units`` and ``levels`` rows: requests in time order, each a path down a small tree of blocks."""
    units, levels = [], []
    for ord in range(1, draw(st.integers(1, 24)) + 1):
        rid = 1000 + ord
        fam = draw(st.sampled_from([1, 1, 1, 2]))
        tgt = draw(st.sampled_from([1, 1, 2, None]))
        kvc = draw(st.sampled_from([1, 1, 2]))
        ts = draw(st.integers(-1, 8).map(lambda t: None if t < 0 else float(t)))  # a gap can equal a TTL
        hashid = draw(st.sampled_from([False, False, False, True]))
        path = draw(st.lists(st.integers(1, BRANCHES), min_size=1, max_size=5))
        parent = 0
        for pos, block in enumerate(path):
            chain = parent * (BRANCHES + 1) + block  # the chain names the whole path, as a chained hash does
            ttl = draw(st.sampled_from([None, 2.0, 2.0, 3.0]))
            units.append(
                {
                    "rid": rid,
                    "pos": pos,
                    "block_id": block * 100 + pos % 2,  # one block id recurs under several parents
                    "parent": parent,
                    "ord": ord,
                    "ts": ts,
                    "ttl": ttl,
                    "hashid": hashid,
                    "fam_id": fam,
                    "tgt_id": tgt,
                    "kvc_id": kvc,
                }
            )
            parent = chain
        n = [draw(st.integers(0, len(path))) for _ in range(4)]
        levels.append({"rid": rid, "n_fam": n[0], "n_tgt": n[1], "n_kvc": n[2], "n_warm": n[3]})
    return units, levels


def _connection(units: list[dict[str, Any]], levels: list[dict[str, Any]]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    schema = pa.schema(
        [
            ("rid", pa.int64()),
            ("pos", pa.int64()),
            ("block_id", pa.int64()),
            ("parent", pa.int64()),
            ("ord", pa.int64()),
            ("ts", pa.float64()),
            ("ttl", pa.float64()),
            ("hashid", pa.bool_()),
            ("fam_id", pa.int64()),
            ("tgt_id", pa.int64()),
            ("kvc_id", pa.int64()),
        ]
    )
    con.register("units_in", pa.Table.from_pylist(units, schema=schema))
    con.register("levels_in", pa.Table.from_pylist(levels))
    con.execute("CREATE TEMP TABLE units AS SELECT * FROM units_in")
    con.execute("CREATE TEMP TABLE levels AS SELECT * FROM levels_in")
    return con


def _rows(table: pa.Table) -> list[tuple[Any, ...]]:
    return sorted(zip(*(table.column(name).to_pylist() for name in ("rid", "level", "a", "b")), strict=True))


@pytest.mark.parametrize("compiled", [False, True], ids=["interpreted", "compiled"])
@settings(deadline=None, max_examples=100)
@given(drawn=requests(), limit=st.integers(1, 4))
def test_the_walk_names_the_pairs_the_reference_join_names(
    drawn: tuple[list[dict[str, Any]], list[dict[str, Any]]], limit: int, compiled: bool
) -> None:
    units, levels = drawn
    con = _connection(units, levels)
    expected = _rows(con.sql(REFERENCE_SQL.replace("$limit", str(limit))).to_arrow_table())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(siblings, "COMPILED_MIN", 0 if compiled else 1 << 62)
        patch.setattr(siblings, "CHUNK", 3)  # several chunks, each with room for its own pairs only
        got = _rows(sibling_pairs(con, limit))
    assert got == expected


def test_a_request_keeps_its_most_recent_siblings_only() -> None:
    # four earlier requests each follow parent 0 with another block; the fifth's first block is new: its two
    # siblings are the last two uses, newest first, and the first two are dropped
    units = [
        {"rid": r, "pos": 0, "block_id": b, "parent": 0, "ord": r, "ts": None, "ttl": None, "hashid": False}
        | {"fam_id": 1, "tgt_id": 1, "kvc_id": 1}
        for r, b in ((1, 11), (2, 12), (3, 13), (4, 14), (5, 15))
    ]
    levels = [{"rid": 5, "n_fam": 0, "n_tgt": 0, "n_kvc": 0, "n_warm": 0}]
    pairs = _rows(sibling_pairs(_connection(units, levels), 2))
    assert pairs == sorted((5, level, 15, b) for level in ("fam", "tgt", "kvc", "warm") for b in (13, 14))


def test_no_first_block_gives_no_pairs() -> None:
    units = [
        {"rid": 1, "pos": 0, "block_id": 11, "parent": 0, "ord": 1, "ts": 1.0, "ttl": 5.0, "hashid": False}
        | {"fam_id": 1, "tgt_id": 1, "kvc_id": 1}
    ]
    levels = [{"rid": 1, "n_fam": 1, "n_tgt": 1, "n_kvc": 1, "n_warm": 1}]  # every block shared
    assert sibling_pairs(_connection(units, levels), 64).num_rows == 0

"""The waterfall's per-request rows, kept in a Parquet file rather than in memory.

The rows (one a request, in ``ord`` order: ``sql/stages.sql``) are written once by DuckDB, which spills past its
memory limit, and read back by scans: DuckDB queries them where they lie, Arrow reads the columns or the rows a caller
asks for. Nothing holds them whole, so the waterfall's memory after the levels pass does not grow with the requests.

The file lives in a temporary folder of its own, removed once nothing can read it: neither its ``PerRequest`` nor a
DuckDB connection it was registered in (``register`` keeps it for as long as the connection); at the latest when the
process ends.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds


class PerRequest:
    """One row a request, read on demand: ``register`` for DuckDB, ``to_table`` for the columns or rows wanted."""

    def __init__(self) -> None:
        folder = tempfile.mkdtemp(prefix="zumik-per-request-")
        self.path = Path(folder) / "per_request.parquet"
        self._removal = weakref.finalize(self, shutil.rmtree, folder, ignore_errors=True)

    def write(self, con: duckdb.DuckDBPyConnection, query: str) -> int:
        """Write the rows of ``query`` (in its order); how many were written."""
        written = con.execute(f"COPY ({query}) TO {_quoted(self.path)} (FORMAT parquet)").fetchall()
        return int(written[0][0]) if written else 0

    def register(self, con: duckdb.DuckDBPyConnection, name: str, columns: tuple[str, ...] = ()) -> None:
        """The rows (with only ``columns`` when given) as the connection's own view ``name``, scanned from the file;
        the file stays while ``con`` does."""
        shown = ", ".join(columns) or "*"
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {shown} FROM read_parquet({_quoted(self.path)})")
        weakref.finalize(con, _keep, self)

    @property
    def num_rows(self) -> int:
        return int(self._dataset().count_rows())

    @property
    def schema(self) -> pa.Schema:
        return self._dataset().schema

    def to_table(self, columns: list[str] | None = None, where: dict[str, Any] | None = None) -> pa.Table:
        """The rows, in order, with only ``columns`` (all when None) and only those whose columns equal ``where``'s
        values: a whole table of every column is for small waterfalls (tests, notebooks) only."""
        condition = None
        for column, value in (where or {}).items():
            test = pc.field(column) == value
            condition = test if condition is None else condition & test
        return self._dataset().to_table(columns=columns, filter=condition)

    def _dataset(self) -> ds.Dataset:
        return ds.dataset(self.path, format="parquet")


def _quoted(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _keep(_: object) -> None:
    """Nothing: a finalizer that holds its argument for as long as the object it is attached to lives."""

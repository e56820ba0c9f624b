"""What-if datasets: the recorded dataset with some tables replaced or extended by transformed Parquet parts.

A scenario is read exactly like a dataset (same views, same schema), so the waterfall re-runs on it unchanged:
that is how a recommendation's saving is computed, never by a second implementation of the waterfall. The
recorded dataset is never written to; transformed parts live in a scratch folder the caller owns.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from zumik_cli.dataset.schema import TABLES
from zumik_cli.dataset.store import Dataset


class Scenario(Dataset):
    """The base dataset with, per table, its parts replaced (or followed) by a scenario's own Parquet files."""

    def __init__(self, base: Dataset, name: str, replaced: dict[str, str], added: dict[str, str]) -> None:
        self.root = base.root
        self.manifest = base.manifest
        self.name = name
        self.base = base
        self._replaced = replaced
        self._added = added

    def parts(self, table: str) -> list[str]:
        if table in self._replaced:
            return [self._replaced[table]]
        own = self.base.parts(table)
        return [*own, self._added[table]] if table in self._added else own


class ScenarioBuilder:
    """Writes each scenario's transformed tables under one scratch folder and hands back ``Scenario`` views."""

    def __init__(self, base: Dataset, scratch: Path) -> None:
        self.base = base
        self.scratch = Path(scratch)

    def build(
        self,
        name: str,
        con: duckdb.DuckDBPyConnection,
        replace_sql: dict[str, str] | None = None,
        replace_tables: dict[str, pa.Table] | None = None,
        add_tables: dict[str, pa.Table] | None = None,
    ) -> Scenario:
        """A scenario from SQL (a SELECT that yields the table's columns) or Arrow tables, on ``con``."""
        folder = self.scratch / name
        folder.mkdir(parents=True, exist_ok=True)
        replaced: dict[str, str] = {}
        added: dict[str, str] = {}
        for table, sql in (replace_sql or {}).items():
            # streamed by DuckDB straight to Parquet: a large table never sits in memory whole
            path = folder / f"{table}.parquet"
            columns = ", ".join(TABLES[table].names)
            target = str(path).replace("'", "''")
            con.execute(f"COPY (SELECT {columns} FROM ({sql})) TO '{target}' (FORMAT parquet, COMPRESSION zstd)")
            replaced[table] = str(path)
        for table, arrow in (replace_tables or {}).items():
            replaced[table] = self._write(folder, table, arrow.select(TABLES[table].names).cast(TABLES[table]))
        for table, arrow in (add_tables or {}).items():
            added[table] = self._write(folder, f"{table}-added", arrow.select(TABLES[table].names).cast(TABLES[table]))
        return Scenario(self.base, name, replaced, added)

    @staticmethod
    def _write(folder: Path, name: str, table: pa.Table) -> str:
        path = folder / f"{name}.parquet"
        pq.write_table(table, path, compression="zstd")
        return str(path)

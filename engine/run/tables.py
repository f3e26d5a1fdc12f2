"""Parquet table sinks: declared schemas, row groups written while the run goes, atomic files.

Each table is written to ``<name>.parquet.partial`` in row groups (memory stays flat) and renamed
to ``<name>.parquet`` when complete, so a reader never sees a half-written table and a crash
leaves the previous complete file (if any) untouched.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from engine import __version__
from engine.schemas import TABLES


class TableSink:
    def __init__(self, run_dir: Path, name: str, metadata: dict[str, str], row_group_size: int = 20_000) -> None:
        self.schema: pa.Schema = TABLES[name].with_metadata({**metadata, "engine_version": __version__,
                                                              "table": name})
        self.path = run_dir / f"{name}.parquet"
        self.partial = run_dir / f"{name}.parquet.partial"
        self.row_group_size = row_group_size
        self.rows: list[dict[str, Any]] = []
        self.count = 0
        self._writer: pq.ParquetWriter | None = None

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.row_group_size:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        table = pa.Table.from_pylist(self.rows, schema=self.schema)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.partial, self.schema, compression="zstd")
        self._writer.write_table(table)
        self.count += len(self.rows)
        self.rows = []

    def close(self) -> Path:
        """Write what is left and publish the file atomically."""
        self.flush()
        if self._writer is None:
            pq.write_table(self.schema.empty_table(), self.partial, compression="zstd")
        else:
            self._writer.close()
        os.replace(self.partial, self.path)
        return self.path

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self.partial.unlink(missing_ok=True)


def write_table(run_dir: Path, name: str, rows: list[dict[str, Any]], metadata: dict[str, str]) -> Path:
    sink = TableSink(run_dir, name, metadata)
    for r in rows:
        sink.add(r)
    return sink.close()

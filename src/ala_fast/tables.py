"""Writing tables to files by extension (Parquet, CSV, Arrow IPC)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from .errors import ReaderError


def write_table(table: pa.Table, path: str | Path) -> Path:
    path = Path(path)
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    elif suffix == ".csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)
    elif suffix in (".arrow", ".feather", ".ipc"):
        import pyarrow.feather as feather

        feather.write_feather(table, path)
    else:
        raise ReaderError(f"{path}: unknown output type {suffix!r}; use .parquet, .csv or .arrow")
    return path

"""Accepting Arrow data in its usual shapes: Table, RecordBatch, C stream capsule objects."""

from __future__ import annotations

import pyarrow as pa

from .errors import SchemaError


def as_table(data, where: str = "input") -> pa.Table:
    """A ``pyarrow.Table`` from a Table, RecordBatch, RecordBatchReader or any object with the
    Arrow PyCapsule stream interface (``__arrow_c_stream__``, e.g. a polars DataFrame)."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, pa.RecordBatchReader):
        return data.read_all()
    if hasattr(data, "__arrow_c_stream__"):
        return pa.table(data)
    if isinstance(data, dict):
        return pa.table(data)
    raise SchemaError(
        f"{where}: expected a pyarrow Table / RecordBatch, a dict of columns or an object with "
        f"__arrow_c_stream__, got {type(data).__name__}"
    )

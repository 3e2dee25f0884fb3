"""The canonical workload table: one Arrow schema, one validation function.

Every reader produces this table and every API consumes it (DESIGN.md section 2).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import SchemaError, ValidationError, describe_problem

#: configuration columns: everything about a deployment except the request shape
CONFIG_COLUMNS: tuple[str, ...] = ("hardware", "num_devices", "framework", "model", "precision")
#: a curve is one configuration at one request shape
CURVE_COLUMNS: tuple[str, ...] = CONFIG_COLUMNS + ("input_tokens", "output_tokens")
#: the key of one benchmarked curve (a static-batch and a concurrency sweep are different curves)
CURVE_KEY: tuple[str, ...] = CURVE_COLUMNS + ("batch_kind",)
STRING_COLUMNS = ("hardware", "framework", "model", "precision", "batch_kind")
INT_COLUMNS = ("num_devices", "input_tokens", "output_tokens", "batch_size")

CANONICAL_SCHEMA = pa.schema(
    [
        pa.field("hardware", pa.string(), nullable=False),
        pa.field("num_devices", pa.int64(), nullable=False),
        pa.field("framework", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("precision", pa.string(), nullable=False),
        pa.field("input_tokens", pa.int64(), nullable=False),
        pa.field("output_tokens", pa.int64(), nullable=False),
        pa.field("batch_size", pa.int64(), nullable=False),
        pa.field("throughput", pa.float64(), nullable=False),
        pa.field("batch_kind", pa.string(), nullable=False),
    ]
)
WORKLOAD_SCHEMA = pa.schema([f for f in CANONICAL_SCHEMA if f.name != "throughput"])

DEFAULTS = {"precision": "fp16", "batch_kind": "static"}
BATCH_KINDS = ("static", "concurrency")


def _bad_rows(mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero(mask)


def _column_to_numpy(col: pa.ChunkedArray) -> np.ndarray:
    return col.to_numpy(zero_copy_only=False)


def validate(
    data: pa.Table,
    *,
    require_throughput: bool,
    where: str = "table",
    allow_empty: bool = False,
) -> pa.Table:
    """Check ``data`` against the canonical schema and return it in canonical form.

    Optional columns (``precision``, ``batch_kind``) are filled with their defaults; integer
    columns given as floats are accepted only when every value is integral. Extra columns are
    kept after the canonical ones. Raises :class:`SchemaError` (missing column, wrong type,
    empty table) or :class:`ValidationError` (null, NaN/inf, non-positive value), naming the
    column and the offending rows: one error for every column with invalid values (the first
    problem found in each). A column of the wrong type raises a ``SchemaError`` that also lists
    the invalid values found in the other columns.
    """
    if not isinstance(data, pa.Table):
        raise SchemaError(f"{where}: expected a pyarrow.Table, got {type(data).__name__}")
    if data.num_rows == 0 and not allow_empty:
        raise SchemaError(f"{where}: the table is empty (0 rows)")
    schema = CANONICAL_SCHEMA if require_throughput else WORKLOAD_SCHEMA
    n = data.num_rows
    out: dict[str, pa.ChunkedArray | pa.Array] = {}
    problems: list[tuple[str, list[int], str]] = []  # (column, rows, expected), all reported
    wrong_types: list[str] = []  # columns of the wrong type (their values are not checked)
    missing = [
        f.name for f in schema if f.name not in data.column_names and f.name not in DEFAULTS
    ]
    if missing:
        raise SchemaError(
            f"{where}: missing column(s) {missing}; the canonical columns are "
            f"{[f.name for f in schema]} (precision and batch_kind are optional)"
        )
    for field in schema:
        name = field.name
        if name not in data.column_names:
            out[name] = pa.array([DEFAULTS[name]] * n, pa.string())
            continue
        col = data.column(name)
        if col.null_count:
            nulls = col.is_null()
            if name in DEFAULTS:
                col = pc.fill_null(col, DEFAULTS[name])
            else:
                problems.append((name, _bad_rows(_column_to_numpy(nulls)), "no nulls"))
                continue
        if pa.types.is_string(field.type):
            if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
                    or pa.types.is_dictionary(col.type)):
                wrong_types.append(f"column {name!r} has type {col.type}, expected string")
                continue
            col = col.cast(pa.string())
            # check the distinct values (few) and map problems back to rows only when found
            distinct = pc.unique(col)
            empty = _column_to_numpy(pc.utf8_length(pc.utf8_trim_whitespace(distinct))) == 0
            if empty.any():
                values = _column_to_numpy(pc.utf8_length(pc.utf8_trim_whitespace(col)))
                problems.append((name, _bad_rows(values == 0), "a non-empty string"))
            elif name == "batch_kind" and not pc.all(
                    pc.is_in(distinct, pa.array(BATCH_KINDS))).as_py():
                ok = _column_to_numpy(pc.is_in(col, pa.array(BATCH_KINDS)))
                problems.append((name, _bad_rows(~ok), f"one of {BATCH_KINDS}"))
            out[name] = col
            continue
        # numeric columns
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            wrong_types.append(f"column {name!r} has type {col.type}, expected a number")
            continue
        values = _column_to_numpy(col).astype(np.float64)
        finite = np.isfinite(values)
        if not finite.all():
            problems.append((name, _bad_rows(~finite), "finite numbers (no NaN or inf)"))
            continue
        if not (values > 0).all():
            problems.append((name, _bad_rows(~(values > 0)), "values > 0"))
            continue
        if pa.types.is_integer(field.type):
            if pa.types.is_floating(col.type):
                frac = values != np.round(values)
                if frac.any():
                    problems.append((name, _bad_rows(frac), "whole numbers"))
                    continue
            out[name] = col.cast(pa.int64())
        else:
            out[name] = col.cast(pa.float64())
    if wrong_types:
        raise SchemaError(f"{where}: " + "; ".join(
            wrong_types + [describe_problem(*p) for p in problems]))
    if problems:
        raise ValidationError.of(problems, where)
    extra = [c for c in data.column_names if c not in out]
    arrays = [out[f.name] for f in schema] + [data.column(c) for c in extra]
    names = [f.name for f in schema] + extra
    return pa.Table.from_arrays(arrays, names=names).combine_chunks() if n else pa.Table.from_arrays(arrays, names=names)


def empty_table(require_throughput: bool = True) -> pa.Table:
    schema = CANONICAL_SCHEMA if require_throughput else WORKLOAD_SCHEMA
    return schema.empty_table()

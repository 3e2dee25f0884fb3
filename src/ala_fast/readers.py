"""Source files -> the canonical workload table (DESIGN.md section 2).

``read_benchmarks`` detects the layout from the columns: the Argonne LLM-Inference-Bench table,
the TensorRT-LLM 0.9.0 DLI sweep, the fmwork / ARISE layout (``ii, oo, bb, thpt`` plus
configuration columns) or a table that already uses the canonical names. Duplicate
(configuration, ii, oo, batch) rows are averaged and counted, rows without results are counted;
the counts travel with the table (``read_report(table)``).
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .catalog import normalise_framework, normalise_precision
from .errors import ALAError, ReaderError
from .schema import CANONICAL_SCHEMA, CURVE_COLUMNS, validate

REPORT_KEY = b"ala_fast.read_report"
SOURCES = ("argonne", "trtllm-dli", "fmwork", "canonical")


@dataclass
class ReadReport:
    """What a reader did with the rows it was given: nothing is dropped without a count."""

    source: str
    path: str
    rows_in: int = 0
    rows_out: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    duplicates_merged: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.path} ({self.source}): {self.rows_in} rows in, {self.rows_out} out"]
        for reason, count in self.skipped.items():
            parts.append(f"{count} skipped ({reason})")
        if self.duplicates_merged:
            parts.append(f"{self.duplicates_merged} duplicate rows averaged into their twins")
        parts.extend(self.notes)
        return "; ".join(parts)


def read_report(table: pa.Table) -> ReadReport | None:
    """The :class:`ReadReport` a reader attached to ``table``, if any."""
    meta = table.schema.metadata or {}
    if REPORT_KEY not in meta:
        return None
    return ReadReport(**json.loads(meta[REPORT_KEY]))


# --------------------------------------------------------------------------- file loading
def _load_file(path: Path) -> pa.Table:
    if not path.exists():
        raise ReaderError(f"{path}: no such file")
    if path.is_dir():
        raise ReaderError(f"{path}: is a folder, expected a CSV, Parquet or Arrow file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if suffix in (".arrow", ".feather", ".ipc"):
            import pyarrow.feather as feather

            return feather.read_table(path)
        if suffix in (".csv", ".txt", ".tsv", ""):
            import pyarrow.csv as pacsv

            delimiter = "\t" if suffix == ".tsv" else ","
            table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=delimiter))
            if table.num_columns < 2:
                raise ReaderError(f"{path}: not a CSV table (found {table.num_columns} column)")
            return table
    except ALAError:
        raise
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, UnicodeDecodeError) as exc:
        raise ReaderError(f"{path}: cannot be read as a {suffix or 'CSV'} table: {exc}") from exc
    raise ReaderError(
        f"{path}: unknown file type {suffix!r}; expected .csv, .tsv, .parquet or .arrow/.feather"
    )


def detect_source(columns: list[str]) -> str:
    cols = set(columns)
    if _ARGONNE_KEYS <= {c.strip().lower() for c in cols}:
        return "argonne"
    if {"GPU", "Input/Output Lengths", "Throughput (tokens / sec)"} <= cols:
        return "trtllm-dli"
    if {"ii", "oo", "bb", "thpt"} <= cols:
        return "fmwork"
    if {"hardware", "model", "input_tokens", "output_tokens", "batch_size"} <= cols:
        return "canonical"
    raise ReaderError(
        f"cannot tell the layout from the columns {sorted(cols)[:12]}; expected the Argonne "
        "All_results.csv, the TensorRT-LLM DLI sweep, the fmwork layout (ii, oo, bb, thpt) or "
        f"the canonical columns {CANONICAL_SCHEMA.names}; pass source= one of {SOURCES}"
    )


# --------------------------------------------------------------------------- per-source conversion
def _col(table: pa.Table, name: str, where: str) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise ReaderError(f"{where}: missing column {name!r}")
    return table.column(name)


def _strings(col: pa.ChunkedArray) -> list[str | None]:
    return col.cast(pa.string()).to_pylist()


def _drop_rows(table: pa.Table, mask: np.ndarray, reason: str, report: ReadReport) -> pa.Table:
    if mask.any():
        report.skipped[reason] = report.skipped.get(reason, 0) + int(mask.sum())
        table = table.filter(pa.array(~mask))
    return table


def _numeric(col: pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_string(col.type):
        col = pc.cast(pc.utf8_trim_whitespace(col), pa.float64(), safe=False)
    return col.to_numpy(zero_copy_only=False).astype(np.float64)


#: columns of the Argonne LLM-Inference-Bench tables (any case: the quantisation table writes
#: ``throughput`` and ``latency`` in lower case)
_ARGONNE_KEYS = {"hardware", "num of hardware", "input output length", "throughput"}
#: parallelism labels of TP_PP_Results.csv that mean tensor parallelism, the deployment the
#: other tables (and the canonical table) describe
_TENSOR_PARALLEL = {"tensor parallelism", "tp", "tensor"}
_WEIGHT_KV = re.compile(r"^\s*weight\s*=\s*([\w.]+)\s*,\s*kv\s*cache\s*=\s*([\w.]+)\s*$", re.I)


def _from_argonne(raw: pa.Table, report: ReadReport) -> pa.Table:
    """All_results.csv and its smaller siblings (TP_PP_Results.csv, power_results.csv,
    A100_H100_quant_all_results.csv).

    What the canonical table cannot hold is skipped and counted, never merged into rows it
    would then be averaged with: multi-device runs with pipeline, expert or hybrid parallelism
    (``Parallelism Type``), and runs whose KV cache has another precision than the weights
    (``kv_cache_dtype`` = "Weight = fp16, KV Cache = fp8"; the weights give ``precision``).
    """
    where = report.path
    raw = raw.rename_columns([c.strip().lower() for c in raw.column_names])
    empty = np.ones(raw.num_rows, bool)  # a line of commas: nulls, or empty strings
    for col in raw.columns:
        blank = col.is_null()
        if pa.types.is_string(col.type):
            blank = pc.or_kleene(blank, pc.equal(pc.utf8_trim_whitespace(col), ""))
        empty &= blank.to_numpy(zero_copy_only=False)
    raw = _drop_rows(raw, empty, "empty row", report)
    devices = _numeric(_col(raw, "num of hardware", where))
    skip: list[str | None] = [None] * raw.num_rows  # why a row cannot be kept
    if "parallelism type" in raw.column_names:
        for i, kind in enumerate(_strings(raw.column("parallelism type"))):
            kind = str(kind).strip()
            if devices[i] > 1 and kind.lower() not in _TENSOR_PARALLEL:
                skip[i] = f"{kind!r} parallelism on several devices (only tensor parallelism " \
                          "is representable)"
    precision = ["fp16"] * raw.num_rows
    if "kv_cache_dtype" in raw.column_names:
        for i, s in enumerate(_strings(raw.column("kv_cache_dtype"))):
            m = _WEIGHT_KV.match(str(s))
            if m is None:
                raise ReaderError(f"{where}: row {i}: kv_cache_dtype = {s!r}, expected "
                                  "'Weight = <precision>, KV Cache = <precision>'")
            precision[i], kv = (normalise_precision(g) for g in m.groups())
            if kv != precision[i] and skip[i] is None:
                skip[i] = f"KV cache in {kv} with {precision[i]} weights (no KV-cache " \
                          "precision column)"
    for reason in sorted({r for r in skip if r is not None}):
        report.skipped[reason] = report.skipped.get(reason, 0) + skip.count(reason)
    keep = np.array([r is None for r in skip], bool)
    raw = raw.filter(pa.array(keep))
    precision = [p for p, k in zip(precision, keep) if k]
    length = _numeric(_col(raw, "input output length", where))
    total = _numeric(_col(raw, "throughput", where))
    # Throughput is TOTAL tokens/s = (ii + oo) * bb / latency with ii == oo -> output share
    output_thpt = total * length / (length + length)
    return pa.table(
        {
            "hardware": _col(raw, "hardware", where).cast(pa.string()),
            "num_devices": _numeric(_col(raw, "num of hardware", where)),
            "framework": [normalise_framework(s) for s in _strings(_col(raw, "framework", where))],
            "model": _col(raw, "model", where).cast(pa.string()),
            "precision": precision,
            "input_tokens": length,
            "output_tokens": length,
            "batch_size": _numeric(_col(raw, "batch size", where)),
            "throughput": output_thpt,
        }
    )


def _from_trtllm(raw: pa.Table, report: ReadReport) -> pa.Table:
    where = report.path
    thpt = _numeric(_col(raw, "Throughput (tokens / sec)", where))
    raw = _drop_rows(raw, ~np.isfinite(thpt), "no result (out of memory or failed run)", report)
    thpt = _numeric(_col(raw, "Throughput (tokens / sec)", where))
    lengths = _strings(_col(raw, "Input/Output Lengths", where))
    ii = np.empty(len(lengths))
    oo = np.empty(len(lengths))
    for i, s in enumerate(lengths):
        try:
            a, b = str(s).replace("/", ",").split(",")
            ii[i], oo[i] = float(a), float(b)
        except ValueError as exc:
            raise ReaderError(
                f"{where}: row {i}: 'Input/Output Lengths' = {s!r}, expected 'input,output'"
            ) from exc
    devices_col = "Number of GPUs" if "Number of GPUs" in raw.column_names else (
        "Tensor Model Parallel Size")
    return pa.table(
        {
            "hardware": _col(raw, "GPU", where).cast(pa.string()),
            "num_devices": _numeric(_col(raw, devices_col, where)),
            "framework": ["trt-llm"] * raw.num_rows,
            "model": _col(raw, "Model", where).cast(pa.string()),
            "precision": [normalise_precision(s) for s in _strings(_col(raw, "Precision", where))],
            "input_tokens": ii,
            "output_tokens": oo,
            "batch_size": _numeric(_col(raw, "Batch Size", where)),
            "throughput": thpt,
        }
    )


_FMWORK_ALIASES = {
    "hardware": ("hardware", "hw", "gpu", "accelerator", "device"),
    "model": ("model", "model_name", "model_id"),
    "framework": ("framework", "engine", "backend"),
    "precision": ("precision", "dtype"),
    "num_devices": ("num_devices", "ngpus", "num_gpus", "tp", "tp_size", "devices"),
}


def _from_fmwork(raw: pa.Table, report: ReadReport) -> pa.Table:
    where = report.path
    cols = {}
    for name, aliases in _FMWORK_ALIASES.items():
        found = next((a for a in aliases if a in raw.column_names), None)
        if found is None:
            if name in ("hardware", "model"):
                raise ReaderError(f"{where}: fmwork layout needs a {name} column (one of {aliases})")
            default = {"framework": "unknown", "precision": "fp16", "num_devices": 1}[name]
            report.notes.append(f"no {name} column: assumed {default!r}")
            cols[name] = [default] * raw.num_rows
        elif name == "num_devices":
            cols[name] = _numeric(raw.column(found))
        elif name == "framework":
            cols[name] = [normalise_framework(s) for s in _strings(raw.column(found))]
        elif name == "precision":
            cols[name] = [normalise_precision(s) for s in _strings(raw.column(found))]
        else:
            cols[name] = raw.column(found).cast(pa.string())
    return pa.table(
        {
            "hardware": cols["hardware"],
            "num_devices": cols["num_devices"],
            "framework": cols["framework"],
            "model": cols["model"],
            "precision": cols["precision"],
            "input_tokens": _numeric(raw.column("ii")),
            "output_tokens": _numeric(raw.column("oo")),
            "batch_size": _numeric(raw.column("bb")),
            "throughput": _numeric(raw.column("thpt")),
        }
    )


# --------------------------------------------------------------------------- duplicates
def merge_duplicates(table: pa.Table) -> tuple[pa.Table, int]:
    """Average the throughput of rows that share (configuration, ii, oo, batch, batch_kind).

    Returns the merged table (first-appearance order) and how many rows were merged away.
    """
    keys = list(CURVE_COLUMNS) + ["batch_size", "batch_kind"]
    indexed = table.select(keys + ["throughput"]).append_column(
        "_row", pa.array(np.arange(table.num_rows))
    )
    grouped = indexed.group_by(keys, use_threads=False).aggregate(
        [("throughput", "mean"), ("_row", "min")]
    )
    merged = table.num_rows - grouped.num_rows
    if merged == 0:
        return table.select(CANONICAL_SCHEMA.names), 0
    order = pc.sort_indices(grouped.column("_row_min"))
    grouped = grouped.take(order)
    out = grouped.rename_columns(
        [("throughput" if c == "throughput_mean" else c) for c in grouped.column_names]
    )
    return out.select(CANONICAL_SCHEMA.names).cast(CANONICAL_SCHEMA), merged


# --------------------------------------------------------------------------- public entry point
def read_benchmarks(
    path: str | Path, source: str | None = None, *, return_report: bool = False
) -> pa.Table | tuple[pa.Table, ReadReport]:
    """Read a benchmark file into the canonical workload table.

    ``source`` is one of ``"argonne"``, ``"trtllm-dli"``, ``"fmwork"``, ``"canonical"`` or None
    (detected from the columns). The returned table carries a :class:`ReadReport` in its schema
    metadata (see :func:`read_report`); pass ``return_report=True`` to get it directly.
    """
    path = Path(path)
    raw = _load_file(path)
    if source is None:
        source = detect_source(raw.column_names)
    elif source not in SOURCES:
        raise ReaderError(f"source={source!r} is not one of {SOURCES}")
    report = ReadReport(source=source, path=str(path), rows_in=raw.num_rows)
    if raw.num_rows == 0:
        raise ReaderError(f"{path}: the file has no rows")
    convert = {
        "argonne": _from_argonne,
        "trtllm-dli": _from_trtllm,
        "fmwork": _from_fmwork,
        "canonical": lambda t, r: t,
    }[source]
    table = convert(raw, report)
    table = validate(table, require_throughput=True, where=str(path))
    table, merged = merge_duplicates(table)
    report.duplicates_merged = merged
    report.rows_out = table.num_rows
    if report.skipped or merged:
        warnings.warn(report.summary(), stacklevel=2)
    meta = dict(table.schema.metadata or {})
    meta[REPORT_KEY] = json.dumps(asdict(report)).encode()
    table = table.replace_schema_metadata(meta)
    return (table, report) if return_report else table


def concat_tables(tables: list[pa.Table]) -> pa.Table:
    """Concatenate canonical tables (reports are dropped from the metadata)."""
    return pa.concat_tables(
        [t.select(CANONICAL_SCHEMA.names).cast(CANONICAL_SCHEMA) for t in tables]
    )

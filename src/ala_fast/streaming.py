"""Predicting Parquet files batch by batch: bounded memory, one output file per input file.

Used by the single-process CLI path and by every Ray worker (:mod:`ala_fast.ray`), so both
write the same files. An output appears only when its whole input was predicted (written to a
temporary name, then renamed); an invalid row raises the library exception naming the file and
the row number within it.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from .errors import ALAError, ReaderError, located

DEFAULT_BATCH_ROWS = 262_144


@dataclass(frozen=True)
class FileResult:
    source: str
    output: str | None  # None when the file failed
    rows: int
    error: ALAError | None = None
    peak_rss_mib: float = 0.0  # of the process that predicted the file
    #: rows per distinct name of the rows predicted (``names.name_counts``), so a caller can
    #: report the names the catalog does not recognise without reading the file again
    names: dict = field(default_factory=dict)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def input_files(path: str | Path) -> tuple[Path, list[Path]]:
    """(root, Parquet files): one file, or every ``*.parquet`` under a folder (sorted)."""
    p = Path(path)
    if p.is_file():
        return p.parent, [p]
    if p.is_dir():
        files = sorted(f for f in p.rglob("*.parquet") if f.is_file())
        if not files:
            raise ReaderError(f"{p}: no .parquet files in this folder")
        return p, files
    raise ReaderError(f"{p}: no such file or folder")


def output_for(src: Path, root: Path, out_dir: Path) -> Path:
    """The output file of ``src``: same relative path under ``out_dir``."""
    return out_dir / src.relative_to(root)


def predict_file(predictor, src: str | Path, dst: str | Path,
                 batch_rows: int = DEFAULT_BATCH_ROWS, engine: str = "compiled") -> FileResult:
    """Stream ``src`` (Parquet) through ``predictor.predict`` into ``dst`` (Parquet), counting
    the names of its rows as it goes (``FileResult.names``).

    Library errors are returned in the result (type and message, naming the file), not raised,
    so one bad file does not stop the others; anything else propagates.
    """
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    from .names import merge_counts, name_counts

    rows = 0
    names: dict = {}
    writer = None
    try:
        try:
            reader = pq.ParquetFile(src)
        except (OSError, ValueError) as exc:
            raise ReaderError(f"{src}: not a readable Parquet file ({exc})") from exc
        for batch in reader.iter_batches(batch_size=batch_rows):
            if batch.num_rows == 0:
                continue
            try:
                out = predictor.predict(batch, engine=engine)
            except ALAError as exc:
                raise located(exc, str(src), rows) from exc
            if writer is None:
                writer = pq.ParquetWriter(tmp, out.schema)
            writer.write_table(out)
            merge_counts(names, name_counts(batch))
            rows += batch.num_rows
        if writer is None:
            raise ReaderError(f"{src}: the file has no rows")
        writer.close()
        writer = None
        os.replace(tmp, dst)
        return FileResult(str(src), str(dst), rows, peak_rss_mib=peak_rss_mib(), names=names)
    except ALAError as exc:
        return FileResult(str(src), None, rows, exc, peak_rss_mib())
    finally:
        if writer is not None:
            writer.close()
        if tmp.exists():
            tmp.unlink()


def raise_failures(results: list[FileResult]) -> None:
    """Raise the first failed file's library exception, with a note listing the others."""
    bad = [r for r in results if r.error is not None]
    if not bad:
        return
    exc = bad[0].error
    if len(bad) > 1:
        exc.add_note(f"{len(bad) - 1} more file(s) failed: " + ", ".join(r.source for r in bad[1:]))
    raise exc

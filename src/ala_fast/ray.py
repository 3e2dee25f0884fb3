"""Batch scoring on Ray (``pip install 'ala_fast[ray]'``).

Two entry points, both with one :class:`~ala_fast.Predictor` per worker, loaded and warmed once
when the worker starts (never per batch):

- :func:`predict_dataset` maps ``Predictor.predict`` over a ``ray.data.Dataset`` in Arrow batch
  format and returns a Dataset with the prediction columns (lazy, streaming, order preserved).
- :func:`predict_files` scores a Parquet file or folder file by file on a pool of workers, each
  streaming its file batch by batch into one output file (``ala-fast predict INPUT --out DIR
  --engine ray``); memory per worker is bounded by the batch size, not by the input size, and
  a bad file fails alone.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ALAError, located
from .streaming import DEFAULT_BATCH_ROWS, FileResult, input_files, output_for, predict_file

PATH_COLUMN = "path"  # what ray.data.read_parquet(..., include_paths=True) adds


def _ray():
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("ala_fast.ray needs Ray: pip install 'ala_fast[ray]'") from exc
    return ray


def _load(bundle, coverage):
    from .predictor import load

    return load(bundle, coverage=coverage).warmup()


def _check_bundle(bundle, coverage) -> None:
    """Load the bundle once in the driver so a bad path or bundle raises the library error here,
    not as a dead Ray actor."""
    from .predictor import load

    load(None if bundle is None else str(bundle), coverage=coverage)


class _PredictBatches:
    """The per-worker callable of :func:`predict_dataset` (constructed once per actor)."""

    def __init__(self, bundle, coverage, engine):
        self.predictor = _load(bundle, coverage)
        self.engine = engine

    def __call__(self, batch):
        try:
            return self.predictor.predict(batch, engine=self.engine)
        except ALAError as exc:
            if PATH_COLUMN not in batch.column_names:
                raise
            files = sorted(set(batch.column(PATH_COLUMN).to_pylist()))
            if len(files) == 1:  # say which file (row numbers are the batch's)
                raise located(exc, f"{files[0]} (a batch of its rows)") from exc
            raise located(exc, "a batch of rows of " + ", ".join(files)) from exc


def predict_dataset(ds, bundle: str | Path | None = None, batch_size: int = 65_536,
                    workers: int | None = None, coverage: float = 0.9,
                    engine: str = "compiled", num_cpus: float = 1.0):
    """``Predictor.predict`` over a ``ray.data.Dataset``; returns a Dataset.

    Every input column is kept, in order, followed by the prediction columns of
    :meth:`Predictor.predict`; row order is preserved. ``workers``: at most this many
    predictor actors (default: the cluster's CPUs); the pool starts with one and grows, so
    reading tasks are never starved of CPUs. A ``path`` column (from ``read_parquet(...,
    include_paths=True)``) is passed through and used to name the file in errors.

    Errors surface when the Dataset executes; Ray wraps them, and :func:`library_error` returns
    the library exception inside.
    """
    ray = _ray()
    _check_bundle(bundle, coverage)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if workers is None:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1) // max(num_cpus, 1e-9)))
    out = ds.map_batches(
        _PredictBatches, batch_format="pyarrow", batch_size=batch_size,
        fn_constructor_args=(None if bundle is None else str(bundle), coverage, engine),
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=int(workers)),
        num_cpus=num_cpus, zero_copy_batch=True, udf_modifying_row_count=False)
    out.context.execution_options.preserve_order = True
    out.context.raise_original_map_exception = True  # the library exception, not a wrapper
    return out


def library_error(exc: BaseException) -> ALAError | None:
    """The ala_fast exception inside an error raised by Ray (None if there is none).

    :func:`predict_dataset` asks Ray Data for the original exception, which Ray raises as a
    ``RayTaskError`` subclassing it; the original (with its ``column`` and ``rows``) is its
    ``cause``.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        cause = getattr(exc, "cause", None)
        if isinstance(cause, ALAError):
            return cause
        if isinstance(exc, ALAError) and getattr(exc, "cause", None) is None:
            return exc
        exc = cause or exc.__cause__ or exc.__context__
    return None


class _FileWorker:
    def __init__(self, bundle, coverage, engine):
        self.predictor = _load(bundle, coverage)
        self.engine = engine

    def run(self, src: str, dst: str, batch_rows: int) -> FileResult:
        return predict_file(self.predictor, src, dst, batch_rows, self.engine)


def predict_files(input_path: str | Path, out_dir: str | Path, bundle: str | Path | None = None,
                  workers: int | None = None, batch_rows: int = DEFAULT_BATCH_ROWS,
                  coverage: float = 0.9, engine: str = "compiled",
                  progress: bool | None = None) -> list[FileResult]:
    """Score every Parquet file of ``input_path`` into ``out_dir`` (same relative paths).

    One actor per worker streams whole files (``batch_rows`` rows at a time). Files that fail
    (invalid rows, unreadable) get no output and are reported in their result; the others are
    written. Results are in input file order. Starts a local Ray if none is running.
    """
    from .progress import Progress

    ray = _ray()
    root, files = input_files(input_path)
    _check_bundle(bundle, coverage)
    out_dir = Path(out_dir)
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if workers is None:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
    workers = max(1, min(int(workers), len(files)))
    actor = ray.remote(num_cpus=1)(_FileWorker)
    bundle = None if bundle is None else str(bundle)
    pool = ray.util.ActorPool([actor.remote(bundle, coverage, engine) for _ in range(workers)])
    jobs = [(str(f), str(output_for(f, root, out_dir)), batch_rows) for f in files]
    results: dict[str, FileResult] = {}
    bar = Progress(len(jobs), "files", enabled=progress)
    for r in pool.map_unordered(lambda a, job: a.run.remote(*job), jobs):
        results[r.source] = r
        bar.update()
    bar.close()
    return [results[str(f)] for f in files]

"""Runtime: a loaded model bundle that predicts throughput for workloads.

Needs NumPy, Numba, PyArrow and ONNX (ONNX Runtime only for ``engine="onnxruntime"``); never
scikit-learn.
"""

from __future__ import annotations

import threading
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa

from .arrow_input import as_table
from .bundle import ipc_to_table, read_bundle, write_bundle
from .catalog import config_key
from .curves import evaluate as eval_curve
from .errors import BundleError
from .features import FEATURE_NAMES, build_features, config_matrix
from .grouping import group_codes
from .learner import Anchors, shape_roofline
from .onnx_trees import OrtModel, tree_arrays
from .schema import CURVE_KEY, validate
from .targets import T1_FLOOR, TARGET_NAMES, targets_to_params

PARAMS_ONNX = "params.onnx"
CURVES_FILE = "curves.arrow"
ENGINES = ("compiled", "onnxruntime")


def default_bundle_path() -> Path:
    return Path(str(resources.files("ala_fast") / "default_bundle"))


class Predictor:
    """Predicts throughput (output tokens/s) of workloads from a model bundle.

    Thread-safe: the state is read-only after construction except for caches that tolerate
    concurrent fills, and the ONNX Runtime session is created under a lock.
    """

    def __init__(self, manifest: dict, files: dict[str, bytes]) -> None:
        if tuple(manifest.get("feature_names", ())) != FEATURE_NAMES:
            raise BundleError(
                "bundle feature names differ from this ala_fast's feature definition; retrain "
                "the bundle with this version (`ala-fast train`)"
            )
        if tuple(manifest.get("target_names", ())) != TARGET_NAMES:
            raise BundleError("bundle target names differ from this ala_fast's targets; retrain")
        for name in (PARAMS_ONNX, CURVES_FILE):
            if name not in files:
                raise BundleError(f"bundle lacks {name}")
        self.manifest = manifest
        self._files = files
        self._trees = tree_arrays(files[PARAMS_ONNX])
        if self._trees.n_features != len(FEATURE_NAMES) or self._trees.n_targets != len(TARGET_NAMES):
            raise BundleError("parameter model input/output sizes do not match the features/targets")
        self._ort: OrtModel | None = None
        self._ort_lock = threading.Lock()
        curves = ipc_to_table(files[CURVES_FILE])
        self.curves = curves
        configs = [config_key(*row) for row in zip(*(curves.column(c).to_pylist() for c in (
            "hardware", "num_devices", "framework", "model", "precision", "batch_kind")))]
        ii = curves.column("input_tokens").to_numpy()
        oo = curves.column("output_tokens").to_numpy()
        n_points = curves.column("n_points").to_numpy()
        a, b, c = (curves.column(n).to_numpy() for n in "abc")
        self._fitted: dict[tuple, tuple[float, float, float]] = {}
        for k in np.flatnonzero(n_points >= manifest["min_points_fitted"]):
            self._fitted.setdefault((configs[k], int(ii[k]), int(oo[k])), (a[k], b[k], c[k]))
        tr = np.flatnonzero(curves.column("trainable").to_numpy(zero_copy_only=False))
        resid = np.stack([curves.column(f"residual_{t}").to_numpy() for t in TARGET_NAMES], axis=1)
        self._anchors = Anchors([configs[k] for k in tr], np.log(ii[tr].astype(float)),
                                np.log(oo[tr].astype(float)), resid[tr])

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the bundle to folder ``path`` atomically."""
        manifest = {k: v for k, v in self.manifest.items() if k not in ("files", "format_version")}
        return write_bundle(path, self._files, manifest)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return FEATURE_NAMES

    def onnx_bytes(self) -> bytes:
        """The parameter model as ONNX (input X: float32 [n, n_features]; output Y: [n, 3])."""
        return self._files[PARAMS_ONNX]

    # ------------------------------------------------------------------ model evaluation
    def _ort_model(self) -> OrtModel:
        with self._ort_lock:
            if self._ort is None:
                self._ort = OrtModel(self._files[PARAMS_ONNX])
            return self._ort

    def raw_targets(self, x: np.ndarray, engine: str = "compiled") -> np.ndarray:
        """Parameter-model outputs (before anchoring) for a feature matrix."""
        if engine == "compiled":
            return self._trees.predict(x)
        if engine == "onnxruntime":
            return self._ort_model().predict(x)
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")

    def curve_params(self, keys: pa.Table, engine: str = "compiled"):
        """(a, b, c, is_fitted) for distinct curves given as a table of CURVE_KEY columns."""
        cols = {c: keys.column(c).to_pylist() for c in CURVE_KEY}
        configs = [config_key(*row) for row in zip(*(cols[c] for c in (
            "hardware", "num_devices", "framework", "model", "precision", "batch_kind")))]
        ii = np.asarray(cols["input_tokens"], np.float64)
        oo = np.asarray(cols["output_tokens"], np.float64)
        n = len(configs)
        a, b, c = np.empty(n), np.empty(n), np.empty(n)
        fitted = np.zeros(n, bool)
        for i, key in enumerate(configs):
            hit = self._fitted.get((key, int(ii[i]), int(oo[i])))
            if hit is not None:
                a[i], b[i], c[i] = hit
                fitted[i] = True
        learn = np.flatnonzero(~fitted)
        if learn.size:
            cfg = config_matrix(*(np.asarray(cols[c], object)[learn] for c in (
                "hardware", "num_devices", "framework", "model", "precision", "batch_kind")))
            x = build_features(cfg, ii[learn], oo[learn])
            z = self.raw_targets(x, engine)
            z = z + self._anchors.corrections([configs[i] for i in learn], np.log(ii[learn]),
                                              np.log(oo[learn]))
            b1, knee = shape_roofline(cfg, ii[learn], oo[learn])
            a[learn], b[learn], c[learn] = targets_to_params(z, b1, knee)
        return a, b, c, fitted

    # ------------------------------------------------------------------ public prediction
    def predict(self, data, engine: str = "compiled") -> pa.Table:
        """Predict every row of a workload table (canonical columns; throughput not needed).

        Returns the input columns followed by ``throughput`` (output tokens/s), ``latency_s``
        (output_tokens * batch_size / throughput) and ``basis`` ("fitted" when that exact curve
        was benchmarked, else "learned"). An input ``throughput`` column is kept as
        ``measured_throughput``.
        """
        table = validate(as_table(data, "predict"), require_throughput=False, where="predict")
        codes, first = group_codes(table, CURVE_KEY)
        a, b, c, fitted = self.curve_params(table.select(list(CURVE_KEY)).take(first), engine)
        bb = table.column("batch_size").to_numpy().astype(np.float64)
        oo = table.column("output_tokens").to_numpy().astype(np.float64)
        thpt = eval_curve(a[codes], b[codes], c[codes], bb)
        thpt = np.maximum(thpt, T1_FLOOR * c[codes])  # a fitted curve can dip below 0 off its range
        out = table.rename_columns(
            ["measured_throughput" if n == "throughput" else n for n in table.column_names])
        out = out.append_column("throughput", pa.array(thpt))
        out = out.append_column("latency_s", pa.array(oo * bb / thpt))
        basis = np.where(fitted[codes], "fitted", "learned")
        return out.append_column("basis", pa.array(basis.tolist(), pa.string()))

    def __repr__(self) -> str:
        m = self.manifest
        return (f"Predictor({m.get('training', {}).get('curves', '?')} curves, "
                f"{len(self._fitted)} fitted, loss={m.get('loss')}, seed={m.get('seed')})")


def load(path: str | Path | None = None) -> Predictor:
    """Load a model bundle (None: the default bundle shipped with the package)."""
    path = default_bundle_path() if path is None else Path(path)
    manifest, files = read_bundle(path)
    return Predictor(manifest, files)

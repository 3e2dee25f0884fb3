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
from .features import FEATURE_NAMES, build_features, config_matrix, roofline_batch1_knee
from .grouping import group_codes
from .learner import Anchors
from .onnx_trees import OrtModel, tree_arrays
from .schema import CURVE_KEY, validate
from .targets import T1_FLOOR, TARGET_NAMES, targets_to_params
from .uncertainty import (
    ERROR_FEATURE_NAMES, Scaler, confidence, config_counts, conformal_quantile, expected_ape,
    similarity_features,
)

PARAMS_ONNX = "params.onnx"
CURVES_FILE = "curves.arrow"
ERROR_ONNX = "error.onnx"
REFERENCE_FILE = "reference.arrow"
CALIBRATION_FILE = "calibration.arrow"
ENGINES = ("compiled", "onnxruntime")


def default_bundle_path() -> Path:
    return Path(str(resources.files("ala_fast") / "default_bundle"))


class Predictor:
    """Predicts throughput (output tokens/s) of workloads from a model bundle.

    Thread-safe: the state is read-only after construction except for caches that tolerate
    concurrent fills, and the ONNX Runtime session is created under a lock.
    """

    def __init__(self, manifest: dict, files: dict[str, bytes], coverage: float = 0.9) -> None:
        if tuple(manifest.get("feature_names", ())) != FEATURE_NAMES:
            raise BundleError(
                "bundle feature names differ from this ala_fast's feature definition; retrain "
                "the bundle with this version (`ala-fast train`)"
            )
        if tuple(manifest.get("target_names", ())) != TARGET_NAMES:
            raise BundleError("bundle target names differ from this ala_fast's targets; retrain")
        for name in (PARAMS_ONNX, CURVES_FILE, ERROR_ONNX, REFERENCE_FILE, CALIBRATION_FILE):
            if name not in files:
                raise BundleError(f"bundle lacks {name}")
        self.manifest = manifest
        self._files = files
        self._trees = tree_arrays(files[PARAMS_ONNX])
        if self._trees.n_features != len(FEATURE_NAMES) or self._trees.n_targets != len(TARGET_NAMES):
            raise BundleError("parameter model input/output sizes do not match the features/targets")
        self._ort: OrtModel | None = None
        self._error_ort: OrtModel | None = None
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
        self._fit_envelope: dict[tuple, tuple[float, int, int]] = {}
        env = curves.column("fit_log_err").to_numpy()
        lo_b, hi_b = curves.column("min_batch").to_numpy(), curves.column("max_batch").to_numpy()
        for k in np.flatnonzero(n_points >= manifest["min_points_fitted"]):
            self._fit_envelope.setdefault((configs[k], int(ii[k]), int(oo[k])),
                                          (float(env[k]), int(lo_b[k]), int(hi_b[k])))
        # uncertainty
        u = manifest["uncertainty"]
        if tuple(u["error_feature_names"]) != ERROR_FEATURE_NAMES:
            raise BundleError("bundle error-model features differ from this ala_fast's; retrain")
        self._error_trees = tree_arrays(files[ERROR_ONNX])
        self._scaler = Scaler(np.asarray(u["scaler_mean"]), np.asarray(u["scaler_scale"]))
        ref = ipc_to_table(files[REFERENCE_FILE])
        self._reference = np.column_stack(
            [ref.column(f"v{j}").to_numpy() for j in range(len(FEATURE_NAMES))])
        self._ref_counts, self._ref_hardware = config_counts([configs[k] for k in tr])
        self._distance_scale = float(u["distance_scale"])
        self._sigma_floor = float(u["sigma_floor"])
        self._scores = ipc_to_table(files[CALIBRATION_FILE]).column("score").to_numpy()
        self.set_coverage(coverage)

    def set_coverage(self, coverage: float) -> None:
        """Choose the interval coverage (for instance 0.9 for a 90% interval)."""
        if not 0.0 < coverage < 1.0:
            raise ValueError(f"coverage must be in (0, 1), got {coverage}")
        q = conformal_quantile(self._scores, coverage)
        if not np.isfinite(q):
            raise ValueError(f"coverage {coverage} needs more calibration rows than the "
                             f"bundle has ({self._scores.size})")
        self.coverage = float(coverage)
        self._q = q

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

    def _error_ort_model(self) -> OrtModel:
        with self._ort_lock:
            if self._error_ort is None:
                self._error_ort = OrtModel(self._files[ERROR_ONNX])
            return self._error_ort

    def raw_targets(self, x: np.ndarray, engine: str = "compiled") -> np.ndarray:
        """Parameter-model outputs (before anchoring) for a feature matrix."""
        if engine == "compiled":
            return self._trees.predict(x)
        if engine == "onnxruntime":
            return self._ort_model().predict(x)
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")

    def curve_params(self, keys: pa.Table, engine: str = "compiled"):
        """Per distinct curve (a table of CURVE_KEY columns): a, b, c, is_fitted, the error-model
        inputs without the batch size, nn_dist (to the nearest observed curve), config keys."""
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
            b1, knee = roofline_batch1_knee(x)
            a[learn], b[learn], c[learn] = targets_to_params(z, b1, knee)
        # similarity of every curve to the observed ones (input of the error model)
        cfg_all = config_matrix(*(cols[c] for c in (
            "hardware", "num_devices", "framework", "model", "precision", "batch_kind")))
        x_all = build_features(cfg_all, ii, oo)
        sim = similarity_features(self._scaler.transform(x_all), self._reference, configs,
                                  self._ref_counts, self._ref_hardware)
        return a, b, c, fitted, np.column_stack([x_all, sim]), sim[:, 0], configs

    def error_sigma(self, curve_x: np.ndarray, batch: np.ndarray,
                    engine: str = "compiled") -> np.ndarray:
        """Log-scale error of learned predictions for (curve features + similarity, batch)."""
        ex = np.column_stack([curve_x, np.log(np.asarray(batch, np.float64))])
        if engine == "onnxruntime":
            log_sigma = self._error_ort_model().predict(ex)[:, 0]
        else:
            log_sigma = self._error_trees.predict(ex)[:, 0]
        return np.maximum(np.exp(log_sigma), self._sigma_floor)


    # ------------------------------------------------------------------ public prediction
    def predict(self, data, engine: str = "compiled") -> pa.Table:
        """Predict every row of a workload table (canonical columns; throughput not needed).

        Returns the input columns followed by ``throughput`` (output tokens/s), ``latency_s``
        (output_tokens * batch_size / throughput), ``lower`` / ``upper`` (the interval at the
        predictor's coverage), ``expected_ape`` (%), ``confidence`` (0..1) and ``basis``
        ("fitted" when that exact curve was benchmarked, else "learned"). An input
        ``throughput`` column is kept as ``measured_throughput``.

        Intervals of learned predictions are split-conformal (calibrated on hold-out curves);
        a fitted curve inside its measured batch range gets the envelope of its own fit
        residuals, and outside that range the wider of that envelope and the learned interval.
        """
        table = validate(as_table(data, "predict"), require_throughput=False, where="predict")
        codes, first = group_codes(table, CURVE_KEY)
        keys = table.select(list(CURVE_KEY)).take(first)
        a, b, c, fitted, err_x, nn, configs = self.curve_params(keys, engine)
        ii = keys.column("input_tokens").to_numpy()
        oo_k = keys.column("output_tokens").to_numpy()
        env = np.zeros(len(configs))
        lo_b = np.zeros(len(configs))
        hi_b = np.zeros(len(configs))
        for i in np.flatnonzero(fitted):
            env[i], lo_b[i], hi_b[i] = self._fit_envelope[(configs[i], int(ii[i]), int(oo_k[i]))]
        bb = table.column("batch_size").to_numpy().astype(np.float64)
        oo = table.column("output_tokens").to_numpy().astype(np.float64)
        thpt = eval_curve(a[codes], b[codes], c[codes], bb)
        thpt = np.maximum(thpt, T1_FLOOR * c[codes])  # a fitted curve can dip below 0 off its range
        # error model once per distinct (curve, batch size)
        pair, pair_first, pair_inv = np.unique(np.column_stack([codes, bb]), axis=0,
                                               return_index=True, return_inverse=True)
        sigma_rows = self.error_sigma(err_x[codes[pair_first]], bb[pair_first], engine)[pair_inv.reshape(-1)]
        fit_row = fitted[codes]
        in_range = fit_row & (bb >= lo_b[codes]) & (bb <= hi_b[codes])
        half = np.where(fit_row, np.maximum(env[codes], self._sigma_floor), 0.0)
        half = np.where(in_range, half, np.maximum(half, self._q * sigma_rows))
        row_sigma = np.where(in_range, np.maximum(env[codes], self._sigma_floor), sigma_rows)
        conf = np.where(fitted, 1.0, confidence(nn, self._distance_scale))[codes]
        out = table.rename_columns(
            ["measured_throughput" if n == "throughput" else n for n in table.column_names])
        cols = {
            "throughput": thpt,
            "latency_s": oo * bb / thpt,
            "lower": thpt * np.exp(-half),
            "upper": thpt * np.exp(half),
            "expected_ape": expected_ape(row_sigma),
            "confidence": conf,
        }
        for name, values in cols.items():
            out = out.append_column(name, pa.array(values))
        basis = np.where(fit_row, "fitted", "learned")
        return out.append_column("basis", pa.array(basis.tolist(), pa.string()))

    def __repr__(self) -> str:
        m = self.manifest
        return (f"Predictor({m.get('training', {}).get('curves', '?')} curves, "
                f"{len(self._fitted)} fitted, loss={m.get('loss')}, seed={m.get('seed')})")


def load(path: str | Path | None = None, coverage: float = 0.9) -> Predictor:
    """Load a model bundle (None: the default bundle shipped with the package); intervals are
    calibrated for ``coverage`` (0.9: a 90% interval)."""
    path = default_bundle_path() if path is None else Path(path)
    manifest, files = read_bundle(path)
    return Predictor(manifest, files, coverage=coverage)

"""Runtime: a loaded model bundle that predicts throughput for workloads.

Needs NumPy, Numba, PyArrow and ONNX (ONNX Runtime only for ``engine="onnxruntime"``); never
scikit-learn.
"""

from __future__ import annotations

import math
import operator
import threading
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pyarrow as pa

from .arrow_input import as_table
from .bundle import ipc_to_table, read_bundle, write_bundle
from .catalog import InferredDevices, config_identity, hardware_id
from .transfer import Lending, blend_lent, known_devices, lending
from .curves import evaluate as eval_curve
from .errors import BundleError, SchemaError, ValidationError
from .features import (
    FEATURE_NAMES, build_features, config_vector, memory_batch_limit, roofline_batch1_knee,
)
from .grouping import distinct, group_codes
from .continuation import (
    DISTANCE_EDGES, band_quantiles, band_typical_error, continuation_scales, distance_band,
)
from .learner import Anchors, curve_identities
from .neighbors import ReferenceSet
from .onnx_trees import PARALLEL_ROWS, OrtModel, tree_arrays
from .schema import BATCH_KINDS, CURVE_KEY, validate
from .targets import T1_FLOOR, TARGET_NAMES, targets_to_params
from .uncertainty import (
    ERROR_FEATURE_NAMES, ERROR_OUTPUTS, LEVEL_COLUMN, LEVELS, NO_WIDENING, RANGE_COLUMNS,
    SIM_FEATURES, UNMEASURED_SLOPE, UNSEEN_HARDWARE, BeyondSamples, Scaler, confidence,
    config_counts, config_novelty, error_output, expected_ape, extrapolation, half_width,
    level_quantiles, neighbour_distances, sigma_from_outputs,
)

if TYPE_CHECKING:
    from .names import UnrecognisedName

SIM_LEVEL = SIM_FEATURES.index("anchor_level")
SIM_SIBLINGS = SIM_FEATURES.index("n_siblings")
SIM_VENDOR = SIM_FEATURES.index("vendor_devices")
#: novelty levels of bundles trained before the peer-benchmarked level, in code order
THREE_LEVELS = ("unseen_hardware", "unseen_configuration", "known_configuration")


def bundle_levels(flags: dict) -> tuple[str, ...]:
    """The novelty levels of a bundle, in code order, from its ``normalised_scores`` names."""
    if not flags or set(flags) == set(LEVELS):
        return LEVELS
    if set(flags) == set(THREE_LEVELS):
        return THREE_LEVELS
    raise BundleError(f"bundle manifest: unknown novelty levels {sorted(flags)} in "
                      f"uncertainty.normalised_scores (this ala_fast knows {list(LEVELS)})")

PARAMS_ONNX = "params.onnx"
CURVES_FILE = "curves.arrow"
ERROR_ONNX = "error.onnx"
REFERENCE_FILE = "reference.arrow"
CALIBRATION_FILE = "calibration.arrow"
BEYOND_FILE = "beyond_range.arrow"  # range rounds' rows: how errors grow beyond the ranges
#: curves.arrow columns: (a, b, c) of each served curve's continuation beyond its measured
#: batch sizes (continuation.continuation_targets); bundles without them extrapolate the fit
CONTINUATION_COLUMNS = ("cont_a", "cont_b", "cont_c")
#: hold-out scores (|log error|) and distances of the continuation (continuation.holdout): the
#: interval beyond a served curve's range; bundles without it use the error model there
CONTINUATION_FILE = "continuation.arrow"
ENGINES = ("compiled", "onnxruntime")


STATE_CACHE_SIZE = 100_000  # curves remembered by predict_one (cleared when full)
_CONFIG_FIELDS = ("hardware", "num_devices", "framework", "model", "precision", "batch_kind")
_BASIS = pa.array(["fitted", "learned"])


class Workload(NamedTuple):
    hardware: str
    num_devices: int
    framework: str
    model: str
    precision: str = "fp16"
    input_tokens: int = 1
    output_tokens: int = 1
    batch_size: int = 1
    batch_kind: str = "static"


class Prediction(NamedTuple):
    """One prediction (immutable)."""

    throughput: float  # output tokens/s, whole deployment
    latency_s: float  # output_tokens * batch_size / throughput
    lower: float
    upper: float
    expected_ape: float  # %
    confidence: float  # 0..1
    basis: str  # "fitted" or "learned"
    memory_batch_limit: int  # largest batch whose KV cache fits (features.memory_batch_limit)


class CurvePrediction(NamedTuple):
    """Predictions of one workload at many batch sizes (arrays aligned with batch_size)."""

    batch_size: np.ndarray
    throughput: np.ndarray
    latency_s: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    expected_ape: np.ndarray
    confidence: float
    basis: str
    memory_batch_limit: int  # largest batch whose KV cache fits (features.memory_batch_limit)


class _CurveBlock(NamedTuple):
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    fitted: np.ndarray
    env: np.ndarray
    lo_b: np.ndarray
    hi_b: np.ndarray
    err_x: np.ndarray  # error-model inputs without the batch size
    conf: np.ndarray
    extra: np.ndarray  # log units by which ii and oo lie beyond the benchmarked ranges
    cont: np.ndarray  # rows x 5: continuation (a, b, c) and its scales below lo / above hi
    mem: np.ndarray  # int64: memory batch limit (a fitted curve's at least its largest batch)


class _ConfigPlan(NamedTuple):
    """What prediction needs of one configuration whatever the request shape (cached)."""

    identity: tuple  # catalog.config_identity: (config_key, hardware spelling)
    cfg: np.ndarray  # configuration vector (features.config_vector)
    lending: Lending | None  # unseen hardware: where it borrows its efficiency (transfer.py)
    level: float  # novelty level, as the bundle codes it
    siblings: float  # benchmarked curves of the configuration
    vendor_devices: float  # reference devices of its hardware's vendor


class _CurveState:
    """One curve remembered by predict_one: scalars plus a per-batch-size sigma cache."""

    __slots__ = ("block", "a", "b", "c", "fitted", "cont", "env", "lo", "hi", "conf", "oo",
                 "engine", "sigmas", "basis", "level", "mem", "extra")

    def __init__(self, block: _CurveBlock, oo: float, engine: str) -> None:
        self.block = block
        self.a, self.b, self.c = float(block.a[0]), float(block.b[0]), float(block.c[0])
        self.fitted = bool(block.fitted[0])
        k = block.cont[0]
        self.cont = (tuple(float(v) for v in k) if self.fitted and math.isfinite(k[3])
                     else None)
        self.env = float(block.env[0])
        self.lo, self.hi = float(block.lo_b[0]), float(block.hi_b[0])
        self.conf = float(block.conf[0])
        self.oo = oo
        self.engine = engine
        self.sigmas: dict[int, float] = {}
        self.basis = "fitted" if self.fitted else "learned"
        self.level = int(block.err_x[0, LEVEL_COLUMN])  # novelty level: picks the interval quantile
        self.mem = int(block.mem[0])
        self.extra = float(block.extra[0])  # ii / oo beyond the benchmarked ranges (log units)

    def predict(self, bb: int, owner: "Predictor") -> Prediction:
        x = float(bb)
        k = self.cont
        if k is not None and not self.lo <= x <= self.hi:  # scalar twin of Predictor._rows
            thpt = (k[2] - k[0] * math.exp(-k[1] * x)) * (k[3] if x < self.lo else k[4])
        else:
            thpt = self.c - self.a * math.exp(-self.b * x)
        floor = T1_FLOOR * self.c
        if thpt < floor:
            thpt = floor
        if self.fitted and self.lo <= x <= self.hi:
            sigma = half = max(self.env, owner._sigma_floor)
        elif k is not None:
            d = abs(math.log(x / (self.lo if x < self.lo else self.hi)))
            band = 0
            while band < len(DISTANCE_EDGES) and d > DISTANCE_EDGES[band]:
                band += 1  # scalar twin of continuation.distance_band
            qs, ss = owner._beyond_scalar
            sigma = max(self.env, owner._sigma_floor, ss[band])
            half = max(self.env, owner._sigma_floor, qs[band])
        else:
            sigma = self.sigmas.get(bb)
            if sigma is None:
                sigma = float(owner.error_sigma(self.block.err_x, np.array([x]), self.engine)[0])
                self.sigmas[bb] = sigma
            # scalar twin of uncertainty.half_width (no NumPy on the hot path)
            half = owner._half_scalar[self.level] * (sigma if owner._normalised[self.level] else 1.0)
            if self.fitted:
                half = max(half, self.env, owner._sigma_floor)
        extra = self.extra  # plus the batch part: scalar twin of uncertainty.extrapolation
        bounds = owner._batch_bounds
        if bounds is not None and not bounds[0] <= x <= bounds[1]:
            lo, hi = owner._log_batch_range
            lx = math.log(x)
            extra += (lx - hi if lx > hi else 0.0) + (lo - lx if lx < lo else 0.0)
        if extra > 0.0:  # scalar twin of uncertainty.BeyondSlopes.widen
            slopes = owner._beyond_slopes
            measured = min(extra, slopes.reach)
            unmeasured = UNMEASURED_SLOPE * max(extra - slopes.reach, 0.0)
            sigma += slopes.error * measured + unmeasured
            half += slopes.interval * measured + unmeasured
        w = math.exp(half)
        return Prediction(thpt, self.oo * x / thpt, thpt / w, thpt * w,
                          100.0 * (math.exp(sigma) - 1.0), self.conf,
                          self.basis, self.mem)


def _positive_int(value, column: str) -> int:
    try:
        v = operator.index(value)
    except TypeError:
        if isinstance(value, float) and value.is_integer():
            v = int(value)
        else:
            raise ValidationError(column, [0], "a whole number > 0", "predict_one") from None
    if v <= 0:
        raise ValidationError(column, [0], "a whole number > 0", "predict_one")
    return v


def _as_workload(w) -> Workload:
    if isinstance(w, Workload):
        return w
    if isinstance(w, dict):
        fields = {k: w[k] for k in Workload._fields if k in w}
        missing = [k for k in ("hardware", "num_devices", "framework", "model", "input_tokens",
                               "output_tokens") if k not in fields]
        if missing:
            raise SchemaError(f"workload: missing {missing}")
        return Workload(**fields)
    raise SchemaError(f"workload: expected a Workload or a dict, got {type(w).__name__}")


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
        # benchmarked devices the catalog does not know, as training described them
        self._inferred = InferredDevices.from_json(manifest.get("inferred_hardware", []))
        identities = curve_identities(curves)
        configs = [key for key, _ in identities]
        ii = curves.column("input_tokens").to_numpy()
        oo = curves.column("output_tokens").to_numpy()
        n_points = curves.column("n_points").to_numpy()
        a, b, c = (curves.column(n).to_numpy() for n in "abc")
        env = curves.column("fit_log_err").to_numpy()
        lo_b, hi_b = curves.column("min_batch").to_numpy(), curves.column("max_batch").to_numpy()
        # a benchmarked curve answers for its hardware spelling first, its catalog entry second;
        # one whose measurements beat the roofline ceiling (a failed run, see fit_curves) is
        # not trusted as an answer: it is predicted like any unbenchmarked curve
        served = served_as_fitted(curves, manifest["min_points_fitted"])
        # key -> ((a, b, c), (fit envelope, min batch, max batch), continuation row of 5)
        self._fitted: dict[tuple, tuple[tuple, tuple, np.ndarray]] = {}
        self.n_fitted = int(served.sum())
        self.n_implausible = int((n_points >= manifest["min_points_fitted"]).sum()) - self.n_fitted
        # continuation and its interval (written together by training); without them a
        # served curve extrapolates its fit with the error model's interval, as before
        cont = np.full((curves.num_rows, 5), np.nan)  # NaN: extrapolate the fit itself
        if CONTINUATION_FILE in files and all(n in curves.column_names
                                              for n in CONTINUATION_COLUMNS):
            cont[:, :3] = np.column_stack([curves.column(n).to_numpy(zero_copy_only=False)
                                           for n in CONTINUATION_COLUMNS])
            has = np.flatnonzero(served & np.isfinite(cont[:, :3]).all(axis=1))
            cont[has, 3], cont[has, 4] = continuation_scales(
                (a[has], b[has], c[has]), tuple(cont[has, j] for j in range(3)),
                lo_b[has], hi_b[has])
        for k in np.flatnonzero(served):
            fit = ((a[k], b[k], c[k]), (float(env[k]), int(lo_b[k]), int(hi_b[k])), cont[k])
            self._fitted.setdefault((identities[k], int(ii[k]), int(oo[k])), fit)
            self._fitted.setdefault((configs[k], int(ii[k]), int(oo[k])), fit)
        tr = np.flatnonzero(curves.column("trainable").to_numpy(zero_copy_only=False))
        # bundles from before the short-curve anchors anchor on the trainable curves only
        anchor_col = "anchor" if "anchor" in curves.column_names else "trainable"
        an = np.flatnonzero(curves.column(anchor_col).to_numpy(zero_copy_only=False))
        resid = np.stack([curves.column(f"residual_{t}").to_numpy() for t in TARGET_NAMES], axis=1)
        # each anchor's weight as training used it (bundles from before the weights: 1)
        weight = (curves.column("anchor_weight").to_numpy()[an]
                  if "anchor_weight" in curves.column_names else None)
        # the stack shape effect as training used it (bundles from before it: none; from
        # before its device-count closeness: every device count alike)
        anchoring = manifest.get("anchoring", {})
        self._anchors = Anchors([identities[k] for k in an], np.log(ii[an].astype(float)),
                                np.log(oo[an].astype(float)), resid[an], weight,
                                stack_prior=anchoring.get("stack_prior"),
                                device_closeness=anchoring.get("stack_device_closeness", False))
        hardware = curves.column("hardware").to_pylist()
        self._devices = known_devices(hardware[k] for k in an)
        self._device_ids = frozenset(hardware_id(d) for d in self._devices)
        # uncertainty
        u = manifest["uncertainty"]
        if tuple(u["error_feature_names"]) != ERROR_FEATURE_NAMES:
            raise BundleError("bundle error-model features differ from this ala_fast's; retrain")
        self._error_trees = tree_arrays(files[ERROR_ONNX])
        # the error model is piecewise constant in log(batch): one evaluation per region
        t = self._error_trees
        split = (t.mode != 0) & (t.feature == len(ERROR_FEATURE_NAMES) - 1)
        self._batch_breaks = np.unique(t.threshold[split]).astype(np.float32)
        last = self._batch_breaks[-1:] if self._batch_breaks.size else np.zeros(1, np.float32)
        self._batch_reps = np.concatenate(
            [self._batch_breaks, np.nextafter(last, np.float32(np.inf))]).astype(np.float64)
        self._scaler = Scaler(np.asarray(u["scaler_mean"]), np.asarray(u["scaler_scale"]))
        ref = ipc_to_table(files[REFERENCE_FILE])
        self._reference = ReferenceSet.of(np.column_stack(
            [ref.column(f"v{j}").to_numpy() for j in range(len(FEATURE_NAMES))]))
        self._known_configs = config_counts([configs[k] for k in tr], self._inferred)
        self._distance_scale = float(u["distance_scale"])
        self._sigma_floor = float(u["sigma_floor"])
        # benchmarked (log) ranges of ii, oo and batch and how errors grow beyond them
        # (bundles from before them: no widening)
        ranges = u.get("observed_ranges") if BEYOND_FILE in files else None
        self._beyond_rows = (None if ranges is None else
                             BeyondSamples.from_table(ipc_to_table(files[BEYOND_FILE])))
        self._ranges = (None if ranges is None else
                        np.array([ranges[c] for c in RANGE_COLUMNS], np.float64))
        self._log_batch_range = (None if ranges is None else
                                 tuple(float(v) for v in self._ranges[2]))
        # the same as batch sizes, so that predict_one takes no log inside the range
        self._batch_bounds = (None if ranges is None else
                              tuple(float(np.exp(v)) for v in self._ranges[2]))
        beyond = ipc_to_table(files[CONTINUATION_FILE]) if CONTINUATION_FILE in files else None
        edges = manifest.get("continuation", {}).get("distance_edges", list(DISTANCE_EDGES))
        if beyond is not None and not np.allclose(edges, DISTANCE_EDGES, rtol=0, atol=1e-12):
            raise BundleError(f"bundle continuation distance bands {edges} differ from this "
                              f"ala_fast's {list(DISTANCE_EDGES)}; retrain")
        self._beyond = (None if beyond is None else
                        (beyond.column("score").to_numpy(), beyond.column("distance").to_numpy()))
        calibration = ipc_to_table(files[CALIBRATION_FILE])
        self._scores = calibration.column("score").to_numpy()
        self._score_levels = (calibration.column("level").to_numpy().astype(np.int64)
                              if "level" in calibration.column_names else None)
        # bundles from before the per-level calibration normalised every score by sigma
        flags = u.get("normalised_scores", {})
        # the bundle's novelty levels (three before the peer-benchmarked level; the manifest
        # stores them as JSON object keys, order not kept): each level of LEVELS maps to the
        # bundle's code, the peer level to plain unseen hardware
        names = bundle_levels(flags)
        self._level_code = np.array([names.index(n if n in names else LEVELS[UNSEEN_HARDWARE])
                                     for n in LEVELS], np.float64)
        self._normalised = tuple(bool(flags.get(name, True)) for name in names)
        # error-model output per bundle level code (bundles before ERROR_OUTPUTS: one output)
        outputs = u.get("error_outputs", ERROR_OUTPUTS[:1])
        if list(outputs) not in (list(ERROR_OUTPUTS), list(ERROR_OUTPUTS[:1])) \
                or len(outputs) != self._error_trees.n_targets:
            raise BundleError(f"bundle error model: outputs {list(outputs)} with "
                              f"{self._error_trees.n_targets} trees' targets; this ala_fast "
                              f"reads {list(ERROR_OUTPUTS)} (or one output, older bundles)")
        self._error_column = (error_output([LEVELS.index(n) for n in names])
                              if len(outputs) > 1 else np.zeros(len(names), np.int64))
        if self._beyond_rows is not None:  # their levels (LEVELS codes) as the bundle's codes
            self._beyond_rows = self._beyond_rows._replace(
                level=self._level_code[self._beyond_rows.level].astype(np.int64))
        # the compiled evaluator runs only the output a row needs
        self._error_outputs = [self._error_trees.only_target(j) for j in range(len(outputs))]
        self._state_cache: dict[tuple, _CurveState] = {}
        self._plan_cache: dict[tuple, _ConfigPlan] = {}  # concurrent fills store equal plans
        self.set_coverage(coverage)

    def set_coverage(self, coverage: float) -> None:
        """Choose the interval coverage (for instance 0.9 for a 90% interval)."""
        if not 0.0 < coverage < 1.0:
            raise ValueError(f"coverage must be in (0, 1), got {coverage}")
        q = level_quantiles(self._scores, self._score_levels, coverage, len(self._normalised))
        if not np.all(np.isfinite(q)):
            raise ValueError(f"coverage {coverage} needs more calibration rows than the "
                             f"bundle has ({self._scores.size})")
        self.coverage = float(coverage)
        self._half = q  # per novelty level (LEVELS): the conformal quantile
        # (interval, error-scale) slope per log unit beyond the benchmarked ranges
        self._beyond_slopes = (NO_WIDENING if self._beyond_rows is None else
                               self._beyond_rows.slopes(q, coverage, self._normalised))
        self._half_scalar = tuple(float(v) for v in q)  # the same as floats, for predict_one
        # beyond a served curve's measured range: per distance band (continuation.py)
        self._beyond_half = self._beyond_sigma = None
        if self._beyond is not None:
            self._beyond_half = band_quantiles(*self._beyond, coverage)
            self._beyond_sigma = np.maximum(band_typical_error(*self._beyond), self._sigma_floor)
            self._beyond_scalar = (tuple(float(v) for v in self._beyond_half),
                                   tuple(float(v) for v in self._beyond_sigma))
        self._state_cache = {}  # intervals depend on the coverage

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

    def error_sigma(self, curve_x: np.ndarray, batch: np.ndarray,
                    engine: str = "compiled") -> np.ndarray:
        """Log-scale error of learned predictions for (curve features + similarity, batch)."""
        return self._error_sigma_log(curve_x, np.log(np.asarray(batch, np.float64)), engine)

    def _error_sigma_log(self, curve_x: np.ndarray, log_batch: np.ndarray,
                         engine: str = "compiled") -> np.ndarray:
        ex = np.column_stack([curve_x, log_batch])
        column = self._error_column[ex[:, LEVEL_COLUMN].astype(np.int64)]
        if engine == "onnxruntime":
            return sigma_from_outputs(self._error_ort_model().predict(ex), column,
                                      self._sigma_floor)
        if engine != "compiled":
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        if column.size and (column == column[0]).all():  # one output for every row (and
            # always for predict_one's single row): no split
            log_sigma = self._error_outputs[column[0]].predict(ex)[:, 0]
        else:
            log_sigma = np.empty(ex.shape[0])
            for j, trees in enumerate(self._error_outputs):
                rows = np.flatnonzero(column == j)
                if rows.size:
                    log_sigma[rows] = trees.predict(ex[rows])[:, 0]
        return np.maximum(np.exp(log_sigma), self._sigma_floor)

    # ------------------------------------------------------------------ per-curve core
    def _plan(self, config: tuple) -> "_ConfigPlan":
        """What prediction needs of one configuration, whatever the request shape (cached)."""
        plan = self._plan_cache.get(config)
        if plan is not None:
            return plan
        identity = config_identity(*config)
        lent = None
        if self._devices and hardware_id(config[0]) not in self._device_ids:
            lent = lending(config, self._devices, self._anchors.benchmarked_config, self._inferred)
        level, siblings, vendor_devices = config_novelty(identity[0], self._known_configs)
        plan = _ConfigPlan(identity, config_vector(*config, inferred=self._inferred), lent,
                           float(self._level_code[level]), float(siblings), float(vendor_devices))
        if len(self._plan_cache) >= STATE_CACHE_SIZE:
            self._plan_cache.clear()
        self._plan_cache[config] = plan
        return plan

    def _curve_block(self, configs_raw: list[tuple], ii: np.ndarray, oo: np.ndarray,
                     engine: str = "compiled") -> _CurveBlock:
        """Everything about distinct curves that does not depend on the batch size.

        ``configs_raw`` holds (hardware, num_devices, framework, model, precision, batch_kind)
        as given; what depends on the configuration alone comes from cached plans, features
        are built by the compiled kernel, trees run by the compiled evaluator (or ONNX Runtime).
        """
        n = len(configs_raw)
        cfg_rows, cfg_index = distinct(configs_raw)
        plans = [self._plan(c) for c in cfg_rows]
        row_plans = [plans[k] for k in cfg_index]
        a, b, c = np.empty(n), np.empty(n), np.empty(n)
        env, lo_b, hi_b = np.zeros(n), np.zeros(n), np.zeros(n)
        fitted = np.zeros(n, bool)
        cont = np.full((n, 5), np.nan)
        for i, plan in enumerate(row_plans):
            shape = (int(ii[i]), int(oo[i]))
            hit = (self._fitted.get((plan.identity, *shape))
                   or self._fitted.get((plan.identity[0], *shape)))
            if hit is not None:
                (a[i], b[i], c[i]), (env[i], lo_b[i], hi_b[i]), cont[i] = hit
                fitted[i] = True
        cfg = np.stack([p.cfg for p in plans])
        x = build_features(cfg, ii, oo, cfg_index=cfg_index)
        # a benchmarked curve ran at its largest measured batch, whatever the memory model says
        mem = memory_batch_limit(cfg, ii, oo, cfg_index)
        mem[fitted] = np.maximum(mem[fitted], hi_b[fitted].astype(np.int64))
        learn = np.flatnonzero(~fitted)
        if learn.size:
            def anchored(xx: np.ndarray, ids: list) -> np.ndarray:
                return self.raw_targets(xx, engine) + self._anchors.for_features(ids, xx)

            z = anchored(x[learn], [row_plans[i].identity for i in learn])
            # rows on unseen hardware borrow from known devices (transfer.py)
            lenders = [k for k, p in enumerate(plans) if p.lending is not None]
            if lenders:
                lent = {k: j for j, k in enumerate(lenders)}  # plan -> index among lendings
                unseen = [k for k, i in enumerate(learn) if cfg_index[i] in lent]
                z = blend_lent(z, np.array(unseen, np.int64), [plans[k].lending for k in lenders],
                               np.array([lent[cfg_index[learn[k]]] for k in unseen], np.int64),
                               ii[learn], oo[learn], anchored)
            b1, knee = roofline_batch1_knee(x[learn])
            a[learn], b[learn], c[learn] = targets_to_params(z, b1, knee)
        err_x = np.empty((n, len(FEATURE_NAMES) + len(SIM_FEATURES)))
        err_x[:, :len(FEATURE_NAMES)] = x
        sim = err_x[:, len(FEATURE_NAMES):]
        neighbour_distances(self._scaler.transform(x), self._reference, sim)
        sim[:, SIM_LEVEL] = [p.level for p in row_plans]
        sim[:, SIM_SIBLINGS] = [p.siblings for p in row_plans]
        sim[:, SIM_VENDOR] = [p.vendor_devices for p in row_plans]
        conf = np.where(fitted, 1.0, confidence(sim[:, 0], self._distance_scale))
        extra = extrapolation(self._ranges, ii, oo)  # the batch part is added per row
        return _CurveBlock(a, b, c, fitted, env, lo_b, hi_b, err_x, conf, extra, cont, mem)

    def _rows(self, block: _CurveBlock, codes: np.ndarray, bb: np.ndarray, oo: np.ndarray,
              engine: str = "compiled") -> dict[str, np.ndarray]:
        """Per-row predictions from per-curve blocks (curve index ``codes`` of each row)."""
        thpt = eval_curve(block.a[codes], block.b[codes], block.c[codes], bb)
        fit_row = block.fitted[codes]
        in_range = fit_row & (bb >= block.lo_b[codes]) & (bb <= block.hi_b[codes])
        beyond = fit_row & ~in_range & np.isfinite(block.cont[codes, 3])
        sigma = np.maximum(block.env[codes], self._sigma_floor)
        half = sigma.copy()
        if beyond.any():  # a served curve continues along its learned shape off its range
            rows = np.flatnonzero(beyond)
            k = block.cont[codes[rows]]
            below = bb[rows] < block.lo_b[codes[rows]]
            thpt[rows] = eval_curve(k[:, 0], k[:, 1], k[:, 2], bb[rows]) * np.where(
                below, k[:, 3], k[:, 4])
            edge = np.where(below, block.lo_b[codes[rows]], block.hi_b[codes[rows]])
            band = distance_band(np.log(bb[rows] / edge))
            sigma[rows] = np.maximum(sigma[rows], self._beyond_sigma[band])
            half[rows] = np.maximum(half[rows], self._beyond_half[band])
        thpt = np.maximum(thpt, T1_FLOOR * block.c[codes])  # fitted curves can dip off range
        need = np.flatnonzero(~in_range & ~beyond)
        if need.size:
            # the error model once per (curve, region of log batch between its split points)
            region = np.searchsorted(self._batch_breaks, np.log(bb[need]).astype(np.float32))
            pair = codes[need].astype(np.int64) * self._batch_reps.size + region
            _, first, inv = np.unique(pair, return_index=True, return_inverse=True)
            reps = self._batch_reps[region[first]]
            s = self._error_sigma_log(block.err_x[codes[need[first]]], reps, engine)[inv.reshape(-1)]
            sigma[need] = s
            h = half_width(self._half, block.err_x[codes[need], LEVEL_COLUMN], s, self._normalised)
            half[need] = np.maximum(np.where(fit_row[need], half[need], 0.0), h)
        # beyond the benchmarked request shapes and batch sizes (uncertainty.extrapolation)
        extra = block.extra[codes] + extrapolation(self._ranges, bb=bb)
        sigma, half = self._beyond_slopes.widen(sigma, half, extra)
        return {
            "throughput": thpt,
            "latency_s": oo * bb / thpt,
            "lower": thpt * np.exp(-half),
            "upper": thpt * np.exp(half),
            "expected_ape": expected_ape(sigma),
            "confidence": block.conf[codes],
            "fitted": fit_row,
            "memory_batch_limit": block.mem[codes],
        }

    # ------------------------------------------------------------------ Arrow batches
    def predict(self, data, engine: str = "compiled") -> pa.Table:
        """Predict every row of a workload table (canonical columns; throughput not needed).

        Accepts a ``pyarrow.Table``, ``RecordBatch``, ``RecordBatchReader``, a dict of columns
        or any object with the Arrow PyCapsule stream interface (for instance a polars
        DataFrame). The models run once per distinct (configuration, ii, oo) and the error
        model once per distinct (curve, batch size); the curve formula runs per row.

        Returns the input columns (as given: same order and types) followed by ``throughput`` (output tokens/s), ``latency_s``
        (output_tokens * batch_size / throughput), ``lower`` / ``upper`` (the interval at the
        predictor's coverage), ``expected_ape`` (%), ``confidence`` (0..1), ``basis``
        ("fitted" when that exact curve was benchmarked with plausible measurements, else
        "learned"; see :func:`served_as_fitted`) and ``memory_batch_limit`` (int64: the largest
        batch whose KV cache fits beside the weights, 0 when the weights alone do not fit; see
        :func:`ala_fast.features.memory_batch_limit`; a benchmarked curve's is at least its
        largest measured batch). An input
        ``throughput`` column is kept as ``measured_throughput``.

        A fitted curve answers with its fit inside its measured batch sizes and beyond them
        with its learned continuation scaled to meet the fit at the edge (see
        :mod:`ala_fast.continuation`). Intervals of learned predictions are split-conformal
        (calibrated on hold-out curves); a fitted curve inside its measured batch range gets the
        envelope of its own fit residuals, and outside that range the wider of that envelope
        and the continuation's interval for the distance from the range (the error model's
        interval for bundles without a continuation).
        """
        raw = as_table(data, "predict")
        table = validate(raw, require_throughput=False, where="predict")
        codes, first = group_codes(table, CURVE_KEY)
        keys = table.select(list(CURVE_KEY)).take(first).to_pydict()
        configs_raw = list(zip(*(keys[c] for c in _CONFIG_FIELDS)))
        block = self._curve_block(configs_raw, np.asarray(keys["input_tokens"], np.float64),
                                  np.asarray(keys["output_tokens"], np.float64), engine)
        bb = table.column("batch_size").to_numpy().astype(np.float64)
        oo = table.column("output_tokens").to_numpy().astype(np.float64)
        cols = self._rows(block, codes, bb, oo, engine)
        out = raw.rename_columns(  # the input as given (order, types), zero-copy
            ["measured_throughput" if n == "throughput" else n for n in raw.column_names])
        for name in ("throughput", "latency_s", "lower", "upper", "expected_ape", "confidence"):
            out = out.append_column(name, pa.array(cols[name]))
        basis = pa.DictionaryArray.from_arrays(
            pa.array(np.where(cols["fitted"], 0, 1).astype(np.int8)), _BASIS)
        out = out.append_column("basis", basis.cast(pa.string()))
        return out.append_column("memory_batch_limit", pa.array(cols["memory_batch_limit"]))

    @property
    def observed_ranges(self) -> dict[str, tuple[float, float]] | None:
        """(smallest, largest) input tokens, output tokens and batch size the bundle's training
        table benchmarked; None for bundles from before the ranges. Beyond them intervals widen
        (:attr:`beyond_slopes`, :func:`ala_fast.uncertainty.extrapolation`)."""
        if self._ranges is None:
            return None
        return {c: (float(np.exp(lo)), float(np.exp(hi)))
                for c, (lo, hi) in zip(RANGE_COLUMNS, self._ranges)}

    @property
    def beyond_slopes(self):
        """How intervals and ``expected_ape`` grow per log unit beyond :attr:`observed_ranges`
        at the current coverage (:class:`ala_fast.uncertainty.BeyondSlopes`)."""
        return self._beyond_slopes

    @property
    def inferred_devices(self) -> InferredDevices:
        """The devices the catalog does not know that this bundle describes from its own
        benchmarks (``device_inference``)."""
        return self._inferred

    def unrecognised_names(self, data) -> list[UnrecognisedName]:
        """The hardware, model, framework and precision names of a workload table (anything
        :meth:`predict` accepts) that the catalog does not recognise, each once with its row
        count and what prediction takes it as (:func:`ala_fast.names.unrecognised_names`;
        devices this bundle describes from its own benchmarks are listed as such)."""
        from .names import unrecognised_names

        table = validate(as_table(data, "unrecognised_names"), require_throughput=False,
                         where="unrecognised_names")
        return unrecognised_names(table, self._inferred)

    # ------------------------------------------------------------------ one workload
    def predict_one(self, hardware: str, num_devices: int, framework: str, model: str,
                    precision: str = "fp16", input_tokens: int = 1, output_tokens: int = 1,
                    batch_size: int = 1, batch_kind: str = "static",
                    engine: str = "compiled") -> Prediction:
        """Predict one workload (the scheduler hot path).

        The first call for a (configuration, ii, oo) runs the models (what depends on the
        configuration alone, such as its anchors, novelty level and, on unseen hardware, the
        devices it borrows from, is cached across request shapes); later calls with the same
        curve cost a dictionary lookup and the curve formula (the error model runs once per
        new batch size). No Arrow, no pandas.
        """
        state = self._state_cache.get((hardware, num_devices, framework, model, precision,
                                       input_tokens, output_tokens, batch_kind, engine))
        if state is None:
            state = self._new_state(hardware, num_devices, framework, model, precision,
                                    input_tokens, output_tokens, batch_kind, engine)
        if type(batch_size) is not int:
            batch_size = _positive_int(batch_size, "batch_size")
        elif batch_size <= 0:
            _positive_int(batch_size, "batch_size")
        return state.predict(batch_size, self)

    def _new_state(self, hardware, num_devices, framework, model, precision, input_tokens,
                   output_tokens, batch_kind, engine) -> "_CurveState":
        key = (hardware, num_devices, framework, model, precision, input_tokens, output_tokens,
               batch_kind, engine)
        for name, value in (("hardware", hardware), ("framework", framework), ("model", model),
                            ("precision", precision), ("batch_kind", batch_kind)):
            if not isinstance(value, str) or not value.strip():
                raise ValidationError(name, [0], "a non-empty string", "predict_one")
        if batch_kind not in BATCH_KINDS:
            raise ValidationError("batch_kind", [0], f"one of {BATCH_KINDS}", "predict_one")
        nd = _positive_int(num_devices, "num_devices")
        ii = _positive_int(input_tokens, "input_tokens")
        oo = _positive_int(output_tokens, "output_tokens")
        block = self._curve_block([(hardware, nd, framework, model, precision, batch_kind)],
                                  np.array([float(ii)]), np.array([float(oo)]), engine)
        state = _CurveState(block, float(oo), engine)
        if len(self._state_cache) >= STATE_CACHE_SIZE:
            self._state_cache.clear()
        self._state_cache[key] = state
        return state

    def curve(self, workload, batch_sizes, engine: str = "compiled") -> CurvePrediction:
        """Throughput and interval of one workload at many batch sizes (one model evaluation).

        ``workload``: a :class:`Workload`, a dict or keyword-compatible mapping (its
        batch_size, if any, is ignored).
        """
        w = _as_workload(workload)
        bb = np.asarray(batch_sizes)
        if bb.ndim != 1 or bb.size == 0:
            raise ValidationError("batch_size", [], "a non-empty 1-D sequence", "curve")
        bad = np.flatnonzero(~(bb > 0) | (bb != np.round(bb)))
        if bad.size:
            raise ValidationError("batch_size", bad, "whole numbers > 0", "curve")
        self.predict_one(w.hardware, w.num_devices, w.framework, w.model, w.precision,
                         w.input_tokens, w.output_tokens, 1, w.batch_kind, engine)
        state = self._state_cache[(w.hardware, w.num_devices, w.framework, w.model, w.precision,
                                   w.input_tokens, w.output_tokens, w.batch_kind, engine)]
        bb = bb.astype(np.float64)
        cols = self._rows(state.block, np.zeros(bb.size, np.int64), bb,
                          np.full(bb.size, state.oo), engine)
        return CurvePrediction(bb.astype(np.int64), cols["throughput"], cols["latency_s"],
                               cols["lower"], cols["upper"], cols["expected_ape"],
                               float(state.block.conf[0]),
                               "fitted" if state.block.fitted[0] else "learned", state.mem)

    def best_batch_size(self, workload, max_latency_s: float | None = None,
                        max_batch_size: int = 256, use_upper_bound: bool = False,
                        within_memory: bool = True,
                        engine: str = "compiled") -> tuple[int, Prediction] | None:
        """The batch size in 1..max_batch_size with the highest predicted throughput whose
        predicted latency (or, with ``use_upper_bound``, its pessimistic bound
        ``output_tokens * batch / lower``) stays within ``max_latency_s`` and, with
        ``within_memory`` (the default), whose KV cache fits (``memory_batch_limit``); None if
        none does (for instance when the weights alone do not fit)."""
        if max_batch_size < 1:
            raise ValidationError("max_batch_size", [0], "an integer >= 1", "best_batch_size")
        cp = self.curve(workload, np.arange(1, int(max_batch_size) + 1), engine)
        # latency = oo * bb / throughput, so its pessimistic bound is oo * bb / lower
        latency = cp.latency_s * cp.throughput / cp.lower if use_upper_bound else cp.latency_s
        ok = np.ones(cp.batch_size.size, bool) if max_latency_s is None else latency <= max_latency_s
        if within_memory:
            ok &= cp.batch_size <= cp.memory_batch_limit
        if not ok.any():
            return None
        i = int(np.flatnonzero(ok)[np.argmax(cp.throughput[ok])])
        return int(cp.batch_size[i]), Prediction(
            float(cp.throughput[i]), float(cp.latency_s[i]), float(cp.lower[i]),
            float(cp.upper[i]), float(cp.expected_ape[i]), cp.confidence, cp.basis,
            cp.memory_batch_limit)

    def benchmark_next(self, candidates, k: int, *, seed: int = 0, steps: int = 3000) -> pa.Table:
        """The ``k`` candidate curves worth benchmarking next (see :mod:`ala_fast.planning`)."""
        from .planning import benchmark_next

        return benchmark_next(self, candidates, k, seed=seed, steps=steps)

    def warmup(self) -> "Predictor":
        """Compile (or load from Numba's cache) every kernel the prediction paths use."""
        w = {"hardware": ["H100", "x"], "num_devices": [1, 2], "framework": ["vllm", "y"],
             "model": ["llama-2-7b", "z"], "input_tokens": [128, 7], "output_tokens": [128, 3],
             "batch_size": [8, 5000]}
        self.predict(pa.table(w))
        self._trees.predict(np.zeros((PARALLEL_ROWS, self._trees.n_features), np.float32))
        self._error_trees.predict(np.zeros((PARALLEL_ROWS, self._error_trees.n_features), np.float32))
        self.predict_one("H100", 1, "vllm", "llama-2-7b", "fp16", 100, 100, 4)
        self.curve(Workload("H100", 1, "vllm", "llama-2-7b", "fp16", 100, 100), [1, 2])
        self._state_cache.clear()
        return self

    def __repr__(self) -> str:
        m = self.manifest
        return (f"Predictor({m.get('training', {}).get('curves', '?')} curves, "
                f"{self.n_fitted} fitted, {self.n_implausible} implausible not served, "
                f"loss={m.get('loss')}, seed={m.get('seed')})")


def served_as_fitted(curves: pa.Table, min_points: int) -> np.ndarray:
    """Which curves of a bundle's curve table answer with their own fit (``basis = "fitted"``):
    at least ``min_points`` batch sizes and no measurement above the roofline ceiling
    (``above_roofline``; bundles without that column trust every long enough curve)."""
    served = curves.column("n_points").to_numpy() >= min_points
    if "above_roofline" in curves.column_names:
        served &= ~curves.column("above_roofline").to_numpy(zero_copy_only=False)
    return served


def load(path: str | Path | None = None, coverage: float = 0.9) -> Predictor:
    """Load a model bundle (None: the default bundle shipped with the package); intervals are
    calibrated for ``coverage`` (0.9: a 90% interval)."""
    path = default_bundle_path() if path is None else Path(path)
    manifest, files = read_bundle(path)
    return Predictor(manifest, files, coverage=coverage)

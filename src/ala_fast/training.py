"""Training the whole pipeline on a canonical table."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .augment import BoostingParams, export_onnx
from .bundle import dependency_versions, platform_fingerprint, table_digest, table_to_ipc
from .curves import DEFAULT_LOSS, PUBLISHED_BOUNDS, fit_curves
from .features import FEATURE_NAMES, N_FEATURES
from .continuation import (
    DISTANCE_EDGES, band_quantiles, continuation_prior, continuation_targets, holdout,
)
from .learner import (
    MIN_POINTS_TRAIN, STACK_DEVICE_CLOSENESS, STACK_PRIOR, anchor_only, curve_set, fit_learned, trainable,
)
from .grouping import group_codes, segments
from .predictor import (
    BEYOND_FILE, CALIBRATION_FILE, CONTINUATION_COLUMNS, CONTINUATION_FILE, CURVES_FILE,
    ERROR_ONNX, PARAMS_ONNX, REFERENCE_FILE, Predictor,
)
from .uncertainty import (
    ERROR_FEATURE_NAMES, ERROR_OUTPUTS, LEVELS, NORMALISED, RANGE_COLUMNS, SIGMA_FLOOR,
    fit_uncertainty, level_quantiles, observed_ranges,
)
from .readers import concat_tables
from .schema import CANONICAL_SCHEMA, CURVE_KEY, validate
from .targets import TARGET_NAMES, targets_to_params


def train(table: pa.Table, seed: int = 0, loss: str = DEFAULT_LOSS,
          boosting: BoostingParams | None = None, coverage: float = 0.9,
          progress: bool | None = False, n_jobs: int | None = 1) -> Predictor:
    """Fit curves, train the parameter model, export it to ONNX; returns a :class:`Predictor`.

    Deterministic for a given table, seed and dependency versions, whatever ``n_jobs`` (worker
    processes for the uncertainty's hold-out rounds; -1: every core).
    """
    table = validate(table, require_throughput=True, where="train")
    table = concat_tables([table])  # canonical columns only, no reader metadata
    params = fit_curves(table, loss=loss)
    curves = curve_set(params)
    idx = trainable(curves)
    if idx.size < 2:
        from .errors import FitError

        raise FitError(f"train: need at least 2 curves with >= {MIN_POINTS_TRAIN} batch sizes, "
                       f"got {idx.size}")
    boosting = boosting or BoostingParams()
    known = np.union1d(idx, anchor_only(curves))
    curves = curves.described_from(known)  # benchmarked devices the catalog does not know
    idx, known = idx[curves.plausible[idx]], known[curves.plausible[known]]
    learned = fit_learned(curves, known, seed, boosting)
    onnx_bytes = export_onnx(learned.models, N_FEATURES, name="ala_fast_params")
    codes, _ = group_codes(table, CURVE_KEY)
    rows = (codes, table.column("batch_size").to_numpy().astype(np.float64),
            table.column("throughput").to_numpy())
    unc = fit_uncertainty(curves, rows, idx, seed, progress=progress, known=learned.anchored,
                          n_jobs=n_jobs, boosting=boosting)
    error_onnx = export_onnx(unc.error_models, len(ERROR_FEATURE_NAMES), name="ala_fast_error")
    reference = pa.table({f"v{j}": unc.scaler.transform(curves.x[idx])[:, j]
                          for j in range(N_FEATURES)}).append_column("curve", pa.array(idx))
    calibration = pa.table({"score": unc.calibration_scores,
                            "level": pa.array(unc.calibration_levels, pa.int8())})
    resid = np.full((len(curves), len(TARGET_NAMES)), np.nan)
    resid[learned.anchored] = learned.residuals
    is_train = np.zeros(len(curves), bool)
    is_train[idx] = True
    is_anchor = np.zeros(len(curves), bool)
    is_anchor[learned.anchored] = True
    anchor_weight = np.zeros(len(curves))
    anchor_weight[learned.anchored] = learned.weights
    curves_table = params.replace_schema_metadata(None)
    # with the flags of curves far above their described device's roofline (described_from)
    curves_table = curves_table.set_column(
        curves_table.schema.get_field_index("above_roofline"), "above_roofline",
        pa.array(~curves.plausible))
    for j, name in enumerate(TARGET_NAMES):
        curves_table = curves_table.append_column(f"residual_{name}", pa.array(resid[:, j]))
    curves_table = curves_table.append_column("trainable", pa.array(is_train))
    curves_table = curves_table.append_column("anchor", pa.array(is_anchor))
    curves_table = curves_table.append_column("anchor_weight", pa.array(anchor_weight))
    # served curves continue beyond their measured batch sizes along the learned shape
    order, offsets = segments(codes, rows[1])  # each curve's rows by batch size
    points = [order[offsets[i]:offsets[i + 1]] for i in idx]
    batches, throughputs = [rows[1][r] for r in points], [rows[2][r] for r in points]
    prior = continuation_prior(curves, idx, learned.anchored, seed, boosting)
    cont = np.full((len(curves), 3), np.nan)
    cont[idx] = np.column_stack(targets_to_params(
        continuation_targets(curves, idx, prior, batches, throughputs),
        curves.roof_batch1[idx], curves.roof_knee[idx]))
    beyond = holdout(curves, idx, prior, batches, throughputs, loss)
    beyond_table = pa.table({"score": beyond.scores(), "distance": beyond.distance})
    beyond_q90 = band_quantiles(beyond_table.column("score").to_numpy(), beyond.distance, 0.9)
    for j, name in enumerate(CONTINUATION_COLUMNS):
        curves_table = curves_table.append_column(name, pa.array(cont[:, j]))
    max_ape = np.minimum(params.column("max_ape").to_numpy(), 99.0)
    curves_table = curves_table.append_column("fit_log_err", pa.array(-np.log1p(-max_ape / 100)))
    keys = params.select(["hardware", "model", "framework"]).to_pydict()
    manifest = {
        "library": "ala_fast",
        "feature_names": list(FEATURE_NAMES),
        "target_names": list(TARGET_NAMES),
        "loss": loss,
        "seed": seed,
        "min_points_fitted": MIN_POINTS_TRAIN,
        "bounds": vars(PUBLISHED_BOUNDS),
        "boosting": {k: v for k, v in vars(boosting).items()},
        "versions": dependency_versions(),
        "platform": platform_fingerprint(),
        "training": {
            "digest_sha256": table_digest(table.select(CANONICAL_SCHEMA.names)),
            "rows": table.num_rows,
            "curves": len(curves),
            "curves_trained": int(idx.size),
            "curves_anchoring": int(learned.anchored.size),
            "hardware": sorted(set(keys["hardware"])),
            "models": sorted(set(keys["model"])),
            "frameworks": sorted(set(keys["framework"])),
        },
        "inferred_hardware": curves.inferred.to_json(),
        "anchoring": {"stack_prior": STACK_PRIOR,
                      "stack_device_closeness": STACK_DEVICE_CLOSENESS},
        "uncertainty": {
            "error_feature_names": list(ERROR_FEATURE_NAMES),
            "scaler_mean": unc.scaler.mean.tolist(),
            "scaler_scale": unc.scaler.scale.tolist(),
            "distance_scale": unc.distance_scale,
            "sigma_floor": SIGMA_FLOOR,
            # request shapes and batch sizes benchmarked: beyond them intervals widen
            "observed_ranges": dict(zip(RANGE_COLUMNS, observed_ranges(
                *(table.column(c).to_numpy() for c in RANGE_COLUMNS)).tolist())),
            "error_samples": int(unc.samples.curve.size),
            "calibration_rows": int(unc.calibration_scores.size),
            "calibration_rows_per_level": dict(zip(LEVELS, np.bincount(
                unc.calibration_levels.astype(np.int64), minlength=len(LEVELS)).tolist())),
            "normalised_scores": dict(zip(LEVELS, NORMALISED)),
            "error_outputs": list(ERROR_OUTPUTS),
        },
        "continuation": {
            "holdout_rows": int(beyond.pred.size),
            "distance_edges": list(DISTANCE_EDGES),
        },
        "metrics": {
            "continuation_q90": [float(v) if np.isfinite(v) else None for v in beyond_q90],
            "calibration_q90": dict(zip(
                LEVELS, level_quantiles(unc.calibration_scores, unc.calibration_levels, 0.9).tolist())),
        },
    }
    files = {PARAMS_ONNX: onnx_bytes, CURVES_FILE: table_to_ipc(curves_table),
             ERROR_ONNX: error_onnx, REFERENCE_FILE: table_to_ipc(reference),
             CALIBRATION_FILE: table_to_ipc(calibration),
             BEYOND_FILE: table_to_ipc(unc.beyond.to_table()),
             CONTINUATION_FILE: table_to_ipc(beyond_table)}
    predictor = Predictor(manifest, files, coverage=coverage)
    predictor.sklearn_models = learned.models  # kept for parity checks; not saved
    predictor.sklearn_error_models = unc.error_models
    return predictor

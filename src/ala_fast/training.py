"""Training the whole pipeline on a canonical table."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .augment import BoostingParams, export_onnx
from .bundle import dependency_versions, table_digest, table_to_ipc
from .curves import DEFAULT_LOSS, PUBLISHED_BOUNDS, fit_curves
from .features import FEATURE_NAMES, N_FEATURES
from .learner import MIN_POINTS_TRAIN, curve_set, fit_learned, trainable
from .predictor import CURVES_FILE, PARAMS_ONNX, Predictor
from .readers import concat_tables
from .schema import CANONICAL_SCHEMA, validate
from .targets import TARGET_NAMES


def train(table: pa.Table, seed: int = 0, loss: str = DEFAULT_LOSS,
          boosting: BoostingParams | None = None) -> Predictor:
    """Fit curves, train the parameter model, export it to ONNX; returns a :class:`Predictor`.

    Deterministic for a given table, seed and dependency versions.
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
    learned = fit_learned(curves, idx, seed, boosting)
    onnx_bytes = export_onnx(learned.models, N_FEATURES, name="ala_fast_params")
    resid = np.full((len(curves), len(TARGET_NAMES)), np.nan)
    resid[idx] = learned.residuals
    is_train = np.zeros(len(curves), bool)
    is_train[idx] = True
    curves_table = params.replace_schema_metadata(None)
    for j, name in enumerate(TARGET_NAMES):
        curves_table = curves_table.append_column(f"residual_{name}", pa.array(resid[:, j]))
    curves_table = curves_table.append_column("trainable", pa.array(is_train))
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
        "training": {
            "digest_sha256": table_digest(table.select(CANONICAL_SCHEMA.names)),
            "rows": table.num_rows,
            "curves": len(curves),
            "curves_trained": int(idx.size),
            "hardware": sorted(set(keys["hardware"])),
            "models": sorted(set(keys["model"])),
            "frameworks": sorted(set(keys["framework"])),
        },
        "metrics": {},
    }
    files = {PARAMS_ONNX: onnx_bytes, CURVES_FILE: table_to_ipc(curves_table)}
    predictor = Predictor(manifest, files)
    predictor.sklearn_models = learned.models  # kept for parity checks; not saved
    return predictor

"""The learned parameter model: curve features -> well-scaled targets -> (a, b, c).

Shared by training (:mod:`training`), evaluation (:mod:`protocols`) and, for the feature and
target definitions, prediction (:mod:`predictor`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .features import build_features, config_matrix, roofline_batch1_knee
from .schema import CURVE_KEY
from .targets import params_to_targets, targets_to_params

MIN_POINTS_TRAIN = 3  # curves with fewer batch sizes do not pin down (a, b, c)


@dataclass
class CurveSet:
    """Benchmarked curves with their features (rows aligned with ``keys``)."""

    keys: pa.Table  # CURVE_KEY columns
    x: np.ndarray  # features (float64)
    roof_batch1: np.ndarray
    roof_knee: np.ndarray
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    n_points: np.ndarray
    plausible: np.ndarray  # no measurement above the roofline ceiling (see fit_curves)

    def __len__(self) -> int:
        return self.x.shape[0]

    def take(self, idx: np.ndarray) -> "CurveSet":
        return CurveSet(self.keys.take(pa.array(idx)), self.x[idx], self.roof_batch1[idx],
                        self.roof_knee[idx], self.a[idx], self.b[idx], self.c[idx],
                        self.n_points[idx], self.plausible[idx])

    def targets(self) -> np.ndarray:
        return params_to_targets(self.a, self.b, self.c, self.roof_batch1, self.roof_knee)


def curve_set(params: pa.Table) -> CurveSet:
    """Features and parameters of every curve of a parameter database (``fit_curves`` output)."""
    cfg = config_matrix(*(params.column(c).to_pylist() for c in (
        "hardware", "num_devices", "framework", "model", "precision", "batch_kind")))
    ii = params.column("input_tokens").to_numpy().astype(np.float64)
    oo = params.column("output_tokens").to_numpy().astype(np.float64)
    x = build_features(cfg, ii, oo)
    b1, knee = roofline_batch1_knee(x)
    return CurveSet(
        keys=params.select(list(CURVE_KEY)), x=x, roof_batch1=b1,
        roof_knee=knee, a=params.column("a").to_numpy(), b=params.column("b").to_numpy(),
        c=params.column("c").to_numpy(), n_points=params.column("n_points").to_numpy(),
        plausible=~params.column("above_roofline").to_numpy(zero_copy_only=False)
        if "above_roofline" in params.column_names else np.ones(params.num_rows, bool),
    )


def trainable(curves: CurveSet) -> np.ndarray:
    """Curves the models learn from: >= MIN_POINTS_TRAIN batch sizes and physically plausible."""
    return np.flatnonzero((curves.n_points >= MIN_POINTS_TRAIN) & curves.plausible)


def params_from_outputs(z: np.ndarray, roof_batch1, roof_knee):
    return targets_to_params(z, roof_batch1, roof_knee)


# --------------------------------------------------------------------------- local anchoring
SIBLING_PRIOR = 0.2  # pseudo-weight of "no correction" against the sibling curves
HARDWARE_PRIOR = 2.0  # pseudo-count shrinking the hardware-level correction


def curve_config_keys(keys: pa.Table) -> list[tuple]:
    from .catalog import config_key

    cols = [keys.column(c).to_pylist() for c in ("hardware", "num_devices", "framework", "model",
                                                  "precision", "batch_kind")]
    return [config_key(*row) for row in zip(*cols)]


class Anchors:
    """Corrections of the pooled model from the benchmarked curves nearest to a query.

    The pooled trees describe every configuration through shared features; what they miss about
    one configuration shows up as the residual ``z - z_hat`` of its benchmarked curves. A query
    whose configuration was benchmarked at other request shapes gets the residuals of those
    sibling curves, weighted by closeness in (log ii, log oo); a query on known hardware without
    siblings gets the hardware's mean residual, shrunk toward 0.
    """

    def __init__(self, config_keys: list[tuple], log_ii: np.ndarray, log_oo: np.ndarray,
                 residuals: np.ndarray) -> None:
        self.by_config: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        groups: dict[tuple, list[int]] = {}
        for i, key in enumerate(config_keys):
            groups.setdefault(key, []).append(i)
        for key, idx in groups.items():
            idx = np.array(idx)
            self.by_config[key] = (log_ii[idx], log_oo[idx], residuals[idx])
        hw_sum: dict[str, np.ndarray] = {}
        hw_n: dict[str, int] = {}
        for i, key in enumerate(config_keys):
            hw_sum[key[0]] = hw_sum.get(key[0], 0) + residuals[i]
            hw_n[key[0]] = hw_n.get(key[0], 0) + 1
        self.by_hardware = {h: hw_sum[h] / (hw_n[h] + HARDWARE_PRIOR) for h in hw_sum}

    def correction(self, config: tuple, log_ii: float, log_oo: float) -> np.ndarray:
        sib = self.by_config.get(config)
        if sib is not None:
            w = np.exp(-np.abs(sib[0] - log_ii) - np.abs(sib[1] - log_oo))
            return (w[:, None] * sib[2]).sum(axis=0) / (w.sum() + SIBLING_PRIOR)
        return self.by_hardware.get(config[0], np.zeros(3))

    def corrections(self, configs: list[tuple], log_ii: np.ndarray, log_oo: np.ndarray) -> np.ndarray:
        return np.array([self.correction(k, a, b) for k, a, b in zip(configs, log_ii, log_oo)]
                        ).reshape(len(configs), 3)


@dataclass
class LearnedParams:
    """Boosted trees (scikit-learn, for training and evaluation) plus their anchors."""

    models: list
    anchors: Anchors
    residuals: np.ndarray  # in-sample residuals of the training curves (aligned with train idx)

    def predict_targets(self, x: np.ndarray, configs: list[tuple]) -> np.ndarray:
        from .augment import predict_sklearn

        z = predict_sklearn(self.models, x)
        return z + self.anchors.corrections(configs, np.log(x[:, 0]), np.log(x[:, 1]))


def fit_learned(curves: CurveSet, train: np.ndarray, seed: int, boosting=None) -> LearnedParams:
    from .augment import fit_boosted, predict_sklearn

    z = curves.targets()[train]
    models = fit_boosted(curves.x[train], z, seed, boosting)
    resid = z - predict_sklearn(models, curves.x[train])
    configs = curve_config_keys(curves.keys.take(pa.array(train)))
    anchors = Anchors(configs, np.log(curves.x[train, 0]), np.log(curves.x[train, 1]), resid)
    return LearnedParams(models, anchors, resid)

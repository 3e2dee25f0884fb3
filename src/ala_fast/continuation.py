"""Benchmarked curves beyond their measured batch sizes: a learned continuation and its
calibrated interval.

A fit of ``c - a*exp(-b*bb)`` to a few batch sizes pins the curve where it was measured and
barely constrains it beyond (the plateau ``c`` of a sweep that never saturated is a guess). The
pooled model knows how such curves continue. Each served curve gets

- a *prior*: the learned targets from a model that never saw it (its P1 fold left out, its
  configuration's other curves anchoring it), :func:`continuation_prior`;
- its *continuation*: the prior moved toward the curve's own measurements by the ridge fit that
  anchors short curves (:func:`learner.short_curve_residuals`), :func:`continuation_targets`,
  which the predictor scales to meet the fit at the edge of the measured range
  (:func:`continuation_scales`);
- an *interval*: split-conformal on hold-outs of the same rule (:func:`holdout`: each curve of
  >= 4 batch sizes known only at its smaller half, continued from that half over the larger
  one), one score set per distance band ``|log(bb / edge)|`` (``DISTANCE_EDGES``), quantiles
  made non-decreasing with distance (:func:`band_quantiles`). The error model is not used
  there: a benchmarked curve is its own nearest reference (distance 0), a case its training
  rounds never show, and its intervals beyond the range covered 45% at a nominal 90%
  (TensorRT-LLM, P2).

One definition for training (bundle), evaluation (P2) and prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .curves import DEFAULT_LOSS
from .learner import CurveSet, curve_configs, fit_learned, short_curve_residuals

#: a curve split in halves needs >= 2 points in each (P2's rule, evaluate.MIN_POINTS_EVAL)
MIN_POINTS_HOLDOUT = 4
#: distance bands of |log(bb / nearest measured edge)|: up to 2x, 2x-4x, beyond 4x
DISTANCE_EDGES = (float(np.log(2.0)), float(np.log(4.0)))


def continuation_prior(curves: CurveSet, curve_idx: np.ndarray, known: np.ndarray, seed: int,
                       boosting=None) -> np.ndarray:
    """Learned targets of each curve of ``curve_idx`` from a model fitted on ``known`` without
    that curve's P1 fold (``protocols.folds_p1`` of ``curve_idx``, seeded)."""
    from .protocols import folds_p1

    curve_idx = np.asarray(curve_idx, np.int64)
    z = np.empty((curve_idx.size, 3))
    fold = folds_p1(curves.keys.take(pa.array(curve_idx)), seed)
    configs = curve_configs(curves.keys)
    for f in np.unique(fold):
        out = curve_idx[fold == f]
        learned = fit_learned(curves, np.setdiff1d(known, out), seed, boosting)
        z[fold == f] = learned.predict_targets(curves.x[out], [configs[i] for i in out])
    return z


def continuation_targets(curves: CurveSet, curve_idx: np.ndarray, prior: np.ndarray,
                         batches: list[np.ndarray], throughputs: list[np.ndarray]) -> np.ndarray:
    """The prior (rows aligned with ``curve_idx``) moved toward each curve's measured points
    (``batches`` / ``throughputs``) by the short-curve ridge fit."""
    curve_idx = np.asarray(curve_idx, np.int64)
    return prior + short_curve_residuals(prior, curves.roof_batch1[curve_idx],
                                         curves.roof_knee[curve_idx], batches, throughputs)


def continuation_scales(fit_abc: tuple, cont_abc: tuple, lo: np.ndarray,
                        hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Factors that make the continuation equal the fitted curve at the smallest (``lo``) and
    largest (``hi``) measured batch size: below ``lo`` the prediction is
    ``continuation(bb) * s_lo``, above ``hi`` ``continuation(bb) * s_hi``."""
    from .curves import evaluate as eval_curve

    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    return tuple(eval_curve(*fit_abc, edge) / np.maximum(eval_curve(*cont_abc, edge), 1e-300)
                 for edge in (lo, hi))


@dataclass
class Holdout:
    """Rows of the larger halves, predicted from the smaller ones (one row per batch size)."""

    curve: np.ndarray  # position in the ``curve_idx`` given to :func:`holdout`
    pred: np.ndarray
    actual: np.ndarray
    distance: np.ndarray  # log(bb / largest batch of the known half)

    def scores(self) -> np.ndarray:
        return np.abs(np.log(self.pred / self.actual))


def holdout(curves: CurveSet, curve_idx: np.ndarray, prior: np.ndarray,
            batches: list[np.ndarray], throughputs: list[np.ndarray],
            loss: str = DEFAULT_LOSS) -> Holdout:
    """P2 as the predictor answers it, for the curves of ``curve_idx`` with >= 4 measured
    points (``batches`` sorted ascending, ``prior`` from :func:`continuation_prior`).

    Each curve is known at its smaller ceil(n/2) batch sizes: a half of >= ``MIN_POINTS_TRAIN``
    is served as fitted and continues from its largest batch along the continuation fitted to
    the half; a shorter half is a short curve, answered by that continuation itself.
    """
    from .curves import evaluate as eval_curve, fit_segments
    from .learner import MIN_POINTS_TRAIN
    from .targets import T1_FLOOR, targets_to_params

    curve_idx = np.asarray(curve_idx, np.int64)
    use = [j for j, b in enumerate(batches) if np.asarray(b).size >= MIN_POINTS_HOLDOUT]
    if not use:
        empty = np.zeros(0)
        return Holdout(np.zeros(0, np.int64), empty, empty, empty)
    half = [(np.asarray(batches[j]).size + 1) // 2 for j in use]
    known_b = [np.asarray(batches[j], np.float64)[:h] for j, h in zip(use, half)]
    known_y = [np.asarray(throughputs[j], np.float64)[:h] for j, h in zip(use, half)]
    sub = curve_idx[use]
    z = continuation_targets(curves, sub, prior[use], known_b, known_y)
    cont = targets_to_params(z, curves.roof_batch1[sub], curves.roof_knee[sub])
    sizes = np.array(half)
    fit = fit_segments(np.concatenate(known_b), np.concatenate(known_y),
                       np.concatenate([[0], np.cumsum(sizes)]), loss)
    hi = np.array([b[-1] for b in known_b])
    _, s_hi = continuation_scales((fit[:, 0], fit[:, 1], fit[:, 2]), cont,
                                  np.array([b[0] for b in known_b]), hi)
    out_c, out_p, out_a, out_d = [], [], [], []
    for k, (j, h) in enumerate(zip(use, half)):
        bb = np.asarray(batches[j], np.float64)[h:]
        p = eval_curve(cont[0][k], cont[1][k], cont[2][k], bb)
        if h >= MIN_POINTS_TRAIN:
            p = np.maximum(p * s_hi[k], T1_FLOOR * fit[k, 2])
        out_c.append(np.full(bb.size, j))
        out_p.append(p)
        out_a.append(np.asarray(throughputs[j], np.float64)[h:])
        out_d.append(np.log(bb / hi[k]))
    return Holdout(np.concatenate(out_c), np.concatenate(out_p), np.concatenate(out_a),
                   np.concatenate(out_d))


def distance_band(distance: np.ndarray) -> np.ndarray:
    """Band index (0 .. len(DISTANCE_EDGES)) of ``|log(bb / edge)|`` distances."""
    return np.searchsorted(np.asarray(DISTANCE_EDGES), np.abs(distance), side="left")


def band_quantiles(scores: np.ndarray, distance: np.ndarray, coverage: float) -> np.ndarray:
    """Conformal quantile of the scores of each distance band, made non-decreasing with
    distance (a farther query never gets a narrower interval); a band with too few scores
    takes the quantile of itself and every farther band (inf if still too few)."""
    from .uncertainty import conformal_quantile

    band = distance_band(distance)
    q = np.array([conformal_quantile(scores[band == b], coverage)
                  for b in range(len(DISTANCE_EDGES) + 1)])
    for b in range(q.size):
        if not np.isfinite(q[b]):
            q[b] = conformal_quantile(scores[band >= b], coverage)
    return np.maximum.accumulate(q)


def band_typical_error(scores: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Median score per distance band (the ``sigma`` behind ``expected_ape``), non-decreasing;
    NaN-free: an empty band takes the pooled median of itself and every farther band."""
    band = distance_band(distance)
    out = np.zeros(len(DISTANCE_EDGES) + 1)
    for b in range(out.size):
        s = scores[band == b]
        if s.size == 0:
            s = scores[band >= b]
        out[b] = np.median(s) if s.size else 0.0
    return np.maximum.accumulate(out)

"""Benchmarked curves beyond their measured batch sizes: the learned continuation, its
hold-outs and its calibrated interval (continuation.py), against plain references."""

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ala_fast.augment import BoostingParams
from ala_fast.continuation import (
    DISTANCE_EDGES, band_quantiles, band_typical_error, continuation_prior, continuation_targets,
    continuation_scales, distance_band, holdout,
)
from ala_fast.curves import evaluate as eval_curve, fit_curves
from ala_fast.learner import anchor_only, curve_set, trainable
from ala_fast.protocols import folds_p1
from ala_fast.readers import concat_tables
from ala_fast.targets import targets_to_params

QUICK = BoostingParams(n_estimators=60)


@pytest.fixture(scope="module")
def h100_l40s(trtllm):
    mask = pc.is_in(trtllm.column("hardware"), pa.array(["H100 80GB HBM3", "L40S"]))
    return curve_set(fit_curves(concat_tables([trtllm.filter(mask)])))


def _on(abc, bb):
    a, b, c = (np.full(np.size(bb), v) for v in abc)
    return eval_curve(a, b, c, np.asarray(bb, np.float64))


def test_prior_never_sees_its_own_curve_and_points_on_it_leave_it(h100_l40s):
    """Tripling one curve's fitted plateau (what the trees and anchors would learn from it)
    leaves its own prior bit for bit and moves curves of other folds; points lying on the
    prior leave the continuation at the prior; points off it move it."""
    curves = h100_l40s
    idx = trainable(curves)
    known = np.union1d(idx, anchor_only(curves))
    prior = continuation_prior(curves, idx, known, seed=0, boosting=QUICK)
    k = 3
    bent = dataclasses.replace(curves, c=curves.c.copy(), a=curves.a.copy())
    bent.c[idx[k]] *= 3.0
    bent.a[idx[k]] *= 3.0
    prior_bent = continuation_prior(bent, idx, known, seed=0, boosting=QUICK)
    assert np.array_equal(prior_bent[k], prior[k])
    fold = folds_p1(curves.keys.take(pa.array(idx)), 0)
    assert np.abs(prior_bent[fold != fold[k]] - prior[fold != fold[k]]).max() > 1e-3
    bb = [np.array([1.0, 8.0, 64.0])] * idx.size
    a, b, c = targets_to_params(prior, curves.roof_batch1[idx], curves.roof_knee[idx])
    on_prior = [_on((a[j], b[j], c[j]), bb[0]) for j in range(idx.size)]
    np.testing.assert_allclose(continuation_targets(curves, idx, prior, bb, on_prior), prior,
                               atol=1e-6)
    own = [_on((curves.a[i], curves.b[i], curves.c[i]), bb[0]) for i in idx]
    assert np.abs(continuation_targets(curves, idx, prior, bb, own) - prior).max() > 1e-2


def test_scales_meet_the_fit_at_the_edges():
    rng = np.random.default_rng(0)
    fit = tuple(rng.uniform(lo, hi, 20) for lo, hi in ((100, 900), (0.01, 0.5), (1000, 2000)))
    cont = tuple(v * rng.uniform(0.7, 1.3, 20) for v in fit)
    lo, hi = rng.integers(1, 8, 20).astype(float), rng.integers(16, 512, 20).astype(float)
    s_lo, s_hi = continuation_scales(fit, cont, lo, hi)
    for edge, s in ((lo, s_lo), (hi, s_hi)):
        np.testing.assert_allclose(eval_curve(*cont, edge) * s, eval_curve(*fit, edge), rtol=1e-12)


def test_holdout_predicts_the_larger_half_from_the_smaller(h100_l40s):
    """One row per batch size of each larger half, at positive distance from the known half's
    largest batch; a curve that is exactly its own continuation is predicted exactly; curves of
    fewer than 4 points give no rows."""
    curves = h100_l40s
    idx = trainable(curves)[:30]
    prior = continuation_prior(curves, idx, np.union1d(trainable(curves), anchor_only(curves)),
                               seed=0, boosting=QUICK)
    a, b, c = targets_to_params(prior, curves.roof_batch1[idx], curves.roof_knee[idx])
    sizes = [3, 4, 5, 8] * 8
    batches = [np.geomspace(1, 256, n).round() for n in sizes[:idx.size]]
    exact = [_on((a[j], b[j], c[j]), bb) for j, bb in enumerate(batches)]
    h = holdout(curves, idx, prior, batches, exact)
    expected_rows = sum(n - (n + 1) // 2 for n in sizes[:idx.size] if n >= 4)
    assert h.pred.size == expected_rows and (h.distance > 0).all()
    assert not np.isin(np.flatnonzero(np.array(sizes[:idx.size]) < 4), h.curve).any()
    np.testing.assert_allclose(h.pred, h.actual, rtol=1e-4)
    for j in np.unique(h.curve):
        n = batches[j].size
        np.testing.assert_array_equal(h.actual[h.curve == j], exact[j][(n + 1) // 2:])
        np.testing.assert_allclose(h.distance[h.curve == j],
                                   np.log(batches[j][(n + 1) // 2:] / batches[j][(n + 1) // 2 - 1]))


def _conformal(scores, coverage):
    s = np.sort(scores)
    r = int(np.ceil((s.size + 1) * coverage))
    return np.inf if r > s.size else s[r - 1]


def test_band_quantiles_against_a_brute_force_reference():
    rng = np.random.default_rng(1)
    # the edges themselves belong to the nearer band
    d = np.concatenate([rng.uniform(0, 3, 400), DISTANCE_EDGES])
    scores = rng.exponential(0.05, d.size) * (1 + d)
    band = np.array([0 if x <= DISTANCE_EDGES[0] else 1 if x <= DISTANCE_EDGES[1] else 2
                     for x in d])
    np.testing.assert_array_equal(distance_band(d), band)
    np.testing.assert_array_equal(distance_band(-d), band)  # below the range: same distance
    ref = np.maximum.accumulate([_conformal(scores[band == b], 0.9) for b in range(3)])
    np.testing.assert_array_equal(band_quantiles(scores, d, 0.9), ref)
    med = np.maximum.accumulate([np.median(scores[band == b]) for b in range(3)])
    np.testing.assert_array_equal(band_typical_error(scores, d), med)
    # a nearer band with wide errors: farther bands never get narrower
    wide = np.where(band == 0, scores * 10, scores)
    q = band_quantiles(wide, d, 0.9)
    assert (np.diff(q) >= 0).all() and q[2] == q[0]
    # too few scores in the far band: it pools with nothing farther and stays honest (inf)
    few = d < DISTANCE_EDGES[1] + 0.05
    q = band_quantiles(scores[few], d[few], 0.9)
    assert np.isfinite(q[:2]).all() and q[2] == np.inf

"""Fitting every curve of the shared data: ala_fast kernels vs a scipy curve_fit loop.

Run: python -m pytest bench/test_bench_fit.py --benchmark-only
"""

import subprocess
import sys
import warnings

import numpy as np
import pytest

from ala_fast import curves
from ala_fast.grouping import group_codes, segments
from ala_fast.readers import concat_tables
from ala_fast.schema import CURVE_KEY
from tests.naive import published_curve_fit


@pytest.fixture(scope="module")
def segmented(argonne, trtllm):
    table = concat_tables([argonne, trtllm])
    codes, _ = group_codes(table, CURVE_KEY)
    bb = table.column("batch_size").to_numpy().astype(float)
    y = table.column("throughput").to_numpy()
    order, off = segments(codes, bb)
    keep = np.flatnonzero(np.diff(off) >= 3)
    xs = [bb[order][off[k]:off[k + 1]] for k in keep]
    ys = [y[order][off[k]:off[k + 1]] for k in keep]
    sub = np.concatenate([[0], np.cumsum([len(v) for v in xs])])
    return np.concatenate(xs), np.concatenate(ys), sub, xs, ys


@pytest.mark.benchmark(group="fit all curves (l2)")
def test_ala_fast_serial(benchmark, segmented):
    x, y, off, *_ = segmented
    curves.fit_segments(x, y, off, "l2", parallel=False)  # warm-up (compile)
    out = benchmark(curves.fit_segments, x, y, off, "l2", parallel=False)
    benchmark.extra_info["curves"] = off.size - 1
    assert out.shape[0] == off.size - 1


@pytest.mark.benchmark(group="fit all curves (l2)")
def test_ala_fast_parallel(benchmark, segmented):
    x, y, off, *_ = segmented
    curves.fit_segments(x, y, off, "l2", parallel=True)
    benchmark(curves.fit_segments, x, y, off, "l2", parallel=True)
    benchmark.extra_info["curves"] = off.size - 1


@pytest.mark.benchmark(group="fit all curves (l2)")
def test_scipy_curve_fit_loop(benchmark, segmented):
    *_, xs, ys = segmented

    def loop():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for cx, cy in zip(xs, ys):
                try:
                    published_curve_fit(cx, cy)
                except RuntimeError:
                    pass

    benchmark.pedantic(loop, rounds=2, iterations=1)
    benchmark.extra_info["curves"] = len(xs)


@pytest.mark.benchmark(group="first-call compile time")
def test_compile_time_fit(benchmark):
    """A fresh process with the on-disk cache off: import + compile + fit 1 curve."""
    code = ("import numpy as np; from ala_fast import curves; "
            "curves.fit_segments(np.array([1.,2,4]), np.array([1.,2,3]), np.array([0,3]), 'l2', parallel=False)")
    env = {"ALA_FAST_NUMBA_CACHE": "0", "PATH": ""}

    def run():
        subprocess.run([sys.executable, "-c", code], check=True, env=env)

    benchmark.pedantic(run, rounds=1, iterations=1)


# ----------------------------------------------------------------------------- boosted trees
@pytest.fixture(scope="module")
def curve_targets(argonne, trtllm):
    """The parameter model's training set on the shared data (features, first target, weights),
    as fit_learned builds it."""
    from ala_fast.learner import curve_set, identification_weights, trainable

    cs = curve_set(curves.fit_curves(concat_tables([argonne, trtllm])))
    tr = trainable(cs)
    return (cs.x[tr].astype(np.float32), cs.targets()[tr, 0],
            identification_weights(cs.min_batch[tr]))


def _fit(cls, x, y, w):
    from ala_fast.augment import BoostingParams

    p = BoostingParams()
    return cls(n_estimators=p.n_estimators, learning_rate=p.learning_rate, max_depth=p.max_depth,
               subsample=p.subsample, min_samples_leaf=p.min_samples_leaf, loss=p.loss,
               random_state=0).fit(x, y, sample_weight=w)


@pytest.mark.benchmark(group="one boosted model (400 trees, Huber, shared data)")
def test_huber_leaf_gbr(benchmark, curve_targets):
    from ala_fast.huber_boosting import HuberLeafGBR

    benchmark.pedantic(_fit, (HuberLeafGBR, *curve_targets), rounds=3)


@pytest.mark.benchmark(group="one boosted model (400 trees, Huber, shared data)")
def test_sklearn_gradient_boosting_regressor(benchmark, curve_targets):
    from sklearn.ensemble import GradientBoostingRegressor

    benchmark.pedantic(_fit, (GradientBoostingRegressor, *curve_targets), rounds=3)

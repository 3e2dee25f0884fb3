"""The screened neighbour kernels return the sequential brute force bit for bit.

The BLAS product only rules references out (``_kernels/neighbors.py`` states the bound), so
the tests feed data where ruling out is delicate: duplicates, points a few ulps apart, zero
vectors, wide magnitudes, clusters, and estimates perturbed up to the bound or made NaN.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ala_fast._kernels import neighbors as kn
from ala_fast.neighbors import ReferenceSet, knn
from ala_fast.uncertainty import config_counts, similarity_features

from .naive import knn_sequential, sequential_cosine, sequential_pair


def awkward_reference(rng, n, dim):
    ref = rng.normal(size=(n, dim)) * rng.choice([1e-3, 1.0, 1e3], size=(n, 1))
    ref[0] = 0.0  # cosine distance 1 by convention
    ref[1] = ref[2]  # exact duplicate: ties by index
    ref[3] = np.nextafter(ref[4], np.inf)  # a few ulps apart
    ref[5:10] = ref[10] + 1e-9 * rng.normal(size=(5, dim))  # a tight cluster
    return ref


def similarity_sequential(q, ref, k):
    d, _ = knn_sequential(q, ref, k, "euclidean")
    dc, _ = knn_sequential(q, ref, 1, "cosine")
    return d, dc[:, 0]


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("parallel", [False, True])
def test_knn_is_the_sequential_brute_force_bit_for_bit(metric, parallel):
    rng = np.random.default_rng(11)
    ref = awkward_reference(rng, 120, 7)
    q = np.vstack([ref[[1, 4, 7, 0]], rng.normal(size=(12, 7)), 1e3 * rng.normal(size=(4, 7))])
    d, i = knn(q, ref, 6, metric, parallel=parallel)
    rd, ri = knn_sequential(q, ref, 6, metric)
    np.testing.assert_array_equal(d, rd)
    np.testing.assert_array_equal(i, ri)


def test_similarity_features_are_the_sequential_brute_force_bit_for_bit():
    rng = np.random.default_rng(12)
    ref = awkward_reference(rng, 150, 9)
    q = np.vstack([ref[[2, 3, 6, 0]], rng.normal(size=(20, 9))])
    configs = [("H100", 1, "vllm", "m", "fp16", "static")] * q.shape[0]
    sim = similarity_features(q, ReferenceSet.of(ref), configs, config_counts(configs[:1]))
    d, dc = similarity_sequential(q, ref, 5)
    np.testing.assert_array_equal(sim[:, 0], d[:, 0])
    np.testing.assert_array_equal(sim[:, 1], d.mean(axis=1))
    np.testing.assert_array_equal(sim[:, 2], dc)


def _run_similarity(q, dots, ref, k):
    r = ReferenceSet.of(ref)
    d = np.empty((q.shape[0], k))
    idx = np.empty((q.shape[0], k), np.int64)
    cos = np.empty(q.shape[0])
    kn.similarity_batch(q, dots, r.vectors, r.sq_norms, r.norms, r.inv_norms, k, d, idx, cos)
    return d, idx, cos


def test_estimates_off_by_the_bound_or_nan_change_nothing():
    """The kernels are exact for any estimate within the stated error bound (a worst-case BLAS),
    and an estimate that is NaN never rules a reference out."""
    rng = np.random.default_rng(13)
    ref = awkward_reference(rng, 200, 6)
    q = np.vstack([ref[[1, 5, 0]], rng.normal(size=(10, 6))])
    exact = q @ ref.T
    # the error a d-term dot product may have in any order: d u / (1 - d u) * sum |q_j r_j|
    u = 2.0 ** -53
    dim = q.shape[1]
    worst = dim * u / (1 - dim * u) * (np.abs(q) @ np.abs(ref).T)
    truth = _run_similarity(q, exact, ref, 5)
    for noisy in (exact + worst, exact - worst, exact + worst * rng.uniform(-1, 1, exact.shape)):
        for got, want in zip(_run_similarity(q, noisy, ref, 5), truth):
            np.testing.assert_array_equal(got, want)
    nan = exact.copy()
    nan[:, ::3] = np.nan
    for got, want in zip(_run_similarity(q, nan, ref, 5), truth):
        np.testing.assert_array_equal(got, want)
    d, dc = similarity_sequential(q, ref, 5)
    np.testing.assert_array_equal(truth[0], d)
    np.testing.assert_array_equal(truth[2], dc)


def test_screening_rules_references_out():
    """The point of the screen: on clustered data most references are never recomputed."""
    rng = np.random.default_rng(14)
    centres = 10 * rng.normal(size=(20, 8))
    ref = np.repeat(centres, 50, axis=0) + rng.normal(size=(1000, 8))
    q = centres[3] + rng.normal(size=8)
    r = ReferenceSet.of(ref)
    dots = ref @ q
    qq = float(q @ q)
    lo = qq + r.sq_norms - 2 * dots - kn.screen_eps(8) * (qq + r.sq_norms)
    d, _ = knn(q, ref, 5)
    assert (lo > d[0, -1] ** 2).mean() > 0.9  # the bound alone excludes >90% of references


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(1, 6), st.integers(1, 8),
       st.sampled_from(["euclidean", "cosine"]))
def test_knn_property_random_grids(seed, n, dim, k, metric):
    """Values on a coarse grid make exact ties and equal norms common."""
    rng = np.random.default_rng(seed)
    ref = rng.integers(-2, 3, size=(n, dim)).astype(float) * 0.5
    q = rng.integers(-2, 3, size=(3, dim)).astype(float) * 0.5
    k = min(k, n)
    d, i = knn(q, ref, k, metric)
    rd, ri = knn_sequential(q, ref, k, metric)
    np.testing.assert_array_equal(d, rd)
    np.testing.assert_array_equal(i, ri)


def test_sequential_reference_is_what_it_says():
    """The Python reference agrees with NumPy to rounding (a check on the check)."""
    rng = np.random.default_rng(15)
    q, r = rng.normal(size=5), rng.normal(size=5)
    s, dot = sequential_pair(q, r)
    assert s == pytest.approx(((q - r) ** 2).sum(), rel=1e-14)
    assert dot == pytest.approx(q @ r, rel=1e-12)
    assert sequential_cosine(0.0, 0.0, 1.0) == 1.0

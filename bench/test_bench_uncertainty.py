"""Annealing kernel vs the pure-Python reference; neighbour search vs NumPy brute force."""

import numpy as np
import pytest

from ala_fast._kernels import anneal as ka
from ala_fast.anneal import pairwise_distances
from ala_fast.neighbors import ReferenceSet, knn
from tests.naive import anneal_reference


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    dist = pairwise_distances(rng.normal(size=(60, 5)))
    start = np.arange(0, 60, 6, dtype=np.int64)  # 10 of 60
    return dist, start


@pytest.mark.benchmark(group="annealing (60 items, k=10, 400 steps)")
def test_anneal_kernel(benchmark, problem):
    dist, start = problem
    ka.anneal(ka.HOLDOUT, dist, np.zeros(0), start, 400, 0.5, 1e-3, 1.0, np.uint64(1))
    benchmark(ka.anneal, ka.HOLDOUT, dist, np.zeros(0), start, 400, 0.5, 1e-3, 1.0, np.uint64(1))


@pytest.mark.benchmark(group="annealing (60 items, k=10, 400 steps)")
def test_anneal_python_reference(benchmark, problem):
    dist, start = problem
    benchmark.pedantic(anneal_reference, (ka.HOLDOUT, dist, np.zeros(0), start, 400, 0.5, 1e-3,
                                          1.0, 1), rounds=2)


def brute(q, ref, k):
    d = np.sqrt(((q[:, None, :] - ref[None, :, :]) ** 2).sum(-1))
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, idx, 1), idx


def gemm_argpartition(q, ref, k, ref_sq):
    """What a NumPy user would write for speed: distances from one BLAS product, then
    argpartition (approximate in the last bits, ties in no defined order)."""
    d2 = np.maximum((q * q).sum(1)[:, None] + ref_sq[None, :] - 2.0 * (q @ ref.T), 0.0)
    part = np.argpartition(d2, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(d2, part, 1).argsort(axis=1, kind="stable")
    idx = np.take_along_axis(part, order, 1)
    return np.sqrt(np.take_along_axis(d2, idx, 1)), idx


@pytest.fixture(scope="module", params=[1_000, 100_000], ids=["1k", "100k"])
def ref(request):
    return np.random.default_rng(1).normal(size=(request.param, 48))


@pytest.mark.benchmark(group="knn")
@pytest.mark.parametrize("nq", [1, 64], ids=["1 query", "64 queries"])
def test_knn_kernel(benchmark, ref, nq):
    """The reference set prepared once (norms), as the predictor holds it."""
    q = np.random.default_rng(2).normal(size=(nq, 48))
    prepared = ReferenceSet.of(ref)
    knn(q, prepared, 5)
    benchmark.group = f"knn: {nq} quer{'y' if nq == 1 else 'ies'}, {ref.shape[0]} references"
    benchmark(knn, q, prepared, 5)


@pytest.mark.benchmark(group="knn")
def test_knn_kernel_parallel_screening(benchmark, ref):
    """knn(parallel=True): the screening pass on Numba's threads after the BLAS product (the
    docstring of neighbors.knn says why the predictor does not use it)."""
    q = np.random.default_rng(2).normal(size=(64, 48))
    prepared = ReferenceSet.of(ref)
    knn(q, prepared, 5, parallel=True)
    benchmark.group = f"knn: 64 queries, {ref.shape[0]} references"
    benchmark(knn, q, prepared, 5, parallel=True)


@pytest.mark.benchmark(group="knn")
@pytest.mark.parametrize("nq", [1, 64], ids=["1 query", "64 queries"])
def test_knn_numpy_brute_force(benchmark, ref, nq):
    q = np.random.default_rng(2).normal(size=(nq, 48))
    benchmark.group = f"knn: {nq} quer{'y' if nq == 1 else 'ies'}, {ref.shape[0]} references"
    if nq * ref.shape[0] > 1_000_000:  # chunk to keep memory bounded, as a user would
        benchmark.pedantic(lambda: [brute(q[i:i + 4], ref, 5) for i in range(0, nq, 4)], rounds=2)
    else:
        benchmark(brute, q, ref, 5)


@pytest.mark.benchmark(group="knn")
@pytest.mark.parametrize("nq", [1, 64], ids=["1 query", "64 queries"])
def test_knn_numpy_gemm_argpartition(benchmark, ref, nq):
    q = np.random.default_rng(2).normal(size=(nq, 48))
    ref_sq = (ref * ref).sum(1)
    benchmark.group = f"knn: {nq} quer{'y' if nq == 1 else 'ies'}, {ref.shape[0]} references"
    benchmark(gemm_argpartition, q, ref, 5, ref_sq)

"""Annealing kernel vs the pure-Python reference; neighbour search vs NumPy brute force."""

import numpy as np
import pytest

from ala_fast._kernels import anneal as ka
from ala_fast.anneal import pairwise_distances
from ala_fast.neighbors import knn
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


@pytest.fixture(scope="module", params=[1_000, 100_000], ids=["1k", "100k"])
def ref(request):
    return np.random.default_rng(1).normal(size=(request.param, 48))


@pytest.mark.benchmark(group="knn")
@pytest.mark.parametrize("nq", [1, 64], ids=["1 query", "64 queries"])
def test_knn_kernel(benchmark, ref, nq):
    q = np.random.default_rng(2).normal(size=(nq, 48))
    knn(q, ref, 5)
    benchmark.group = f"knn: {nq} quer{'y' if nq == 1 else 'ies'}, {ref.shape[0]} references"
    benchmark(knn, q, ref, 5)


@pytest.mark.benchmark(group="knn")
@pytest.mark.parametrize("nq", [1, 64], ids=["1 query", "64 queries"])
def test_knn_numpy_brute_force(benchmark, ref, nq):
    q = np.random.default_rng(2).normal(size=(nq, 48))
    benchmark.group = f"knn: {nq} quer{'y' if nq == 1 else 'ies'}, {ref.shape[0]} references"
    if nq * ref.shape[0] > 1_000_000:  # chunk to keep memory bounded, as a user would
        benchmark.pedantic(lambda: [brute(q[i:i + 4], ref, 5) for i in range(0, nq, 4)], rounds=2)
    else:
        benchmark(brute, q, ref, 5)

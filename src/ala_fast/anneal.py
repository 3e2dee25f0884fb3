"""Annealing driver: informative hold-out subsets and "which k curves to benchmark next".

The compiled kernel (``_kernels.anneal``) searches subsets; this module prepares distances,
starts and seeds, and validates arguments.
"""

from __future__ import annotations

import numpy as np

from .errors import ALAError


def pairwise_distances(v: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    w = v if w is None else w
    d2 = (v * v).sum(1)[:, None] + (w * w).sum(1)[None, :] - 2.0 * v @ w.T
    return np.sqrt(np.maximum(d2, 0.0))


def _start(m: int, k: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(m, size=k, replace=False)).astype(np.int64)


def holdout_subset(vectors: np.ndarray, k: int, *, seed: int = 0, steps: int = 2000,
                   lam: float = 1.0, t0: float = 0.05, t1: float = 1e-4) -> dict:
    """A hard and diverse hold-out set of ``k`` items (objective HOLDOUT, see the kernel).

    ``t0`` and ``t1`` are temperatures relative to the start objective.
    """
    from ._kernels import anneal as ka

    m = vectors.shape[0]
    if not 0 < k < m:
        raise ALAError(f"holdout_subset: k must be in 1..{m - 1}, got {k}")
    dist = pairwise_distances(np.asarray(vectors, np.float64))
    start = _start(m, k, seed)
    scale = abs(_value(ka.HOLDOUT, dist, np.zeros(0), start, lam)) + 1e-12
    chosen, best, first, accepted = ka.anneal(ka.HOLDOUT, dist, np.zeros(0), start, steps,
                                              t0 * scale, t1 * scale, lam, np.uint64(seed))
    return {"chosen": np.sort(chosen), "value": best, "start_value": first, "accepted": accepted}


def _value(objective, dist, base, chosen, lam):
    from ._kernels import anneal as ka

    member = np.zeros(dist.shape[1], bool)
    member[chosen] = True
    return ka.objective_value(objective, dist, base, member, chosen, lam)


def benchmark_next(observed: np.ndarray, candidates: np.ndarray, k: int, *, seed: int = 0,
                   steps: int = 3000, t0: float = 0.05, t1: float = 1e-4) -> dict:
    """Which ``k`` candidates to benchmark next so that every candidate workload lies as close
    as possible to something benchmarked (standardised feature vectors; mean nearest distance).

    Returns the chosen candidate indices, the mean nearest distance before and after, and the
    annealing statistics.
    """
    from ._kernels import anneal as ka

    cand = np.asarray(candidates, np.float64)
    if not 0 < k < cand.shape[0]:
        raise ALAError(f"benchmark_next: k must be in 1..{cand.shape[0] - 1}, got {k}")
    dist = pairwise_distances(cand)
    if observed is not None and len(observed):
        base = pairwise_distances(cand, np.asarray(observed, np.float64)).min(axis=1)
    else:
        base = np.full(cand.shape[0], np.inf)
    # greedy start: farthest-first from what is observed, then anneal
    start = []
    cur = base.copy()
    for _ in range(k):
        j = int(np.argmax(np.where(np.isin(np.arange(cand.shape[0]), start), -1, cur)))
        start.append(j)
        cur = np.minimum(cur, dist[:, j])
    start = np.array(start, np.int64)
    base_f = np.where(np.isfinite(base), base, 1e300)
    scale = abs(_value(ka.COVERAGE, dist, base_f, start, 0.0)) + 1e-12
    chosen, best, first, accepted = ka.anneal(ka.COVERAGE, dist, base_f, start, steps,
                                              t0 * scale, t1 * scale, 0.0, np.uint64(seed))
    before = float(np.mean(base)) if np.isfinite(base).all() else float("inf")
    return {"chosen": np.sort(chosen), "mean_distance_before": before,
            "mean_distance_after": -best, "greedy_start": -first, "accepted": accepted}

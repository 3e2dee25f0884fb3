"""Similarity search: exact k nearest neighbours on standardised feature vectors."""

from __future__ import annotations

import numpy as np

METRICS = {"euclidean": 0, "cosine": 1}
PARALLEL_WORK = 2_000_000  # queries x references x dims above which the parallel kernel pays


def knn(queries: np.ndarray, reference: np.ndarray, k: int = 5, metric: str = "euclidean",
        parallel: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(distances, indices), each (n_queries, k), sorted by distance then index.

    Euclidean distance, or cosine distance 1 - cos. ``k`` larger than the reference set is
    clipped to its size.
    """
    from ._kernels import neighbors as kn

    if metric not in METRICS:
        raise ValueError(f"metric must be one of {tuple(METRICS)}, got {metric!r}")
    q = np.ascontiguousarray(np.atleast_2d(queries), np.float64)
    r = np.ascontiguousarray(np.atleast_2d(reference), np.float64)
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} dimensions, reference {r.shape[1]}")
    if r.shape[0] == 0:
        raise ValueError("the reference set is empty")
    k = int(min(max(k, 1), r.shape[0]))
    dist = np.empty((q.shape[0], k))
    idx = np.empty((q.shape[0], k), np.int64)
    if parallel is None:
        parallel = q.shape[0] > 1 and q.shape[0] * r.shape[0] * r.shape[1] >= PARALLEL_WORK
    fn = kn.knn_parallel if parallel else kn.knn_serial
    fn(q, r, k, METRICS[metric], dist, idx)
    return dist, idx

"""Exact k nearest neighbours (Euclidean or cosine) of query vectors among reference vectors.

Outputs are sorted by distance (ties by index). Cosine distance is 1 - cos(q, r) with zero
vectors treated as orthogonal to everything (distance 1). ``metric``: 0 Euclidean, 1 cosine.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .options import jit, jit_parallel

EUCLIDEAN = 0
COSINE = 1


@jit
def _norms(x):
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        s = 0.0
        for j in range(x.shape[1]):
            s += x[i, j] * x[i, j]
        out[i] = np.sqrt(s)
    return out


@jit
def _insert(dist, idx, k, d, j):
    """Insert (d, j) into the sorted top-k arrays (ascending distance, then index)."""
    if d > dist[k - 1] or (d == dist[k - 1] and j > idx[k - 1]):
        return
    p = k - 1
    while p > 0 and (dist[p - 1] > d or (dist[p - 1] == d and idx[p - 1] > j)):
        dist[p] = dist[p - 1]
        idx[p] = idx[p - 1]
        p -= 1
    dist[p] = d
    idx[p] = j


@jit
def knn_one(q, ref, ref_norm, k, metric, out_dist, out_idx):
    """k nearest rows of ``ref`` to vector ``q``; writes sorted distances and indices."""
    for p in range(k):
        out_dist[p] = np.inf
        out_idx[p] = -1
    qn = 0.0
    if metric == COSINE:
        for j in range(q.shape[0]):
            qn += q[j] * q[j]
        qn = np.sqrt(qn)
    for r in range(ref.shape[0]):
        if metric == EUCLIDEAN:
            s = 0.0
            for j in range(q.shape[0]):
                t = q[j] - ref[r, j]
                s += t * t
            d = np.sqrt(s)
        else:
            dot = 0.0
            for j in range(q.shape[0]):
                dot += q[j] * ref[r, j]
            den = qn * ref_norm[r]
            d = 1.0 - dot / den if den > 0.0 else 1.0
        _insert(out_dist, out_idx, k, d, r)


@jit
def knn_serial(queries, ref, k, metric, out_dist, out_idx):
    ref_norm = _norms(ref)
    for i in range(queries.shape[0]):
        knn_one(queries[i], ref, ref_norm, k, metric, out_dist[i], out_idx[i])
    return out_dist, out_idx


@jit_parallel
def knn_parallel(queries, ref, k, metric, out_dist, out_idx):
    ref_norm = _norms(ref)
    for i in prange(queries.shape[0]):
        knn_one(queries[i], ref, ref_norm, k, metric, out_dist[i], out_idx[i])
    return out_dist, out_idx


@jit
def similarity_one(q, ref, ref_norm, k, out_dist, out_idx):
    """One pass over the references: the k nearest by Euclidean distance (sorted, into
    out_dist / out_idx) and the smallest cosine distance (returned)."""
    for p in range(k):
        out_dist[p] = np.inf
        out_idx[p] = -1
    qn = 0.0
    for j in range(q.shape[0]):
        qn += q[j] * q[j]
    qn = np.sqrt(qn)
    best_cos = np.inf
    for r in range(ref.shape[0]):
        s = 0.0
        dot = 0.0
        for j in range(q.shape[0]):
            t = q[j] - ref[r, j]
            s += t * t
            dot += q[j] * ref[r, j]
        _insert(out_dist, out_idx, k, np.sqrt(s), r)
        den = qn * ref_norm[r]
        dc = 1.0 - dot / den if den > 0.0 else 1.0
        if dc < best_cos:
            best_cos = dc
    return best_cos


@jit_parallel
def similarity_batch(queries, ref, ref_norm, k, out_dist, out_idx, out_cos):
    for i in prange(queries.shape[0]):
        out_cos[i] = similarity_one(queries[i], ref, ref_norm, k, out_dist[i], out_idx[i])
    return out_cos


@jit
def similarity_batch_serial(queries, ref, ref_norm, k, out_dist, out_idx, out_cos):
    for i in range(queries.shape[0]):
        out_cos[i] = similarity_one(queries[i], ref, ref_norm, k, out_dist[i], out_idx[i])
    return out_cos


def reference_norms(ref):
    return _norms(np.ascontiguousarray(ref, np.float64))

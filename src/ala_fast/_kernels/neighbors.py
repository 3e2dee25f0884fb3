"""Exact k nearest neighbours (Euclidean or cosine) of query vectors among reference vectors.

Outputs are sorted by distance (ties by index). Cosine distance is 1 - cos(q, r) with zero
vectors treated as orthogonal to everything (distance 1). ``metric``: 0 Euclidean, 1 cosine.

Definition. The distances are those of plain sequential arithmetic (``_exact_pair``: for
j = 0, 1, ... accumulate (q_j - r_j)^2 and q_j * r_j), and every distance returned is computed
exactly that way.

Screening. Comparing a query with every reference that way is latency-bound scalar code. The
kernels here instead get all dot products ``q . r`` from one BLAS product (computed by the
caller, any summation order) and use them only to *rule references out*:

- ``|q - r|^2 ~ |q|^2 + |r|^2 - 2 q.r`` and ``1 - cos ~ 1 - q.r / (|q| |r|)``;
- both estimates differ from the sequential values by at most ``eps * (|q|^2 + |r|^2)`` and
  ``eps`` respectively, with ``eps = SCREEN_MARGIN * (d + 2) * 2**-53`` for d dimensions: a
  d-term dot product has error at most ``d u / (1 - d u) * sum |q_j r_j|`` in any summation
  order, with or without fused multiply-adds (u = 2**-53), and the few extra roundings of the
  estimates and of the sequential values stay below a handful of u; the margin is 32x, about
  six times what that sum needs;
- a reference is recomputed sequentially unless its lower bound is beyond the running k-th
  best sequential distance (squared, inflated by ``1e-9`` so that a value that rounds to the
  same square root is never ruled out) or beyond the running best cosine distance. A
  reference ruled out is strictly farther than the k-th result, so the output is the output
  of the sequential brute force, bit for bit (ties included), whatever BLAS did. An estimate
  that is NaN or infinite never rules anything out.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .options import jit, jit_parallel

EUCLIDEAN = 0
COSINE = 1
SCREEN_MARGIN = 32.0
SQRT_ROUNDTRIP = 1e-9  # relative slack between a squared distance and its rounded square root


@jit
def _sq_norms(x):
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        s = 0.0
        for j in range(x.shape[1]):
            s += x[i, j] * x[i, j]
        out[i] = s
    return out


@jit
def screen_eps(dim):
    """Bound (relative to |q|^2 + |r|^2, or absolute for cosine) on the estimate error."""
    return SCREEN_MARGIN * (dim + 2.0) * 2.0 ** -53


@jit
def _exact_pair(q, ref, r):
    """Squared Euclidean distance and dot product of q and ref[r], sequentially (the definition)."""
    s = 0.0
    dot = 0.0
    for j in range(q.shape[0]):
        t = q[j] - ref[r, j]
        s += t * t
        dot += q[j] * ref[r, j]
    return s, dot


@jit
def _cosine(dot, qn, rn):
    den = qn * rn
    return 1.0 - dot / den if den > 0.0 else 1.0


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
def _query_norms(q):
    qq = 0.0
    for j in range(q.shape[0]):
        qq += q[j] * q[j]
    return qq, np.sqrt(qq)


@jit
def knn_one(q, dots, ref, ref_sq, ref_norm, inv_norm, k, metric, out_dist, out_idx):
    """k nearest rows of ``ref`` to vector ``q`` (``dots[r]`` estimates ``q . ref[r]``);
    writes sorted distances and indices."""
    for p in range(k):
        out_dist[p] = np.inf
        out_idx[p] = -1
    qq, qn = _query_norms(q)
    inv_qn = 1.0 / qn
    eps = screen_eps(q.shape[0])
    bound = np.inf  # no reference beyond it can enter the top k
    for r in range(ref.shape[0]):
        if metric == EUCLIDEAN:
            lo = qq + ref_sq[r] - 2.0 * dots[r] - eps * (qq + ref_sq[r])
        else:
            lo = 1.0 - dots[r] * inv_qn * inv_norm[r] - eps
        if lo > bound:
            continue
        s, dot = _exact_pair(q, ref, r)
        if metric == EUCLIDEAN:
            _insert(out_dist, out_idx, k, np.sqrt(s), r)
            bound = out_dist[k - 1] * out_dist[k - 1] * (1.0 + SQRT_ROUNDTRIP)
        else:
            _insert(out_dist, out_idx, k, _cosine(dot, qn, ref_norm[r]), r)
            bound = out_dist[k - 1]


@jit
def knn_serial(queries, dots, ref, ref_sq, ref_norm, inv_norm, k, metric, out_dist, out_idx):
    for i in range(queries.shape[0]):
        knn_one(queries[i], dots[i], ref, ref_sq, ref_norm, inv_norm, k, metric, out_dist[i],
                out_idx[i])


@jit_parallel
def knn_parallel(queries, dots, ref, ref_sq, ref_norm, inv_norm, k, metric, out_dist, out_idx):
    for i in prange(queries.shape[0]):
        knn_one(queries[i], dots[i], ref, ref_sq, ref_norm, inv_norm, k, metric, out_dist[i],
                out_idx[i])


@jit
def similarity_one(q, dots, ref, ref_sq, ref_norm, inv_norm, k, out_dist, out_idx):
    """The k nearest by Euclidean distance (sorted, into out_dist / out_idx) and the smallest
    cosine distance (returned), screened by the estimates ``dots``."""
    for p in range(k):
        out_dist[p] = np.inf
        out_idx[p] = -1
    qq, qn = _query_norms(q)
    inv_qn = 1.0 / qn
    eps = screen_eps(q.shape[0])
    bound = np.inf
    best_cos = np.inf
    for r in range(ref.shape[0]):
        lo_d = qq + ref_sq[r] - 2.0 * dots[r] - eps * (qq + ref_sq[r])
        lo_c = 1.0 - dots[r] * inv_qn * inv_norm[r] - eps
        need_d = not lo_d > bound
        need_c = not lo_c > best_cos
        if not (need_d or need_c):
            continue
        s, dot = _exact_pair(q, ref, r)
        if need_d:
            _insert(out_dist, out_idx, k, np.sqrt(s), r)
            bound = out_dist[k - 1] * out_dist[k - 1] * (1.0 + SQRT_ROUNDTRIP)
        if need_c:
            dc = _cosine(dot, qn, ref_norm[r])
            if dc < best_cos:
                best_cos = dc
    return best_cos


@jit
def similarity_batch(queries, dots, ref, ref_sq, ref_norm, inv_norm, k, out_dist, out_idx,
                     out_cos):
    for i in range(queries.shape[0]):
        out_cos[i] = similarity_one(queries[i], dots[i], ref, ref_sq, ref_norm, inv_norm, k,
                                    out_dist[i], out_idx[i])
    return out_cos


def reference_sq_norms(ref):
    return _sq_norms(np.ascontiguousarray(ref, np.float64))

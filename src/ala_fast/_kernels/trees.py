"""Compiled evaluator of ONNX TreeEnsembleRegressor models (flattened node arrays).

Node modes: 0 leaf, 1 BRANCH_LEQ, 2 BRANCH_LT, 3 BRANCH_GTE, 4 BRANCH_GT, 5 BRANCH_EQ,
6 BRANCH_NEQ. Inputs and thresholds are float32, as ONNX Runtime compares them; leaf sums are
accumulated in float64.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .options import jit, jit_parallel


@jit
def _descend(x, row, root, feature, threshold, mode, left, right):
    node = root
    while True:
        m = mode[node]
        if m == 0:
            return node
        v = x[row, feature[node]]
        t = threshold[node]
        if m == 1:
            go_left = v <= t
        elif m == 2:
            go_left = v < t
        elif m == 3:
            go_left = v >= t
        elif m == 4:
            go_left = v > t
        elif m == 5:
            go_left = v == t
        else:
            go_left = v != t
        node = left[node] if go_left else right[node]


@jit
def predict_rows(x, lo, hi, roots, tree_target, feature, threshold, mode, left, right, value,
                 base, out):
    """out[i, :] = base + sum of the leaves reached by row i, for rows lo:hi."""
    n_targets = base.shape[0]
    for i in range(lo, hi):
        for k in range(n_targets):
            out[i, k] = base[k]
        for t in range(roots.shape[0]):
            leaf = _descend(x, i, roots[t], feature, threshold, mode, left, right)
            out[i, tree_target[t]] += value[leaf]
    return out


@jit_parallel
def predict_parallel(x, roots, tree_target, feature, threshold, mode, left, right, value, base,
                     out):
    n = x.shape[0]
    block = 256
    nblocks = (n + block - 1) // block
    for bi in prange(nblocks):
        lo = bi * block
        hi = min(lo + block, n)
        predict_rows(x, lo, hi, roots, tree_target, feature, threshold, mode, left, right, value,
                     base, out)
    return out

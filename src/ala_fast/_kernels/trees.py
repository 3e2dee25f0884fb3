"""Compiled evaluator of ONNX TreeEnsembleRegressor models (flattened node arrays).

Node modes: 0 leaf, 1 BRANCH_LEQ, 2 BRANCH_LT, 3 BRANCH_GTE, 4 BRANCH_GT, 5 BRANCH_EQ,
6 BRANCH_NEQ. Inputs and thresholds are float32, as ONNX Runtime compares them; leaf sums are
accumulated in float64.
"""

from __future__ import annotations

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


BLOCK = 128  # rows evaluated together, tree by tree, so one tree's nodes stay in cache


@jit
def predict_rows(x, lo, hi, roots, tree_target, feature, threshold, mode, left, right, value,
                 base, out):
    """out[i, :] = base + sum of the leaves reached by row i, for rows lo:hi.

    Rows go in blocks; within a block the loop runs tree by tree (all rows through one tree)
    so the nodes of that tree stay in cache.
    """
    n_targets = base.shape[0]
    for i in range(lo, hi):
        for k in range(n_targets):
            out[i, k] = base[k]
    for start in range(lo, hi, BLOCK):
        stop = min(start + BLOCK, hi)
        for t in range(roots.shape[0]):
            root = roots[t]
            tgt = tree_target[t]
            for i in range(start, stop):
                leaf = _descend(x, i, root, feature, threshold, mode, left, right)
                out[i, tgt] += value[leaf]
    return out


@jit_parallel
def predict_parallel(x, roots, tree_target, feature, threshold, mode, left, right, value, base,
                     out):
    n = x.shape[0]
    block = 1024
    nblocks = (n + block - 1) // block
    for bi in prange(nblocks):
        lo = bi * block
        hi = min(lo + block, n)
        predict_rows(x, lo, hi, roots, tree_target, feature, threshold, mode, left, right, value,
                     base, out)
    return out


# --------------------------------------------------------------------------- perfect trees
# Shallow trees with only BRANCH_LEQ splits are padded to perfect binary trees of one depth D
# (a leaf above depth D becomes a split with threshold +inf whose subtree repeats the leaf).
# Traversal is then branch-free: node = 2*node + 1 + (x > threshold), D times.


@jit
def predict_perfect_rows(x, lo, hi, depth, feat, thr, leaf, tree_target, base, out):
    n_targets = base.shape[0]
    n_inner = feat.shape[1]
    for i in range(lo, hi):
        for k in range(n_targets):
            out[i, k] = base[k]
    for start in range(lo, hi, BLOCK):
        stop = min(start + BLOCK, hi)
        for t in range(feat.shape[0]):
            tgt = tree_target[t]
            for i in range(start, stop):
                node = 0
                for _ in range(depth):
                    node = 2 * node + 1 + (1 if x[i, feat[t, node]] > thr[t, node] else 0)
                out[i, tgt] += leaf[t, node - n_inner]
    return out


@jit_parallel
def predict_perfect_parallel(x, depth, feat, thr, leaf, tree_target, base, out):
    n = x.shape[0]
    block = 1024
    nblocks = (n + block - 1) // block
    for bi in prange(nblocks):
        lo = bi * block
        hi = min(lo + block, n)
        predict_perfect_rows(x, lo, hi, depth, feat, thr, leaf, tree_target, base, out)
    return out

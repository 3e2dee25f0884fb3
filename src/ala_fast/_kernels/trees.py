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
# Node n's children are 2n + 1 (x <= threshold) and 2n + 2, so a row's path is
# node = 2*node + 1 + (x > threshold), D times, and its leaf is slot node - (2^D - 1).
#
# Rows go in blocks of PERFECT_BLOCK, copied feature-major so that one feature of the whole
# block is contiguous, and the block goes through each tree level by level:
# - a level of at most MASKED_LEVEL_NODES nodes is evaluated for every row at every node of
#   the level, keeping the comparison of the node the row is at: no data-dependent load, so
#   the loops over the block vectorise (2^d comparisons per row instead of one dependent
#   gather; measured ad hoc on this machine, cheaper than the lookup up to 16 nodes and
#   dearer from 32);
# - a wider level looks up each row's node (threshold and feature) and compares once.
# Fewer than MASKED_MIN_ROWS rows (a single prediction has nothing to vectorise over) walk
# row by row, straight from ``x``, WALK_INTERLEAVE trees at a time.
# Both give each row the same path, and every row adds its leaves in tree order from the base
# value, so the sums are the same as a row-by-row walk, bit for bit.
PERFECT_BLOCK = 128
MASKED_LEVEL_NODES = 16
MASKED_MIN_ROWS = 16
WALK_INTERLEAVE = 8  # trees one row walks at once (2.4x one at a time for one row, ad hoc)


@jit
def _walk_rows(x, lo, hi, depth, feat, thr, leaf, tree_target, base, out):
    """Row by row: each row walks WALK_INTERLEAVE trees at once (independent chains of
    dependent loads, so the processor overlaps them; one tree at a time waits on each load),
    then adds their leaves in tree order."""
    n_inner = feat.shape[1]
    n_trees = feat.shape[0]
    nodes = np.zeros(WALK_INTERLEAVE, np.int64)
    for i in range(lo, hi):
        for k in range(base.shape[0]):
            out[i, k] = base[k]
        t = 0
        while t + WALK_INTERLEAVE <= n_trees:
            for j in range(WALK_INTERLEAVE):
                nodes[j] = 0
            for _ in range(depth):
                for j in range(WALK_INTERLEAVE):
                    n = nodes[j]
                    nodes[j] = 2 * n + 1 + (1 if x[i, feat[t + j, n]] > thr[t + j, n] else 0)
            for j in range(WALK_INTERLEAVE):
                out[i, tree_target[t + j]] += leaf[t + j, nodes[j] - n_inner]
            t += WALK_INTERLEAVE
        for t in range(t, n_trees):
            node = 0
            for _ in range(depth):
                node = 2 * node + 1 + (1 if x[i, feat[t, node]] > thr[t, node] else 0)
            out[i, tree_target[t]] += leaf[t, node - n_inner]


@jit
def predict_perfect_rows(x, lo, hi, depth, feat, thr, leaf, tree_target, base, out):
    """out[i, :] = base + sum of the leaves reached by row i, for rows lo:hi (perfect trees)."""
    if hi - lo < MASKED_MIN_ROWS:
        _walk_rows(x, lo, hi, depth, feat, thr, leaf, tree_target, base, out)
        return out
    n_targets = base.shape[0]
    n_inner = feat.shape[1]
    n_features = x.shape[1]
    xt = np.empty((n_features, PERFECT_BLOCK), np.float32)
    node = np.empty(PERFECT_BLOCK, np.int32)
    bit = np.empty(PERFECT_BLOCK, np.int32)
    acc = np.empty((n_targets, PERFECT_BLOCK), np.float64)
    for start in range(lo, hi, PERFECT_BLOCK):
        m = min(start + PERFECT_BLOCK, hi) - start
        if m < MASKED_MIN_ROWS:  # the last block of a table
            _walk_rows(x, start, start + m, depth, feat, thr, leaf, tree_target, base, out)
            continue
        for i in range(m):
            for f in range(n_features):
                xt[f, i] = x[start + i, f]
        for k in range(n_targets):
            for i in range(m):
                acc[k, i] = base[k]
        for t in range(feat.shape[0]):
            ft = feat[t]
            th = thr[t]
            for i in range(m):
                node[i] = 0
            first = 0  # the level's first node; the level holds first + 1 nodes
            for _ in range(depth):
                if first < MASKED_LEVEL_NODES:
                    for i in range(m):
                        bit[i] = 0
                    for j in range(first, 2 * first + 1):
                        column = xt[ft[j]]
                        tj = th[j]
                        jj = np.int32(j)
                        for i in range(m):
                            bit[i] |= np.int32((node[i] == jj) & (column[i] > tj))
                    for i in range(m):
                        node[i] = 2 * node[i] + 1 + bit[i]
                else:
                    for i in range(m):
                        n = node[i]
                        node[i] = 2 * n + 1 + (1 if xt[ft[n], i] > th[n] else 0)
                first = 2 * first + 1
            row_sum = acc[tree_target[t]]
            values = leaf[t]
            for i in range(m):
                row_sum[i] += values[node[i] - n_inner]
        for i in range(m):
            for k in range(n_targets):
                out[start + i, k] = acc[k, i]
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

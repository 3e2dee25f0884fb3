"""Tree-ensemble ONNX models at run time: ONNX Runtime sessions and the compiled evaluator.

Both read the same ONNX bytes. Training (scikit-learn, skl2onnx, onnx) lives in :mod:`augment`;
this module needs none of them (:mod:`onnx_wire` reads the trees).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from .errors import BundleError

_MODES = {b"LEAF": 0, b"BRANCH_LEQ": 1, b"BRANCH_LT": 2, b"BRANCH_GTE": 3, b"BRANCH_GT": 4,
          b"BRANCH_EQ": 5, b"BRANCH_NEQ": 6}
PARALLEL_ROWS = 4096  # below this, the serial evaluator (no thread start-up) is faster


@dataclass(frozen=True)
class TreeArrays:
    """A tree ensemble flattened into node arrays (global node numbering)."""

    roots: np.ndarray  # int32 [n_trees]
    tree_target: np.ndarray  # int32 [n_trees]
    feature: np.ndarray  # int32 [n_nodes]
    threshold: np.ndarray  # float32 [n_nodes]
    mode: np.ndarray  # int8 [n_nodes]
    left: np.ndarray  # int32 [n_nodes] (the "true" branch)
    right: np.ndarray  # int32 [n_nodes]
    value: np.ndarray  # float64 [n_nodes] (leaf weight, 0 for branches)
    base: np.ndarray  # float64 [n_targets]
    n_features: int
    perfect: tuple | None = None  # (depth, feat [T, 2^D-1], thr [T, 2^D-1], leaf [T, 2^D])

    @property
    def n_targets(self) -> int:
        return int(self.base.shape[0])

    def only_target(self, target: int) -> "TreeArrays":
        """The sub-ensemble of one output (its trees in their order: the same sums, bit for
        bit, as that column of :meth:`predict` on the whole ensemble, at half the work for
        two outputs)."""
        if not 0 <= target < self.n_targets:
            raise ValueError(f"target {target} out of range (ensemble has {self.n_targets})")
        keep = np.flatnonzero(self.tree_target == target)
        perfect = self.perfect
        if perfect is not None:
            depth, feat, thr, leaf = perfect
            perfect = (depth, feat[keep], thr[keep], leaf[keep])
        from dataclasses import replace

        return replace(self, roots=self.roots[keep],
                       tree_target=np.zeros(keep.size, np.int32),
                       base=self.base[target:target + 1].copy(), perfect=perfect)

    def predict(self, x: np.ndarray, parallel: bool | None = None,
                layout: str = "auto") -> np.ndarray:
        """Raw ensemble output (rows x n_targets, float64) for float32 features.

        ``layout="perfect"`` uses the padded branch-free trees (the default when the ensemble
        allows it), ``"general"`` the node-by-node evaluator of any ONNX tree ensemble.
        """
        from ._kernels import trees as k

        x = np.ascontiguousarray(x, np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected a (rows, {self.n_features}) feature matrix, got {x.shape}")
        out = np.empty((x.shape[0], self.n_targets))
        if parallel is None:
            parallel = x.shape[0] >= PARALLEL_ROWS
        perfect = self.perfect if layout == "auto" else (self.perfect if layout == "perfect" else None)
        if layout == "perfect" and perfect is None:
            raise ValueError("this ensemble has no perfect-tree layout (deep or non-LEQ splits)")
        if perfect is not None:
            depth, feat, thr, leaf = perfect
            if parallel:
                k.predict_perfect_parallel(x, depth, feat, thr, leaf, self.tree_target, self.base, out)
            else:
                k.predict_perfect_rows(x, 0, x.shape[0], depth, feat, thr, leaf, self.tree_target,
                                       self.base, out)
            return out
        args = (self.roots, self.tree_target, self.feature, self.threshold, self.mode, self.left,
                self.right, self.value, self.base)
        if parallel:
            k.predict_parallel(x, *args, out)
        else:
            k.predict_rows(x, 0, x.shape[0], *args, out)
        return out


MAX_PERFECT_DEPTH = 8


def perfect_layout(t: "TreeArrays") -> tuple | None:
    """Pad every tree to a perfect binary tree of the ensemble's depth (LEQ splits only).

    Level by level over every tree at once: slot ``k`` of level ``d`` holds node ``cur[:, k]``,
    its children go to slots ``2k`` and ``2k + 1`` of level ``d + 1``; a leaf above the full
    depth splits on +inf with itself on both sides. None when some split is not LEQ or the
    ensemble is deeper than MAX_PERFECT_DEPTH (which also stops a malformed, cyclic file).
    """
    if np.any((t.mode != 0) & (t.mode != 1)):
        return None
    depth, level = 0, t.roots.astype(np.int64)
    while True:
        inner = level[t.mode[level] != 0]
        if inner.size == 0:
            break
        depth += 1
        if depth > MAX_PERFECT_DEPTH:
            return None
        level = np.concatenate([t.left[inner], t.right[inner]]).astype(np.int64)
    depth = max(depth, 1)
    n_inner = 2**depth - 1
    n_trees = t.roots.size
    feat = np.zeros((n_trees, n_inner), np.int32)
    thr = np.full((n_trees, n_inner), np.inf, np.float32)
    cur = t.roots.astype(np.int64)[:, None]
    for d in range(depth):
        slots = slice(2**d - 1, 2**(d + 1) - 1)
        branch = t.mode[cur] != 0
        feat[:, slots] = np.where(branch, t.feature[cur], 0)
        thr[:, slots] = np.where(branch, t.threshold[cur], np.float32(np.inf))
        nxt = np.empty((n_trees, 2 * cur.shape[1]), np.int64)
        nxt[:, 0::2] = np.where(branch, t.left[cur], cur)
        nxt[:, 1::2] = np.where(branch, t.right[cur], cur)
        cur = nxt
    leaf = t.value[cur]  # every slot of the last level is a leaf
    return depth, feat, thr, leaf


def _node_index(tree_ids: np.ndarray, node_ids: np.ndarray):
    """Global index of (tree id, node id) pairs: a function mapping query pairs to positions in
    the node arrays, raising BundleError for a pair that names no node."""
    if tree_ids.size and (tree_ids.min() < 0 or node_ids.min() < 0):
        raise BundleError("negative tree or node id in the tree ensemble")
    span = int(node_ids.max()) + 1 if node_ids.size else 1
    if tree_ids.size and (int(tree_ids.max()) + 1) * span >= 2**62:
        raise BundleError("tree or node ids in the tree ensemble are implausibly large")
    keys = tree_ids * span + node_ids
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    if np.any(sorted_keys[1:] == sorted_keys[:-1]):
        raise BundleError("a (tree, node) id appears twice in the tree ensemble")

    def index(t, i, what: str) -> np.ndarray:
        t, i = np.asarray(t, np.int64), np.asarray(i, np.int64)
        q = t * span + i
        pos = np.minimum(np.searchsorted(sorted_keys, q), max(sorted_keys.size - 1, 0))
        bad = (i < 0) | (i >= span) | (sorted_keys[pos] != q)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise BundleError(f"tree ensemble: {what} names node {int(i[j])} of tree "
                              f"{int(t[j])}, which does not exist")
        return order[pos]

    return index


def tree_arrays(onnx_bytes: bytes) -> TreeArrays:
    """Flatten the TreeEnsembleRegressor of an ONNX model for the compiled evaluator (read by
    :mod:`onnx_wire`, without importing ``onnx``)."""
    from .onnx_wire import read_tree_ensemble

    att, n_features = read_tree_ensemble(onnx_bytes)
    missing = [k for k in ("nodes_treeids", "nodes_nodeids", "nodes_modes", "nodes_featureids",
                           "nodes_values", "nodes_truenodeids", "nodes_falsenodeids",
                           "target_treeids", "target_nodeids", "target_ids", "target_weights")
               if k not in att]
    if missing:
        raise BundleError(f"tree ensemble without the attributes {missing}")
    if att.get("aggregate_function", b"SUM") != b"SUM" or att.get("post_transform", b"NONE") != b"NONE":
        raise BundleError("only SUM aggregation without post transform is supported")
    tree_ids = np.asarray(att["nodes_treeids"], np.int64)
    node_ids = np.asarray(att["nodes_nodeids"], np.int64)
    n = tree_ids.size
    for group, size in (("nodes_", n), ("target_", len(att["target_treeids"]))):
        lengths = {k: len(v) for k, v in att.items() if k.startswith(group)
                   and k not in ("nodes_hitrates", "nodes_missing_value_tracks_true")}
        if set(lengths.values()) != {size}:
            raise BundleError(f"tree ensemble: attribute lengths differ ({lengths})")
    index = _node_index(tree_ids, node_ids)
    try:
        modes = np.array([_MODES[m] for m in att["nodes_modes"]], np.int8)
    except KeyError as exc:
        raise BundleError(f"tree ensemble: unknown node mode {exc.args[0]!r}") from None
    left = np.full(n, -1, np.int64)
    right = np.full(n, -1, np.int64)
    branch = np.flatnonzero(modes != 0)
    left[branch] = index(tree_ids[branch],
                         np.asarray(att["nodes_truenodeids"], np.int64)[branch], "a true branch")
    right[branch] = index(tree_ids[branch],
                          np.asarray(att["nodes_falsenodeids"], np.int64)[branch], "a false branch")
    target_trees = np.asarray(att["target_treeids"], np.int64)
    target_ids = np.asarray(att["target_ids"], np.int64)
    value = np.zeros(n, np.float64)
    # leaf weights are float32 in the file, added in file order
    np.add.at(value, index(target_trees, att["target_nodeids"], "a leaf weight"),
              np.asarray(att["target_weights"], np.float32).astype(np.float64))
    unique_trees = np.unique(tree_ids)
    position = np.searchsorted(unique_trees, target_trees)
    tree_target = np.zeros(unique_trees.size, np.int64)
    tree_target[position] = target_ids
    if np.any(tree_target[position] != target_ids):
        raise BundleError("tree ensemble: a tree adds to more than one target")
    roots = index(unique_trees, np.zeros(unique_trees.size, np.int64), "a root")
    n_targets = int(att.get("n_targets", 1))
    base = np.zeros(n_targets)
    if "base_values" in att:
        base[:] = np.asarray(att["base_values"], np.float32).astype(np.float64)
    if n_features <= 0:
        raise BundleError("tree ensemble: the graph input has no fixed feature count")
    general = TreeArrays(
        roots=roots.astype(np.int32), tree_target=tree_target.astype(np.int32),
        feature=np.asarray(att["nodes_featureids"], np.int32),
        threshold=np.asarray(att["nodes_values"], np.float32), mode=modes,
        left=left.astype(np.int32), right=right.astype(np.int32),
        value=value, base=base, n_features=int(n_features),
    )
    from dataclasses import replace

    return replace(general, perfect=perfect_layout(general))


class OrtModel:
    """An ONNX Runtime session for one model (single-threaded; safe to share across threads)."""

    def __init__(self, onnx_bytes: bytes, threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self._lock = threading.Lock()

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        out = self.session.run(None, {self.input_name: x})[0]
        return np.asarray(out, np.float64).reshape(x.shape[0], -1)

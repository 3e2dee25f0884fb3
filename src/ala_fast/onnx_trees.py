"""Tree-ensemble ONNX models at run time: ONNX Runtime sessions and the compiled evaluator.

Both read the same ONNX bytes. Training (scikit-learn, skl2onnx) lives in :mod:`augment`; this
module needs neither.
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
    """Pad every tree to a perfect binary tree of the ensemble's depth (LEQ splits only)."""
    if np.any((t.mode != 0) & (t.mode != 1)):
        return None

    def depth_of(node: int) -> int:
        if t.mode[node] == 0:
            return 0
        return 1 + max(depth_of(int(t.left[node])), depth_of(int(t.right[node])))

    depth = max(depth_of(int(r)) for r in t.roots)
    if depth > MAX_PERFECT_DEPTH:
        return None
    depth = max(depth, 1)
    n_inner = 2**depth - 1
    n_trees = t.roots.size
    feat = np.zeros((n_trees, n_inner), np.int32)
    thr = np.full((n_trees, n_inner), np.inf, np.float32)
    leaf = np.zeros((n_trees, n_inner + 1), np.float64)
    for ti, root in enumerate(t.roots):
        stack = [(int(root), 0)]
        while stack:
            node, pos = stack.pop()
            if pos >= n_inner:  # a leaf slot
                leaf[ti, pos - n_inner] = t.value[node]
            elif t.mode[node] == 0:  # leaf above full depth: split on +inf, both sides the leaf
                stack.append((node, 2 * pos + 1))
                stack.append((node, 2 * pos + 2))
            else:
                feat[ti, pos] = t.feature[node]
                thr[ti, pos] = t.threshold[node]
                stack.append((int(t.left[node]), 2 * pos + 1))
                stack.append((int(t.right[node]), 2 * pos + 2))
    return depth, feat, thr, leaf


def _tree_node(model) -> object:
    nodes = [n for n in model.graph.node if n.op_type == "TreeEnsembleRegressor"]
    if len(nodes) != 1:
        raise BundleError(f"expected one TreeEnsembleRegressor node, found {len(nodes)}")
    return nodes[0]


def tree_arrays(onnx_bytes: bytes) -> TreeArrays:
    """Flatten the TreeEnsembleRegressor of an ONNX model for the compiled evaluator."""
    import onnx
    from onnx import helper

    model = onnx.load_model_from_string(onnx_bytes)
    node = _tree_node(model)
    att = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if att.get("aggregate_function", b"SUM") != b"SUM" or att.get("post_transform", b"NONE") != b"NONE":
        raise BundleError("only SUM aggregation without post transform is supported")
    tree_ids = np.asarray(att["nodes_treeids"], np.int64)
    node_ids = np.asarray(att["nodes_nodeids"], np.int64)
    n = tree_ids.size
    key = {(int(t), int(i)): g for g, (t, i) in enumerate(zip(tree_ids, node_ids))}
    true_ids = np.asarray(att["nodes_truenodeids"], np.int64)
    false_ids = np.asarray(att["nodes_falsenodeids"], np.int64)
    modes = np.array([_MODES[m] for m in att["nodes_modes"]], np.int8)
    left = np.full(n, -1, np.int64)
    right = np.full(n, -1, np.int64)
    for g in np.flatnonzero(modes != 0):
        left[g] = key[(int(tree_ids[g]), int(true_ids[g]))]
        right[g] = key[(int(tree_ids[g]), int(false_ids[g]))]
    value = np.zeros(n, np.float64)
    unique_trees = np.unique(tree_ids)
    tree_target = np.zeros(unique_trees.size, np.int64)
    tree_index = {int(t): j for j, t in enumerate(unique_trees)}
    for t, i, tgt, w in zip(att["target_treeids"], att["target_nodeids"], att["target_ids"],
                            att["target_weights"]):
        value[key[(int(t), int(i))]] += float(np.float32(w))
        tree_target[tree_index[int(t)]] = int(tgt)
    roots = np.array([key[(int(t), 0)] for t in unique_trees], np.int64)
    n_targets = int(att.get("n_targets", 1))
    base = np.zeros(n_targets)
    if "base_values" in att:
        base[:] = np.asarray(att["base_values"], np.float32).astype(np.float64)
    n_features = model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
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

"""Learned models (scikit-learn gradient boosting) and their export to one ONNX file.

Training only: importing this module needs scikit-learn and skl2onnx (the ``train`` extra).
Each target gets its own ``GradientBoostingRegressor``; the export merges them into a single
multi-target ``TreeEnsembleRegressor`` (ai.onnx.ml opset 3) so any runtime gets all targets
from one session run. GradientBoostingRegressor converts cleanly with skl2onnx; the parity
test (tests/test_model.py) guards the conversion against version drift. The estimator is
:class:`ala_fast.huber_boosting.HuberLeafGBR`: the same model, with a faster Huber leaf update.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ONNX_OPSET = {"": 17, "ai.onnx.ml": 3}


@dataclass
class BoostingParams:
    n_estimators: int = 400
    learning_rate: float = 0.05
    max_depth: int = 4
    subsample: float = 0.8
    min_samples_leaf: int = 3
    loss: str = "huber"
    extra: dict = field(default_factory=dict)


def fit_boosted(x: np.ndarray, y: np.ndarray, seed: int, params: BoostingParams | None = None,
                sample_weight: np.ndarray | None = None) -> list:
    """One GradientBoostingRegressor per column of ``y`` (deterministic for a seed)."""
    from .huber_boosting import HuberLeafGBR

    p = params or BoostingParams()
    x32 = np.asarray(x, np.float32)
    y = np.atleast_2d(np.asarray(y, np.float64).T).T
    models = []
    for j in range(y.shape[1]):
        m = HuberLeafGBR(
            n_estimators=p.n_estimators, learning_rate=p.learning_rate, max_depth=p.max_depth,
            subsample=p.subsample, min_samples_leaf=p.min_samples_leaf, loss=p.loss,
            random_state=seed + j, **p.extra,
        )
        m.fit(x32, y[:, j], sample_weight=sample_weight)
        models.append(m)
    return models


def predict_sklearn(models: list, x: np.ndarray) -> np.ndarray:
    x32 = np.asarray(x, np.float32)
    return np.stack([m.predict(x32) for m in models], axis=1)


def export_onnx(models: list, n_features: int, name: str = "ala_fast") -> bytes:
    """Merge single-target boosted models into one multi-target ONNX TreeEnsembleRegressor."""
    import onnx
    from onnx import TensorProto, helper
    from skl2onnx import to_onnx

    from .huber_boosting import register_onnx

    register_onnx()

    merged: dict[str, list] = {}
    base_values: list[float] = []
    tree_offset = 0
    probe = np.zeros((1, n_features), np.float32)
    for target, model in enumerate(models):
        part = to_onnx(model, probe, target_opset=ONNX_OPSET)
        nodes = [n for n in part.graph.node if n.op_type == "TreeEnsembleRegressor"]
        if len(nodes) != 1 or len(part.graph.node) != 1:
            raise RuntimeError(
                "skl2onnx produced an unexpected graph "
                f"({[n.op_type for n in part.graph.node]}); pin a version that emits one "
                "TreeEnsembleRegressor per GradientBoostingRegressor"
            )
        att = {a.name: helper.get_attribute_value(a) for a in nodes[0].attribute}
        n_trees = int(np.max(att["nodes_treeids"])) + 1
        for key in ("nodes_treeids", "target_treeids"):
            merged.setdefault(key, []).extend(int(t) + tree_offset for t in att[key])
        for key in ("nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes",
                    "nodes_truenodeids", "nodes_falsenodeids", "target_nodeids", "target_weights"):
            merged.setdefault(key, []).extend(att[key])
        merged.setdefault("target_ids", []).extend([target] * len(att["target_ids"]))
        base_values.extend(att.get("base_values", [0.0]))
        tree_offset += n_trees
    node = helper.make_node(
        "TreeEnsembleRegressor", ["X"], ["Y"], domain="ai.onnx.ml", name="trees",
        n_targets=len(models), base_values=base_values, post_transform="NONE",
        aggregate_function="SUM", **merged,
    )
    graph = helper.make_graph(
        [node], name,
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, len(models)])],
    )
    model = helper.make_model(
        graph, producer_name="ala_fast",
        opset_imports=[helper.make_opsetid(d, v) for d, v in ONNX_OPSET.items()],
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString(deterministic=True)

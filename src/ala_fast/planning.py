"""Which workloads to benchmark next, for a user with a fixed benchmarking budget."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .arrow_input import as_table
from .errors import ValidationError
from .schema import CURVE_KEY, validate

_CONFIG_FIELDS = ("hardware", "num_devices", "framework", "model", "precision", "batch_kind")


def benchmark_next(predictor, candidates, k: int, *, seed: int = 0, steps: int = 3000) -> pa.Table:
    """The ``k`` candidate curves to benchmark so that every candidate lies as close as possible
    (standardised features, as the similarity search sees them) to something benchmarked,
    counting what the predictor's bundle was trained on as already benchmarked.

    ``candidates``: workload rows (canonical columns; ``batch_size`` optional and ignored, a
    curve is a configuration and a request shape). Simulated annealing from a greedy
    farthest-first start (:func:`ala_fast.anneal.benchmark_next`). Returns the chosen curves
    with a ``nearest_distance`` column (before benchmarking them); the table's metadata holds
    the mean nearest distance of all candidates before and after.
    """
    from .anneal import benchmark_next as plan
    from .features import build_features, config_matrix
    from .grouping import group_codes

    raw = as_table(candidates, "benchmark_next")
    if "batch_size" not in raw.column_names:
        raw = raw.append_column("batch_size", pa.array(np.ones(raw.num_rows, np.int64)))
    table = validate(raw, require_throughput=False, where="benchmark_next")
    _, first = group_codes(table, CURVE_KEY)
    keys = table.select(list(CURVE_KEY)).take(first)
    if not 0 < k < keys.num_rows:
        raise ValidationError("k", [0], f"1..{keys.num_rows - 1} (distinct candidate curves "
                              f"minus one), got {k}", "benchmark_next")
    cols = keys.to_pydict()
    x = build_features(config_matrix(*(cols[c] for c in _CONFIG_FIELDS),
                                     inferred=predictor._inferred),
                       np.asarray(cols["input_tokens"], np.float64),
                       np.asarray(cols["output_tokens"], np.float64))
    v = predictor._scaler.transform(x)
    res = plan(predictor._reference.vectors, v, int(k), seed=seed, steps=steps)
    from .neighbors import knn

    near, _ = knn(v[res["chosen"]], predictor._reference, 1)
    out = keys.take(pa.array(res["chosen"])).append_column("nearest_distance", pa.array(near[:, 0]))
    return out.replace_schema_metadata({
        "mean_distance_before": str(res["mean_distance_before"]),
        "mean_distance_after": str(res["mean_distance_after"]),
    })

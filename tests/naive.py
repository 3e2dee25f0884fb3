"""Slow, obviously correct references for the compiled kernels."""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import curve_fit, lsq_linear


def curve(x, a, b, c):
    return c - a * np.exp(-b * x)


def published_curve_fit(x, y):
    """scipy curve_fit with the published settings: bounds a in [0, 1e6], b in [1e-5, 1],
    c in [0, 1e6]; start values from the 10th / 90th percentiles; maxfev 10000."""
    p10, p90 = np.percentile(y, [10, 90])
    p0 = [max(p90 - p10, 1.0), 0.01, p90]
    popt, _ = curve_fit(curve, x, y, p0=p0, bounds=([0, 1e-5, 0], [1e6, 1, 1e6]), maxfev=10000)
    return popt


def bounded_ac(x, y, w, b, a_max=1e6, c_max=1e6):
    """Box-constrained weighted least squares for (a, c) at fixed b with scipy's lsq_linear."""
    sw = np.sqrt(w)
    design = np.stack([-np.exp(-b * x), np.ones_like(x)], axis=1) * sw[:, None]
    res = lsq_linear(design, y * sw, bounds=([0, 0], [a_max, c_max]), tol=1e-14, lsmr_tol="auto",
                     method="bvls")
    a, c = res.x
    return a, c, float(np.sum(w * (y - curve(x, a, b, c)) ** 2))


def brute_force_fit(x, y, w, n_grid=4001):
    """Best (a, b, c) over a very fine log grid of b with exact (a, c) at each b."""
    best = (np.inf, None)
    for b in np.exp(np.linspace(np.log(1e-5), 0.0, n_grid)):
        a, c, f = bounded_ac(x, y, w, b)
        if f < best[0]:
            best = (f, (a, b, c))
    return best[1], best[0]


# ----------------------------------------------------------------------------- neighbours
def knn_brute(q, ref, k, metric):
    if metric == "euclidean":
        d = np.sqrt(((q[:, None, :] - ref[None, :, :]) ** 2).sum(-1))
    else:
        qn = np.linalg.norm(q, axis=1)[:, None]
        rn = np.linalg.norm(ref, axis=1)[None, :]
        den = qn * rn
        with np.errstate(invalid="ignore", divide="ignore"):
            d = np.where(den > 0, 1 - (q @ ref.T) / den, 1.0)
    idx = np.lexsort((np.broadcast_to(np.arange(ref.shape[0]), d.shape), d), axis=1)[:, :k]
    return np.take_along_axis(d, idx, 1), idx


def sequential_pair(q, r):
    """Squared distance and dot product in plain sequential float arithmetic (the definition
    the compiled kernels reproduce bit for bit)."""
    s = dot = 0.0
    for qj, rj in zip(map(float, q), map(float, r)):
        t = qj - rj
        s += t * t
        dot += qj * rj
    return s, dot


def sequential_cosine(dot, qn, rn):
    den = qn * rn
    return 1.0 - dot / den if den > 0.0 else 1.0


def knn_sequential(q, ref, k, metric):
    """Brute force in Python floats: every pair, sorted by (distance, index)."""
    qn = [math.sqrt(sequential_pair(v, np.zeros_like(v))[0]) for v in q]
    rn = [math.sqrt(sequential_pair(v, np.zeros_like(v))[0]) for v in ref]
    dist = np.empty((len(q), k))
    idx = np.empty((len(q), k), np.int64)
    for i, v in enumerate(q):
        pairs = []
        for j, r in enumerate(ref):
            s, dot = sequential_pair(v, r)
            pairs.append((math.sqrt(s) if metric == "euclidean"
                          else sequential_cosine(dot, qn[i], rn[j]), j))
        pairs.sort()
        dist[i] = [d for d, _ in pairs[:k]]
        idx[i] = [j for _, j in pairs[:k]]
    return dist, idx


# ----------------------------------------------------------------------------- annealing
MASK = (1 << 64) - 1


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def uniform(state):
    state, z = splitmix64(state)
    return state, (z >> 11) * (1.0 / 9007199254740992.0)


def objective(kind, dist, base, member, chosen, lam):
    k = len(chosen)
    if kind == 0:
        hard = div = 0.0
        for s in chosen:
            outs = [dist[s, j] for j in range(dist.shape[0]) if not member[j]]
            ins = [dist[s, j] for j in range(dist.shape[0]) if member[j] and j != s]
            hard += min(outs) if outs else 0.0
            div += min(ins) if ins else 0.0
        return (hard + lam * div) / k
    total = 0.0
    for q in range(dist.shape[0]):
        total += min([base[q]] + [dist[q, s] for s in chosen])
    return -total / dist.shape[0]


def anneal_reference(kind, dist, base, start, steps, t0, t1, lam, seed):
    """Pure-Python twin of ala_fast._kernels.anneal.anneal (same RNG, moves, schedule)."""
    import math

    m, k = dist.shape[1], len(start)
    chosen = list(int(v) for v in start)
    member = [False] * m
    for s in chosen:
        member[s] = True
    current = objective(kind, dist, base, member, chosen, lam)
    first = best = current
    best_chosen = list(chosen)
    state, accepted = seed, 0
    for t in range(steps):
        temp = t0 * (t1 / t0) ** (t / max(steps - 1, 1))
        state, u = uniform(state)
        a = int(u * k)
        state, u = uniform(state)
        target = int(u * (m - k))
        j = [c for c in range(m) if not member[c]][target]
        old = chosen[a]
        member[old], member[j], chosen[a] = False, True, j
        value = objective(kind, dist, base, member, chosen, lam)
        delta = value - current
        state, u = uniform(state)
        if delta >= 0.0 or u < math.exp(delta / temp):
            current = value
            accepted += 1
            if value > best:
                best, best_chosen = value, list(chosen)
        else:
            member[j], member[old], chosen[a] = False, True, old
    return np.array(best_chosen), best, first, accepted


# ----------------------------------------------------------------------------- features
def build_features_numpy(cfg, ii, oo):
    """NumPy reference of the compiled feature kernel (same formulas, whole columns)."""
    from ala_fast._kernels.features import MEM_USABLE
    from ala_fast.features import _C

    cfg = np.atleast_2d(cfg)
    nd = cfg[:, _C["num_devices"]]
    weight_gb = cfg[:, _C["params_b"]] * cfg[:, _C["bytes_per_weight"]]
    kv_free_gb = np.maximum(cfg[:, _C["mem_gb"]] * nd * MEM_USABLE - weight_gb, 0.05 * weight_gb)
    kv_per_token = 2.0 * cfg[:, _C["layers"]] * cfg[:, _C["kv_dim"]] * cfg[:, _C["kv_bytes"]]
    kv_batch = kv_free_gb * 1e9 / (kv_per_token * (ii + oo))
    active_bytes = cfg[:, _C["active_b"]] * 1e9 * cfg[:, _C["bytes_per_weight"]]
    decode_rate = nd * cfg[:, _C["mem_bw_tbs"]] * 1e12 / active_bytes
    compute_rate = nd * cfg[:, _C["tflops"]] * 1e12 / (2.0 * cfg[:, _C["active_b"]] * 1e9)
    link = cfg[:, _C["tp_link_gbs"]]
    with np.errstate(divide="ignore", invalid="ignore"):
        comm_rate = link * 1e9 / (4.0 * cfg[:, _C["layers"]] * cfg[:, _C["hidden"]] * 2.0
                                  * (nd - 1.0) / nd)
    comm_per_compute = np.where((link > 0) & (nd > 1), compute_rate / comm_rate, 0.0)
    batch1 = oo / (ii / compute_rate + oo / decode_rate)
    token_rate = 1.0 / (1.0 / compute_rate + comm_per_compute / compute_rate)
    plateau = np.minimum(token_rate * oo / (ii + oo), batch1 * np.maximum(kv_batch, 1.0))
    knee = np.maximum(plateau / batch1, 1.0)
    cols = [
        ii, oo, np.log1p(ii), np.log1p(oo), np.log1p(ii / oo), ii / (oo + 1.0), ii / (ii + 1.0),
        *(cfg[:, j] for j in range(cfg.shape[1])),
        np.log(weight_gb / nd), np.log(kv_free_gb), np.log(kv_batch), np.log(decode_rate),
        np.log(compute_rate), np.log(batch1), np.log(plateau), np.log(knee),
        np.log(nd * cfg[:, _C["tflops"]]), np.log(nd * cfg[:, _C["mem_bw_tbs"]]),
        np.log1p(comm_per_compute),
    ]
    return np.stack(cols, axis=1)


def memory_batch_limit_loop(cfg, ii, oo):
    """Plain-Python reference of ``_kernels.features.memory_batch_limits``: per row, the
    sequences of ii + oo tokens whose KV cache fits beside the weights (0 if they do not fit)."""
    from ala_fast._kernels.features import MEM_USABLE
    from ala_fast.features import _C

    out = []
    for row, i, o in zip(np.atleast_2d(cfg), ii, oo):
        c = {name: float(row[k]) for name, k in _C.items()}
        left_bytes = (c["mem_gb"] * c["num_devices"] * MEM_USABLE
                      - c["params_b"] * c["bytes_per_weight"]) * 1e9
        per_sequence = 2.0 * c["layers"] * c["kv_dim"] * c["kv_bytes"] * (i + o)
        out.append(math.floor(left_bytes / per_sequence) if left_bytes > 0 else 0)
    return np.array(out, np.int64)


# --------------------------------------------------------------------------- tree arrays
def tree_arrays_loop(onnx_bytes: bytes) -> dict:
    """Reference for onnx_trees.tree_arrays: the ONNX attributes flattened node by node with
    Python dictionaries and a recursive walk (the original implementation)."""
    import onnx
    from onnx import helper

    modes_of = {b"LEAF": 0, b"BRANCH_LEQ": 1, b"BRANCH_LT": 2, b"BRANCH_GTE": 3,
                b"BRANCH_GT": 4, b"BRANCH_EQ": 5, b"BRANCH_NEQ": 6}
    model = onnx.load_model_from_string(onnx_bytes)
    (node,) = [n for n in model.graph.node if n.op_type == "TreeEnsembleRegressor"]
    att = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    tree_ids, node_ids = att["nodes_treeids"], att["nodes_nodeids"]
    n = len(tree_ids)
    key = {(t, i): g for g, (t, i) in enumerate(zip(tree_ids, node_ids))}
    mode = [modes_of[m] for m in att["nodes_modes"]]
    left, right = [-1] * n, [-1] * n
    for g in range(n):
        if mode[g] != 0:
            left[g] = key[(tree_ids[g], att["nodes_truenodeids"][g])]
            right[g] = key[(tree_ids[g], att["nodes_falsenodeids"][g])]
    value = [0.0] * n
    trees = sorted(set(tree_ids))
    tree_target = {}
    for t, i, tgt, w in zip(att["target_treeids"], att["target_nodeids"], att["target_ids"],
                            att["target_weights"]):
        value[key[(t, i)]] += float(np.float32(w))
        tree_target[t] = tgt
    roots = [key[(t, 0)] for t in trees]

    def depth_of(g):
        return 0 if mode[g] == 0 else 1 + max(depth_of(left[g]), depth_of(right[g]))

    depth = max(1, max(depth_of(r) for r in roots))
    n_inner = 2**depth - 1
    feat = np.zeros((len(trees), n_inner), np.int32)
    thr = np.full((len(trees), n_inner), np.inf, np.float32)
    leaf = np.zeros((len(trees), n_inner + 1))
    for ti, root in enumerate(roots):
        stack = [(root, 0)]
        while stack:
            g, pos = stack.pop()
            if pos >= n_inner:
                leaf[ti, pos - n_inner] = value[g]
            elif mode[g] == 0:
                stack += [(g, 2 * pos + 1), (g, 2 * pos + 2)]
            else:
                feat[ti, pos] = att["nodes_featureids"][g]
                thr[ti, pos] = np.float32(att["nodes_values"][g])
                stack += [(left[g], 2 * pos + 1), (right[g], 2 * pos + 2)]
    return dict(roots=roots, tree_target=[tree_target[t] for t in trees], mode=mode, left=left,
                right=right, value=value, depth=depth, feat=feat, thr=thr, leaf=leaf)


def perfect_trees_walk(x, depth, feat, thr, leaf, tree_target, base):
    """Row by row, tree by tree, one node at a time: the perfect-tree layout's definition
    (children 2n + 1 when x <= threshold, else 2n + 2; leaves in tree order from the base)."""
    n_inner = 2**depth - 1
    out = np.empty((x.shape[0], base.size))
    for i in range(x.shape[0]):
        row = [float(v) for v in base]
        for t in range(feat.shape[0]):
            n = 0
            for _ in range(depth):
                n = 2 * n + 1 if x[i, feat[t, n]] <= thr[t, n] else 2 * n + 2
            row[tree_target[t]] += float(leaf[t, n - n_inner])
        out[i] = row
    return out


def stack_effect(log_i, log_o, dev, weight, prior, qi, qo):
    """The shape effect of a software stack at one query shape (``learner.StackProfile``), by
    its definition: per target, the smallest value among the deviations and a pseudo-point 0
    of weight ``prior`` whose own weight and that of every smaller value reach half the total
    kernel weight."""
    kw = [w * math.exp(-abs(a - qi) - abs(b - qo)) for a, b, w in zip(log_i, log_o, weight)]
    out = []
    for t in range(3):
        values = [float(d[t]) for d in dev] + [0.0]
        weights = kw + [prior]
        total = sum(weights)
        out.append(min(v for v in values
                       if sum(w for u, w in zip(values, weights) if u <= v) >= total / 2))
    return np.array(out)

"""Evaluation protocols (DESIGN.md section 4) on any canonical table.

P0 curve fit and P2 unseen batch sizes live here; P1 (unseen request shape) and P3 (unseen
configuration) need the learned model and live in :mod:`ala_fast.protocols`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .curves import DEFAULT_LOSS, evaluate as eval_curve, fit_segments
from .grouping import group_codes, segments
from .metrics import ape, ape_summary
from .schema import CURVE_KEY, validate

MIN_POINTS_EVAL = 4


def _curves(table: pa.Table):
    codes, _ = group_codes(table, CURVE_KEY)
    bb = table.column("batch_size").to_numpy().astype(np.float64)
    y = table.column("throughput").to_numpy()
    order, offsets = segments(codes, bb)
    return bb[order], y[order], offsets


def protocol_p0(table: pa.Table, loss: str = DEFAULT_LOSS) -> dict:
    """Fit every curve with >= 4 batch sizes on its own points; APE on those points."""
    table = validate(table, require_throughput=True, where="P0")
    x, y, off = _curves(table)
    keep = np.flatnonzero(np.diff(off) >= MIN_POINTS_EVAL)
    xs = [x[off[k]:off[k + 1]] for k in keep]
    ys = [y[off[k]:off[k + 1]] for k in keep]
    if not xs:
        return {"protocol": "P0", "loss": loss, "curves": 0, **ape_summary(np.zeros(0))}
    sub_off = np.concatenate([[0], np.cumsum([len(v) for v in xs])])
    xx, yy = np.concatenate(xs), np.concatenate(ys)
    p = fit_segments(xx, yy, sub_off, loss)
    seg = np.repeat(np.arange(len(xs)), np.diff(sub_off))
    pred = eval_curve(p[seg, 0], p[seg, 1], p[seg, 2], xx)
    return {"protocol": "P0", "loss": loss, "curves": len(xs), **ape_summary(ape(pred, yy))}


def protocol_p2(table: pa.Table, loss: str = DEFAULT_LOSS) -> dict:
    """Fit each curve (>= 4 batch sizes) on its smaller ceil(n/2) batch sizes, predict the rest."""
    table = validate(table, require_throughput=True, where="P2")
    x, y, off = _curves(table)
    fit_x, fit_y, test_x, test_y, test_seg, sizes = [], [], [], [], [], []
    for k in np.flatnonzero(np.diff(off) >= MIN_POINTS_EVAL):
        cx, cy = x[off[k]:off[k + 1]], y[off[k]:off[k + 1]]
        h = (cx.size + 1) // 2
        fit_x.append(cx[:h]); fit_y.append(cy[:h])
        test_x.append(cx[h:]); test_y.append(cy[h:])
        test_seg.append(np.full(cx.size - h, len(sizes)))
        sizes.append(h)
    if not sizes:
        return {"protocol": "P2", "loss": loss, "curves": 0, **ape_summary(np.zeros(0))}
    sub_off = np.concatenate([[0], np.cumsum(sizes)])
    p = fit_segments(np.concatenate(fit_x), np.concatenate(fit_y), sub_off, loss)
    seg = np.concatenate(test_seg)
    tx, ty = np.concatenate(test_x), np.concatenate(test_y)
    pred = eval_curve(p[seg, 0], p[seg, 1], p[seg, 2], tx)
    return {"protocol": "P2", "loss": loss, "curves": len(sizes), **ape_summary(ape(pred, ty))}


def _halves(x: np.ndarray, y: np.ndarray, off: np.ndarray, k: int):
    """The smaller ceil(n/2) batch sizes of curve ``k`` (the measured half) and the rest."""
    cx, cy = x[off[k]:off[k + 1]], y[off[k]:off[k + 1]]
    h = (cx.size + 1) // 2
    return cx[:h], cy[:h], cx[h:], cy[h:]


def protocol_p2_ala_fast(table: pa.Table, seed: int = 0, loss: str = DEFAULT_LOSS) -> dict:
    """P2 as the predictor answers it: each curve (>= 4 batch sizes) known only at its smaller
    half, every other curve known in full.

    A half of >= ``MIN_POINTS_TRAIN`` batch sizes is served as fitted, and beyond its largest
    measured batch it continues along the learned continuation scaled to meet the fit there
    (:func:`learner.extrapolation_targets`, :func:`learner.continuation_scales`, the rule of
    ``Predictor``); a shorter half is a short curve, answered by the learned curve moved
    toward its points (the same ridge fit). The learned prior of a curve comes from a model
    whose P1 fold left that curve out, as in training.
    """
    from .learner import (
        MIN_POINTS_TRAIN, anchor_only, continuation_scales, curve_set, extrapolation_targets,
        trainable,
    )
    from .curves import fit_curves
    from .targets import T1_FLOOR, targets_to_params

    table = validate(table, require_throughput=True, where="P2")
    curves = curve_set(fit_curves(table, loss=loss))
    x, y, off = _curves(table)  # segment k is curve k (group_codes order)
    elig = np.flatnonzero(np.diff(off) >= MIN_POINTS_EVAL)
    if elig.size == 0:
        return {"protocol": "P2", "loss": loss, "curves": 0, **ape_summary(np.zeros(0))}
    halves = [_halves(x, y, off, k) for k in elig]
    known = np.union1d(trainable(curves), anchor_only(curves))
    z = extrapolation_targets(curves, elig, known, [h[0] for h in halves],
                              [h[1] for h in halves], seed)
    cont = targets_to_params(z, curves.roof_batch1[elig], curves.roof_knee[elig])
    sizes = np.array([h[0].size for h in halves])
    fit = fit_segments(np.concatenate([h[0] for h in halves]),
                       np.concatenate([h[1] for h in halves]),
                       np.concatenate([[0], np.cumsum(sizes)]), loss)
    lo = np.array([h[0][0] for h in halves])
    hi = np.array([h[0][-1] for h in halves])
    _, s_hi = continuation_scales((fit[:, 0], fit[:, 1], fit[:, 2]), cont, lo, hi)
    served = sizes >= MIN_POINTS_TRAIN
    preds, actual = [], []
    for j, (_, _, tx, ty) in enumerate(halves):
        p = eval_curve(cont[0][j], cont[1][j], cont[2][j], tx)
        if served[j]:
            p = np.maximum(p * s_hi[j], T1_FLOOR * fit[j, 2])
        preds.append(p)
        actual.append(ty)
    return {"protocol": "P2", "loss": loss, "curves": int(elig.size),
            **ape_summary(ape(np.concatenate(preds), np.concatenate(actual)))}


def run_all(paths: list[str], protocols: list[str] | None = None,
            methods: tuple[str, ...] = ("ala_fast", "published", "direct_gbr", "nn_params"),
            seed: int = 0, source: str | None = None, progress: bool = False,
            uncertainty: bool = True, keep_rows: bool = False,
            n_jobs: int | None = 1) -> list[dict]:
    """Every requested protocol on every file (one data source each); JSON-ready results.

    ``keep_rows``: keep each P1/P3 result's per-row arrays under ``"_rows"`` (actual, per
    method predictions, interval, fold, curve) for figures; :func:`to_json` leaves them out.
    """
    import warnings
    from pathlib import Path

    from .protocols import run_protocol
    from .readers import read_benchmarks

    protocols = protocols or ["P0", "P2", "P1", "P3", "P3-model"]
    results = []
    for path in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = read_benchmarks(path, source=source)
        name = Path(path).parent.name or Path(path).stem
        for proto in protocols:
            if proto in ("P0", "P2"):
                fn = protocol_p0 if proto == "P0" else protocol_p2
                per_loss = {f"curve fit, loss={loss}": fn(table, loss) for loss in ("l2", "relative")}
                if proto == "P2" and "ala_fast" in methods:
                    per_loss["ala_fast"] = protocol_p2_ala_fast(table, seed)
                r = {"protocol": f"{proto} ({'curve fit' if proto == 'P0' else 'unseen batch sizes'})",
                     "rows": next(iter(per_loss.values()))["rows"],
                     "curves": next(iter(per_loss.values()))["curves"],
                     "methods": {k: {kk: vv for kk, vv in v.items() if kk.endswith("_ape")}
                                 for k, v in per_loss.items()}}
            else:
                by = "model" if proto == "P3-model" else "hardware"
                r = run_protocol(table, proto[:2], seed=seed, methods=methods, by=by,
                                 progress=progress, uncertainty=uncertainty, n_jobs=n_jobs)
                if keep_rows:
                    r["_rows"]["table"] = table
                else:
                    r.pop("_rows")
            r["source"] = name
            results.append(r)
    return results

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
from .report_tables import DEFAULT_PROTOCOLS, EXTRA_COLUMNS, P3_BY
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


def protocol_p2_ala_fast(table: pa.Table, seed: int = 0, loss: str = DEFAULT_LOSS,
                         coverage: float = 0.9) -> dict:
    """P2 as the predictor answers it (:func:`continuation.holdout`): each curve (>= 4 batch
    sizes) known only at its smaller half, every other curve known in full; the learned prior
    of a curve comes from a model whose P1 fold left that curve out, as in training.

    The interval is calibrated as in training (:func:`continuation.band_quantiles`) but
    cross-fitted: the rows of one P1 fold get the quantiles of the other folds' rows. Reports
    coverage, mean / median relative width and the rank correlation of ``expected_ape`` with
    the actual APE, as P1 and P3 do.
    """
    from .continuation import (
        band_quantiles, band_typical_error, continuation_prior, distance_band, holdout,
    )
    from .curves import fit_curves
    from .learner import anchor_only, curve_set, trainable
    from .metrics import spearman
    from .protocols import folds_p1
    from .uncertainty import SIGMA_FLOOR, expected_ape, interval

    table = validate(table, require_throughput=True, where="P2")
    curves = curve_set(fit_curves(table, loss=loss))
    x, y, off = _curves(table)  # segment k is curve k (group_codes order), batch sizes sorted
    elig = np.flatnonzero(np.diff(off) >= MIN_POINTS_EVAL)
    if elig.size == 0:
        return {"protocol": "P2", "loss": loss, "curves": 0, **ape_summary(np.zeros(0))}
    known = np.union1d(trainable(curves), anchor_only(curves))
    curves = curves.described_from(known)  # as training describes them
    known = known[curves.plausible[known]]
    prior = continuation_prior(curves, elig, known, seed)
    h = holdout(curves, elig, prior, [x[off[k]:off[k + 1]] for k in elig],
                [y[off[k]:off[k + 1]] for k in elig], loss)
    fold = folds_p1(curves.keys.take(pa.array(elig)), seed)[h.curve]
    scores, band = h.scores(), distance_band(h.distance)
    half, sigma = np.empty(scores.size), np.empty(scores.size)
    for f in np.unique(fold):
        rest = fold != f
        half[~rest] = band_quantiles(scores[rest], h.distance[rest], coverage)[band[~rest]]
        sigma[~rest] = np.maximum(band_typical_error(scores[rest], h.distance[rest]),
                                  SIGMA_FLOOR)[band[~rest]]
    err = ape(h.pred, h.actual)
    lo, hi = interval(h.pred, half)
    width = (hi - lo) / h.pred
    return {"protocol": "P2", "loss": loss, "curves": int(elig.size), **ape_summary(err),
            "coverage": float(np.mean((h.actual >= lo) & (h.actual <= hi))),
            "rel_width": float(np.mean(width)), "median_rel_width": float(np.median(width)),
            "rank_corr": spearman(expected_ape(sigma), err)}


HIDDEN = ("hardware", "model")  # what hide_names can hide


def _size_label(billions: float) -> str:
    return f"{float(f'{billions:.2g}'):g}b"


def hide_names(table: pa.Table, what: str) -> pa.Table:
    """The table with every ``what`` ("hardware" or "model") under a name the catalog does not
    know: hardware as ``device-<k>``, one per spelling (no vendor, no memory size; two
    spellings of one chip can be two measured systems), models, one per catalog entry,
    as ``model-<k>-<size>`` with the size their names usually state (``model-3-70b``,
    ``model-5-47b-a13b`` for 47B parameters of which 13B active; none for a model the catalog
    does not know either). Measures how the method does on names from outside the catalog."""
    from .catalog import hardware_spelling, model_id, resolve_model

    if what not in HIDDEN:
        raise ValueError(f"hide_names: what must be one of {HIDDEN}, got {what!r}")
    names = table.column(what).to_pylist()
    ident = hardware_spelling if what == "hardware" else model_id
    ids = sorted({ident(n) for n in names})
    label = {}
    for k, i in enumerate(ids, 1):
        if what == "hardware":
            label[i] = f"device-{k}"
            continue
        m = resolve_model(i)
        size = "" if m is None else "-" + _size_label(m.params_b) + (
            "-a" + _size_label(m.active_b) if m.active_b < m.params_b else "")
        label[i] = f"model-{k}{size}"
    column = pa.array([label[ident(n)] for n in names], pa.string())
    return table.set_column(table.schema.get_field_index(what), what, column)


def run_all(paths: list[str], protocols: list[str] | None = None,
            methods: tuple[str, ...] = ("ala_fast", "published", "direct_gbr", "nn_params"),
            seed: int = 0, source: str | None = None, progress: bool = False,
            uncertainty: bool = True, keep_rows: bool = False,
            n_jobs: int | None = 1, hide: str | None = None) -> list[dict]:
    """Every requested protocol on every file (one data source each); JSON-ready results.

    ``keep_rows``: keep each P1/P3 result's per-row arrays under ``"_rows"`` (actual, per
    method predictions, interval, fold, curve) for figures; :func:`to_json` leaves them out.
    ``hide``: "hardware" or "model" evaluates on the tables with those names hidden from the
    catalog (:func:`hide_names`).
    """
    import warnings
    from pathlib import Path

    from .protocols import run_protocol
    from .readers import read_benchmarks

    protocols = protocols or list(DEFAULT_PROTOCOLS)
    results = []
    for path in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = read_benchmarks(path, source=source)
        name = Path(path).parent.name or Path(path).stem
        if hide is not None:
            table = hide_names(table, hide)
            name += f" ({hide} names hidden from the catalog)"
        for proto in protocols:
            if proto in ("P0", "P2"):
                fn = protocol_p0 if proto == "P0" else protocol_p2
                per_loss = {f"curve fit, loss={loss}": fn(table, loss) for loss in ("l2", "relative")}
                if proto == "P2" and "ala_fast" in methods:
                    per_loss["ala_fast"] = protocol_p2_ala_fast(table, seed)
                r = {"protocol": f"{proto} ({'curve fit' if proto == 'P0' else 'unseen batch sizes'})",
                     "rows": next(iter(per_loss.values()))["rows"],
                     "curves": next(iter(per_loss.values()))["curves"],
                     "methods": {k: {kk: vv for kk, vv in v.items() if kk.endswith("_ape")
                                     or kk in EXTRA_COLUMNS} for k, v in per_loss.items()}}
            else:
                by = P3_BY.get(proto, "hardware")
                r = run_protocol(table, proto[:2], seed=seed, methods=methods, by=by,
                                 progress=progress, uncertainty=uncertainty, n_jobs=n_jobs)
                if keep_rows:
                    r["_rows"]["table"] = table
                else:
                    r.pop("_rows")
            r["source"] = name
            results.append(r)
    return results

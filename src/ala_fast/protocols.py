"""P1 (unseen request shape) and P3 (unseen configuration) with the baselines on the same folds.

Folds
- P1: within every configuration its curves are dealt to folds in a seeded random order, so each
  fold holds out at most one (ii, oo) per configuration: for every configuration this is exactly
  "leave one (ii, oo) out", while the pooled models still see that (ii, oo) elsewhere.
- P3: one fold per hardware type (``by="hardware"``), per model (``by="model"``) or per
  framework (``by="framework"``: an unseen software stack), after alias resolution ("Intel PVC
  GPU" and "Intel Max 1550" are one device).

Methods (DESIGN.md section 4)
- ``ala_fast``: pooled boosted trees on configuration + roofline features -> curve targets.
- ``published``: ARISE per configuration: curve_fit parameters (l2) and one boosted model per
  configuration and parameter on the seven (ii, oo) features. No answer for an unseen
  configuration (reported as coverage 0 under P3).
- ``direct_gbr``: pooled boosted trees straight on log throughput (features + batch size).
- ``nn_params``: the analytical curve with the parameters of the nearest training curve
  (Euclidean, standardised features).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .catalog import hardware_id, model_id, normalise_framework
from .curves import DEFAULT_LOSS, evaluate as eval_curve, fit_curves
from .features import SHAPE_FEATURES
from .grouping import group_codes
from .learner import (
    CurveSet, anchor_only, curve_config_keys, curve_configs, curve_set, fit_learned,
    params_from_outputs, trainable,
)
from .metrics import ape, ape_summary, spearman
from .progress import Progress
from .schema import CURVE_KEY, validate

METHODS = ("ala_fast", "published", "direct_gbr", "nn_params")
PUBLISHED_TREES = 300  # per parameter; with <= 5 curves per configuration more trees change nothing


def _config_codes(keys: pa.Table) -> np.ndarray:
    ids = curve_config_keys(keys)
    uniq = {k: i for i, k in enumerate(dict.fromkeys(ids))}
    return np.array([uniq[k] for k in ids], np.int64)


def folds_p1(keys: pa.Table, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cfg = _config_codes(keys)
    fold = np.empty(cfg.size, np.int64)
    for g in np.unique(cfg):
        idx = np.flatnonzero(cfg == g)
        fold[idx] = rng.permutation(idx.size)
    return fold


def folds_p3(keys: pa.Table, by: str = "hardware") -> tuple[np.ndarray, list[str]]:
    resolve = {"hardware": hardware_id, "model": model_id,
               "framework": normalise_framework}.get(by)
    if resolve is None:
        raise ValueError(f"P3 leaves out hardware, model or framework, got by={by!r}")
    names = [resolve(v) for v in keys.column(by).to_pylist()]
    uniq = sorted(set(names))
    lookup = {n: i for i, n in enumerate(uniq)}
    return np.array([lookup[n] for n in names], np.int64), uniq


# --------------------------------------------------------------------------- methods
def _standardise(train_x: np.ndarray, *others: np.ndarray):
    mu = train_x.mean(axis=0)
    sd = train_x.std(axis=0)
    sd[sd == 0] = 1.0
    return [(m - mu) / sd for m in (train_x, *others)]


def method_ala_fast(curves: CurveSet, train: np.ndarray, test: np.ndarray, seed: int,
                    known: np.ndarray | None = None, **_):
    """Pooled trees on ``train`` anchored by every ``known`` curve (default: ``train``)."""
    learned = fit_learned(curves, train if known is None else known, seed)
    z = learned.predict_targets(curves.x[test], curve_configs(curves.keys.take(pa.array(test))))
    return params_from_outputs(z, curves.roof_batch1[test], curves.roof_knee[test])


def method_nn_params(curves: CurveSet, train: np.ndarray, test: np.ndarray, **_):
    tr, te = _standardise(curves.x[train], curves.x[test])
    d = ((te[:, None, :] - tr[None, :, :]) ** 2).sum(axis=2)
    nearest = train[np.argmin(d, axis=1)]
    return curves.a[nearest], curves.b[nearest], curves.c[nearest]


def method_published(curves: CurveSet, train: np.ndarray, test: np.ndarray, seed: int,
                     l2: CurveSet, cfg_codes: np.ndarray, **_):
    """Per configuration boosted trees on the 7 (ii, oo) features; NaN where it has no model."""
    from sklearn.ensemble import GradientBoostingRegressor

    shape_cols = list(range(len(SHAPE_FEATURES)))
    out = np.full((test.size, 3), np.nan)
    for g in np.unique(cfg_codes[test]):
        tr = train[cfg_codes[train] == g]
        te_mask = cfg_codes[test] == g
        if tr.size == 0:
            continue  # unseen configuration: the published method has no answer
        xt = l2.x[tr][:, shape_cols].astype(np.float32)
        xq = l2.x[test[te_mask]][:, shape_cols].astype(np.float32)
        for j, target in enumerate((l2.a, l2.b, l2.c)):
            if tr.size == 1:
                out[te_mask, j] = target[tr[0]]
                continue
            m = GradientBoostingRegressor(n_estimators=PUBLISHED_TREES, random_state=seed)
            m.fit(xt, target[tr])
            out[te_mask, j] = m.predict(xq)
    return np.maximum(out[:, 0], 0), np.clip(out[:, 1], 1e-5, 1), np.maximum(out[:, 2], 0)


def _fold_uncertainty(curves: CurveSet, rows_data, train, known, test, rows, pos, pred, seed,
                      coverage, n_jobs=1):
    """Interval and expected APE for the held-out rows, from the fold's known curves only
    (``train``: those the trees learn from; ``known``: those plus the short anchoring curves)."""
    from .augment import predict_sklearn
    from .uncertainty import (
        LEVEL_COLUMN, config_counts, error_output, expected_ape, extrapolation,
        fit_uncertainty, half_width, interval, level_quantiles, observed_ranges,
        sigma_from_outputs, similarity_features,
    )

    unc = fit_uncertainty(curves, rows_data, train, seed, known=known, n_jobs=n_jobs)
    configs = curve_config_keys(curves.keys)
    sim = similarity_features(unc.scaler.transform(curves.x[test]),
                              unc.scaler.transform(curves.x[train]),
                              [configs[i] for i in test],
                              config_counts([configs[i] for i in train], curves.inferred))
    bb = rows_data[1][rows]
    ex = np.column_stack([curves.x[test][pos], sim[pos], np.log(bb)])
    level = ex[:, LEVEL_COLUMN].astype(np.int64)
    sigma = sigma_from_outputs(predict_sklearn(unc.error_models, ex), error_output(level))
    q = level_quantiles(unc.calibration_scores, unc.calibration_levels, coverage)
    # beyond the request shapes and batch sizes of the fold's benchmarked rows, as a bundle
    # trained on them would answer
    codes = rows_data[0]
    seen = np.flatnonzero(np.isin(codes, known))
    ranges = observed_ranges(curves.x[codes[seen], 0], curves.x[codes[seen], 1],
                             rows_data[1][seen])
    beyond = extrapolation(ranges, curves.x[test][pos, 0], curves.x[test][pos, 1], bb)
    rounds = unc.beyond
    sigma_all, half = rounds.slopes(q, coverage).widen(sigma, half_width(q, level, sigma),
                                                       beyond)
    lo, hi = interval(pred, half)
    return (lo, hi, expected_ape(sigma_all), sigma, beyond, level.astype(np.float64),
            (unc.calibration_scores, unc.calibration_levels, rounds))


# --------------------------------------------------------------------------- driver
def _row_features_direct(curves: CurveSet, curve_of_row: np.ndarray, bb: np.ndarray) -> np.ndarray:
    return np.column_stack([curves.x[curve_of_row], np.log(bb), bb])


def run_protocol(
    table: pa.Table,
    protocol: str,
    *,
    seed: int = 0,
    methods: tuple[str, ...] = METHODS,
    by: str = "hardware",
    loss: str = DEFAULT_LOSS,
    progress: bool | None = None,
    uncertainty: bool = False,
    coverage: float = 0.9,
    n_jobs: int | None = 1,
) -> dict:
    """Run P1 or P3 on a canonical table; returns metrics per method plus row-level arrays.

    With ``uncertainty=True`` every fold also fits the uncertainty model on its training curves
    only (hold-out rounds, error predictor, conformal calibration) and the ``ala_fast`` entry
    reports the empirical coverage and mean relative width of the interval at ``coverage`` and
    the rank correlation of expected and actual APE on the held-out rows. ``n_jobs`` worker
    processes run the uncertainty's hold-out rounds (same result for any value).
    """
    from .augment import fit_boosted, predict_sklearn

    table = validate(table, require_throughput=True, where=protocol)
    params = fit_curves(table, loss=loss)
    curves = curve_set(params)
    l2 = curve_set(fit_curves(table, loss="l2")) if "published" in methods else None
    codes, _ = group_codes(table, CURVE_KEY)
    bb = table.column("batch_size").to_numpy().astype(np.float64)
    y = table.column("throughput").to_numpy()
    cfg_codes = _config_codes(curves.keys)
    if protocol == "P1":
        fold = folds_p1(curves.keys, seed)
        fold_names = [f"fold {i}" for i in range(int(fold.max()) + 1)]
    elif protocol == "P3":
        fold, fold_names = folds_p3(curves.keys, by)
    else:
        raise ValueError(f"protocol must be P1 or P3, got {protocol!r}")
    usable = np.zeros(len(curves), bool)
    usable[trainable(curves)] = True
    anchoring = usable.copy()  # short curves do not train the trees but anchor their configuration
    anchoring[anchor_only(curves)] = True
    preds = {m: np.full(y.size, np.nan) for m in methods}
    extra: dict[str, np.ndarray] = {}
    calibration: dict[int, tuple] = {}  # per fold: conformal scores and their novelty levels
    bar = Progress(len(fold_names), f"{protocol} folds", enabled=progress)
    for f in range(len(fold_names)):
        test = np.flatnonzero(fold == f)
        train = np.flatnonzero((fold != f) & usable)
        known = np.flatnonzero((fold != f) & anchoring)
        rows = np.flatnonzero(np.isin(codes, test))
        if test.size == 0 or train.size == 0 or rows.size == 0:
            bar.update()
            continue
        pos = np.searchsorted(test, codes[rows])  # test is sorted: position of each row's curve
        fc = curves.described_from(known)  # devices the catalog lacks: from this fold's curves
        train, known = train[fc.plausible[train]], known[fc.plausible[known]]
        for m in methods:
            if m == "direct_gbr":
                train_rows = np.flatnonzero(np.isin(codes, train))
                model = fit_boosted(_row_features_direct(fc, codes[train_rows], bb[train_rows]),
                                    np.log(y[train_rows]), seed)
                p = np.exp(predict_sklearn(model, _row_features_direct(fc, codes[rows], bb[rows]))[:, 0])
                preds[m][rows] = p
                continue
            fn = {"ala_fast": method_ala_fast, "published": method_published,
                  "nn_params": method_nn_params}[m]
            a, b, c = fn(fc, train, test, seed=seed, l2=l2, cfg_codes=cfg_codes, known=known)
            preds[m][rows] = eval_curve(a[pos], b[pos], c[pos], bb[rows])
        if uncertainty and "ala_fast" in methods:
            lo, hi, eape, sigma, beyond, level, calibration[f] = _fold_uncertainty(
                fc, (codes, bb, y), train, known, test, rows, pos, preds["ala_fast"][rows], seed,
                coverage, n_jobs)
            for name, values in (("lower", lo), ("upper", hi), ("expected_ape", eape),
                                 ("sigma", sigma), ("beyond", beyond), ("level", level)):
                extra.setdefault(name, np.full(y.size, np.nan))[rows] = values
        bar.update()
    bar.close()
    results = {"protocol": protocol if protocol == "P1" else f"P3 (leave one {by} out)",
               "rows": int(y.size), "folds": len(fold_names), "methods": {}}
    for m in methods:
        p = preds[m]
        answered = np.isfinite(p)
        summary = ape_summary(ape(p[answered], y[answered]))
        summary["answered"] = float(answered.mean())
        if m == "ala_fast" and "lower" in extra:
            lo, hi = extra["lower"], extra["upper"]
            ok = np.isfinite(lo) & answered
            summary["coverage"] = float(np.mean((y[ok] >= lo[ok]) & (y[ok] <= hi[ok])))
            width = (hi[ok] - lo[ok]) / p[ok]
            summary["rel_width"] = float(np.mean(width))
            summary["median_rel_width"] = float(np.median(width))
            summary["rank_corr"] = spearman(extra["expected_ape"][ok], ape(p[ok], y[ok]))
        results["methods"][m] = summary
    results["_rows"] = {"actual": y, "pred": preds, "extra": extra, "calibration": calibration,
                        "fold": fold[codes], "curve": codes, "batch_size": bb}
    return results

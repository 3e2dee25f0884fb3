"""The analytical model ``thpt(bb) = c - a*exp(-b*bb)`` and the parameter database."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .errors import FitError
from .grouping import group_codes, segments
from .progress import Progress
from .schema import CURVE_KEY, validate

LOSSES = ("l2", "relative")
#: chosen from the P0 / P2 numbers (README, "Curve fitting"): relative halves the P0 mean and
#: p90 APE on both sources and costs 0.6 to 1.7 points of median APE on P2
DEFAULT_LOSS = "relative"
MIN_POINTS = 3
MONOTONE_TOLERANCE = 0.02  # a drop of more than 2% between consecutive batch sizes
SATURATION_GAP = 0.05  # at the largest measured batch the curve is within 5% of its plateau


@dataclass(frozen=True)
class Bounds:
    """Box for the parameters; the defaults are the published ones."""

    a_max: float = 1e6
    b_lo: float = 1e-5
    b_hi: float = 1.0
    c_max: float = 1e6


PUBLISHED_BOUNDS = Bounds()


def loss_weights(y: np.ndarray, loss: str) -> np.ndarray:
    if loss == "l2":
        return np.ones_like(y)
    if loss == "relative":
        return 1.0 / (y * y)
    raise FitError(f"loss={loss!r} is not one of {LOSSES}")


def fit_segments(
    x: np.ndarray,
    y: np.ndarray,
    offsets: np.ndarray,
    loss: str = DEFAULT_LOSS,
    bounds: Bounds = PUBLISHED_BOUNDS,
    parallel: bool = True,
) -> np.ndarray:
    """Fit curves given as segmented arrays; returns an (m, 4) array of (a, b, c, loss)."""
    from ._kernels import curves as k

    x = np.ascontiguousarray(x, np.float64)
    y = np.ascontiguousarray(y, np.float64)
    offsets = np.ascontiguousarray(offsets, np.int64)
    if offsets.size < 1 or offsets[0] != 0 or offsets[-1] != x.size or (np.diff(offsets) < 1).any():
        raise FitError("offsets must start at 0, end at len(x) and give every curve >= 1 point")
    w = loss_weights(y, loss)
    out = np.empty((offsets.size - 1, 4))
    kernel = k.fit_curves if parallel else k.fit_curves_serial
    kernel(x, y, w, offsets, bounds.b_lo, bounds.b_hi, bounds.a_max, bounds.c_max, out)
    return out


def evaluate(a, b, c, batch_size) -> np.ndarray:
    """Throughput of curves (a, b, c) at batch sizes (broadcast)."""
    from ._kernels import curves as k

    a, b, c, bb = np.broadcast_arrays(*(np.asarray(v, np.float64) for v in (a, b, c, batch_size)))
    shape = bb.shape
    out = np.empty(bb.size)
    k.eval_curves(a.ravel().copy(), b.ravel().copy(), c.ravel().copy(), bb.ravel().copy(), out)
    return out.reshape(shape)


def fit_curves(
    table: pa.Table,
    loss: str = DEFAULT_LOSS,
    bounds: Bounds = PUBLISHED_BOUNDS,
    progress: bool | None = None,
) -> pa.Table:
    """Fit ``(a, b, c)`` for every benchmarked (configuration, ii, oo) curve.

    Returns the parameter database: the curve key columns, ``a``, ``b``, ``c``, ``n_points``,
    ``min_batch``, ``max_batch``, ``rmse`` (tokens/s), ``max_ape`` (%) and the flags
    ``too_short`` (< 3 batch sizes; still fitted), ``not_monotone``, ``not_saturated`` and
    ``above_roofline`` (a measurement above ``ROOFLINE_MARGIN`` times the roofline ceiling of
    :func:`features.throughput_ceiling`: physically implausible, kept but not trained on;
    judged where the hardware is in the catalog and the model's size is known, from the
    catalog or from its name, see :func:`features.roofline_trusted`).
    """
    from .features import ROOFLINE_MARGIN, roofline_trusted, table_features, throughput_ceiling

    if loss not in LOSSES:
        raise FitError(f"loss={loss!r} is not one of {LOSSES}")
    table = validate(table, require_throughput=True, where="fit_curves")
    codes, first = group_codes(table, CURVE_KEY)
    bb = table.column("batch_size").to_numpy().astype(np.float64)
    y = table.column("throughput").to_numpy()
    order, offsets = segments(codes, bb)
    x_s, y_s = bb[order], y[order]
    m = offsets.size - 1
    params = np.empty((m, 4))
    chunk = 20000
    bar = Progress(m, "fitting curves", enabled=progress if progress is not None else (None if m > 50000 else False))
    for start in range(0, m, chunk):
        stop = min(start + chunk, m)
        lo, hi = offsets[start], offsets[stop]
        params[start:stop] = fit_segments(x_s[lo:hi], y_s[lo:hi], offsets[start:stop + 1] - lo, loss, bounds)
        bar.update(stop - start)
    bar.close()
    a, b, c = params[:, 0], params[:, 1], params[:, 2]
    seg = np.repeat(np.arange(m), np.diff(offsets))
    pred = evaluate(a[seg], b[seg], c[seg], x_s)
    err = pred - y_s
    counts = np.diff(offsets)
    rmse = np.sqrt(np.bincount(seg, err * err, minlength=m) / counts)
    ape = np.abs(err) / y_s * 100.0
    max_ape = np.zeros(m)
    np.maximum.at(max_ape, seg, ape)
    drop = np.zeros(m, bool)
    inner = np.ones(x_s.size, bool)
    inner[offsets[1:] - 1] = False  # last point of each curve has no successor
    idx = np.flatnonzero(inner)
    drops = y_s[idx + 1] < y_s[idx] * (1.0 - MONOTONE_TOLERANCE)
    np.logical_or.at(drop, seg[idx], drops)
    max_batch = x_s[offsets[1:] - 1]
    keys = table.select(list(CURVE_KEY)).take(first)
    ceiling = throughput_ceiling(table_features(keys)[0][seg], x_s, roofline_trusted(keys)[seg])
    above = np.zeros(m, bool)
    np.logical_or.at(above, seg, y_s > ROOFLINE_MARGIN * np.nan_to_num(ceiling, nan=np.inf))
    cols = {name: keys.column(name) for name in CURVE_KEY}
    cols.update(
        a=a, b=b, c=c, n_points=counts.astype(np.int64),
        min_batch=x_s[offsets[:-1]].astype(np.int64), max_batch=max_batch.astype(np.int64),
        rmse=rmse, max_ape=max_ape,
        too_short=counts < MIN_POINTS,
        not_monotone=drop,
        not_saturated=a * np.exp(-b * max_batch) > SATURATION_GAP * np.maximum(c, 1e-300),
        above_roofline=above,
    )
    out = pa.table(cols)
    return out.replace_schema_metadata({b"ala_fast.loss": loss.encode()})

"""Descriptors of benchmarked hardware the catalog does not know, from its own measurements.

A device name the catalog does not resolve would get the fixed fallback descriptor
(``catalog.FALLBACK_HARDWARE``): every such device then looks the same to the trees, which
answer for one with the curves measured on another (two renamed NVIDIA GPUs in the
TensorRT-LLM sweep: P1 median APE 5.2% -> 18.2%, the slower one over-predicted 2x). When the
device *was* benchmarked, its curves say how fast it is. Its memory bandwidth and peak compute
are inferred as the fallback's scaled by two factors ``(s_bw, s_tf)``, chosen so that the
device's measurements sit as far below its roofline as comparable measurements on other
devices sit below theirs:

- every curve of the device gives its fitted throughput at its smallest and largest measured
  batch size ``p``; its roofline there is ``batch1 * min(p, knee)`` (``features``: the
  batch-1 throughput, bandwidth-bound decode, and the knee where compute or the KV cache
  caps it), which depends on ``(s_bw, s_tf)``;
- the reference efficiency (measured / roofline) at ``p`` is the median over the most closely
  matching curves of the reference devices, evaluated at the same batch size: same framework,
  model, precision, device count, batch kind and request shape; else the same without the
  request shape; else framework, model and precision; else framework; else any;
- ``(s_bw, s_tf)`` minimise the summed absolute log error between the device's fitted points
  and reference efficiency times roofline, each curve weighing 1, on a log grid refined twice;
  a small penalty on ``|log s_tf - log s_bw|`` picks the fallback's compute-to-bandwidth ratio
  where the data cannot tell them apart (a sweep that never leaves the bandwidth-bound region).

The reference devices are those of the catalog; devices are inferred in order of their number
of curves, each joining the references once described, so a table of unknown devices only
still tells them apart. Such a table fixes only their relative speeds: they are then centred
on the fallback device (curve-weighted geometric mean of each scale 1), so a device never
benchmarked, which gets the fallback, sits among them rather than on one of them. Memory size
comes from the name where it is written ("... 48GB"), else the fallback's; the vendor from a
vendor word in it.

Only curves in the given index set are used, so a training fold or hold-out round describes
its devices from its own curves, and a held-out device keeps the fallback, as at prediction
time for a device never benchmarked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .catalog import (
    FALLBACK_HARDWARE, NO_INFERRED_DEVICES, Hardware, InferredDevices, hardware_id,
    memory_from_name, model_size_known, resolve_hardware, vendor_from_name,
)
from .curves import evaluate as eval_curve
from .features import (
    CONFIG_FIELDS, build_features, config_matrix, roofline_batch1_knee,
)

if TYPE_CHECKING:
    from .learner import CurveSet

#: log10 range of the scale factors searched (1/1000 to 100 times the fallback device)
SCALE_RANGE = (-3.0, 2.0)
COARSE_STEPS = 41  # grid points per axis in the first pass
REFINE_STEPS = 11  # grid points per axis in each refinement (spanning two previous steps)
REFINEMENTS = 2
#: weight, per curve, of the pull of log(s_tf / s_bw) toward 0 (breaks ties only)
RATIO_PRIOR = 1e-3
#: rows of features built per call during the grid search (bounds memory)
CHUNK_ROWS = 1 << 17

_TF = CONFIG_FIELDS.index("tflops")
_BW = CONFIG_FIELDS.index("mem_bw_tbs")


def unknown_hardware(curves: "CurveSet", idx: np.ndarray) -> dict[str, np.ndarray]:
    """Curves (indices into ``curves``, within ``idx``) of each hardware id the catalog does
    not resolve, largest first (ties by id)."""
    names = curves.keys.column("hardware").to_pylist()
    groups: dict[str, list[int]] = {}
    for i in np.asarray(idx, np.int64):
        if resolve_hardware(names[i]) is None:
            groups.setdefault(hardware_id(names[i]), []).append(int(i))
    order = sorted(groups, key=lambda k: (-len(groups[k]), k))
    return {k: np.array(groups[k], np.int64) for k in order}


def infer_devices(curves: "CurveSet", idx: np.ndarray) -> InferredDevices:
    """Descriptors of every device among curves ``idx`` the catalog does not know (see the
    module docstring). Curves flagged implausible or without points are not used."""
    idx = np.asarray(idx, np.int64)
    idx = idx[(curves.n_points[idx] >= 1) & curves.plausible[idx]]
    unknown = unknown_hardware(curves, idx)
    if not unknown:
        return NO_INFERRED_DEVICES
    names = curves.keys.column("hardware").to_pylist()
    levels = _match_levels(curves)
    pool = _Pool(levels)
    known = np.setdiff1d(idx, np.concatenate(list(unknown.values())))
    b1, knee = curves.roof_batch1, curves.roof_knee
    pool.add(known, curves.a[known], curves.b[known], curves.c[known], b1[known], knee[known])
    anchored = len(pool) > 0  # catalog devices set the absolute scale
    found: list[tuple[str, Hardware, float, float, int]] = []
    for key, rows in unknown.items():
        spelling = names[rows[0]]
        base = Hardware(spelling, FALLBACK_HARDWARE.fp16_tflops, FALLBACK_HARDWARE.fp8_tflops,
                        FALLBACK_HARDWARE.mem_bw_tbs,
                        memory_from_name(spelling) or FALLBACK_HARDWARE.mem_gb,
                        vendor_hint=vendor_from_name(spelling))
        cfg = _config_rows(curves, rows, InferredDevices(((key, base),)))
        ii = curves.x[rows, 0]
        oo = curves.x[rows, 1]
        s_bw = s_tf = 1.0
        if len(pool):
            point_curve, batch, measured = _points(curves, rows)
            ref = pool.reference(rows[point_curve], batch)
            ok = np.isfinite(ref) & (ref > 0) & (measured > 0)
            if ok.any():
                s_bw, s_tf = _fit_scales(cfg, ii, oo, point_curve[ok], batch[ok],
                                         np.log(measured[ok]) - np.log(ref[ok]), rows.size)
        found.append((key, base, s_bw, s_tf, rows.size))
        cfg[:, _TF] *= s_tf
        cfg[:, _BW] *= s_bw
        rb1, rknee = roofline_batch1_knee(build_features(cfg, ii, oo))
        pool.add(rows, curves.a[rows], curves.b[rows], curves.c[rows], rb1, rknee)
    if not anchored:  # only relative speeds are known: centre them on the fallback device
        n = np.array([f[4] for f in found], np.float64)
        centre = [float(np.exp(np.sum(n * np.log([f[j] for f in found])) / n.sum()))
                  for j in (2, 3)]
        found = [(k, base, s_bw / centre[0], s_tf / centre[1], m)
                 for k, base, s_bw, s_tf, m in found]
    entries = [(key, Hardware(base.name, base.fp16_tflops * s_tf, base.fp8_tflops * s_tf,
                              base.mem_bw_tbs * s_bw, base.mem_gb, vendor_hint=base.vendor_hint))
               for key, base, s_bw, s_tf, _ in found]
    return InferredDevices(tuple(sorted(entries)))


def beyond_inferred_roofline(curves: "CurveSet") -> np.ndarray:
    """Per curve: its hardware is described by ``curves.inferred`` (not by the catalog), its
    model's size is known (catalog or name) and its fit, at its smallest or largest measured
    batch size, exceeds ``ROOFLINE_MARGIN`` times the roofline ceiling of that description:
    a failed run, as ``fit_curves`` flags measurements on catalog hardware (``above_roofline``;
    with the hardware names hidden, the Argonne table's flagged curves are the nine that
    ``fit_curves`` flags under the catalog's names).

    The description is fitted on the device's curves by least absolute deviations (a few
    failed runs move it little), and it matches the device's typical curve to the typical
    efficiency of comparable curves elsewhere, so a curve must be several times more efficient
    than its device's others to cross the ceiling."""
    from .features import ROOFLINE_MARGIN, throughput_ceiling

    out = np.zeros(len(curves), bool)
    if not curves.inferred:
        return out
    names = curves.keys.column("hardware").to_pylist()
    models = curves.keys.column("model").to_pylist()
    rows = np.array([i for i, (h, m) in enumerate(zip(names, models))
                     if resolve_hardware(h) is None and curves.inferred.resolve(h) is not None
                     and model_size_known(m)
                     and curves.n_points[i] >= 1], np.int64)
    if rows.size == 0:
        return out
    point_curve, batch, fitted = _points(curves, rows)
    ceiling = throughput_ceiling(curves.x[rows][point_curve], batch,
                                 np.ones(point_curve.size, bool))
    np.logical_or.at(out, rows[point_curve], fitted > ROOFLINE_MARGIN * ceiling)
    return out


def _config_rows(curves: "CurveSet", rows: np.ndarray, devices: InferredDevices) -> np.ndarray:
    keys = curves.keys.take(rows)
    return config_matrix(*(keys.column(c).to_pylist() for c in (
        "hardware", "num_devices", "framework", "model", "precision", "batch_kind")), devices)


def _points(curves: "CurveSet", rows: np.ndarray):
    """(curve position in ``rows``, batch size, fitted throughput) at each curve's smallest
    and largest measured batch size."""
    batches, values = curves.endpoint_points(rows)
    point_curve = np.concatenate([np.full(b.size, j) for j, b in enumerate(batches)])
    return point_curve, np.concatenate(batches), np.concatenate(values)


def _match_levels(curves: "CurveSet") -> list[list[tuple]]:
    """Per curve, its matching keys from the most to the least specific."""
    from .learner import curve_config_keys

    ii = curves.x[:, 0].tolist()
    oo = curves.x[:, 1].tolist()
    out = []
    for j, k in enumerate(curve_config_keys(curves.keys)):
        # config_key: (hardware, num_devices, framework, model, precision, batch_kind)
        _, nd, fw, model, prec, kind = k
        out.append([(0, fw, model, prec, nd, kind, ii[j], oo[j]), (1, fw, model, prec, nd, kind),
                    (2, fw, model, prec), (3, fw), (4,)])
    return out


class _Pool:
    """Reference curves: fitted parameters and roofline (batch-1, knee), indexed by matching
    key at every level."""

    def __init__(self, levels: list[list[tuple]]):
        self.levels = levels
        self.index: dict[tuple, list[int]] = {}
        self.a: list[float] = []
        self.b: list[float] = []
        self.c: list[float] = []
        self.b1: list[float] = []
        self.knee: list[float] = []

    def __len__(self) -> int:
        return len(self.a)

    def add(self, rows, a, b, c, b1, knee) -> None:
        for r, *values in zip(np.asarray(rows).tolist(), a, b, c, b1, knee):
            slot = len(self.a)
            for target, v in zip((self.a, self.b, self.c, self.b1, self.knee), values):
                target.append(float(v))
            for key in self.levels[r]:
                self.index.setdefault(key, []).append(slot)

    def reference(self, curve_rows: np.ndarray, batch: np.ndarray) -> np.ndarray:
        """Median efficiency (fitted throughput / roofline) at ``batch`` of the reference
        curves matching each curve at the most specific level that has any."""
        a, b, c = (np.asarray(v) for v in (self.a, self.b, self.c))
        b1, knee = np.asarray(self.b1), np.asarray(self.knee)
        out = np.full(batch.size, np.nan)
        for j, (r, p) in enumerate(zip(curve_rows.tolist(), batch.tolist())):
            slots = next((self.index[k] for k in self.levels[r] if k in self.index), None)
            if slots is None:
                continue
            s = np.asarray(slots)
            eff = eval_curve(a[s], b[s], c[s], p) / (b1[s] * np.minimum(p, knee[s]))
            out[j] = np.median(eff)
        return out


def _fit_scales(cfg: np.ndarray, ii: np.ndarray, oo: np.ndarray, point_curve: np.ndarray,
                batch: np.ndarray, log_target: np.ndarray, n_curves: int) -> tuple[float, float]:
    """``(s_bw, s_tf)`` minimising sum over points of ``|log roof(p; s) - log_target|`` (each
    curve's points sharing weight 1) plus the ratio prior."""
    counts = np.bincount(point_curve, minlength=cfg.shape[0]).astype(np.float64)
    w = 1.0 / counts[point_curve]
    lo, hi = SCALE_RANGE
    axis_bw = axis_tf = np.linspace(lo, hi, COARSE_STEPS)
    best = (0.0, 0.0)
    for level in range(REFINEMENTS + 1):
        loss = _grid_loss(cfg, ii, oo, point_curve, batch, log_target, w, axis_bw, axis_tf)
        loss = loss + RATIO_PRIOR * n_curves * np.abs(axis_tf[None, :] - axis_bw[:, None]) * np.log(10)
        i, j = np.unravel_index(np.argmin(loss), loss.shape)
        best = (float(axis_bw[i]), float(axis_tf[j]))
        step = axis_bw[1] - axis_bw[0]
        axis_bw = np.linspace(best[0] - step, best[0] + step, REFINE_STEPS)
        axis_tf = np.linspace(best[1] - step, best[1] + step, REFINE_STEPS)
    return 10.0 ** best[0], 10.0 ** best[1]


def _grid_loss(cfg, ii, oo, point_curve, batch, log_target, w, axis_bw, axis_tf) -> np.ndarray:
    """Loss at every (log10 s_bw, log10 s_tf) of the grid: features are built for every curve
    at every grid point (in chunks), so the roofline is the one ``features`` defines."""
    n = cfg.shape[0]
    pairs = np.array([(u, v) for u in axis_bw for v in axis_tf])
    loss = np.empty(len(pairs))
    per_chunk = max(1, CHUNK_ROWS // n)
    for start in range(0, len(pairs), per_chunk):
        chunk = pairs[start:start + per_chunk]
        scaled = np.tile(cfg, (len(chunk), 1))
        scaled[:, _BW] *= np.repeat(10.0 ** chunk[:, 0], n)
        scaled[:, _TF] *= np.repeat(10.0 ** chunk[:, 1], n)
        b1, knee = roofline_batch1_knee(build_features(scaled, np.tile(ii, len(chunk)),
                                                       np.tile(oo, len(chunk))))
        rows = (np.arange(len(chunk))[:, None] * n + point_curve[None, :])
        log_roof = np.log(b1[rows]) + np.log(np.minimum(batch[None, :], knee[rows]))
        loss[start:start + len(chunk)] = (np.abs(log_roof - log_target[None, :]) * w).sum(axis=1)
    return loss.reshape(len(axis_bw), len(axis_tf))

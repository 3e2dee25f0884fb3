"""The learned parameter model: curve features -> well-scaled targets -> (a, b, c).

Shared by training (:mod:`training`), evaluation (:mod:`protocols`) and, for the feature and
target definitions, prediction (:mod:`predictor`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from .catalog import NO_INFERRED_DEVICES, InferredDevices
from .features import build_features, config_matrix, roofline_batch1_knee
from .schema import CURVE_KEY
from .targets import params_to_targets, targets_to_params

MIN_POINTS_TRAIN = 3  # curves with fewer batch sizes do not pin down (a, b, c)


@dataclass
class CurveSet:
    """Benchmarked curves with their features (rows aligned with ``keys``)."""

    keys: pa.Table  # CURVE_KEY columns
    x: np.ndarray  # features (float64)
    roof_batch1: np.ndarray
    roof_knee: np.ndarray
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    n_points: np.ndarray
    plausible: np.ndarray  # no measurement above the roofline ceiling (see fit_curves)
    min_batch: np.ndarray
    max_batch: np.ndarray
    #: descriptors of hardware the catalog does not know, behind ``x`` (device_inference)
    inferred: InferredDevices = NO_INFERRED_DEVICES

    def __len__(self) -> int:
        return self.x.shape[0]

    def take(self, idx: np.ndarray) -> "CurveSet":
        return CurveSet(self.keys.take(pa.array(idx)), self.x[idx], self.roof_batch1[idx],
                        self.roof_knee[idx], self.a[idx], self.b[idx], self.c[idx],
                        self.n_points[idx], self.plausible[idx], self.min_batch[idx],
                        self.max_batch[idx], self.inferred)

    def described_by(self, inferred: InferredDevices) -> "CurveSet":
        """The same curves with features built on ``inferred`` (self when unchanged)."""
        if inferred == self.inferred:
            return self
        x = _curve_features(self.keys, inferred)
        b1, knee = roofline_batch1_knee(x)
        return replace(self, x=x, roof_batch1=b1, roof_knee=knee, inferred=inferred)

    def described_from(self, idx: np.ndarray) -> "CurveSet":
        """The same curves with the hardware the catalog does not know described from the
        measurements of curves ``idx`` only (a training set; :mod:`device_inference`).

        Curves of such hardware far above the roofline of its description are flagged
        implausible (``plausible``, as ``fit_curves`` flags those on catalog hardware; see
        ``device_inference.beyond_inferred_roofline``) and the hardware is described again
        without them. Callers holding index sets of trainable curves filter them by the
        returned ``plausible``."""
        from .device_inference import beyond_inferred_roofline, infer_devices

        described = self.described_by(infer_devices(self, idx))
        beyond = beyond_inferred_roofline(described) & self.plausible
        if not beyond.any():
            return described
        flagged = replace(self, plausible=self.plausible & ~beyond)
        return flagged.described_by(infer_devices(flagged, idx))

    def endpoint_points(self, idx: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Batch sizes and throughputs of each curve's fit at its smallest and largest measured
        batch: the measurements themselves for curves of 1-2 points that increase."""
        from .curves import evaluate as eval_curve

        batches = [np.unique([self.min_batch[i], self.max_batch[i]]).astype(np.float64)
                   for i in idx]
        values = [eval_curve(np.full(bb.size, self.a[i]), np.full(bb.size, self.b[i]),
                             np.full(bb.size, self.c[i]), bb) for i, bb in zip(idx, batches)]
        return batches, values

    def targets(self) -> np.ndarray:
        return params_to_targets(self.a, self.b, self.c, self.roof_batch1, self.roof_knee)


def _curve_features(keys: pa.Table, inferred: InferredDevices) -> np.ndarray:
    cfg = config_matrix(*(keys.column(c).to_pylist() for c in (
        "hardware", "num_devices", "framework", "model", "precision", "batch_kind")), inferred)
    ii = keys.column("input_tokens").to_numpy().astype(np.float64)
    oo = keys.column("output_tokens").to_numpy().astype(np.float64)
    return build_features(cfg, ii, oo)


def curve_set(params: pa.Table, inferred: InferredDevices = NO_INFERRED_DEVICES) -> CurveSet:
    """Features and parameters of every curve of a parameter database (``fit_curves`` output);
    hardware the catalog does not know is described by ``inferred`` (else the fallback)."""
    x = _curve_features(params, inferred)
    b1, knee = roofline_batch1_knee(x)
    return CurveSet(
        keys=params.select(list(CURVE_KEY)), x=x, roof_batch1=b1,
        roof_knee=knee, a=params.column("a").to_numpy(), b=params.column("b").to_numpy(),
        c=params.column("c").to_numpy(), n_points=params.column("n_points").to_numpy(),
        plausible=~params.column("above_roofline").to_numpy(zero_copy_only=False)
        if "above_roofline" in params.column_names else np.ones(params.num_rows, bool),
        min_batch=params.column("min_batch").to_numpy(),
        max_batch=params.column("max_batch").to_numpy(), inferred=inferred,
    )


def trainable(curves: CurveSet) -> np.ndarray:
    """Curves the models learn from: >= MIN_POINTS_TRAIN batch sizes and physically plausible."""
    return np.flatnonzero((curves.n_points >= MIN_POINTS_TRAIN) & curves.plausible)


def identification_weights(min_batch: np.ndarray) -> np.ndarray:
    """How well each curve pins its batch-1 throughput: ``m0 / min_batch``, where ``m0`` is
    the smallest first batch size among the curves given.

    Every target is defined through the batch-1 throughput T1 (:mod:`ala_fast.targets`). A curve
    measured from batch 1 has T1 among its points; a curve first measured at batch 128 has it
    only as the fit's extrapolation over two orders of magnitude of batch size, which the
    points barely constrain (a sweep that starts on the plateau says nothing about batch 1).
    Such curves still teach the trees and anchor their configuration, with a weight that falls
    as the extrapolation grows. Relative to the best-measured curve, so a table whose curves all
    start at the same batch size weighs them equally.
    """
    min_batch = np.maximum(np.asarray(min_batch, np.float64), 1.0)
    if min_batch.size == 0:
        return min_batch
    return min_batch.min() / min_batch


def params_from_outputs(z: np.ndarray, roof_batch1, roof_knee):
    return targets_to_params(z, roof_batch1, roof_knee)


# --------------------------------------------------------------------------- local anchoring
CONFIG_PRIOR = 0.5  # pseudo-count shrinking a configuration's mean residual toward 0
SIBLING_PRIOR = 0.2  # pseudo-weight of "no shape-local deviation" against the sibling curves
HARDWARE_PRIOR = 2.0  # pseudo-count shrinking the hardware-level correction
#: pseudo-weight of "no shape effect" against the software stack's other configurations (that
#: of one curve measured at exactly the query's request shape)
STACK_PRIOR = 1.0
#: weigh a stack's other configurations by closeness in log device count too (False: bundles
#: from before it, which pooled every device count of a stack alike)
STACK_DEVICE_CLOSENESS = True
#: ridge weight per target when a short curve (1-2 batch sizes) is turned into a residual: the
#: points decide the directions they constrain, the prior keeps the others at the pooled value
SHORT_RIDGE = 0.1


def curve_config_keys(keys: pa.Table) -> list[tuple]:
    from .catalog import config_key

    return [config_key(*row) for row in zip(*_config_columns(keys))]


def curve_identities(keys: pa.Table) -> list[tuple[tuple, str]]:
    """``(config_key, hardware spelling)`` per curve (see :func:`catalog.config_identity`)."""
    from .catalog import config_identity

    return [config_identity(*row) for row in zip(*_config_columns(keys))]


def curve_configs(keys: pa.Table) -> list[tuple]:
    """(hardware, num_devices, framework, model, precision, batch_kind) per curve, as given."""
    return list(zip(*_config_columns(keys)))


def _config_columns(keys: pa.Table) -> list[list]:
    return [keys.column(c).to_pylist() for c in ("hardware", "num_devices", "framework", "model",
                                                  "precision", "batch_kind")]


class Anchors:
    """Corrections of the pooled model from the benchmarked curves nearest to a query.

    The pooled trees describe every configuration through shared features; what they miss about
    one configuration shows up as the residual ``z - z_hat`` of its benchmarked curves. A query
    whose configuration was benchmarked at other request shapes gets two levels of correction:
    the mean residual of those sibling curves (a configuration effect, shrunk toward 0 by
    ``CONFIG_PRIOR``), plus their deviations from that mean weighted by closeness in
    (log ii, log oo) (a shape-local effect, shrunk by ``SIBLING_PRIOR``). A query on known
    hardware without siblings gets the hardware's mean residual, shrunk toward 0. Both lookups try the hardware
    as spelled first and the resolved catalog entry second (``identities`` are
    ``(config_key, spelling)`` pairs). Each curve's residual counts with its ``weights``
    (default 1; :func:`identification_weights` in training and prediction alike): in the
    means, in the pseudo-count comparisons and in the shape kernel.

    Between the two sits the shape effect of the query's software stack (hardware and
    framework, :class:`StackProfile`): how the stack's *other* configurations deviate from
    their own level at the query's request shape. A stack can be slow or fast at one shape
    across models and device counts (Argonne, MI300X vLLM: batch-1 throughput at 128 input
    tokens a third to a half of that at 256 on every 7B model), which neither the pooled trees
    nor a configuration's own siblings at other shapes reveal. The siblings' deviations are
    then taken relative to the stack's effect at their shapes, so what they share with the
    stack is not counted twice; a configuration without siblings gets the effect on top of the
    hardware's mean residual.
    """

    def __init__(self, identities: list[tuple[tuple, str]], log_ii: np.ndarray,
                 log_oo: np.ndarray, residuals: np.ndarray,
                 weights: np.ndarray | None = None,
                 stack_prior: float | None = STACK_PRIOR,
                 device_closeness: bool = STACK_DEVICE_CLOSENESS) -> None:
        residuals = np.asarray(residuals, np.float64).reshape(len(identities), 3)
        weights = (np.ones(len(identities)) if weights is None
                   else np.asarray(weights, np.float64).reshape(len(identities)))
        self.by_config = self._siblings([k for k, _ in identities], log_ii, log_oo, residuals,
                                        weights)
        self.by_spelling = self._siblings(identities, log_ii, log_oo, residuals, weights)
        self.by_hardware = self._hardware([k[0] for k, _ in identities], residuals, weights)
        self.by_hardware_spelling = self._hardware([(k[0], s) for k, s in identities], residuals,
                                                   weights)
        self.stack_prior = stack_prior  # None: no stack effect (bundles from before it)
        self.device_closeness = device_closeness
        self._config_code = {k: c for c, k in enumerate(self.by_config)}
        self.by_stack = ({} if stack_prior is None else
                         self._stacks([k for k, _ in identities], log_ii, log_oo, residuals,
                                      weights))
        self._plans: dict[tuple[tuple, str], AnchorPlan] = {}  # filled on demand (thread-safe:
        # concurrent fills store equal plans)

    @staticmethod
    def _siblings(keys: list, log_ii, log_oo, residuals, weights) -> dict:
        groups: dict = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        return {key: (log_ii[idx], log_oo[idx], residuals[idx], weights[idx])
                for key, idx in ((k, np.array(v)) for k, v in groups.items())}

    def _stacks(self, keys: list, log_ii, log_oo, residuals, weights) -> dict:
        """Per software stack (hardware id, framework): its curves' shapes, weights, their
        deviations from their configuration's level and the code of that configuration."""
        codes = self._config_code
        cfg = np.array([codes[k] for k in keys], np.int64)
        dev = np.empty_like(residuals)
        for key in self.by_config:
            m = cfg == codes[key]
            dev[m] = residuals[m] - _level(residuals[m], weights[m])
        log_dev = np.log(np.array([float(k[1]) for k in keys]))
        groups: dict = {}
        for i, key in enumerate(keys):
            groups.setdefault(_stack_key(key), []).append(i)
        return {g: (log_ii[idx], log_oo[idx], dev[idx], weights[idx], cfg[idx], log_dev[idx])
                for g, idx in ((g, np.array(v)) for g, v in groups.items())}

    def stack(self, key: tuple) -> "StackProfile | None":
        """The shape profile of the stack of configuration ``key`` from its other
        configurations (None when it has none)."""
        found = self.by_stack.get(_stack_key(key))
        if found is None:
            return None
        log_i, log_o, dev, weight, cfg, log_dev = found
        other = cfg != self._config_code.get(key, -1)
        if not other.any():
            return None
        weight = weight[other]
        if self.device_closeness:
            # configurations split over as many devices share more of the stack's behaviour
            # (the same parallel layout): closeness in log device count, like that in shape
            weight = weight * np.exp(-np.abs(log_dev[other] - np.log(float(key[1]))))
        return StackProfile.of(log_i[other], log_o[other], dev[other], weight,
                               self.stack_prior)

    @staticmethod
    def _hardware(keys: list, residuals, weights) -> dict:
        total: dict = {}
        count: dict = {}
        for i, key in enumerate(keys):
            total[key] = total.get(key, 0) + weights[i] * residuals[i]
            count[key] = count.get(key, 0) + weights[i]
        return {k: total[k] / (count[k] + HARDWARE_PRIOR) for k in total}

    def benchmarked(self, identity: tuple[tuple, str]) -> bool:
        """Does this configuration have anchoring curves (under its spelling or its entry)?"""
        return identity in self.by_spelling or identity[0] in self.by_config

    def benchmarked_config(self, config: tuple) -> bool:
        """:meth:`benchmarked` of a raw (hardware, num_devices, framework, model, precision,
        batch_kind) tuple."""
        from .catalog import config_identity

        return self.benchmarked(config_identity(*config))

    def correction(self, identity: tuple[tuple, str], log_ii: float, log_oo: float) -> np.ndarray:
        return self.plan(identity).at(np.array([log_ii], np.float64),
                                      np.array([log_oo], np.float64))[0]

    def for_features(self, identities: list[tuple[tuple, str]], x: np.ndarray) -> np.ndarray:
        """Corrections for curves given by features (columns 0 and 1 are ii and oo)."""
        return self.corrections(identities, np.log(x[:, 0]), np.log(x[:, 1]))

    def corrections(self, identities: list[tuple[tuple, str]], log_ii: np.ndarray,
                    log_oo: np.ndarray) -> np.ndarray:
        """Corrections (rows x 3), one vectorised evaluation per distinct identity."""
        log_ii = np.asarray(log_ii, np.float64)
        log_oo = np.asarray(log_oo, np.float64)
        out = np.zeros((len(identities), 3))
        groups: dict = {}
        for i, identity in enumerate(identities):
            groups.setdefault(identity, []).append(i)
        for identity, idx in groups.items():
            idx = np.array(idx)
            out[idx] = self.plan(identity).at(log_ii[idx], log_oo[idx])
        return out

    def plan(self, identity: tuple[tuple, str]) -> "AnchorPlan":
        """What anchors queries of one identity (cached: it does not depend on ii / oo)."""
        hit = self._plans.get(identity)
        if hit is None:
            hit = self._plans[identity] = self._plan(identity)
        return hit

    def _plan(self, identity: tuple[tuple, str]) -> "AnchorPlan":
        key, spelling = identity
        stack = self.stack(key)
        sib = self.by_spelling.get(identity)
        if sib is None:
            sib = self.by_config.get(key)
        if sib is not None:
            log_i, log_o, resid, weight = sib
            level = _level(resid, weight)
            dev = resid - level
            if stack is not None:
                dev = dev - stack.at(log_i, log_o)
            return AnchorPlan(level, log_i, log_o, dev, weight, stack)
        hw = self.by_hardware_spelling.get((key[0], spelling))
        if hw is None:
            hw = self.by_hardware.get(key[0], np.zeros(3))
        return AnchorPlan(hw, stack=stack)


def _level(resid: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """A configuration's effect: its curves' weighted mean residual, shrunk by CONFIG_PRIOR."""
    # NumPy reductions, not BLAS products: BLAS may sum in another order when several
    # threads call it at once, and a prediction must not depend on that
    return (weight[:, None] * resid).sum(axis=0) / (weight.sum() + CONFIG_PRIOR)


def _stack_key(key: tuple) -> tuple:
    """The software stack of a configuration key: (hardware id, framework)."""
    return key[0], key[2]


class StackProfile(NamedTuple):
    """How a software stack's configurations deviate from their own level, by request shape.

    At a query shape, each curve weighs its identification weight times the sibling kernel
    ``exp(-|d log ii| - |d log oo|)``; the effect is the weighted median of their deviations,
    per target, with a pseudo-curve of deviation 0 and weight ``prior``: a median, not a
    mean, because one badly identified curve (a 4-point curve far from batch 1 whose
    extrapolated batch-1 efficiency is 50x the trees') would otherwise move every
    configuration of its stack; the pseudo-curve keeps a shape that only one or two curves
    measured near 0."""

    log_i: np.ndarray
    log_o: np.ndarray
    dev: np.ndarray  # rows x 3
    weight: np.ndarray
    order: np.ndarray  # 3 x rows: each target's deviations sorted ascending
    prior: float = STACK_PRIOR

    @classmethod
    def of(cls, log_i, log_o, dev, weight, prior: float = STACK_PRIOR) -> "StackProfile":
        dev = np.ascontiguousarray(dev, np.float64)
        order = np.ascontiguousarray(np.argsort(dev, axis=0, kind="stable").T, np.int64)
        return cls(np.ascontiguousarray(log_i, np.float64),
                   np.ascontiguousarray(log_o, np.float64), dev,
                   np.ascontiguousarray(weight, np.float64), order, float(prior))

    def at(self, log_ii: np.ndarray, log_oo: np.ndarray) -> np.ndarray:
        """The effect (rows x 3) at request shapes (log ii, log oo)."""
        from ._kernels.anchors import stack_median

        log_ii = np.ascontiguousarray(log_ii, np.float64)
        out = np.empty((log_ii.size, 3))
        stack_median(log_ii, np.ascontiguousarray(log_oo, np.float64), self.log_i, self.log_o,
                     self.weight, self.dev, self.order, self.prior, out)
        return out


class AnchorPlan(NamedTuple):
    """The anchoring of one identity: its siblings' configuration effect ``level``, the shape
    effect of its software stack (``stack``, None without one) and the siblings' deviations
    ``dev`` from both at (``log_i``, ``log_o``) with ``weight``; or, without siblings,
    ``level`` (the hardware's mean residual, or 0) and the stack's effect."""

    level: np.ndarray
    log_i: np.ndarray | None = None
    log_o: np.ndarray | None = None
    dev: np.ndarray | None = None
    weight: np.ndarray | None = None
    stack: StackProfile | None = None

    def at(self, log_ii: np.ndarray, log_oo: np.ndarray) -> np.ndarray:
        """Corrections (rows x 3) of queries at request shapes (log ii, log oo)."""
        if self.stack is None:
            out = np.broadcast_to(self.level, (log_ii.size, 3))
        else:
            out = self.level + self.stack.at(log_ii, log_oo)
        if self.dev is None:
            return out
        w = self.weight * np.exp(-np.abs(self.log_i[None, :] - log_ii[:, None])
                                 - np.abs(self.log_o[None, :] - log_oo[:, None]))
        local = (w[:, :, None] * self.dev[None, :, :]).sum(axis=1)
        return out + local / (w.sum(axis=1) + SIBLING_PRIOR)[:, None]


def short_curve_residuals(z_hat: np.ndarray, roof_batch1: np.ndarray, roof_knee: np.ndarray,
                          batches: list[np.ndarray], throughputs: list[np.ndarray]) -> np.ndarray:
    """Residuals ``d`` (rows x 3) of curves too short to fit (1-2 batch sizes).

    For each curve, ``d`` minimises the squared log error of the pooled curve ``z_hat + d`` at
    the measured points plus ``SHORT_RIDGE * |d|^2``: one point at batch 1 moves the batch-1
    efficiency, a second point also the gain, and what the points do not constrain stays at the
    pooled prediction.
    """
    from scipy.optimize import least_squares

    from .curves import evaluate as eval_curve

    out = np.zeros((len(batches), 3))
    ridge = np.sqrt(SHORT_RIDGE)
    for i, (bb, y) in enumerate(zip(batches, throughputs)):
        bb = np.asarray(bb, np.float64)
        log_y = np.log(np.asarray(y, np.float64))

        def residual(d, i=i, bb=bb, log_y=log_y):
            a, b, c = targets_to_params(z_hat[i] + d, roof_batch1[i:i + 1], roof_knee[i:i + 1])
            pred = np.maximum(eval_curve(np.repeat(a, bb.size), np.repeat(b, bb.size),
                                         np.repeat(c, bb.size), bb), 1e-300)
            return np.concatenate([np.log(pred) - log_y, ridge * d])

        out[i] = least_squares(residual, np.zeros(3), method="lm").x
    return out


def anchor_only(curves: CurveSet) -> np.ndarray:
    """Curves too short to learn from that still anchor their configuration (1-2 batch sizes)."""
    return np.flatnonzero((curves.n_points < MIN_POINTS_TRAIN) & (curves.n_points >= 1)
                          & curves.plausible)


@dataclass
class LearnedParams:
    """Boosted trees (scikit-learn, for training and evaluation) plus their anchors."""

    models: list
    anchors: Anchors
    trained: np.ndarray  # curves the trees learned from
    anchored: np.ndarray  # curves behind the anchors: ``trained`` then the short ones
    residuals: np.ndarray  # residual of each anchored curve (aligned with ``anchored``)
    weights: np.ndarray  # identification weight of each anchored curve (aligned with ``anchored``)
    devices: tuple[str, ...]  # known hardware, one spelling per catalog entry (transfer.py)
    inferred: InferredDevices  # descriptors of known hardware the catalog does not know

    def anchored_targets(self, x: np.ndarray, identities: list[tuple[tuple, str]]) -> np.ndarray:
        from .augment import predict_sklearn

        return predict_sklearn(self.models, x) + self.anchors.for_features(identities, x)

    def predict_targets(self, x: np.ndarray, configs: list[tuple]) -> np.ndarray:
        """Targets for curves given by features and raw configuration tuples (hardware,
        num_devices, framework, model, precision, batch_kind): anchored trees, blended with the
        efficiency on similar known devices where the hardware is unseen."""
        from .catalog import config_identity
        from .transfer import blend_unseen_hardware

        z = self.anchored_targets(x, [config_identity(*c) for c in configs])
        return blend_unseen_hardware(z, configs, x[:, 0], x[:, 1], self.devices, self.inferred,
                                     self.anchored_targets, self.anchors.benchmarked_config)


def fit_learned(curves: CurveSet, known: np.ndarray, seed: int, boosting=None) -> LearnedParams:
    """Trees on the trainable curves among ``known``; anchors from those and the short ones."""
    from .augment import fit_boosted, predict_sklearn

    known = np.asarray(known, np.int64)
    train = np.intersect1d(known, trainable(curves))
    short = np.intersect1d(known, anchor_only(curves))
    z = curves.targets()[train]
    models = fit_boosted(curves.x[train], z, seed, boosting,
                         sample_weight=identification_weights(curves.min_batch[train]))
    resid = z - predict_sklearn(models, curves.x[train])
    if short.size:
        z_short = predict_sklearn(models, curves.x[short])
        resid = np.concatenate([resid, short_curve_residuals(
            z_short, curves.roof_batch1[short], curves.roof_knee[short],
            *curves.endpoint_points(short))])
    from .transfer import known_devices

    anchored = np.concatenate([train, short])
    keys = curves.keys.take(pa.array(anchored))
    weights = identification_weights(curves.min_batch[anchored])
    anchors = Anchors(curve_identities(keys), np.log(curves.x[anchored, 0]),
                      np.log(curves.x[anchored, 1]), resid, weights)
    devices = known_devices(keys.column("hardware").to_pylist())
    return LearnedParams(models, anchors, train, anchored, resid, weights, devices,
                         curves.inferred)

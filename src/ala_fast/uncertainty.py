"""Uncertainty: similarity to what was observed, an error predictor and calibrated intervals.

Training (``fit_uncertainty``)
1. Hold-out rounds over the benchmarked curves: the P1-style folds (an unseen shape of a seen
   configuration), leave-one-hardware-out folds (unseen hardware) and annealed hard-and-diverse
   hold-out sets (:func:`anneal.holdout_subset`). Each round trains the parameter model on the
   rest (at most LIGHT_TREES trees, :func:`holdout_boosting`) and records, for every held-out
   curve, its features, its similarity to the training rest and the observed errors of its
   rows.
2. Error predictor: boosted trees map (curve features, similarity features, log batch size)
   to the typical absolute log error ``sigma`` of a prediction (exported to ONNX like the
   parameter model), one output per ``ERROR_OUTPUTS``: queries on benchmarked hardware get a
   model that never saw the errors of a hold-out round's unseen device (those are many times
   larger and, learned together, leaked into seen-hardware rows of the same device), queries
   on unseen hardware one fitted on every hold-out row.
3. Mondrian split-conformal calibration, one score set per novelty level (known
   configuration, unseen configuration on known hardware, unseen hardware (or a framework
   no reference curve ran: an unseen software stack, see ``novelty_level``); the last split in
   two for the error model, with or without the configuration benchmarked on a known device
   of its vendor, but calibrated together, see ``level_quantiles``), each scored on
   hold-out rows the error model never saw in that sense (see ``fit_uncertainty``): scores
   ``|log(pred / actual)| / sigma`` (``|log(pred / actual)|`` for unseen hardware); the
   interval at coverage 1 - alpha is ``pred * exp(+-q * sigma)`` (``exp(+-q)``) with q the
   ceil((n + 1)(1 - alpha))-th smallest score of the query's level.
4. Beyond the benchmarked ranges of input tokens, output tokens and batch size
   (:func:`extrapolation`, in log units): range rounds hold out the longest and the shortest
   request shapes, and the share of their rows' errors the in-range interval misses, per log
   unit of extrapolation, sets how much wider an interval grows out there, as far as the
   rounds reached; farther, it grows by the unmeasured factor itself (:class:`BeyondSlopes`).

Confidence is ``exp(-d / d_ref)``: d the Euclidean distance of the workload's standardised
feature vector to the nearest observed curve, d_ref the median of that distance over the
hold-out samples; 1 for a benchmarked curve, falling toward 0 far from everything observed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from .catalog import NO_INFERRED_DEVICES, InferredDevices, resolve_hardware
from .features import FEATURE_NAMES

#: similarity of a query to the reference curves: distances to the nearest ones, the novelty
#: level of its configuration, the configuration's benchmarked curves and the reference devices
#: of its hardware's vendor (0 for a vendor never benchmarked: another software ecosystem, whose
#: errors no device of another vendor reveals; see ``vendor_devices``)
SIM_FEATURES = ("nn_dist", "nn5_dist", "nn_cos_dist", "anchor_level", "n_siblings",
                "vendor_devices")
ERROR_FEATURE_NAMES = FEATURE_NAMES + SIM_FEATURES + ("log_batch",)
K_NEIGHBOURS = 5
SIGMA_FLOOR = 0.01  # 1% : no prediction is claimed to be better than this
LIGHT_TREES = 150  # at most this many boosting rounds for the parameter model of a hold-out round
ANNEAL_ROUNDS = 3
ANNEAL_SHARE = 0.15


@dataclass
class Scaler:
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> "Scaler":
        sd = x.std(axis=0)
        return cls(x.mean(axis=0), np.where(sd > 0, sd, 1.0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, np.float64) - self.mean) / self.scale


def similarity_features(query_vectors: np.ndarray, reference, query_configs: list[tuple],
                        known: "KnownConfigs") -> np.ndarray:
    """Similarity of queries to a reference set (one row per query, SIM_FEATURES order);
    ``reference`` holds vectors (an array or a prepared ``neighbors.ReferenceSet``),
    ``query_configs`` are configuration keys, ``known`` indexes the reference's.

    One compiled pass per query gives the 5 nearest Euclidean distances and the nearest cosine
    distance (exact; see ``_kernels.neighbors``).
    """
    out = np.empty((len(query_configs), len(SIM_FEATURES)))
    neighbour_distances(query_vectors, reference, out)
    seen: dict[tuple, tuple[int, int]] = {}  # once per distinct configuration
    for i, c in enumerate(query_configs):
        hit = seen.get(c)
        if hit is None:
            hit = seen[c] = config_novelty(c, known)
        out[i, 3:] = hit  # anchor_level, n_siblings, vendor_devices
    return out


def config_novelty(config: tuple, known: "KnownConfigs") -> tuple[int, int, int]:
    """(novelty level, benchmarked curves, reference devices of the vendor) of a configuration
    key: the similarity features that depend on the configuration alone."""
    return (novelty_level(config, known), known.counts.get(config, 0),
            known.vendor_devices.get(device_vendor(config[0], known.inferred), 0))


def device_vendor(hardware: str, inferred: InferredDevices = NO_INFERRED_DEVICES) -> str:
    """Vendor of a device (a name or ``hardware_id``) as its descriptor states it (the
    catalog's, or the one ``inferred`` from its measurements, whose hint is a vendor word of
    its name); "other" for a device neither describes (no vendor known)."""
    hw = inferred.resolve(hardware)
    return hw.vendor if hw is not None else "other"


def neighbour_distances(query_vectors: np.ndarray, reference, out: np.ndarray) -> None:
    """The distance columns of :func:`similarity_features` (nearest and mean of the 5 nearest
    Euclidean distances, nearest cosine distance) written into ``out[:, :3]``."""
    from ._kernels import neighbors as kn
    from .neighbors import as_reference, screened

    q = np.ascontiguousarray(np.atleast_2d(query_vectors), np.float64)
    ref = as_reference(reference)
    k = min(K_NEIGHBOURS, len(ref))
    d = np.empty((q.shape[0], k))
    idx = np.empty((q.shape[0], k), np.int64)
    cos = np.empty(q.shape[0])
    # serial screening: the BLAS product already uses every core (see neighbors.knn)
    screened(kn.similarity_batch, q, ref, (k,), (d, idx, cos))
    out[:, 0] = d[:, 0]
    out[:, 1] = d.sum(axis=1) / k  # the mean (np.mean divides the same sum by k)
    out[:, 2] = cos


@dataclass(frozen=True)
class KnownConfigs:
    """What the reference curves cover, for the novelty level of a query."""

    counts: dict[tuple, int]  # configuration key -> benchmarked curves
    hardware: frozenset[str]  # hardware ids
    peer_configs: frozenset[tuple]  # (vendor, configuration key without the hardware)
    frameworks: frozenset[str] = frozenset()  # normalised framework names
    #: vendor -> distinct reference devices of it ("other", no vendor known, is left out)
    vendor_devices: dict[str, int] = field(default_factory=dict)
    inferred: InferredDevices = NO_INFERRED_DEVICES  # describes the reference's unknown devices


def config_counts(configs: list[tuple],
                  inferred: InferredDevices = NO_INFERRED_DEVICES) -> KnownConfigs:
    """Index configuration keys (``catalog.config_key``) of the reference curves (``inferred``
    describes their hardware the catalog does not know: its vendor makes peers)."""
    counts: dict[tuple, int] = {}
    for c in configs:
        counts[c] = counts.get(c, 0) + 1
    hardware = frozenset(c[0] for c in counts)
    # one lookup per device; an undescribed one has no vendor: no peers, not counted
    vendor = {h: hw.vendor for h in hardware if (hw := inferred.resolve(h)) is not None}
    peers = {(vendor[c[0]], c[1:]) for c in counts if c[0] in vendor}
    vendors: dict[str, int] = {}
    for v in vendor.values():
        if v != "other":
            vendors[v] = vendors.get(v, 0) + 1
    return KnownConfigs(counts, hardware, frozenset(peers), frozenset(c[2] for c in counts),
                        vendors, inferred)


def novelty_level(config: tuple, known: KnownConfigs) -> int:
    """Index into LEVELS of a configuration key: benchmarked itself; hardware known; hardware
    unseen but the configuration benchmarked on a known device of the same vendor (what
    :mod:`transfer` borrows); or nothing of the kind.

    A framework no reference curve ran is an unseen software stack, whatever the hardware:
    its error is of the size of an unseen device's (frameworks differ many times over in
    throughput on one device), which no descriptor of the configuration reveals, so it takes
    the unseen-hardware level and interval."""
    if config in known.counts:
        return KNOWN_CONFIGURATION
    if known.frameworks and config[2] not in known.frameworks:
        return UNSEEN_HARDWARE
    if config[0] in known.hardware:
        return UNSEEN_CONFIGURATION
    hw = resolve_hardware(config[0])  # unseen: described by the catalog or not at all
    if hw is not None and (hw.vendor, config[1:]) in known.peer_configs:
        return UNSEEN_HARDWARE_PEER
    return UNSEEN_HARDWARE


def conformal_quantile(scores: np.ndarray, coverage: float) -> float:
    """Split-conformal quantile: the ceil((n+1) * coverage)-th smallest score (inf if n small)."""
    s = np.sort(np.asarray(scores, np.float64))
    n = s.size
    rank = int(np.ceil((n + 1) * coverage))
    if rank > n or n == 0:
        return float("inf")
    return float(s[rank - 1])


# --------------------------------------------------------------------------- error samples
def holdout_rounds(curves, train_idx: np.ndarray, seed: int,
                   known: np.ndarray | None = None) -> list[tuple[str, np.ndarray]]:
    """Hold-out sets (indices into ``curves``) drawn from ``train_idx``.

    A hardware or model round also holds out the ``known`` curves (anchoring short curves) of
    that hardware or model, so nothing of it is seen; shape and annealed rounds hold out
    curves of ``train_idx`` only (the siblings stay known, as under P1).
    """
    from .anneal import holdout_subset
    from .catalog import hardware_id, model_id
    from .protocols import folds_p1

    rounds: list[tuple[str, np.ndarray]] = []
    keys = curves.keys.take(pa.array(train_idx))
    fold = folds_p1(keys, seed)
    for f in np.unique(fold):
        rounds.append((f"shape fold {f}", train_idx[fold == f]))
    known = train_idx if known is None else np.union1d(train_idx, known)
    known_keys = curves.keys.take(pa.array(known))
    hw = np.array([hardware_id(h) for h in known_keys.column("hardware").to_pylist()])
    if np.unique(hw).size > 1:
        for h in np.unique(hw):
            rounds.append((f"hardware {h}", known[hw == h]))
    md = np.array([model_id(m) for m in known_keys.column("model").to_pylist()])
    if np.unique(md).size > 1:
        for m in np.unique(md):
            rounds.append((f"model {m}", known[md == m]))
    scaler = Scaler.fit(curves.x[train_idx])
    v = scaler.transform(curves.x[train_idx])
    k = max(1, int(ANNEAL_SHARE * train_idx.size))
    if train_idx.size > 10:
        for r in range(ANNEAL_ROUNDS):
            res = holdout_subset(v, k, seed=seed + 101 * r, lam=0.5 * (r + 1), steps=1500)
            rounds.append((f"annealed {r}", train_idx[res["chosen"]]))
    return rounds


@dataclass
class ErrorSamples:
    """Per held-out curve: curve index, features, similarity, row errors (log ratios)."""

    curve: np.ndarray
    round_id: np.ndarray
    x: np.ndarray  # FEATURE_NAMES + SIM_FEATURES, per held-out curve
    row_curve: np.ndarray  # for each recorded row: index into the per-curve arrays
    row_log_ratio: np.ndarray
    row_batch: np.ndarray

    def row_features(self, rows: np.ndarray | None = None) -> np.ndarray:
        """ERROR_FEATURE_NAMES matrix for recorded rows (all by default)."""
        rows = np.arange(self.row_curve.size) if rows is None else rows
        return np.column_stack([self.x[self.row_curve[rows]], np.log(self.row_batch[rows])])


def holdout_boosting(boosting=None):
    """Boosting of the parameter model a hold-out round trains: the model's own (``boosting``,
    default ``BoostingParams()``) when it has at most LIGHT_TREES trees, else LIGHT_TREES trees
    at learning rate 0.1 (twice the default's, so fewer trees still fit; training time stays
    bounded). A round never trains more trees than the model whose errors it measures."""
    from .augment import BoostingParams

    boosting = boosting or BoostingParams()
    if boosting.n_estimators <= LIGHT_TREES:
        return boosting
    return BoostingParams(n_estimators=LIGHT_TREES, learning_rate=0.1)


def error_samples(curves, table_rows: tuple[np.ndarray, np.ndarray, np.ndarray],
                  train_idx: np.ndarray, seed: int, progress: bool | None = False,
                  known: np.ndarray | None = None, n_jobs: int | None = 1,
                  boosting=None, rounds: list | None = None) -> ErrorSamples:
    """Run the hold-out rounds (default :func:`holdout_rounds`) and record the errors of every
    held-out curve of ``train_idx`` (``known``, default ``train_idx``: every curve the rounds
    may anchor on); ``boosting``: the parameter model's (see :func:`holdout_boosting`).

    Rounds are independent and seeded by their position, so ``n_jobs`` (worker processes,
    joblib convention: None = 1, -1 = every core) changes the speed, not the result.
    """
    from .learner import curve_config_keys, curve_configs
    from .progress import Progress

    row_codes, bb, y = table_rows
    known = train_idx if known is None else np.union1d(train_idx, known)
    configs = (curve_config_keys(curves.keys), curve_configs(curves.keys))  # once, every round
    if rounds is None:
        rounds = holdout_rounds(curves, train_idx, seed, known)
    order = np.argsort(row_codes, kind="stable")
    starts = np.searchsorted(row_codes[order], np.arange(len(curves) + 1))
    # the measured rows of each curve that a round may hold out
    held_rows = {int(ci): (bb[order[starts[ci]:starts[ci + 1]]], y[order[starts[ci]:starts[ci + 1]]])
                 for ci in train_idx}
    light = holdout_boosting(boosting)
    jobs = [(curves, configs, train_idx, known, held_round, seed + r,
             {int(ci): held_rows[int(ci)] for ci in np.intersect1d(held_round, train_idx)},
             light)
            for r, (_, held_round) in enumerate(rounds)]
    bar = Progress(len(rounds), "error samples", enabled=progress)
    if n_jobs in (None, 1) or len(jobs) < 2:
        results = (_round_errors(*job) for job in jobs)
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(_round_errors)(*job) for job in jobs)
    out_curve, out_round, out_x, out_rc, out_lr, out_bb = [], [], [], [], [], []
    for r, found in enumerate(results):
        for ci, x, log_ratio, batch in found:
            out_rc.append(np.full(log_ratio.size, len(out_curve)))
            out_lr.append(log_ratio)
            out_bb.append(batch)
            out_curve.append(ci)
            out_round.append(r)
            out_x.append(x)
        bar.update()
    bar.close()
    return ErrorSamples(np.array(out_curve), np.array(out_round), np.array(out_x),
                        np.concatenate(out_rc), np.concatenate(out_lr), np.concatenate(out_bb))


def _round_errors(curves, configs: tuple[list, list], train_idx: np.ndarray, known: np.ndarray,
                  held_round: np.ndarray, seed: int,
                  rows: dict[int, tuple[np.ndarray, np.ndarray]], light) -> list[tuple]:
    """One hold-out round: train on the rest (boosting ``light``), predict the held-out curves
    of ``train_idx``; per curve with rows: (curve, features + similarity, log(pred / actual),
    batch sizes). ``configs``: configuration keys and raw configuration tuples of every curve."""
    from .curves import evaluate as eval_curve
    from .learner import fit_learned, params_from_outputs

    rest = np.setdiff1d(train_idx, held_round)
    held = np.intersect1d(held_round, train_idx)
    if rest.size < 2 or held.size == 0:
        return []
    seen = np.setdiff1d(known, held_round)
    curves = curves.described_from(seen)  # a held-out device the catalog lacks: the fallback
    rest, held = rest[curves.plausible[rest]], held[curves.plausible[held]]
    if rest.size < 2 or held.size == 0:
        return []
    learned = fit_learned(curves, seen, seed, light)
    configs_all, raw_configs = configs
    z = learned.predict_targets(curves.x[held], [raw_configs[i] for i in held])
    a, b, c = params_from_outputs(z, curves.roof_batch1[held], curves.roof_knee[held])
    scaler = Scaler.fit(curves.x[rest])
    sim = similarity_features(scaler.transform(curves.x[held]), scaler.transform(curves.x[rest]),
                              [configs_all[i] for i in held],
                              config_counts([configs_all[i] for i in rest], curves.inferred))
    found = []
    for j, ci in enumerate(held):
        batch, actual = rows[int(ci)]
        if batch.size == 0:
            continue
        pred = np.maximum(eval_curve(a[j], b[j], c[j], batch), 1e-3 * c[j])
        found.append((int(ci), np.concatenate([curves.x[ci], sim[j]]), np.log(pred / actual),
                      batch))
    return found


# --------------------------------------------------------------------------- the model
@dataclass
class UncertaintyFit:
    error_models: list  # scikit-learn, one per ERROR_OUTPUTS (target: log sigma of a row)
    scaler: Scaler
    calibration_scores: np.ndarray
    calibration_levels: np.ndarray  # novelty level (anchor_level) of each calibration score
    distance_scale: float
    samples: ErrorSamples
    fit_mask: np.ndarray  # per sample curve: used to fit the error model (else calibration)
    #: hold-out rows beyond the benchmarked ranges (:func:`beyond_samples`; empty: none ran)
    beyond: "BeyondSamples"


ERROR_BOOSTING = dict(n_estimators=200, learning_rate=0.05, max_depth=3)
LEVEL_COLUMN = len(FEATURE_NAMES) + SIM_FEATURES.index("anchor_level")
#: novelty levels (the ``anchor_level`` similarity feature), least known first: unseen hardware;
#: unseen hardware whose configuration was benchmarked on a known device of the same vendor
#: (the transferred efficiency is evidence there, not the trees' extrapolation); unseen
#: configuration on known hardware; benchmarked configuration
LEVELS = ("unseen_hardware", "unseen_hardware_peer_benchmarked", "unseen_configuration",
          "known_configuration")
UNSEEN_HARDWARE, UNSEEN_HARDWARE_PEER, UNSEEN_CONFIGURATION, KNOWN_CONFIGURATION = range(4)
#: per level: is the conformal score normalised by the error model's sigma? Not for unseen
#: hardware: there the error is dominated by how well the device's software stack does, which
#: no descriptor reveals; the error model ranks unseen-device errors poorly and scaling by it
#: made the intervals many times wider at the same coverage (Argonne leave-one-hardware-out),
#: so the interval is the spread of device-level errors itself.
NORMALISED = (False, False, True, True)
CROSS_FOLDS = 4  # folds of the grouped cross-fit that scores unseen-model rows
#: outputs of the error model (columns of its ONNX file), chosen by the query's novelty level:
#: ``seen_hardware`` (known or unseen configuration on benchmarked hardware) is fitted on the
#: hold-out rows whose hardware the round had seen; ``unseen_hardware`` on every hold-out row
ERROR_OUTPUTS = ("seen_hardware", "unseen_hardware")


def error_output(level) -> np.ndarray:
    """Column of ERROR_OUTPUTS that serves each novelty level (LEVELS codes)."""
    unseen = np.isin(np.asarray(level, np.int64), (UNSEEN_HARDWARE, UNSEEN_HARDWARE_PEER))
    return unseen.astype(np.int64)


def sigma_from_outputs(log_sigma: np.ndarray, column: np.ndarray,
                       floor: float = SIGMA_FLOOR) -> np.ndarray:
    """sigma per row from the error model's outputs (rows x outputs of log sigma): the row's
    ``column`` (``error_output`` of its level), at least ``floor``."""
    log_sigma = np.asarray(log_sigma, np.float64)
    picked = log_sigma[np.arange(log_sigma.shape[0]), np.asarray(column, np.int64)]
    return np.maximum(np.exp(picked), floor)


def fit_uncertainty(curves, table_rows, train_idx: np.ndarray, seed: int,
                    progress: bool | None = False, known: np.ndarray | None = None,
                    n_jobs: int | None = 1, boosting=None) -> UncertaintyFit:
    """Error samples of the hold-out rounds -> error models + conformal scores
    (:func:`calibrate`). ``known`` (default ``train_idx``) adds the short curves that anchor
    their configuration without training the trees; ``boosting``: the parameter model's."""
    from .catalog import model_id

    samples = error_samples(curves, table_rows, train_idx, seed, progress, known=known,
                            n_jobs=n_jobs, boosting=boosting)
    keys = curves.keys.take(pa.array(samples.curve))
    curve_model = np.array([model_id(m) for m in keys.column("model").to_pylist()])
    models, scores, levels, fit_mask = calibrate(samples, curve_model, seed)
    nn = samples.x[:, len(FEATURE_NAMES)]
    beyond = beyond_samples(curves, table_rows, train_idx, seed, models, known=known,
                            n_jobs=n_jobs, boosting=boosting)
    return UncertaintyFit(models, Scaler.fit(curves.x[train_idx]), scores, levels,
                          float(max(np.median(nn), 1e-6)), samples, fit_mask, beyond)


def calibrate(samples: ErrorSamples, curve_model: np.ndarray, seed: int):
    """Error models (one per ERROR_OUTPUTS) and conformal scores, one set per novelty level
    (Mondrian); ``curve_model``: the model name of each sample curve.

    Returns (scikit-learn models, scores sorted ascending, their levels, per sample curve: used
    to fit the error models). The error models are fitted on half of the held-out curves: the
    seen-hardware output on those rows whose hardware the round had seen, the unseen-hardware
    output on all of them. Scores of known-configuration rows are ``|log(pred / actual)| /
    sigma`` on the other half (split conformal). Rows of a held-out model on known hardware
    (unseen configuration) are scored by a grouped cross-fit: the error model that scores them
    never saw any sample of that model, as at prediction time for a model not in the training
    data (a curve-level split would let the error model recognise the held-out model by its
    descriptors and learn its error size, making the scores too small). Rows of a held-out
    device are scored by ``|log(pred / actual)|`` alone (see NORMALISED).
    """
    from .augment import BoostingParams, fit_boosted, predict_sklearn

    rng = np.random.default_rng(seed)
    # split by curve (all samples of one curve on one side), half to fit, half to calibrate
    uniq = np.unique(samples.curve)
    fit_curves_ = set(rng.permutation(uniq)[: uniq.size // 2].tolist())
    fit_mask = np.array([c in fit_curves_ for c in samples.curve])
    row_fit = fit_mask[samples.row_curve]
    abs_err = np.abs(samples.row_log_ratio)
    target = np.log(np.maximum(abs_err, SIGMA_FLOOR))
    params = BoostingParams(**ERROR_BOOSTING)
    features = samples.row_features()
    row_level = samples.x[samples.row_curve, LEVEL_COLUMN].astype(np.int64)
    seen_hw = error_output(row_level) == ERROR_OUTPUTS.index("seen_hardware")

    def fit_and_score(fit_rows: np.ndarray, score_rows: np.ndarray):
        """Seen-hardware error model on ``fit_rows`` of seen hardware; scores of ``score_rows``."""
        fit_rows = fit_rows[seen_hw[fit_rows]]
        models = fit_boosted(features[fit_rows], target[fit_rows], seed, params)
        sigma = np.maximum(np.exp(predict_sklearn(models, features[score_rows])[:, 0]),
                           SIGMA_FLOOR)
        return models, abs_err[score_rows] / sigma

    models, known = fit_and_score(np.flatnonzero(row_fit),
                                  np.flatnonzero(~row_fit & (row_level == KNOWN_CONFIGURATION)))
    models = models + fit_boosted(features[row_fit], target[row_fit], seed, params)
    scores, levels = [known], [np.full(known.size, KNOWN_CONFIGURATION)]
    for lv in (UNSEEN_HARDWARE, UNSEEN_HARDWARE_PEER):
        scores.append(abs_err[row_level == lv])
        levels.append(np.full(scores[-1].size, lv))
    row_model = np.asarray(curve_model)[samples.row_curve]
    for fit_rows, score_rows in grouped_cross_fit(row_model, row_level == UNSEEN_CONFIGURATION,
                                                  row_fit, rng):
        scores.append(fit_and_score(fit_rows, score_rows)[1])
        levels.append(np.full(score_rows.size, UNSEEN_CONFIGURATION))
    scores_all, levels_all = np.concatenate(scores), np.concatenate(levels).astype(np.int8)
    order = np.argsort(scores_all, kind="stable")
    return models, scores_all[order], levels_all[order], fit_mask


def grouped_cross_fit(row_unit: np.ndarray, scored: np.ndarray, usable: np.ndarray,
                      rng: np.random.Generator, folds: int = CROSS_FOLDS):
    """(fit rows, score rows) pairs: every ``scored`` row is scored at most once (not when no
    fit rows remain), by a fit on ``usable`` rows none of which shares its unit (a name)."""
    scored_idx = np.flatnonzero(scored)
    names = rng.permutation(np.unique(row_unit[scored_idx]))
    for f in range(min(folds, names.size)):
        out = np.isin(row_unit, names[f::folds])
        fit_rows = np.flatnonzero(usable & ~out)
        score_rows = scored_idx[out[scored_idx]]
        if fit_rows.size and score_rows.size:
            yield fit_rows, score_rows


def level_quantiles(scores: np.ndarray, levels: np.ndarray | None, coverage: float,
                    n_levels: int = len(LEVELS)) -> np.ndarray:
    """Conformal quantile per novelty level (``n_levels`` of them): Mondrian split conformal.

    The two unseen-hardware levels share one quantile, of their scores together: the level
    tells the error model (``expected_ape``, confidence) whether a peer device's benchmark
    backs the prediction, but a separate score set per level is calibrated on a handful of
    devices per vendor and under-covered (Argonne leave-one-hardware-out: 77% for a nominal
    90%, against 84% together). A level with too few scores for the coverage uses the quantile
    of all scores. Bundles of three levels (before the peer level) keep their meaning.
    """
    pooled = conformal_quantile(scores, coverage)
    if levels is None:
        return np.full(n_levels, pooled)
    q = np.array([conformal_quantile(scores[levels == lv], coverage) for lv in range(n_levels)])
    if n_levels == len(LEVELS):
        unseen_hw = (levels == UNSEEN_HARDWARE) | (levels == UNSEEN_HARDWARE_PEER)
        q[[UNSEEN_HARDWARE, UNSEEN_HARDWARE_PEER]] = conformal_quantile(scores[unseen_hw], coverage)
    return np.where(np.isfinite(q), q, pooled)


def half_width(q_levels: np.ndarray, level: np.ndarray, sigma: np.ndarray,
               normalised: tuple[bool, ...] = NORMALISED) -> np.ndarray:
    """Half width of the log-scale interval: q of the row's level, times sigma where the
    level's scores are normalised (``normalised``: per level, as the bundle was trained)."""
    level = np.asarray(level, np.int64)
    return np.where(np.asarray(normalised)[level], q_levels[level] * sigma, q_levels[level])


def interval(pred: np.ndarray, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = np.exp(half)
    return pred / w, pred * w


def expected_ape(sigma: np.ndarray) -> np.ndarray:
    """Expected APE (%) for a log-scale error of size sigma."""
    return 100.0 * (np.exp(sigma) - 1.0)


#: request quantities whose benchmarked range bounds what the models have evidence for
RANGE_COLUMNS = ("input_tokens", "output_tokens", "batch_size")


def observed_ranges(ii: np.ndarray, oo: np.ndarray, bb: np.ndarray) -> np.ndarray:
    """(log min, log max) of each of RANGE_COLUMNS over benchmarked rows (3 x 2)."""
    logs = [np.log(np.asarray(v, np.float64)) for v in (ii, oo, bb)]
    return np.array([[v.min(), v.max()] for v in logs])


def extrapolation(ranges: np.ndarray | None, ii=None, oo=None, bb=None) -> np.ndarray:
    """How far, in log units summed over RANGE_COLUMNS, each request lies beyond the benchmarked
    ranges (``observed_ranges``): 0 inside them, ``log(8192 / 2048)`` for 8192 input tokens
    where 2048 was the most benchmarked. Quantities passed as None are not counted (a curve's
    ii and oo without its batch sizes, say); ranges None (bundles from before them): 0.

    The error model and the conformal scores saw hold-outs inside the ranges, and the trees
    answer as at the edge, so how errors grow out there is measured separately: the range
    rounds (:func:`range_rounds`) hold out the longest and the shortest request shapes and
    record how far their rows' errors exceed the in-range interval per log unit of
    extrapolation (:class:`BeyondSamples`); the interval widens by that slope times the
    extrapolation and ``expected_ape`` by the median slope, as far out as the rounds reached;
    farther out, by the unmeasured extrapolation itself (:class:`BeyondSlopes`).
    """
    given = [(j, np.asarray(v, np.float64)) for j, v in enumerate((ii, oo, bb)) if v is not None]
    out = np.zeros(np.broadcast(*(v for _, v in given)).shape if given else ())
    if ranges is None:
        return out
    ranges = np.asarray(ranges, np.float64)
    for j, v in given:
        lo, hi = ranges[j]
        lv = np.log(v)
        out = out + np.maximum(lv - hi, 0.0) + np.maximum(lo - lv, 0.0)
    return out


#: slope (per log unit beyond the ranges) of both the interval and the error scale farther
#: out than any range round reached (or with no range round: a table of one request shape):
#: uncertain by the factor of the unmeasured extrapolation itself
UNMEASURED_SLOPE = 1.0


class BeyondSlopes(NamedTuple):
    """Per log unit beyond the benchmarked ranges: the interval's and the error scale's growth
    up to ``reach`` (the farthest extrapolation the range rounds measured), UNMEASURED_SLOPE
    beyond it."""

    interval: float
    error: float
    reach: float

    def widen(self, sigma: np.ndarray, half: np.ndarray, extra: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        """(sigma, half width) of requests ``extra`` log units beyond the ranges."""
        measured = np.minimum(extra, self.reach)
        unmeasured = UNMEASURED_SLOPE * np.maximum(extra - self.reach, 0.0)
        return (sigma + self.error * measured + unmeasured,
                half + self.interval * measured + unmeasured)


NO_WIDENING = BeyondSlopes(0.0, 0.0, float("inf"))  # bundles from before the ranges


class BeyondSamples(NamedTuple):
    """Rows the range rounds held out beyond the rest's benchmarked ranges: their absolute log
    error, the error model's sigma, novelty level and extrapolation (log units)."""

    abs_err: np.ndarray
    sigma: np.ndarray
    level: np.ndarray
    extra: np.ndarray

    def slopes(self, q_levels: np.ndarray, coverage: float,
               normalised: tuple[bool, ...] = NORMALISED) -> BeyondSlopes:
        """The interval's and the error scale's slope per log unit beyond the ranges, up to
        the farthest extrapolation among the rows (``reach``).

        Interval: the split-conformal quantile at ``coverage`` of ``max(0, |err| - half) /
        extra``, half the in-range half width of the row (``q_levels``, :func:`half_width`):
        with it, ``half + slope * extra`` covers that share of the held-out rows. Error scale:
        the median of ``(|err| - sigma) / extra`` (at least 0), so that the rows' errors are
        as often above ``sigma + scale * extra`` as below. Without enough rows for the
        coverage nothing is measured (reach 0: UNMEASURED_SLOPE from the edge on)."""
        if self.abs_err.size == 0:
            return BeyondSlopes(UNMEASURED_SLOPE, UNMEASURED_SLOPE, 0.0)
        half = half_width(q_levels, self.level, self.sigma, normalised)
        slope = conformal_quantile(np.maximum(self.abs_err - half, 0.0) / self.extra, coverage)
        if not np.isfinite(slope):
            return BeyondSlopes(UNMEASURED_SLOPE, UNMEASURED_SLOPE, 0.0)
        scale = max(float(np.median((self.abs_err - self.sigma) / self.extra)), 0.0)
        return BeyondSlopes(float(slope), scale, float(self.extra.max()))

    def to_table(self) -> pa.Table:
        return pa.table({"abs_err": self.abs_err, "sigma": self.sigma,
                         "level": pa.array(self.level, pa.int8()), "extra": self.extra})

    @classmethod
    def from_table(cls, t: pa.Table) -> "BeyondSamples":
        return cls(*(t.column(c).to_numpy().astype(np.float64 if c != "level" else np.int64)
                     for c in ("abs_err", "sigma", "level", "extra")))


NO_BEYOND_SAMPLES = BeyondSamples(np.zeros(0), np.zeros(0), np.zeros(0, np.int64), np.zeros(0))


def range_rounds(curves, known: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Hold-out sets that make the models extrapolate in request shape: for input and for
    output tokens, every ``known`` curve at the largest value, and every one at the smallest
    (when ``known`` has at least two values)."""
    rounds = []
    for j, name in enumerate(RANGE_COLUMNS[:2]):  # ii and oo are feature columns 0 and 1
        v = curves.x[known, j]
        if np.unique(v).size < 2:
            continue
        rounds.append((f"longest {name}", known[v == v.max()]))
        rounds.append((f"shortest {name}", known[v == v.min()]))
    return rounds


def beyond_samples(curves, table_rows, train_idx: np.ndarray, seed: int, error_models: list,
                   known: np.ndarray | None = None, n_jobs: int | None = 1,
                   boosting=None) -> BeyondSamples:
    """The range rounds' held-out rows beyond the rest's benchmarked ranges, with the sigma
    of ``error_models`` (which never saw these rounds)."""
    from .augment import predict_sklearn

    codes, bb, _ = table_rows
    known = train_idx if known is None else np.union1d(train_idx, known)
    rounds = range_rounds(curves, known)
    if not rounds:
        return NO_BEYOND_SAMPLES
    found = error_samples(curves, table_rows, train_idx, seed + 7919, known=known,
                          n_jobs=n_jobs, boosting=boosting, rounds=rounds)
    if found.curve.size == 0:
        return NO_BEYOND_SAMPLES
    extra = np.empty(found.row_curve.size)
    for r, (_, held) in enumerate(rounds):
        rows = np.flatnonzero(found.round_id[found.row_curve] == r)
        if rows.size == 0:
            continue
        seen = np.isin(codes, np.setdiff1d(known, held))
        ranges = observed_ranges(curves.x[codes[seen], 0], curves.x[codes[seen], 1], bb[seen])
        ci = found.curve[found.row_curve[rows]]
        extra[rows] = extrapolation(ranges, curves.x[ci, 0], curves.x[ci, 1],
                                    found.row_batch[rows])
    level = found.x[found.row_curve, LEVEL_COLUMN].astype(np.int64)
    sigma = sigma_from_outputs(predict_sklearn(error_models, found.row_features()),
                               error_output(level))
    out = extra > 0
    return BeyondSamples(np.abs(found.row_log_ratio[out]), sigma[out], level[out], extra[out])


def confidence(nn_dist: np.ndarray, distance_scale: float) -> np.ndarray:
    return np.exp(-np.asarray(nn_dist) / distance_scale)

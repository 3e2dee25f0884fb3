"""Unseen hardware: borrow the efficiency a configuration reaches on similar known devices.

The learned targets are roofline-relative efficiencies (:mod:`ala_fast.targets`). For a device
the training data never saw, the trees' answer at the device's own descriptors extrapolates
from a handful of devices, and a split that separated two known devices can put the new one on
either side. The same configuration's efficiency on known devices is a second, independent
answer: same vendor (same software stack) and close in memory bandwidth and peak compute.

A query on unseen hardware therefore gets the equal-weight blend, in target space, of the trees
(anchored as usual) and that transferred efficiency, both applied to the new device's roofline.
Only devices on which the query's configuration (device count, framework, model, precision,
batch kind) was benchmarked lend it their efficiency when there are any: elsewhere the
"borrowed" value would be the trees' extrapolation again, not evidence. One function serves
training, evaluation and prediction alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from .catalog import NO_INFERRED_DEVICES, InferredDevices, config_identity, hardware_id
from .features import build_features, config_matrix
from .grouping import distinct

BLEND = 0.5  # weight of the transferred efficiency against the trees' own answer
#: log-distance (|log bandwidth ratio| + |log compute ratio|) over which a known device's
#: weight falls by a factor e
DEVICE_SCALE = 0.5
#: known devices weighing less than this share of the heaviest one are left out (renormalised)
WEIGHT_FLOOR = 0.01

TargetsFn = Callable[[np.ndarray, list], np.ndarray]  # (features, identities) -> targets


def known_devices(hardware_names: Iterable[str]) -> tuple[str, ...]:
    """One spelling per catalog entry (the first seen), sorted by entry: the devices to borrow
    from."""
    first: dict[str, str] = {}
    for name in hardware_names:
        first.setdefault(hardware_id(name), name)
    return tuple(first[k] for k in sorted(first))


@lru_cache(maxsize=4096)
def device_weights(hardware: str, known: tuple[str, ...],
                   benchmarked: tuple[bool, ...] | None = None,
                   inferred: InferredDevices = NO_INFERRED_DEVICES) -> np.ndarray:
    """Weights (summing to 1) of the known devices for a query on ``hardware``.

    Known devices of the query's vendor only, when there are any; each weighted by
    ``exp(-(|log bw ratio| + |log compute ratio|) / DEVICE_SCALE)``. ``benchmarked`` (one flag
    per known device: was the query's configuration benchmarked there?) keeps only the flagged
    devices when any of them has weight. Devices below ``WEIGHT_FLOOR`` of the heaviest are
    dropped. A device the catalog does not know gets equal weights on every known device. The
    returned array is shared (cached): do not modify it.
    """
    w = _closeness(hardware, known, inferred)
    if benchmarked is not None:
        evidence = w * np.asarray(benchmarked, bool)
        if evidence.any():
            w = evidence
    w = np.where(w < WEIGHT_FLOOR * w.max(), 0.0, w)
    w /= w.sum()
    w.setflags(write=False)
    return w


def _closeness(hardware: str, known: tuple[str, ...], inferred: InferredDevices) -> np.ndarray:
    """Unnormalised closeness weights of the known devices (see :func:`device_weights`)."""
    me = inferred.resolve(hardware)
    specs = [inferred.resolve(n) for n in known]
    if me is None:
        return np.ones(len(known))
    same = np.array([s is not None and s.vendor == me.vendor for s in specs])
    use = same if same.any() else np.array([s is not None for s in specs])
    if not use.any():
        return np.ones(len(known))
    w = np.zeros(len(known))
    for j in np.flatnonzero(use):
        s = specs[j]
        d = abs(np.log(s.mem_bw_tbs / me.mem_bw_tbs)) + abs(np.log(s.fp16_tflops / me.fp16_tflops))
        w[j] = np.exp(-d / DEVICE_SCALE)
    return w


def unseen_rows(hardware: Sequence[str], known: Sequence[str]) -> np.ndarray:
    """Indices of queries whose hardware (catalog entry or name) is not among ``known``."""
    seen = {hardware_id(n) for n in known}
    return np.array([i for i, h in enumerate(hardware) if hardware_id(h) not in seen], np.int64)


class Lending(NamedTuple):
    """Where one configuration on unseen hardware borrows its efficiency from: the same
    configuration on each lending known device (raw tuples), their weights (summing to 1),
    configuration vectors and identities."""

    configs: tuple[tuple, ...]
    weights: np.ndarray
    cfg: np.ndarray  # configuration vectors (len(configs) x N_CONFIG)
    identities: tuple


def lending(config: tuple, known: tuple[str, ...],
            benchmarked: Callable[[tuple], bool] | None = None,
            inferred: InferredDevices = NO_INFERRED_DEVICES) -> Lending:
    """The :class:`Lending` of ``config`` (hardware, num_devices, framework, model, precision,
    batch_kind), whose hardware is not among ``known`` (see :func:`device_weights`);
    ``inferred`` describes the known devices the catalog does not know."""
    rest = tuple(config[1:])
    flags = None if benchmarked is None else tuple(bool(benchmarked((d, *rest))) for d in known)
    w = device_weights(config[0], known, flags, inferred)
    devices = np.flatnonzero(w)
    configs = tuple((known[j], *rest) for j in devices)
    return Lending(configs, w[devices], config_matrix(*zip(*configs), inferred=inferred),
                   tuple(config_identity(*c) for c in configs))


def blend_lent(z: np.ndarray, rows: np.ndarray, lendings: Sequence[Lending],
               lending_of: np.ndarray, ii: np.ndarray, oo: np.ndarray,
               targets: TargetsFn) -> np.ndarray:
    """``z`` with rows ``rows`` blended with what they borrow: row ``rows[k]`` from
    ``lendings[lending_of[k]]`` at its (ii, oo); one (query, lending device) pair per weight,
    in one batch of features and targets."""
    z = np.array(z, np.float64, copy=True)
    if rows.size == 0:
        return z
    sizes = np.array([len(g.configs) for g in lendings], np.int64)
    row_sizes = sizes[lending_of]
    pair_row = np.repeat(np.arange(rows.size), row_sizes)
    # pair p is lender j of its row: row j of its lending's block of configuration vectors
    lender = np.arange(pair_row.size) - (np.cumsum(row_sizes) - row_sizes)[pair_row]
    pair_config = (np.cumsum(sizes) - sizes)[lending_of][pair_row] + lender
    pair_weight = np.concatenate([lendings[g].weights for g in lending_of])
    identities = [i for g in lendings for i in g.identities]
    x = build_features(np.concatenate([g.cfg for g in lendings]),
                       np.asarray(ii, np.float64)[rows][pair_row],
                       np.asarray(oo, np.float64)[rows][pair_row], cfg_index=pair_config)
    borrowed_pairs = targets(x, [identities[k] for k in pair_config])
    borrowed = np.zeros((rows.size, 3))
    np.add.at(borrowed, pair_row, pair_weight[:, None] * borrowed_pairs)
    z[rows] = (1 - BLEND) * z[rows] + BLEND * borrowed
    return z


def blend_unseen_hardware(z: np.ndarray, configs: Sequence[tuple], ii: np.ndarray,
                          oo: np.ndarray, known: Sequence[str], inferred: InferredDevices,
                          targets: TargetsFn,
                          benchmarked: Callable[[tuple], bool] | None = None) -> np.ndarray:
    """Targets ``z`` (rows x 3, one row per query) with the rows on unseen hardware blended.

    ``configs`` holds (hardware, num_devices, framework, model, precision, batch_kind) per
    query as given; ``inferred`` describes the known devices the catalog does not know;
    ``targets`` maps a feature matrix and identities to anchored targets;
    ``benchmarked`` tells whether a configuration (a known device swapped in) has benchmarked
    curves (see :func:`device_weights`; None: every device counts).
    """
    known = tuple(known)
    rows = unseen_rows([c[0] for c in configs], known) if known else np.zeros(0, np.int64)
    if rows.size == 0:
        return np.array(z, np.float64, copy=True)
    # the lending depends only on the configuration: each distinct one is weighed once
    group, group_of = distinct([tuple(configs[i]) for i in rows])
    lendings = [lending(config, known, benchmarked, inferred) for config in group]
    return blend_lent(z, rows, lendings, group_of, ii, oo, targets)

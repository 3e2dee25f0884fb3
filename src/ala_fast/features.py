"""Workload -> feature matrix: one definition used by training and prediction alike.

A curve (configuration + ii + oo) is described by

- the published seven request-shape features of ARISE,
- configuration descriptors from the catalog (device compute, bandwidth, memory, device count,
  the bandwidth of the link the tensor-parallel all-reduce crosses, model size, bytes per
  weight, framework one-hot, whether the names were recognised),
- roofline quantities derived from them (weight bytes per device, memory left for the KV cache,
  the batch that fills it, a bandwidth-bound decode rate, a compute-bound token rate, the
  all-reduce's cost relative to compute and the batch-1 and plateau throughputs they imply).

The roofline numbers also scale the learned targets (:mod:`ala_fast.targets`), which is what
lets trees trained on some hardware say something about hardware they never saw.

Feature building is split in two so the hot path can cache the first part:
``config_vector`` (strings -> numbers, cached per distinct configuration) and
``build_features`` (numbers only; the compiled twin is ``_kernels.features``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .catalog import (
    FALLBACK_HARDWARE, FRAMEWORKS, LAYER_SPLIT_FRAMEWORKS, NO_INFERRED_DEVICES, PRECISION_BYTES,
    VENDORS, InferredDevices, interconnect_of, model_from_name, model_size_known,
    normalise_framework, normalise_precision, resolve_hardware, resolve_model,
)
from ._kernels.features import CONFIG_HEAD

# fallbacks for names the catalog does not know (catalog.FALLBACK_HARDWARE; a 7B model where
# the name states no size)
_FALLBACK_HW = (FALLBACK_HARDWARE.fp16_tflops, FALLBACK_HARDWARE.fp8_tflops,
                FALLBACK_HARDWARE.mem_bw_tbs, FALLBACK_HARDWARE.mem_gb)
_FALLBACK_MODEL = (7.0, 7.0, 32, 4096, 32, 8, 128)
KV_BYTES = 2.0  # KV cache element size (fp16) with 16-bit weights (see kv_bytes below)

#: configuration vector layout (produced by config_vector, consumed by build_features)
CONFIG_FIELDS: tuple[str, ...] = CONFIG_HEAD + (
    "hardware_known", "model_known", "concurrency",
) + tuple(f"fw_{f}" for f in FRAMEWORKS) + ("fw_other",) + tuple(f"vendor_{v}" for v in VENDORS)

SHAPE_FEATURES: tuple[str, ...] = (
    "ii", "oo", "log1p_ii", "log1p_oo", "log1p_ii_over_oo", "ii_over_oo1", "ii_over_ii1",
)
ROOFLINE_FEATURES: tuple[str, ...] = (
    "log_weight_gb_per_device", "log_kv_free_gb", "log_kv_batch_limit", "log_decode_rate",
    "log_compute_rate", "log_roof_batch1", "log_roof_plateau", "log_roof_knee",
    "log_total_tflops", "log_total_bw", "log_comm_share",
)
FEATURE_NAMES: tuple[str, ...] = SHAPE_FEATURES + CONFIG_FIELDS + ROOFLINE_FEATURES
N_CONFIG = len(CONFIG_FIELDS)
N_FEATURES = len(FEATURE_NAMES)
# indices into the configuration vector used by build_features
_C = {name: i for i, name in enumerate(CONFIG_FIELDS)}


@lru_cache(maxsize=65536)
def _config_vector_cached(hardware: str, num_devices: int, framework: str, model: str,
                          precision: str, batch_kind: str,
                          inferred: InferredDevices) -> tuple[float, ...]:
    hw = inferred.resolve(hardware)
    md = resolve_model(model)
    known_model = md is not None
    if md is None:  # a size in the name beats the 7B fallback (catalog.model_from_name)
        md = model_from_name(model)
    prec = normalise_precision(precision)
    bpw = PRECISION_BYTES.get(prec, 2.0)
    if hw is not None:
        tflops = hw.fp8_tflops if bpw <= 1.0 else hw.fp16_tflops
        bw, mem = hw.mem_bw_tbs, hw.mem_gb
    else:
        tflops = _FALLBACK_HW[1] if bpw <= 1.0 else _FALLBACK_HW[0]
        bw, mem = _FALLBACK_HW[2], _FALLBACK_HW[3]
    if md is not None:
        params, active, layers, hidden, kvh, hdim = (
            md.params_b, md.active_b, md.layers, md.hidden, md.kv_heads, md.head_dim)
    else:
        params, active, layers, hidden, _, kvh, hdim = _FALLBACK_MODEL
    fw = normalise_framework(framework)
    onehot = [1.0 if fw == f else 0.0 for f in FRAMEWORKS]
    onehot.append(0.0 if fw in FRAMEWORKS else 1.0)
    # the KV cache: 1 byte with 8-bit and narrower weights, the weights' own width above 2
    kv_bytes = 1.0 if bpw <= 1.0 else max(bpw, KV_BYTES)
    vendor = hw.vendor if hw is not None else "unknown"
    tp_link = (0.0 if num_devices <= 1 or fw in LAYER_SPLIT_FRAMEWORKS
               else interconnect_of(hw).bandwidth_gbs(num_devices))
    onehot.extend(1.0 if vendor == v else 0.0 for v in VENDORS)
    return (
        float(num_devices), float(tflops), float(bw), float(mem), float(params), float(active),
        float(bpw), float(layers), float(hidden), float(kvh * hdim), kv_bytes, float(tp_link),
        1.0 if hw is not None else 0.0, 1.0 if known_model else 0.0,
        1.0 if batch_kind == "concurrency" else 0.0, *onehot,
    )


def config_vector(hardware: str, num_devices: int, framework: str, model: str,
                  precision: str = "fp16", batch_kind: str = "static",
                  inferred: InferredDevices = NO_INFERRED_DEVICES) -> np.ndarray:
    """Numeric description of one configuration (cached per distinct strings). ``inferred``
    describes hardware the catalog does not know (else FALLBACK_HARDWARE stands for it)."""
    return np.array(_config_vector_cached(str(hardware), int(num_devices), str(framework),
                                          str(model), str(precision), str(batch_kind), inferred))


def config_matrix(hardware, num_devices, framework, model, precision, batch_kind,
                  inferred: InferredDevices = NO_INFERRED_DEVICES) -> np.ndarray:
    """Configuration vectors for many configurations (lists / arrays of equal length)."""
    rows = [
        _config_vector_cached(str(h), int(n), str(f), str(m), str(p), str(k), inferred)
        for h, n, f, m, p, k in zip(hardware, num_devices, framework, model, precision, batch_kind)
    ]
    return np.array(rows, dtype=np.float64).reshape(len(rows), N_CONFIG)


def build_features(cfg: np.ndarray, ii: np.ndarray, oo: np.ndarray,
                   cfg_index: np.ndarray | None = None) -> np.ndarray:
    """Feature matrix (rows x N_FEATURES, float64) in the order of FEATURE_NAMES.

    ``cfg`` holds configuration vectors; row i uses ``cfg[cfg_index[i]]`` (default: row i).
    Computed by the compiled kernel ``_kernels.features.build_features`` (the formulas are
    documented there; tests/naive.py holds the NumPy reference).
    """
    from ._kernels import features as kf

    cfg = np.ascontiguousarray(np.atleast_2d(cfg), np.float64)
    ii = np.ascontiguousarray(ii, np.float64).reshape(-1)
    oo = np.ascontiguousarray(oo, np.float64).reshape(-1)
    if cfg_index is None:
        cfg_index = np.arange(ii.size, dtype=np.int64)
    out = np.empty((ii.size, N_FEATURES))
    kf.build_features(cfg, np.ascontiguousarray(cfg_index, np.int64), ii, oo, out)
    return out


def memory_batch_limit(cfg: np.ndarray, ii: np.ndarray, oo: np.ndarray,
                       cfg_index: np.ndarray | None = None) -> np.ndarray:
    """The largest batch whose KV cache fits beside the weights, per row (int64; 0 where the
    weights alone do not fit the devices' memory).

    The same memory model as the ``log_kv_batch_limit`` feature (compiled kernel
    ``_kernels.features.memory_batch_limits``): MEM_USABLE of every device's memory, less the
    weights, holds the keys and values of ``ii + oo`` tokens per sequence. Activations,
    the framework's own buffers and a KV cache in another precision than the configuration's
    are not counted, so a deployment can fail below the limit (or a framework that offloads
    or pages can exceed it)."""
    from ._kernels import features as kf

    cfg = np.ascontiguousarray(np.atleast_2d(cfg), np.float64)
    ii = np.ascontiguousarray(ii, np.float64).reshape(-1)
    oo = np.ascontiguousarray(oo, np.float64).reshape(-1)
    if cfg_index is None:
        cfg_index = np.arange(ii.size, dtype=np.int64)
    out = np.empty(ii.size, np.int64)
    return kf.memory_batch_limits(cfg, np.ascontiguousarray(cfg_index, np.int64), ii, oo, out)


def roofline_batch1_knee(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The roofline batch-1 throughput and knee (plateau / batch1) read back from features."""
    return np.exp(x[:, FEATURE_NAMES.index("log_roof_batch1")]), np.exp(
        x[:, FEATURE_NAMES.index("log_roof_knee")])


def table_features(table, inferred: InferredDevices = NO_INFERRED_DEVICES
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(feature matrix, configuration matrix) for every row of a canonical table."""
    cfg = config_matrix(*(table.column(c).to_pylist() for c in (
        "hardware", "num_devices", "framework", "model", "precision", "batch_kind")), inferred)
    ii = table.column("input_tokens").to_numpy().astype(np.float64)
    oo = table.column("output_tokens").to_numpy().astype(np.float64)
    return build_features(cfg, ii, oo), cfg


ROOFLINE_MARGIN = 2.0  # a measurement above this multiple of the roofline ceiling is implausible


def throughput_ceiling(x: np.ndarray, batch: np.ndarray,
                       trusted: np.ndarray | None = None) -> np.ndarray:
    """Roofline upper bound of output tokens/s for feature rows ``x`` at batch sizes ``batch``.

    No run can beat both limits: one decode step reads the active weights once for the whole
    batch (``batch * decode_rate``), and every token of every sequence costs 2 * active
    parameters FLOPs at peak (``compute_rate * oo / (ii + oo)`` output tokens/s). NaN where
    ``trusted`` (per row) is False; by default where the rows' features do not mark both the
    hardware and the model as known (:func:`roofline_trusted` for a table's rows).
    """
    f = {n: i for i, n in enumerate(FEATURE_NAMES)}
    ii, oo = x[:, f["ii"]], x[:, f["oo"]]
    bound = np.minimum(np.asarray(batch, np.float64) * np.exp(x[:, f["log_decode_rate"]]),
                       np.exp(x[:, f["log_compute_rate"]]) * oo / (ii + oo))
    if trusted is None:
        trusted = (x[:, f["hardware_known"]] > 0) & (x[:, f["model_known"]] > 0)
    return np.where(trusted, bound, np.nan)


def roofline_trusted(table) -> np.ndarray:
    """Per row of a canonical table (or curve keys): whether :func:`throughput_ceiling` can be
    trusted to flag a measurement as impossible: the hardware is in the catalog (its data
    sheet, not a guess) and the model's size is known, from the catalog or from its name
    (``catalog.model_from_name``: the ceiling needs only the active parameter count)."""
    hw = table.column("hardware").to_pylist()
    md = table.column("model").to_pylist()
    return np.array([_roofline_trusted(str(h), str(m)) for h, m in zip(hw, md)], bool)


@lru_cache(maxsize=4096)
def _roofline_trusted(hardware: str, model: str) -> bool:
    return resolve_hardware(hardware) is not None and model_size_known(model)


"""Workload -> feature matrix: one definition used by training and prediction alike.

A curve (configuration + ii + oo) is described by

- the published seven request-shape features of ARISE,
- configuration descriptors from the catalog (device compute, bandwidth, memory, device count,
  model size, bytes per weight, framework one-hot, whether the names were recognised),
- roofline quantities derived from them (weight bytes per device, memory left for the KV cache,
  the batch that fills it, a bandwidth-bound decode rate, a compute-bound token rate and the
  batch-1 and plateau throughputs they imply).

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
    FRAMEWORKS, HARDWARE, VENDORS, MODELS, PRECISION_BYTES, normalise_framework, normalise_precision,
    resolve_hardware, resolve_model,
)

# fallbacks for names the catalog does not know: the median device and model of the catalog
_FALLBACK_HW = (
    float(np.median([h.fp16_tflops for h in HARDWARE])),
    float(np.median([h.fp8_tflops for h in HARDWARE])),
    float(np.median([h.mem_bw_tbs for h in HARDWARE])),
    float(np.median([h.mem_gb for h in HARDWARE])),
)
_FALLBACK_MODEL = (7.0, 7.0, 32, 4096, 32, 8, 128)
KV_BYTES = 2.0  # KV cache element size (fp16) unless the precision is 8-bit
MEM_USABLE = 0.9  # share of device memory a serving framework gets to use

#: configuration vector layout (produced by config_vector, consumed by build_features)
CONFIG_FIELDS: tuple[str, ...] = (
    "num_devices", "tflops", "mem_bw_tbs", "mem_gb", "params_b", "active_b", "bytes_per_weight",
    "layers", "hidden", "kv_dim", "kv_bytes", "hardware_known", "model_known", "concurrency",
) + tuple(f"fw_{f}" for f in FRAMEWORKS) + ("fw_other",) + tuple(f"vendor_{v}" for v in VENDORS)

SHAPE_FEATURES: tuple[str, ...] = (
    "ii", "oo", "log1p_ii", "log1p_oo", "log1p_ii_over_oo", "ii_over_oo1", "ii_over_ii1",
)
ROOFLINE_FEATURES: tuple[str, ...] = (
    "log_weight_gb_per_device", "log_kv_free_gb", "log_kv_batch_limit", "log_decode_rate",
    "log_compute_rate", "log_roof_batch1", "log_roof_plateau", "log_roof_knee",
    "log_total_tflops", "log_total_bw",
)
FEATURE_NAMES: tuple[str, ...] = SHAPE_FEATURES + CONFIG_FIELDS + ROOFLINE_FEATURES
N_CONFIG = len(CONFIG_FIELDS)
N_FEATURES = len(FEATURE_NAMES)
# indices into the configuration vector used by build_features
_C = {name: i for i, name in enumerate(CONFIG_FIELDS)}


@lru_cache(maxsize=65536)
def _config_vector_cached(hardware: str, num_devices: int, framework: str, model: str,
                          precision: str, batch_kind: str) -> tuple[float, ...]:
    hw = resolve_hardware(hardware)
    md = resolve_model(model)
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
    kv_bytes = 1.0 if bpw <= 1.0 else KV_BYTES
    vendor = hw.vendor if hw is not None else "unknown"
    onehot.extend(1.0 if vendor == v else 0.0 for v in VENDORS)
    return (
        float(num_devices), float(tflops), float(bw), float(mem), float(params), float(active),
        float(bpw), float(layers), float(hidden), float(kvh * hdim), kv_bytes,
        1.0 if hw is not None else 0.0, 1.0 if md is not None else 0.0,
        1.0 if batch_kind == "concurrency" else 0.0, *onehot,
    )


def config_vector(hardware: str, num_devices: int, framework: str, model: str,
                  precision: str = "fp16", batch_kind: str = "static") -> np.ndarray:
    """Numeric description of one configuration (cached per distinct strings)."""
    return np.array(_config_vector_cached(str(hardware), int(num_devices), str(framework),
                                          str(model), str(precision), str(batch_kind)))


def config_matrix(hardware, num_devices, framework, model, precision, batch_kind) -> np.ndarray:
    """Configuration vectors for many configurations (lists / arrays of equal length)."""
    rows = [
        _config_vector_cached(str(h), int(n), str(f), str(m), str(p), str(k))
        for h, n, f, m, p, k in zip(hardware, num_devices, framework, model, precision, batch_kind)
    ]
    return np.array(rows, dtype=np.float64).reshape(len(rows), N_CONFIG)


def roofline(cfg: np.ndarray, ii: np.ndarray, oo: np.ndarray) -> dict[str, np.ndarray]:
    """Roofline estimates (output tokens/s and batch sizes) for configurations x shapes."""
    nd = cfg[:, _C["num_devices"]]
    weight_gb = cfg[:, _C["params_b"]] * cfg[:, _C["bytes_per_weight"]]
    kv_free_gb = np.maximum(cfg[:, _C["mem_gb"]] * nd * MEM_USABLE - weight_gb, 0.05 * weight_gb)
    # KV cache bytes per token: K and V for every layer
    kv_per_token = 2.0 * cfg[:, _C["layers"]] * cfg[:, _C["kv_dim"]] * cfg[:, _C["kv_bytes"]]
    kv_batch = kv_free_gb * 1e9 / (kv_per_token * (ii + oo))
    active_bytes = cfg[:, _C["active_b"]] * 1e9 * cfg[:, _C["bytes_per_weight"]]
    decode_rate = nd * cfg[:, _C["mem_bw_tbs"]] * 1e12 / active_bytes  # tokens/s, one stream
    compute_rate = nd * cfg[:, _C["tflops"]] * 1e12 / (2.0 * cfg[:, _C["active_b"]] * 1e9)
    # batch 1: prefill ii tokens compute-bound, then oo tokens bandwidth-bound
    batch1 = oo / (ii / compute_rate + oo / decode_rate)
    # plateau: every token (prompt and output) compute-bound, capped by the KV-cache batch
    plateau_compute = compute_rate * oo / (ii + oo)
    plateau = np.minimum(plateau_compute, batch1 * np.maximum(kv_batch, 1.0))
    knee = np.maximum(plateau / batch1, 1.0)
    return {
        "weight_gb_per_device": weight_gb / nd, "kv_free_gb": kv_free_gb, "kv_batch": kv_batch,
        "decode_rate": decode_rate, "compute_rate": compute_rate, "batch1": batch1,
        "plateau": plateau, "knee": knee,
        "total_tflops": nd * cfg[:, _C["tflops"]], "total_bw": nd * cfg[:, _C["mem_bw_tbs"]],
    }


def build_features(cfg: np.ndarray, ii: np.ndarray, oo: np.ndarray) -> np.ndarray:
    """Feature matrix (rows x N_FEATURES, float64) in the order of FEATURE_NAMES."""
    cfg = np.atleast_2d(np.asarray(cfg, np.float64))
    ii = np.asarray(ii, np.float64)
    oo = np.asarray(oo, np.float64)
    r = roofline(cfg, ii, oo)
    cols = [
        ii, oo, np.log1p(ii), np.log1p(oo), np.log1p(ii / oo), ii / (oo + 1.0), ii / (ii + 1.0),
        *(cfg[:, j] for j in range(N_CONFIG)),
        np.log(r["weight_gb_per_device"]), np.log(r["kv_free_gb"]), np.log(r["kv_batch"]),
        np.log(r["decode_rate"]), np.log(r["compute_rate"]), np.log(r["batch1"]),
        np.log(r["plateau"]), np.log(r["knee"]), np.log(r["total_tflops"]), np.log(r["total_bw"]),
    ]
    return np.stack(cols, axis=1)


def table_features(table) -> tuple[np.ndarray, np.ndarray]:
    """(feature matrix, configuration matrix) for every row of a canonical table."""
    cfg = config_matrix(*(table.column(c).to_pylist() for c in (
        "hardware", "num_devices", "framework", "model", "precision", "batch_kind")))
    ii = table.column("input_tokens").to_numpy().astype(np.float64)
    oo = table.column("output_tokens").to_numpy().astype(np.float64)
    return build_features(cfg, ii, oo), cfg

"""Compiled feature building (the one definition used by training and prediction).

For a configuration vector (layout ``features.CONFIG_FIELDS``) and a request shape (ii, oo):

- the seven ARISE shape features: ii, oo, log1p(ii), log1p(oo), log1p(ii/oo), ii/(oo+1),
  ii/(ii+1);
- the configuration vector itself;
- roofline quantities: weight GB per device; KV-cache memory left (usable memory share
  MEM_USABLE of all devices minus the weights, at least 5% of the weights); the batch that
  fills it at ii+oo tokens per sequence; the bandwidth-bound decode rate of one stream; the
  compute-bound token rate; the batch-1 throughput (prefill compute-bound, decode
  bandwidth-bound); the plateau (every token pays its compute and its share of the
  tensor-parallel all-reduce, capped by the KV batch); the knee (plateau / batch-1, >= 1);
  total TFLOP/s and TB/s; all as natural logs; and the all-reduce's cost relative to compute,
  log(1 + compute_rate / comm_rate) (0 without an all-reduce).

The all-reduce: tensor parallelism sums two activation vectors of ``hidden`` fp16 values per
layer and token (after attention and after the MLP), and a ring all-reduce over n devices
moves 2 (n - 1) / n of each through every device's link, so the link alone allows
``comm_rate = link / (4 layers hidden 2 bytes (n - 1) / n)`` tokens/s. ``tp_link_gbs`` is that
link's bandwidth (``catalog.Interconnect``), 0 where no all-reduce runs (one device, or a
framework that splits the model by layers). Prefill and decode tokens both pay it, as they
pay compute, and tensor-parallel serving does not overlap it with compute.
"""

from __future__ import annotations

import numpy as np

from .options import jit

# Numba's on-disk cache freezes module globals into the compiled code and is invalidated only
# when *this* file changes, so everything the kernels read is defined here, not imported: the
# configuration vector starts with CONFIG_HEAD (features.CONFIG_FIELDS is built on it) and its
# length is read from the input.
CONFIG_HEAD: tuple[str, ...] = (
    "num_devices", "tflops", "mem_bw_tbs", "mem_gb", "params_b", "active_b", "bytes_per_weight",
    "layers", "hidden", "kv_dim", "kv_bytes", "tp_link_gbs",
)
MEM_USABLE = 0.9  # share of device memory a serving framework gets to use
N_SHAPE = 7  # shape features before the configuration vector
N_ROOFLINE = 11  # roofline features after it
ACT_BYTES = 2.0  # an activation value in the all-reduce (fp16 / bf16)

_ND, _TF, _BW, _MEM, _P, _ACT, _BPW, _LAY, _HID, _KVD, _KVB, _LINK = range(len(CONFIG_HEAD))


@jit
def _memory_left_gb(cfg):
    """GB left for the KV cache: MEM_USABLE of all devices' memory minus the weights (negative
    when the weights do not fit)."""
    return cfg[_MEM] * cfg[_ND] * MEM_USABLE - cfg[_P] * cfg[_BPW]


@jit
def _kv_bytes_per_token(cfg):
    """KV-cache bytes of one token: a key and a value of kv_dim per layer."""
    return 2.0 * cfg[_LAY] * cfg[_KVD] * cfg[_KVB]


@jit
def memory_batch_limits(cfg, cfg_index, ii, oo, out):
    """Per row: the largest batch whose KV cache (ii + oo tokens per sequence) fits in the
    memory the weights leave, floor(left / (bytes per token * (ii + oo))); 0 where the weights
    alone do not fit. Row i uses ``cfg[cfg_index[i]]``; ``out`` is int64."""
    for i in range(ii.shape[0]):
        c = cfg[cfg_index[i]]
        left = _memory_left_gb(c)
        if left <= 0.0:
            out[i] = 0
        else:
            out[i] = int(np.floor(left * 1e9 / (_kv_bytes_per_token(c) * (ii[i] + oo[i]))))
    return out


@jit
def features_row(cfg, ii, oo, out):
    """Write the features of one (configuration, ii, oo) into ``out`` (length
    N_SHAPE + len(cfg) + N_ROOFLINE)."""
    out[0] = ii
    out[1] = oo
    out[2] = np.log1p(ii)
    out[3] = np.log1p(oo)
    out[4] = np.log1p(ii / oo)
    out[5] = ii / (oo + 1.0)
    out[6] = ii / (ii + 1.0)
    nc = cfg.shape[0]
    for j in range(nc):
        out[N_SHAPE + j] = cfg[j]
    nd = cfg[_ND]
    weight_gb = cfg[_P] * cfg[_BPW]
    kv_free_gb = max(_memory_left_gb(cfg), 0.05 * weight_gb)
    kv_per_token = _kv_bytes_per_token(cfg)
    kv_batch = kv_free_gb * 1e9 / (kv_per_token * (ii + oo))
    active_bytes = cfg[_ACT] * 1e9 * cfg[_BPW]
    decode_rate = nd * cfg[_BW] * 1e12 / active_bytes
    compute_rate = nd * cfg[_TF] * 1e12 / (2.0 * cfg[_ACT] * 1e9)
    # all-reduce cost per token relative to compute: compute_rate / comm_rate
    comm_per_compute = 0.0
    if cfg[_LINK] > 0.0 and nd > 1.0:
        comm_rate = cfg[_LINK] * 1e9 / (4.0 * cfg[_LAY] * cfg[_HID] * ACT_BYTES * (nd - 1.0) / nd)
        comm_per_compute = compute_rate / comm_rate
    batch1 = oo / (ii / compute_rate + oo / decode_rate)
    token_rate = compute_rate / (1.0 + comm_per_compute)
    plateau = min(token_rate * oo / (ii + oo), batch1 * max(kv_batch, 1.0))
    knee = max(plateau / batch1, 1.0)
    k = N_SHAPE + nc
    out[k] = np.log(weight_gb / nd)
    out[k + 1] = np.log(kv_free_gb)
    out[k + 2] = np.log(kv_batch)
    out[k + 3] = np.log(decode_rate)
    out[k + 4] = np.log(compute_rate)
    out[k + 5] = np.log(batch1)
    out[k + 6] = np.log(plateau)
    out[k + 7] = np.log(knee)
    out[k + 8] = np.log(nd * cfg[_TF])
    out[k + 9] = np.log(nd * cfg[_BW])
    out[k + 10] = np.log1p(comm_per_compute)


@jit
def build_features(cfg, cfg_index, ii, oo, out):
    for i in range(ii.shape[0]):
        features_row(cfg[cfg_index[i]], ii[i], oo[i], out[i])
    return out

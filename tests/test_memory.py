"""The memory batch limit: the largest batch whose KV cache fits beside the weights."""

import csv

import numpy as np
import pyarrow as pa
import pytest

import ala_fast
from ala_fast import features
from ala_fast.predictor import Workload

from .conftest import TRTLLM
from .naive import memory_batch_limit_loop


def _random_workloads(rng, n):
    hw = ["H100", "A100-40GB", "L40S", "MI300X", "Acme X9", "Gaudi2", "T4"]
    md = ["llama-2-7b", "llama-2-70b", "Mixtral 8x7B", "Falcon 180B", "zz-3b", "gpt-oss-20b"]
    pr = ["fp16", "fp8", "int4", "fp32", "fp64"]
    cfg = features.config_matrix([rng.choice(hw) for _ in range(n)],
                                 rng.integers(1, 9, n).tolist(), ["vllm"] * n,
                                 [rng.choice(md) for _ in range(n)],
                                 [rng.choice(pr) for _ in range(n)], ["static"] * n)
    ii = rng.integers(1, 8192, n).astype(np.float64)
    oo = rng.integers(1, 4096, n).astype(np.float64)
    return cfg, ii, oo


@pytest.mark.parametrize("seed", range(3))
def test_kernel_matches_the_plain_python_reference(seed):
    rng = np.random.default_rng(seed)
    cfg, ii, oo = _random_workloads(rng, 400)
    got = features.memory_batch_limit(cfg, ii, oo)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, memory_batch_limit_loop(cfg, ii, oo))
    assert (got == 0).any() and (got > 0).any()  # the cases cover both sides
    # through an index of distinct configurations, as the predictor calls it
    idx = rng.integers(0, cfg.shape[0], 100)
    np.testing.assert_array_equal(features.memory_batch_limit(cfg, ii[idx], oo[idx], idx),
                                  memory_batch_limit_loop(cfg[idx], ii[idx], oo[idx]))


def test_hand_computed_limits():
    cfg = features.config_matrix(["H100", "H100", "H100", "H100"], [1, 1, 2, 8],
                                 ["vllm"] * 4, ["llama-2-7b", "llama-2-70b", "llama-2-70b",
                                                "llama-2-70b"], ["fp16"] * 4, ["static"] * 4)
    ii = np.array([128.0, 128.0, 128.0, 128.0])
    oo = np.full(4, 128.0)
    got = features.memory_batch_limit(cfg, ii, oo)
    # llama-2-7b: 0.9 * 80 GB - 6.74e9 * 2 B = 58.52 GB left; KV 2 * 32 layers * 4096 * 2 B
    # = 512 KiB per token, 256 tokens per sequence
    assert got[0] == int(58.52e9 // (2 * 32 * 4096 * 2 * 256))
    assert got[1] == 0  # 138 GB of fp16 weights on one 80 GB device
    # 70B: grouped-query attention (8 KV heads) keeps its KV cache small
    assert got[2] == int((144e9 - 138e9) // (2 * 80 * 1024 * 2 * 256))
    assert got[3] > 20 * got[2]
    # halving the weight bytes frees memory; longer sequences fit fewer
    fp8 = features.config_matrix(["H100"], [1], ["vllm"], ["llama-2-7b"], ["fp8"], ["static"])
    assert features.memory_batch_limit(fp8, ii[:1], oo[:1])[0] > got[0]
    assert features.memory_batch_limit(cfg[:1], ii[:1] * 8, oo[:1])[0] < got[0]


def test_the_features_kv_batch_is_the_same_quantity():
    """One definition: the roofline feature log_kv_batch_limit and the limit agree wherever
    the weights fit (the feature keeps a floor of 5% of the weights to stay finite)."""
    rng = np.random.default_rng(7)
    cfg, ii, oo = _random_workloads(rng, 300)
    x = features.build_features(cfg, ii, oo)
    limit = features.memory_batch_limit(cfg, ii, oo)
    kv_batch = np.exp(x[:, features.FEATURE_NAMES.index("log_kv_batch_limit")])
    weight_gb = cfg[:, features._C["params_b"]] * cfg[:, features._C["bytes_per_weight"]]
    free = np.exp(x[:, features.FEATURE_NAMES.index("log_kv_free_gb")])
    ok = free > 0.05 * weight_gb * (1 + 1e-9)  # not at the floor
    assert ok.sum() > 100 and (limit[~ok] <= kv_batch[~ok]).all()
    assert np.all(np.abs(limit[ok] - np.floor(kv_batch[ok])) <= 1)
    assert (limit[ok] == np.floor(kv_batch[ok])).mean() > 0.99


def test_trt_llm_failed_runs_are_the_ones_over_the_limit():
    """The TensorRT-LLM sweep keeps its out-of-memory and failed runs (empty metrics): the
    runs the limit flags (batch above it) mostly failed, and runs that succeeded are rarely
    flagged. Read from the raw file, independently of the library's reader."""
    if not TRTLLM.exists():
        pytest.skip("shared data not available")
    with open(TRTLLM, newline="") as f:
        rows = list(csv.DictReader(f))
    failed = np.array([not r["Throughput (tokens / sec)"].strip() for r in rows])
    n = len(rows)
    lengths = [tuple(int(v) for v in r["Input/Output Lengths"].split(",")) for r in rows]
    cfg = features.config_matrix([r["GPU"] for r in rows],
                                 [int(r["Number of GPUs"]) for r in rows], ["trt-llm"] * n,
                                 [r["Model"] for r in rows], [r["Precision"] for r in rows],
                                 ["static"] * n)
    ii = np.array([a for a, _ in lengths], np.float64)
    oo = np.array([b for _, b in lengths], np.float64)
    bb = np.array([int(r["Batch Size"]) for r in rows])
    flagged = bb > features.memory_batch_limit(cfg, ii, oo)
    assert failed.sum() > 500 and flagged.sum() > 200
    assert failed[flagged].mean() > 0.85  # a flagged run failed
    assert flagged[failed].mean() > 0.45  # many failures are memory: the limit finds half
    assert flagged[~failed].mean() < 0.02  # a successful run is rarely flagged


@pytest.fixture(scope="module")
def predictor():
    return ala_fast.load()


def test_predictions_carry_the_limit(predictor):
    t = pa.table({"hardware": ["H100", "H100", "Acme X9"], "num_devices": [1, 1, 1],
                  "framework": ["vllm"] * 3, "model": ["llama-2-7b", "llama-2-70b", "llama-2-7b"],
                  "input_tokens": [128] * 3, "output_tokens": [128] * 3, "batch_size": [8] * 3})
    out = predictor.predict(t)
    assert out.column_names[-1] == "memory_batch_limit"
    assert out.schema.field("memory_batch_limit").type == pa.int64()
    lim = out.column("memory_batch_limit").to_pylist()
    cfg = features.config_matrix(t.column("hardware").to_pylist(), [1] * 3, ["vllm"] * 3,
                                 t.column("model").to_pylist(), ["fp16"] * 3, ["static"] * 3)
    assert lim == features.memory_batch_limit(cfg, np.full(3, 128.0), np.full(3, 128.0)).tolist()
    assert lim[1] == 0 and lim[0] > 100
    one = predictor.predict_one("H100", 1, "vllm", "llama-2-7b", "fp16", 128, 128, 8)
    assert one.memory_batch_limit == lim[0]
    cp = predictor.curve(Workload("H100", 1, "vllm", "llama-2-7b", "fp16", 128, 128), [1, 2])
    assert cp.memory_batch_limit == lim[0]


def test_a_benchmarked_curve_fits_at_least_its_largest_batch(predictor, trtllm):
    """A curve measured at a batch size ran there, so its limit is never below it."""
    out = predictor.predict(trtllm)
    fitted = np.asarray(out.column("basis").to_pylist()) == "fitted"
    lim = out.column("memory_batch_limit").to_numpy()
    bb = out.column("batch_size").to_numpy()
    assert fitted.mean() > 0.5
    assert np.all(lim[fitted] >= bb[fitted])


def test_best_batch_size_stays_within_memory(predictor):
    w = Workload("L40S", 1, "vllm", "llama-2-13b", "fp16", 2048, 2048)
    limit = predictor.predict_one(*w[:8]).memory_batch_limit
    assert 0 < limit < 256
    within = predictor.best_batch_size(w, max_batch_size=256)
    assert within is not None and within[0] <= limit
    anyway = predictor.best_batch_size(w, max_batch_size=256, within_memory=False)
    assert anyway[0] > limit  # without the limit the curve keeps rising past it
    too_big = Workload("L40S", 1, "vllm", "llama-2-70b", "fp16", 128, 128)
    assert predictor.best_batch_size(too_big) is None  # the weights alone do not fit

"""Parameter-model evaluation on 100k distinct rows: compiled evaluator vs ONNX Runtime vs
scikit-learn, plus the whole Predictor.predict path on a 100k-row workload table.

Run: python -m pytest bench/test_bench_predict.py --benchmark-only
"""

import numpy as np
import pyarrow as pa
import pytest

import ala_fast
from ala_fast import features
from ala_fast.augment import predict_sklearn
from ala_fast.readers import concat_tables

N = 100_000


@pytest.fixture(scope="module")
def trained(argonne, trtllm):
    return ala_fast.train(concat_tables([argonne, trtllm]), seed=0)


def random_workloads(n, seed=0):
    rng = np.random.default_rng(seed)
    hw = ["H100", "A100", "L40S", "MI300X", "H200", "B200", "Gaudi2"]
    md = ["llama-2-7b", "llama-3-70b", "mistral-7b", "mixtral-8x7b", "qwen2-72b"]
    return pa.table({
        "hardware": rng.choice(hw, n), "num_devices": rng.choice([1, 2, 4, 8], n),
        "framework": rng.choice(["vllm", "trt-llm", "sglang"], n), "model": rng.choice(md, n),
        "precision": rng.choice(["fp16", "fp8"], n),
        "input_tokens": rng.integers(16, 8192, n), "output_tokens": rng.integers(16, 4096, n),
        "batch_size": rng.integers(1, 512, n),
    })


@pytest.fixture(scope="module")
def features_100k():
    w = ala_fast.validate(random_workloads(N), require_throughput=False)
    x, _ = features.table_features(w)
    return x.astype(np.float32)


@pytest.mark.benchmark(group="parameter model, 100k rows")
def test_compiled_evaluator(benchmark, trained, features_100k):
    trained.raw_targets(features_100k[:10])
    benchmark(trained.raw_targets, features_100k)


@pytest.mark.benchmark(group="parameter model, 100k rows")
def test_compiled_evaluator_single_thread(benchmark, trained, features_100k):
    trained._trees.predict(features_100k[:10], parallel=False)
    benchmark(trained._trees.predict, features_100k, parallel=False)


@pytest.mark.benchmark(group="parameter model, 100k rows")
def test_onnxruntime(benchmark, trained, features_100k):
    trained.raw_targets(features_100k[:10], engine="onnxruntime")
    benchmark(trained.raw_targets, features_100k, "onnxruntime")


@pytest.mark.benchmark(group="parameter model, 100k rows")
def test_sklearn(benchmark, trained, features_100k):
    benchmark.pedantic(predict_sklearn, (trained.sklearn_models, features_100k), rounds=3)


@pytest.mark.benchmark(group="Predictor.predict, 100k rows")
def test_predict_table(benchmark, trained):
    w = random_workloads(N, seed=1)
    trained.predict(w.slice(0, 10))
    benchmark.pedantic(trained.predict, (w,), rounds=3)
    benchmark.extra_info["rows"] = w.num_rows

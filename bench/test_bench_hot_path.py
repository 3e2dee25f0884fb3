"""Scheduler hot path and Arrow batch prediction, with the alternatives side by side.

Run: python -m pytest bench/ --benchmark-only --benchmark-json bench/results.json
then: python bench/perf_table.py bench/results.json --readme README.md
"""

import subprocess
import sys

import numba
import numpy as np
import pyarrow as pa
import pytest

import ala_fast
from ala_fast import features

W = dict(hardware="H100", num_devices=1, framework="vllm", model="llama-2-7b", precision="fp16",
         input_tokens=512, output_tokens=256, batch_size=32)


@pytest.fixture(scope="module")
def predictor():
    return ala_fast.load().warmup()


# ----------------------------------------------------------------------------- predict_one
@pytest.mark.benchmark(group="predict_one")
def test_predict_one_hot(benchmark, predictor):
    """Same curve as the previous call (the usual scheduler loop), varying batch size."""
    predictor.predict_one(**W)
    benchmark(predictor.predict_one, "H100", 1, "vllm", "llama-2-7b", "fp16", 512, 256, 32)


@pytest.mark.benchmark(group="predict_one")
def test_predict_one_cold(benchmark, predictor):
    """A request shape never seen before on every call (models, similarity, error model)."""
    counter = iter(range(10**9))

    def run():
        predictor._state_cache.clear()
        return predictor.predict_one("H100", 1, "vllm", "llama-2-7b", "fp16",
                                     100 + next(counter) % 5000, 256, 32)

    benchmark(run)


@pytest.mark.benchmark(group="predict_one")
def test_onnxruntime_bare_session_run_one_row(benchmark, predictor):
    """Reference: one ONNX Runtime session.run of the parameter model on one row (no features,
    no curve, no uncertainty)."""
    m = predictor._ort_model()
    x = np.zeros((1, len(features.FEATURE_NAMES)), np.float32)
    benchmark(m.session.run, None, {m.input_name: x})


@pytest.mark.benchmark(group="predict_one")
def test_published_method_one_row(benchmark):
    """Reference: the published way, a one-row pandas frame into per-configuration boosted
    trees (three models, one per curve parameter, 5000 trees each as published)."""
    pd = pytest.importorskip("pandas")
    from sklearn.ensemble import GradientBoostingRegressor

    rng = np.random.default_rng(0)
    cols = ["ii", "oo", "log_ii", "log_oo", "log_ratio", "ratio", "frac"]
    ii = rng.choice([128, 256, 512, 1024, 2048], 50).astype(float)
    oo = ii.copy()
    x = pd.DataFrame(np.column_stack([ii, oo, np.log1p(ii), np.log1p(oo), np.log1p(ii / oo),
                                      ii / (oo + 1), ii / (ii + 1)]), columns=cols)
    models = [GradientBoostingRegressor(n_estimators=5000, random_state=0).fit(x, rng.normal(size=50))
              for _ in range(3)]

    def one():
        row = pd.DataFrame([[512.0, 256.0, np.log1p(512), np.log1p(256), np.log1p(2.0),
                             512 / 257, 512 / 513]], columns=cols)
        a, b, c = (m.predict(row)[0] for m in models)
        return c - a * np.exp(-b * 32)

    benchmark(one)


# ----------------------------------------------------------------------------- Arrow batches
def workloads(n, n_curves, seed=0):
    rng = np.random.default_rng(seed)
    cur = rng.integers(0, n_curves, n)
    hw = np.array(["H100", "A100", "L40S", "MI300X", "H200"])
    md = np.array(["llama-2-7b", "llama-3-70b", "mistral-7b", "mixtral-8x7b"])
    return pa.table({
        "hardware": hw[cur % 5], "num_devices": (cur // 5) % 4 + 1,
        "framework": np.array(["vllm", "trt-llm"])[(cur // 20) % 2], "model": md[(cur // 40) % 4],
        "input_tokens": 64 * ((cur // 160) + 1), "output_tokens": np.full(n, 256),
        "batch_size": rng.integers(1, 257, n),
    })


@pytest.fixture(scope="module")
def table_1m():
    return workloads(1_000_000, 1000)


@pytest.mark.benchmark(group="predict 1M rows, 1k curves")
def test_predict_1m(benchmark, predictor, table_1m):
    benchmark.pedantic(predictor.predict, (table_1m,), rounds=3, warmup_rounds=1)
    benchmark.extra_info["rows"] = table_1m.num_rows


@pytest.mark.benchmark(group="predict 1M rows, 1k curves")
def test_predict_1m_one_thread(benchmark, predictor, table_1m):
    def run():
        old = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            return predictor.predict(table_1m)
        finally:
            numba.set_num_threads(old)

    benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    benchmark.extra_info["rows"] = table_1m.num_rows


@pytest.mark.benchmark(group="predict 1M rows, 1k curves")
def test_sklearn_on_the_same_rows(benchmark, table_1m):
    """Reference: features for every row, then scikit-learn's predict of the same trees."""
    from ala_fast.augment import BoostingParams, fit_boosted, predict_sklearn

    rng = np.random.default_rng(0)
    x_train = rng.normal(size=(1500, len(features.FEATURE_NAMES)))
    models = fit_boosted(x_train, rng.normal(size=(1500, 3)), 0, BoostingParams())
    w = ala_fast.validate(table_1m, require_throughput=False)

    def run():
        x, _ = features.table_features(w)
        return predict_sklearn(models, x)

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["rows"] = table_1m.num_rows


def distinct_10k():
    t = workloads(10_000, 10**9, seed=1)
    i = t.schema.get_field_index("input_tokens")
    return t.set_column(i, "input_tokens", pa.array(np.arange(1, 10_001)))


@pytest.mark.benchmark(group="predict 10k rows, all distinct")
def test_predict_10k_distinct(benchmark, predictor):
    t = distinct_10k()
    benchmark.pedantic(predictor.predict, (t,), rounds=3, warmup_rounds=1)
    benchmark.extra_info["rows"] = 10_000


@pytest.mark.benchmark(group="predict 10k rows, all distinct")
def test_predict_10k_distinct_onnxruntime(benchmark, predictor):
    t = distinct_10k()
    benchmark.pedantic(predictor.predict, (t,), {"engine": "onnxruntime"}, rounds=3,
                       warmup_rounds=1)
    benchmark.extra_info["rows"] = 10_000


# ----------------------------------------------------------------------------- curve
@pytest.mark.benchmark(group="curve over 64 batch sizes")
def test_curve_64(benchmark, predictor):
    bs = np.arange(1, 65)
    predictor.curve(W, bs)
    benchmark(predictor.curve, W, bs)


@pytest.mark.benchmark(group="curve over 64 batch sizes")
def test_64_predict_one_calls(benchmark, predictor):
    def run():
        return [predictor.predict_one(**{**W, "batch_size": b}) for b in range(1, 65)]

    benchmark(run)


@pytest.mark.benchmark(group="curve over 64 batch sizes")
def test_64_row_arrow_predict(benchmark, predictor):
    t = pa.table({k: [v] * 64 for k, v in W.items()}).set_column(7, "batch_size", pa.array(range(1, 65)))
    benchmark(predictor.predict, t)


# ----------------------------------------------------------------------------- start-up
@pytest.mark.benchmark(group="start-up (fresh process)")
def test_import_time(benchmark):
    benchmark.pedantic(subprocess.run, ([sys.executable, "-c", "import ala_fast"],),
                       {"check": True}, rounds=3)


@pytest.mark.benchmark(group="start-up (fresh process)")
def test_load_and_first_prediction(benchmark):
    code = ("import ala_fast; p = ala_fast.load(); "
            "p.predict_one('H100', 1, 'vllm', 'llama-2-7b', 'fp16', 512, 256, 32)")
    benchmark.pedantic(subprocess.run, ([sys.executable, "-c", code],), {"check": True}, rounds=3)


@pytest.mark.benchmark(group="start-up (fresh process)")
def test_onnxruntime_session_and_first_run_reference(benchmark):
    """Reference: a fresh process that imports ONNX Runtime, opens the default bundle's
    parameter model and runs it on one row: what embedding the ONNX file alone costs (no
    features, curve or uncertainty)."""
    from ala_fast.predictor import PARAMS_ONNX, default_bundle_path

    path = str(default_bundle_path() / PARAMS_ONNX)
    code = ("import numpy as np, onnxruntime as ort; "
            f"s = ort.InferenceSession({path!r}, providers=['CPUExecutionProvider']); "
            f"s.run(None, {{s.get_inputs()[0].name: np.zeros((1, {len(features.FEATURE_NAMES)}), "
            "np.float32)})")
    benchmark.pedantic(subprocess.run, ([sys.executable, "-c", code],), {"check": True}, rounds=3)


@pytest.mark.benchmark(group="start-up (fresh process)")
def test_python_startup_reference(benchmark):
    benchmark.pedantic(subprocess.run, ([sys.executable, "-c", "pass"],), {"check": True}, rounds=3)

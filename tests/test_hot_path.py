"""predict_one, curve, best_batch_size, Arrow input variants and thread safety."""

import threading

import numpy as np
import pyarrow as pa
import pytest

import ala_fast
from ala_fast.predictor import Prediction, Workload


@pytest.fixture(scope="module")
def predictor():
    return ala_fast.load().warmup()


def random_workloads(n, seed):
    rng = np.random.default_rng(seed)
    return pa.table({
        "hardware": rng.choice(["H100", "A100-SXM4-80GB", "L40S", "MI300X", "new-chip"], n),
        "num_devices": rng.choice([1, 2, 4, 8], n),
        "framework": rng.choice(["vllm", "trt-llm", "TensorRT-LLM", "sglang"], n),
        "model": rng.choice(["llama-2-7b", "LLaMA v2 70B", "mistral-7b", "unknown-13b"], n),
        "precision": rng.choice(["fp16", "fp8"], n),
        "input_tokens": rng.choice([128, 512, 2048, 3000], n),
        "output_tokens": rng.choice([128, 256, 2048], n),
        "batch_size": rng.integers(1, 600, n),
    })


COLUMNS = ("throughput", "latency_s", "lower", "upper", "expected_ape", "confidence")


def test_predict_one_curve_and_predict_agree(predictor):
    table = random_workloads(300, 0)
    batch = predictor.predict(table)
    for i, row in enumerate(table.to_pylist()):
        one = predictor.predict_one(**row)
        assert isinstance(one, Prediction)
        for name in COLUMNS:
            assert getattr(one, name) == pytest.approx(batch.column(name)[i].as_py(), rel=1e-12), name
        assert one.basis == batch.column("basis")[i].as_py()
        assert one.memory_batch_limit == batch.column("memory_batch_limit")[i].as_py()
    w = table.to_pylist()[0]
    cp = predictor.curve(w, [1, 2, 4, 8, 64, 512])
    for j, bb in enumerate(cp.batch_size):
        one = predictor.predict_one(**{**w, "batch_size": int(bb)})
        assert cp.throughput[j] == pytest.approx(one.throughput, rel=1e-12)
        assert cp.upper[j] == pytest.approx(one.upper, rel=1e-12)


def test_onnxruntime_path_agrees(predictor):
    table = random_workloads(400, 1)
    a = predictor.predict(table)
    b = predictor.predict(table, engine="onnxruntime")
    for name in ("throughput", "lower", "upper"):
        np.testing.assert_allclose(a.column(name).to_numpy(), b.column(name).to_numpy(), rtol=2e-3)
    row = table.to_pylist()[3]
    one_c = predictor.predict_one(**row)
    one_o = predictor.predict_one(**row, engine="onnxruntime")
    assert one_o.throughput == pytest.approx(one_c.throughput, rel=2e-3)


def test_best_batch_size(predictor):
    w = Workload("H100", 1, "vllm", "llama-2-7b", "fp16", 512, 256)
    cp = predictor.curve(w, np.arange(1, 257))
    best = predictor.best_batch_size(w, max_batch_size=256, within_memory=False)
    assert best[0] == int(cp.batch_size[np.argmax(cp.throughput)])
    fits = cp.batch_size <= cp.memory_batch_limit
    assert 0 < fits.sum() < fits.size  # 145 sequences of 768 tokens fit one H100 beside 7B
    best = predictor.best_batch_size(w, max_batch_size=256)
    assert best[0] == int(cp.batch_size[fits][np.argmax(cp.throughput[fits])])
    assert best[1].memory_batch_limit == cp.memory_batch_limit
    limit = float(np.median(cp.latency_s))
    bb, pred = predictor.best_batch_size(w, max_latency_s=limit, max_batch_size=256)
    ok = (cp.latency_s <= limit) & fits
    assert bb == int(cp.batch_size[ok][np.argmax(cp.throughput[ok])]) and pred.latency_s <= limit
    bb_safe, pred_safe = predictor.best_batch_size(w, max_latency_s=limit, max_batch_size=256,
                                                   use_upper_bound=True)
    assert bb_safe <= bb
    assert pred_safe.latency_s * pred_safe.throughput / pred_safe.lower <= limit
    assert predictor.best_batch_size(w, max_latency_s=1e-9) is None


def test_predict_one_rejects_bad_values(predictor):
    good = dict(hardware="H100", num_devices=1, framework="vllm", model="m", precision="fp16",
                input_tokens=10, output_tokens=10, batch_size=4)
    for column, value in (("input_tokens", 0), ("output_tokens", -3), ("batch_size", 0),
                          ("num_devices", 2.5), ("hardware", ""), ("model", None),
                          ("batch_size", float("nan"))):
        with pytest.raises(ala_fast.ValidationError, match=column):
            predictor.predict_one(**{**good, column: value})
    with pytest.raises(ala_fast.ValidationError, match="batch_size"):
        predictor.curve(good, [1, 0, 3])


class CapsuleOnly:
    """An object that only speaks the Arrow PyCapsule stream protocol."""

    def __init__(self, table):
        self._table = table

    def __arrow_c_stream__(self, requested_schema=None):
        return self._table.__arrow_c_stream__(requested_schema)


def test_arrow_input_variants_agree(predictor):
    table = random_workloads(500, 2)
    ref = predictor.predict(table)
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=37))
    assert chunked.column("batch_size").num_chunks > 1
    variants = [table.to_batches()[0], chunked, CapsuleOnly(table), table.to_pydict()]
    try:
        import polars as pl

        variants.append(pl.from_arrow(table))
    except ImportError:
        pass
    for v in variants:
        out = predictor.predict(v)
        for name in COLUMNS + ("basis", "memory_batch_limit"):
            assert out.column(name).to_pylist() == ref.column(name).to_pylist(), (type(v), name)


def test_arrow_bad_values_name_column_and_rows(predictor):
    table = random_workloads(50, 3)
    bs = table.column("batch_size").to_pylist()
    bs[7] = None
    bad = table.set_column(table.schema.get_field_index("batch_size"), "batch_size", pa.array(bs))
    with pytest.raises(ala_fast.ValidationError, match=r"batch_size.*7"):
        predictor.predict(bad)
    oo = table.column("output_tokens").to_pylist()
    oo[3] = 0
    bad = table.set_column(table.schema.get_field_index("output_tokens"), "output_tokens", pa.array(oo))
    with pytest.raises(ala_fast.ValidationError, match=r"output_tokens.*3"):
        predictor.predict(bad)


def test_no_nan_for_valid_workloads(predictor):
    out = predictor.predict(random_workloads(3000, 4))
    for name in COLUMNS:
        v = out.column(name).to_numpy()
        assert np.isfinite(v).all() and (v >= 0).all(), name
    assert (out.column("lower").to_numpy() <= out.column("throughput").to_numpy()).all()
    assert (out.column("throughput").to_numpy() <= out.column("upper").to_numpy()).all()


def test_many_threads_get_single_thread_answers():
    predictor = ala_fast.load()  # fresh: caches fill concurrently
    table = random_workloads(400, 5)
    rows = table.to_pylist()
    single = ala_fast.load()  # another fresh predictor, one thread
    expected_one = [single.predict_one(**r) for r in rows]
    expected_batch = ala_fast.load().predict(table)
    errors = []

    def worker(seed):
        rng = np.random.default_rng(seed)
        try:
            for i in rng.permutation(len(rows))[:150]:
                if predictor.predict_one(**rows[i]) != expected_one[i]:
                    errors.append(("one", i))
            sl = slice(int(rng.integers(0, 300)), None)
            if not predictor.predict(table[sl]).equals(expected_batch[sl]):
                errors.append(("batch", seed))
        except Exception as exc:  # noqa: BLE001 - report any failure from the thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_answers_do_not_depend_on_what_was_predicted_before():
    """Per-configuration plans are cached: a predictor that has seen other tables (and other
    request shapes of the same configurations) answers bit for bit as a fresh one, in batches
    and one workload at a time; throughput of predict_one equals the batch's bit for bit."""
    table = random_workloads(600, 6)
    fresh = ala_fast.load().predict(table)
    used = ala_fast.load()
    used.predict(random_workloads(900, 7))
    for r in random_workloads(50, 8).to_pylist():
        used.predict_one(**r)
    assert used._plan_cache  # the plans this test is about were filled
    assert used.predict(table).equals(fresh)
    for i, row in enumerate(table.to_pylist()[:200]):
        one = used.predict_one(**row)
        assert one.throughput == fresh.column("throughput")[i].as_py()
        assert one.confidence == fresh.column("confidence")[i].as_py()


def test_plan_of_unseen_hardware_lends_from_known_devices(predictor):
    plan = predictor._plan(("B200", 1, "vllm", "llama-2-7b", "fp16", "static"))
    assert plan.lending is not None and plan.lending.weights.sum() == pytest.approx(1.0)
    assert all(c[1:] == (1, "vllm", "llama-2-7b", "fp16", "static") for c in plan.lending.configs)
    known = predictor._plan(("H100", 1, "vllm", "llama-2-7b", "fp16", "static"))
    assert known.lending is None and known.siblings > 0

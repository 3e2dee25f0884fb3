"""Similarity search, annealing, error predictor, calibrated intervals."""

import numpy as np
import pyarrow as pa
import pytest

import ala_fast
from ala_fast import anneal as annealing
from ala_fast._kernels import anneal as ka
from ala_fast.augment import BoostingParams, predict_sklearn
from ala_fast.neighbors import knn
from ala_fast.readers import concat_tables
from ala_fast.uncertainty import conformal_quantile, grouped_cross_fit, level_quantiles

from .naive import anneal_reference, knn_brute, splitmix64


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("shape", [(1, 50, 3), (40, 300, 8), (7, 5, 2)])
def test_knn_matches_brute_force(metric, parallel, shape):
    nq, nr, dim = shape
    rng = np.random.default_rng(nq * nr)
    q, ref = rng.normal(size=(nq, dim)), rng.normal(size=(nr, dim))
    ref[0] = 0.0  # a zero vector: cosine distance 1 by convention
    ref[1] = ref[2]  # ties are ordered by index
    k = min(4, nr)
    d, i = knn(q, ref, k, metric, parallel=parallel)
    rd, ri = knn_brute(q, ref, k, metric)
    np.testing.assert_allclose(d, rd, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(i, ri)


def test_knn_identical_point_is_nearest_with_distance_zero():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(100, 6))
    d, i = knn(ref[17:18], ref, 3, "euclidean")
    assert i[0, 0] == 17 and d[0, 0] == 0.0
    d, i = knn(ref[17:18] * 3.0, ref, 1, "cosine")  # cosine ignores scale
    assert i[0, 0] == 17 and abs(d[0, 0]) < 1e-12


def test_knn_validation():
    with pytest.raises(ValueError, match="metric"):
        knn(np.zeros((1, 2)), np.zeros((3, 2)), 1, "manhattan")
    with pytest.raises(ValueError, match="dimensions"):
        knn(np.zeros((1, 2)), np.zeros((3, 3)), 1)
    d, i = knn(np.zeros((1, 2)), np.ones((3, 2)), 10)
    assert d.shape == (1, 3)  # k clipped to the reference size


def test_rng_matches_python_reference():
    state_n, state_p = np.uint64(42), 42
    for _ in range(100):
        state_n, zn = ka.splitmix64(np.uint64(state_n))
        state_p, zp = splitmix64(state_p)
        assert int(zn) == zp and int(state_n) == state_p


@pytest.mark.parametrize("kind", [ka.HOLDOUT, ka.COVERAGE])
@pytest.mark.parametrize("seed", [0, 7, 12345])
def test_anneal_matches_python_reference(kind, seed):
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(14, 3))
    dist = annealing.pairwise_distances(pts)
    base = rng.uniform(0.5, 3.0, 14) if kind == ka.COVERAGE else np.zeros(0)
    start = np.array([0, 3, 5, 9], np.int64)
    got = ka.anneal(kind, dist, base, start, 300, 0.5, 1e-3, 0.7, np.uint64(seed))
    ref = anneal_reference(kind, dist, base, start, 300, 0.5, 1e-3, 0.7, seed)
    np.testing.assert_array_equal(got[0], ref[0])
    assert got[1] == pytest.approx(ref[1], rel=1e-12)
    assert got[2] == pytest.approx(ref[2], rel=1e-12)
    assert got[3] == ref[3]
    assert got[1] >= got[2]  # never worse than the start


def test_anneal_finds_the_exhaustive_optimum_on_tiny_problems():
    from itertools import combinations

    rng = np.random.default_rng(3)
    pts = rng.normal(size=(10, 2))
    dist = annealing.pairwise_distances(pts)
    base = np.full(10, 1e300)
    best = max(ka.objective_value(ka.COVERAGE, dist, base, np.isin(np.arange(10), c),
                                  np.array(c, np.int64), 0.0) for c in combinations(range(10), 3))
    got = ka.anneal(ka.COVERAGE, dist, base, np.array([0, 1, 2], np.int64), 4000, 0.5, 1e-4,
                    0.0, np.uint64(5))
    assert got[1] == pytest.approx(best, rel=1e-12)


def test_holdout_subset_and_benchmark_next_are_deterministic_and_improve():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(80, 4))
    a = annealing.holdout_subset(v, 10, seed=3, steps=800)
    b = annealing.holdout_subset(v, 10, seed=3, steps=800)
    np.testing.assert_array_equal(a["chosen"], b["chosen"])
    assert a["value"] >= a["start_value"] and len(set(a["chosen"])) == 10
    plan = annealing.benchmark_next(v[:20], v[20:], 5, seed=1, steps=800)
    assert plan["mean_distance_after"] <= plan["greedy_start"] <= plan["mean_distance_before"]
    assert len(plan["chosen"]) == 5
    with pytest.raises(ala_fast.ALAError):
        annealing.holdout_subset(v, 0)


def test_conformal_quantile():
    s = np.arange(1, 101, dtype=float)  # 100 scores
    assert conformal_quantile(s, 0.9) == 91.0  # ceil(101 * 0.9) = 91st smallest
    assert conformal_quantile(s[:5], 0.9) == float("inf")


def test_level_quantiles_are_per_level_with_pooled_fallback():
    scores = np.concatenate([np.arange(1, 101.0), 10 * np.arange(1, 101.0), np.array([5.0] * 3)])
    levels = np.repeat([3, 0, 2], [100, 100, 3])
    q = level_quantiles(scores, levels, 0.9)
    assert q[3] == 91.0 and q[0] == 910.0  # each level its own split-conformal quantile
    assert q[2] == conformal_quantile(scores, 0.9)  # 3 scores cannot give 90%: pooled
    assert q[1] == q[0]  # the unseen-hardware levels share one quantile
    np.testing.assert_array_equal(level_quantiles(scores, None, 0.9),
                                  np.full(4, conformal_quantile(scores, 0.9)))
    # a bundle of three levels (before the peer level): plain per-level quantiles
    q3 = level_quantiles(scores, np.repeat([2, 0, 1], [100, 100, 3]), 0.9, n_levels=3)
    np.testing.assert_array_equal(q3, [910.0, conformal_quantile(scores, 0.9), 91.0])


@pytest.mark.parametrize("n_units", [1, 3, 9])
def test_grouped_cross_fit_never_scores_a_unit_it_was_fitted_on(n_units):
    rng = np.random.default_rng(n_units)
    unit = rng.integers(0, n_units, 500).astype(str)
    scored, usable = rng.random(500) < 0.4, rng.random(500) < 0.5
    seen = []
    for fit_rows, score_rows in grouped_cross_fit(unit, scored, usable, np.random.default_rng(0)):
        assert usable[fit_rows].all() and scored[score_rows].all()
        assert not set(unit[fit_rows]) & set(unit[score_rows])
        seen.extend(score_rows.tolist())
    assert len(seen) == len(set(seen))  # at most once
    if n_units > 1:  # every unit is out of some fold that still has rows to fit on
        assert sorted(seen) == np.flatnonzero(scored).tolist()
    else:
        assert seen == []  # one unit: nothing left to fit on, nothing claimed


@pytest.fixture(scope="module")
def predictor(h100_l40s_predictor):
    return h100_l40s_predictor


def test_error_model_onnx_parity(predictor, trtllm):
    from ala_fast.uncertainty import LEVEL_COLUMN, error_output, sigma_from_outputs

    keys = trtllm.select(["hardware", "num_devices", "framework", "model", "precision",
                          "input_tokens", "output_tokens", "batch_kind", "batch_size"])
    keys = keys.take(pa.array(np.arange(0, keys.num_rows, max(1, keys.num_rows // 500))))
    d = keys.to_pydict()
    block = predictor._curve_block(
        list(zip(*(d[c] for c in ("hardware", "num_devices", "framework", "model", "precision", "batch_kind")))),
        np.asarray(d["input_tokens"], float), np.asarray(d["output_tokens"], float))
    err_x = block.err_x
    bb = np.asarray(d["batch_size"], float)
    ex = np.column_stack([err_x, np.log(bb)])
    sk = predict_sklearn(predictor.sklearn_error_models, ex)
    assert sk.shape[1] == 2  # seen-hardware and unseen-hardware outputs
    column = error_output(err_x[:, LEVEL_COLUMN])
    assert set(column.tolist()) == {0, 1}  # rows on benchmarked and on unseen hardware
    comp = np.log(predictor.error_sigma(err_x, bb))
    ort = np.log(predictor.error_sigma(err_x, bb, engine="onnxruntime"))
    np.testing.assert_allclose(
        comp, np.log(sigma_from_outputs(sk, column, predictor._sigma_floor)), atol=1e-4)
    np.testing.assert_allclose(ort, comp, atol=1e-4)


def _synthetic_samples(rng, n_curves=60, rows_per_curve=6):
    """Error samples with every novelty level, errors growing with a feature."""
    from ala_fast.uncertainty import ERROR_FEATURE_NAMES, LEVEL_COLUMN, ErrorSamples

    width = len(ERROR_FEATURE_NAMES) - 1
    x = rng.normal(size=(n_curves, width))
    x[:, LEVEL_COLUMN] = np.arange(n_curves) % 4
    row_curve = np.repeat(np.arange(n_curves), rows_per_curve)
    scale = np.exp(0.5 * x[row_curve, 0])
    return ErrorSamples(np.arange(n_curves) + 100, np.zeros(n_curves, np.int64), x, row_curve,
                        rng.normal(size=row_curve.size) * 0.1 * scale,
                        np.tile(2.0 ** np.arange(rows_per_curve), n_curves))


def test_seen_hardware_error_model_never_learns_unseen_hardware_errors():
    """Errors of hold-out rounds on unseen devices only move the unseen-hardware output and
    the unseen-hardware scores: the seen-hardware error model and its scores stay the same."""
    from dataclasses import replace

    from ala_fast.uncertainty import (
        KNOWN_CONFIGURATION, LEVEL_COLUMN, UNSEEN_CONFIGURATION, calibrate, error_output,
    )

    rng = np.random.default_rng(3)
    samples = _synthetic_samples(rng)
    models = np.array([f"m{i % 7}" for i in range(samples.curve.size)])
    unseen_hw = error_output(samples.x[samples.row_curve, LEVEL_COLUMN]) == 1
    worse = replace(samples, row_log_ratio=np.where(unseen_hw, 50.0, 1.0) * samples.row_log_ratio)
    fit_a, scores_a, levels_a, mask_a = calibrate(samples, models, seed=0)
    fit_b, scores_b, levels_b, mask_b = calibrate(worse, models, seed=0)
    np.testing.assert_array_equal(mask_a, mask_b)
    ex = samples.row_features()
    out_a, out_b = predict_sklearn(fit_a, ex), predict_sklearn(fit_b, ex)
    np.testing.assert_array_equal(out_a[:, 0], out_b[:, 0])
    assert np.abs(out_b[:, 1] - out_a[:, 1]).max() > 1.0  # the unseen-hardware output moved
    for lv in (KNOWN_CONFIGURATION, UNSEEN_CONFIGURATION):
        np.testing.assert_array_equal(scores_a[levels_a == lv], scores_b[levels_b == lv])
        assert (levels_a == lv).sum() > 0
    assert scores_b[levels_b <= 1].max() > 10 * scores_a[levels_a <= 1].max()


def test_bundle_error_outputs_are_checked(predictor):
    """A single-output error model (bundles from before ERROR_OUTPUTS) serves every level; a
    manifest whose outputs do not match the error model is rejected."""
    import copy

    from ala_fast.augment import export_onnx
    from ala_fast.errors import BundleError
    from ala_fast.predictor import ERROR_ONNX, Predictor
    from ala_fast.uncertainty import ERROR_FEATURE_NAMES

    manifest = copy.deepcopy(predictor.manifest)
    manifest["uncertainty"]["error_outputs"] = ["seen_hardware"]
    with pytest.raises(BundleError, match="outputs"):
        Predictor(manifest, dict(predictor._files))
    del manifest["uncertainty"]["error_outputs"]
    files = dict(predictor._files)
    files[ERROR_ONNX] = export_onnx(predictor.sklearn_error_models[:1], len(ERROR_FEATURE_NAMES))
    old = Predictor(manifest, files)
    block = old._curve_block([("MI300X", 1, "trt-llm", "llama-2-7b", "fp16", "static"),
                              ("H100", 1, "trt-llm", "llama-2-7b", "fp16", "static")],
                             np.array([300.0, 300.0]), np.array([128.0, 128.0]))
    bb = np.array([16.0, 16.0])
    sk = predict_sklearn(predictor.sklearn_error_models, np.column_stack([block.err_x, np.log(bb)]))
    np.testing.assert_allclose(np.log(old.error_sigma(block.err_x, bb)),
                               np.maximum(sk[:, 0], np.log(old._sigma_floor)), atol=1e-4)
    new = predictor.error_sigma(block.err_x, bb)
    np.testing.assert_allclose(np.log(new[0]), max(sk[0, 1], np.log(old._sigma_floor)), atol=1e-4)


def workload(**kw):
    base = dict(hardware="H100", num_devices=1, framework="trt-llm", model="llama-2-7b",
                precision="fp16", input_tokens=128, output_tokens=128, batch_size=16)
    base.update(kw)
    return pa.table({k: [v] for k, v in base.items()})


def test_uncertainty_columns_and_ordering(predictor):
    fitted = predictor.predict(workload()).to_pylist()[0]
    assert fitted["basis"] == "fitted" and fitted["confidence"] == 1.0
    assert fitted["lower"] <= fitted["throughput"] <= fitted["upper"]
    near = predictor.predict(workload(input_tokens=256, output_tokens=128)).to_pylist()[0]
    far = predictor.predict(workload(hardware="unknown-accelerator", model="unknown-model",
                                     framework="newframework", input_tokens=30000,
                                     output_tokens=3, num_devices=8)).to_pylist()[0]
    assert near["basis"] == far["basis"] == "learned"
    assert far["confidence"] < near["confidence"] < 1.0
    width = lambda r: (r["upper"] - r["lower"]) / r["throughput"]  # noqa: E731
    assert width(far) > width(near)
    for r in (near, far):
        assert 0.0 <= r["confidence"] <= 1.0 and r["expected_ape"] > 0
        assert r["lower"] < r["throughput"] < r["upper"]


def test_unseen_hardware_uses_its_own_calibration(predictor):
    from ala_fast.uncertainty import LEVEL_COLUMN

    cal = predictor.manifest["metrics"]["calibration_q90"]
    assert set(cal) == {"unseen_hardware", "unseen_hardware_peer_benchmarked",
                        "unseen_configuration", "known_configuration"}
    new_hw = predictor.predict(workload(hardware="MI300X", input_tokens=300)).to_pylist()[0]
    one = predictor.predict_one("MI300X", 1, "trt-llm", "llama-2-7b", "fp16", 300, 128, 16)
    assert one.lower == pytest.approx(new_hw["lower"]) and one.upper == pytest.approx(new_hw["upper"])
    block = predictor._curve_block([("MI300X", 1, "trt-llm", "llama-2-7b", "fp16", "static")],
                                   np.array([300.0]), np.array([128.0]))
    assert block.err_x[0, LEVEL_COLUMN] == 0  # MI300X is not in this bundle's training data
    half = np.log(new_hw["upper"] / new_hw["throughput"])
    assert half == pytest.approx(cal["unseen_hardware"], rel=1e-6)  # not scaled by sigma
    known = predictor.predict(workload(input_tokens=300)).to_pylist()[0]  # known configuration
    sigma = predictor.error_sigma(
        predictor._curve_block([("H100", 1, "trt-llm", "llama-2-7b", "fp16", "static")],
                               np.array([300.0]), np.array([128.0])).err_x, np.array([16.0]))[0]
    assert np.log(known["upper"] / known["throughput"]) == pytest.approx(
        cal["known_configuration"] * sigma, rel=1e-6)


def test_novelty_levels():
    from ala_fast.catalog import config_key
    from ala_fast.uncertainty import LEVELS, config_counts, novelty_level

    known = config_counts([config_key("H100", 1, "vllm", "llama-2-7b", "fp16"),
                           config_key("MI300X", 2, "vllm", "mistral-7b", "fp16")])

    def level(*c):
        return LEVELS[novelty_level(config_key(*c), known)]

    assert level("H100 80GB HBM3", 1, "vllm", "llama-2-7b", "fp16") == "known_configuration"
    assert level("H100", 2, "vllm", "llama-2-7b", "fp16") == "unseen_configuration"
    # H200 is unseen; the configuration was benchmarked on H100, same vendor
    assert level("H200", 1, "vllm", "llama-2-7b", "fp16") == "unseen_hardware_peer_benchmarked"
    assert level("MI325X", 2, "vllm", "mistral-7b", "fp16") == "unseen_hardware_peer_benchmarked"
    # benchmarked only on another vendor's device, or not at all, or hardware nobody knows
    assert level("MI325X", 1, "vllm", "llama-2-7b", "fp16") == "unseen_hardware"
    assert level("H200", 1, "vllm", "llama-2-7b", "fp8") == "unseen_hardware"
    assert level("some-new-asic", 1, "vllm", "llama-2-7b", "fp16") == "unseen_hardware"
    # a framework no reference curve ran: an unseen software stack, on any hardware
    assert level("H100", 1, "sglang", "llama-2-7b", "fp16") == "unseen_hardware"
    assert level("H200", 1, "SGLang", "llama-2-7b", "fp16") == "unseen_hardware"
    # an index without frameworks (built before they were recorded) keeps the old levels
    from ala_fast.uncertainty import KnownConfigs

    old = KnownConfigs(known.counts, known.hardware, known.peer_configs)
    assert LEVELS[novelty_level(config_key("H100", 1, "sglang", "llama-2-7b", "fp16"), old)] \
        == "unseen_configuration"


def test_vendor_devices_counts_the_reference_devices_of_the_query_vendor():
    """The vendor_devices similarity feature: distinct reference devices of the query
    hardware's vendor (spellings of one device count once; no vendor known counts 0)."""
    from ala_fast.catalog import Hardware, InferredDevices, config_key, name_key
    from ala_fast.uncertainty import SIM_FEATURES, config_counts, config_novelty

    known = config_counts([config_key(*c) for c in [
        ("H100", 1, "vllm", "llama-2-7b", "fp16"), ("H100 80GB HBM3", 2, "vllm", "llama-2-7b", "fp16"),
        ("A100", 1, "vllm", "llama-2-7b", "fp16"), ("MI300X", 1, "vllm", "llama-2-7b", "fp16"),
        ("some-new-asic", 1, "vllm", "llama-2-7b", "fp16")]])

    def vendor_devices(hardware):
        return config_novelty(config_key(hardware, 1, "vllm", "llama-2-7b", "fp16"), known)[
            SIM_FEATURES.index("vendor_devices") - SIM_FEATURES.index("anchor_level")]

    assert vendor_devices("H200") == 2 and vendor_devices("Nvidia H100 GPU") == 2
    assert vendor_devices("MI250") == 1
    assert vendor_devices("Intel Max 1550") == 0 and vendor_devices("Gaudi2") == 0
    assert vendor_devices("another-asic") == 0  # no vendor known: nothing to count
    assert vendor_devices("ACME NVIDIA Foo 48GB") == 0  # not described: as the features say
    # a device described from its measurements carries its vendor hint
    acme = Hardware("acme-x", 100.0, 100.0, 1.0, 64.0, vendor_hint="intel")
    inferred = InferredDevices(((name_key("acme-x"), acme),))
    with_intel = config_counts([config_key("acme-x", 1, "vllm", "llama-2-7b", "fp16")], inferred)
    assert with_intel.vendor_devices == {"intel": 1}
    assert config_novelty(config_key("Intel Max 1550", 1, "vllm", "llama-2-7b", "fp16"),
                          with_intel)[2] == 1


def test_an_unseen_framework_gets_the_unseen_hardware_interval(predictor):
    """The predictor was trained on TensorRT-LLM runs only: vLLM on its H100 is an unseen
    software stack and gets the unseen-hardware level, error output and interval, wider than
    TensorRT-LLM's on the same workload; predict_one agrees."""
    from ala_fast.uncertainty import LEVEL_COLUMN, UNSEEN_HARDWARE

    cal = predictor.manifest["metrics"]["calibration_q90"]
    block = predictor._curve_block([("H100", 1, "vllm", "llama-2-7b", "fp16", "static")],
                                   np.array([300.0]), np.array([128.0]))
    assert block.err_x[0, LEVEL_COLUMN] == UNSEEN_HARDWARE
    new = predictor.predict(workload(framework="vllm", input_tokens=300)).to_pylist()[0]
    seen = predictor.predict(workload(framework="trt-llm", input_tokens=300)).to_pylist()[0]
    assert np.log(new["upper"] / new["throughput"]) == pytest.approx(cal["unseen_hardware"],
                                                                     rel=1e-6)
    assert new["upper"] / new["lower"] > seen["upper"] / seen["lower"]
    one = predictor.predict_one("H100", 1, "vllm", "llama-2-7b", "fp16", 300, 128, 16)
    assert one.upper == pytest.approx(new["upper"]) and one.lower == pytest.approx(new["lower"])


def test_unseen_hardware_levels_share_one_quantile():
    from ala_fast.uncertainty import LEVELS

    rng = np.random.default_rng(3)
    scores = {0: rng.uniform(0, 1, 40), 1: rng.uniform(0, 3, 40), 2: rng.uniform(0, 2, 40),
              3: rng.uniform(0, 1, 40)}

    def quantiles(keep):
        s = np.concatenate([scores[k] for k in keep])
        lv = np.concatenate([np.full(scores[k].size, k) for k in keep])
        return level_quantiles(s, lv, 0.9), s

    q, _ = quantiles([0, 1, 2, 3])
    both = conformal_quantile(np.concatenate([scores[0], scores[1]]), 0.9)
    assert q[0] == q[1] == both
    assert [q[2], q[3]] == [conformal_quantile(scores[k], 0.9) for k in (2, 3)]
    assert len(q) == len(LEVELS)
    q, _ = quantiles([1, 2, 3])  # no score without a peer: the peer level's for both
    assert q[0] == q[1] == conformal_quantile(scores[1], 0.9)
    q, s = quantiles([2, 3])  # no unseen-hardware score at all: every score
    assert q[0] == q[1] == conformal_quantile(s, 0.9)


def test_peer_benchmarked_hardware_gets_its_level(predictor):
    from ala_fast.uncertainty import LEVELS, LEVEL_COLUMN, UNSEEN_HARDWARE, UNSEEN_HARDWARE_PEER

    cal = predictor.manifest["metrics"]["calibration_q90"]
    assert cal["unseen_hardware"] == cal["unseen_hardware_peer_benchmarked"]
    configs = [("H200", 1, "trt-llm", "llama-2-7b", "fp16", "static"),
               ("MI300X", 1, "trt-llm", "llama-2-7b", "fp16", "static")]
    block = predictor._curve_block(configs, np.array([300.0] * 2), np.array([128.0] * 2))
    assert list(block.err_x[:, LEVEL_COLUMN]) == [UNSEEN_HARDWARE_PEER, UNSEEN_HARDWARE]
    for (hw, *_), name in zip(configs, (LEVELS[UNSEEN_HARDWARE_PEER], LEVELS[UNSEEN_HARDWARE])):
        r = predictor.predict(workload(hardware=hw, input_tokens=300)).to_pylist()[0]
        assert np.log(r["upper"] / r["throughput"]) == pytest.approx(cal[name], rel=1e-6)
        one = predictor.predict_one(hw, 1, "trt-llm", "llama-2-7b", "fp16", 300, 128, 16)
        assert one.upper == pytest.approx(r["upper"]) and one.lower == pytest.approx(r["lower"])


def test_bundle_of_three_levels_maps_the_peer_level_to_unseen_hardware(predictor):
    """Bundles from before the peer level: three levels, their codes in the error features."""
    import copy

    from ala_fast.bundle import ipc_to_table, table_to_ipc
    from ala_fast.predictor import CALIBRATION_FILE, Predictor
    from ala_fast.uncertainty import LEVEL_COLUMN

    manifest = copy.deepcopy(predictor.manifest)
    manifest["uncertainty"]["normalised_scores"] = {  # key order as in a JSON manifest: sorted
        "known_configuration": True, "unseen_configuration": True, "unseen_hardware": False}
    files = dict(predictor._files)
    cal = ipc_to_table(files[CALIBRATION_FILE])
    old_level = np.array([0, 0, 1, 2], np.int8)[cal.column("level").to_numpy()]
    files[CALIBRATION_FILE] = table_to_ipc(pa.table({"score": cal.column("score"),
                                                     "level": pa.array(old_level)}))
    old = Predictor(manifest, files)
    configs = [("H200", 1, "trt-llm", "llama-2-7b", "fp16", "static"),
               ("MI300X", 1, "trt-llm", "llama-2-7b", "fp16", "static"),
               ("H100", 1, "trt-llm", "llama-2-7b", "fp16", "static")]
    block = old._curve_block(configs, np.array([300.0] * 3), np.array([128.0] * 3))
    assert list(block.err_x[:, LEVEL_COLUMN]) == [0, 0, 2]
    q0 = conformal_quantile(cal.column("score").to_numpy()[old_level == 0], 0.9)
    r = old.predict(workload(hardware="H200", input_tokens=300)).to_pylist()[0]
    assert np.log(r["upper"] / r["throughput"]) == pytest.approx(q0, rel=1e-6)


def test_saved_bundle_gives_the_same_intervals_at_every_level(predictor, tmp_path):
    loaded = ala_fast.load(predictor.save(tmp_path / "b"))
    w = pa.table({"hardware": ["H100", "H200", "MI300X", "H100"], "num_devices": [1, 1, 1, 2],
                  "framework": ["trt-llm"] * 4, "model": ["llama-2-7b"] * 4,
                  "precision": ["fp16"] * 4, "input_tokens": [300] * 4,
                  "output_tokens": [128] * 4, "batch_size": [16] * 4})
    a, b = predictor.predict(w), loaded.predict(w)
    for col in ("throughput", "lower", "upper", "expected_ape", "confidence"):
        np.testing.assert_array_equal(b.column(col).to_numpy(), a.column(col).to_numpy(), col)


def test_unknown_novelty_levels_in_a_manifest_are_rejected(predictor):
    import copy

    from ala_fast.errors import BundleError
    from ala_fast.predictor import Predictor

    manifest = copy.deepcopy(predictor.manifest)
    manifest["uncertainty"]["normalised_scores"]["unseen_galaxy"] = True
    with pytest.raises(BundleError, match="unseen_galaxy"):
        Predictor(manifest, dict(predictor._files))


def test_bundle_without_levels_keeps_one_sigma_scaled_quantile(predictor):
    """Bundles from before the per-level calibration: pooled scores, all normalised by sigma."""
    import copy

    from ala_fast.bundle import ipc_to_table, table_to_ipc
    from ala_fast.predictor import CALIBRATION_FILE, Predictor
    from ala_fast.uncertainty import conformal_quantile

    manifest = copy.deepcopy(predictor.manifest)
    del manifest["uncertainty"]["normalised_scores"]
    files = dict(predictor._files)
    scores = ipc_to_table(files[CALIBRATION_FILE]).select(["score"])
    files[CALIBRATION_FILE] = table_to_ipc(scores)
    old = Predictor(manifest, files)
    block = old._curve_block([("MI300X", 1, "trt-llm", "llama-2-7b", "fp16", "static")],
                             np.array([300.0]), np.array([128.0]))
    sigma = old.error_sigma(block.err_x, np.array([16.0]))[0]
    q = conformal_quantile(scores.column("score").to_numpy(), 0.9)
    for r in (old.predict(workload(hardware="MI300X", input_tokens=300)).to_pylist()[0],
              old.predict_one("MI300X", 1, "trt-llm", "llama-2-7b", "fp16", 300, 128, 16)._asdict()):
        assert np.log(r["upper"] / r["throughput"]) == pytest.approx(q * sigma, rel=1e-6)


def test_coverage_is_chosen_at_load_time(predictor, tmp_path):
    path = predictor.save(tmp_path / "b")
    w = workload(input_tokens=300, output_tokens=700, batch_size=48)
    r80 = ala_fast.load(path, coverage=0.8).predict(w).to_pylist()[0]
    r95 = ala_fast.load(path, coverage=0.95).predict(w).to_pylist()[0]
    assert r95["upper"] > r80["upper"] and r95["lower"] < r80["lower"]
    assert r95["throughput"] == r80["throughput"]
    with pytest.raises(ValueError, match="coverage"):
        ala_fast.load(path, coverage=1.5)


def test_similarity_features_match_brute_force():
    from ala_fast.uncertainty import config_counts, similarity_features

    rng = np.random.default_rng(4)
    ref, q = rng.normal(size=(200, 6)), rng.normal(size=(30, 6))
    q[0] = ref[5]
    configs = [("H100", 1, "vllm", "m", "fp16", "static")] * 30
    sim = similarity_features(q, ref, configs, config_counts([configs[0]] * 3))
    d, _ = knn_brute(q, ref, 5, "euclidean")
    dc, _ = knn_brute(q, ref, 1, "cosine")
    np.testing.assert_allclose(sim[:, 0], d[:, 0], atol=1e-12)
    np.testing.assert_allclose(sim[:, 1], d.mean(axis=1), atol=1e-12)
    np.testing.assert_allclose(sim[:, 2], dc[:, 0], atol=1e-12)
    assert sim[0, 0] == 0.0 and (sim[:, 3] == 3).all() and (sim[:, 4] == 3).all()
    assert (sim[:, 5] == 1).all()  # one NVIDIA device in the reference


def test_predictor_benchmark_next_picks_far_curves_and_helps():
    from ala_fast.neighbors import knn

    p = ala_fast.load()
    rng = np.random.default_rng(3)
    n = 60
    cand = pa.table({
        "hardware": rng.choice(["H100", "MI300X", "Gaudi2", "L40S"], n).tolist(),
        "num_devices": rng.integers(1, 9, n), "framework": rng.choice(["vllm", "trt-llm"], n).tolist(),
        "model": rng.choice(["llama-3-70b", "mixtral-8x7b", "qwen2-72b"], n).tolist(),
        "input_tokens": 64 + 97 * np.arange(n), "output_tokens": rng.choice([128, 2048], n),
    })
    plan = p.benchmark_next(cand, 5, seed=1, steps=500)
    assert plan.num_rows == 5 and "nearest_distance" in plan.column_names
    meta = {k.decode(): float(v) for k, v in plan.schema.metadata.items()}
    assert meta["mean_distance_after"] < meta["mean_distance_before"]
    assert plan.equals(p.benchmark_next(cand, 5, seed=1, steps=500))  # same seed, same plan
    # brute force: the mean nearest distance after adding the chosen curves, as reported
    from ala_fast.features import build_features, config_matrix
    from ala_fast.schema import validate

    full = validate(cand.append_column("batch_size", pa.array(np.ones(n, np.int64))),
                    require_throughput=False)
    cols = full.to_pydict()

    def vectors(c):
        x = build_features(config_matrix(c["hardware"], c["num_devices"], c["framework"],
                                         c["model"], c["precision"], c["batch_kind"]),
                           np.asarray(c["input_tokens"], float), np.asarray(c["output_tokens"], float))
        return p._scaler.transform(x)

    v, chosen = vectors(cols), vectors(plan.to_pydict())
    after, _ = knn(v, np.vstack([p._reference.vectors, chosen]), 1)
    assert np.mean(after) == pytest.approx(meta["mean_distance_after"], rel=1e-6)  # incremental sums
    with pytest.raises(ala_fast.ValidationError, match="k"):
        p.benchmark_next(cand, 0)


def test_error_samples_do_not_depend_on_the_number_of_workers(trtllm):
    """Hold-out rounds run in worker processes give exactly the serial samples."""
    from ala_fast.curves import fit_curves
    from ala_fast.grouping import group_codes
    from ala_fast.learner import curve_set, trainable
    from ala_fast.schema import CURVE_KEY
    from ala_fast.uncertainty import error_samples

    mask = pa.compute.is_in(trtllm.column("hardware"), pa.array(["H100 NVL", "L40"]))
    table = concat_tables([trtllm.filter(mask)])
    curves = curve_set(fit_curves(table))
    codes, _ = group_codes(table, CURVE_KEY)
    rows = (codes, table.column("batch_size").to_numpy().astype(np.float64),
            table.column("throughput").to_numpy())
    idx = trainable(curves)
    quick = BoostingParams(n_estimators=40)  # rounds train the model's own 40 trees
    serial = error_samples(curves, rows, idx, seed=3, boosting=quick)
    parallel = error_samples(curves, rows, idx, seed=3, n_jobs=2, boosting=quick)
    assert serial.curve.size > 50 and np.unique(serial.round_id).size > 5
    for name in ("curve", "round_id", "x", "row_curve", "row_log_ratio", "row_batch"):
        np.testing.assert_array_equal(getattr(parallel, name), getattr(serial, name), err_msg=name)


def test_holdout_rounds_never_train_more_trees_than_the_model():
    from ala_fast.uncertainty import LIGHT_TREES, holdout_boosting

    small = BoostingParams(n_estimators=40, max_depth=3)
    assert holdout_boosting(small) is small  # the model itself
    light = holdout_boosting(None)  # the default model (400 trees) gets the lighter one
    assert light.n_estimators == LIGHT_TREES < BoostingParams().n_estimators
    assert holdout_boosting(BoostingParams(n_estimators=LIGHT_TREES)).n_estimators == LIGHT_TREES


def test_extrapolation_counts_log_units_beyond_each_range():
    from ala_fast.uncertainty import extrapolation, observed_ranges

    rng = np.random.default_rng(3)
    ii, oo, bb = (rng.integers(lo, hi, 200).astype(float) for lo, hi in
                  ((128, 2049), (64, 1025), (1, 257)))
    ranges = observed_ranges(ii, oo, bb)
    q = [rng.integers(1, 20000, 500).astype(float) for _ in range(3)]
    got = extrapolation(ranges, *q)
    ref = np.zeros(500)
    for j, (data, query) in enumerate(zip((ii, oo, bb), q)):  # row by row, in plain ratios
        for i, v in enumerate(query):
            if v > data.max():
                ref[i] += np.log(v / data.max())
            elif v < data.min():
                ref[i] += np.log(data.min() / v)
    np.testing.assert_allclose(got, ref, atol=1e-12)
    assert (extrapolation(ranges, ii, oo, bb) == 0).all()  # every benchmarked row is inside
    assert (extrapolation(None, *q) == 0).all()  # bundles from before the ranges


def test_requests_beyond_the_benchmarked_ranges_widen_by_the_extrapolation(predictor):
    import copy

    from ala_fast.bundle import ipc_to_table, table_to_ipc
    from ala_fast.predictor import BEYOND_FILE, Predictor
    from ala_fast.uncertainty import BeyondSamples

    u = predictor.manifest["uncertainty"]["observed_ranges"]
    top_ii, top_bb = max(u["input_tokens"]), max(u["batch_size"])
    rounds = BeyondSamples.from_table(ipc_to_table(predictor._files[BEYOND_FILE]))
    assert rounds.abs_err.size > 0 and (rounds.extra > 0).all()
    # errors that grow by 0.5 per log unit beyond the ranges (whatever this small bundle's
    # rounds measured), so that the widening is not zero
    grown = rounds._replace(abs_err=rounds.abs_err + 0.5 * rounds.extra)
    files = {**predictor._files, BEYOND_FILE: table_to_ipc(grown.to_table())}
    predictor = Predictor(predictor.manifest, files)
    manifest = copy.deepcopy(predictor.manifest)
    del manifest["uncertainty"]["observed_ranges"]
    older = Predictor(manifest, files)  # same models, no ranges
    rows = pa.concat_tables([workload(input_tokens=int(ii), batch_size=bb, hardware=hw)
                             for ii in (300, 4 * np.exp(top_ii), 64 * np.exp(top_ii))
                             for bb in (16, int(8 * np.exp(top_bb)))
                             for hw in ("H100", "MI300X")])
    new, old = predictor.predict(rows).to_pydict(), older.predict(rows).to_pydict()
    ii = np.array(new["input_tokens"], float)
    bb = np.array(new["batch_size"], float)
    extra = (np.maximum(np.log(ii) - top_ii, 0) + np.maximum(np.log(bb) - top_bb, 0))
    assert (extra[ii > 1000] > 0).all() and (extra[(ii == 300) & (bb == 16)] == 0).all()
    slopes = grown.slopes(predictor._half, predictor.coverage, predictor._normalised)
    assert slopes.error > 0 and slopes.interval > 0 and 0 < slopes.reach < extra.max()
    more_sigma, more_half = slopes.widen(np.zeros(extra.size), np.zeros(extra.size), extra)
    np.testing.assert_allclose(new["throughput"], old["throughput"], rtol=0)
    np.testing.assert_allclose(np.log(np.array(new["upper"]) / new["throughput"]),
                               np.log(np.array(old["upper"]) / old["throughput"]) + more_half,
                               rtol=1e-9)
    np.testing.assert_allclose(np.log1p(np.array(new["expected_ape"]) / 100),
                               np.log1p(np.array(old["expected_ape"]) / 100) + more_sigma,
                               rtol=1e-9)
    # the scheduler's hot path answers the same
    for r in rows.to_pylist()[:8]:
        one = predictor.predict_one(r["hardware"], 1, "trt-llm", "llama-2-7b", "fp16",
                                    r["input_tokens"], 128, r["batch_size"])
        row = predictor.predict(pa.table({k: [v] for k, v in r.items()})).to_pylist()[0]
        assert one.upper == pytest.approx(row["upper"], rel=1e-9)
        assert one.expected_ape == pytest.approx(row["expected_ape"], rel=1e-9)
    # further out, never narrower
    # a curve across the largest benchmarked batch: each side widens by how far beyond it is
    sizes = np.unique(np.geomspace(1, 64 * np.exp(top_bb), 12).astype(int))
    w = dict(hardware="H100", num_devices=1, framework="trt-llm", model="llama-2-7b",
             input_tokens=int(round(np.exp(top_ii))), output_tokens=128)
    far, near = predictor.curve(w, sizes), older.curve(w, sizes)
    extra = np.maximum(np.log(sizes) - top_bb, 0)
    assert (extra[-3:] > 1).all() and (extra[:3] == 0).all()
    np.testing.assert_allclose(np.log(far.upper / far.lower),
                               np.log(near.upper / near.lower)
                               + 2 * slopes.widen(0 * extra, 0 * extra, extra)[1], rtol=1e-9)


def test_beyond_slopes_are_the_smallest_that_cover():
    from ala_fast.uncertainty import (
        NORMALISED, UNMEASURED_SLOPE, BeyondSamples, BeyondSlopes, half_width,
    )

    rng = np.random.default_rng(5)
    n = 400
    level = rng.integers(0, 4, n)
    s = BeyondSamples(np.abs(rng.normal(0, 0.4, n)), np.exp(rng.normal(-2.5, 0.5, n)), level,
                      rng.uniform(0.1, 3.0, n))
    q = np.array([0.3, 0.3, 2.0, 1.5])
    for coverage in (0.5, 0.8, 0.9, 0.95):
        slope, scale, reach = s.slopes(q, coverage)
        assert reach == s.extra.max()
        half = half_width(q, level, s.sigma, NORMALISED)
        need = int(np.ceil((n + 1) * coverage))
        assert (s.abs_err <= half + slope * s.extra).sum() >= need
        assert (s.abs_err <= half + slope * (1 - 1e-9) * s.extra).sum() < need
        # the error scale: as many rows' errors above sigma + scale * extra as below
        excess = (s.abs_err - s.sigma) / s.extra
        assert scale == max(np.median(excess), 0.0)
        assert np.mean(excess <= scale) >= 0.5 and (scale == 0 or np.mean(excess >= scale) >= 0.5)
    empty = BeyondSamples(np.zeros(0), np.zeros(0), np.zeros(0, np.int64), np.zeros(0))
    assert empty.slopes(q, 0.9) == (UNMEASURED_SLOPE, UNMEASURED_SLOPE, 0.0)
    # measured slopes up to the reach, the unmeasured factor itself beyond it
    w = BeyondSlopes(0.2, 0.1, 2.0)
    sigma, half = w.widen(np.full(4, 0.05), np.full(4, 0.3), np.array([0.0, 1.0, 2.0, 5.0]))
    np.testing.assert_allclose(sigma, 0.05 + np.array([0, 0.1, 0.2, 0.2 + 3 * UNMEASURED_SLOPE]))
    np.testing.assert_allclose(half, 0.3 + np.array([0, 0.2, 0.4, 0.4 + 3 * UNMEASURED_SLOPE]))
    t = s.to_table()
    back = BeyondSamples.from_table(t)
    assert all(np.array_equal(a, b) for a, b in zip(back, s))

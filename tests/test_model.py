"""Learned model: features, ONNX parity, bundle round trip, prediction, default bundle."""

import json
import shutil

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings, strategies as st

import ala_fast
from ala_fast import features
from ala_fast.augment import BoostingParams, predict_sklearn
from ala_fast.bundle import FORMAT_VERSION
from ala_fast.catalog import hardware_id, model_id, resolve_hardware, resolve_model
from ala_fast.learner import curve_set
from ala_fast.predictor import default_bundle_path
from ala_fast.readers import concat_tables
from ala_fast.targets import targets_to_params

# ONNX Runtime sums leaves in float32; the compiled evaluator and scikit-learn in float64
PARITY_ATOL = 1e-4  # on the targets (log scale): 1e-4 is a 0.01% throughput difference


@pytest.fixture(scope="module")
def small_table(h100_l40s):
    return h100_l40s


@pytest.fixture(scope="module")
def small_predictor(h100_l40s_predictor):
    return h100_l40s_predictor


def test_catalog_aliases():
    for name in ("H100 80GB HBM3", "Nvidia H100 GPU", "H100-SXM", "h100_sxm5", "NVIDIA H100"):
        assert hardware_id(name) == "H100-SXM", name
    assert hardware_id("H100 NVL") == "H100-NVL"
    assert hardware_id("Intel PVC GPU") == hardware_id("Intel Max 1550") == "Max1550"
    for name in ("meta-llama/Llama-2-7b-hf", "LLaMA v2 7B", "llama-2-7b-chat", "Llama-2-7B"):
        assert model_id(name) == "llama-2-7b", name
    assert model_id("meta-llama/Llama-3.3-70B-Instruct") == "llama-3.3-70b"
    assert model_id("mistralai/Mistral-7B-Instruct-v0.3") == "mistral-7b"
    for hw in ("A100", "H100 NVL", "H200", "GH200", "B200", "L40", "L40S", "MI250", "MI300X",
               "MI325X", "MI355X", "Gaudi2", "Intel Max 1550", "SN40L"):
        assert resolve_hardware(hw) is not None, hw
    for m in ("gpt-oss-120b", "deepseek-ai/DeepSeek-R1", "Qwen/Qwen2-72B", "Falcon 180B",
              "Mixtral 8x7B", "meta-llama/Llama-3.1-405B"):
        assert resolve_model(m) is not None, m
    assert resolve_hardware("TPU v9") is None and resolve_model("my-private-model") is None


def test_common_accelerators_and_models_resolve_as_spelled_in_the_wild():
    """Tables from other sources name devices and models the shared data does not have."""
    for name, entry in (("NVIDIA GeForce RTX 4090", "RTX-4090"), ("Tesla T4", "T4"),
                        ("NVIDIA RTX A6000", "RTX-A6000"), ("NVIDIA H800 80GB HBM3", "H800"),
                        ("AMD Instinct MI210", "MI210"), ("TPU v5e", "TPU-v5e"),
                        ("NVIDIA L20", "L20"), ("A800-SXM4-80GB", "A800"), ("NVIDIA A40", "A40"),
                        ("NVIDIA H200 NVL", "H200-NVL"), ("NVIDIA B300", "B300"),
                        ("NVIDIA GeForce RTX 5090", "RTX-5090"), ("AMD Instinct MI350X", "MI350X")):
        assert hardware_id(name) == entry, name
    for name, entry in (("Qwen/Qwen2.5-14B-Instruct", "qwen2.5-14b"),
                        ("google/gemma-2-9b-it", "gemma-2-9b"),
                        ("microsoft/Phi-3-mini-4k-instruct", "phi-3-mini"),
                        ("ibm-granite/granite-3.1-8b-instruct", "granite-3-8b"),
                        ("mistralai/Mistral-Nemo-Instruct-2407", "mistral-nemo-12b"),
                        ("deepseek-ai/DeepSeek-R1-Distill-Llama-70B", "llama-3.3-70b"),
                        ("Qwen/Qwen3-30B-A3B", "qwen3-30b-a3b"),
                        ("codellama/CodeLlama-34b-Instruct-hf", "codellama-34b"),
                        ("meta-llama/Llama-4-Scout-17B-16E-Instruct", "llama-4-scout")):
        assert model_id(name) == entry, name
    assert resolve_hardware("RTX 4090").vendor == resolve_hardware("Tesla T4").vendor == "nvidia"
    assert resolve_hardware("TPU v5p").vendor == "google"
    assert resolve_hardware("B300").vendor == resolve_hardware("GB300").vendor == "nvidia"


def test_memory_variants_resolve_to_their_own_entry():
    """A memory size in the name picks the variant of that size where the catalog has one; the
    plain name and unknown sizes keep the main entry."""
    assert hardware_id("NVIDIA A100-SXM4-40GB") == hardware_id("A100 40GB") == "A100-40GB"
    assert hardware_id("A100-SXM4-80GB") == hardware_id("A100") == "A100"
    assert hardware_id("GH200 144GB HBM3e") == "GH200-144GB"
    assert hardware_id("GH200 96GB") == hardware_id("Nvidia GH200 GPU") == "GH200"
    assert hardware_id("H100 94GB") == "H100-SXM"


def test_models_the_catalog_lacks_take_their_size_from_the_name():
    from ala_fast.catalog import model_from_name

    yi = model_from_name("01-ai/Yi-1.5-34B-Chat")
    assert (yi.params_b, yi.active_b) == (34.0, 34.0) and yi.layers > 40
    moe = model_from_name("Qwen/Qwen3-30B-A3B")
    assert (moe.params_b, moe.active_b) == (30.0, 3.0)
    assert model_from_name("pythia-410m").params_b == 0.41
    assert model_from_name("mixtral-8x7b-finetune") is None  # the name gives no total
    assert model_from_name("my-model") is None
    # a model with its size in the name is described like the catalog's model of that size
    # (roofline features within a few percent), but flagged as not in the catalog
    named = features.config_vector("H100", 1, "vllm", "acme-lm-70b", "fp16")
    known = features.config_vector("H100", 1, "vllm", "llama-2-70b", "fp16")
    unsized = features.config_vector("H100", 1, "vllm", "acme-lm", "fp16")
    model_known = features.CONFIG_FIELDS.index("model_known")
    assert named[model_known] == 0 and known[model_known] == 1
    x = features.build_features(np.stack([named, known, unsized]), np.full(3, 512.0),
                                np.full(3, 256.0))
    b1 = x[:, features.FEATURE_NAMES.index("log_roof_batch1")]
    assert abs(b1[0] - b1[1]) < 0.05 and abs(b1[2] - b1[1]) > 2.0
    # the catalog wins where it knows the name
    assert features.config_vector("H100", 1, "vllm", "llama-2-7b")[4] == 6.74


def test_quantisation_spellings_resolve_to_their_weight_precision():
    from ala_fast.catalog import PRECISION_BYTES, normalise_precision

    cases = {"FP8": "fp8", "bfloat16": "bf16", "W4A16": "int4", "w8a8": "int8",
             "Q4_K_M": "int4", "q8_0": "int8", "q5_K_S": "int5", "IQ4_XS": "int4",
             "int4-awq": "int4", "nf4": "int4", "4bit": "int4", "8-bit": "int8",
             "fp8-dynamic": "fp8", "FP8_E5M2": "fp8", "MXFP4": "fp4", "gptq": "int4",
             "fp64": "fp64", "float64": "fp64", "double": "fp64", "float8": "fp8",
             "E5M2": "fp8", "F16": "fp16", "F32": "fp32", "tf32": "fp32", "eetq": "int8",
             "gptq-int4": "int4", "AWQ-int4": "int4", "bnb-4bit": "int4", "bnb-nf4": "int4",
             "bnb-8bit": "int8"}
    for spelling, canonical in cases.items():
        assert normalise_precision(spelling) == canonical, spelling
        assert canonical in PRECISION_BYTES
    assert normalise_precision("Weird") == "weird" and normalise_precision("bnb") == "bnb"
    bpw = features.CONFIG_FIELDS.index("bytes_per_weight")
    kvb = features.CONFIG_FIELDS.index("kv_bytes")
    for precision, weight, kv in (("fp64", 8.0, 8.0), ("fp32", 4.0, 4.0), ("bf16", 2.0, 2.0),
                                  ("fp8", 1.0, 1.0)):
        v = features.config_vector("H100", 1, "vllm", "llama-2-7b", precision)
        assert (v[bpw], v[kvb]) == (weight, kv), precision
    assert features.config_vector("H100", 1, "llama.cpp", "llama-2-7b", "Q4_K_M")[bpw] == 0.5
    assert features.config_vector("H100", 1, "llama.cpp", "llama-2-7b", "weird")[bpw] == 2.0


def test_catalog_numbers_are_consistent():
    from ala_fast.catalog import HARDWARE, MODELS

    for h in HARDWARE:
        assert 0 < h.fp16_tflops <= h.fp8_tflops and h.mem_bw_tbs > 0 and h.mem_gb > 0, h.name
        assert h.vendor != "other", h.name
    for m in MODELS:
        assert 0 < m.active_b <= m.params_b and m.heads % m.kv_heads == 0, m.name
        assert m.layers > 0 and m.hidden > 0 and m.head_dim > 0, m.name


def test_vendors_follow_the_software_stack():
    vendor = {h: resolve_hardware(h).vendor for h in (
        "A100", "GH200", "L40S", "B200", "MI250", "MI355X", "Gaudi2", "Gaudi3", "Intel Max 1550",
        "SN40L")}
    assert {vendor[h] for h in ("A100", "GH200", "L40S", "B200")} == {"nvidia"}
    assert vendor["MI250"] == vendor["MI355X"] == "amd"
    # Habana's Gaudi (SynapseAI) and Intel's GPUs (oneAPI) share an owner, not a software stack
    assert vendor["Gaudi2"] == vendor["Gaudi3"] == "habana"
    assert vendor["Intel Max 1550"] == "intel"
    assert vendor["SN40L"] == "sambanova"


def test_interconnect_sets_the_all_reduce_link_and_its_cost():
    from ala_fast.catalog import (FALLBACK_INTERCONNECT, HARDWARE, INTERCONNECTS,
                                  interconnect_of)

    # every device has its interconnect but SN40L (no published figure: the fallback)
    assert {h.name for h in HARDWARE} - set(INTERCONNECTS) == {"SN40L"}
    assert set(INTERCONNECTS) <= {h.name for h in HARDWARE}
    for name, link in INTERCONNECTS.items():
        assert link.fast_gbs >= link.slow_gbs > 0 and link.fast_group >= 1, name
    assert interconnect_of(resolve_hardware("SN40L")) == FALLBACK_INTERCONNECT
    assert interconnect_of(None) == FALLBACK_INTERCONNECT

    link = features.CONFIG_FIELDS.index("tp_link_gbs")

    def tp_link(hw, nd, fw="trt-llm"):
        return features.config_vector(hw, nd, fw, "llama-2-70b")[link]

    # H100 NVL: NVLink bridges join pairs, PCIe 5 joins the pairs
    assert (tp_link("H100 NVL", 2), tp_link("H100 NVL", 4), tp_link("H100 NVL", 8)) == (300, 64, 64)
    assert tp_link("H100", 8) == 450 and tp_link("L40S", 2) == tp_link("L40S", 8) == 32
    assert tp_link("Acme-NPU", 4) == FALLBACK_INTERCONNECT.fast_gbs
    # no all-reduce: one device, or llama.cpp's split by layers
    assert tp_link("H100", 1) == 0 and tp_link("H100", 4, "llama.cpp") == 0

    f = {n: i for i, n in enumerate(features.FEATURE_NAMES)}
    cfg = np.array([features.config_vector(h, n, fw, "llama-2-70b") for h, n, fw in (
        ("H100", 1, "vllm"), ("H100", 8, "vllm"), ("H100 NVL", 8, "vllm"),
        ("H100 NVL", 8, "llama.cpp"))])
    x = features.build_features(cfg, np.full(4, 512.0), np.full(4, 256.0))
    share = x[:, f["log_comm_share"]]
    assert share[0] == share[3] == 0 and 0 < share[1] < share[2]
    # by hand for H100 NVL x8 on Llama 2 70B: 2 all-reduces per layer of 8192 fp16 values per
    # token, 7/8 of each through a 64 GB/s link
    hw = resolve_hardware("H100 NVL")
    compute = 8 * hw.fp16_tflops * 1e12 / (2 * 69.0e9)
    comm = 64e9 / (2 * 80 * 2 * 7 / 8 * 8192 * 2)
    assert np.isclose(share[2], np.log1p(compute / comm), rtol=1e-12)
    plateau = np.exp(x[2, f["log_roof_plateau"]])
    kv_cap = np.exp(x[2, f["log_roof_batch1"]] + x[2, f["log_kv_batch_limit"]])
    assert np.isclose(plateau, min(1 / (1 / compute + 1 / comm) * 256 / 768, kv_cap), rtol=1e-12)


def test_every_shared_name_resolves(argonne, trtllm):
    for t in (argonne, trtllm):
        for h in set(t.column("hardware").to_pylist()):
            assert resolve_hardware(h) is not None, h
        for m in set(t.column("model").to_pylist()):
            assert resolve_model(m) is not None, m


@settings(max_examples=50, deadline=None)
@given(
    hw=st.sampled_from(["H100", "A100-SXM4-80GB", "MI300X", "mystery-chip"]),
    nd=st.sampled_from([1, 2, 4, 8]),
    fw=st.sampled_from(["vllm", "TensorRT-LLM", "sglang", "newthing"]),
    model=st.sampled_from(["llama-2-7b", "Mixtral 8x7B", "unknown-model"]),
    prec=st.sampled_from(["fp16", "fp8", "Mixed"]),
    ii=st.integers(1, 32768), oo=st.integers(1, 32768),
)
def test_features_identical_for_training_and_prediction(hw, nd, fw, model, prec, ii, oo):
    """The row-wise path (prediction) and the table path (training) give the same matrix."""
    table = pa.table({"hardware": [hw], "num_devices": [nd], "framework": [fw], "model": [model],
                      "precision": [prec], "input_tokens": [ii], "output_tokens": [oo],
                      "batch_size": [1], "throughput": [1.0]})
    table = ala_fast.validate(table, require_throughput=True)
    x_table, _ = features.table_features(table)
    cfg = features.config_vector(hw, nd, fw, model, prec, "static")
    x_row = features.build_features(cfg[None, :], np.array([ii]), np.array([oo]))
    np.testing.assert_array_equal(x_table, x_row)
    assert x_row.shape == (1, features.N_FEATURES) and np.isfinite(x_row).all()


def test_targets_round_trip(trtllm):
    cs = curve_set(ala_fast.fit_curves(trtllm))
    z = cs.targets()
    a, b, c = targets_to_params(z, cs.roof_batch1, cs.roof_knee)
    t1 = cs.c - cs.a * np.exp(-cs.b)
    ok = (t1 > 1e-3 * cs.c)  # curves whose batch-1 value is positive round-trip exactly
    assert ok.mean() > 0.95
    bb = np.array([1.0, 8, 64, 512])
    np.testing.assert_allclose((c[ok, None] - a[ok, None] * np.exp(-b[ok, None] * bb)),
                               (cs.c[ok, None] - cs.a[ok, None] * np.exp(-cs.b[ok, None] * bb)),
                               rtol=1e-9)
    # any target vector gives a valid curve: positive and non-decreasing in batch size
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (1000, 3))
    a, b, c = targets_to_params(z, np.full(1000, 100.0), np.full(1000, 30.0))
    curve = c[:, None] - a[:, None] * np.exp(-b[:, None] * np.array([1.0, 2, 64, 4096]))
    assert (curve > 0).all() and (np.diff(curve, axis=1) >= 0).all()


def test_onnx_parity_sklearn_ort_compiled(small_predictor, argonne):
    """scikit-learn vs ONNX Runtime vs the compiled evaluator on rows the model never saw."""
    x, _ = features.table_features(argonne.slice(0, 2000))
    sk = predict_sklearn(small_predictor.sklearn_models, x)
    ort = small_predictor.raw_targets(x, engine="onnxruntime")
    comp = small_predictor.raw_targets(x, engine="compiled")
    np.testing.assert_allclose(comp, sk, atol=PARITY_ATOL, rtol=0)
    np.testing.assert_allclose(ort, sk, atol=PARITY_ATOL, rtol=0)
    np.testing.assert_allclose(ort, comp, atol=PARITY_ATOL, rtol=0)


def test_compiled_parallel_equals_serial(small_predictor, argonne):
    x, _ = features.table_features(argonne)
    t = small_predictor._trees
    np.testing.assert_array_equal(t.predict(x, parallel=True), t.predict(x, parallel=False))


def test_bundle_round_trip_and_corruption(small_predictor, tmp_path, trtllm):
    path = small_predictor.save(tmp_path / "b")
    loaded = ala_fast.load(path)
    w = trtllm.slice(0, 300)
    a = small_predictor.predict(w)
    b = loaded.predict(w)
    assert a.equals(b)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION and set(manifest["files"]) == {
        "params.onnx", "curves.arrow", "error.onnx", "reference.arrow", "calibration.arrow",
        "continuation.arrow", "beyond_range.arrow"}
    assert manifest["feature_names"] == list(features.FEATURE_NAMES)

    bad = tmp_path / "corrupt"
    shutil.copytree(path, bad)
    data = bytearray((bad / "params.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "params.onnx").write_bytes(bytes(data))
    with pytest.raises(ala_fast.BundleError, match="sha256"):
        ala_fast.load(bad)

    wrong = tmp_path / "wrong"
    shutil.copytree(path, wrong)
    m = json.loads((wrong / "manifest.json").read_text())
    m["format_version"] = 99
    (wrong / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ala_fast.BundleError, match="format version 99"):
        ala_fast.load(wrong)

    # a version-1 bundle (before devices described from their measurements) reads the same
    old = tmp_path / "v1"
    shutil.copytree(path, old)
    m = json.loads((old / "manifest.json").read_text())
    assert m.pop("inferred_hardware") == []
    m["format_version"] = 1
    (old / "manifest.json").write_text(json.dumps(m))
    assert ala_fast.load(old).predict(w).equals(a)

    (wrong / "manifest.json").write_text("{not json")
    with pytest.raises(ala_fast.BundleError, match="corrupted manifest"):
        ala_fast.load(wrong)
    with pytest.raises(ala_fast.BundleError, match="not a model bundle"):
        ala_fast.load(tmp_path / "nothing-here")

    missing = tmp_path / "missing"
    shutil.copytree(path, missing)
    (missing / "curves.arrow").unlink()
    with pytest.raises(ala_fast.BundleError, match="missing"):
        ala_fast.load(missing)


def test_save_replaces_atomically(small_predictor, tmp_path):
    target = tmp_path / "bundle"
    small_predictor.save(target)
    small_predictor.save(target)  # overwrite keeps a valid bundle and leaves no temp folders
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    ala_fast.load(target)


def test_predict_fitted_learned_and_unknown(small_predictor, small_table):
    rows = small_table.slice(0, 5)
    out = small_predictor.predict(rows)
    assert set(out.column("basis").to_pylist()) == {"fitted"}
    measured = out.column("measured_throughput").to_numpy()
    pred = out.column("throughput").to_numpy()
    assert np.all(np.abs(pred / measured - 1) < 0.5)
    np.testing.assert_allclose(out.column("latency_s").to_numpy(),
                               rows.column("output_tokens").to_numpy() * rows.column("batch_size").to_numpy() / pred)
    w = pa.table({"hardware": ["never-seen-accelerator", "H100", "B200"], "num_devices": [1, 2, 8],
                  "framework": ["vllm", "trt-llm", "sglang"],
                  "model": ["secret-model", "LLaMA v2 7B", "deepseek-r1"],
                  "input_tokens": [100, 333, 4000], "output_tokens": [10, 77, 1000],
                  "batch_size": [1, 5, 100]})
    out = small_predictor.predict(w)
    thpt = out.column("throughput").to_numpy()
    assert np.isfinite(thpt).all() and (thpt > 0).all()
    assert out.column("basis").to_pylist() == ["learned"] * 3


def test_predict_rejects_invalid_workloads(small_predictor):
    w = {"hardware": ["H100", "H100"], "num_devices": [1, 1], "framework": ["vllm", "vllm"],
         "model": ["m", "m"], "input_tokens": [128, 0], "output_tokens": [128, 128],
         "batch_size": [1, 1]}
    with pytest.raises(ala_fast.ValidationError, match="input_tokens.*row.*1"):
        small_predictor.predict(pa.table(w))
    w["input_tokens"] = [128, None]
    with pytest.raises(ala_fast.ValidationError, match="no nulls"):
        small_predictor.predict(pa.table(w))
    with pytest.raises(ala_fast.SchemaError):
        small_predictor.predict([1, 2, 3])


def test_training_is_deterministic(small_table, small_predictor):
    """Training again with the same seed (here in worker processes, the first time serially)
    writes the same bundle: every file, bit for bit."""
    from .conftest import SMALL_TREES

    again = ala_fast.train(small_table, seed=0, boosting=BoostingParams(n_estimators=SMALL_TREES),
                           n_jobs=2)
    assert again._files.keys() == small_predictor._files.keys()
    for name, data in small_predictor._files.items():
        assert again._files[name] == data, name
    assert again.manifest == small_predictor.manifest


def test_default_bundle_loads_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = ala_fast.load()
    assert p.manifest["training"]["curves"] > 1000
    assert default_bundle_path().is_dir()


def test_default_bundle_is_reproduced_by_training(argonne, trtllm):
    """`ala-fast train <both shared files> --seed 0` rebuilds the shipped bundle: bit for bit
    with the same dependency versions on the same platform (architecture and NumPy CPU
    features, see bundle.platform_fingerprint), and elsewhere to within what last-bit
    differences of NumPy's SIMD loops do to boosted trees."""
    shipped = ala_fast.load()
    table = concat_tables([argonne, trtllm])
    from ala_fast.bundle import dependency_versions, platform_fingerprint, table_digest
    from ala_fast.schema import CANONICAL_SCHEMA

    assert table_digest(table.select(CANONICAL_SCHEMA.names)) == shipped.manifest["training"]["digest_sha256"]
    fresh = ala_fast.train(table, seed=shipped.manifest["seed"], loss=shipped.manifest["loss"],
                           n_jobs=-1)  # as `ala-fast train` does; the result does not depend on it
    now, then = dependency_versions(), shipped.manifest["versions"]
    same_versions = all(now.get(k) == then.get(k)
                        for k in ("scikit-learn", "skl2onnx", "numpy", "onnx", "numba"))
    a = fresh.predict(table)
    b = shipped.predict(table)
    if same_versions and shipped.manifest.get("platform") == platform_fingerprint():
        for name, data in shipped._files.items():
            assert fresh._files[name] == data, name  # every file, bit for bit
        assert a.equals(b)
        return
    # another platform or other versions: curve fits (compiled, IEEE arithmetic) agree exactly,
    # learned predictions closely (measured AVX-512 -> AVX2: median 0, p99 0.7%, max 5.7%)
    fitted = np.asarray(b.column("basis").to_pylist()) == "fitted"
    ta, tb = a.column("throughput").to_numpy(), b.column("throughput").to_numpy()
    np.testing.assert_array_equal(ta[fitted], tb[fitted])
    rel = np.abs(ta - tb) / tb
    assert np.median(rel) < 1e-3 and np.quantile(rel, 0.99) < 0.03 and rel.max() < 0.15


def test_feature_kernel_matches_numpy_reference():
    from .naive import build_features_numpy

    rng = np.random.default_rng(0)
    names = [("H100", 1, "vllm", "llama-2-7b", "fp16"), ("MI300X", 8, "sglang", "mixtral-8x7b", "fp8"),
             ("L40S", 2, "trt-llm", "gpt-oss-120b", "fp16"), ("unknown", 4, "other", "unknown", "int4")]
    cfg = np.array([features.config_vector(*n) for n in names])
    idx = rng.integers(0, len(names), 500)
    ii = rng.integers(1, 100000, 500).astype(float)
    oo = rng.integers(1, 100000, 500).astype(float)
    got = features.build_features(cfg, ii, oo, cfg_index=idx)
    np.testing.assert_allclose(got, build_features_numpy(cfg[idx], ii, oo), rtol=1e-13, atol=0)


def test_feature_kernel_compiles_no_layout_from_other_modules():
    """Numba's disk cache freezes globals and is invalidated only by the kernel's own file: a
    configuration vector that grew (a vendor or framework added to the catalog) must not meet
    a width compiled in from an older layout."""
    from ala_fast._kernels import features as kf

    from .naive import build_features_numpy

    assert features.CONFIG_FIELDS[:len(kf.CONFIG_HEAD)] == kf.CONFIG_HEAD
    assert (len(features.SHAPE_FEATURES), len(features.ROOFLINE_FEATURES)) == (kf.N_SHAPE,
                                                                                kf.N_ROOFLINE)
    cfg = np.array([features.config_vector("H100", 2, "vllm", "llama-2-70b")])
    for extra in (0, 1, 3):
        wide = np.hstack([cfg, np.full((1, extra), 7.0)])
        out = np.full((3, features.N_FEATURES + extra), np.nan)
        ii, oo = np.array([1.0, 512.0, 4096.0]), np.array([1.0, 256.0, 16.0])
        kf.build_features(wide, np.zeros(3, np.int64), ii, oo, out)
        np.testing.assert_allclose(out, build_features_numpy(wide[[0, 0, 0]], ii, oo), rtol=1e-13)


def test_perfect_and_general_tree_layouts_agree(small_predictor, argonne):
    x, _ = features.table_features(argonne)
    t = small_predictor._trees
    assert t.perfect is not None
    np.testing.assert_array_equal(t.predict(x, layout="perfect"), t.predict(x, layout="general"))


@pytest.mark.parametrize("depth,n_trees", [(1, 7), (3, 19), (4, 8), (4, 7), (5, 17), (6, 7),
                                           (8, 9)])
def test_perfect_tree_kernel_matches_a_node_by_node_walk(depth, n_trees):
    """Every depth the layout allows: the levels evaluated at every node (up to 16 nodes) and
    the wider ones looked up row by row give the path and the leaf sum of a plain walk, bit
    for bit, for blocks cut anywhere (rows not a multiple of the block, ties at thresholds,
    infinite padding thresholds, several targets; tree counts below, at and across multiples of
    the trees a row walks at once)."""
    from ala_fast._kernels.trees import predict_perfect_parallel, predict_perfect_rows

    from .naive import perfect_trees_walk

    rng = np.random.default_rng(depth)
    n_features, n_rows = 5, 300
    x = rng.normal(size=(n_rows, n_features)).astype(np.float32)
    x[::7, 2] = 0.5  # ties: x == threshold goes left
    feat = rng.integers(0, n_features, (n_trees, 2**depth - 1)).astype(np.int32)
    thr = rng.normal(size=feat.shape).astype(np.float32)
    thr[:, ::3] = 0.5
    thr[1, :] = np.inf  # a padded tree: every row takes the leftmost path
    leaf = rng.normal(size=(n_trees, 2**depth))
    tree_target = (np.arange(n_trees) % 3).astype(np.int64)
    base = np.array([0.25, -1.0, 3.0])
    expected = perfect_trees_walk(x, depth, feat, thr, leaf, tree_target, base)
    for lo, hi in ((0, n_rows), (0, 1), (7, 9), (3, 18), (5, 134), (129, 300)):
        out = np.full((n_rows, 3), np.nan)
        predict_perfect_rows(x, lo, hi, depth, feat, thr, leaf, tree_target, base, out)
        np.testing.assert_array_equal(out[lo:hi], expected[lo:hi])
        assert np.isnan(out[:lo]).all() and np.isnan(out[hi:]).all()
    out = np.empty((n_rows, 3))
    predict_perfect_parallel(x, depth, feat, thr, leaf, tree_target, base, out)
    np.testing.assert_array_equal(out, expected)


def test_tree_arrays_match_the_node_by_node_reference(small_predictor):
    """The vectorised ONNX flattening equals the dictionary-and-recursion original, array for
    array, on the shipped bundle's two models and a small one."""
    from ala_fast.onnx_trees import tree_arrays
    from ala_fast.predictor import ERROR_ONNX, PARAMS_ONNX

    from .naive import tree_arrays_loop

    shipped = ala_fast.load()
    for files in (shipped._files, small_predictor._files):
        for name in (PARAMS_ONNX, ERROR_ONNX):
            got, ref = tree_arrays(files[name]), tree_arrays_loop(files[name])
            for field in ("roots", "tree_target", "mode", "left", "right", "value"):
                np.testing.assert_array_equal(getattr(got, field), ref[field], err_msg=field)
            depth, feat, thr, leaf = got.perfect
            assert depth == ref["depth"]
            for mine, theirs in ((feat, ref["feat"]), (thr, ref["thr"]), (leaf, ref["leaf"])):
                np.testing.assert_array_equal(mine, theirs)


def test_wire_reader_matches_the_onnx_package(small_predictor):
    """onnx_wire reads what onnx.helper reads: every attribute of the tree node, the width."""
    import onnx
    from onnx import helper

    from ala_fast.onnx_wire import read_tree_ensemble
    from ala_fast.predictor import ERROR_ONNX, PARAMS_ONNX

    shipped = ala_fast.load()._files
    for data in (shipped[PARAMS_ONNX], shipped[ERROR_ONNX], small_predictor.onnx_bytes()):
        model = onnx.load_model_from_string(data)
        (node,) = model.graph.node
        expected = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        got, width = read_tree_ensemble(data)
        assert width == model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
        assert got.keys() == expected.keys()
        for name, value in expected.items():
            if isinstance(value, list) and value and isinstance(value[0], (int, float)):
                assert got[name].tolist() == value, name  # float32 widened exactly
            else:
                assert got[name] == value, name


def test_wire_reader_varints_and_bad_bytes():
    from ala_fast.errors import BundleError
    from ala_fast.onnx_wire import packed_varints, read_tree_ensemble

    rng = np.random.default_rng(0)
    values = np.concatenate([rng.integers(0, 2**63 - 1, 200, dtype=np.int64),
                             rng.integers(-2**63, 0, 50, dtype=np.int64), [0, 1, 127, 128, -1]])

    def encode(v):  # protobuf int64: two's complement as unsigned, 7 bits a byte
        u, out = int(v) & (2**64 - 1), bytearray()
        while True:
            out.append((u & 0x7F) | (0x80 if u > 0x7F else 0))
            u >>= 7
            if not u:
                return bytes(out)

    assert packed_varints(b"".join(encode(v) for v in values)).tolist() == values.tolist()
    good = ala_fast.load().onnx_bytes()
    no_trees = bytes([0x3A, 0x02, 0x0A, 0x00])  # a graph holding one empty node
    for bad, message in ((b"", "one graph"), (b"\x00garbage", "past the end"),
                         (good[: len(good) // 2], "past the end"),
                         (b"\x0f" + good, "wire type 7"), (no_trees, "found 0")):
        with pytest.raises(BundleError, match=message):
            read_tree_ensemble(bad)


def test_loading_and_predicting_imports_neither_onnx_nor_scikit_learn():
    import subprocess
    import sys

    code = ("import sys, ala_fast; p = ala_fast.load(); p.predict_one('H100', 1, 'vllm', "
            "'llama-2-7b', 'fp16', 100, 100, 8); print(','.join(m for m in ('onnx', 'sklearn', "
            "'skl2onnx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_malformed_tree_ensembles_are_rejected(small_predictor):
    import onnx
    from onnx import helper

    from ala_fast.errors import BundleError
    from ala_fast.onnx_trees import tree_arrays

    def corrupt(name, change):
        model = onnx.load_model_from_string(small_predictor.onnx_bytes())
        (node,) = model.graph.node
        att = next(a for a in node.attribute if a.name == name)
        values = list(helper.get_attribute_value(att))
        change(values)
        node.attribute.remove(att)
        node.attribute.append(helper.make_attribute(name, values))
        return model.SerializeToString()

    branch = small_predictor._trees.mode.tolist().index(1)

    def dangling(v):
        v[branch] = 10_000

    def twice(v):
        v[1] = v[0]

    def two_targets(v):
        v[0] = 1 - v[0]  # the first leaf of tree 0 adds to another output than its siblings

    def shorter(v):
        v.pop()

    for name, change, message in (("nodes_truenodeids", dangling, "does not exist"),
                                  ("nodes_featureids", shorter, "lengths differ"),
                                  ("target_weights", shorter, "lengths differ"),
                                  ("nodes_nodeids", twice, "appears twice"),
                                  ("target_ids", two_targets, "more than one target")):
        with pytest.raises(BundleError, match=message):
            tree_arrays(corrupt(name, change))


def test_one_output_sub_ensemble_is_that_column_bit_for_bit(small_predictor, argonne):
    x, _ = features.table_features(argonne)
    t = small_predictor._trees
    full = t.predict(x)
    for j in range(t.n_targets):
        sub = t.only_target(j)
        assert sub.n_targets == 1 and sub.roots.size == np.sum(t.tree_target == j)
        for layout in ("perfect", "general"):
            np.testing.assert_array_equal(sub.predict(x, layout=layout)[:, 0], full[:, j])
    with pytest.raises(ValueError, match="out of range"):
        t.only_target(t.n_targets)


# ----------------------------------------------------------------------------- plausibility
def _curve(hardware, model, thpt, ii=512, oo=256, batches=(1, 8, 32, 64)):
    n = len(batches)
    return pa.table({"hardware": [hardware] * n, "num_devices": [1] * n,
                     "framework": ["vllm"] * n, "model": [model] * n,
                     "input_tokens": [ii] * n, "output_tokens": [oo] * n,
                     "batch_size": list(batches), "throughput": [float(t) for t in thpt]})


def test_throughput_ceiling_is_the_roofline_by_hand():
    from ala_fast.catalog import resolve_hardware, resolve_model
    from ala_fast.features import table_features, throughput_ceiling

    t = ala_fast.validate(_curve("H100", "llama-2-7b", [1, 2, 3, 4]), require_throughput=True)
    x, _ = table_features(t)
    hw, md = resolve_hardware("H100"), resolve_model("llama-2-7b")
    decode = hw.mem_bw_tbs * 1e12 / (md.active_b * 1e9 * 2)  # fp16: 2 bytes per weight
    compute = hw.fp16_tflops * 1e12 / (2 * md.active_b * 1e9) * 256 / (512 + 256)
    bb = np.array([1, 8, 32, 64.0])
    np.testing.assert_allclose(throughput_ceiling(x, bb), np.minimum(bb * decode, compute),
                               rtol=1e-12)
    unknown = ala_fast.validate(_curve("Acme-NPU", "llama-2-7b", [1, 2, 3, 4]),
                                require_throughput=True)
    assert np.isnan(throughput_ceiling(table_features(unknown)[0], bb)).all()


def test_curves_above_the_roofline_are_flagged_and_not_trained_on(trtllm, argonne):
    from ala_fast.learner import curve_set, trainable

    ok = _curve("H100", "llama-2-7b", [60, 400, 1200, 1800])
    impossible = _curve("H100", "llama-2-7b", [25000, 30000, 38000, 38000], ii=2048, oo=2048)
    unknown = _curve("Acme-NPU", "llama-2-7b", [25000, 30000, 38000, 38000])
    # a model the catalog lacks: judged by the size its name states, not without one
    sized = _curve("H100", "Acme-LM-7B-chat", [25000, 30000, 38000, 38000], ii=2048, oo=2048)
    unsized = _curve("H100", "Acme-LM-chat", [25000, 30000, 38000, 38000], ii=2048, oo=2048)
    params = ala_fast.fit_curves(pa.concat_tables([ok, impossible, unknown, sized, unsized]))
    flags = dict(zip(params.column("model").to_pylist(), params.column("above_roofline").to_pylist()))
    assert params.column("above_roofline").to_pylist()[:3] == [False, True, False]
    assert flags["Acme-LM-7B-chat"] and not flags["Acme-LM-chat"]
    assert trainable(curve_set(params)).tolist() == [0, 2, 4]
    # on the shared data: no TensorRT-LLM sweep curve is implausible; the Argonne ones flagged
    # all have a measurement beyond twice the ceiling
    assert not any(ala_fast.fit_curves(trtllm).column("above_roofline").to_pylist())
    p = ala_fast.fit_curves(argonne)
    assert 0 < sum(p.column("above_roofline").to_pylist()) < 0.05 * p.num_rows


def test_implausible_benchmarked_curves_are_not_served_as_fitted():
    """A benchmarked curve with a measurement beyond twice the roofline ceiling (a failed run:
    the default bundle holds Argonne's, e.g. 46,000 tokens/s for GPT-J on one GH200) answers
    like an unbenchmarked shape of its configuration, under the roofline; its plausible
    siblings stay fitted."""
    from ala_fast.features import table_features, throughput_ceiling
    from ala_fast.predictor import served_as_fitted

    p = ala_fast.load()
    flagged = np.array(p.curves.column("above_roofline").to_pylist())
    long_enough = p.curves.column("n_points").to_numpy() >= p.manifest["min_points_fitted"]
    assert flagged.sum() > 0
    np.testing.assert_array_equal(served_as_fitted(p.curves, p.manifest["min_points_fitted"]),
                                  long_enough & ~flagged)
    # a bundle from before the flag trusts every long enough curve
    old = p.curves.drop_columns(["above_roofline"])
    np.testing.assert_array_equal(served_as_fitted(old, p.manifest["min_points_fitted"]), long_enough)
    bad = p.curves.filter(pa.array(flagged))
    rows = {c: bad.column(c).to_pylist() for c in (
        "hardware", "num_devices", "framework", "model", "precision", "input_tokens",
        "output_tokens", "batch_kind")}
    rows["batch_size"] = [1] * bad.num_rows
    w = pa.table(rows)
    out = p.predict(w)
    assert out.column("basis").to_pylist() == ["learned"] * bad.num_rows
    ceiling = throughput_ceiling(table_features(ala_fast.validate(w, require_throughput=False))[0], np.ones(bad.num_rows))
    thpt = out.column("throughput").to_numpy()
    known = np.isfinite(ceiling)
    assert known.any() and (thpt[known] < ceiling[known]).all()
    fitted_c = bad.column("c").to_numpy()
    assert (thpt < 0.5 * fitted_c).all()
    for i in range(bad.num_rows):  # the hot path agrees
        one = p.predict_one(**{k: v[i] for k, v in rows.items()})
        assert one.basis == "learned" and one.throughput == pytest.approx(thpt[i], rel=1e-9)
    sibling = dict({k: v[0] for k, v in rows.items()}, input_tokens=128, output_tokens=128)
    assert p.predict(pa.table({k: [v] for k, v in sibling.items()})).column("basis")[0].as_py() == "fitted"


def _curve_rows(curves: pa.Table, k: int, batch_sizes) -> pa.Table:
    key = {c: curves.column(c)[k].as_py() for c in (
        "hardware", "num_devices", "framework", "model", "precision", "input_tokens",
        "output_tokens", "batch_kind")}
    return pa.table({**{c: [v] * len(batch_sizes) for c, v in key.items()},
                     "batch_size": list(batch_sizes)})


def test_served_curves_continue_along_the_learned_shape_off_their_range(small_predictor):
    """Inside its measured batch sizes a served curve is its fit; beyond them the stored
    continuation, scaled to meet the fit at the edge (NumPy reference); a bundle without the
    continuation extrapolates the fit; predict_one agrees with predict."""
    from ala_fast.bundle import ipc_to_table, table_to_ipc
    from ala_fast.continuation import band_quantiles, distance_band
    from ala_fast.predictor import CONTINUATION_COLUMNS, CONTINUATION_FILE, Predictor

    p = small_predictor
    cv = p.curves
    files = _bundle_files(p)
    beyond_scores = ipc_to_table(files[CONTINUATION_FILE])
    q = band_quantiles(beyond_scores.column("score").to_numpy(),
                       beyond_scores.column("distance").to_numpy(), 0.9)
    floor = p.manifest["uncertainty"]["sigma_floor"]
    assert np.isfinite(q).all() and beyond_scores.num_rows > 100
    served = np.flatnonzero(cv.column("trainable").to_numpy(zero_copy_only=False))
    cont = np.column_stack([cv.column(n).to_numpy(zero_copy_only=False)
                            for n in CONTINUATION_COLUMNS])
    assert np.isfinite(cont[served]).all()
    others = np.setdiff1d(np.arange(cv.num_rows), served)
    assert np.isnan(cont[others]).all()
    curve = lambda abc, bb: abc[2] - abc[0] * np.exp(-abc[1] * bb)  # noqa: E731
    checked = 0
    for k in served[:: max(1, served.size // 12)]:
        lo, hi = cv.column("min_batch")[k].as_py(), cv.column("max_batch")[k].as_py()
        fit = tuple(cv.column(n)[k].as_py() for n in "abc")
        inside = np.unique(np.linspace(lo, hi, 5).round()).astype(int)
        beyond = np.array([hi + 1, 2 * hi, 8 * hi] + ([max(1, lo // 2)] if lo > 1 else []))
        out = p.predict(_curve_rows(cv, k, list(inside) + list(beyond)))
        thpt = out.column("throughput").to_numpy()
        assert set(out.column("basis").to_pylist()) == {"fitted"}
        np.testing.assert_allclose(thpt[:inside.size], np.maximum(curve(fit, inside), 1e-3 * fit[2]),
                                   rtol=1e-12)
        edge = np.where(beyond < lo, lo, hi)
        expected = curve(cont[k], beyond) * curve(fit, edge) / curve(cont[k], edge)
        np.testing.assert_allclose(thpt[inside.size:], np.maximum(expected, 1e-3 * fit[2]),
                                   rtol=1e-10)
        # beyond the range the interval is the continuation's, by distance band
        env = max(cv.column("fit_log_err")[k].as_py(), floor)
        half = np.log(out.column("upper").to_numpy() / thpt)
        np.testing.assert_allclose(half[:inside.size], env, rtol=1e-9)
        np.testing.assert_allclose(half[inside.size:],
                                   np.maximum(env, q[distance_band(np.log(beyond / edge))]),
                                   rtol=1e-9)
        for j, bb in enumerate(list(inside) + list(beyond)):
            one = p.predict_one(**{c: out.column(c)[j].as_py() for c in (
                "hardware", "num_devices", "framework", "model", "precision", "input_tokens",
                "output_tokens", "batch_kind")}, batch_size=int(bb))
            assert one.throughput == pytest.approx(thpt[j], rel=1e-12)
            assert one.upper == pytest.approx(out.column("upper")[j].as_py(), rel=1e-12)
            assert one.expected_ape == pytest.approx(out.column("expected_ape")[j].as_py(),
                                                     rel=1e-12)
        checked += 1
    assert checked >= 5
    # a bundle whose distance bands are not this ala_fast's is rejected
    import copy

    bad = copy.deepcopy(p.manifest)
    bad["continuation"]["distance_edges"] = [0.5, 1.0]
    with pytest.raises(ala_fast.BundleError, match="distance bands"):
        Predictor(bad, files)
    # a bundle from before the continuation extrapolates the fit itself
    files.pop(CONTINUATION_FILE)
    files["curves.arrow"] = table_to_ipc(ipc_to_table(files["curves.arrow"]).drop_columns(
        list(CONTINUATION_COLUMNS)))
    legacy = Predictor(p.manifest, files)
    k = served[0]
    hi = cv.column("max_batch")[k].as_py()
    fit = tuple(cv.column(n)[k].as_py() for n in "abc")
    got = legacy.predict(_curve_rows(cv, k, [4 * hi])).column("throughput")[0].as_py()
    assert got == pytest.approx(max(curve(fit, 4 * hi), 1e-3 * fit[2]), rel=1e-12)


def _bundle_files(p):
    import tempfile

    from ala_fast.bundle import read_bundle

    with tempfile.TemporaryDirectory() as d:
        p.save(f"{d}/b")
        return dict(read_bundle(f"{d}/b")[1])


def test_p2_learned_continuation_beats_the_fit_of_the_measured_half(trtllm):
    """P2 on the TensorRT-LLM sweep: the predictor's rule (fit where measured, learned
    continuation beyond) against extrapolating the fit of the smaller half, and the coverage
    of its interval."""
    from ala_fast.evaluate import protocol_p2, protocol_p2_ala_fast

    mine, fit = protocol_p2_ala_fast(trtllm), protocol_p2(trtllm)
    assert mine["rows"] == fit["rows"] > 1000 and mine["curves"] == fit["curves"]
    assert mine["median_ape"] < 0.6 * fit["median_ape"]
    assert mine["p90_ape"] < 0.7 * fit["p90_ape"]
    # the interval beyond the range, cross-fitted over P1 folds, covers about what it says
    assert 0.85 <= mine["coverage"] <= 0.95 and mine["rel_width"] < 1.0


# ----------------------------------------------------------------------------- Huber leaves
@pytest.mark.parametrize("case", ["weighted", "unit weights", "ties and zero weights", "squared"])
def test_huber_leaf_booster_grows_the_stock_estimators_trees(case):
    """HuberLeafGBR is scikit-learn's GradientBoostingRegressor with a faster leaf update: the
    same trees (thresholds, features, leaf values) and predictions, bit for bit."""
    from sklearn.ensemble import GradientBoostingRegressor

    from ala_fast.huber_boosting import HuberLeafGBR

    rng = np.random.default_rng(len(case))
    x = rng.normal(size=(400, 6)).astype(np.float32)
    y = x[:, 0] - 2 * x[:, 1] ** 2 + rng.standard_t(2, size=400)
    w = rng.uniform(0.05, 1.0, size=400)
    if case == "unit weights":
        w = None
    elif case == "ties and zero weights":
        y = np.round(y)  # many residuals tie within a leaf
        w[::5] = 0.0
    kw = dict(n_estimators=40, learning_rate=0.1, max_depth=3, subsample=0.8,
              min_samples_leaf=3, random_state=3, loss="squared_error" if case == "squared" else "huber")
    stock = GradientBoostingRegressor(**kw).fit(x, y, sample_weight=w)
    fast = HuberLeafGBR(**kw).fit(x, y, sample_weight=w)
    for a, b in zip(stock.estimators_[:, 0], fast.estimators_[:, 0]):
        for field in ("feature", "threshold", "value", "children_left"):
            np.testing.assert_array_equal(getattr(b.tree_, field), getattr(a.tree_, field))
    np.testing.assert_array_equal(fast.predict(x), stock.predict(x))


def test_fast_huber_intercept_equals_scikit_learns():
    """The leaf value itself, on the cases the booster meets and the ones handed back."""
    from sklearn._loss.loss import HuberLoss

    from ala_fast.huber_boosting import FastHuberLoss

    rng = np.random.default_rng(0)
    stock, fast = HuberLoss(quantile=0.9), FastHuberLoss(quantile=0.9)
    for loss in (stock, fast):
        loss.closs.delta = 0.7
    for n in (1, 2, 3, 10, 101):
        for y in (rng.normal(size=n), np.round(rng.normal(size=n)), np.full(n, 2.5)):
            for w in (np.ones(n), rng.uniform(0, 1, n), np.where(np.arange(n) % 2 == 0, 0.0, 1.0)):
                if not w.sum() > 0:
                    continue
                assert fast.fit_intercept_only(y, w) == stock.fit_intercept_only(y, w)
    y = np.array([1.0, np.nan, 3.0])
    np.testing.assert_array_equal(fast.fit_intercept_only(y, np.ones(3)),
                                  stock.fit_intercept_only(y, np.ones(3)))

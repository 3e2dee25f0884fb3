"""Benchmarked hardware the catalog does not know is described from its own measurements
(device_inference.py), the same way in training, evaluation folds, hold-out rounds and the
saved bundle."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import ala_fast
from ala_fast.augment import BoostingParams
from ala_fast.catalog import (
    FALLBACK_HARDWARE, NO_INFERRED_DEVICES, InferredDevices, memory_from_name, resolve_hardware,
    vendor_from_name,
)
from ala_fast.curves import fit_curves
from ala_fast.device_inference import infer_devices
from ala_fast.features import config_vector
from ala_fast.learner import anchor_only, curve_set, trainable
from ala_fast.readers import concat_tables

from .conftest import SMALL_TREES


def renamed(table: pa.Table, names: dict[str, str]) -> pa.Table:
    hw = [names.get(h, h) for h in table.column("hardware").to_pylist()]
    i = table.schema.get_field_index("hardware")
    return concat_tables([table.set_column(i, "hardware", pa.array(hw))])


def subset(table: pa.Table, hardware: list[str]) -> pa.Table:
    return concat_tables([table.filter(pc.is_in(table.column("hardware"), pa.array(hardware)))])


def described(table: pa.Table):
    curves = curve_set(fit_curves(table))
    known = np.union1d(trainable(curves), anchor_only(curves))
    return curves, known


def test_name_hints():
    assert memory_from_name("Accel-Z 48GB") == 48.0
    assert memory_from_name("X 141 GB HBM3e") == 141.0
    assert memory_from_name("XPU-9000") is None and memory_from_name("5GBASE") is None
    assert vendor_from_name("NVIDIA RTX PRO 6000 Blackwell") == "nvidia"
    assert vendor_from_name("AMD Instinct MI400") == "amd"
    assert vendor_from_name("XPU-9000") == "other"


def test_inferred_devices_resolve_after_the_catalog_and_survive_pickling():
    import pickle

    from ala_fast.catalog import Hardware

    d = InferredDevices((("h100", Hardware("H100", 1.0, 1.0, 1.0, 1.0)),
                         ("xpu9000", Hardware("XPU-9000", 2.0, 3.0, 0.5, 48.0, vendor_hint="other"))))
    assert d.resolve("H100") is resolve_hardware("H100")  # the catalog wins
    assert d.resolve("xpu 9000").mem_bw_tbs == 0.5
    assert NO_INFERRED_DEVICES.resolve("XPU-9000") is None
    back = pickle.loads(pickle.dumps(d))
    assert back == d and hash(back) == hash(d)
    assert InferredDevices.from_json(json.loads(json.dumps(d.to_json()))) == d


def test_a_renamed_catalog_device_is_described_as_the_catalog_describes_it(trtllm):
    """Measurements identical to a catalog device's (A100 under another name, memory in the
    name) give that device's bandwidth and compute: the only reference is the original, so the
    efficiencies match exactly where the roofline matches."""
    a100 = subset(trtllm, ["A100-SXM4-80GB"])
    twin = renamed(a100, {"A100-SXM4-80GB": "Mystery Accelerator 80GB"})
    curves, known = described(concat_tables([a100, twin]))
    inferred = infer_devices(curves, known)
    assert len(inferred) == 1
    hw = inferred.resolve("Mystery Accelerator 80GB")
    ref = resolve_hardware("A100")
    assert hw.mem_gb == 80.0
    np.testing.assert_allclose(hw.mem_bw_tbs, ref.mem_bw_tbs, rtol=0.03)
    np.testing.assert_allclose(hw.fp16_tflops, ref.fp16_tflops, rtol=0.03)


def test_unknown_devices_are_told_apart_in_the_right_order(trtllm):
    """Two renamed GPUs, the faster (H100) and the slower (L40S) with A100 as the reference:
    each gets its own descriptors, bandwidth in the right order and within 40% of the data
    sheet's (compute: what the plateaus show)."""
    table = renamed(subset(trtllm, ["A100-SXM4-80GB", "H100 80GB HBM3", "L40S"]),
                    {"H100 80GB HBM3": "XPU-9000", "L40S": "Accel-Z"})
    curves, known = described(table)
    inferred = infer_devices(curves, known)
    fast, slow = inferred.resolve("XPU-9000"), inferred.resolve("Accel-Z")
    assert fast.mem_bw_tbs > 2 * slow.mem_bw_tbs and fast.fp16_tflops > slow.fp16_tflops
    np.testing.assert_allclose(fast.mem_bw_tbs, resolve_hardware("H100").mem_bw_tbs, rtol=0.4)
    np.testing.assert_allclose(slow.mem_bw_tbs, resolve_hardware("L40S").mem_bw_tbs, rtol=0.4)
    # only the curves given are used: without its curves a device keeps the fallback
    names = np.asarray(curves.keys.column("hardware").to_pylist())
    without = infer_devices(curves, known[names[known] != "Accel-Z"])
    assert without.resolve("Accel-Z") is None and without.resolve("XPU-9000") is not None
    cfg = config_vector("Accel-Z", 1, "trt-llm", "llama-2-7b", "fp16", inferred=without)
    assert cfg[2] == FALLBACK_HARDWARE.mem_bw_tbs
    # described_from rebuilds the features of the described devices only
    view = curves.described_from(known)
    moved = np.any(view.x != curves.x, axis=1)
    assert set(names[moved]) == {"XPU-9000", "Accel-Z"}


def test_only_unknown_devices_still_differ(trtllm):
    """No catalog device to compare with: the devices are scaled relative to each other and
    centred on the fallback device (curve-weighted geometric mean of each scale 1), so an
    unbenchmarked device sits between them, not on one of them."""
    table = renamed(subset(trtllm, ["H100 80GB HBM3", "L40S"]),
                    {"H100 80GB HBM3": "XPU-9000", "L40S": "Accel-Z"})
    curves, known = described(table)
    inferred = infer_devices(curves, known)
    fast, slow = inferred.resolve("XPU-9000"), inferred.resolve("Accel-Z")
    assert 1.5 < fast.mem_bw_tbs / slow.mem_bw_tbs < 6.0
    names = curves.keys.column("hardware").to_pylist()
    n = np.array([sum(names[i] == d for i in known) for d in ("XPU-9000", "Accel-Z")])
    fb = FALLBACK_HARDWARE
    for field in ("mem_bw_tbs", "fp16_tflops"):
        scales = np.array([getattr(fast, field), getattr(slow, field)]) / getattr(fb, field)
        np.testing.assert_allclose(np.sum(n * np.log(scales)), 0.0, atol=1e-9)
    assert slow.mem_bw_tbs < fb.mem_bw_tbs < fast.mem_bw_tbs


def test_tables_of_catalog_devices_are_untouched(h100_l40s):
    curves, known = described(h100_l40s)
    assert infer_devices(curves, known) is NO_INFERRED_DEVICES
    assert curves.described_from(known) is curves


def failed_run(hardware: str) -> pa.Table:
    """A curve no device can have produced: LLaMA v2 7B (fp8) decoding 40,000 tokens/s at
    batch 1, flat in the batch size (as Argonne's failed GH200 runs), at a request shape
    ``hardware`` was not otherwise benchmarked at."""
    bb = [1, 8, 32, 64]
    return pa.table({"hardware": [hardware] * 4, "num_devices": [1] * 4,
                     "framework": ["trt-llm"] * 4, "model": ["LLaMA v2 7B"] * 4,
                     "precision": ["fp8"] * 4, "input_tokens": [1000] * 4,
                     "output_tokens": [1000] * 4, "batch_size": bb,
                     "throughput": [40000.0, 40500.0, 40200.0, 40300.0],
                     "batch_kind": ["static"] * 4})


@pytest.fixture(scope="module")
def renamed_predictor(h100_l40s):
    table = renamed(h100_l40s, {"L40S": "Accel-Z 48GB"})
    table = concat_tables([table, failed_run("Accel-Z 48GB")])
    return table, ala_fast.train(table, seed=0, boosting=BoostingParams(n_estimators=SMALL_TREES))


def test_failed_runs_on_a_described_device_are_flagged_and_left_out(h100_l40s):
    """A curve far above the roofline of its device's description is flagged implausible,
    as one on catalog hardware is by fit_curves, and the device is described without it."""
    clean = renamed(h100_l40s, {"L40S": "Accel-Z 48GB"})
    table = concat_tables([clean, failed_run("Accel-Z 48GB"), failed_run("H100 80GB HBM3")])
    params = fit_curves(table)
    flagged = params.column("above_roofline").to_numpy(zero_copy_only=False)
    names = np.array(params.column("hardware").to_pylist())
    shape = params.column("input_tokens").to_numpy() == 1000
    assert flagged.tolist() == (shape & (names == "H100 80GB HBM3")).tolist()  # catalog only
    curves, known = described(table)
    d = curves.described_from(known)
    np.testing.assert_array_equal(~d.plausible, shape)  # now both
    assert np.isin(np.flatnonzero(shape), trainable(d), invert=True).all()
    ref_curves, ref_known = described(clean)
    ref = ref_curves.described_from(ref_known).inferred.resolve("Accel-Z 48GB")
    hw = d.inferred.resolve("Accel-Z 48GB")
    np.testing.assert_allclose([hw.mem_bw_tbs, hw.fp16_tflops], [ref.mem_bw_tbs, ref.fp16_tflops],
                               rtol=1e-9)
    # a device described by its plausible curves flags nothing
    assert curves.described_from(known[~shape[known]]).plausible[~shape].all()


def test_a_failed_run_on_a_described_device_is_not_served(renamed_predictor):
    table, predictor = renamed_predictor
    curves = predictor.curves
    failed = (np.array(curves.column("hardware").to_pylist()) == "Accel-Z 48GB") & (
        curves.column("input_tokens").to_numpy() == 1000)
    assert failed.sum() == 1
    assert curves.column("above_roofline").to_pylist() == failed.tolist()
    assert not curves.column("trainable").to_numpy(zero_copy_only=False)[failed].any()
    w = failed_run("Accel-Z 48GB").drop_columns(["throughput"])
    out = predictor.predict(w)
    assert out.column("basis").to_pylist() == ["learned"] * w.num_rows
    # answered like an unbenchmarked shape, far from the failed run's 40,000 tokens/s
    assert (out.column("throughput").to_numpy() < 0.25 * 40000).all()


def test_bundle_keeps_the_described_devices(renamed_predictor, tmp_path, capsys):
    from ala_fast.cli import main

    table, predictor = renamed_predictor
    (entry,) = predictor.manifest["inferred_hardware"]
    assert entry["name"] == "Accel-Z 48GB" and entry["mem_gb"] == 48.0
    assert entry["mem_bw_tbs"] != FALLBACK_HARDWARE.mem_bw_tbs
    path = predictor.save(tmp_path / "b")
    assert main(["info", str(path)]) == 0
    assert "described   Accel-Z 48GB: " in capsys.readouterr().out
    loaded = ala_fast.load(path)
    # learned answers (request shapes never benchmarked) on the described device and others
    w = pa.table({"hardware": ["Accel-Z 48GB", "accel z 48gb", "H100", "Other-Chip"],
                  "num_devices": [1, 1, 1, 1], "framework": ["trt-llm"] * 4,
                  "model": ["llama-2-7b"] * 4, "input_tokens": [300, 300, 300, 300],
                  "output_tokens": [700, 700, 700, 700], "batch_size": [16, 16, 16, 16]})
    a, b = predictor.predict(w), loaded.predict(w)
    assert a.equals(b)
    assert a.column("basis").to_pylist() == ["learned"] * 4
    thr = a.column("throughput").to_numpy()
    assert thr[0] == thr[1]  # one device, two spellings
    r = loaded.predict_one("Accel-Z 48GB", 1, "trt-llm", "llama-2-7b", "fp16", 300, 700, 16)
    assert r.throughput == thr[0]
    # the described device is known hardware: its own curves, not the fallback, decide
    assert loaded._plan(("Accel-Z 48GB", 1, "trt-llm", "llama-2-7b", "fp16", "static")).cfg[2] \
        == entry["mem_bw_tbs"]


def test_described_devices_are_predicted_better_on_held_out_shapes(trtllm):
    """One P1 fold of the renamed sweep (A100 known; H100 and L40S under names the catalog
    lacks): with their descriptions the held-out curves of the renamed devices are predicted
    far better than with the fallback descriptor for both (measured over all five folds: median
    APE 18.2% -> 5.0%, the catalog names 5.2%)."""
    from ala_fast.curves import evaluate as eval_curve
    from ala_fast.grouping import group_codes
    from ala_fast.protocols import folds_p1, method_ala_fast
    from ala_fast.schema import CURVE_KEY

    table = renamed(subset(trtllm, ["A100-SXM4-80GB", "H100 80GB HBM3", "L40S"]),
                    {"H100 80GB HBM3": "XPU-9000", "L40S": "Accel-Z"})
    curves, known = described(table)
    fold = folds_p1(curves.keys, 0)
    names = np.asarray(curves.keys.column("hardware").to_pylist())
    test = np.flatnonzero((fold == 0) & (names != "A100-SXM4-80GB"))
    train = np.setdiff1d(trainable(curves), np.flatnonzero(fold == 0))
    seen = np.setdiff1d(known, np.flatnonzero(fold == 0))
    codes, _ = group_codes(table, CURVE_KEY)
    rows = np.flatnonzero(np.isin(codes, test))
    pos = np.searchsorted(test, codes[rows])
    bb = table.column("batch_size").to_numpy()[rows].astype(float)
    y = table.column("throughput").to_numpy()[rows]

    def median_ape(view):
        a, b, c = method_ala_fast(view, train, test, seed=0, known=seen)
        return np.median(np.abs(eval_curve(a[pos], b[pos], c[pos], bb) / y - 1))

    with_description = median_ape(curves.described_from(seen))
    fallback = median_ape(curves)
    assert with_description < 0.6 * fallback, (with_description, fallback)


def test_hidden_names_are_unknown_to_the_catalog_but_keep_what_names_say(argonne):
    from ala_fast.catalog import model_from_name, resolve_model
    from ala_fast.evaluate import hide_names

    for what in ("hardware", "model"):
        hidden = hide_names(argonne, what)
        assert hidden.drop_columns([what]).equals(argonne.drop_columns([what]))
        resolve = resolve_hardware if what == "hardware" else resolve_model
        assert all(resolve(n) is None for n in set(hidden.column(what).to_pylist()))
    # one hidden device per spelling: two names of one chip stay two systems
    spellings = set(argonne.column("hardware").to_pylist())
    assert len(set(hide_names(argonne, "hardware").column("hardware").to_pylist())) == len(spellings)
    # a hidden model states its size, as names in the wild do
    pairs = set(zip(argonne.column("model").to_pylist(),
                    hide_names(argonne, "model").column("model").to_pylist()))
    for name, hidden_name in pairs:
        true, guess = resolve_model(name), model_from_name(hidden_name)
        assert abs(guess.params_b / true.params_b - 1) < 0.05, (name, hidden_name)
        assert abs(guess.active_b / true.active_b - 1) < 0.05, (name, hidden_name)
    with pytest.raises(ValueError, match="what must be one of"):
        hide_names(argonne, "framework")

"""Unseen hardware borrows the efficiency of similar known devices (transfer.py)."""

import numpy as np
import pytest

from ala_fast.catalog import NO_INFERRED_DEVICES, config_identity, resolve_hardware
from ala_fast.features import build_features, config_matrix
from ala_fast.targets import targets_to_params
from ala_fast.transfer import (
    BLEND, DEVICE_SCALE, blend_unseen_hardware, device_weights, known_devices, unseen_rows,
)

KNOWN = ("A100", "H100 80GB HBM3", "MI300X", "Gaudi2")


def test_known_devices_keep_one_spelling_per_entry():
    assert known_devices(["Nvidia H100 GPU", "A100", "H100 80GB HBM3", "A100-SXM4-80GB"]) == (
        "A100", "Nvidia H100 GPU")


def test_device_weights_by_hand():
    w = device_weights("H200", KNOWN)
    me = resolve_hardware("H200")
    raw = []
    for name in KNOWN:
        s = resolve_hardware(name)
        if s.vendor != me.vendor:
            raw.append(0.0)
            continue
        d = abs(np.log(s.mem_bw_tbs / me.mem_bw_tbs)) + abs(np.log(s.fp16_tflops / me.fp16_tflops))
        raw.append(np.exp(-d / DEVICE_SCALE))
    np.testing.assert_allclose(w, np.array(raw) / sum(raw), rtol=1e-12)
    assert w[1] > w[0] > 0 and w[2] == w[3] == 0  # H100 closest, A100 next, other vendors out
    # no known device of the vendor: every known device, by closeness
    w = device_weights("SN40L", KNOWN)
    assert (w > 0).all() and w.sum() == pytest.approx(1.0)
    # Gaudi3 borrows from Gaudi2 alone, not from the Intel GPU
    w = device_weights("Gaudi3", KNOWN + ("Intel Max 1550",))
    assert w[3] == 1.0 and w.sum() == 1.0
    # a device the catalog does not know: equal weights
    np.testing.assert_allclose(device_weights("never-seen-accelerator", KNOWN), 0.25)


def test_device_weights_keep_devices_where_the_configuration_was_benchmarked():
    closeness = device_weights("H200", KNOWN)
    # benchmarked on A100 only: A100 alone lends its efficiency, although H100 is closer
    np.testing.assert_array_equal(device_weights("H200", KNOWN, (True, False, False, False)),
                                  [1.0, 0.0, 0.0, 0.0])
    # on both NVIDIA devices: their closeness weights, as without flags
    np.testing.assert_allclose(device_weights("H200", KNOWN, (True, True, False, False)),
                               closeness, rtol=1e-12)
    # nowhere, or only on other vendors' devices: no evidence, closeness as without flags
    for flags in ((False,) * 4, (False, False, True, True)):
        np.testing.assert_allclose(device_weights("H200", KNOWN, flags), closeness, rtol=1e-12)
    # the floor applies to the flagged devices' weights
    w = device_weights("SN40L", KNOWN, (False, True, True, False))
    assert w[0] == w[3] == 0 and w.sum() == pytest.approx(1.0)


def test_blend_matches_a_loop_over_devices():
    rng = np.random.default_rng(0)
    coef = rng.normal(size=(len(build_features(config_matrix(["A100"], [1], ["vllm"], ["llama-2-7b"],
                                                                   ["fp16"], ["static"]),
                                               np.array([1.0]), np.array([1.0]))[0]), 3)) * 1e-3

    def targets(x, ids):  # any function of features and identities will do
        bump = np.array([[0.1 * len(k[0][0]), 0.0, -0.05] for k in ids])
        return x @ coef + bump

    configs = [("H200", 2, "vllm", "llama-2-70b", "fp16", "static"),
               ("A100", 1, "trt-llm", "mistral-7b", "fp16", "static"),
               ("MI325X", 8, "vllm", "llama-3-70b", "fp8", "concurrency"),
               ("H200", 2, "vllm", "llama-2-70b", "fp16", "static")]  # row 0's, another shape
    ii, oo = np.array([512.0, 128.0, 2048.0, 64.0]), np.array([256.0, 64.0, 1024.0, 4096.0])
    cfg = config_matrix(*zip(*configs))
    x = build_features(cfg, ii, oo)
    z0 = targets(x, [config_identity(*c) for c in configs])
    benchmarked = {("A100", *configs[0][1:]), ("MI300X", *configs[2][1:])}
    results = []
    for flag in (None, benchmarked.__contains__):
        got = blend_unseen_hardware(z0, configs, ii, oo, KNOWN, NO_INFERRED_DEVICES, targets, flag)
        np.testing.assert_array_equal(got[1], z0[1])  # known hardware: untouched
        for i in (0, 2, 3):
            flags = None if flag is None else tuple(flag((d, *configs[i][1:])) for d in KNOWN)
            _check_blend(got[i], z0[i], configs[i], ii[i:i + 1], oo[i:i + 1], targets,
                         device_weights(configs[i][0], KNOWN, flags))
        results.append(got)
    # with evidence the H200 row borrows from A100 alone (H100 would weigh more otherwise)
    assert not np.allclose(results[0][0], results[1][0])
    assert not np.allclose(results[0][0], results[0][3])  # one configuration, two shapes
    np.testing.assert_array_equal(unseen_rows([c[0] for c in configs], KNOWN), [0, 2, 3])
    np.testing.assert_array_equal(blend_unseen_hardware(z0, configs, ii, oo, (), NO_INFERRED_DEVICES, targets), z0)


def _check_blend(got, own, config, ii, oo, targets, w):
    """``got`` is the blend of ``own`` with the weighted targets of ``config`` on each device."""
    borrowed = np.zeros(3)
    for name, wk in zip(KNOWN, w):
        c = (name, *config[1:])
        xk = build_features(config_matrix(*zip(c)), ii, oo)
        borrowed += wk * targets(xk, [config_identity(*c)])[0]
    np.testing.assert_allclose(got, (1 - BLEND) * own + BLEND * borrowed, rtol=1e-12)


def test_predictor_blends_unseen_hardware_like_the_training_code(h100_l40s_predictor):
    predictor = h100_l40s_predictor
    assert set(predictor._devices) == {"H100 80GB HBM3", "L40S"}
    config = ("H200", 1, "trt-llm", "LLaMA v2 7B", "fp8", "static")
    ii, oo = np.array([700.0]), np.array([900.0])
    block = predictor._curve_block([config], ii, oo)

    def anchored(x, ids):
        return predictor.raw_targets(x) + predictor._anchors.corrections(
            ids, np.log(x[:, 0]), np.log(x[:, 1]))

    x = build_features(config_matrix(*zip(config)), ii, oo)
    own = anchored(x, [config_identity(*config)])[0]
    flags = tuple(predictor._anchors.benchmarked_config((name, *config[1:]))
                  for name in predictor._devices)
    w = device_weights("H200", predictor._devices, flags)
    borrowed = sum(wk * anchored(build_features(config_matrix(*zip((name, *config[1:]))), ii, oo),
                                 [config_identity(name, *config[1:])])[0]
                   for name, wk in zip(predictor._devices, w))
    from ala_fast.features import roofline_batch1_knee

    b1, knee = roofline_batch1_knee(x)
    a, b, c = targets_to_params((1 - BLEND) * own + BLEND * borrowed, b1, knee)
    np.testing.assert_allclose([block.a[0], block.b[0], block.c[0]], [a[0], b[0], c[0]], rtol=1e-6)
    assert not block.fitted[0]

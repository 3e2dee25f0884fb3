"""Evaluation protocols: fold structure, baselines on the same folds, metrics."""

import numpy as np
import pyarrow as pa
import pytest

import ala_fast
from ala_fast import protocols
from ala_fast.evaluate import protocol_p0, protocol_p2
from ala_fast.learner import curve_config_keys
from ala_fast.metrics import ape, ape_summary
from ala_fast.readers import concat_tables


@pytest.fixture(scope="module")
def two_gpus(trtllm):
    mask = pa.compute.is_in(trtllm.column("hardware"), pa.array(["H100 80GB HBM3", "L40S", "A100-SXM4-80GB"]))
    mask = pa.compute.and_(mask, pa.compute.is_in(trtllm.column("model"), pa.array(["LLaMA v2 7B", "Mistral 7B", "LLaMA v2 13B"])))
    return concat_tables([trtllm.filter(mask)])


def test_metrics():
    e = ape(np.array([110.0, 90.0, 100.0]), np.array([100.0, 100.0, 100.0]))
    np.testing.assert_allclose(e, [10, 10, 0])
    s = ape_summary(np.arange(101.0))
    assert s["median_ape"] == 50 and s["p90_ape"] == 90 and s["rows"] == 101


def test_p1_folds_hold_out_one_shape_per_configuration(two_gpus):
    params = ala_fast.fit_curves(two_gpus)
    keys = params.select(["hardware", "num_devices", "framework", "model", "precision",
                          "input_tokens", "output_tokens", "batch_kind"])
    fold = protocols.folds_p1(keys, seed=0)
    configs = curve_config_keys(keys)
    for f in np.unique(fold):
        held = [configs[i] for i in np.flatnonzero(fold == f)]
        assert len(held) == len(set(held)), "a fold holds out two shapes of one configuration"
    assert np.array_equal(fold, protocols.folds_p1(keys, seed=0))


def test_p3_folds_group_aliases(argonne):
    params = ala_fast.fit_curves(argonne)
    fold, names = protocols.folds_p3(params, "hardware")
    assert "Max1550" in names and len(names) == 8  # PVC and Max 1550 are one device


@pytest.fixture(scope="module")
def p1_all_methods(two_gpus):
    return protocols.run_protocol(two_gpus, "P1", methods=protocols.METHODS)


def test_p1_and_p3_run_all_methods(two_gpus, p1_all_methods):
    r1 = p1_all_methods
    for m in protocols.METHODS:
        s = r1["methods"][m]
        assert s["rows"] > 100 and np.isfinite(s["median_ape"])
    assert r1["methods"]["published"]["answered"] == 1.0
    r3 = protocols.run_protocol(two_gpus, "P3", methods=("ala_fast", "published"))
    assert r3["methods"]["published"]["answered"] == 0.0  # no answer for unseen hardware
    assert r3["methods"]["ala_fast"]["answered"] == 1.0
    rows = r3["_rows"]
    # every row was held out exactly once and predicted from a model that never saw its hardware
    assert np.isfinite(rows["pred"]["ala_fast"]).all()


def test_p0_p2_report(trtllm):
    p0 = protocol_p0(trtllm, "relative")
    p2 = protocol_p2(trtllm, "relative")
    assert p0["curves"] == p2["curves"] > 300
    assert p0["median_ape"] < p2["median_ape"]


def test_ala_fast_beats_published_on_p1(p1_all_methods):
    r = p1_all_methods
    assert r["methods"]["ala_fast"]["median_ape"] < r["methods"]["published"]["median_ape"]


def test_p2_reports_the_predictors_rule_beside_the_fits(two_gpus, tmp_path):
    """run_all P2: the ala_fast row (fit + learned continuation) on the same held-out rows as
    the curve-fit rows, and only when ala_fast is among the methods."""
    import pyarrow.parquet as pq

    from ala_fast.evaluate import protocol_p2_ala_fast, run_all

    path = tmp_path / "t.parquet"
    pq.write_table(two_gpus, path)
    (r,) = run_all([str(path)], protocols=["P2"], methods=("ala_fast",), uncertainty=False)
    fits = [m for m in r["methods"] if m.startswith("curve fit")]
    assert len(fits) == 2 and "ala_fast" in r["methods"]
    direct = protocol_p2_ala_fast(two_gpus)
    assert r["methods"]["ala_fast"]["median_ape"] == direct["median_ape"]
    assert direct["rows"] == protocol_p2(two_gpus)["rows"] == r["rows"]
    (r,) = run_all([str(path)], protocols=["P2"], methods=("nn_params",), uncertainty=False)
    assert "ala_fast" not in r["methods"]


def test_p3_by_framework_holds_out_a_software_stack_with_its_interval(argonne):
    """P3-framework: one fold per framework (spellings resolved); every held-out row is an
    unseen software stack, met at the unseen-hardware level and interval."""
    from ala_fast.uncertainty import UNSEEN_HARDWARE

    pc = pa.compute
    keep = pc.and_(pc.is_in(argonne.column("hardware"), pa.array(["Nvidia A100 GPU", "Nvidia H100 GPU"])),
                   pc.is_in(argonne.column("framework"), pa.array(["vllm", "trt-llm"])))
    keep = pc.and_(keep, pc.is_in(argonne.column("model"), pa.array(
        ["meta-llama/Llama-2-7b-hf", "mistralai/Mistral-7B-v0.1", "meta-llama/Meta-Llama-3-8B"])))
    table = concat_tables([argonne.filter(keep)])
    spelled = table.set_column(table.schema.get_field_index("framework"), "framework", pa.array(
        ["vLLM" if f == "vllm" else "TensorRT-LLM" for f in table.column("framework").to_pylist()]))
    fold, names = protocols.folds_p3(ala_fast.fit_curves(spelled), "framework")
    assert names == ["trt-llm", "vllm"] and set(fold) == {0, 1}
    with pytest.raises(ValueError, match="hardware, model or framework"):
        protocols.folds_p3(ala_fast.fit_curves(table), "precision")
    r = protocols.run_protocol(table, "P3", by="framework", methods=("ala_fast",),
                               uncertainty=True)
    assert r["protocol"] == "P3 (leave one framework out)" and r["folds"] == 2
    assert r["methods"]["ala_fast"]["answered"] == 1.0
    assert (r["_rows"]["extra"]["level"] == UNSEEN_HARDWARE).all()


def test_p3_widens_rows_beyond_the_folds_benchmarked_batches(argonne):
    """A held-out device measured at larger batches than every other device: its rows beyond
    the fold's benchmarked batch range get the extrapolation on top of the calibrated width,
    as the predictor would answer them."""
    from ala_fast.uncertainty import half_width, level_quantiles

    pc = pa.compute
    keep = pc.and_(pc.is_in(argonne.column("hardware"), pa.array(["Nvidia A100 GPU", "Nvidia H100 GPU"])),
                   pc.equal(argonne.column("framework"), "vllm"))
    keep = pc.and_(keep, pc.is_in(argonne.column("model"), pa.array(
        ["meta-llama/Llama-2-7b-hf", "mistralai/Mistral-7B-v0.1"])))
    table = concat_tables([argonne.filter(keep)])
    h100 = np.array([h == "Nvidia H100 GPU" for h in table.column("hardware").to_pylist()])
    bb = table.column("batch_size").to_numpy()
    table = table.set_column(table.schema.get_field_index("batch_size"), "batch_size",
                             pa.array(np.where(h100, bb * 8, bb)))
    r = protocols.run_protocol(table, "P3", methods=("ala_fast",), uncertainty=True)
    rows = r["_rows"]
    beyond, bb = rows["extra"]["beyond"], rows["batch_size"]
    for held in (h100, ~h100):  # the other device's batch range, in plain ratios
        lo, hi = bb[~held].min(), bb[~held].max()
        want = np.log(np.maximum(bb[held] / hi, 1.0)) + np.log(np.maximum(lo / bb[held], 1.0))
        np.testing.assert_allclose(beyond[held], want, atol=1e-12)
    assert (beyond[h100] > 0).sum() > 20
    pred = rows["pred"]["ala_fast"]
    half = np.log(rows["extra"]["upper"] / pred)
    for f, cal in rows["calibration"].items():
        m = rows["fold"] == f
        scores, levels, rounds = cal
        q = level_quantiles(scores, levels, 0.9)
        inside = half_width(q, rows["extra"]["level"][m].astype(int), rows["extra"]["sigma"][m])
        slopes = rounds.slopes(q, 0.9)  # measured by the fold's range rounds
        assert rounds.abs_err.size > 0 and slopes.interval >= 0 and slopes.reach > 0
        more = slopes.interval * np.minimum(beyond[m], slopes.reach) + np.maximum(
            beyond[m] - slopes.reach, 0.0)
        np.testing.assert_allclose(half[m], inside + more, rtol=1e-9)

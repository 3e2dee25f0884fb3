"""Canonical table validation and the readers: every bad input names column and rows."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ala_fast
from ala_fast.readers import read_report
from ala_fast.schema import CANONICAL_SCHEMA, validate


def good_rows(n=3):
    return {
        "hardware": ["H100"] * n, "num_devices": [1] * n, "framework": ["vllm"] * n,
        "model": ["llama-2-7b"] * n, "precision": ["fp16"] * n, "input_tokens": [128] * n,
        "output_tokens": [128] * n, "batch_size": list(range(1, n + 1)),
        "throughput": [100.0 * (i + 1) for i in range(n)],
    }


def test_valid_table_is_canonical():
    t = validate(pa.table(good_rows()), require_throughput=True)
    assert t.schema.names[: len(CANONICAL_SCHEMA)] == CANONICAL_SCHEMA.names
    assert t.column("batch_kind").to_pylist() == ["static"] * 3


def test_optional_columns_get_defaults():
    d = good_rows()
    del d["precision"]
    d["precision"] = pa.array([None, "fp8", None], pa.string())
    t = validate(pa.table(d), require_throughput=True)
    assert t.column("precision").to_pylist() == ["fp16", "fp8", "fp16"]


@pytest.mark.parametrize(
    "column,value,match",
    [
        ("batch_size", 0, "batch_size.*row.*1.*> 0"),
        ("input_tokens", -5, "input_tokens.*> 0"),
        ("output_tokens", 0, "output_tokens.*> 0"),
        ("throughput", float("nan"), "throughput.*finite"),
        ("throughput", float("inf"), "throughput.*finite"),
        ("throughput", -1.0, "throughput.*> 0"),
        ("num_devices", 0, "num_devices"),
        ("batch_size", 2.5, "whole numbers"),
        ("hardware", "", "hardware.*non-empty"),
    ],
)
def test_bad_values_name_column_and_row(column, value, match):
    d = good_rows()
    d[column] = list(d[column])
    d[column][1] = value
    with pytest.raises(ala_fast.ValidationError, match=match) as info:
        validate(pa.table(d), require_throughput=True)
    assert info.value.column == column and info.value.rows == [1]
    assert isinstance(info.value, ala_fast.ALAError)


def test_every_bad_column_is_reported_at_once():
    """A table with invalid values in several columns raises one error naming each of them
    (in schema order, with all their rows), so a file is fixed in one pass; the error pickles
    (worker processes send it back) and is relocated whole onto a file's rows."""
    import pickle

    from ala_fast.errors import located

    d = good_rows()
    d["hardware"] = ["H100", "", ""]
    d["input_tokens"] = pa.array([512, None, 64], pa.int64())
    d["batch_size"] = [0, 2, -1]
    d["throughput"] = [1.0, float("nan"), 3.0]
    with pytest.raises(ala_fast.ValidationError) as info:
        validate(pa.table(d), require_throughput=True, where="t.csv")
    err = info.value
    assert err.problems == [
        ("hardware", [1, 2], "a non-empty string"),
        ("input_tokens", [1], "no nulls"),
        ("batch_size", [0, 2], "values > 0"),
        ("throughput", [1], "finite numbers (no NaN or inf)"),
    ]
    assert (err.column, err.rows, err.expected) == err.problems[0]
    text = str(err)
    assert text.startswith("t.csv: column 'hardware'") and text.count("invalid row(s)") == 4
    back = pickle.loads(pickle.dumps(err))
    assert back.problems == err.problems and str(back) == text
    moved = located(err, "part-3.parquet", row_offset=100)
    assert [p[1] for p in moved.problems] == [[101, 102], [101], [100, 102], [101]]
    assert str(moved).startswith("part-3.parquet: column 'hardware'")
    # a column of the wrong type is a SchemaError, which still names the invalid values found
    d["model"] = [1, 2, 3]
    with pytest.raises(ala_fast.SchemaError) as info:
        validate(pa.table(d), require_throughput=True, where="t.csv")
    text = str(info.value)
    assert text.startswith("t.csv: column 'model' has type int64, expected string; ")
    assert text.count("invalid row(s)") == 4 and "column 'batch_size': 2 invalid" in text


def test_nulls_missing_columns_wrong_types_and_empty():
    d = good_rows()
    d["batch_size"] = pa.array([1, None, 3], pa.int64())
    with pytest.raises(ala_fast.ValidationError, match="batch_size.*no nulls"):
        validate(pa.table(d), require_throughput=True)
    d = good_rows()
    del d["model"]
    with pytest.raises(ala_fast.SchemaError, match="missing column.*model"):
        validate(pa.table(d), require_throughput=True)
    d = good_rows()
    d["batch_size"] = ["1", "2", "3"]
    with pytest.raises(ala_fast.SchemaError, match="batch_size.*expected a number"):
        validate(pa.table(d), require_throughput=True)
    d = good_rows()
    d["model"] = [1, 2, 3]
    with pytest.raises(ala_fast.SchemaError, match="model.*expected string"):
        validate(pa.table(d), require_throughput=True)
    with pytest.raises(ala_fast.SchemaError, match="empty"):
        validate(pa.table(good_rows()).slice(0, 0), require_throughput=True)
    with pytest.raises(ala_fast.SchemaError, match="pyarrow.Table"):
        validate({"a": 1}, require_throughput=True)


def test_throughput_only_required_for_training():
    d = good_rows()
    del d["throughput"]
    validate(pa.table(d), require_throughput=False)
    with pytest.raises(ala_fast.SchemaError, match="throughput"):
        validate(pa.table(d), require_throughput=True)


def test_argonne_reader(argonne):
    rep = read_report(argonne)
    assert rep.source == "argonne" and rep.rows_in == 4772
    assert rep.rows_out + rep.duplicates_merged == rep.rows_in
    assert rep.duplicates_merged > 0
    # output tokens/s is half the total for ii == oo
    rows = argonne.filter(
        (pa.compute.field("hardware") == "Nvidia GH200 GPU")
        & (pa.compute.field("model") == "mistralai/Mistral-7B-v0.1")
        & (pa.compute.field("input_tokens") == 128) & (pa.compute.field("batch_size") == 1)
        & (pa.compute.field("framework") == "trt-llm")
    )
    assert rows.num_rows == 1
    np.testing.assert_allclose(rows.column("throughput")[0].as_py(), 371.92720375776975 / 2)
    assert set(argonne.column("framework").to_pylist()) == {
        "vllm", "trt-llm", "llama.cpp", "deepspeed-mii", "deepspeed", "sambaflow"}


def test_trtllm_reader(trtllm):
    rep = read_report(trtllm)
    assert rep.source == "trtllm-dli" and rep.rows_in == 3449
    assert sum(rep.skipped.values()) == 659 and rep.rows_out == 2790
    assert set(trtllm.column("precision").to_pylist()) == {"fp8", "fp16"}
    pairs = set(zip(trtllm.column("input_tokens").to_pylist(), trtllm.column("output_tokens").to_pylist()))
    assert pairs == {(128, 128), (128, 2048), (128, 4096), (2048, 128), (2048, 2048)}


def test_cross_source_agreement(argonne, trtllm):
    """README of the TRT-LLM sweep: H100 / LLaMA-2-7B / 128-128 agrees with Argonne within 3%."""
    from ala_fast.catalog import hardware_id, model_id

    def pick(t, fp):
        out = {}
        for r in t.to_pylist():
            if (hardware_id(r["hardware"]) == "H100-SXM" and model_id(r["model"]) == "llama-2-7b"
                    and r["framework"] == "trt-llm" and r["input_tokens"] == 128
                    and r["output_tokens"] == 128 and r["num_devices"] == 1 and r["precision"] == fp):
                out[r["batch_size"]] = r["throughput"]
        return out

    a, t = pick(argonne, "fp16"), pick(trtllm, "fp16")
    common = sorted(set(a) & set(t))
    assert len(common) >= 3
    for bb in common:
        assert abs(a[bb] / t[bb] - 1) < 0.03


def test_fmwork_and_canonical_files(tmp_path):
    import pyarrow.csv as pacsv

    fm = pa.table({"gpu": ["H100", "H100", "H100"], "model": ["m", "m", "m"], "tp": [2, 2, 2],
                   "ii": [64, 64, 64], "oo": [32, 32, 32], "bb": [1, 1, 4], "thpt": [10.0, 20.0, 30.0]})
    pacsv.write_csv(fm, tmp_path / "fm.csv")
    with pytest.warns(UserWarning, match="duplicate"):
        t, rep = ala_fast.read_benchmarks(tmp_path / "fm.csv", return_report=True)
    assert rep.source == "fmwork" and rep.duplicates_merged == 1 and t.num_rows == 2
    assert t.column("throughput").to_pylist() == [15.0, 30.0]
    assert t.column("num_devices").to_pylist() == [2, 2]
    assert any("framework" in n for n in rep.notes)

    canon = pa.table(good_rows())
    pq.write_table(canon, tmp_path / "c.parquet")
    t = ala_fast.read_benchmarks(tmp_path / "c.parquet")
    assert read_report(t).source == "canonical" and t.num_rows == 3


ARGONNE_HEAD = "Hardware,Num of Hardware,Framework,Model,Input Output Length,Batch Size,"


def test_argonne_parallelism_is_not_averaged_away(tmp_path):
    """TP_PP_Results.csv: a pipeline-parallel run on 4 devices is another deployment than the
    tensor-parallel one; it is skipped and counted, never averaged with it. On one device the
    label means nothing and both rows are one deployment measured twice."""
    rows = [("4", "Tensor Parallelism", 100.0), ("4", "Pipeline Parallelism", 60.0),
            ("4", "PP", 50.0), ("1", "Tensor Parallelism", 30.0), ("1", "Pipeline Parallelism", 34.0)]
    lines = [ARGONNE_HEAD + "Parallelism Type,Latency,Throughput"]
    lines += [f"Nvidia A100 GPU,{n},TensorRT-LLM,meta-llama/Llama-2-7b-hf,128,16,{kind},1.0,{t}"
              for n, kind, t in rows]
    (tmp_path / "tp_pp.csv").write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="skipped"):
        t, rep = ala_fast.read_benchmarks(tmp_path / "tp_pp.csv", return_report=True)
    assert rep.source == "argonne" and rep.rows_in == 5 and rep.rows_out == 2
    assert sorted(rep.skipped.values()) == [1, 1]
    assert all("parallelism" in reason for reason in rep.skipped)
    assert rep.duplicates_merged == 1
    # total tokens/s of ii == oo: half are output tokens
    assert dict(zip(t.column("num_devices").to_pylist(), t.column("throughput").to_pylist())) \
        == {4: 50.0, 1: 16.0}


def test_argonne_quantisation_table(tmp_path):
    """A100_H100_quant_all_results.csv: lower-case result columns, blank lines, the weights'
    precision from kv_cache_dtype, and runs with another KV-cache precision skipped and counted
    (they would otherwise be averaged with the plain runs)."""
    lines = [ARGONNE_HEAD + "kv_cache_dtype,latency,throughput", ""]
    for dtype, t in (("Weight = fp16, KV Cache = fp16", 200.0), ("Weight = fp16, KV Cache = fp8", 260.0),
                     ("Weight = fp8, KV Cache = fp8", 300.0)):
        lines.append(f'Nvidia H100 GPU,1,vLLM,meta-llama/Meta-Llama-3-8B,128,1,"{dtype}",1.0,{t}')
    lines.append(",,,,,,,,")
    (tmp_path / "quant.csv").write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="skipped"):
        t, rep = ala_fast.read_benchmarks(tmp_path / "quant.csv", return_report=True)
    assert rep.source == "argonne"
    assert rep.skipped == {"empty row": 1,
                           "KV cache in fp8 with fp16 weights (no KV-cache precision column)": 1}
    assert t.column("precision").to_pylist() == ["fp16", "fp8"]
    assert t.column("throughput").to_pylist() == [100.0, 150.0]
    (tmp_path / "bad.csv").write_text(ARGONNE_HEAD + "kv_cache_dtype,latency,throughput\n"
                                      'H100,1,vLLM,m,128,1,"fp16 everywhere",1.0,2.0\n')
    with pytest.raises(ala_fast.ReaderError, match="row 0: kv_cache_dtype"):
        ala_fast.read_benchmarks(tmp_path / "bad.csv")


def test_bad_files(tmp_path):
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ala_fast.ReaderError, match="unknown file type"):
        ala_fast.read_benchmarks(tmp_path / "x.json")
    (tmp_path / "x.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ala_fast.ReaderError, match="cannot be read"):
        ala_fast.read_benchmarks(tmp_path / "x.parquet")
    (tmp_path / "x.csv").write_text("just one column\n1\n2\n")
    with pytest.raises(ala_fast.ReaderError):
        ala_fast.read_benchmarks(tmp_path / "x.csv")
    (tmp_path / "y.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ala_fast.ReaderError, match="cannot tell the layout"):
        ala_fast.read_benchmarks(tmp_path / "y.csv")
    with pytest.raises(ala_fast.ReaderError, match="no such file"):
        ala_fast.read_benchmarks(tmp_path / "missing.csv")
    (tmp_path / "z.csv").write_text("ii,oo,bb,thpt,gpu,model\n1,1,0,5,H100,m\n")
    with pytest.raises(ala_fast.ValidationError, match="batch_size.*row.*0"):
        ala_fast.read_benchmarks(tmp_path / "z.csv")


def test_import_is_light():
    import subprocess
    import sys

    code = ("import sys, ala_fast; heavy = [m for m in ('numba', 'sklearn', 'onnxruntime', 'scipy',"
            " 'pandas') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""

"""The ala-fast command end to end (in-process)."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ala_fast
from ala_fast.cli import main

from .conftest import TRTLLM


def test_predict_one_workload(capsys):
    assert main(["predict", "--hardware", "H100", "--model", "llama-2-7b", "--framework", "trt-llm",
                 "--input-tokens", "512", "--output-tokens", "256", "--batch-size", "32"]) == 0
    out = capsys.readouterr().out
    assert "output tokens/s" in out and "latency" in out
    assert "the KV cache fits up to batch" in out and "(exceeded)" not in out
    assert main(["predict", "--hardware", "H100", "--model", "llama-2-70b", "--framework", "vllm",
                 "--input-tokens", "512", "--output-tokens", "256", "--batch-size", "32"]) == 0
    assert "the weights alone do not fit" in capsys.readouterr().out
    assert main(["predict", "--hardware", "L40S", "--model", "llama-2-13b", "--framework",
                 "vllm", "--input-tokens", "4096", "--output-tokens", "4096",
                 "--batch-size", "512"]) == 0
    assert "(exceeded)" in capsys.readouterr().out
    assert main(["predict", "--hardware", "H100", "--model", "llama-2-7b", "--framework", "vllm",
                 "--input-tokens", "512", "--output-tokens", "256", "--batch-size", "32", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["throughput"] > 0 and row["basis"] in ("fitted", "learned")
    assert isinstance(row["memory_batch_limit"], int) and row["memory_batch_limit"] > 32


def test_predict_missing_flags_and_bad_values(capsys):
    assert main(["predict", "--hardware", "H100"]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["predict", "--hardware", "H100", "--model", "m", "--framework", "vllm",
                 "--input-tokens", "0", "--output-tokens", "5", "--batch-size", "1"]) == 2
    assert "input_tokens" in capsys.readouterr().err


def test_predict_table(tmp_path, capsys):
    w = pa.table({"hardware": ["H100", "L40S"], "num_devices": [1, 2], "framework": ["vllm", "trt-llm"],
                  "model": ["llama-2-7b", "mistral-7b"], "input_tokens": [128, 2048],
                  "output_tokens": [128, 128], "batch_size": [8, 16]})
    pq.write_table(w, tmp_path / "w.parquet")
    assert main(["predict", str(tmp_path / "w.parquet"), "--out", str(tmp_path / "p.parquet")]) == 0
    out = pq.read_table(tmp_path / "p.parquet")
    assert out.num_rows == 2 and "throughput" in out.column_names


def test_predict_a_benchmark_table_in_another_layout(tmp_path, capsys):
    """An fmwork / ARISE table goes through the reader: its measurements come out beside the
    predictions, and the read report (a duplicate averaged) is on stderr. A table of no known
    layout still fails naming the missing canonical columns."""
    import pyarrow.csv as pacsv

    fm = pa.table({"gpu": ["H100"] * 3, "model": ["llama-2-7b"] * 3, "engine": ["vllm"] * 3,
                   "ii": [128] * 3, "oo": [128] * 3, "bb": [1, 1, 8], "thpt": [90.0, 110.0, 600.0]})
    pacsv.write_csv(fm, tmp_path / "fm.csv")
    assert main(["predict", str(tmp_path / "fm.csv"), "--out", str(tmp_path / "p.parquet")]) == 0
    assert "1 duplicate rows averaged" in capsys.readouterr().err
    out = pq.read_table(tmp_path / "p.parquet")
    assert out.column("measured_throughput").to_pylist() == [100.0, 600.0]
    assert out.column("hardware").to_pylist() == ["H100", "H100"]
    assert (out.column("throughput").to_numpy() > 0).all()
    pacsv.write_csv(pa.table({"hardware": ["H100"], "model": ["m"]}), tmp_path / "bad.csv")
    assert main(["predict", str(tmp_path / "bad.csv")]) == 2
    assert "input_tokens" in capsys.readouterr().err


def test_fit_train_info(tmp_path, capsys):
    if not TRTLLM.exists():
        pytest.skip("shared data not available")
    assert main(["fit", str(TRTLLM), "--out", str(tmp_path / "p.csv")]) == 0
    assert "fitted 385 curves" in capsys.readouterr().out
    assert (tmp_path / "p.csv").stat().st_size > 0
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "training" in out
    p = ala_fast.load()
    assert f"{p.n_fitted} curves answer with their own fit; {p.n_implausible} with" in out
    assert p.n_implausible == sum(p.curves.column("above_roofline").to_pylist()) > 0
    lo, hi = p.observed_ranges["input_tokens"]
    assert f"input tokens {lo:,.0f}-{hi:,.0f}" in out and "per log unit" in out


def test_fit_rejects_non_table(tmp_path, capsys):
    (tmp_path / "x.bin").write_bytes(b"\x00\x01")
    assert main(["fit", str(tmp_path / "x.bin")]) == 2
    assert "unknown file type" in capsys.readouterr().err


def test_plan(tmp_path, capsys):
    n = 12
    cand = pa.table({"hardware": ["MI300X"] * n, "num_devices": [1, 2] * (n // 2),
                     "framework": ["vllm"] * n, "model": ["llama-3-70b"] * n,
                     "input_tokens": [128 * (i + 1) for i in range(n)], "output_tokens": [256] * n})
    pq.write_table(cand, tmp_path / "c.parquet")
    assert main(["plan", str(tmp_path / "c.parquet"), "--k", "3", "--out", str(tmp_path / "p.csv")]) == 0
    out = capsys.readouterr().out
    assert out.count("MI300X") == 3 and "->" in out
    assert main(["plan", str(tmp_path / "c.parquet"), "--k", "12"]) == 2

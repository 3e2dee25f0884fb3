"""Names the catalog does not recognise are reported, with what prediction takes them as."""

import numpy as np
import pyarrow as pa
import pytest

import ala_fast
from ala_fast.catalog import (
    FRAMEWORKS, NO_INFERRED_DEVICES, PRECISION_BYTES, Hardware, InferredDevices,
    normalise_framework, normalise_precision, resolve_hardware, resolve_model,
)
from ala_fast.cli import main
from ala_fast.names import NAME_COLUMNS, UnrecognisedName, unrecognised_names


def _table(**cols):
    base = {"hardware": ["H100"], "num_devices": [1], "framework": ["vllm"],
            "model": ["llama-2-7b"], "precision": ["fp16"], "input_tokens": [128],
            "output_tokens": [128], "batch_size": [8]}
    n = max(len(v) for v in cols.values()) if cols else 1
    base = {k: v * n for k, v in base.items()}
    base.update(cols)
    return pa.table(base)


def _naive(table, inferred=NO_INFERRED_DEVICES):
    """Brute-force reference: every row checked on its own, then counted."""
    seen = {}
    for row in table.to_pylist():
        for column in NAME_COLUMNS:
            name = str(row[column])
            unknown = {
                "hardware": inferred.resolve(name) is None or inferred.resolve(name).vendor_hint,
                "model": resolve_model(name) is None,
                "framework": normalise_framework(name) not in FRAMEWORKS,
                "precision": normalise_precision(name) not in PRECISION_BYTES,
            }[column]
            if unknown:
                seen[(column, name)] = seen.get((column, name), 0) + 1
    return seen


def test_catalog_names_and_their_spellings_are_not_reported():
    t = _table(hardware=["H100", "Nvidia H100 GPU", "A100-SXM4-80GB", "MI300X"],
               model=["llama-2-7b", "meta-llama/Llama-2-7b-hf", "Mistral 7B", "LLaMA v2 70B"],
               framework=["vllm", "TensorRT-LLM", "llama.cpp", "DeepSpeed-MII"],
               precision=["fp16", "FP8", "Q4_K_M", "bfloat16"])
    assert unrecognised_names(t) == []


def test_every_unknown_name_is_listed_once_with_its_rows_and_fallback():
    t = _table(hardware=["H100", "Acme X9", "Acme X9", "H100"],
               model=["Yi-1.5-34B-Chat", "acme-lm", "llama-2-7b", "Qwen3-30B-A3B-xx"],
               framework=["vllm", "vllm", "mlc-llm", "mlc-llm"],
               precision=["fp16", "weird", "fp16", "fp16"])
    got = unrecognised_names(t)
    assert {(u.column, u.name): u.rows for u in got} == _naive(t)
    by = {(u.column, u.name): u for u in got}
    assert by[("hardware", "Acme X9")].rows == 2
    assert "FALLBACK_HARDWARE" in by[("hardware", "Acme X9")].taken_as
    assert "34B" in by[("model", "Yi-1.5-34B-Chat")].taken_as
    assert "3B active" in by[("model", "Qwen3-30B-A3B-xx")].taken_as
    assert "7B" in by[("model", "acme-lm")].taken_as
    assert by[("framework", "mlc-llm")].rows == 2
    assert "fp16" in by[("precision", "weird")].taken_as
    # order: by column, most rows first, then name
    assert [u.column for u in got] == sorted((u.column for u in got), key=NAME_COLUMNS.index)
    models = [u for u in got if u.column == "model"]
    assert [u.name for u in models] == sorted(u.name for u in models)
    assert "is not in the catalog" in str(got[0]) and "2 rows" in str(got[0])


def test_inferred_devices_are_reported_as_described_from_benchmarks():
    inferred = InferredDevices((("acmex9", Hardware("acmex9", 500, 500, 2.0, 80,
                                                     vendor_hint="other")),))
    assert resolve_hardware("Acme X9") is None
    got = unrecognised_names(_table(hardware=["Acme X9"]), inferred)
    assert len(got) == 1 and "benchmarks" in got[0].taken_as


@pytest.mark.parametrize("seed", range(3))
def test_matches_the_row_by_row_reference_on_random_tables(seed):
    import random

    rng = random.Random(seed)
    pools = {"hardware": ["H100", "L40S", "Foo 48GB", "bar", "MI250"],
             "model": ["llama-2-7b", "zz-13b", "unnamed", "Mixtral 8x7B"],
             "framework": ["vllm", "trt-llm", "new-fw", "X"],
             "precision": ["fp16", "fp8", "int4", "odd"]}
    n = 50
    t = _table(**{c: [rng.choice(v) for _ in range(n)] for c, v in pools.items()})
    got = unrecognised_names(t)
    assert {(u.column, u.name): u.rows for u in got} == _naive(t)
    assert len(got) == len({(u.column, u.name) for u in got})


def test_predictor_reports_names_and_still_predicts():
    p = ala_fast.load()
    t = _table(hardware=["Acme X9"], model=["acme-lm"])
    names = p.unrecognised_names(t)
    assert [(u.column, u.name) for u in names] == [("hardware", "Acme X9"), ("model", "acme-lm")]
    assert all(isinstance(u, UnrecognisedName) for u in names)
    assert p.predict(t).column("throughput").to_pylist()[0] > 0
    with pytest.raises(ala_fast.SchemaError):
        p.unrecognised_names(pa.table({"hardware": ["x"]}))


def test_cli_notes_unknown_names_on_stderr_capped(tmp_path, capsys):
    import ala_fast.cli_model as cm

    assert main(["predict", "--hardware", "Acme X9", "--model", "llama-2-7b", "--framework",
                 "vllm", "--input-tokens", "128", "--output-tokens", "128",
                 "--batch-size", "4"]) == 0
    captured = capsys.readouterr()
    assert "throughput" in captured.out and "Acme X9" not in captured.err.split("note:")[0]
    assert "note: hardware 'Acme X9' (1 row) is not in the catalog" in captured.err
    n = cm.MAX_NOTES + 3
    t = _table(hardware=[f"dev-{k}" for k in range(n)])
    import pyarrow.parquet as pq

    pq.write_table(t, tmp_path / "w.parquet")
    assert main(["predict", str(tmp_path / "w.parquet"), "--out", str(tmp_path / "p.parquet")]) == 0
    err = capsys.readouterr().err
    assert err.count("note: hardware") == cm.MAX_NOTES
    assert "and 3 more names" in err


def test_counts_merged_over_batches_equal_the_whole_table():
    from ala_fast.names import merge_counts, name_counts, unrecognised_in

    rng = np.random.default_rng(4)
    n = 3000
    t = _table(hardware=rng.choice(["H100", "Foo 48GB", "bar"], n).tolist(),
               model=rng.choice(["llama-2-7b", "zz-13b"], n).tolist())
    t = t.set_column(t.schema.get_field_index("model"), "model",
                     pa.array(t.column("model").to_pylist()).dictionary_encode())
    merged: dict = {}
    for batch in t.to_batches(max_chunksize=700):
        merge_counts(merged, name_counts(batch))
    assert merged == name_counts(t)
    assert unrecognised_in(merged) == unrecognised_names(t)
    assert {(u.column, u.name): u.rows for u in unrecognised_names(t)} == _naive(t)
    # nulls are not names
    nulls = pa.table({"hardware": pa.array(["bar", None, "bar"])})
    assert name_counts(nulls) == {"hardware": {"bar": 2}}

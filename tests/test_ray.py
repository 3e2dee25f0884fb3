"""Ray adapter in local mode (2 CPUs): same results as Predictor.predict, order and columns
kept, a bad file named without losing the other files' output."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ala_fast
from ala_fast.errors import ValidationError
from ala_fast.cli import main

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

ROWS_PER_FILE = 1500


def workloads(n, seed):
    rng = np.random.default_rng(seed)
    hw = np.array(["H100", "A100", "L40S", "MI300X", "nvidia-b200"])
    md = np.array(["llama-2-7b", "llama-3-70b", "mistral-7b", "unknown-model-x"])
    return pa.table({
        "id": np.arange(seed * 10**6, seed * 10**6 + n),
        "hardware": hw[rng.integers(0, hw.size, n)],
        "num_devices": rng.integers(1, 5, n).astype(np.int32),
        "framework": np.array(["vllm", "trt-llm"])[rng.integers(0, 2, n)],
        "model": md[rng.integers(0, md.size, n)],
        "input_tokens": rng.choice([128, 512, 2048], n),
        "output_tokens": rng.choice([128, 1024], n),
        "batch_size": rng.integers(1, 257, n),
        "note": np.array(["a", "b", "c"])[rng.integers(0, 3, n)],
    })


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def predictor():
    return ala_fast.load()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("parquet_in")
    for i in range(3):
        pq.write_table(workloads(ROWS_PER_FILE, i), d / f"part-{i}.parquet", row_group_size=400)
    return d


def unrecognised_counts(table):
    from ala_fast.names import name_counts

    return name_counts(table)


def expected(predictor, folder):
    files = sorted(folder.glob("*.parquet"))
    return predictor.predict(pa.concat_tables([pq.read_table(f) for f in files]))


def test_predict_dataset_equals_predict(ray_local, predictor, folder):
    from ala_fast.ray import predict_dataset

    ds = ray.data.read_parquet(str(folder))
    out = predict_dataset(ds, batch_size=700, workers=2).to_arrow_refs()
    got = pa.concat_tables(ray.get(out))
    want = expected(predictor, folder)
    assert got.column_names == want.column_names
    assert got.column("id").to_pylist() == want.column("id").to_pylist()  # row order
    for name in want.column_names:
        a, b = got.column(name), want.column(name)
        if pa.types.is_floating(b.type):
            np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-12, err_msg=name)
        else:
            assert a.to_pylist() == b.to_pylist(), name


def test_predict_dataset_names_the_file_of_a_bad_row(ray_local, tmp_path, folder):
    from ala_fast.ray import library_error, predict_dataset

    bad = workloads(50, 7).to_pydict()
    bad["batch_size"][17] = 0
    for f in folder.glob("*.parquet"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    pq.write_table(pa.table(bad), tmp_path / "part-bad.parquet")
    ds = ray.data.read_parquet(str(tmp_path), include_paths=True)
    with pytest.raises(Exception) as info:
        predict_dataset(ds, batch_size=100).materialize()
    err = library_error(info.value)
    assert isinstance(err, ValidationError), info.value
    assert err.column == "batch_size" and "part-bad.parquet" in str(err)


def test_predict_files_keeps_good_files_and_names_the_bad_one(ray_local, predictor, folder,
                                                                tmp_path):
    from ala_fast.ray import predict_files

    src = tmp_path / "in"
    src.mkdir()
    for f in folder.glob("*.parquet"):
        (src / f.name).write_bytes(f.read_bytes())
    bad = workloads(900, 9).to_pydict()
    bad["input_tokens"][650] = -3  # in the second batch of 500 rows
    pq.write_table(pa.table(bad), src / "part-9.parquet")
    results = predict_files(src, tmp_path / "out", workers=2, batch_rows=500)
    assert [r.source.rsplit("/", 1)[1] for r in results] == [
        "part-0.parquet", "part-1.parquet", "part-2.parquet", "part-9.parquet"]
    for r in results[:3]:
        assert r.error is None and r.rows == ROWS_PER_FILE
        got = pq.read_table(r.output)
        want = predictor.predict(pq.read_table(r.source))
        assert got.equals(want)
        assert 0 < r.peak_rss_mib
        assert r.names == unrecognised_counts(pq.read_table(r.source))
    err = results[3].error
    assert isinstance(err, ValidationError) and err.rows == [650]
    assert "part-9.parquet" in str(err) and results[3].output is None
    assert not (tmp_path / "out" / "part-9.parquet").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "part-0.parquet", "part-1.parquet", "part-2.parquet"]  # no temporary files left


def test_cli_engine_ray(ray_local, folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["predict", str(folder), "--out", str(out), "--engine", "ray", "--workers", "2",
                 "--batch-rows", "1000"]) == 0
    captured = capsys.readouterr()
    assert "predicted 4,500 rows in 3 of 3 file(s)" in captured.out
    # the names the catalog lacks, counted by the workers over every file
    tables = [pq.read_table(f) for f in sorted(folder.glob("*.parquet"))]
    rows = sum(t.column("model").to_pylist().count("unknown-model-x") for t in tables)
    assert rows > 0
    assert f"note: model 'unknown-model-x' ({rows} rows) is not in the catalog" in captured.err
    assert pq.read_table(out / "part-1.parquet").num_rows == ROWS_PER_FILE
    assert main(["predict", str(tmp_path / "missing"), "--out", str(out), "--engine", "ray"]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["predict", str(folder), "--out", str(out), "--engine", "ray",
                 "--bundle", str(tmp_path / "no_bundle")]) == 2
    assert "no_bundle" in capsys.readouterr().err

"""Batch scoring of a Parquet folder: one process vs Ray workers, and memory as input grows.

Ray runs locally (all CPUs of this machine); worker start-up (load + warm-up, once per worker)
is inside the timed region, as it is for a user's job.
"""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ala_fast
from ala_fast.streaming import input_files, output_for, predict_file

ray = pytest.importorskip("ray")

FILES = 8
ROWS_PER_FILE = 500_000  # 4M rows in all


def workloads(n, seed):
    rng = np.random.default_rng(seed)
    cur = rng.integers(0, 1000, n)
    hw = np.array(["H100", "A100", "L40S", "MI300X", "H200"])
    md = np.array(["llama-2-7b", "llama-3-70b", "mistral-7b", "mixtral-8x7b"])
    return pa.table({
        "hardware": hw[cur % 5], "num_devices": (cur // 5) % 4 + 1,
        "framework": np.array(["vllm", "trt-llm"])[(cur // 20) % 2], "model": md[(cur // 40) % 4],
        "input_tokens": 64 * ((cur // 160) + 1), "output_tokens": np.full(n, 256),
        "batch_size": rng.integers(1, 257, n),
    })


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("ray_in")
    for i in range(FILES):
        pq.write_table(workloads(ROWS_PER_FILE, i), d / f"part-{i:02d}.parquet")
    return d


@pytest.fixture(scope="module")
def ray_local():
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _rows(results):
    assert all(r.error is None for r in results)
    return sum(r.rows for r in results)


GROUP = f"Parquet folder, {FILES} files x {ROWS_PER_FILE:,} rows"


@pytest.mark.benchmark(group=GROUP)
def test_single_process_streaming(benchmark, folder, tmp_path):
    def run():
        p = ala_fast.load().warmup()
        root, files = input_files(folder)
        return [predict_file(p, f, output_for(f, root, tmp_path)) for f in files]

    results = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["rows"] = _rows(results)


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("workers", [1, 2])
def test_ray_workers(benchmark, ray_local, folder, tmp_path, workers):
    from ala_fast.ray import predict_files

    results = benchmark.pedantic(predict_files, (folder, tmp_path / f"out{workers}"),
                                 {"workers": workers}, rounds=1, iterations=1)
    benchmark.extra_info["rows"] = _rows(results)
    benchmark.extra_info["peak_rss_mib"] = max(r.peak_rss_mib for r in results)


@pytest.mark.benchmark(group="Ray worker peak memory as the input grows (1 file)")
@pytest.mark.parametrize("rows", [250_000, 1_000_000, 4_000_000])
def test_ray_memory_bounded(benchmark, ray_local, tmp_path, rows):
    """One file of growing size through one fresh worker: peak memory should stay flat."""
    from ala_fast.ray import predict_files

    pq.write_table(workloads(rows, 42), tmp_path / "one.parquet", row_group_size=100_000)
    results = benchmark.pedantic(predict_files, (tmp_path / "one.parquet", tmp_path / "out"),
                                 {"workers": 1}, rounds=1, iterations=1)
    benchmark.extra_info["rows"] = _rows(results)
    benchmark.extra_info["peak_rss_mib"] = results[0].peak_rss_mib

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import argonne, shared_table, trtllm, _read, ARGONNE, TRTLLM  # noqa: E402,F401


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """Keep the saved JSON small: summary statistics only, not every timing sample."""
    for bench in output_json["benchmarks"]:
        bench["stats"].pop("data", None)

import os
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ALA_FAST_SHARED_DATA", ROOT.parent / "shared" / "data"))
ARGONNE = SHARED / "argonne-llm-inference-bench" / "All_results.csv"
TRTLLM = SHARED / "nvidia-dli-trtllm" / "trt_llm_0_9_0_dli.csv"


def _read(path):
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    import ala_fast

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ala_fast.read_benchmarks(path)


@pytest.fixture(scope="session")
def argonne():
    return _read(ARGONNE)


@pytest.fixture(scope="session")
def trtllm():
    return _read(TRTLLM)


@pytest.fixture(scope="session", params=["argonne", "trtllm"])
def shared_table(request):
    return _read(ARGONNE if request.param == "argonne" else TRTLLM)

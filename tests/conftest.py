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


@pytest.fixture(scope="session")
def h100_l40s(trtllm):
    """A quick training table: two GPUs of the TensorRT-LLM sweep."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from ala_fast.readers import concat_tables

    mask = pc.is_in(trtllm.column("hardware"), pa.array(["H100 80GB HBM3", "L40S"]))
    return concat_tables([trtllm.filter(mask)])


#: boosting of the session's small predictor (tests that retrain compare against it)
SMALL_TREES = 60


@pytest.fixture(scope="session")
def h100_l40s_predictor(h100_l40s):
    """The whole pipeline trained once on ``h100_l40s`` (seed 0, SMALL_TREES trees), shared by
    every module that only reads a trained predictor."""
    import ala_fast
    from ala_fast.augment import BoostingParams

    return ala_fast.train(h100_l40s, seed=0, boosting=BoostingParams(n_estimators=SMALL_TREES))

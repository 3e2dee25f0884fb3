import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import argonne, shared_table, trtllm, _read, ARGONNE, TRTLLM  # noqa: E402,F401

"""ala_fast: fast LLM inference throughput prediction with calibrated uncertainty.

Importing this package is cheap: nothing is compiled and the heavy modules load on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_LAZY = {
    "ALAError": "errors", "SchemaError": "errors", "ValidationError": "errors",
    "ReaderError": "errors", "FitError": "errors", "BundleError": "errors",
    "CANONICAL_SCHEMA": "schema", "validate": "schema",
    "read_benchmarks": "readers", "read_report": "readers",
    "fit_curves": "curves",
    "train": "training", "load": "predictor", "Predictor": "predictor",
    "evaluate": "evaluate",
}

__all__ = sorted(_LAZY) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .curves import fit_curves
    from .errors import ALAError, BundleError, FitError, ReaderError, SchemaError, ValidationError
    from .predictor import Predictor, load
    from .readers import read_benchmarks, read_report
    from .schema import CANONICAL_SCHEMA, validate
    from .training import train


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ala_fast' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__

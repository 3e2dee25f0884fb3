"""Error metrics shared by every protocol."""

from __future__ import annotations

import numpy as np


def ape(pred: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Absolute percentage error, in percent."""
    return np.abs(np.asarray(pred, float) - actual) / np.asarray(actual, float) * 100.0


def ape_summary(errors: np.ndarray) -> dict[str, float]:
    """median / mean / 90th percentile APE and the row count."""
    e = np.asarray(errors, float)
    if e.size == 0:
        return {"rows": 0, "median_ape": float("nan"), "mean_ape": float("nan"), "p90_ape": float("nan")}
    return {
        "rows": int(e.size),
        "median_ape": float(np.median(e)),
        "mean_ape": float(np.mean(e)),
        "p90_ape": float(np.percentile(e, 90)),
    }


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(x) < 3:
        return float("nan")
    return float(spearmanr(x, y).statistic)

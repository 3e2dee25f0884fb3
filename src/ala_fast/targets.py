"""Curve parameters <-> the well-scaled targets the learned model predicts.

Three dimensionless targets, each close to 0 for a curve that behaves like its roofline:

- ``log_eff1 = log(T1 / roof_batch1)``: batch-1 throughput T1 = c - a*exp(-b) relative to the
  bandwidth-bound roofline (how efficient one stream is);
- ``log_gain = log(c / T1) - log(roof_knee)``: how much batching multiplies throughput, relative
  to the roofline's compute/bandwidth ratio;
- ``log_bc = log(b * c / T1)``: saturation speed; for c*(1 - exp(-b*bb)) the linear start
  T1*bb meets the plateau c at bb = 1/b, so b*c/T1 ~ 1.

The inverse rebuilds (a, b, c) exactly for any curve with 0 < T1 <= c and b in bounds, and
always returns a valid curve (a >= 0, b within bounds, c >= T1 > 0).
"""

from __future__ import annotations

import numpy as np

from .curves import PUBLISHED_BOUNDS

TARGET_NAMES = ("log_eff1", "log_gain", "log_bc")
T1_FLOOR = 1e-3  # T1 is kept >= this share of c when a fitted curve goes negative at batch 1


def params_to_targets(a, b, c, roof_batch1, roof_knee) -> np.ndarray:
    a, b, c = (np.asarray(v, np.float64) for v in (a, b, c))
    t1 = np.clip(c - a * np.exp(-b), T1_FLOOR * c, c)
    return np.stack(
        [np.log(t1 / roof_batch1), np.log(c / t1) - np.log(roof_knee), np.log(b * c / t1)], axis=1
    )


def targets_to_params(z: np.ndarray, roof_batch1, roof_knee, bounds=PUBLISHED_BOUNDS):
    """(a, b, c) from targets (rows x 3)."""
    z = np.atleast_2d(np.asarray(z, np.float64))
    t1 = roof_batch1 * np.exp(z[:, 0])
    c = t1 * np.exp(np.maximum(z[:, 1] + np.log(roof_knee), 0.0))
    b = np.clip(np.exp(z[:, 2]) * t1 / c, bounds.b_lo, bounds.b_hi)
    a = (c - t1) * np.exp(b)
    return a, b, c

"""Slow, obviously correct references for the compiled kernels."""

from __future__ import annotations

import numpy as np
from scipy.optimize import curve_fit, lsq_linear


def curve(x, a, b, c):
    return c - a * np.exp(-b * x)


def published_curve_fit(x, y):
    """scipy curve_fit with the published settings: bounds a in [0, 1e6], b in [1e-5, 1],
    c in [0, 1e6]; start values from the 10th / 90th percentiles; maxfev 10000."""
    p10, p90 = np.percentile(y, [10, 90])
    p0 = [max(p90 - p10, 1.0), 0.01, p90]
    popt, _ = curve_fit(curve, x, y, p0=p0, bounds=([0, 1e-5, 0], [1e6, 1, 1e6]), maxfev=10000)
    return popt


def bounded_ac(x, y, w, b, a_max=1e6, c_max=1e6):
    """Box-constrained weighted least squares for (a, c) at fixed b with scipy's lsq_linear."""
    sw = np.sqrt(w)
    design = np.stack([-np.exp(-b * x), np.ones_like(x)], axis=1) * sw[:, None]
    res = lsq_linear(design, y * sw, bounds=([0, 0], [a_max, c_max]), tol=1e-14, lsmr_tol="auto",
                     method="bvls")
    a, c = res.x
    return a, c, float(np.sum(w * (y - curve(x, a, b, c)) ** 2))


def brute_force_fit(x, y, w, n_grid=4001):
    """Best (a, b, c) over a very fine log grid of b with exact (a, c) at each b."""
    best = (np.inf, None)
    for b in np.exp(np.linspace(np.log(1e-5), 0.0, n_grid)):
        a, c, f = bounded_ac(x, y, w, b)
        if f < best[0]:
            best = (f, (a, b, c))
    return best[1], best[0]

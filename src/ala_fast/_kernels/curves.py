"""Analytical throughput curve ``thpt(bb) = c - a * exp(-b * bb)``: evaluation and fitting.

Fitting exploits that the model is linear in (a, c) once b is fixed: for each b the box-
constrained weighted least squares in (a, c) is solved exactly (interior solution, else the
best point on the four edges of the box), so the loss becomes a function of b alone. That
profile is scanned on a dense log-spaced grid over [b_lo, b_hi] and the best few local minima
are refined by golden-section search in log b. Every curve is independent; segmented arrays
(``offsets``) carry many curves in one call.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .options import jit, jit_parallel

GRID_POINTS = 97  # log-spaced b values over the bounds (about 8 per decade over 5 decades)
REFINE_MINIMA = 3  # local minima of the grid refined by golden section
GOLDEN_ITERS = 52  # shrinks a two-step bracket (0.24 in log b) to ~3e-12


@jit
def eval_curve(a, b, c, bb):
    """Throughput of one curve at one batch size."""
    return c - a * np.exp(-b * bb)


@jit
def eval_curves(a, b, c, bb, out):
    """out[i] = c[i] - a[i] * exp(-b[i] * bb[i]) for every row."""
    for i in range(bb.shape[0]):
        out[i] = c[i] - a[i] * np.exp(-b[i] * bb[i])
    return out


@jit
def _sse(y, w, lo, hi, a, c, e):
    """Weighted loss of (a, c) given the cached e[i - lo] = exp(-b * x[i])."""
    s = 0.0
    for i in range(lo, hi):
        r = y[i] - (c - a * e[i - lo])
        s += w[i] * r * r
    return s


@jit
def _clip(v, lo, hi):
    if v < lo:
        return lo
    if v > hi:
        return hi
    return v


@jit
def solve_ac(x, y, w, lo, hi, b, a_max, c_max, e):
    """Exact box-constrained weighted least squares for (a, c) at fixed b.

    Returns (a, c, loss). The problem is a convex quadratic in two variables: its minimum is the
    unconstrained solution when that lies in the box, else on one of the four edges, where the
    one-dimensional minimiser is the clipped stationary point. ``e`` is scratch space
    (>= hi - lo floats) for exp(-b x), computed once per call.
    """
    sw = 0.0
    su = 0.0
    sy = 0.0
    for i in range(lo, hi):
        ei = np.exp(-b * x[i])
        e[i - lo] = ei
        sw += w[i]
        su -= w[i] * ei
        sy += w[i] * y[i]
    um = su / sw
    ym = sy / sw
    suu = 0.0
    suy = 0.0
    su2 = 0.0
    suy_raw = 0.0
    for i in range(lo, hi):
        u = -e[i - lo]
        du = u - um
        suu += w[i] * du * du
        suy += w[i] * du * (y[i] - ym)
        su2 += w[i] * u * u
        suy_raw += w[i] * u * y[i]
    # interior: y ~ c + a*u  (u = -exp(-b x))
    if suu > 1e-300 * sw:
        a = suy / suu
        c = ym - a * um
        if a >= 0.0 and a <= a_max and c >= 0.0 and c <= c_max:
            return a, c, _sse(y, w, lo, hi, a, c, e)
    best_a = 0.0
    best_c = _clip(ym, 0.0, c_max)
    best = _sse(y, w, lo, hi, best_a, best_c, e)
    # a = a_max
    c = _clip(ym - a_max * um, 0.0, c_max)
    s = _sse(y, w, lo, hi, a_max, c, e)
    if s < best:
        best, best_a, best_c = s, a_max, c
    # c = 0 :  y ~ a*u
    a = _clip(suy_raw / su2, 0.0, a_max)
    s = _sse(y, w, lo, hi, a, 0.0, e)
    if s < best:
        best, best_a, best_c = s, a, 0.0
    # c = c_max : y - c_max ~ a*u
    a = _clip((suy_raw - c_max * su) / su2, 0.0, a_max)
    s = _sse(y, w, lo, hi, a, c_max, e)
    if s < best:
        best, best_a, best_c = s, a, c_max
    return best_a, best_c, best


@jit
def _golden(x, y, w, lo, hi, t_lo, t_hi, a_max, c_max, e):
    """Golden-section search of the profile loss over t = log(b) in [t_lo, t_hi]."""
    g = 0.6180339887498949
    t1 = t_hi - g * (t_hi - t_lo)
    t2 = t_lo + g * (t_hi - t_lo)
    f1 = solve_ac(x, y, w, lo, hi, np.exp(t1), a_max, c_max, e)[2]
    f2 = solve_ac(x, y, w, lo, hi, np.exp(t2), a_max, c_max, e)[2]
    for _ in range(GOLDEN_ITERS):
        if f1 <= f2:
            t_hi = t2
            t2 = t1
            f2 = f1
            t1 = t_hi - g * (t_hi - t_lo)
            f1 = solve_ac(x, y, w, lo, hi, np.exp(t1), a_max, c_max, e)[2]
        else:
            t_lo = t1
            t1 = t2
            f1 = f2
            t2 = t_lo + g * (t_hi - t_lo)
            f2 = solve_ac(x, y, w, lo, hi, np.exp(t2), a_max, c_max, e)[2]
    if f1 <= f2:
        return t1, f1
    return t2, f2


@jit
def fit_one(x, y, w, lo, hi, b_lo, b_hi, a_max, c_max, grid):
    """Best (a, b, c, loss) of one curve (rows lo:hi) within the bounds.

    ``grid`` is scratch space of GRID_POINTS floats holding the profile loss.
    """
    n = grid.shape[0]
    e = np.empty(hi - lo)
    t_lo = np.log(b_lo)
    t_hi = np.log(b_hi)
    step = (t_hi - t_lo) / (n - 1)
    for k in range(n):
        grid[k] = solve_ac(x, y, w, lo, hi, np.exp(t_lo + k * step), a_max, c_max, e)[2]
    best_t = t_lo
    best_f = grid[0]
    for k in range(n):
        if grid[k] < best_f:
            best_f = grid[k]
            best_t = t_lo + k * step
    # refine the REFINE_MINIMA lowest local minima of the grid, each in its own bracket
    minima = np.empty(n, np.int64)
    m = 0
    for k in range(n):
        left = grid[k - 1] if k > 0 else np.inf
        right = grid[k + 1] if k < n - 1 else np.inf
        if grid[k] <= left and grid[k] <= right:
            minima[m] = k
            m += 1
    for r in range(min(m, REFINE_MINIMA)):
        j = r
        for q in range(r + 1, m):  # selection: next smallest minimum
            if grid[minima[q]] < grid[minima[j]]:
                j = q
        kbest = minima[j]
        minima[j] = minima[r]
        minima[r] = kbest
        a_t = t_lo + max(kbest - 1, 0) * step
        b_t = t_lo + min(kbest + 1, n - 1) * step
        t, f = _golden(x, y, w, lo, hi, a_t, b_t, a_max, c_max, e)
        if f < best_f:
            best_f = f
            best_t = t
    b = _clip(np.exp(best_t), b_lo, b_hi)  # exp(log(b_lo)) can round just below b_lo
    a, c, f = solve_ac(x, y, w, lo, hi, b, a_max, c_max, e)
    return a, b, c, f


@jit_parallel
def fit_curves(x, y, w, offsets, b_lo, b_hi, a_max, c_max, out):
    """Fit every curve k (rows offsets[k]:offsets[k+1]); out[k] = (a, b, c, loss)."""
    m = offsets.shape[0] - 1
    for k in prange(m):
        grid = np.empty(GRID_POINTS)
        a, b, c, f = fit_one(x, y, w, offsets[k], offsets[k + 1], b_lo, b_hi, a_max, c_max, grid)
        out[k, 0] = a
        out[k, 1] = b
        out[k, 2] = c
        out[k, 3] = f
    return out


@jit
def fit_curves_serial(x, y, w, offsets, b_lo, b_hi, a_max, c_max, out):
    """Single-threaded twin of :func:`fit_curves` (for benchmarks and tiny inputs)."""
    m = offsets.shape[0] - 1
    grid = np.empty(GRID_POINTS)
    for k in range(m):
        a, b, c, f = fit_one(x, y, w, offsets[k], offsets[k + 1], b_lo, b_hi, a_max, c_max, grid)
        out[k, 0] = a
        out[k, 1] = b
        out[k, 2] = c
        out[k, 3] = f
    return out

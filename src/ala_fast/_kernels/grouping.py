"""Small compiled helpers for grouping rows."""

from __future__ import annotations

import numpy as np

from .options import jit


@jit
def first_index(codes, n_groups):
    """first[g] = the first row whose code is g (codes in 0..n_groups-1)."""
    first = np.full(n_groups, -1, np.int64)
    found = 0
    for i in range(codes.shape[0]):
        g = codes[i]
        if first[g] < 0:
            first[g] = i
            found += 1
            if found == n_groups:
                break
    return first

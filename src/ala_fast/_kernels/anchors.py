"""The shape effect of a software stack (``learner.StackProfile``): a kernel-weighted median."""

from __future__ import annotations

import numpy as np

from .options import jit


@jit
def stack_median(log_ii, log_oo, log_i, log_o, weight, dev, order, prior, out):
    """``out[q, t]``: the lower weighted median of ``dev[:, t]`` and a pseudo-point at 0.

    Curve ``j`` weighs ``weight[j] * exp(-|log_i[j] - log_ii[q]| - |log_o[j] - log_oo[q]|)``
    for query ``q``, the pseudo-point ``prior``. The lower weighted median is the smallest
    value whose own weight and that of every smaller value reach half the total.
    ``order[t]`` sorts ``dev[:, t]`` ascending. When no deviation is positive, the
    pseudo-point comes last and answers if the running sum has not met half the total; the
    largest deviation answers if rounding leaves the sum a hair short of it at the end.
    """
    n = log_i.shape[0]
    kw = np.empty(n)
    for q in range(log_ii.shape[0]):
        total = prior
        for j in range(n):
            kw[j] = weight[j] * np.exp(-np.abs(log_i[j] - log_ii[q]) - np.abs(log_o[j] - log_oo[q]))
            total += kw[j]
        half = 0.5 * total
        for t in range(dev.shape[1]):
            cum = 0.0
            zero_in = False
            found = False
            value = 0.0
            for k in range(n):
                j = order[t, k]
                v = dev[j, t]
                if not zero_in and v > 0.0:  # the pseudo-point sorts before every positive value
                    zero_in = True
                    cum += prior
                    if cum >= half:
                        value, found = 0.0, True
                        break
                cum += kw[j]
                if cum >= half:
                    value, found = v, True
                    break
            if not found and n > 0 and zero_in:
                value = dev[order[t, n - 1], t]  # rounding left the total a hair short
            out[q, t] = value

"""Simulated annealing over fixed-size subsets of items with a precomputed distance matrix.

State: a subset S of size k out of m items (``member`` flags + ``chosen`` list).
Move: swap one random member of S with one random non-member (uniform choices).
Acceptance: Metropolis, accept if delta >= 0 or u < exp(delta / T) (we maximise).
Cooling: geometric, T_t = t0 * (t1 / t0) ** (t / (steps - 1)).
Random numbers: splitmix64 from an explicit seed (no global state), so the pure-Python
reference (tests/naive.py) replays the same sequence and reaches the same result.
The best state seen is returned, so the result is never worse than the start.

Objectives (``objective`` code; both maximised):
- HOLDOUT (0): "hard and diverse" hold-out sets:
  mean over s in S of min_{j not in S} D[s, j]  +  lam * mean over s in S of min_{s' in S, s' != s} D[s, s']
  (held-out items far from the training rest, and spread out among themselves).
- COVERAGE (1): "which k to benchmark next": minus the mean over candidates q of
  min(base[q], min_{s in S} D[q, s]), where base[q] is q's distance to what is already observed
  (rows of D are candidates, columns the items that can be chosen).
"""

from __future__ import annotations

import numpy as np

from .options import jit

HOLDOUT = 0
COVERAGE = 1


@jit
def splitmix64(state):
    """One step: returns (new_state, output)."""
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return state, z


@jit
def uniform(state):
    state, z = splitmix64(state)
    return state, float(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@jit
def objective_value(objective, dist, base, member, chosen, lam):
    k = chosen.shape[0]
    if objective == HOLDOUT:
        m = dist.shape[0]
        hard = 0.0
        div = 0.0
        for a in range(k):
            s = chosen[a]
            best_out = np.inf
            best_in = np.inf
            for j in range(m):
                d = dist[s, j]
                if member[j]:
                    if j != s and d < best_in:
                        best_in = d
                elif d < best_out:
                    best_out = d
            hard += best_out if best_out < np.inf else 0.0
            div += best_in if best_in < np.inf else 0.0
        return (hard + lam * div) / k
    # COVERAGE
    nq = dist.shape[0]
    total = 0.0
    for q in range(nq):
        best = base[q]
        for a in range(k):
            d = dist[q, chosen[a]]
            if d < best:
                best = d
        total += best
    return -total / nq


@jit
def anneal(objective, dist, base, start, steps, t0, t1, lam, seed):
    """Returns (best chosen indices, best value, start value, accepted moves)."""
    m = dist.shape[1]
    k = start.shape[0]
    chosen = start.copy()
    member = np.zeros(m, np.bool_)
    for a in range(k):
        member[chosen[a]] = True
    current = objective_value(objective, dist, base, member, chosen, lam)
    first = current
    best = current
    best_chosen = chosen.copy()
    state = np.uint64(seed)
    accepted = 0
    if k == 0 or k == m:
        return best_chosen, best, first, accepted
    for t in range(steps):
        temp = t0 * (t1 / t0) ** (t / max(steps - 1, 1))
        state, u = uniform(state)
        a = int(u * k)
        state, u = uniform(state)
        # the (int(u * (m - k)))-th non-member, in index order
        target = int(u * (m - k))
        j = -1
        seen = 0
        for c in range(m):
            if not member[c]:
                if seen == target:
                    j = c
                    break
                seen += 1
        old = chosen[a]
        member[old] = False
        member[j] = True
        chosen[a] = j
        value = objective_value(objective, dist, base, member, chosen, lam)
        delta = value - current
        state, u = uniform(state)
        if delta >= 0.0 or u < np.exp(delta / temp):
            current = value
            accepted += 1
            if value > best:
                best = value
                best_chosen[:] = chosen
        else:
            member[j] = False
            member[old] = True
            chosen[a] = old
    return best_chosen, best, first, accepted

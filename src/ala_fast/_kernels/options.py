"""Numba options, in one place.

- ``fastmath`` is always off: it assumes no NaN/inf and reorders sums, and we validate for
  NaN and compare against references to the last bit.
- The on-disk cache is on by default and off when ``ALA_FAST_NUMBA_CACHE=0`` (for instance on
  read-only installs or when debugging). No kernel here takes a function as an argument, so
  caching is safe for all of them, on one rule: the cache freezes module globals into the code
  and is invalidated only when the kernel's own file changes, so a kernel reads no constant
  imported from outside ``_kernels/`` (a layout that changes elsewhere would meet stale code).
- Nothing here changes global Numba settings.
"""

from __future__ import annotations

import os

from numba import njit

CACHE = os.environ.get("ALA_FAST_NUMBA_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")

_BASE = dict(cache=CACHE, nogil=True, fastmath=False, error_model="numpy", boundscheck=False)


def jit(*args, **overrides):
    """``numba.njit`` with the library's options (serial kernels)."""
    opts = {**_BASE, **overrides}
    if args and callable(args[0]):
        return njit(**opts)(args[0])
    return njit(*args, **opts)


def jit_parallel(fn):
    """``numba.njit`` with ``parallel=True`` for kernels with a ``prange`` loop."""
    return njit(**{**_BASE, "parallel": True})(fn)

"""Integer group codes for rows of an Arrow table (curves, configurations, folds)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def distinct(rows: list[tuple]) -> tuple[list[tuple], np.ndarray]:
    """Distinct tuples in order of first appearance and the index of each row's among them."""
    index: dict[tuple, int] = {}
    codes = np.empty(len(rows), np.int64)
    for i, r in enumerate(rows):
        codes[i] = index.setdefault(r, len(index))
    return list(index), codes


def _codes(col) -> tuple[np.ndarray, int]:
    """Hash-based integer codes of one column (first-appearance order) and their count."""
    enc = pc.dictionary_encode(col)
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.combine_chunks()
    return enc.indices.to_numpy(zero_copy_only=False).astype(np.int64), len(enc.dictionary)


def group_codes(table: pa.Table, columns: tuple[str, ...] | list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(codes, first_rows)``: ``codes[i]`` is the group of row i (0..G-1) and
    ``first_rows[g]`` the first row of group g. Groups are numbered in order of first appearance.

    Hash-based (Arrow dictionary encoding) per column, combined by mixed radix into one int64
    key that is encoded once more: linear time, no sort.
    """
    from ._kernels.grouping import first_index

    n = table.num_rows
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    key = np.zeros(n, np.int64)
    radix = 1
    for name in columns:
        codes, size = _codes(table.column(name))
        if radix > (2**62) // max(size, 1):  # would overflow: compress the key so far first
            key, radix = _codes(pa.array(key))
        key = key * size + codes
        radix *= size
    codes, groups = _codes(pa.array(key))
    return codes, first_index(codes, groups)


def segments(codes: np.ndarray, sort_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row order grouping rows by code (then by ``sort_key``) and the segment offsets."""
    order = np.lexsort((sort_key, codes))
    counts = np.bincount(codes, minlength=int(codes.max()) + 1 if codes.size else 0)
    offsets = np.zeros(counts.size + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return order, offsets

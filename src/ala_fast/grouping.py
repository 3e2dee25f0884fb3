"""Integer group codes for rows of an Arrow table (curves, configurations, folds)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def group_codes(table: pa.Table, columns: tuple[str, ...] | list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(codes, first_rows)``: ``codes[i]`` is the group of row i (0..G-1) and
    ``first_rows[g]`` the first row of group g. Groups are numbered in order of first appearance.
    """
    n = table.num_rows
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    parts = []
    for name in columns:
        col = table.column(name)
        if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
            parts.append(np.asarray(col.to_numpy(zero_copy_only=False)))
        else:
            enc = pc.dictionary_encode(col).combine_chunks()
            parts.append(enc.indices.to_numpy(zero_copy_only=False).astype(np.int64))
    stacked = np.stack([p.astype(np.float64) for p in parts], axis=1)
    _, first, inverse = np.unique(stacked, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    # renumber groups by first appearance so results follow the input order
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank[inverse].astype(np.int64), first[order].astype(np.int64)


def segments(codes: np.ndarray, sort_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row order grouping rows by code (then by ``sort_key``) and the segment offsets."""
    order = np.lexsort((sort_key, codes))
    counts = np.bincount(codes, minlength=int(codes.max()) + 1 if codes.size else 0)
    offsets = np.zeros(counts.size + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return order, offsets

"""Bucket segmentation of sorted int64 epoch-microsecond timestamps.

Every other kernel works on segments: the points (or child rows) of bucket ``j`` are
``bounds[j]:bounds[j + 1]`` and the bucket starts at ``starts[j]``. Buckets start at
``floor(t / width) * width`` (floor, so pre-1970 timestamps land in the right bucket).
"""

from __future__ import annotations

import numpy as np

from .jit import kernel, readonly


@kernel
def bucket_bounds(t, width, out_starts, out_bounds):
    """Fill the starts of the non-empty buckets of sorted ``t`` and the segment bounds.

    ``out_starts`` needs ``len(t)`` slots and ``out_bounds`` ``len(t) + 1``; returns the number
    of buckets. Divides only at bucket changes: inside a bucket a comparison suffices.
    """
    n = t.shape[0]
    out_bounds[0] = 0
    if n == 0:
        return 0
    start = (t[0] // width) * width
    end = start + width
    out_starts[0] = start
    count = 1
    for p in range(1, n):
        if t[p] >= end:
            start = (t[p] // width) * width
            end = start + width
            out_starts[count] = start
            out_bounds[count] = p
            count += 1
    out_bounds[count] = n
    return count


def bucket_bounds_numpy(t, width, out_starts, out_bounds) -> int:
    """:func:`bucket_bounds` in numpy, bit for bit (integers only), so the first downsample of a
    process on an empty kernel cache does not wait for this kernel to compile.

    The kernel's current bucket is always that of the largest timestamp seen so far (a new
    bucket starts only past the current one's end), which the running maximum gives for any
    input, sorted or not.
    """
    n = t.shape[0]
    out_bounds[0] = 0
    if n == 0:
        return 0
    starts = np.maximum.accumulate(t) // width * width
    change = np.flatnonzero(starts[1:] != starts[:-1]) + 1
    count = change.size + 1
    out_starts[0] = starts[0]
    out_starts[1:count] = starts[change]
    out_bounds[1:count] = change
    out_bounds[count] = n
    return count


bucket_bounds.use_reference(bucket_bounds_numpy)


def bucket_bounds_reference(t: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """numpy version of :func:`segment`, for tests."""
    if len(t) == 0:
        return np.empty(0, np.int64), np.zeros(1, np.int64)
    starts = (t // width) * width
    change = np.flatnonzero(np.diff(starts)) + 1
    bounds = np.concatenate([[0], change, [len(t)]]).astype(np.int64)
    return starts[bounds[:-1]], bounds


def segment(t: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(bucket starts, segment bounds) of sorted int64 timestamps ``t``."""
    t = readonly(t, np.int64)
    starts = np.empty(len(t), np.int64)
    bounds = np.empty(len(t) + 1, np.int64)
    count = bucket_bounds(t, np.int64(width), starts, bounds)
    return starts[:count], bounds[: count + 1]

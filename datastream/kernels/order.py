"""Order statistics and counting per bucket: exact median, and occurrences of coded values.

Neither composes across levels (a median of medians is not the median), so both run on raw
points for every level that needs them.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from .jit import kernel, readonly


@kernel
def select(a, m, k):
    """The k-th smallest of ``a[:m]``, reordering it so that everything before position k is no
    larger and everything after no smaller (Hoare/Wirth selection, median-of-three pivot: O(m)
    on average, and much cheaper to compile than numba's np.partition)."""
    lo = 0
    hi = m - 1
    while lo < hi:
        x, y, z = a[lo], a[(lo + hi) // 2], a[hi]
        pivot = max(min(x, y), min(max(x, y), z))
        i = lo
        j = hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return a[k]


@kernel
def bucket_median(x, valid, bounds, scratch, out):
    """Exact median of the valid values of each segment (mean of the two middle ones for an
    even count; NaN for none). ``scratch`` needs as many slots as the longest segment."""
    for j in range(bounds.shape[0] - 1):
        m = 0
        for p in range(bounds[j], bounds[j + 1]):
            if valid[p]:
                scratch[m] = x[p]
                m += 1
        if m == 0:
            out[j] = np.nan
            continue
        half = m // 2
        # np.int64(): a literal 0 from ``m = 0`` would make numba compile select a second time
        middle = select(scratch, np.int64(m), np.int64(half))
        # "+ 0.0" makes a zero median +0.0: which of -0.0 and 0.0 selection lands on
        # depends on its path, and the numpy twin sorts instead
        if m % 2 == 1:
            out[j] = middle + 0.0
        else:
            below = scratch[0]
            for p in range(1, half):
                below = max(below, scratch[p])
            # halving is exact in binary floating point, and this cannot overflow
            out[j] = 0.5 * below + 0.5 * middle + 0.0


@kernel
def count_codes(codes, bounds, counts, seen, out_bucket, out_code, out_count):
    """Occurrences of each code (>= 0; negative = no value) per segment, as triples
    (segment, code, count) by segment, codes in order of first occurrence. Returns the number
    of triples. ``counts`` (one zero per code; left zeroed) and ``seen`` (as long as the longest
    segment) are scratch space; the outputs need ``len(codes)`` slots."""
    k = 0
    for j in range(bounds.shape[0] - 1):
        m = 0
        for p in range(bounds[j], bounds[j + 1]):
            code = codes[p]
            if code < 0:
                continue
            if counts[code] == 0:
                seen[m] = code
                m += 1
            counts[code] += 1
        for i in range(m):
            code = seen[i]
            out_bucket[k] = j
            out_code[k] = code
            out_count[k] = counts[code]
            counts[code] = 0
            k += 1
    return k


# -- numpy twins (the kernels' bits, run until the kernels are loaded) -----------------------------


PAD_CELLS, PAD_SLACK = 4, 4096
"""The median twin sorts the rows of a padded grid (one row per segment, as wide as the longest)
while it holds at most ``PAD_CELLS`` cells per value plus ``PAD_SLACK``; beyond, one sort of all
the values keyed by segment then rank."""


def bucket_median_numpy(x, valid, bounds, scratch, out):
    """:func:`bucket_median` by sorting every segment's valid values at once (equal values
    have equal bits, zeros aside, which the kernel makes +0.0)."""
    size = len(bounds) - 1
    if size <= 0:
        return
    segment = np.repeat(np.arange(size), np.diff(bounds))
    keep = valid[bounds[0]:bounds[-1]]
    values, segment = x[bounds[0]:bounds[-1]][keep], segment[keep]
    m = np.bincount(segment, minlength=size)
    first = np.cumsum(m) - m
    values = _sorted_within(values, segment, m, first)
    half = m // 2
    odd, even = m % 2 == 1, (m > 0) & (m % 2 == 0)
    out[:] = np.nan
    out[odd] = values[(first + half)[odd]] + 0.0
    below, middle = values[(first + half - 1)[even]], values[(first + half)[even]]
    out[even] = 0.5 * below + 0.5 * middle + 0.0


def _sorted_within(values, segment, m, first):
    """``values`` (grouped by ``segment``: ``m[j]`` of them from ``first[j]``) sorted within
    each segment. numpy sorts one key of floats or integers an order of magnitude faster than
    ``lexsort`` sorts two, so: the rows of a grid, one per segment and padded with +inf, sorted
    in one call while the segments are of similar length; else one integer key of segment and
    rank."""
    count = len(values)
    if not count:
        return values
    width = int(m.max())
    if len(m) * width <= PAD_CELLS * count + PAD_SLACK:
        grid = np.full((len(m), width), np.inf)
        cells = (segment, np.arange(count) - first[segment])
        grid[cells] = values
        grid.sort(axis=1)
        return grid[cells]  # the first m[j] cells of row j: segment j's values, in order
    order = np.argsort(values)
    rank = np.empty(count, np.int64)
    rank[order] = np.arange(count)
    key = np.sort(segment.astype(np.int64) * count + rank)
    return values[order[key % count]]


def count_codes_numpy(codes, bounds, counts, seen, out_bucket, out_code, out_count):
    """:func:`count_codes` with ``np.unique`` over (segment, code) keys, in order of first
    occurrence (``counts`` stays zeroed; ``seen`` is not used)."""
    size = len(bounds) - 1
    if size <= 0:
        return 0
    segment = np.repeat(np.arange(size, dtype=np.int64), np.diff(bounds))
    here = codes[bounds[0]:bounds[-1]]
    present = here >= 0
    segment, here = segment[present], here[present]
    width = max(len(counts), 1)
    keys, first, found = np.unique(segment * width + here, return_index=True,
                                   return_counts=True)
    order = np.argsort(first, kind="stable")
    k = len(keys)
    out_bucket[:k] = keys[order] // width
    out_code[:k] = keys[order] % width
    out_count[:k] = found[order]
    return k


bucket_median.use_reference(bucket_median_numpy)
count_codes.use_reference(count_codes_numpy)


def _longest(bounds: np.ndarray) -> int:
    return int(np.diff(bounds).max()) if len(bounds) > 1 else 0


def medians(x: np.ndarray, valid: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Median per segment (NaN where no valid value)."""
    out = np.empty(len(bounds) - 1, np.float64)
    bucket_median(
        readonly(x, np.float64), readonly(valid, np.bool_), readonly(bounds, np.int64),
        np.empty(_longest(bounds), np.float64), out,
    )
    return out


def code_counts(
    codes: np.ndarray, bounds: np.ndarray, n_codes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(segment, code, count) triples of the non-negative ``codes`` of each segment, ordered by
    segment then code."""
    codes = readonly(codes, np.int64)
    buckets = np.empty(len(codes), np.int64)
    found = np.empty(len(codes), np.int64)
    counts = np.empty(len(codes), np.int64)
    k = count_codes(
        codes, readonly(bounds, np.int64), np.zeros(max(n_codes, 1), np.int64),
        np.empty(_longest(bounds), np.int64), buckets, found, counts,
    )
    # sorting here rather than in the kernel keeps numba's sort out of the compile
    order = np.lexsort((found[:k], buckets[:k]))
    return buckets[:k][order], found[:k][order], counts[:k][order]


# -- numpy references (tests) ------------------------------------------------------------------


def medians_reference(x, valid, bounds) -> np.ndarray:
    """np.median per segment."""
    return np.array(
        [np.median(x[a:b][valid[a:b]]) if valid[a:b].any() else np.nan
         for a, b in pairwise(bounds)],
        np.float64,
    )


def code_counts_reference(codes, bounds, n_codes):
    """np.unique per segment."""
    out = ([], [], [])
    for j, (a, b) in enumerate(pairwise(bounds)):
        seg = codes[a:b]
        values, counts = np.unique(seg[seg >= 0], return_counts=True)
        out[0].extend([j] * len(values))
        out[1].extend(values.tolist())
        out[2].extend(counts.tolist())
    return tuple(np.array(o, np.int64) for o in out)

"""Per-bucket partial state computed from raw points, one segment at a time.

Value state: count, sum, sum of squares, min, max, mean (stored as mean − min) and M2 = sum of
squared deviations. M2 is computed with the corrected two-pass formula inside each (cache-hot)
segment, so a standard deviation of values around 1e9 with spread 1 keeps full precision;
coarser levels merge M2 with Chan's formula (see combine.py). Time state: points, non-null
points and the mean of their offsets from the bucket start, first and last timestamp, and
statistics (in seconds) of the gaps between consecutive points. Undefined floats are NaN (null
at the Arrow boundary).
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from .jit import kernel, readonly

VALUE_STATE = ("c", "s", "q", "l", "u", "mu", "m2")
TIME_STATE = ("np", "tn", "tm", "ta", "tz", "ic", "isum", "il", "iu", "iq", "im2")
US = 1e6  # microseconds per second, as a float divisor (exactly rounded division)


@kernel
def value_partials(x, valid, bounds, c, s, q, lo, hi, mu, m2):
    """Value state of each segment over the points where ``valid`` is true.

    ``mu`` is the mean *minus the minimum*: a small number stored with full precision even when
    the values are huge (1e9 ± 1), so merged levels keep the accuracy of the raw two-pass M2.
    """
    for j in range(bounds.shape[0] - 1):
        a = bounds[j]
        b = bounds[j + 1]
        n = 0
        total = 0.0
        squares = 0.0
        low = np.inf
        high = -np.inf
        for p in range(a, b):
            if valid[p]:
                v = x[p]
                low = min(low, v)  # branch-free: min/max change often in short buckets
                high = max(high, v)
                n += 1
                total += v
                squares += v * v
        c[j] = n
        if n == 0:
            s[j] = q[j] = lo[j] = hi[j] = mu[j] = m2[j] = np.nan
            continue
        offset = total / n - low
        dev = 0.0
        dev2 = 0.0
        for p in range(a, b):
            if valid[p]:
                d = (x[p] - low) - offset
                dev += d
                dev2 += d * d
        s[j] = total
        q[j] = squares
        lo[j] = low
        hi[j] = high
        mu[j] = offset + dev / n
        m2[j] = max(dev2 - dev * dev / n, 0.0)


@kernel
def time_partials(t, nonnull, starts, bounds, np_, tn, tm, ta, tz, ic, isum, il, iu, iq, im2):
    """Time state of each segment; ``nonnull`` marks points that carry a value."""
    for j in range(bounds.shape[0] - 1):
        a = bounds[j]
        b = bounds[j + 1]
        np_[j] = b - a
        ta[j] = t[a]
        tz[j] = t[b - 1]
        gaps = b - a - 1
        ic[j] = gaps
        # one pass: non-null offsets, and the gaps in integer microseconds (exact)
        k = 0
        offsets = 0
        total = 0
        low = t[b - 1] - t[a]
        high = 0
        squares = 0.0
        for p in range(a, b):
            if nonnull[p]:
                k += 1
                offsets += t[p] - starts[j]
            if p > a:
                g = t[p] - t[p - 1]
                total += g
                low = min(low, g)
                high = max(high, g)
                squares += float(g) * float(g)
        tn[j] = k
        tm[j] = offsets / k if k > 0 else np.nan
        if gaps == 0:
            isum[j] = il[j] = iu[j] = iq[j] = im2[j] = np.nan
            continue
        mean = total / gaps
        dev = 0.0
        dev2 = 0.0
        for p in range(a, b - 1):
            d = (t[p + 1] - t[p]) - mean
            dev += d
            dev2 += d * d
        isum[j] = total / US
        il[j] = low / US
        iu[j] = high / US
        iq[j] = squares / (US * US)
        im2[j] = max(dev2 - dev * dev / gaps, 0.0) / (US * US)


def _alloc(names: tuple[str, ...], size: int, ints: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {n: np.empty(size, np.int64 if n in ints else np.float64) for n in names}


def raw_value_state(x: np.ndarray, valid: np.ndarray, bounds: np.ndarray) -> dict[str, np.ndarray]:
    """Value state per segment (``VALUE_STATE`` arrays)."""
    out = _alloc(VALUE_STATE, len(bounds) - 1, ("c",))
    value_partials(
        readonly(x, np.float64), readonly(valid, np.bool_), readonly(bounds, np.int64),
        *out.values(),
    )
    return out


def raw_time_state(
    t: np.ndarray, nonnull: np.ndarray, starts: np.ndarray, bounds: np.ndarray
) -> dict[str, np.ndarray]:
    """Time state per segment (``TIME_STATE`` arrays)."""
    out = _alloc(TIME_STATE, len(starts), ("np", "tn", "ta", "tz", "ic"))
    time_partials(
        readonly(t, np.int64), readonly(nonnull, np.bool_), readonly(starts, np.int64),
        readonly(bounds, np.int64), *out.values(),
    )
    return out


# -- numpy references (tests) ------------------------------------------------------------------


def raw_value_state_reference(x, valid, bounds) -> dict[str, np.ndarray]:
    """Same as :func:`raw_value_state`, written with numpy reductions per segment."""
    rows = []
    for a, b in pairwise(bounds):
        v = x[a:b][valid[a:b]]
        if len(v) == 0:
            rows.append((0,) + (np.nan,) * 6)
            continue
        offsets = v - v.min()
        rows.append(
            (len(v), v.sum(), (v * v).sum(), v.min(), v.max(), offsets.mean(),
             offsets.var() * len(v))
        )
    return _columns(VALUE_STATE, rows, ("c",))


def raw_time_state_reference(t, nonnull, starts, bounds) -> dict[str, np.ndarray]:
    """Same as :func:`raw_time_state`, written with numpy reductions per segment."""
    rows = []
    for start, a, b in zip(starts, bounds[:-1], bounds[1:]):
        seg = t[a:b]
        kept = seg[nonnull[a:b]] - start
        tm = kept.mean() if len(kept) else np.nan
        gaps = np.diff(seg) / US
        if len(gaps):
            stats = (gaps.sum(), gaps.min(), gaps.max(), (gaps**2).sum(), gaps.var() * len(gaps))
        else:
            stats = (np.nan,) * 5
        rows.append((b - a, len(kept), tm, seg[0], seg[-1], len(gaps)) + stats)
    return _columns(TIME_STATE, rows, ("np", "tn", "ta", "tz", "ic"))


def _columns(names, rows, ints) -> dict[str, np.ndarray]:
    cols = list(zip(*rows)) if rows else [()] * len(names)
    return {
        n: np.array(col, dtype=np.int64 if n in ints else np.float64) for n, col in zip(names, cols)
    }

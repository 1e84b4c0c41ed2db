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

from . import lockstep
from .jit import reduction
from .state import INT_COLUMNS, TIME_STATE, VALUE_STATE

US = 1e6  # microseconds per second, as a float divisor (exactly rounded division)


@reduction(inputs={"x": np.float64, "valid": np.bool_}, writes=VALUE_STATE)
def value_partials(x, valid, bounds, out_c, out_s, out_q, out_l, out_u, out_mu, out_m2):
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
        out_c[j] = n
        if n == 0:
            out_s[j] = out_q[j] = out_l[j] = out_u[j] = out_mu[j] = out_m2[j] = np.nan
            continue
        offset = total / n - low
        if not np.isfinite(offset):  # the sum overflowed (values near 1.8e308): mean anew
            offset = 0.0
            for p in range(a, b):
                if valid[p]:
                    offset += (x[p] - low) / n
        dev = 0.0
        dev2 = 0.0
        for p in range(a, b):
            if valid[p]:
                d = (x[p] - low) - offset
                dev += d
                dev2 += d * d
        out_s[j] = total
        out_q[j] = squares
        out_l[j] = low
        out_u[j] = high
        out_mu[j] = offset + dev / n
        out_m2[j] = max(dev2 - dev * dev / n, 0.0)


@reduction(inputs={"t": np.int64, "nonnull": np.bool_, "starts": np.int64}, writes=TIME_STATE)
def time_partials(
    t, nonnull, starts, bounds,
    out_np, out_tn, out_tm, out_ta, out_tz, out_ic, out_isum, out_il, out_iu, out_iq, out_im2,
):
    """Time state of each segment; ``nonnull`` marks points that carry a value."""
    for j in range(bounds.shape[0] - 1):
        a = bounds[j]
        b = bounds[j + 1]
        out_np[j] = b - a
        out_ta[j] = t[a]
        out_tz[j] = t[b - 1]
        gaps = b - a - 1
        out_ic[j] = gaps
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
        out_tn[j] = k
        out_tm[j] = offsets / k if k > 0 else np.nan
        if gaps == 0:
            out_isum[j] = out_il[j] = out_iu[j] = out_iq[j] = out_im2[j] = np.nan
            continue
        mean = total / gaps
        dev = 0.0
        dev2 = 0.0
        for p in range(a, b - 1):
            d = (t[p + 1] - t[p]) - mean
            dev += d
            dev2 += d * d
        out_isum[j] = total / US
        out_il[j] = low / US
        out_iu[j] = high / US
        out_iq[j] = squares / (US * US)
        out_im2[j] = max(dev2 - dev * dev / gaps, 0.0) / (US * US)


# -- numpy twins (the kernels' bits, run while they compile; see kernels.lockstep) ------------


def value_partials_numpy(x, valid, bounds, out_c, out_s, out_q, out_l, out_u, out_mu, out_m2):
    """:func:`value_partials` with array operations, one element of every segment at a time."""
    walk = list(lockstep.steps(bounds))
    size = len(bounds) - 1
    n = np.zeros(size, np.int64)
    total, squares = np.zeros(size), np.zeros(size)
    low, high = np.full(size, np.inf), np.full(size, -np.inf)
    kept = []
    for segments, positions in walk:
        valid_here = valid[positions]
        segments, positions = segments[valid_here], positions[valid_here]
        kept.append((segments, positions))
        v = x[positions]
        low[segments] = lockstep.first_min(low[segments], v)
        high[segments] = lockstep.first_max(high[segments], v)
        n[segments] += 1
        total[segments] += v
        squares[segments] += v * v
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = total / n - low
        overflowed = ~np.isfinite(offset)
        if overflowed.any():  # as the kernel: the mean offset from the values themselves
            anew = np.zeros(size)
            for segments, positions in kept:
                d = (x[positions] - low[segments]) / n[segments]
                anew[segments] += np.where(overflowed[segments], d, 0.0)
            offset = np.where(overflowed, anew, offset)
        dev, dev2 = np.zeros(size), np.zeros(size)
        for segments, positions in kept:
            d = (x[positions] - low[segments]) - offset[segments]
            dev[segments] += d
            dev2[segments] += d * d
        lockstep.write_value_state(
            n, total, squares, low, high, offset + dev / n,
            lockstep.first_max(dev2 - dev * dev / n, 0.0),
            out_c, out_s, out_q, out_l, out_u, out_mu, out_m2)


def time_partials_numpy(
    t, nonnull, starts, bounds,
    out_np, out_tn, out_tm, out_ta, out_tz, out_ic, out_isum, out_il, out_iu, out_iq, out_im2,
):
    """:func:`time_partials` with array operations, one point of every segment at a time."""
    walk = list(lockstep.steps(bounds))
    size = len(bounds) - 1
    a, b = bounds[:-1], bounds[1:]
    out_np[:] = b - a
    out_ta[:] = t[a]
    out_tz[:] = t[b - 1]
    gaps = b - a - 1
    out_ic[:] = gaps
    k = np.zeros(size, np.int64)
    offsets = np.zeros(size, np.int64)
    total = np.zeros(size, np.int64)
    low = t[b - 1] - t[a]
    high = np.zeros(size, np.int64)
    squares = np.zeros(size)
    for segments, positions in walk:
        here = nonnull[positions]
        k[segments[here]] += 1
        offsets[segments[here]] += t[positions[here]] - starts[segments[here]]
        later = positions > a[segments]
        segments, positions = segments[later], positions[later]
        g = t[positions] - t[positions - 1]
        total[segments] += g
        low[segments] = lockstep.first_min(low[segments], g)
        high[segments] = lockstep.first_max(high[segments], g)
        squares[segments] += g.astype(np.float64) * g.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out_tn[:] = k
        out_tm[:] = np.where(k > 0, offsets / k, np.nan)
        mean = total / gaps
        dev, dev2 = np.zeros(size), np.zeros(size)
        for segments, positions in walk:
            inside = positions < b[segments] - 1
            segments, positions = segments[inside], positions[inside]
            d = (t[positions + 1] - t[positions]) - mean[segments]
            dev[segments] += d
            dev2[segments] += d * d
        none = gaps == 0
        out_isum[:] = np.where(none, np.nan, total / US)
        out_il[:] = np.where(none, np.nan, low / US)
        out_iu[:] = np.where(none, np.nan, high / US)
        out_iq[:] = np.where(none, np.nan, squares / (US * US))
        out_im2[:] = np.where(none, np.nan,
                              lockstep.first_max(dev2 - dev * dev / gaps, 0.0) / (US * US))


value_partials.use_reference(value_partials_numpy)
time_partials.use_reference(time_partials_numpy)


def raw_value_state(x: np.ndarray, valid: np.ndarray, bounds: np.ndarray) -> dict[str, np.ndarray]:
    """Value state per segment (``VALUE_STATE`` arrays)."""
    return value_partials(bounds, x=x, valid=valid)


def raw_time_state(
    t: np.ndarray, nonnull: np.ndarray, starts: np.ndarray, bounds: np.ndarray
) -> dict[str, np.ndarray]:
    """Time state per segment (``TIME_STATE`` arrays)."""
    return time_partials(bounds, t=t, nonnull=nonnull, starts=starts)


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
    return _columns(VALUE_STATE, rows)


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
    return _columns(TIME_STATE, rows)


def _columns(names, rows) -> dict[str, np.ndarray]:
    cols = list(zip(*rows)) if rows else [()] * len(names)
    return {
        n: np.array(col, dtype=np.int64 if n in INT_COLUMNS else np.float64)
        for n, col in zip(names, cols)
    }

"""Merge child partial rows (sorted by bucket start) into the rows of a coarser level.

The same kernels merge rows of equal width (e.g. two halves of one bucket computed in separate
flushes), which is what makes incremental downsampling equal to a single pass. Means and M2
merge with Chan's parallel formula; intervals compose exactly: the children's own gaps plus the
gap between the last point of one child and the first point of the next.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from . import lockstep
from .jit import kernel, reduction
from .partials import US
from .state import INT_COLUMNS, TIME_STATE, VALUE_STATE


@kernel
def chan_merge(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
    """(mean, M2) of the union of two sets given their counts, means and M2 (Chan et al.)."""
    n = n_a + n_b
    delta = mean_b - mean_a
    return mean_a + delta * (n_b / n), m2_a + m2_b + delta * delta * (n_a * (n_b / n))


@reduction(reads=VALUE_STATE, writes=VALUE_STATE)
def combine_values(
    c, s, q, l_, u, mu, m2, bounds, out_c, out_s, out_q, out_l, out_u, out_mu, out_m2
):
    """Value state of each segment of child rows; children with count 0 contribute nothing.

    A child's mean is ``l + mu`` (``l`` read as 0 when a pre-aggregated item lacks it). The
    child means enter Chan's formula as offsets from the merged minimum, which differ from the
    child offsets by an exact subtraction, so no precision is lost to the magnitude of the
    values. Min/max skip NaN; sums propagate it.
    """
    for j in range(bounds.shape[0] - 1):
        n = 0
        total = 0.0
        squares = 0.0
        low = np.nan
        high = np.nan
        for k in range(bounds[j], bounds[j + 1]):
            if c[k] == 0:
                continue
            n += c[k]
            total += s[k]
            squares += q[k]
            if l_[k] < low or np.isnan(low):
                low = l_[k]
            if u[k] > high or np.isnan(high):
                high = u[k]
        out_c[j] = n
        if n == 0:
            out_s[j] = out_q[j] = out_l[j] = out_u[j] = out_mu[j] = out_m2[j] = np.nan
            continue
        base = 0.0 if np.isnan(low) else low
        seen = 0
        mean = 0.0
        dev2 = 0.0
        for k in range(bounds[j], bounds[j + 1]):
            ck = c[k]
            if ck == 0:
                continue
            offset = ((0.0 if np.isnan(l_[k]) else l_[k]) - base) + mu[k]
            if seen == 0:
                mean = offset
                dev2 = m2[k]
            else:
                mean, dev2 = chan_merge(float(seen), mean, dev2, float(ck), offset, m2[k])
            seen += ck
        out_s[j] = total
        out_q[j] = squares
        out_l[j] = low
        out_u[j] = high
        out_mu[j] = mean
        out_m2[j] = dev2


@reduction(inputs={"starts": np.int64}, reads=("t", *TIME_STATE), writes=TIME_STATE)
def combine_times(
    t, np_, tn, tm, ta, tz, ic, isum, il, iu, iq, im2, starts, bounds,
    out_np, out_tn, out_tm, out_ta, out_tz, out_ic, out_isum, out_il, out_iu, out_iq, out_im2,
):
    """Time state of each segment of child rows (children without points are skipped)."""
    for j in range(bounds.shape[0] - 1):
        points = 0
        kept = 0
        weighted = 0.0
        first = 0
        last = 0
        gaps = 0
        total = 0.0
        low = np.inf
        high = -np.inf
        squares = 0.0
        mean = 0.0
        dev2 = 0.0
        for k in range(bounds[j], bounds[j + 1]):
            if np_[k] == 0:
                continue
            if tn[k] > 0:
                kept += tn[k]
                weighted += tn[k] * ((t[k] - starts[j]) + tm[k])
            if points == 0:
                first = ta[k]
            else:
                # the gap bridging the previous child and this one: a set of one interval
                g = (ta[k] - last) / US
                total += g
                squares += g * g
                low = min(low, g)
                high = max(high, g)
                if gaps == 0:
                    mean = g
                    dev2 = 0.0
                else:
                    mean, dev2 = chan_merge(float(gaps), mean, dev2, 1.0, g, 0.0)
                gaps += 1
            if ic[k] > 0:
                total += isum[k]
                squares += iq[k]
                low = min(low, il[k])
                high = max(high, iu[k])
                if gaps == 0:
                    mean = isum[k] / ic[k]
                    dev2 = im2[k]
                else:
                    mean, dev2 = chan_merge(
                        float(gaps), mean, dev2, float(ic[k]), isum[k] / ic[k], im2[k]
                    )
                gaps += ic[k]
            points += np_[k]
            last = tz[k]
        out_np[j] = points
        out_tn[j] = kept
        out_tm[j] = weighted / kept if kept > 0 else np.nan
        out_ta[j] = first
        out_tz[j] = last
        out_ic[j] = gaps
        if gaps == 0:
            out_isum[j] = out_il[j] = out_iu[j] = out_iq[j] = out_im2[j] = np.nan
        else:
            out_isum[j] = total
            out_il[j] = low
            out_iu[j] = high
            out_iq[j] = squares
            out_im2[j] = dev2


# -- numpy twins (the kernels' bits, run while they compile; see kernels.lockstep) ------------


def chan_merge_numpy(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
    """:func:`chan_merge` on arrays."""
    n = n_a + n_b
    delta = mean_b - mean_a
    return mean_a + delta * (n_b / n), m2_a + m2_b + delta * delta * (n_a * (n_b / n))


def combine_values_numpy(
    c, s, q, l_, u, mu, m2, bounds, out_c, out_s, out_q, out_l, out_u, out_mu, out_m2
):
    """:func:`combine_values` with array operations, one child of every segment at a time."""
    walk = []
    for segments, children in lockstep.steps(bounds):
        counted = c[children] != 0
        walk.append((segments[counted], children[counted]))
    size = len(bounds) - 1
    n = np.zeros(size, np.int64)
    total, squares = np.zeros(size), np.zeros(size)
    low, high = np.full(size, np.nan), np.full(size, np.nan)
    for segments, children in walk:
        n[segments] += c[children]
        total[segments] += s[children]
        squares[segments] += q[children]
        lows, highs = low[segments], high[segments]
        low[segments] = np.where((l_[children] < lows) | np.isnan(lows), l_[children], lows)
        high[segments] = np.where((u[children] > highs) | np.isnan(highs), u[children], highs)
    base = np.where(np.isnan(low), 0.0, low)
    seen = np.zeros(size, np.int64)
    mean, dev2 = np.zeros(size), np.zeros(size)
    for segments, children in walk:
        ck = c[children]
        offset = (np.where(np.isnan(l_[children]), 0.0, l_[children]) - base[segments]) + \
            mu[children]
        first = seen[segments] == 0
        merged_mean, merged_m2 = chan_merge_numpy(
            seen[segments].astype(np.float64), mean[segments], dev2[segments],
            ck.astype(np.float64), offset, m2[children])
        mean[segments] = np.where(first, offset, merged_mean)
        dev2[segments] = np.where(first, m2[children], merged_m2)
        seen[segments] += ck
    lockstep.write_value_state(n, total, squares, low, high, mean, dev2,
                               out_c, out_s, out_q, out_l, out_u, out_mu, out_m2)


def combine_times_numpy(
    t, np_, tn, tm, ta, tz, ic, isum, il, iu, iq, im2, starts, bounds,
    out_np, out_tn, out_tm, out_ta, out_tz, out_ic, out_isum, out_il, out_iu, out_iq, out_im2,
):
    """:func:`combine_times` with array operations, one child of every segment at a time."""
    walk = []
    for segments, children in lockstep.steps(bounds):
        counted = np_[children] != 0
        walk.append((segments[counted], children[counted]))
    size = len(bounds) - 1
    points, kept, gaps = (np.zeros(size, np.int64) for _ in range(3))
    first, last = np.zeros(size, np.int64), np.zeros(size, np.int64)
    weighted, total, squares = np.zeros(size), np.zeros(size), np.zeros(size)
    low, high = np.full(size, np.inf), np.full(size, -np.inf)
    mean, dev2 = np.zeros(size), np.zeros(size)
    with np.errstate(divide="ignore", invalid="ignore"):
        for segments, k in walk:
            has = tn[k] > 0
            held = segments[has]
            kept[held] += tn[k][has]
            weighted[held] += tn[k][has] * ((t[k][has] - starts[held]) + tm[k][has])
            opening = points[segments] == 0
            first[segments[opening]] = ta[k][opening]
            # the gap bridging the previous child and this one: a set of one interval
            bridged, kb = segments[~opening], k[~opening]
            g = (ta[kb] - last[bridged]) / US
            total[bridged] += g
            squares[bridged] += g * g
            low[bridged] = lockstep.first_min(low[bridged], g)
            high[bridged] = lockstep.first_max(high[bridged], g)
            alone = gaps[bridged] == 0
            merged_mean, merged_m2 = chan_merge_numpy(
                gaps[bridged].astype(np.float64), mean[bridged], dev2[bridged], 1.0, g, 0.0)
            mean[bridged] = np.where(alone, g, merged_mean)
            dev2[bridged] = np.where(alone, 0.0, merged_m2)
            gaps[bridged] += 1
            inner = ic[k] > 0
            own, ko = segments[inner], k[inner]
            total[own] += isum[ko]
            squares[own] += iq[ko]
            low[own] = lockstep.first_min(low[own], il[ko])
            high[own] = lockstep.first_max(high[own], iu[ko])
            alone = gaps[own] == 0
            merged_mean, merged_m2 = chan_merge_numpy(
                gaps[own].astype(np.float64), mean[own], dev2[own],
                ic[ko].astype(np.float64), isum[ko] / ic[ko], im2[ko])
            mean[own] = np.where(alone, isum[ko] / ic[ko], merged_mean)
            dev2[own] = np.where(alone, im2[ko], merged_m2)
            gaps[own] += ic[ko]
            points[segments] += np_[k]
            last[segments] = tz[k]
        out_np[:] = points
        out_tn[:] = kept
        out_tm[:] = np.where(kept > 0, weighted / kept, np.nan)
    out_ta[:] = first
    out_tz[:] = last
    out_ic[:] = gaps
    none = gaps == 0
    out_isum[:] = np.where(none, np.nan, total)
    out_il[:] = np.where(none, np.nan, low)
    out_iu[:] = np.where(none, np.nan, high)
    out_iq[:] = np.where(none, np.nan, squares)
    out_im2[:] = np.where(none, np.nan, dev2)


combine_values.use_reference(combine_values_numpy)
combine_times.use_reference(combine_times_numpy)


def merge_value_state(child: dict[str, np.ndarray], bounds: np.ndarray) -> dict[str, np.ndarray]:
    """Value state per segment of child rows given as ``VALUE_STATE`` arrays."""
    return combine_values(bounds, child)


def merge_time_state(
    child_t: np.ndarray, child: dict[str, np.ndarray], starts: np.ndarray, bounds: np.ndarray
) -> dict[str, np.ndarray]:
    """Time state per segment of child rows (bucket starts ``child_t``) into ``starts``."""
    return combine_times(bounds, {**child, "t": child_t}, starts=starts)


# -- numpy references (tests) ------------------------------------------------------------------


def merge_value_state_reference(child, bounds) -> dict[str, np.ndarray]:
    """Merge by expanding nothing: sums of sums, min of mins, and the textbook pooled M2."""
    out = {n: [] for n in VALUE_STATE}
    for a, b in pairwise(bounds):
        sl = slice(a, b)
        keep = child["c"][sl] > 0
        c = child["c"][sl][keep]
        n = int(c.sum())
        out["c"].append(n)
        if n == 0:
            for name in VALUE_STATE[1:]:
                out[name].append(np.nan)
            continue
        low = np.nanmin(child["l"][sl][keep])
        base = 0.0 if np.isnan(low) else low
        mu = np.nan_to_num(child["l"][sl][keep]) - base + child["mu"][sl][keep]
        mean = (c * mu).sum() / n
        out["s"].append(child["s"][sl][keep].sum())
        out["q"].append(child["q"][sl][keep].sum())
        out["l"].append(low)
        out["u"].append(np.nanmax(child["u"][sl][keep]))
        out["mu"].append(mean)
        out["m2"].append((child["m2"][sl][keep] + c * (mu - mean) ** 2).sum())
    return {n: np.array(v, np.int64 if n in INT_COLUMNS else np.float64) for n, v in out.items()}


def merge_time_state_reference(child_t, child, starts, bounds) -> dict[str, np.ndarray]:
    """Merge by listing every interval: child intervals are represented by their statistics,
    bridges between children are listed explicitly; the pooled M2 formula then applies."""
    out = {n: [] for n in TIME_STATE}
    for start, a, b in zip(starts, bounds[:-1], bounds[1:]):
        sl = slice(a, b)
        keep = child["np"][sl] > 0
        ta, tz = child["ta"][sl][keep], child["tz"][sl][keep]
        tn, tm = child["tn"][sl][keep], child["tm"][sl][keep]
        offsets = child_t[sl][keep] - start
        out["np"].append(int(child["np"][sl][keep].sum()))
        out["tn"].append(int(tn.sum()))
        has = tn > 0
        out["tm"].append((tn[has] * (offsets[has] + tm[has])).sum() / tn.sum() if has.any()
                         else np.nan)
        out["ta"].append(ta[0] if len(ta) else 0)
        out["tz"].append(tz[-1] if len(tz) else 0)
        bridges = (ta[1:] - tz[:-1]) / US
        ic = child["ic"][sl][keep]
        sets = ic > 0
        counts = np.concatenate([ic[sets], np.ones(len(bridges), np.int64)])
        sums = np.concatenate([child["isum"][sl][keep][sets], bridges])
        m2s = np.concatenate([child["im2"][sl][keep][sets], np.zeros(len(bridges))])
        n = int(counts.sum())
        out["ic"].append(n)
        if n == 0:
            for name in ("isum", "il", "iu", "iq", "im2"):
                out[name].append(np.nan)
            continue
        means = sums / counts
        mean = sums.sum() / n
        out["isum"].append(sums.sum())
        out["il"].append(min(np.min(child["il"][sl][keep][sets], initial=np.inf),
                             np.min(bridges, initial=np.inf)))
        out["iu"].append(max(np.max(child["iu"][sl][keep][sets], initial=-np.inf),
                             np.max(bridges, initial=-np.inf)))
        out["iq"].append(child["iq"][sl][keep][sets].sum() + (bridges**2).sum())
        out["im2"].append((m2s + counts * (means - mean) ** 2).sum())
    return {n: np.array(v, np.int64 if n in INT_COLUMNS else np.float64) for n, v in out.items()}

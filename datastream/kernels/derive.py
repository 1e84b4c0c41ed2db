"""Derive operators as kernels over time-ordered input points (behaviour §7).

Each kernel walks the merged input of one derived stream once, carrying the operator state in
and out explicitly (previous point, last emitted bucket), so the same kernel serves a live batch
and a full replay. Outputs go to preallocated arrays; the return value says how many were used.
The operator declarations (``datastream.engine.operator_specs``) say which kernel an operator
runs and how large its state vector is.

Beside each kernel is a numpy reference written with whole-array operations (tests compare the
two, and check that splitting a batch in two with the carried state equals one pass). They give
the kernels' bits, so an adapter with the kernel's signature (``<kernel>_numpy``) runs while the
kernel is not compiled or loaded (``jit.Kernel.use_reference``).
"""

from __future__ import annotations

import numpy as np

from .jit import kernel


@kernel
def _emit(out_t, out_v, out_valid, count, t, value, valid):
    """Write one output point at ``count``; returns the next free index."""
    out_t[count] = t
    out_v[count] = value
    out_valid[count] = valid
    return count + 1


@kernel
def derivative(t, v, valid, state, out_t, out_v, out_valid):
    """(v1 - v0) / (t1 - t0 in s) for consecutive non-null points; a null emits null and
    resets. ``state`` = [has_prev, prev_t, prev_v, zero_dt_count] (float64), updated in place.
    Zero time steps emit nothing (counted for a warning) and move the base to the new point."""
    count = 0
    has_prev, prev_t, prev_v = state[0] != 0.0, state[1], state[2]
    for i in range(t.shape[0]):
        if not valid[i]:
            count = _emit(out_t, out_v, out_valid, count, t[i], np.nan, False)
            has_prev = False
            continue
        if has_prev:
            dt = (t[i] - prev_t) / 1e6
            if dt == 0.0:
                state[3] += 1.0
            else:
                count = _emit(out_t, out_v, out_valid, count, t[i], (v[i] - prev_v) / dt, True)
        has_prev, prev_t, prev_v = True, float(t[i]), v[i]
    state[0], state[1], state[2] = 1.0 if has_prev else 0.0, prev_t, prev_v
    return count


@kernel
def counter_reset(t, v, valid, state, out_t):
    """Timestamps where a non-null value is lower than the previous non-null value.
    ``state`` = [has_prev, prev_v]."""
    count = 0
    has_prev, prev_v = state[0] != 0.0, state[1]
    for i in range(t.shape[0]):
        if valid[i]:
            if has_prev and v[i] < prev_v:
                out_t[count] = t[i]
                count += 1
            has_prev, prev_v = True, v[i]
    state[0], state[1] = 1.0 if has_prev else 0.0, prev_v
    return count


@kernel
def counter_derivative(t, source, v, valid, max_value, state, out_t, out_v, out_valid):
    """Rate of a wrapping counter. ``source`` 0 = reset input (``v`` != 0 means reset),
    1 = counter input. A decrease wraps as max_value - v0 + v1 (max_value < 0: no wrap, the
    point emits nothing and is counted for a warning); a null on either input emits null and
    forgets the previous point, as a truthy reset does.
    ``state`` = [has_prev, prev_t, prev_v, no_wrap_count, zero_dt_count]."""
    count = 0
    has_prev, prev_t, prev_v = state[0] != 0.0, state[1], state[2]
    for i in range(t.shape[0]):
        if not valid[i]:
            count = _emit(out_t, out_v, out_valid, count, t[i], np.nan, False)
            has_prev = False
        elif source[i] == 0:
            has_prev = has_prev and v[i] == 0.0
        else:
            if has_prev:
                dt = (t[i] - prev_t) / 1e6
                delta = v[i] - prev_v
                if delta < 0.0 and max_value < 0.0:
                    state[3] += 1.0
                elif dt == 0.0:
                    state[4] += 1.0
                else:
                    if delta < 0.0:
                        delta = max_value - prev_v + v[i]
                    count = _emit(out_t, out_v, out_valid, count, t[i], delta / dt, True)
            has_prev, prev_t, prev_v = True, float(t[i]), v[i]
    state[0], state[1], state[2] = 1.0 if has_prev else 0.0, prev_t, prev_v
    return count


@kernel
def bucket_sum(bucket, source, v, valid, sources, last_emitted, out_t, out_v, out_valid):
    """Align sources by bucket: once every source has a point in a bucket, emit the sum of the
    non-null values among each source's first point there (null when all are null). Buckets at
    or before ``last_emitted`` are ignored; an incomplete bucket is dropped when a later one
    starts (inputs are final up to the watermark, so it can no longer complete).
    Returns (outputs, new last_emitted)."""
    count = 0
    seen = np.zeros(sources, dtype=np.bool_)
    total, any_valid, present = 0.0, False, 0
    current = last_emitted
    for i in range(bucket.shape[0]):
        b = bucket[i]
        if b <= last_emitted or (b == current and seen[source[i]]):
            continue
        if b != current:
            seen[:] = False
            total, any_valid, present, current = 0.0, False, 0, b
        seen[source[i]] = True
        present += 1
        if valid[i]:
            total += v[i]
            any_valid = True
        if present == sources:
            value = total if any_valid else np.nan
            count = _emit(out_t, out_v, out_valid, count, b, value, any_valid)
            last_emitted = b
    return count, last_emitted


# -- numpy references (tests) ------------------------------------------------------------------
# Each takes the kernel's inputs and a copy of its carried state and returns
# (out_t, out_v, out_valid, state after); nulls are NaN in out_v.


def _outputs(t, v, valid, keep) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return t[keep].astype(np.int64), np.where(valid, v, np.nan)[keep], valid[keep]


def derivative_reference(t, v, valid, state):
    """Same as :func:`derivative`: a point's base is the point just before it when that one
    is non-null (a null forgets the base), the carried point before the first one."""
    state = np.array(state, np.float64)
    if not len(t):
        return _outputs(t, v, valid, valid) + (state,)
    has_prev = np.concatenate([[state[0] != 0.0], valid[:-1]]) & valid
    prev_t = np.concatenate([[state[1]], t[:-1].astype(np.float64)])
    prev_v = np.concatenate([[state[2]], v[:-1]])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        dt = (t - prev_t) / 1e6
        rate = (v - prev_v) / dt
    zero = has_prev & (dt == 0.0)
    emitted = has_prev & ~zero
    out = _outputs(t, rate, emitted, ~valid | emitted)
    state[3] += zero.sum()
    state[0] = float(valid[-1])
    if valid.any():
        last = np.flatnonzero(valid)[-1]
        state[1], state[2] = float(t[last]), v[last]
    return out + (state,)


def counter_reset_reference(t, v, valid, state):
    """Same as :func:`counter_reset`: compare the non-null values with the ones before them."""
    state = np.array(state, np.float64)
    values, times = v[valid], t[valid]
    has_prev = np.concatenate([[state[0] != 0.0], np.ones(len(values), np.bool_)])[:-1]
    previous = np.concatenate([[state[1]], values])[:-1]
    resets = has_prev & (values < previous)
    if len(values):
        state[0], state[1] = 1.0, values[-1]
    out_t = times[resets].astype(np.int64)
    return out_t, np.ones(len(out_t)), np.ones(len(out_t), np.bool_), state


def counter_derivative_reference(t, source, v, valid, max_value, state):
    """Same as :func:`counter_derivative`: a data point's base is the data point before it,
    unless a null (on either input) or a truthy reset lies between them (counted with a
    cumulative sum)."""
    state = np.array(state, np.float64)
    data = valid & (source == 1)
    breaks = np.cumsum(~valid | ((source == 0) & (v != 0.0)))
    at = np.flatnonzero(data)
    base = np.concatenate([[-1], at[:-1]])[:len(at)]  # -1: the carried point
    breaks_at_base = np.where(base >= 0, breaks[np.maximum(base, 0)], 0)
    has_prev = (breaks[at] == breaks_at_base) & ((base >= 0) | (state[0] != 0.0))
    prev_t = np.where(base >= 0, t[np.maximum(base, 0)].astype(np.float64), state[1])
    prev_v = np.where(base >= 0, v[np.maximum(base, 0)], state[2])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        dt = (t[at] - prev_t) / 1e6
        delta = v[at] - prev_v
        no_wrap = has_prev & (delta < 0.0) & (max_value < 0.0)
        zero = has_prev & ~no_wrap & (dt == 0.0)
        delta = np.where(delta < 0.0, max_value - prev_v + v[at], delta)
        rate = np.full(len(t), np.nan)
        rate[at] = delta / dt
    emitted = np.zeros(len(t), np.bool_)
    emitted[at] = has_prev & ~no_wrap & ~zero
    out = _outputs(t, rate, emitted, ~valid | emitted)
    state[3] += no_wrap.sum()
    state[4] += zero.sum()
    if len(at):
        state[1], state[2] = float(t[at[-1]]), v[at[-1]]
        state[0] = float(breaks[-1] == breaks[at[-1]])
    elif len(t):
        state[0] = float(state[0] != 0.0 and breaks[-1] == 0)
    return out + (state,)


def bucket_sum_reference(bucket, source, v, valid, sources, last_emitted):
    """Same as :func:`bucket_sum` (bucket sorted): the first point of each (bucket, source)
    after ``last_emitted``, summed per bucket where all sources are present.
    Returns (out_t, out_v, out_valid, new last_emitted)."""
    later = np.flatnonzero(bucket > last_emitted)
    _, first = np.unique(np.stack([bucket[later], source[later]]), axis=1, return_index=True)
    chosen = later[np.sort(first)]
    starts, present = np.unique(bucket[chosen], return_counts=True)
    complete = starts[present == sources]
    in_complete = chosen[np.isin(bucket[chosen], complete)]
    row = np.searchsorted(complete, bucket[in_complete])
    kept = valid[in_complete]
    totals = np.zeros(len(complete))
    np.add.at(totals, row[kept], v[in_complete][kept])
    any_valid = np.bincount(row[kept], minlength=len(complete)) > 0
    last = complete[-1] if len(complete) else last_emitted
    return (complete.astype(np.int64), np.where(any_valid, totals, np.nan), any_valid,
            int(last))


# -- the references with the kernels' signatures (run while the kernels compile) ----------------


def _written(outputs: tuple, columns: tuple) -> int:
    count = len(columns[0])
    for target, column in zip(outputs, columns):
        target[:count] = column
    return count


def derivative_numpy(t, v, valid, state, out_t, out_v, out_valid):
    """:func:`derivative` through :func:`derivative_reference`."""
    *columns, after = derivative_reference(t, v, valid, state)
    state[:] = after
    return _written((out_t, out_v, out_valid), tuple(columns))


def counter_reset_numpy(t, v, valid, state, out_t):
    """:func:`counter_reset` through :func:`counter_reset_reference`."""
    times, _, _, after = counter_reset_reference(t, v, valid, state)
    state[:] = after
    return _written((out_t,), (times,))


def counter_derivative_numpy(t, source, v, valid, max_value, state, out_t, out_v, out_valid):
    """:func:`counter_derivative` through :func:`counter_derivative_reference`."""
    *columns, after = counter_derivative_reference(t, source, v, valid, max_value, state)
    state[:] = after
    return _written((out_t, out_v, out_valid), tuple(columns))


def bucket_sum_numpy(bucket, source, v, valid, sources, last_emitted, out_t, out_v, out_valid):
    """:func:`bucket_sum` through :func:`bucket_sum_reference` (buckets sorted)."""
    if not np.any(bucket > last_emitted):
        return 0, int(last_emitted)
    *columns, last = bucket_sum_reference(bucket, source, v, valid, sources, last_emitted)
    return _written((out_t, out_v, out_valid), tuple(columns)), last


derivative.use_reference(derivative_numpy)
counter_reset.use_reference(counter_reset_numpy)
counter_derivative.use_reference(counter_derivative_numpy)
bucket_sum.use_reference(bucket_sum_numpy)

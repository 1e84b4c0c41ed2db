"""Derive operators as kernels over time-ordered input points.

Each kernel walks the merged input of one derived stream once, carrying the operator state in
and out explicitly (previous point, last emitted bucket), so the same kernel serves a live batch
and a full replay. Outputs go to preallocated arrays; the return value says how many were used.

"""

from __future__ import annotations

import numpy as np

from .jit import kernel


@kernel
def derivative(t, v, valid, state, out_t, out_v, out_valid):
    """(v1 - v0) / (t1 - t0 in s) for consecutive non-null points; a null emits null and
    resets. ``state`` = [has_prev, prev_t, prev_v, zero_dt_count] (float64), updated in place.
    Zero time steps emit nothing (counted for a warning) and move the base to the new point."""
    count = 0
    has_prev, prev_t, prev_v = state[0] != 0.0, state[1], state[2]
    for index in range(t.shape[0]):
        if not valid[index]:
            out_t[count] = t[index]
            out_valid[count] = False
            out_v[count] = np.nan
            count += 1
            has_prev = False
            continue
        if has_prev:
            dt = (t[index] - prev_t) / 1e6
            if dt == 0.0:
                state[3] += 1.0
            else:
                out_t[count] = t[index]
                out_v[count] = (v[index] - prev_v) / dt
                out_valid[count] = True
                count += 1
        has_prev, prev_t, prev_v = True, float(t[index]), v[index]
    state[0], state[1], state[2] = 1.0 if has_prev else 0.0, prev_t, prev_v
    return count


@kernel
def counter_reset(t, v, valid, state, out_t):
    """Timestamps where a non-null value is lower than the previous non-null value.
    ``state`` = [has_prev, prev_v]."""
    count = 0
    has_prev, prev_v = state[0] != 0.0, state[1]
    for index in range(t.shape[0]):
        if not valid[index]:
            continue
        if has_prev and v[index] < prev_v:
            out_t[count] = t[index]
            count += 1
        has_prev, prev_v = True, v[index]
    state[0], state[1] = 1.0 if has_prev else 0.0, prev_v
    return count


@kernel
def counter_derivative(t, source, v, valid, max_value, state, out_t, out_v, out_valid):
    """Rate of a wrapping counter. ``source`` 0 = reset input (``v`` != 0 means reset),
    1 = counter input. A decrease wraps as max_value - v0 + v1 (max_value < 0: no wrap, the
    point emits nothing and is counted for a warning); a null on either input emits null.
    ``state`` = [has_prev, prev_t, prev_v, no_wrap_count, zero_dt_count]."""
    count = 0
    has_prev, prev_t, prev_v = state[0] != 0.0, state[1], state[2]
    for index in range(t.shape[0]):
        if not valid[index]:
            out_t[count] = t[index]
            out_valid[count] = False
            out_v[count] = np.nan
            count += 1
            if source[index] == 1:
                has_prev = False
            continue
        if source[index] == 0:
            if v[index] != 0.0:
                has_prev = False
            continue
        if has_prev:
            dt = (t[index] - prev_t) / 1e6
            delta = v[index] - prev_v
            emit = True
            if delta < 0.0:
                if max_value < 0.0:
                    state[3] += 1.0
                    emit = False
                else:
                    delta = max_value - prev_v + v[index]
            if emit and dt == 0.0:
                state[4] += 1.0
                emit = False
            if emit:
                out_t[count] = t[index]
                out_v[count] = delta / dt
                out_valid[count] = True
                count += 1
        has_prev, prev_t, prev_v = True, float(t[index]), v[index]
    state[0], state[1], state[2] = 1.0 if has_prev else 0.0, prev_t, prev_v
    return count


@kernel
def bucket_sum(bucket, source, v, valid, sources, last_emitted, out_t, out_v, out_valid):
    """Align sources by bucket: once every source has a point in a bucket, emit the sum of the
    non-null values among each source's first point there (null when all are null). Buckets at
    or before ``last_emitted`` are ignored; an incomplete bucket is dropped when a later one
    starts (inputs are final up to the watermark, so it can no longer complete).
    Returns (outputs, new last_emitted, index of the first point of a still-open bucket)."""
    count = 0
    seen = np.zeros(sources, dtype=np.bool_)
    total = 0.0
    any_valid = False
    present = 0
    current = last_emitted
    open_from = 0
    started = False
    for index in range(bucket.shape[0]):
        b = bucket[index]
        if b <= last_emitted:
            open_from = index + 1
            continue
        if not started or b != current:
            seen[:] = False
            total, any_valid, present = 0.0, False, 0
            current, started, open_from = b, True, index
        s = source[index]
        if seen[s]:
            continue
        seen[s] = True
        present += 1
        if valid[index]:
            total += v[index]
            any_valid = True
        if present == sources:
            out_t[count] = b
            out_v[count] = total if any_valid else np.nan
            out_valid[count] = any_valid
            count += 1
            last_emitted = b
            open_from = index + 1
    return count, last_emitted, open_from

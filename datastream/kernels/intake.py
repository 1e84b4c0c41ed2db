"""The bulk append's usual columns (int64 µs timestamps, float64 values) in one pass.

``append_arrays`` must copy what it buffers (the caller may reuse its arrays) and check it: the
span of the timestamps, whether they ever decrease, whether every value is finite. Done with
numpy that is eight passes over the columns and two temporary arrays per call; here it is one
pass that copies and checks together.
"""

from __future__ import annotations

import numpy as np

from .jit import kernel


@kernel
def copy_checked(t, x, t_out, x_out):
    """Copy ``t`` and ``x`` (at least one row) into the outputs; return the lowest and highest
    time, the position of the first time below its predecessor (0: none) and how many values
    are not finite (NaN or infinite)."""
    low = t[0]
    high = t[0]
    fall = 0
    bad = 0
    previous = t[0]
    for i in range(t.shape[0]):
        ti = t[i]
        t_out[i] = ti
        low = min(low, ti)
        high = max(high, ti)
        if ti < previous and fall == 0:
            fall = i
        previous = ti
        xi = x[i]
        x_out[i] = xi
        if not np.isfinite(xi):
            bad += 1
    return low, high, fall, bad


def copy_checked_numpy(t, x, t_out, x_out):
    """:func:`copy_checked` with array operations (its twin while it compiles)."""
    t_out[:] = t
    x_out[:] = x
    falls = np.flatnonzero(t[1:] < t[:-1])
    fall = int(falls[0]) + 1 if falls.size else 0
    return int(t.min()), int(t.max()), fall, int(t.size - np.count_nonzero(np.isfinite(x)))


copy_checked.use_reference(copy_checked_numpy)

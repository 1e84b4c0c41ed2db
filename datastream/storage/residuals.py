"""What the codec stores for a predicted level column, in one numba pass per prediction.

:mod:`datastream.storage.predictors` computes a prediction with numpy: a dozen whole-array
operations and as many temporaries, which is most of the time a level chunk took to encode
(~1 ms for a 16k-row chunk, and ~0.3 ms for rating every candidate on the 256-row sample,
mostly per-call overhead). These kernels compute the same predictions value by value, with the
same IEEE operations in the same order (no fusing, no reassociation: numba does neither
without ``fastmath``), so the bits are identical; the decoder keeps the numpy functions, and
``tests/storage/test_residuals.py`` holds both to the same bits.

Each kernel writes the zigzagged integers the codec packs into its ``out`` arrays and returns
their bitwise OR (the width to pack them at) and, when ``rate`` is true, the codec's size
estimate of them (:func:`shuffled_bits` of their bit lengths, bits per value), otherwise 0.0.

* ulp kernels (``PREDICTED``) take ``(x, inputs..., [scale], out, rate)`` and return
  ``(bits_or, cost)``: ``out`` = zigzag of the bits of ``x`` minus the bits of the prediction.
* ratio kernels (``RATIO``) take ``(x, inputs..., [scale], numerators, ulps, rate)`` and return
  ``(numerators_or, ulps_or, cost)``: the integer numerator minus its prediction, and the ulps
  from ``numerator / divisor`` back to ``x``.

Inputs are read-only arrays (one compiled signature per kernel, as the codec passes them).
"""

from __future__ import annotations

import numpy as np

from ..kernels.jit import kernel
from ..kernels.transforms import POW10, V_LIMIT, _bits, _zigzag, shuffled_bits

# |N| below 2**53: integers that a float64 holds exactly. Beyond, products are rounded.
INT_LIMIT = float(2**53)


# -- shared steps --------------------------------------------------------------------------------


@kernel
def _ulps(x_bits, guess_bits, out, rate):
    """``out`` = zigzag(x_bits - guess_bits) (``guess_bits`` may be ``out``); (OR, cost)."""
    n = x_bits.shape[0]
    lengths = np.zeros(65, np.int64)
    acc = 0
    for i in range(n):
        z = _zigzag(x_bits[i] - guess_bits[i])
        out[i] = z
        acc |= z
        if rate:
            lengths[_bits(z)] += 1
    return acc, shuffled_bits(lengths, n) if rate else 0.0


@kernel
def _units(x, scale):
    """``rint(x * 10**scale)``, 0.0 unless below 2**52 (``predictors._decimal_units``)."""
    v = np.rint(x * POW10[scale])
    if not abs(v) < V_LIMIT:
        return 0.0
    return v


@kernel
def _as_int(x):
    """A float holding an integer as int64, 0 beyond 2**53 (``predictors._as_int``)."""
    if abs(x) < INT_LIMIT:
        return np.int64(x)
    return np.int64(0)


@kernel
def _ratio(x, guess, divisor, numerators, ulps, rate):
    """The ratio codec's two columns from the predicted numerators and the divisors:
    ``predictors.numerators`` and ``predictors.quotients``, then the differences."""
    n = x.shape[0]
    x_bits = x.view(np.int64)
    back = ulps.view(np.float64)
    numerator_lengths = np.zeros(65, np.int64)
    ulp_lengths = np.zeros(65, np.int64)
    numerators_or = 0
    ulps_or = 0
    for i in range(n):
        scaled = np.rint(x[i] * divisor[i])
        numerator = np.int64(scaled) if abs(scaled) < V_LIMIT else guess[i]
        quotient = numerator / divisor[i]
        back[i] = 0.0 if np.isnan(quotient) else quotient
        z = _zigzag(numerator - guess[i])
        numerators[i] = z
        numerators_or |= z
        u = _zigzag(x_bits[i] - ulps[i])
        ulps[i] = u
        ulps_or |= u
        if rate:
            numerator_lengths[_bits(z)] += 1
            ulp_lengths[_bits(u)] += 1
    cost = 0.0
    if rate:
        cost = shuffled_bits(numerator_lengths, n) + shuffled_bits(ulp_lengths, n)
    return numerators_or, ulps_or, cost


# -- ulp predictions (``predictors.PREDICTORS``) ------------------------------------------------


@kernel
def same(x, y, out, rate):
    """x predicted as y (both int64)."""
    return _ulps(x, y, out, rate)


@kernel
def mean_offset(x, s, c, low, out, rate):
    guess = out.view(np.float64)
    for i in range(x.shape[0]):
        g = s[i] / c[i] - low[i]
        guess[i] = 0.0 if np.isnan(g) else g
    return _ulps(x.view(np.int64), out, out, rate)


@kernel
def squares(x, m2, s, c, out, rate):
    guess = out.view(np.float64)
    for i in range(x.shape[0]):
        g = m2[i] + s[i] * s[i] / c[i]
        guess[i] = 0.0 if np.isnan(g) else g
    return _ulps(x.view(np.int64), out, out, rate)


@kernel
def spread(x, q, s, c, out, rate):
    guess = out.view(np.float64)
    for i in range(x.shape[0]):
        g = q[i] - s[i] * s[i] / c[i]
        guess[i] = 0.0 if np.isnan(g) else g
    return _ulps(x.view(np.int64), out, out, rate)


@kernel
def intervals(x, points, out, rate):
    for i in range(x.shape[0]):
        out[i] = points[i] - 1
    return _ulps(x, out, out, rate)


@kernel
def span_seconds(x, last, first, out, rate):
    guess = out.view(np.float64)
    for i in range(x.shape[0]):
        g = (last[i] - first[i]) / 1e6
        guess[i] = 0.0 if np.isnan(g) else g
    return _ulps(x.view(np.int64), out, out, rate)


@kernel
def exact_spread(x, q, s, c, scale, out, rate):
    guess = out.view(np.float64)
    divisor_scale = POW10[2 * scale]
    for i in range(x.shape[0]):
        total = _units(s[i], scale)
        count = np.float64(c[i])
        g = (_units(q[i], 2 * scale) * count - total * total) / (count * divisor_scale)
        guess[i] = 0.0 if np.isnan(g) else g
    return _ulps(x.view(np.int64), out, out, rate)


# -- ratio predictions (``predictors.SCALED``) --------------------------------------------------


@kernel
def offsets_ratio(x, t, ta, tz, tn, numerators, ulps, rate):
    n = x.shape[0]
    guess = np.empty(n, np.int64)
    divisor = np.empty(n, np.float64)
    for i in range(n):
        middle = np.float64(ta[i] - t[i]) + np.float64(tz[i] - t[i])
        count = np.float64(tn[i])
        guess[i] = _as_int(np.rint(middle * count * 0.5))
        divisor[i] = count
    return _ratio(x, guess, divisor, numerators, ulps, rate)


@kernel
def squares_ratio(x, s, c, scale, numerators, ulps, rate):
    n = x.shape[0]
    guess = np.empty(n, np.int64)
    divisor = np.full(n, POW10[2 * scale])
    for i in range(n):
        total = _units(s[i], scale)
        count = np.float64(max(c[i], 1))
        guess[i] = _as_int(np.rint(total * total / count))
    return _ratio(x, guess, divisor, numerators, ulps, rate)

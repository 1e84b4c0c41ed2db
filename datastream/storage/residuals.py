"""What the codec stores for a predicted level column, in one numba pass per prediction.

:mod:`datastream.storage.predictors` computes a prediction with numpy: a dozen whole-array
operations and as many temporaries, which was most of the time a level chunk took to encode
(~1 ms for a 16k-row chunk, and ~0.3 ms for rating every candidate on the 256-row sample,
mostly per-call overhead). These kernels compute the same predictions value by value, with the
same IEEE operations in the same order (no fusing, no reassociation: numba does neither
without ``fastmath``), so the bits are identical; the decoder keeps the numpy functions, and
``tests/storage/test_residuals.py`` holds both to the same bits.

Two kernels, each computing the prediction its ``op`` names (``Predictor.op``): loading a
cached kernel costs a process milliseconds and compiling one a second, whatever its size. The
predictor's inputs come as float slots ``f0, f1`` and integer slots ``i0..i3``, filled in the
order of ``Predictor.inputs`` by type (unused slots are empty arrays). Both write the
zigzagged integers the codec packs and return their bitwise OR (the width to pack them at)
and, when ``rate`` is true, the codec's size estimate of them (:func:`shuffled_bits` of their
bit lengths, bits per value), else 0.0:

* :func:`ulp_residuals` (``PREDICTED``): ``out`` = the bits of ``x`` (viewed as int64) minus
  those of the prediction; returns ``(bits_or, cost)``.
* :func:`ratio_residuals` (``RATIO``): the integer numerator minus its prediction, and the
  ulps from ``numerator / divisor`` back to ``x``; returns ``(numerators_or, ulps_or, cost)``.

Inputs are read-only arrays, as the codec passes them (one compiled signature per kernel).

Each kernel has a numpy reference (:func:`ulp_residuals_numpy`, :func:`ratio_residuals_numpy`)
built from the predictions of :mod:`.predictors` and the numpy transforms, with the same
arguments and results: a process runs it while the kernel compiles (``jit.Kernel.use_reference``).
"""

from __future__ import annotations

import numpy as np

from ..kernels.jit import kernel
from ..kernels.transforms import (
    POW10,
    V_LIMIT,
    _bits,
    _histograms,
    _zigzag,
    _zigzag_in_place,
    shuffled_bits,
    shuffled_bits_numpy,
)

# |N| below 2**53: integers that a float64 holds exactly. Beyond, products are rounded.
INT_LIMIT = float(2**53)

# ulp predictions (the numpy twin in ``predictors``), with the slots they read
SAME = 0  # i0
LESS_ONE = 1  # i0 - 1 (``_intervals``)
MEAN_OFFSET = 2  # f0 / i0 - f1
SQUARES = 3  # f0 + f1² / i0
SPREAD = 4  # f0 - f1² / i0
SPAN_SECONDS = 5  # (i0 - i1) / 1e6
EXACT_SPREAD = 6  # (Q i0 - S²) / (i0 10**2k), Q and S the decimal units of f0 and f1

# ratio predictions: (numerator, divisor)
OFFSETS_RATIO = 0  # (rint((i1 - i0 + i2 - i0) i3 / 2), i3)
SQUARES_RATIO = 1  # (rint(S² / max(i0, 1)), 10**2k), S the decimal units of f0


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
def _no_nan(x):
    """A computed NaN becomes 0.0: its bits are not portable."""
    return 0.0 if np.isnan(x) else x


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


# -- the kernels ---------------------------------------------------------------------------------


@kernel
def ulp_residuals(op, x_bits, f0, f1, i0, i1, scale, out, rate):
    """Prediction ``op`` of the column whose bits are ``x_bits``; see the module docstring."""
    if op == SAME:
        return _ulps(x_bits, i0, out, rate)
    n = x_bits.shape[0]
    guess = out.view(np.float64)
    if op == LESS_ONE:
        for i in range(n):
            out[i] = i0[i] - 1
    elif op == MEAN_OFFSET:
        for i in range(n):
            guess[i] = _no_nan(f0[i] / i0[i] - f1[i])
    elif op == SQUARES:
        for i in range(n):
            guess[i] = _no_nan(f0[i] + f1[i] * f1[i] / i0[i])
    elif op == SPREAD:
        for i in range(n):
            guess[i] = _no_nan(f0[i] - f1[i] * f1[i] / i0[i])
    elif op == SPAN_SECONDS:
        for i in range(n):
            guess[i] = _no_nan((i0[i] - i1[i]) / 1e6)
    else:
        divisor_scale = POW10[2 * scale]
        for i in range(n):
            total = _units(f1[i], scale)
            count = np.float64(i0[i])
            guess[i] = _no_nan((_units(f0[i], 2 * scale) * count - total * total)
                               / (count * divisor_scale))
    return _ulps(x_bits, out, out, rate)


@kernel
def ratio_residuals(op, x, f0, i0, i1, i2, i3, scale, numerators, ulps, rate):
    """Ratio prediction ``op`` of the float column ``x``; see the module docstring."""
    n = x.shape[0]
    guess = np.empty(n, np.int64)
    if op == OFFSETS_RATIO:
        divisor = np.empty(n, np.float64)
        for i in range(n):
            middle = np.float64(i1[i] - i0[i]) + np.float64(i2[i] - i0[i])
            count = np.float64(i3[i])
            guess[i] = _as_int(np.rint(middle * count * 0.5))
            divisor[i] = count
    else:
        divisor = np.full(n, POW10[2 * scale])
        for i in range(n):
            total = _units(f0[i], scale)
            guess[i] = _as_int(np.rint(total * total / np.float64(max(i0[i], 1))))
    return _ratio(x, guess, divisor, numerators, ulps, rate)


@kernel
def _ratio(x, guess, divisor, numerators, ulps, rate):
    """The two stored columns from the predicted numerators and the divisors
    (``predictors.numerators`` and ``predictors.quotients``, then the differences)."""
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
        back[i] = _no_nan(numerator / divisor[i])
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


# -- numpy references ----------------------------------------------------------------------------
# ``predictors`` imports this module (for the ops), hence the imports inside the functions.


def ulp_residuals_numpy(op, x_bits, f0, f1, i0, i1, scale, out, rate) -> tuple[int, float]:
    """:func:`ulp_residuals` through ``predictors``: its function for ``op``, given the slots
    in the order of the predictor's inputs."""
    from . import predictors

    predict = {p.op: p.predict for p in predictors.PREDICTORS.values()}[op]
    with np.errstate(all="ignore"):
        if op in (SAME, LESS_ONE):
            guess = predict(i0)
        else:
            if op == MEAN_OFFSET:
                guess = predict(f0, i0, f1)
            elif op == SPAN_SECONDS:
                guess = predict(i0, i1)
            elif op == EXACT_SPREAD:
                guess = predict(f0, f1, i0, scale)
            else:  # SQUARES, SPREAD
                guess = predict(f0, f1, i0)
            guess[np.isnan(guess)] = 0.0
            guess = guess.view(np.int64)
        np.subtract(x_bits, guess, out=out)
    _zigzag_in_place(out)
    return int(np.bitwise_or.reduce(out)), _cost(out, rate)


def ratio_residuals_numpy(op, x, f0, i0, i1, i2, i3, scale, numerators, ulps, rate
                          ) -> tuple[int, int, float]:
    """:func:`ratio_residuals` through ``predictors``."""
    from . import predictors

    predict = {p.op: p.predict for p in predictors.SCALED.values()}[op]
    with np.errstate(all="ignore"):
        if op == OFFSETS_RATIO:
            guess, divisor = predict(i0, i1, i2, i3)
        else:
            guess, divisor = predict(f0, i0, scale)
    numerator = predictors.numerators(x, divisor, guess)
    back = predictors.quotients(numerator, divisor)
    with np.errstate(over="ignore"):
        np.subtract(numerator, guess, out=numerators)
        np.subtract(x.view(np.int64), back.view(np.int64), out=ulps)
    _zigzag_in_place(numerators)
    _zigzag_in_place(ulps)
    return (int(np.bitwise_or.reduce(numerators)), int(np.bitwise_or.reduce(ulps)),
            _cost(numerators, rate) + _cost(ulps, rate))


def _cost(z: np.ndarray, rate: bool) -> float:
    """:func:`shuffled_bits` of zigzagged ``z`` when ``rate``, else 0.0 (as the kernels)."""
    if not rate:
        return 0.0
    return float(shuffled_bits_numpy(_histograms(z[None, :]), z.shape[0])[0])


ulp_residuals.use_reference(ulp_residuals_numpy)
ratio_residuals.use_reference(ratio_residuals_numpy)

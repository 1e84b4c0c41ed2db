"""Integer and decimal transforms of chunk columns (used by ``datastream.storage.codec``).

The chunk codec compresses with blosc2, whose bit shuffle only pays off when neighbouring values
share their high bits. These kernels turn columns into small unsigned integers first:

* ``int_encode``: order-0/1/2 differences (value, delta, delta of delta), zigzagged so that
  small negative numbers are small too. Sorted timestamps become near-constant deltas.
* ``decimal_encode``: a float ``x`` as ``v = rint(x * 10**k)`` (zigzagged deltas) plus the
  distance in units in the last place from ``v / 10**k`` back to ``x`` (zigzagged). Sensor
  values rounded to k decimals have no residual at all; sums and means of such values (level
  rows) have residuals of a few ulps; any other float, NaN and infinities included, is still
  exact, only dearer.

All integer arithmetic wraps modulo 2**64, so every transform is a bijection whatever the values.
Plain numpy references of the transforms live beside the kernels, for the tests.
"""

from __future__ import annotations

import numpy as np
from numba.cpython.unsafe.numbers import leading_zeros

from .jit import kernel

# Decimal scales 10**k: exact as float64 (up to k = 22), so v / 10**k is correctly rounded and
# equals the double nearest to the decimal number, which is what rounding to k decimals gave.
MAX_SCALE = 15
POW10 = np.array([10.0**k for k in range(MAX_SCALE + 1)])
# |v| stays below 2**52, so float(v) is exact; larger values go through the residual alone.
V_LIMIT = float(2**52)
_LOW63 = np.int64(0x7FFF_FFFF_FFFF_FFFF)


@kernel
def _zigzag(d):
    return (d << 1) ^ (d >> 63)


@kernel
def _unzigzag(z):
    return ((z >> 1) & _LOW63) ^ -(z & 1)


@kernel
def _bits(z):
    """Bit length of a zigzagged value (viewed unsigned)."""
    return 64 - leading_zeros(np.uint64(z))


@kernel
def _scaled(x, p, prev):
    """``rint(x * p)`` as a float holding an exact integer; ``prev`` when that would not be
    exact (NaN, infinite, too large). Zero is +0.0: the decoder only sees the integer, so a
    -0.0 must reach it through the residual."""
    v = np.rint(x * p)
    if not abs(v) < V_LIMIT:
        return prev
    return v if v != 0.0 else 0.0


@kernel
def shuffled_bits(lengths, n):
    """Estimated bits per value of ``n`` integers after bit shuffling and LZ4, from the
    histogram of their bit lengths. Bit plane b is set in a fraction f of the values (those
    longer than b), each such bit being random; LZ4 only skips the bytes of a plane that are
    all zero, which happens with probability (1 - f/2)**8. Summing the bit lengths instead
    would rate a column of mostly short values with a few long ones far too cheap."""
    if n == 0:
        return 0.0
    total = 0.0
    longer = n - lengths[0]
    for b in range(64):
        if longer == 0:
            break
        total += 1.0 - (1.0 - 0.5 * longer / n) ** 8
        longer -= lengths[b + 1]
    return total


@kernel
def int_costs(x):
    """Estimated bits per value of the order 0, 1 and 2 transforms of ``x``, to pick one
    without compressing three times."""
    lengths = np.zeros((3, 65), np.int64)
    prev = 0
    prev_d = 0
    for i in range(x.shape[0]):
        v = x[i]
        d = v - prev
        lengths[0, _bits(_zigzag(v))] += 1
        lengths[1, _bits(_zigzag(d))] += 1
        lengths[2, _bits(_zigzag(d - prev_d))] += 1
        prev = v
        prev_d = d
    n = x.shape[0]
    return shuffled_bits(lengths[0], n), shuffled_bits(lengths[1], n), shuffled_bits(lengths[2], n)


@kernel
def int_encode(x, order, out):
    """``out`` = zigzag of the order-``order`` differences of ``x`` (earlier values count as 0).
    Returns the bitwise OR of ``out[order:]`` (zero when the first ``order`` values describe the
    whole column, else its bit length is the narrowest width of the rest), and the minimum and
    maximum of ``x`` (a chunk's time range comes for free)."""
    prev = 0
    prev_d = 0
    acc = 0
    low = x[0] if x.shape[0] else 0
    high = low
    for i in range(x.shape[0]):
        v = x[i]
        low = min(low, v)
        high = max(high, v)
        if order == 0:
            z = _zigzag(v)
        elif order == 1:
            z = _zigzag(v - prev)
        else:
            d = v - prev
            z = _zigzag(d - prev_d)
            prev_d = d
        prev = v
        out[i] = z
        if i >= order:
            acc |= z
    return acc, low, high


@kernel
def int_decode(z, order, out):
    """Inverse of :func:`int_encode`."""
    prev = 0
    prev_d = 0
    for i in range(z.shape[0]):
        d = _unzigzag(z[i])
        if order == 0:
            out[i] = d
        elif order == 1:
            prev += d
            out[i] = prev
        else:
            prev_d += d
            prev += prev_d
            out[i] = prev


@kernel
def decimal_costs(x, lo, hi, costs):
    """Estimated bits per value of :func:`decimal_encode` at scales ``lo..hi`` (into
    ``costs[k]``). Below the values' number of decimals the cost stays flat (each digit moves
    ~3.3 bits from the residuals to the deltas), at it the residuals vanish, and past it each
    digit adds ~3.3 bits: so the search stops once the cost exceeds the best by two digits'
    worth. Returns the last scale tried."""
    bits = x.view(np.int64)
    scratch = np.empty(1, np.float64)
    scratch_bits = scratch.view(np.int64)
    best = np.inf
    n = x.shape[0]
    for k in range(lo, hi + 1):
        p = POW10[k]
        digits = np.zeros(65, np.int64)
        residuals = np.zeros(65, np.int64)
        prev = 0.0
        for i in range(n):
            v = _scaled(x[i], p, prev)
            scratch[0] = v / p
            digits[_bits(_zigzag(np.int64(v - prev)))] += 1
            residuals[_bits(_zigzag(bits[i] - scratch_bits[0]))] += 1
            prev = v
        total = shuffled_bits(digits, n) + shuffled_bits(residuals, n)
        costs[k] = total
        best = min(best, total)
        if total > best + 6.6:
            return k
    return hi


@kernel
def decimal_encode(x, k, digits, residual):
    """``digits`` = zigzagged deltas of ``v = rint(x * 10**k)`` (first one from 0), ``residual``
    = zigzag of ``bits(x) - bits(v / 10**k)``. A value whose ``v`` would not be exact (NaN,
    infinite, huge) repeats the previous ``v`` and lives in its residual. Returns the ORs of
    ``digits[1:]`` and of ``residual`` (their widths; zero: nothing to store)."""
    bits = x.view(np.int64)
    decoded = residual.view(np.float64)
    p = POW10[k]
    prev = 0.0
    acc_digits = 0
    acc_residual = 0
    for i in range(x.shape[0]):
        v = _scaled(x[i], p, prev)
        z = _zigzag(np.int64(v - prev))
        digits[i] = z
        if i:
            acc_digits |= z
        decoded[i] = v / p
        r = _zigzag(bits[i] - residual[i])
        residual[i] = r
        acc_residual |= r
        prev = v
    return acc_digits, acc_residual


@kernel
def decimal_decode(digits, residual, k, out):
    """Inverse of :func:`decimal_encode`; an empty ``residual`` means all zero."""
    p = POW10[k]
    out_bits = out.view(np.int64)
    exact = residual.shape[0] == 0
    v = 0
    for i in range(digits.shape[0]):
        v += _unzigzag(digits[i])
        out[i] = v / p
        if not exact:
            out_bits[i] += _unzigzag(residual[i])


# -- numpy references (tests) -------------------------------------------------------------------


def zigzag_reference(d: np.ndarray) -> np.ndarray:
    return (d << 1) ^ (d >> 63)


def unzigzag_reference(z: np.ndarray) -> np.ndarray:
    return (z.view(np.uint64) >> np.uint64(1)).view(np.int64) ^ -(z & 1)


def int_encode_reference(x: np.ndarray, order: int) -> np.ndarray:
    d = x.astype(np.int64)
    with np.errstate(over="ignore"):
        for _ in range(order):
            d = np.diff(d, prepend=np.int64(0))
    return zigzag_reference(d)


def decimal_encode_reference(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    p = POW10[k]
    with np.errstate(invalid="ignore", over="ignore"):
        v = np.rint(x * p) + 0.0  # -0.0 + 0.0 is +0.0
        ok = np.abs(v) < V_LIMIT
    # a value whose v is not exact repeats the previous v (0 before the first)
    keep = np.where(ok, np.arange(len(x)), -1)
    keep = np.maximum.accumulate(keep) if len(x) else keep
    v = np.where(keep >= 0, v[np.maximum(keep, 0)], 0.0)
    digits = zigzag_reference(np.diff(v, prepend=0.0).astype(np.int64))
    with np.errstate(over="ignore"):
        residual = zigzag_reference(x.view(np.int64) - (v / p).view(np.int64))
    return digits, residual

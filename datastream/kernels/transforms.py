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

Each kernel has a vectorised numpy twin (``int_costs_numpy``, ...) taking the same arguments and
giving bit-identical results: the same outputs, return values and cost estimates (the estimates
add their terms in the kernels' order). The codec runs small chunks through the twins
(:data:`NUMPY`), so a program that appends and reads a few points never loads numba, and large
chunks through the kernels (:data:`NUMBA`). The kernels also run their twins while they are not
compiled (``jit.Kernel.use_reference``): a first process on an empty kernel cache does not wait
for numba to compile them. Importing this module imports no numba.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from .jit import kernel

# Decimal scales 10**k: exact as float64 (up to k = 22), so v / 10**k is correctly rounded and
# equals the double nearest to the decimal number, which is what rounding to k decimals gave.
MAX_SCALE = 15
POW10 = np.array([10.0**k for k in range(MAX_SCALE + 1)])
# |v| stays below 2**52, so float(v) is exact; larger values go through the residual alone.
V_LIMIT = float(2**52)
_LOW63 = np.int64(0x7FFF_FFFF_FFFF_FFFF)
_ONE = np.uint64(1)


@kernel
def _zigzag(d):
    return (d << 1) ^ (d >> 63)


@kernel
def _unzigzag(z):
    return ((z >> 1) & _LOW63) ^ -(z & 1)


@kernel
def _bits(z):
    """Bit length of a zigzagged value (viewed unsigned). LLVM recognises this loop and
    compiles it to a leading-zero count (``lzcnt``) and a test for zero. numba's intrinsic,
    which would have to be imported with this module, saves the test: the cost histograms
    run ~25 % faster with it over a million values, ~0.2 µs a call on the codec's samples."""
    u = np.uint64(z)
    n = 0
    while u:
        u >>= _ONE
        n += 1
    return n


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
    would rate a column of mostly short values with a few long ones far too cheap.

    The eighth power is three explicit squarings, which numpy does alike (a ``** 8`` may be a
    ``pow()`` call in one and multiplications in the other, a last-bit difference)."""
    if n == 0:
        return 0.0
    total = 0.0
    longer = n - lengths[0]
    for b in range(64):
        if longer == 0:
            break
        y = 1.0 - 0.5 * longer / n
        y = y * y
        y = y * y
        total += 1.0 - y * y
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


# -- numpy twins ---------------------------------------------------------------------------------
# Same arguments and results as the kernels above, bit for bit; int64 array arithmetic wraps in
# numpy too (without a warning). Each works on whole arrays, so a call costs a few dozen numpy
# operations whatever the length: cheap for small chunks, slower than the kernels for large ones.


def _zigzag_in_place(d: np.ndarray) -> None:
    sign = d >> 63
    d <<= 1
    d ^= sign


def unzigzag_numpy(z: np.ndarray) -> np.ndarray:
    d = z >> 1
    d &= _LOW63
    d ^= -(z & 1)
    return d


# Bit length by the 12 top bits (sign and exponent) of the float nearest to a value whose highest
# set bit is kept and the next one cleared (the conversion cannot round up to the next power of
# two then). Read as int64, values of 64 bits are negative: sign set, magnitude 2**62..2**63.
_LENGTH_OF_TOP_BITS = np.zeros(4096, np.intp)
_LENGTH_OF_TOP_BITS[1023:1086] = np.arange(1, 64)
_LENGTH_OF_TOP_BITS[2048 + 1085:2048 + 1087] = 64


def bits_numpy(z: np.ndarray) -> np.ndarray:
    """Bit lengths of int64 values viewed unsigned, as :func:`_bits`."""
    u = z.view(np.uint64)
    top = u >> _ONE
    np.invert(top, out=top)
    top &= u
    # a negative float's top 12 bits read as int64 are -4096 + its key: the same entry
    return _LENGTH_OF_TOP_BITS[top.view(np.int64).astype(np.float64).view(np.int64) >> 52]


def _histograms(z: np.ndarray) -> np.ndarray:
    """Per row of the 2-d ``z``: counts of each bit length 0..64 (rows × 65)."""
    rows = z.shape[0]
    keys = bits_numpy(z)
    keys += np.arange(0, 65 * rows, 65)[:, None]
    return np.bincount(keys.ravel(), minlength=65 * rows).reshape(rows, 65)


def shuffled_bits_numpy(lengths: np.ndarray, n: int) -> np.ndarray:
    """:func:`shuffled_bits` of each row of ``lengths`` (..., 65): the same terms, added in the
    same order (a cumulative sum is sequential, ``np.sum`` is pairwise). Planes past the longest
    value add exactly 0.0, where the kernel stops early. ``longer / (2 n)`` is the kernel's
    ``0.5 * longer / n``: halving an integer is exact, so both round the same quotient once."""
    if n == 0:
        return np.zeros(lengths.shape[:-1])
    longer = np.cumsum(lengths[..., :64], axis=-1)
    np.subtract(n, longer, out=longer)
    y = longer / (2.0 * n)
    np.subtract(1.0, y, out=y)
    y *= y
    y *= y
    y *= y
    np.subtract(1.0, y, out=y)
    return np.cumsum(y, axis=-1, out=y)[..., -1]


def _differences(x: np.ndarray, out: np.ndarray) -> None:
    """``out`` = the differences of ``x`` along the last axis (an earlier value counts as 0)."""
    out[..., :1] = x[..., :1]
    np.subtract(x[..., 1:], x[..., :-1], out=out[..., 1:])


def int_costs_numpy(x: np.ndarray) -> tuple[float, float, float]:
    """:func:`int_costs` in numpy."""
    n = x.shape[0]
    d = np.empty((3, n), np.int64)
    d[0] = x
    _differences(d[0], d[1])
    _differences(d[1], d[2])
    _zigzag_in_place(d)
    costs = shuffled_bits_numpy(_histograms(d), n)
    return float(costs[0]), float(costs[1]), float(costs[2])


def int_encode_numpy(x: np.ndarray, order: int, out: np.ndarray) -> tuple[int, int, int]:
    """:func:`int_encode` in numpy."""
    if order == 0:
        out[:] = x
    else:
        _differences(x, out)
        if order == 2:
            _differences(out.copy(), out)
    _zigzag_in_place(out)
    acc = int(np.bitwise_or.reduce(out[order:]))
    if x.shape[0] == 0:
        return acc, 0, 0
    return acc, int(x.min()), int(x.max())


def int_decode_numpy(z: np.ndarray, order: int, out: np.ndarray) -> None:
    """:func:`int_decode` in numpy."""
    out[:] = unzigzag_numpy(z)
    for _ in range(order):
        np.cumsum(out, out=out)


def _scaled_numpy(x: np.ndarray, p: np.ndarray | float) -> np.ndarray:
    """:func:`_scaled` along the last axis: ``rint(x * p)`` (+0.0 for zero), a value that would
    not be exact repeating the previous one (0.0 before the first)."""
    with np.errstate(invalid="ignore", over="ignore"):
        v = x * p
        np.rint(v, out=v)
        v += 0.0  # -0.0 + 0.0 is +0.0
        ok = np.abs(v) < V_LIMIT
    if ok.all():
        return v
    # per value, the index of the last exact one so far in its row behind a 0.0 (index 0: none)
    n = v.shape[-1]
    keep = np.where(ok, np.arange(1, n + 1), 0)
    np.maximum.accumulate(keep, axis=-1, out=keep)
    padded = np.zeros((*v.shape[:-1], n + 1))
    padded[..., 1:] = v
    keep += np.arange(0, padded.size, n + 1).reshape(*v.shape[:-1], 1)
    return padded.ravel()[keep]


def _decimal_parts(x: np.ndarray, p: np.ndarray | float, digits: np.ndarray,
                   residual: np.ndarray) -> None:
    """The outputs of :func:`decimal_encode` along the last axis of ``x * p``."""
    v = _scaled_numpy(x, p)
    # integers below 2**52: their differences are exact, and so are the conversions
    deltas = np.empty_like(v)
    _differences(v, deltas)
    digits[...] = deltas
    _zigzag_in_place(digits)
    v /= p
    np.subtract(x.view(np.int64), v.view(np.int64), out=residual)
    _zigzag_in_place(residual)


def decimal_costs_numpy(x: np.ndarray, lo: int, hi: int, costs: np.ndarray) -> int:
    """:func:`decimal_costs` in numpy: every scale at once (a sample is at most a few hundred
    values), then the kernel's stopping rule over the totals. Computing a first block of
    scales alone only pays off for values with few decimals, and costs as much again for
    the others."""
    n, scales = x.shape[0], max(hi + 1 - lo, 0)
    parts = np.empty((2, scales, n), np.int64)
    _decimal_parts(x, POW10[lo:hi + 1, None], parts[0], parts[1])
    bits = shuffled_bits_numpy(_histograms(parts.reshape(2 * scales, n)), n)
    best = np.inf
    for k, total in zip(range(lo, hi + 1), (bits[:scales] + bits[scales:]).tolist()):
        costs[k] = total
        best = min(best, total)
        if total > best + 6.6:
            return k
    return hi


def decimal_encode_numpy(x: np.ndarray, k: int, digits: np.ndarray,
                         residual: np.ndarray) -> tuple[int, int]:
    """:func:`decimal_encode` in numpy."""
    _decimal_parts(x, POW10[k], digits, residual)
    return int(np.bitwise_or.reduce(digits[1:])), int(np.bitwise_or.reduce(residual))


def decimal_decode_numpy(digits: np.ndarray, residual: np.ndarray, k: int,
                         out: np.ndarray) -> None:
    """:func:`decimal_decode` in numpy."""
    np.divide(np.cumsum(unzigzag_numpy(digits)), POW10[k], out=out)
    if residual.shape[0]:
        out_bits = out.view(np.int64)
        out_bits += unzigzag_numpy(residual)


# -- the two implementations ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Implementation:
    """One set of the transforms the codec calls."""

    name: str
    int_costs: Callable[..., tuple[float, float, float]]
    int_encode: Callable[..., tuple[int, int, int]]
    int_decode: Callable[..., None]
    decimal_costs: Callable[..., int]
    decimal_encode: Callable[..., tuple[int, int]]
    decimal_decode: Callable[..., None]


NUMBA = Implementation("numba", int_costs, int_encode, int_decode, decimal_costs, decimal_encode,
                       decimal_decode)
NUMPY = Implementation("numpy", int_costs_numpy, int_encode_numpy, int_decode_numpy,
                       decimal_costs_numpy, decimal_encode_numpy, decimal_decode_numpy)

# A kernel not compiled or loaded yet runs its twin meanwhile (``jit.Kernel.use_reference``):
# the codec may take the kernels whatever the cache holds.
int_costs.use_reference(int_costs_numpy)
int_encode.use_reference(int_encode_numpy)
int_decode.use_reference(int_decode_numpy)
decimal_costs.use_reference(decimal_costs_numpy)
decimal_encode.use_reference(decimal_encode_numpy)
decimal_decode.use_reference(decimal_decode_numpy)

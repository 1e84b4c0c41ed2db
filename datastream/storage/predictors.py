"""Level columns that other columns of the same row give (nearly): the codec's predictors.

A level row is a set of partial sums of the same points, so several columns follow from
others up to rounding. The codec (:mod:`datastream.storage.codec`) stores such a column as its
difference to a prediction computed from columns decoded before it. Two forms:

* :data:`PREDICTORS` give the float (or int) itself; the codec stores the difference of the
  bits (ulps for floats).
* :data:`SCALED` give a column ``x`` as a ratio ``N / D``: an integer numerator ``N`` (a sum of
  integer µs, or of values quantised to ``10**-k``) over a divisor ``D`` (a count, or
  ``10**2k``). The codec stores ``N`` minus a predicted integer and the ulps from ``N / D`` back
  to ``x``, usually none. ``N`` is exact where a float sum is not, so the prediction is as good
  as the information allows: the time mean offset of evenly spread points costs nothing, and a
  sum of squares costs only its spread.

A prediction that reads a decimal scale ``k`` (``scale_from``) takes the scale chosen for that
input column's decimal encoding; the codec stores it with the prediction.

Every prediction is a fixed sequence of IEEE multiplications, divisions, additions and
``rint``, vectorised by numpy and never fused, so every CPU computes the same bits; a NaN
prediction becomes 0.0, because the bits of a computed NaN are not portable. The codec
encodes with these functions and decodes with the same ones, so a chunk written on one machine
decodes bit for bit on another. Ids are stored in chunks: never renumber one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from ..kernels.transforms import MAX_SCALE, POW10, V_LIMIT
from . import residuals
from .residuals import INT_LIMIT

MAX_SQUARED_SCALE = MAX_SCALE // 2  # 10**2k must stay an exact power of ten


@dataclasses.dataclass(frozen=True)
class Predictor:
    """Column ``target`` from ``inputs`` of the same row; ``since``: the first chunk format
    version that knows it. With ``scale_from``, ``predict`` takes the decimal scale ``k`` of
    that column as its last argument. ``op`` names the same prediction in the numba kernels
    that also form what the codec stores (:mod:`datastream.storage.residuals`)."""

    target: str
    inputs: tuple[str, ...]
    predict: Callable[..., np.ndarray | tuple[np.ndarray, np.ndarray]]
    op: int
    since: int = 1
    scale_from: str | None = None


# -- ulp predictors -----------------------------------------------------------------------------


def _mean_offset(s, c, low):
    return s / c - low


def _squares(m2, s, c):
    return m2 + s * s / c


def _spread(q, s, c):
    return q - s * s / c


def _same(x):
    return x


def _intervals(points):
    return points - 1


def _span_seconds(last, first):
    return (last - first) / 1e6


def _decimal_units(x: np.ndarray, scale: int) -> np.ndarray:
    """``rint(x * 10**scale)`` as floats holding exact integers, 0.0 where that is not exact
    (NaN, infinite, beyond 2**52): the integer a decimal-encoded column stands for."""
    units = np.rint(x * POW10[scale])
    units[~(np.abs(units) < V_LIMIT)] = 0.0
    return units


def _exact_spread(q, s, c, scale):
    """M2 from the integer sums ``Q = q * 10**2k`` and ``S = s * 10**k``: ``(Q c - S²) / c``,
    with no cancellation below 2**53, where ``q - s²/c`` loses the digits q and s²/c share."""
    squares, total = _decimal_units(q, 2 * scale), _decimal_units(s, scale)
    count = c.astype(np.float64)
    return (squares * count - total * total) / (count * POW10[2 * scale])


# Ids 1-9: chunk format 1; ids 10 and up: format 2.
PREDICTORS: dict[int, Predictor] = {
    1: Predictor("mu", ("s", "c", "l"), _mean_offset, residuals.MEAN_OFFSET),
    2: Predictor("q", ("m2", "s", "c"), _squares, residuals.SQUARES),
    3: Predictor("m2", ("q", "s", "c"), _spread, residuals.SPREAD),
    4: Predictor("iq", ("im2", "isum", "ic"), _squares, residuals.SQUARES),
    5: Predictor("im2", ("iq", "isum", "ic"), _spread, residuals.SPREAD),
    # values = non-null points, but for aggregates
    6: Predictor("c", ("tn",), _same, residuals.SAME),
    # points = non-null points, without null points
    7: Predictor("np", ("tn",), _same, residuals.SAME),
    8: Predictor("ic", ("np",), _intervals, residuals.LESS_ONE),  # intervals between the points
    # they add up to last - first
    9: Predictor("isum", ("tz", "ta"), _span_seconds, residuals.SPAN_SECONDS),
    10: Predictor("m2", ("q", "s", "c"), _exact_spread, residuals.EXACT_SPREAD, 2, "s"),
    11: Predictor("im2", ("iq", "isum", "ic"), _exact_spread, residuals.EXACT_SPREAD, 2, "isum"),
    # the first point's offset in its bucket
    12: Predictor("ta", ("t",), _same, residuals.SAME, 2),
}


# -- ratio predictors: (predicted numerator, divisor) -------------------------------------------


def _squares_ratio(s, c, scale):
    """Σx² in units of ``10**-2k`` predicted as ``S²/c`` (all points at their mean); the
    stored difference is then the spread, ``c`` times the variance in those units."""
    total = _decimal_units(s, scale)
    count = np.maximum(c, 1).astype(np.float64)
    return _as_int(np.rint(total * total / count)), np.full(len(s), POW10[2 * scale])


def _offsets_ratio(t, ta, tz, tn):
    """The sum of the non-null points' offsets from the bucket start (``tm * tn``, exact µs)
    predicted as if the points were evenly spread between the first and the last."""
    middle = (ta - t).astype(np.float64) + (tz - t).astype(np.float64)
    count = tn.astype(np.float64)
    return _as_int(np.rint(middle * count * 0.5)), count


def _as_int(x: np.ndarray) -> np.ndarray:
    """Floats holding integers as int64, 0 where they do not fit."""
    x = np.where(np.abs(x) < INT_LIMIT, x, 0.0)
    return x.astype(np.int64)


SCALED: dict[int, Predictor] = {
    1: Predictor("tm", ("t", "ta", "tz", "tn"), _offsets_ratio, residuals.OFFSETS_RATIO, 2),
    2: Predictor("q", ("s", "c"), _squares_ratio, residuals.SQUARES_RATIO, 2, "s"),
    3: Predictor("iq", ("isum", "ic"), _squares_ratio, residuals.SQUARES_RATIO, 2, "isum"),
}


# -- applying them -----------------------------------------------------------------------------


def predict(predictor: Predictor, values: dict, dtype: np.dtype, scale: int) -> np.ndarray | None:
    """A fresh array of an ulp predictor's guess from the (filled) input columns; None when an
    input is missing."""
    inputs = _inputs(predictor, values, scale)
    if inputs is None:
        return None
    with np.errstate(all="ignore"):
        guess = np.array(predictor.predict(*inputs), dtype)
    if dtype == np.float64:
        guess[np.isnan(guess)] = 0.0
    return guess


def ratio(predictor: Predictor, values: dict, scale: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(predicted numerators, divisors) of a :data:`SCALED` predictor; None when an input is
    missing."""
    inputs = _inputs(predictor, values, scale)
    if inputs is None:
        return None
    with np.errstate(all="ignore"):
        return predictor.predict(*inputs)


def numerators(x: np.ndarray, divisor: np.ndarray, guess: np.ndarray) -> np.ndarray:
    """``rint(x * divisor)`` as int64, or the guess where that is not an exact integer."""
    with np.errstate(all="ignore"):
        scaled = np.rint(x * divisor)
    exact = np.abs(scaled) < V_LIMIT
    return np.where(exact, np.where(exact, scaled, 0.0).astype(np.int64), guess)


def quotients(numerator: np.ndarray, divisor: np.ndarray) -> np.ndarray:
    """``numerator / divisor`` (a fresh array), NaN replaced by 0.0."""
    with np.errstate(all="ignore"):
        out = numerator.astype(np.float64) / divisor
    out[np.isnan(out)] = 0.0
    return out


def _inputs(predictor: Predictor, values: dict, scale: int) -> list | None:
    inputs = [values.get(name) for name in predictor.inputs]
    if any(not isinstance(x, np.ndarray) for x in inputs):
        return None
    return inputs + [scale] if predictor.scale_from else inputs

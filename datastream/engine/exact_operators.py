"""The derive operators (behaviour §7) in exact arithmetic, for the inputs float64 would round.

The kernels (``datastream.kernels.derive``) compute in float64, which is exact for every value
of most streams. Two cases are not: a derived stream with ``high_accuracy`` (its arithmetic is
Decimal, to 64 significant digits, and so are its results), and integers beyond 2**53 (64-bit
counters: two readings that differ by one are the same float). For those the engine runs these
plain loops over the Python values, from a fresh state (it replays from the input before the
first new one, as it does for a late point), and keeps the kernel's carried state for the batches
that follow. Each loop mirrors its kernel step for step; only the arithmetic differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import numpy as np

from .. import arrow_numpy
from ..exact import SUMS
from ..lazy import pa
from ..raw_kinds import HIGH_ACCURACY, KIND_INT, KIND_NULL
from ..units import US_PER_SECOND

Number = int | float | Decimal
ROUNDED_INT = 2**53
"""Integers above this in magnitude are not all floats: inputs holding one (or a carried state
holding a value this large, which may be one rounded) take the exact path."""


class Arithmetic:
    """The arithmetic of one run.

    Decimal mode (a high-accuracy derived stream): every value as a Decimal (a float by its
    shortest decimal form), exact differences and sums, each result rounded once to 64
    significant digits. Otherwise Python numbers: ints stay exact, a Decimal (from a
    high-accuracy source) takes part exactly, and results are floats as the kernels' are,
    except an integer sum float64 cannot hold, which stays an int (so a result's type never
    depends on which path computed it)."""

    def __init__(self, decimal: bool) -> None:
        self.decimal = decimal

    def number(self, value: Number) -> Number:
        if not self.decimal or isinstance(value, Decimal):
            return value
        return Decimal(value) if isinstance(value, int) else Decimal(repr(value))

    def bound(self, value: Number) -> Number:
        """``max_value``: an integral float (a modulus such as 2.0**64, which no int argument
        can give) is the integer it holds, not its shortest decimal form."""
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return self.number(value)

    def subtract(self, a: Number, b: Number) -> Number:
        if self.decimal or isinstance(a, Decimal) or isinstance(b, Decimal):
            return SUMS.subtract(_exact(a), _exact(b))
        return a - b

    def add(self, a: Number, b: Number) -> Number:
        if self.decimal or isinstance(a, Decimal) or isinstance(b, Decimal):
            return SUMS.add(_exact(a), _exact(b))
        return a + b

    def rate(self, change: Number, dt_us: int) -> Number:
        """``change`` per second over ``dt_us`` microseconds."""
        if isinstance(change, Decimal):
            per_second = HIGH_ACCURACY.divide(SUMS.multiply(change, US_PER_SECOND), dt_us)
            return per_second if self.decimal else float(per_second)
        return change / (dt_us / 1e6)

    def result(self, value: Number) -> Number:
        if self.decimal:
            return HIGH_ACCURACY.plus(value)
        if isinstance(value, int) and -ROUNDED_INT <= value <= ROUNDED_INT:
            return float(value)
        return float(value) if isinstance(value, Decimal) else value


def _exact(value: Number) -> Decimal:
    """A number as the Decimal of exactly its value (a float's binary value, digit for digit)."""
    return value if isinstance(value, Decimal) else Decimal(value)


def run(op: str, t: np.ndarray, src: np.ndarray, x: Sequence[Number | None],
        args: dict[str, Any], sources: int, width_us: int, last: int | None,
        decimal: bool) -> tuple[list[int], list[Number | None]]:
    """Outputs (times, values; None for a null) of ``op`` over merged inputs, from a fresh
    state (``last``: the bucket ``sum`` emitted last, None for none)."""
    arithmetic = Arithmetic(decimal)
    values = [None if v is None else arithmetic.number(v) for v in x]
    times = t.tolist()
    if op == "sum":
        return _sum(times, src.tolist(), values, sources, width_us, last, arithmetic)
    if op == "derivative":
        return _derivative(times, values, arithmetic)
    if op == "counter_reset":
        return _counter_reset(times, values)
    if op == "counter_derivative":
        max_value = args.get("max_value")
        wrap = None if max_value is None else arithmetic.bound(max_value)
        return _counter_derivative(times, src.tolist(), values, wrap, arithmetic)
    raise ValueError(f"unknown derive operator {op!r}")


def _sum(times, sources_of, values, sources, width_us, last, arithmetic):
    out_t, out_v = [], []
    seen: set[int] = set()
    current, total, any_valid = last, 0, False
    for time, source, value in zip(times, sources_of, values, strict=True):
        bucket = time - time % width_us
        if (last is not None and bucket <= last) or (bucket == current and source in seen):
            continue
        if bucket != current:
            seen, total, any_valid, current = set(), 0, False, bucket
        seen.add(source)
        if value is not None:
            total = value if not any_valid else arithmetic.add(total, value)
            any_valid = True
        if len(seen) == sources:
            out_t.append(bucket)
            out_v.append(arithmetic.result(total) if any_valid else None)
            last = bucket
    return out_t, out_v


def _derivative(times, values, arithmetic):
    out_t, out_v = [], []
    previous = None
    for time, value in zip(times, values, strict=True):
        if value is None:
            out_t.append(time)
            out_v.append(None)
            previous = None
            continue
        if previous is not None and time != previous[0]:
            out_t.append(time)
            out_v.append(arithmetic.rate(arithmetic.subtract(value, previous[1]),
                                         time - previous[0]))
        previous = (time, value)
    return out_t, out_v


def _counter_reset(times, values):
    out_t = []
    previous = None
    for time, value in zip(times, values, strict=True):
        if value is None:
            continue
        if previous is not None and value < previous:
            out_t.append(time)
        previous = value
    return out_t, [1] * len(out_t)


def _counter_derivative(times, sources_of, values, wrap, arithmetic):
    out_t, out_v = [], []
    previous = None
    for time, source, value in zip(times, sources_of, values, strict=True):
        if value is None:
            out_t.append(time)
            out_v.append(None)
            previous = None
        elif source == 0:
            if value != 0:
                previous = None
        else:
            if previous is not None:
                change = arithmetic.subtract(value, previous[1])
                if change < 0 and wrap is not None and time != previous[0]:
                    change = arithmetic.add(arithmetic.subtract(wrap, previous[1]), value)
                    out_t.append(time)
                    out_v.append(arithmetic.rate(change, time - previous[0]))
                elif change >= 0 and time != previous[0]:
                    out_t.append(time)
                    out_v.append(arithmetic.rate(change, time - previous[0]))
            previous = (time, value)
    return out_t, out_v


def has_rounded_ints(rows: pa.Table) -> bool:
    """Whether raw rows hold an integer that float64 would round."""
    kinds = arrow_numpy.to_numpy(rows.column("k"), KIND_NULL)
    is_int = kinds == KIND_INT
    if not is_int.any():  # the usual case: float streams never read their integer column
        return False
    stored = arrow_numpy.to_numpy(rows.column("i"), 0)[is_int]
    return bool(((stored > ROUNDED_INT) | (stored < -ROUNDED_INT)).any())

"""The four derive operators of behaviour §7, written plainly: the oracle for derived streams.

Each operator consumes input points already merged in the order of behaviour §7 (time, then the
declared order of ``derive_from``, then append order) and keeps its state between calls, so a long
history can be replayed window by window. Every input point and every output carries a *scale*:
the magnitude whose rounding it may carry (0 for a stored raw value, which is exact; the bucket
magnitude for a bucket mean; the summed terms for a sum), against which a tiny result is judged
(see ``agreement``).

Inputs are Python numbers with None for a null (ints stay exact: two readings of a 64-bit
counter one apart differ, which as floats they would not); a value that is not a single number
(a pre-aggregated dict) is a null to the operators, as it has no one value to add or
differentiate. For a high-accuracy derived stream the replay computes with exact fractions and
rounds each result once to 64 significant digits, as a Decimal.
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np

Output = tuple[int, Any, float]  # (t µs, value or None, scale)


Input = tuple[np.ndarray, np.ndarray, np.ndarray]  # (t µs, v (objects, None: null), scale)

DIGITS = decimal.Context(prec=64, Emax=999_999, Emin=-999_999)


class Numbers:
    """The arithmetic of a replay: Python numbers (ints exact, a high-accuracy source's
    Decimals as exact fractions, floats as floats), or for a high-accuracy derived stream exact
    fractions of the values' decimal forms, each result rounded once to 64 significant
    digits."""

    def __init__(self, high_accuracy: bool) -> None:
        self.high_accuracy = high_accuracy

    def of(self, value: Any) -> Any:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if isinstance(value, Decimal):
            return None if value.is_nan() else Fraction(value)
        if self.high_accuracy:
            return Fraction(Decimal(repr(value)) if isinstance(value, float) else value)
        return value

    def bound(self, value: Any) -> Any:
        """A counter's modulus: an integral float is the integer it holds."""
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return self.of(value)

    def rate(self, change: Any, microseconds: int) -> Any:
        if self.high_accuracy or isinstance(change, Fraction):
            per_second = change / Fraction(microseconds, 1_000_000)
            return self.result(per_second) if self.high_accuracy else float(per_second)
        return change / (microseconds / 1e6)

    def total(self, terms: list) -> Any:
        if self.high_accuracy:
            return self.result(sum(terms))
        if all(isinstance(x, (int, Fraction)) for x in terms):
            return float(sum(terms)) if any(isinstance(x, Fraction) for x in terms) else sum(
                terms)
        return math.fsum(float(x) for x in terms)

    def result(self, value: Any) -> Any:
        if not self.high_accuracy:
            return value
        return DIGITS.divide(Decimal(value.numerator), Decimal(value.denominator))


def merge(inputs: Sequence[Input]) -> tuple[np.ndarray, ...]:
    """Concatenate per-source (t, v, scale) arrays (each in append order) into one input
    ordered by time, then source position, then append order. Returns (t, source, v, scale)."""
    t = np.concatenate([np.asarray(part[0], dtype=np.int64) for part in inputs])
    v = np.concatenate([np.asarray(part[1], dtype=object) for part in inputs])
    scale = np.concatenate([np.asarray(part[2], dtype=np.float64) for part in inputs])
    source = np.concatenate(
        [np.full(len(part[0]), position, dtype=np.int64) for position, part in enumerate(inputs)]
    )
    order = np.lexsort((np.arange(len(t)), source, t))
    return t[order], source[order], v[order], scale[order]


class Sum:
    """Per bucket of ``width`` µs: once every source has a point there, the sum of the
    non-null values among each source's first point (None if all are null), at the bucket
    start. A bucket some source never reaches yields nothing. Windows must not split buckets."""

    def __init__(self, sources: int, width: int, numbers: Numbers | None = None) -> None:
        self.sources = sources
        self.width = width
        self.numbers = numbers or Numbers(False)

    @classmethod
    def configured(cls, args: dict[str, Any], sources: int, width: int,
                   numbers: Numbers) -> Sum:
        return cls(sources, width, numbers)

    def feed(
        self, t: np.ndarray, source: np.ndarray, v: np.ndarray, scale: np.ndarray
    ) -> list[Output]:
        firsts: dict[int, dict[int, tuple[float, float]]] = {}
        points = zip(t.tolist(), source.tolist(), v.tolist(), scale.tolist(), strict=True)
        for time, index, value, error in points:
            bucket = time - time % self.width
            firsts.setdefault(bucket, {}).setdefault(index, (self.numbers.of(value), error))
        out = []
        for bucket in sorted(firsts):
            chosen = firsts[bucket]
            if len(chosen) < self.sources:
                continue
            present = [(x, e) for x, e in chosen.values() if x is not None]
            total = self.numbers.total([x for x, _ in present]) if present else None
            out.append((bucket, total, math.fsum(abs(float(x)) + e for x, e in present)))
        return out


class Derivative:
    """(v1 - v0) / (t1 - t0 in seconds) between consecutive non-null points, at t1; a null
    emits None and forgets the previous point; a zero time step emits nothing but moves the
    previous point forward."""

    def __init__(self, numbers: Numbers | None = None) -> None:
        self.numbers = numbers or Numbers(False)
        self.previous: tuple[int, Any, float] | None = None

    @classmethod
    def configured(cls, args: dict[str, Any], sources: int, width: int,
                   numbers: Numbers) -> Derivative:
        return cls(numbers)

    def feed(
        self, t: np.ndarray, source: np.ndarray, v: np.ndarray, scale: np.ndarray
    ) -> list[Output]:
        out: list[Output] = []
        for time, value, error in zip(t.tolist(), v.tolist(), scale.tolist(), strict=True):
            value = self.numbers.of(value)
            if value is None:
                out.append((time, None, 0.0))
                self.previous = None
                continue
            if self.previous is not None and time != self.previous[0]:
                before, old, old_error = self.previous
                seconds = (time - before) / 1e6
                out.append((time, self.numbers.rate(value - old, time - before),
                            (error + old_error) / seconds))
            self.previous = (time, value, error)
        return out


class CounterReset:
    """1 wherever a non-null value is lower than the previous non-null value."""

    def __init__(self, numbers: Numbers | None = None) -> None:
        self.numbers = numbers or Numbers(False)
        self.previous: Any = None

    @classmethod
    def configured(cls, args: dict[str, Any], sources: int, width: int,
                   numbers: Numbers) -> CounterReset:
        return cls(numbers)

    def feed(
        self, t: np.ndarray, source: np.ndarray, v: np.ndarray, scale: np.ndarray
    ) -> list[Output]:
        out: list[Output] = []
        for time, value in zip(t.tolist(), v.tolist(), strict=True):
            value = self.numbers.of(value)
            if value is None:
                continue
            if self.previous is not None and value < self.previous:
                out.append((time, 1, 0.0))
            self.previous = value
        return out


class CounterDerivative:
    """Rate of a wrapping counter (source 1) with a reset input (source 0, truthy = reset).

    Like Derivative, except that a decrease wraps as ``max_value - v0 + v1`` (without
    max_value it emits nothing), a truthy reset forgets the previous point, and a null on either
    input emits None and forgets it too."""

    def __init__(self, max_value: Any, numbers: Numbers | None = None) -> None:
        self.numbers = numbers or Numbers(False)
        self.max_value = self.numbers.bound(max_value)
        self.previous: tuple[int, Any, float] | None = None

    @classmethod
    def configured(cls, args: dict[str, Any], sources: int, width: int,
                   numbers: Numbers) -> CounterDerivative:
        return cls(args.get("max_value"), numbers)

    def feed(
        self, t: np.ndarray, source: np.ndarray, v: np.ndarray, scale: np.ndarray
    ) -> list[Output]:
        out: list[Output] = []
        points = zip(t.tolist(), source.tolist(), v.tolist(), scale.tolist(), strict=True)
        for time, index, value, error in points:
            value = self.numbers.of(value)
            if value is None:
                out.append((time, None, 0.0))
                self.previous = None
                continue
            if index == 0:
                if value:
                    self.previous = None
                continue
            if self.previous is not None:
                out.extend(self._step(time, value, error))
            self.previous = (time, value, error)
        return out

    def _step(self, time: int, value: float, error: float) -> list[Output]:
        before, old, old_error = self.previous
        change = value - old
        if change < 0:
            if self.max_value is None:
                return []
            change = self.max_value - old + value
        if time == before:
            return []
        seconds = (time - before) / 1e6
        return [(time, self.numbers.rate(change, time - before), (error + old_error) / seconds)]


Operator = Sum | Derivative | CounterReset | CounterDerivative

# The oracle of each derive operator, by the name it is declared under (written apart from the
# declarations and kernels on purpose: they are what it checks).
ORACLES: dict[str, type[Operator]] = {
    "sum": Sum,
    "derivative": Derivative,
    "counter_reset": CounterReset,
    "counter_derivative": CounterDerivative,
}


def operator(op: str, config: dict[str, Any], width: int,
             high_accuracy: bool = False) -> Operator:
    """A fresh operator for a derived stream's ``derived_from`` configuration (computing in
    64-digit decimals for a ``high_accuracy`` stream)."""
    if op not in ORACLES:
        raise ValueError(f"unknown derive operator {op!r}")
    return ORACLES[op].configured(config.get("args") or {}, len(config["stream_ids"]), width,
                                  Numbers(high_accuracy))

"""The four derive operators of behaviour §7, written plainly: the oracle for derived streams.

Each operator consumes input points already merged in the order of behaviour §7 (time, then the
declared order of ``derive_from``, then append order) and keeps its state between calls, so a long
history can be replayed window by window. Every input point and every output carries a *scale*:
the magnitude whose rounding it may carry (0 for a stored raw value, which is exact; the bucket
magnitude for a bucket mean; the summed terms for a sum), against which a tiny result is judged
(see ``agreement``).

Inputs are floats with NaN for a null; a value that is not a single number (a pre-aggregated
dict) is a null to the operators, as it has no one value to add or differentiate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

Output = tuple[int, float | None, float]  # (t µs, value or None, scale)


Input = tuple[np.ndarray, np.ndarray, np.ndarray]  # (t µs, v with NaN for null, scale)


def merge(inputs: Sequence[Input]) -> tuple[np.ndarray, ...]:
    """Concatenate per-source (t, v, scale) arrays (each in append order) into one input
    ordered by time, then source position, then append order. Returns (t, source, v, scale)."""
    t = np.concatenate([np.asarray(part[0], dtype=np.int64) for part in inputs])
    v = np.concatenate([np.asarray(part[1], dtype=np.float64) for part in inputs])
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

    def __init__(self, sources: int, width: int) -> None:
        self.sources = sources
        self.width = width

    @classmethod
    def configured(cls, args: dict[str, Any], sources: int, width: int) -> Sum:
        return cls(sources, width)

    def feed(
        self, t: np.ndarray, source: np.ndarray, v: np.ndarray, scale: np.ndarray
    ) -> list[Output]:
        firsts: dict[int, dict[int, tuple[float, float]]] = {}
        points = zip(t.tolist(), source.tolist(), v.tolist(), scale.tolist(), strict=True)
        for time, index, value, error in points:
            bucket = time - time % self.width
            firsts.setdefault(bucket, {}).setdefault(index, (value, error))
        out = []
        for bucket in sorted(firsts):
            chosen = firsts[bucket]
            if len(chosen) < self.sources:
                continue
            present = [(x, e) for x, e in chosen.values() if not math.isnan(x)]
            total = math.fsum(x for x, _ in present) if present else None
            out.append((bucket, total, math.fsum(abs(x) + e for x, e in present)))
        return out


class Derivative:
    """(v1 - v0) / (t1 - t0 in seconds) between consecutive non-null points, at t1; a null
    emits None and forgets the previous point; a zero time step emits nothing but moves the
    previous point forward."""

    def __init__(self) -> None:
        self.previous: tuple[int, float, float] | None = None

    @classmethod
    def configured(cls, args: dict[str, Any], sources: int, width: int) -> Derivative:
        return cls()

    def feed(
        self, t: np.ndarray, source: np.ndarray, v: np.ndarray, scale: np.ndarray
    ) -> list[Output]:
        out: list[Output] = []
        for time, value, error in zip(t.tolist(), v.tolist(), scale.tolist(), strict=True):
            if math.isnan(value):
                out.append((time, None, 0.0))
                self.previous = None
                continue
            if self.previous is not None and time != self.previous[0]:
                before, old, old_error = self.previous
                seconds = (time - before) / 1e6
                out.append((time, (value - old) / seconds, (error + old_error) / seconds))
            self.previous = (time, value, error)
        return out


class CounterReset:
    """1 wherever a non-null value is lower than the previous non-null value."""

    def __init__(self) -> None:
        self.previous: float | None = None

    @classmethod
    def configured(cls, args: dict[str, Any], sources: int, width: int) -> CounterReset:
        return cls()

    def feed(
        self, t: np.ndarray, source: np.ndarray, v: np.ndarray, scale: np.ndarray
    ) -> list[Output]:
        out: list[Output] = []
        for time, value in zip(t.tolist(), v.tolist(), strict=True):
            if math.isnan(value):
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

    def __init__(self, max_value: float | None) -> None:
        self.max_value = max_value
        self.previous: tuple[int, float, float] | None = None

    @classmethod
    def configured(cls, args: dict[str, Any], sources: int, width: int) -> CounterDerivative:
        max_value = args.get("max_value")
        return cls(None if max_value is None else float(max_value))

    def feed(
        self, t: np.ndarray, source: np.ndarray, v: np.ndarray, scale: np.ndarray
    ) -> list[Output]:
        out: list[Output] = []
        points = zip(t.tolist(), source.tolist(), v.tolist(), scale.tolist(), strict=True)
        for time, index, value, error in points:
            if math.isnan(value):
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
        return [(time, change / seconds, (error + old_error) / seconds)]


Operator = Sum | Derivative | CounterReset | CounterDerivative

# The oracle of each derive operator, by the name it is declared under (written apart from the
# declarations and kernels on purpose: they are what it checks).
ORACLES: dict[str, type[Operator]] = {
    "sum": Sum,
    "derivative": Derivative,
    "counter_reset": CounterReset,
    "counter_derivative": CounterDerivative,
}


def operator(op: str, config: dict[str, Any], width: int) -> Operator:
    """A fresh operator for a derived stream's ``derived_from`` configuration."""
    if op not in ORACLES:
        raise ValueError(f"unknown derive operator {op!r}")
    return ORACLES[op].configured(config.get("args") or {}, len(config["stream_ids"]), width)

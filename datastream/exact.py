"""High-accuracy (Decimal) partial state: the exact slow path that numba cannot vectorise.

Kept apart so the float fast path in ``downsamplers`` reads without Decimal plumbing.
"""

from __future__ import annotations

import dataclasses
import decimal
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import numpy as np

from .lazy import pa
from .raw_kinds import HIGH_ACCURACY, KIND_EXACT, KIND_FLOAT, KIND_INT

# Results are rounded to 64 significant digits (HIGH_ACCURACY, behaviour §5.1; downsamplers read
# it here too); partial sums keep far more so that summing many 64-digit values stays exact
# before the final rounding (40·e / 40 == e).
WIDE = decimal.Context(prec=256, Emax=999_999, Emin=-999_999)
# Sums and sums of squares are kept exact, so that merging buckets in any order gives the same
# state (1E+300, 0.1 and -1E+300 sum to 0.1 whichever comes first): additions only need as
# many digits as the values' exponents span, and this bounds that (beyond it they round).
SUMS = decimal.Context(prec=4096, Emax=999_999, Emin=-999_999)


@dataclasses.dataclass
class ExactState:
    """Decimal partial state of one bucket (high-accuracy streams), kept in ``x`` as text."""

    c: int
    s: Decimal
    q: Decimal
    low: Decimal
    high: Decimal
    mu: Decimal
    m2: Decimal
    n: Decimal | None = None

    @classmethod
    def of(cls, value: Decimal) -> ExactState:
        return cls(1, value, WIDE.multiply(value, value), value, value, value, Decimal(0))

    @classmethod
    def from_item(cls, item: dict) -> ExactState | None:
        """State of a pre-aggregated dict (None when it holds no values)."""
        c = int(item.get("c") or 0)
        if c <= 0:
            return None
        nan = Decimal("NaN")
        num = {k: Decimal(str(item[k])) for k in "sqlumd" if item.get(k) is not None}
        s, q = num.get("s", nan), num.get("q", nan)
        mu = num["m"] if "m" in num else WIDE.divide(s, c)
        if "d" in num:
            m2 = WIDE.multiply(WIDE.multiply(num["d"], num["d"]), c)
        else:
            m2 = WIDE.subtract(q, WIDE.divide(WIDE.multiply(s, s), c))
            m2 = m2 if m2.is_nan() or m2 > 0 else Decimal(0)
        return cls(c, s, q, num.get("l", nan), num.get("u", nan), mu, m2)

    def merge(self, other: ExactState) -> None:
        """Absorb ``other`` (Chan's formula for mean and M2)."""
        n = self.c + other.c
        delta = WIDE.subtract(other.mu, self.mu)
        weight = WIDE.divide(other.c, n)
        self.mu = WIDE.add(self.mu, WIDE.multiply(delta, weight))
        pooled = WIDE.multiply(WIDE.multiply(delta, delta), WIDE.multiply(self.c, weight))
        self.m2 = WIDE.add(WIDE.add(self.m2, other.m2), pooled)
        self.s = SUMS.add(self.s, other.s)
        self.q = SUMS.add(self.q, other.q)
        self.low = _nan_min(self.low, other.low)
        self.high = _nan_min(self.high.copy_negate(), other.high.copy_negate()).copy_negate()
        self.c = n

    def to_json(self) -> dict:
        numbers = (self.s, self.q, self.low, self.high, self.mu, self.m2)
        out: dict[str, Any] = {"c": self.c}
        out.update({k: str(v) for k, v in zip(_EXACT_KEYS, numbers, strict=True)})
        if self.n is not None:
            out["n"] = str(self.n)
        return out

    @classmethod
    def from_json(cls, data: dict) -> ExactState | None:
        if "mu" not in data:
            return None
        n = data.get("n")
        return cls(
            int(data["c"]), *(Decimal(data[k]) for k in _EXACT_KEYS),
            n=None if n is None else Decimal(n),
        )


_EXACT_KEYS = ("s", "q", "l", "u", "mu", "m2")


def _nan_min(a: Decimal, b: Decimal) -> Decimal:
    if a.is_nan():
        return b
    if b.is_nan():
        return a
    return min(a, b)


def exact_median(values: list[Decimal]) -> Decimal | None:
    if not values:
        return None
    values = sorted(values)
    half = len(values) // 2
    if len(values) % 2:
        return values[half]
    return HIGH_ACCURACY.divide(WIDE.add(values[half - 1], values[half]), 2)


def merge_states(states: Sequence[ExactState | None]) -> ExactState | None:
    total = None
    for state in states:
        if state is None:
            continue
        if total is None:
            total = dataclasses.replace(state, n=None)
        else:
            total.merge(state)
    return total


def exact_values(raw: pa.Table, kinds: np.ndarray) -> list[Decimal | None]:
    """Decimal of every plain number (None elsewhere): the high-accuracy slow path."""
    out: list[Decimal | None] = [None] * len(kinds)
    columns = {k: raw.column(k).to_pylist() for k in "ifs"}
    numbers = (kinds == KIND_INT) | (kinds == KIND_FLOAT) | (kinds == KIND_EXACT)
    for p in np.flatnonzero(numbers).tolist():
        kind = kinds[p]
        if kind == KIND_INT:
            out[p] = Decimal(columns["i"][p])
        elif kind == KIND_FLOAT:
            out[p] = None if math.isnan(columns["f"][p]) else Decimal(repr(columns["f"][p]))
        else:
            out[p] = Decimal(columns["s"][p])
    return out


def exact_std(state: ExactState) -> Decimal:
    if state.m2.is_zero():
        return Decimal(0)
    return HIGH_ACCURACY.sqrt(WIDE.divide(state.m2, state.c))

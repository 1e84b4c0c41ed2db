"""Per-bucket value statistics of high-accuracy (Decimal) streams, in exact rational arithmetic.

DuckDB's DECIMAL holds at most 38 digits, so the 64-digit values are summed here with
``fractions.Fraction`` (no rounding at all) and each result is rounded once to 64 significant
digits, which is what behaviour §5.1 promises (e.g. the mean of 40 copies of a 64-digit value is
that value exactly).
"""

from __future__ import annotations

import dataclasses
import decimal
import json
import math
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pyarrow as pa

from ..raw_kinds import KIND_AGGREGATE, KIND_EXACT, KIND_FLOAT, KIND_INT, KIND_NULL

DIGITS = decimal.Context(prec=64, Emax=999_999, Emin=-999_999)
_WORKING = decimal.Context(prec=256, Emax=999_999, Emin=-999_999)


@dataclasses.dataclass
class ExactValues:
    """Decimal results of one bucket (None where undefined) and its frequency table."""

    c: int
    s: Decimal | None
    q: Decimal | None
    low: Decimal | None
    high: Decimal | None
    mean: Decimal | None
    std: Decimal | None
    median: Decimal | None
    table: dict[str, int] | None


@dataclasses.dataclass
class _Part:
    """A plain value (c = 1) or a pre-aggregated item: what enters a bucket's statistics."""

    c: int
    s: Fraction | None
    q: Fraction | None
    low: Decimal | None
    high: Decimal | None
    mean: Fraction | None
    m2: Fraction | None


def rounded(value: Fraction) -> Decimal:
    """``value`` rounded to 64 significant digits (half even)."""
    return DIGITS.divide(Decimal(value.numerator), Decimal(value.denominator))


def _sqrt(value: Fraction) -> Decimal:
    if value == 0:
        return Decimal(0)
    approx = _WORKING.divide(Decimal(value.numerator), Decimal(value.denominator))
    return DIGITS.sqrt(approx)


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _fraction(value: Any) -> Fraction | None:
    number = _decimal(value)
    return None if number is None else Fraction(number)


def plain_decimals(raw: pa.Table) -> list[tuple[int, Decimal, str]]:
    """(t, value, frequency key) of every plain number: ints, floats (by their shortest repr)
    and exact text. The key is the value's canonical text."""
    out = []
    columns = zip(*(raw.column(name).to_pylist() for name in ("t", "k", "i", "f", "s")),
                  strict=True)
    for t, k, i, f, s in columns:
        if k == KIND_INT:
            out.append((t, Decimal(i), str(i)))
        elif k == KIND_FLOAT and f is not None and not math.isnan(f):
            out.append((t, Decimal(repr(f)), repr(f)))
        elif k == KIND_EXACT:
            number = Decimal(s)
            out.append((t, number, str(number)))
    return out


def _item_part(item: dict[str, Any]) -> _Part | None:
    c = int(item.get("c") or 0)
    if c <= 0:
        return None
    s, q = _fraction(item.get("s")), _fraction(item.get("q"))
    mean = _fraction(item.get("m"))
    if mean is None and s is not None:
        mean = s / c
    d = _fraction(item.get("d"))
    if d is not None:
        m2 = d * d * c
    elif s is not None and q is not None:
        m2 = max(q - s * s / c, Fraction(0))
    else:
        m2 = None
    return _Part(c, s, q, _decimal(item.get("l")), _decimal(item.get("u")), mean, m2)


def bucket_values(raw: pa.Table, width: int) -> dict[int, ExactValues]:
    """Exact statistics of every bucket of ``width`` µs holding a value in ``raw``."""
    parts: dict[int, list[_Part]] = {}
    pools: dict[int, list[Fraction]] = {}
    tables: dict[int, dict[str, int]] = {}
    for t, number, key in plain_decimals(raw):
        b = t - t % width
        exact = Fraction(number)
        parts.setdefault(b, []).append(_Part(1, exact, exact * exact, number, number, exact,
                                             Fraction(0)))
        pools.setdefault(b, []).append(exact)
        table = tables.setdefault(b, {})
        table[key] = table.get(key, 0) + 1
    kinds = np.asarray(raw.column("k").fill_null(KIND_NULL).to_numpy(), dtype=np.int8)
    where = np.flatnonzero(kinds == KIND_AGGREGATE)
    if where.size:
        ts = raw.column("t").take(pa.array(where)).to_pylist()
        texts = raw.column("s").take(pa.array(where)).to_pylist()
        for t, text in zip(ts, texts, strict=True):
            b = t - t % width
            item = json.loads(text)
            part = _item_part(item)
            if part is not None:
                parts.setdefault(b, []).append(part)
            if item.get("n") is not None:
                pools.setdefault(b, []).append(_fraction(item["n"]))
            for key, count in (item.get("f") or {}).items():
                table = tables.setdefault(b, {})
                table[key] = table.get(key, 0) + count
    return {
        b: _statistics(parts.get(b, []), pools.get(b, []), tables.get(b))
        for b in set(parts) | set(pools) | set(tables)
    }


def _total(values: list[Fraction | None]) -> Fraction | None:
    return None if any(v is None for v in values) else sum(values, Fraction(0))


def _statistics(parts: list[_Part], pool: list[Fraction], table: dict | None) -> ExactValues:
    c = sum(part.c for part in parts)
    if c == 0:
        return ExactValues(0, None, None, None, None, None, None, None, None)
    s = _total([part.s for part in parts])
    q = _total([part.q for part in parts])
    lows = [part.low for part in parts if part.low is not None]
    highs = [part.high for part in parts if part.high is not None]
    std = None
    if all(part.mean is not None and part.m2 is not None for part in parts):
        centre = sum((part.c * part.mean for part in parts), Fraction(0)) / c
        m2 = sum((part.m2 + part.c * (part.mean - centre) ** 2 for part in parts), Fraction(0))
        std = _sqrt(m2 / c)
    return ExactValues(
        c,
        None if s is None else rounded(s),
        None if q is None else rounded(q),
        DIGITS.plus(min(lows)) if lows else None,
        DIGITS.plus(max(highs)) if highs else None,
        None if s is None else rounded(s / c),
        std,
        _median(pool),
        table or None,
    )


def _median(pool: list[Fraction]) -> Decimal | None:
    if not pool:
        return None
    ordered = sorted(pool)
    half = len(ordered) // 2
    if len(ordered) % 2:
        return rounded(ordered[half])
    return rounded((ordered[half - 1] + ordered[half]) / 2)

"""Raw rows read as numbers: kinds, the float view for the kernels, pre-aggregated items.

One place that knows the raw columns (``k, i, f, s``), so the level code deals in arrays only.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from decimal import Decimal
from itertools import pairwise

import numpy as np

from . import arrow_numpy
from .exact import ExactState, exact_median, exact_values, merge_states
from .kernels import order
from .lazy import pa
from .raw_kinds import KIND_AGGREGATE, KIND_EXACT, KIND_FLOAT, KIND_INT
from .values import kinds_of


def texts(raw: pa.Table, where: np.ndarray) -> list:
    return raw.column("s").take(arrow_numpy.from_numpy(where)).to_pylist()


def numeric_values(raw: pa.Table, kinds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float view of the plain numbers (kinds 1, 2, 3) and the mask of points that have one."""
    floats = arrow_numpy.to_numpy(raw.column("f")).astype(np.float64, copy=False)
    if raw.column("i").null_count == raw.num_rows and not (kinds == KIND_EXACT).any():
        return floats, (kinds == KIND_FLOAT) & ~np.isnan(floats)  # the common all-float case
    ints = arrow_numpy.to_numpy(raw.column("i"), 0).astype(np.int64, copy=False)
    x = np.where(kinds == KIND_INT, ints.astype(np.float64), floats)
    exact = np.flatnonzero(kinds == KIND_EXACT)
    if exact.size:
        x[exact] = [float(Decimal(text)) for text in texts(raw, exact)]
    valid = ((kinds == KIND_INT) | (kinds == KIND_FLOAT) | (kinds == KIND_EXACT)) & ~np.isnan(x)
    return x, valid


def item_float_state(item: dict) -> dict[str, float]:
    """The value state columns (``c, s, q, l, u, mu, m2``) of a pre-aggregated dict, by
    column name, NaN for what it does not carry."""
    c = int(item.get("c") or 0)
    if c <= 0:
        return {"c": 0, **dict.fromkeys(("s", "q", "l", "u", "mu", "m2"), np.nan)}

    def num(key: str) -> float:
        value = item.get(key)
        return np.nan if value is None else float(value)

    s, q, d, mean, low = num("s"), num("q"), num("d"), num("m"), num("l")
    if math.isnan(mean):
        mean = s / c
    m2 = d * d * c if not math.isnan(d) else max(q - s * s / c, 0.0)
    offset = mean if math.isnan(low) else mean - low  # the kernels keep means as mean - min
    return {"c": c, "s": s, "q": q, "l": low, "u": num("u"), "mu": offset, "m2": m2}


@dataclasses.dataclass
class NumericRaw:
    """The numbers of numeric raw rows: a float view for the kernels, the pre-aggregated items
    (kind 5) parsed, and on demand the exact Decimals of the high-accuracy slow path."""

    raw: pa.Table
    kinds: np.ndarray
    x: np.ndarray
    valid: np.ndarray
    items: np.ndarray
    parsed: list[dict]

    @classmethod
    def of(cls, raw: pa.Table) -> NumericRaw:
        kinds = kinds_of(raw)
        x, valid = numeric_values(raw, kinds)
        items = np.flatnonzero(kinds == KIND_AGGREGATE)
        parsed = [json.loads(v) for v in texts(raw, items)] if items.size else []
        return cls(raw, kinds, x, valid, items, parsed)

    @functools.cached_property
    def numbers(self) -> list[Decimal | None]:
        return exact_values(self.raw, self.kinds)

    def item_segments(self, bounds: np.ndarray) -> np.ndarray:
        return np.searchsorted(bounds, self.items, side="right") - 1

    def medians(self, bounds: np.ndarray) -> np.ndarray:
        """Float median per segment; an item's own median ``n`` counts as one value."""
        pool, valid = self.x, self.valid
        if self.items.size:
            item_n = np.array([np.nan if d.get("n") is None else float(d["n"])
                               for d in self.parsed])
            pool, valid = pool.copy(), valid.copy()
            pool[self.items] = item_n
            valid[self.items] = ~np.isnan(item_n)
        return order.medians(pool, valid, bounds)

    def exact_medians(self, bounds: np.ndarray) -> list[Decimal | None]:
        pools: list[list[Decimal]] = [[] for _ in range(len(bounds) - 1)]
        numbers = self.numbers
        for j, (a, b) in enumerate(pairwise(bounds.tolist())):
            pools[j] = [v for v in numbers[a:b] if v is not None]
        for j, d in zip(self.item_segments(bounds).tolist(), self.parsed, strict=True):
            if d.get("n") is not None:
                pools[j].append(Decimal(str(d["n"])))
        return [exact_median(pool) for pool in pools]

    def exact_states(self, bounds: np.ndarray) -> list[ExactState | None]:
        by_point = dict(zip(self.items.tolist(), map(ExactState.from_item, self.parsed),
                            strict=True))
        numbers = self.numbers
        out = []
        for a, b in pairwise(bounds.tolist()):
            out.append(merge_states([
                ExactState.of(numbers[p]) if numbers[p] is not None else by_point.get(p)
                for p in range(a, b)
            ]))
        return out

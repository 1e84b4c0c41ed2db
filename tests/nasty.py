"""Hypothesis strategies of hostile appended values: what a careless or malicious caller may
pass to ``append``. Shared by the value-level and the API-level fuzz tests."""

from __future__ import annotations

import decimal
import fractions

import numpy as np
from hypothesis import strategies as st

DOWNSAMPLER_KEYS = "csqlumdnorf"  # every value downsampler key: any pre-aggregated dict shape


def deep_value(depth: int, container: str) -> object:
    """``depth`` nested lists or dicts around a 1."""
    value: object = 1
    for _ in range(depth):
        value = [value] if container == "list" else {"k": value}
    return value


def _power_of_ten(exponent: int) -> int:
    return 10**exponent


decimals = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True),
    st.sampled_from(["sNaN", "-sNaN7", "NaN", "-Infinity", "1e999999", "1e-999999",
                     "1e-400", "1.7976931348623157e308", "1.8e308", "4.9e-324", "2e-324"])
    .map(decimal.Decimal),
    st.builds(  # any exponent, even beyond every context's limits
        lambda sign, digits, exponent: decimal.Decimal((sign, digits, exponent)),
        st.integers(0, 1),
        st.lists(st.integers(0, 9), min_size=1, max_size=80).map(tuple),
        st.integers(-(10**12), 10**12) | st.integers(-1100, 1100),
    ),
)
integers = st.one_of(
    st.integers(),
    st.integers(-(2**65), 2**65),
    st.integers(0, 6000).map(_power_of_ten),
    st.integers(0, 6000).map(_power_of_ten).map(lambda x: -x),
    st.sampled_from([2**32 - 1, 2**32, 2**53, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64]),
)
numpy_scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(np.int64),
    st.integers(0, 2**64 - 1).map(np.uint64),
    st.integers(-128, 127).map(np.int8),
    st.floats(width=16).map(np.float16),
    st.floats(width=32).map(np.float32),
    st.floats().map(np.float64),
    st.sampled_from(["1e4000", "-1e4000", "1e-4000", "nan", "inf"]).map(np.longdouble),
    st.booleans().map(np.bool_),
    st.complex_numbers(allow_nan=True).map(np.complex128),
    st.just(np.datetime64("2000-01-01")),
)
def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:  # a signalling NaN refuses to be hashed
        return False
    return True


_numbers = st.one_of(
    integers,
    st.floats(),
    decimals,
    st.fractions(),
    st.builds(fractions.Fraction, integers, integers.filter(bool)),
    st.complex_numbers(),
    st.booleans(),
    numpy_scalars,
)
numbers = st.deferred(lambda: _numbers)  # a short repr: hypothesis prints strategies it uses
scalars = st.one_of(numbers, st.none(), st.text(max_size=20), st.binary(max_size=5))
aggregates = st.dictionaries(
    st.sampled_from(DOWNSAMPLER_KEYS),
    st.one_of(scalars, st.dictionaries(numbers.filter(_hashable), numbers, max_size=3)),
    max_size=len(DOWNSAMPLER_KEYS),
)
shaped_aggregates = st.fixed_dictionaries(  # every key present: these may be accepted
    {key: st.one_of(st.none(), numbers) for key in DOWNSAMPLER_KEYS if key != "f"}
    | {"f": st.one_of(st.none(), st.dictionaries(numbers.filter(_hashable), numbers, max_size=3))}
)
nested = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner),
        st.dictionaries(st.text(max_size=4), inner, max_size=4),
        st.dictionaries(st.integers(), inner, max_size=2),
        st.frozensets(st.integers(), max_size=2),
    ),
    max_leaves=10,
)
deep = st.builds(
    deep_value, st.sampled_from([31, 33, 100, 5000]), st.sampled_from(["list", "dict"])
)
graphs = st.fixed_dictionaries(
    {"v": st.lists(st.fixed_dictionaries({"i": scalars}), max_size=3),
     "e": st.lists(st.fixed_dictionaries({"f": scalars, "t": scalars}), max_size=2)}
)
_values = st.one_of(numbers, scalars, aggregates, shaped_aggregates, nested, deep, graphs)
values = st.deferred(lambda: _values)  # keeps hypothesis from printing the whole definition

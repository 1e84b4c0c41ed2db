"""The shared constants and the one canonical-JSON helper: stored data depends on every byte.

Raw rows keep their kind number and kinds 4 and 5 keep canonical JSON text; level rows keep
frequency tables keyed by that text. These tests pin both, so a change to either is a change to
the stored format, never a refactor.
"""

from __future__ import annotations

import ast
import decimal
from pathlib import Path

import pytest

from datastream import exact, frequencies, granularity, raw_kinds, units, values

PACKAGE = Path(raw_kinds.__file__).parent


def test_kind_numbers_are_the_stored_ones():
    kinds = (raw_kinds.KIND_NULL, raw_kinds.KIND_INT, raw_kinds.KIND_FLOAT,
             raw_kinds.KIND_EXACT, raw_kinds.KIND_JSON, raw_kinds.KIND_AGGREGATE)
    assert kinds == (0, 1, 2, 3, 4, 5)
    assert raw_kinds.NUMBER_KINDS == (1, 2, 3)
    assert all(type(kind) is int for kind in kinds)


def test_old_names_still_read_the_shared_constants():
    assert values.KIND_FLOAT is raw_kinds.KIND_FLOAT
    assert values.HIGH_ACCURACY is exact.HIGH_ACCURACY is raw_kinds.HIGH_ACCURACY
    assert values.canonical_json is frequencies.canonical is raw_kinds.canonical_json
    assert granularity.US_PER_SECOND is units.US_PER_SECOND
    assert (values.INT64_MIN, values.INT64_MAX) == (units.INT64_MIN, units.INT64_MAX)


def test_numeric_constants():
    assert units.US_PER_SECOND == 1_000_000
    assert (units.INT64_MIN, units.INT64_MAX) == (-(2**63), 2**63 - 1)
    assert raw_kinds.HIGH_ACCURACY.prec == 64
    assert raw_kinds.HIGH_ACCURACY.rounding == decimal.ROUND_HALF_EVEN


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        (True, "true"),
        (0.1, "0.1"),
        (1e-05, "1e-05"),
        (1e300, "1e+300"),
        (-0.0, "-0.0"),
        (2.0, "2.0"),
        (2**63, "9223372036854775808"),
        ("é ☃ \U0001f600", '"é ☃ \U0001f600"'),
        ('quote " and \\ and \n', '"quote \\" and \\\\ and \\n"'),
        ({"b": 1, "a": [1, 2.5, {"d": None, "c": "x"}]},
         '{"a":[1,2.5,{"c":"x","d":null}],"b":1}'),
        ({"z": {"y": {"x": []}}, "é": {}}, '{"z":{"y":{"x":[]}},"é":{}}'),
        ({"c": 2, "f": {"2.5": 1, "1": 1}, "s": "3.5"}, '{"c":2,"f":{"1":1,"2.5":1},"s":"3.5"}'),
    ],
)
def test_canonical_text_is_pinned(value, text):
    assert raw_kinds.canonical_json(value) == text


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [float("-inf")]])
def test_canonical_json_refuses_what_is_not_json(value):
    with pytest.raises(ValueError):
        raw_kinds.canonical_json(value)


def test_canonical_json_refuses_decimals():
    """High-accuracy numbers are stored as str(Decimal) texts, never as JSON numbers."""
    with pytest.raises(TypeError):
        raw_kinds.canonical_json(decimal.Decimal("0.1"))


@pytest.mark.parametrize("name", ["raw_kinds.py", "units.py"])
def test_constant_modules_import_nothing_from_the_package(name):
    tree = ast.parse((PACKAGE / name).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith("datastream")
        elif isinstance(node, ast.Import):
            assert not any(alias.name.startswith("datastream") for alias in node.names)

"""Value validation and encoding (behaviour §5.1, docs/INTERNALS.md "values.py")."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from datastream import downsamplers, exceptions, raw_numbers, values
from datastream.storage.base import RAW_SCHEMA
from tests import nasty

SID = "0b7f4c1e-3c2a-4e8f-9a51-2d7c9e6b1f00"
DEFAULT = {"high_accuracy": False}
HIGH = {"high_accuracy": True}
E64 = Decimal("2.71828182845904523536028747135266249775724709369995957496696762")
MEAN_KEYS = {"c", "s", "m"}


def encode(value, value_type="numeric", options=None, keys=()):
    options = values.normalise_options(value_type, options)
    return values.encode_value(value, value_type, options, keys, SID)


def roundtrip(value, value_type="numeric", options=None, keys=()):
    """encode_value → encode_table → decode_values, the path of every single append."""
    options = values.normalise_options(value_type, options)
    encoded = values.encode_value(value, value_type, options, keys, SID)
    table = values.encode_table(np.array([7], dtype=np.int64), [encoded])
    return values.decode_values(table, value_type, options)[0]


def same(left, right) -> bool:
    """Equality that also compares types (True is not 1) and the sign of zero."""
    if type(left) is not type(right):
        return False
    if isinstance(left, list):
        return len(left) == len(right) and all(map(same, left, right))
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    if isinstance(left, float):
        return left == right and math.copysign(1, left) == math.copysign(1, right)
    return left == right


def raises_naming(error, value, value_type="numeric", options=None, keys=()):
    """The value is rejected with ``error`` and the message names the stream and the value."""
    with pytest.raises(error) as caught:
        encode(value, value_type, options, keys)
    assert SID in str(caught.value)
    return str(caught.value)


# -- constants and options -------------------------------------------------------------------


def test_constants():
    assert values.VALUE_TYPES == ("numeric", "graph", "nominal")
    assert values.HIGH_ACCURACY.prec == 64


def test_canonical_json_is_sorted_compact_and_unicode():
    assert values.canonical_json({"b": [1, 2.5], "a": "é"}) == '{"a":"é","b":[1,2.5]}'
    assert values.canonical_json({"a": 1, "b": 2}) == values.canonical_json({"b": 2, "a": 1})
    with pytest.raises(ValueError):
        values.canonical_json(float("nan"))


def test_normalise_options_defaults():
    assert values.normalise_options(None, None) == {"high_accuracy": False}
    assert values.normalise_options("numeric", {}) == {"high_accuracy": False}
    assert values.normalise_options("numeric", HIGH) == HIGH
    assert values.normalise_options("nominal", None) == {}
    assert values.normalise_options("graph", {}) == {}


def test_normalise_options_returns_a_new_dict():
    given_options = {"high_accuracy": True}
    result = values.normalise_options("numeric", given_options)
    result["high_accuracy"] = False
    assert given_options == {"high_accuracy": True}


@pytest.mark.parametrize("value_type", ["text", "Numeric", 3, ["numeric"]])
def test_normalise_options_unknown_type(value_type):
    with pytest.raises(exceptions.UnsupportedValueType):
        values.normalise_options(value_type, None)


def test_normalise_options_rejects_bad_options():
    with pytest.raises(TypeError):
        values.normalise_options("numeric", [("high_accuracy", True)])
    with pytest.raises(TypeError):
        values.normalise_options("numeric", {"high_accuracy": 1})
    with pytest.raises(ValueError, match="precision"):
        values.normalise_options("numeric", {"precision": 10})
    with pytest.raises(ValueError, match="high_accuracy"):
        values.normalise_options("nominal", {"high_accuracy": True})


def test_unknown_value_type_in_encode():
    with pytest.raises(exceptions.UnsupportedValueType):
        values.encode_value(1, "text", {}, (), SID)
    with pytest.raises(exceptions.UnsupportedValueType):
        values.encode_arrays(np.arange(2), np.arange(2), "text", {}, SID)


# -- numeric, default mode -------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (0, 0),
        (-5, -5),
        (2**63 - 1, 2**63 - 1),
        (-(2**63), -(2**63)),
        (np.int32(4), 4),
        (np.uint8(200), 200),
        (Decimal("5.0"), 5),
        (Decimal("1E+3"), 1000),
        (Decimal("-0"), 0),
    ],
)
def test_int64_values_stay_ints(value, expected):
    assert encode(value)[0] == values.KIND_INT
    assert same(roundtrip(value), expected)


@pytest.mark.parametrize(
    "value, expected",
    [
        (1.5, 1.5),
        (-0.0, -0.0),
        (2**63, float(2**63)),
        (-(2**63) - 1, float(-(2**63) - 1)),
        (2**128, float(2**128)),
        (np.uint64(2**64 - 1), float(2**64 - 1)),
        (E64, float(E64)),
        (Decimal("0.1"), 0.1),
        (Decimal(2**70), float(2**70)),
        (Fraction(1, 3), 1 / 3),
        (Fraction(4, 1), 4.0),
        (np.float32(0.5), 0.5),
        (np.float64(0.1), 0.1),
    ],
)
def test_other_numbers_become_floats(value, expected):
    assert encode(value)[0] == values.KIND_FLOAT
    assert same(roundtrip(value), expected)


def test_big_int_reads_back_as_equal_float():
    assert roundtrip(2**128) == 2**128
    assert isinstance(roundtrip(2**128), float)


@pytest.mark.parametrize(
    "value",
    [None, float("nan"), np.nan, np.float32("nan"), Decimal("NaN"), Decimal("-NaN")],
)
@pytest.mark.parametrize("options", [DEFAULT, HIGH])
def test_nan_and_none_are_null(value, options):
    assert encode(value, options=options) == values.NULL
    assert roundtrip(value, options=options) is None


@pytest.mark.parametrize(
    "value", [float("inf"), -float("inf"), np.inf, Decimal("Infinity"), Decimal("-Infinity")]
)
@pytest.mark.parametrize("options", [DEFAULT, HIGH])
def test_infinite_numbers_are_rejected(value, options):
    raises_naming(ValueError, value, options=options)


HUGE = Decimal(10**400)


@pytest.mark.parametrize(
    "value, exact",
    [
        (10**400, HUGE),
        (-(10**400), -HUGE),
        (Fraction(10**400, 3), values.HIGH_ACCURACY.divide(HUGE, 3)),
        (Decimal("1e400"), HUGE),
    ],
)
def test_numbers_beyond_float_range(value, exact):
    """Rejected in both modes: every level keeps float64 partials, also in high accuracy."""
    raises_naming(ValueError, value)
    assert "float64 range" in raises_naming(ValueError, value, options=HIGH)
    assert "float64 range" in raises_naming(ValueError, exact, options=HIGH)


FLOAT_MAX = Decimal(np.finfo(np.float64).max)
FLOAT_TINY = Decimal(5e-324)  # the smallest subnormal float64


@pytest.mark.parametrize(
    "value",
    [0, Decimal("0E-1000"), Decimal("-0"), FLOAT_MAX, -FLOAT_MAX, FLOAT_TINY, -FLOAT_TINY,
     Decimal("1e308"), Decimal("1e-320"), Fraction(1, 10**300), 10**308],
)
def test_high_accuracy_accepts_the_float64_range(value):
    result = roundtrip(value, options=HIGH)
    assert result == values.HIGH_ACCURACY.plus(Decimal(value) if not isinstance(value, Fraction)
                                               else values.HIGH_ACCURACY.divide(1, 10**300))


@pytest.mark.parametrize(
    "value",
    [Decimal("1e999999"), Decimal("-1e999999"), Decimal("1e309"), FLOAT_MAX * 2,
     Decimal("1e-400"), Decimal("-1e-999999999"), Decimal((0, (1,), -(10**12))),
     Decimal((1, (9,), 10**12)), 10**309, Fraction(1, 10**400), Fraction(10**400, 7)],
)
def test_high_accuracy_rejects_magnitudes_outside_float64(value):
    """Decimal('1e999999') used to be accepted and to fail later, squared in the exact partial
    state (decimal.Overflow) while the stream's flush or downsampling was jammed."""
    assert "float64 range" in raises_naming(ValueError, value, options=HIGH)
    raises_naming(ValueError, {"c": 1, "s": value, "m": 1}, options=HIGH, keys=MEAN_KEYS)
    raises_naming(ValueError, {"c": 1, "f": {value: 1}}, options=HIGH, keys={"c", "f"})
    with pytest.raises(ValueError, match="float64 range"):
        bulk(np.array([1, value], dtype=object), HIGH)


@pytest.mark.parametrize("value", [Decimal("sNaN"), Decimal("-sNaN"), Decimal("sNaN12")])
@pytest.mark.parametrize("options", [DEFAULT, HIGH])
def test_signalling_nan_is_rejected_not_null(value, options):
    """Any arithmetic on a signalling NaN signals: storing it as a null would hide that."""
    assert "signalling" in raises_naming(ValueError, value, options=options)
    for aggregate, keys in [({"c": 1, "s": value, "m": 1}, MEAN_KEYS),
                            ({"c": value, "s": 1, "m": 1}, MEAN_KEYS),
                            ({"c": 1, "f": {1: value}}, {"c", "f"})]:
        raises_naming(ValueError, aggregate, options=options, keys=keys)
    with pytest.raises(ValueError, match="signalling"):
        bulk(np.array([1, value], dtype=object), options)


def test_infinite_message_names_the_value():
    assert "inf" in raises_naming(ValueError, float("-inf"))


@pytest.mark.parametrize("value", [True, False, np.bool_(True)])
@pytest.mark.parametrize("options", [DEFAULT, HIGH])
def test_bool_is_not_numeric(value, options):
    message = raises_naming(TypeError, value, options=options)
    assert repr(value) in message


@pytest.mark.parametrize("value", ["1", b"1", [1], (1,), {1}, object(), 1j, np.complex64(1)])
@pytest.mark.parametrize("options", [DEFAULT, HIGH])
def test_non_numbers_are_type_errors(value, options):
    raises_naming(TypeError, value, options=options)


# -- numeric, high accuracy ------------------------------------------------------------------


def test_high_accuracy_keeps_64_digits():
    assert encode(E64, options=HIGH) == (values.KIND_EXACT, None, None, str(E64))
    result = roundtrip(E64, options=HIGH)
    assert isinstance(result, Decimal)
    assert result == E64


def test_high_accuracy_rounds_to_64_significant_digits():
    long = Decimal("1." + "3" * 63 + "5" + "9" * 10)
    result = roundtrip(long, options=HIGH)
    assert result == Decimal("1." + "3" * 62 + "4")
    assert len(result.as_tuple().digits) == 64


@pytest.mark.parametrize(
    "value, expected",
    [
        (7, Decimal(7)),
        (2**128, Decimal(2**128)),
        (np.int64(-3), Decimal(-3)),
        (0.1, Decimal("0.1")),
        (1e300, Decimal("1e300")),
        (Decimal("1.000"), Decimal("1.000")),
        (Fraction(1, 3), Decimal("0." + "3" * 64)),
    ],
)
def test_high_accuracy_values_are_decimals(value, expected):
    result = roundtrip(value, options=HIGH)
    assert isinstance(result, Decimal)
    assert result == expected


def test_high_accuracy_float_reads_back_as_the_same_float():
    assert float(roundtrip(0.1, options=HIGH)) == 0.1
    assert roundtrip(0.1, options=HIGH) + roundtrip(0.2, options=HIGH) == Decimal("0.3")


def test_decimal_beyond_range_is_rejected():
    raises_naming(ValueError, Decimal("1e9999999"), options=HIGH)


def _in_float64_range(value: Decimal) -> bool:
    return value.is_zero() or 0 < abs(float(value)) < math.inf


@settings(max_examples=60, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_roundtrip_exactly(value):
    assert same(roundtrip(value), value)
    assert float(roundtrip(value, options=HIGH)) == value


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=-(2**200), max_value=2**200))
def test_ints_roundtrip(value):
    expected = value if -(2**63) <= value < 2**63 else float(value)
    assert same(roundtrip(value), expected)
    assert roundtrip(value, options=HIGH) == values.HIGH_ACCURACY.plus(Decimal(value))


@settings(max_examples=60, deadline=None)
@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_decimals_roundtrip(value):
    if not _in_float64_range(value):
        raises_naming(ValueError, value, options=HIGH)
        return
    high = roundtrip(value, options=HIGH)
    assert high == values.HIGH_ACCURACY.plus(value)
    if len(value.as_tuple().digits) <= 64:
        assert high == value
    assert roundtrip(value) == float(value) or roundtrip(value) == value


# -- pre-aggregated numeric dicts ------------------------------------------------------------


def test_aggregate_roundtrip_default():
    value = {"c": 3, "s": 6, "m": 2.0}
    encoded = encode(value, keys=MEAN_KEYS)
    assert encoded[0] == values.KIND_AGGREGATE
    assert same(roundtrip(value, keys=MEAN_KEYS), value)


def test_aggregate_roundtrip_high_accuracy():
    total = values.HIGH_ACCURACY.multiply(E64, 40)
    result = roundtrip({"c": 40, "s": total, "m": E64}, options=HIGH, keys=MEAN_KEYS)
    assert result == {"c": 40, "s": total, "m": E64}
    assert isinstance(result["s"], Decimal) and isinstance(result["m"], Decimal)
    assert type(result["c"]) is int


def test_aggregate_numbers_are_normalised_like_scalars():
    result = roundtrip({"c": 2, "s": 2**128, "m": float("nan")}, keys=MEAN_KEYS)
    assert same(result, {"c": 2, "s": float(2**128), "m": None})


def test_aggregate_of_an_empty_bucket():
    value = {"c": 0, "s": None, "m": None}
    assert same(roundtrip(value, keys=MEAN_KEYS), value)


def test_aggregate_frequencies_keep_number_keys():
    keys = {"c", "f"}
    value = {"c": 3, "f": {1: 2, 2.5: 1}}
    assert same(roundtrip(value, keys=keys), value)
    result = roundtrip(value, options=HIGH, keys=keys)
    assert result == {"c": 3, "f": {Decimal(1): 2, Decimal("2.5"): 1}}
    assert all(isinstance(key, Decimal) for key in result["f"])


@pytest.mark.parametrize(
    "value, keys",
    [
        ({"c": 1, "s": 1}, MEAN_KEYS),
        ({"c": 1, "s": 1, "m": 1, "u": 1}, MEAN_KEYS),
        ({"c": 1, "s": 1, "x": 1}, MEAN_KEYS),
        ({}, MEAN_KEYS),
        ({"c": 1}, ()),
        ({"c": 1}, None),
    ],
)
@pytest.mark.parametrize("options", [DEFAULT, HIGH])
def test_aggregate_keys_must_match_exactly(value, keys, options):
    raises_naming(ValueError, value, options=options, keys=keys)


def test_aggregate_key_message_lists_the_difference():
    message = raises_naming(ValueError, {"c": 1, "s": 1, "u": 2}, keys=MEAN_KEYS)
    assert "missing m" in message and "'u'" in message


@pytest.mark.parametrize("inner", ["1", True, [1], {"a": 1}, 1j])
@pytest.mark.parametrize("options", [DEFAULT, HIGH])
def test_aggregate_non_number_inside_is_type_error(inner, options):
    raises_naming(TypeError, {"c": 1, "s": inner, "m": 1}, options=options, keys=MEAN_KEYS)


@pytest.mark.parametrize("count", [-1, 1.5, None, float("nan")])
def test_aggregate_count_must_be_a_non_negative_integer(count):
    with pytest.raises((TypeError, ValueError)) as caught:
        encode({"c": count, "s": 1, "m": 1}, keys=MEAN_KEYS)
    assert SID in str(caught.value)


@pytest.mark.parametrize("options", [DEFAULT, HIGH])
def test_aggregate_counts_are_bounded(options):
    """Counts above 2**32 - 1 are rejected at append: {'c': 2**63} used to be accepted and to
    fail at commit (int64 overflow), jamming every later flush of the store."""
    assert values.MAX_COUNT == 2**32 - 1
    largest = values.MAX_COUNT
    assert same(roundtrip({"c": largest, "s": 1, "m": 1}, options=options, keys=MEAN_KEYS)["c"],
                largest)
    table = roundtrip({"c": largest, "f": {3: largest}}, options=options, keys={"c", "f"})
    assert list(table["f"].values()) == [largest]
    for count in (largest + 1, 2**63, 2**64, 10**400, float(2**70), Decimal("1e30")):
        message = raises_naming(ValueError, {"c": count, "s": 1, "m": 1}, options=options,
                                keys=MEAN_KEYS)
        assert "4294967295" in message or "float" in message
        raises_naming(ValueError, {"c": 1, "f": {3: count}}, options=options, keys={"c", "f"})
    # keys that become the same number merge, and their total is bounded too
    raises_naming(ValueError, {"c": 1, "f": {2**70: largest, 2**70 + 1: 1}}, keys={"c", "f"})


@pytest.mark.parametrize("options", [DEFAULT, HIGH])
def test_aggregate_frequencies_add_up_to_the_count(options):
    """A bucket's frequencies always add up to its count: a pre-aggregated value whose 'f'
    counts other values than its 'c' would break that in every bucket it joins."""
    assert roundtrip({"c": 3, "f": {1: 2, 2: 1}}, options=options, keys={"c", "f"})["c"] == 3
    for wrong in ({"c": 3, "f": {1: 2, 2: 2}}, {"c": 3, "f": {}}, {"c": 0, "f": {1: 1}}):
        message = raises_naming(ValueError, wrong, options=options, keys={"c", "f"})
        assert "add up to its count" in message
    assert roundtrip({"c": None, "f": None}, options=options, keys={"c", "f"})["c"] == 0


def test_aggregate_integral_float_count_reads_back_as_int():
    assert same(roundtrip({"c": 2.0, "s": 1, "m": 0.5}, keys=MEAN_KEYS)["c"], 2)


def test_aggregate_infinity_inside_is_rejected():
    raises_naming(ValueError, {"c": 1, "s": float("inf"), "m": 1}, keys=MEAN_KEYS)


def test_aggregate_bad_frequencies():
    raises_naming(TypeError, {"c": 1, "f": [1]}, keys={"c", "f"})
    raises_naming(TypeError, {"c": 1, "f": {"a": 1}}, keys={"c", "f"})
    raises_naming(ValueError, {"c": 1, "f": {1: -2}}, keys={"c", "f"})


# -- nominal ---------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**100), max_value=2**100)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(json_values)
def test_nominal_values_roundtrip_exactly(value):
    assert same(roundtrip(value, "nominal"), value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "ünïcødé ✓",
        True,
        False,
        0,
        2**200,
        -0.0,
        1e-300,
        [],
        {},
        [None, [True, 1]],
        {"nested": {"deep": [1, {"x": "y"}]}, "flag": False},
    ],
)
def test_nominal_examples_roundtrip(value):
    assert encode(value, "nominal")[0] == values.KIND_JSON
    assert same(roundtrip(value, "nominal"), value)


def test_nominal_none_is_null():
    assert encode(None, "nominal") == values.NULL


def test_nominal_text_is_canonical():
    assert encode({"b": 1, "a": [2]}, "nominal") == encode({"a": [2], "b": 1}, "nominal")


def test_nominal_numpy_scalars_are_plain_values():
    assert same(
        roundtrip([np.int64(3), np.float64(0.5), np.bool_(True)], "nominal"), [3, 0.5, True]
    )


@pytest.mark.parametrize(
    "value",
    [
        (1, 2),
        {1, 2},
        Decimal("1.5"),
        object(),
        b"bytes",
        {1: "int key"},
        [{"a": (1,)}],
        np.datetime64("2020-01-01"),
    ],
)
def test_nominal_rejects_non_json(value):
    raises_naming(TypeError, value, "nominal")


@pytest.mark.parametrize("value", [float("nan"), [float("inf")], {"a": -float("inf")}, "\ud800"])
def test_nominal_rejects_non_json_numbers_and_bad_text(value):
    raises_naming(ValueError, value, "nominal")


# -- graph -----------------------------------------------------------------------------------

GRAPH = {
    "v": [{"i": "a", "label": "router"}, {"i": 2}, {"i": [1, 2]}],
    "e": [{"f": "a", "t": 2, "weight": 0.5}, {"f": [1, 2], "t": "a"}],
    "extra": {"kept": True},
}


def test_graph_roundtrip_keeps_extra_fields():
    assert encode(GRAPH, "graph")[0] == values.KIND_JSON
    assert same(roundtrip(GRAPH, "graph"), GRAPH)


def test_empty_graph_and_none():
    assert same(roundtrip({"v": [], "e": []}, "graph"), {"v": [], "e": []})
    assert encode(None, "graph") == values.NULL


@pytest.mark.parametrize("value", [[], "graph", 1, ({"v": [], "e": []},)])
def test_graph_must_be_a_dict(value):
    raises_naming(TypeError, value, "graph")


@pytest.mark.parametrize(
    "value",
    [
        {"e": []},
        {"v": []},
        {"v": [{"label": "no id"}], "e": []},
        {"v": [{"i": 1}, {"i": 1}], "e": []},
        {"v": [{"i": 1}], "e": [{"t": 1}]},
        {"v": [{"i": 1}], "e": [{"f": 1}]},
        {"v": [{"i": 1}], "e": [{"f": 1, "t": 2}]},
        {"v": [{"i": 1}], "e": [{"f": 1.0, "t": 1}]},
    ],
)
def test_graph_structure_errors(value):
    raises_naming(ValueError, value, "graph")


@pytest.mark.parametrize(
    "value",
    [
        {"v": {"i": 1}, "e": []},
        {"v": [1], "e": []},
        {"v": [], "e": "x"},
        {"v": [{"i": 1}], "e": [[1, 1]]},
        {"v": [], "e": [], "x": (1,)},
    ],
)
def test_graph_wrong_container_types(value):
    raises_naming(TypeError, value, "graph")


# -- tables ----------------------------------------------------------------------------------


def test_encode_table_schema_and_columns():
    rows = [encode(1), encode(2.5), encode(None), encode(E64, options=HIGH), encode("x", "nominal")]
    table = values.encode_table(np.arange(5, dtype=np.int64) * 10, rows)
    assert table.schema == RAW_SCHEMA
    assert table.to_pydict() == {
        "t": [0, 10, 20, 30, 40],
        "k": [1, 2, 0, 3, 4],
        "i": [1, None, None, None, None],
        "f": [None, 2.5, None, None, None],
        "s": [None, None, None, str(E64), '"x"'],
    }


def test_encode_table_empty_and_mismatch():
    assert values.encode_table(np.array([], dtype=np.int64), []).schema == RAW_SCHEMA
    with pytest.raises(ValueError):
        values.encode_table(np.arange(2), [encode(1)])


def test_encode_slots_is_encode_table_of_the_tuples():
    """A buffer keeps plain floats and ints as themselves and anything else as its tuple."""
    items = [1.5, 2, None, float("nan"), E64, 2**70, -0.0, {"c": 1, "s": 2, "m": 2.0}]
    encoded = [values.encode_value(v, "numeric", DEFAULT, MEAN_KEYS, SID) for v in items]
    slots = [values.slot(e) for e in encoded]
    assert [type(x) for x in slots[:3]] == [float, int, tuple]
    t = list(range(len(items)))
    assert values.encode_slots(t, slots).equals(values.encode_table(np.array(t), encoded))
    for kind in ([0.5, -0.0, 1e300], [1, -(2**63), 2**63 - 1]):
        column = values.encode_slots([5, 6, 7], kind)
        assert column.schema == RAW_SCHEMA
        assert same(values.decode_values(column, "numeric", DEFAULT), kind)
    assert values.encode_slots([], []).schema == RAW_SCHEMA
    with pytest.raises(ValueError):
        values.encode_slots([1, 2], [1.0])


def test_decode_values_mixed_kinds():
    rows = [
        encode(1),
        encode(2.5),
        encode(None),
        encode({"c": 1, "s": 2, "m": 2.0}, keys=MEAN_KEYS),
    ]
    table = values.encode_table(np.arange(4), rows)
    assert same(
        values.decode_values(table, "numeric", DEFAULT), [1, 2.5, None, {"c": 1, "s": 2, "m": 2.0}]
    )
    assert values.decode_values(table, "numeric", HIGH) == [
        Decimal(1),
        Decimal("2.5"),
        None,
        {"c": 1, "s": Decimal(2), "m": Decimal("2.0")},
    ]


def test_plain_kinds_read_as_decimals_in_high_accuracy_mode():
    """Rows written before a mode was known still read back in the stream's number type."""
    table = values.encode_table(np.arange(3), [encode(2), encode(0.1), encode(None)])
    result = values.decode_values(table, "numeric", HIGH)
    assert result == [Decimal(2), Decimal("0.1"), None]
    assert all(isinstance(x, Decimal) for x in result[:2])


def test_decode_values_of_chunked_and_empty_tables():
    first = values.encode_table(np.arange(2), [encode(1), encode(2)])
    second = values.encode_table(np.arange(2), [encode(3.5), encode(None)])
    table = pa.concat_tables([first, second])
    assert same(values.decode_values(table, "numeric", DEFAULT), [1, 2, 3.5, None])
    assert values.decode_values(RAW_SCHEMA.empty_table(), "numeric", DEFAULT) == []


def test_decode_value_of_one_tuple():
    assert same(values.decode_value(encode(3), "numeric", DEFAULT), 3)
    assert values.decode_value(encode(E64, options=HIGH), "numeric", HIGH) == E64
    assert same(values.decode_value(encode([1, "a"], "nominal"), "nominal", {}), [1, "a"])


# -- bulk arrays -----------------------------------------------------------------------------


def bulk(array, options=DEFAULT, value_type="numeric"):
    return values.encode_arrays(
        np.arange(len(array), dtype=np.int64), array, value_type, options, SID
    )


def singles(items, options=DEFAULT, value_type="numeric"):
    encoded = [values.encode_value(v, value_type, options, (), SID) for v in items]
    return values.encode_table(np.arange(len(items), dtype=np.int64), encoded)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint16, np.uint64])
def test_int_arrays_are_kind_int(dtype):
    table = bulk(np.array([1, 2, 3], dtype=dtype))
    assert table.schema == RAW_SCHEMA
    assert table.column("k").to_pylist() == [1, 1, 1]
    assert same(values.decode_values(table, "numeric", DEFAULT), [1, 2, 3])


def test_big_uint64_becomes_float():
    table = bulk(np.array([1, 2**64 - 1], dtype=np.uint64))
    assert table.column("k").to_pylist() == [1, 2]
    assert same(values.decode_values(table, "numeric", DEFAULT), [1, float(2**64 - 1)])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_arrays_nan_is_null(dtype):
    table = bulk(np.array([1.5, np.nan, -0.0], dtype=dtype))
    assert table.column("k").to_pylist() == [2, 0, 2]
    assert same(values.decode_values(table, "numeric", DEFAULT), [1.5, None, -0.0])


@pytest.mark.parametrize("array", [np.array([1.0, np.inf]), pa.array([-np.inf, 1.0])])
def test_float_arrays_reject_infinity(array):
    with pytest.raises(ValueError, match="inf") as caught:
        bulk(array)
    assert SID in str(caught.value)


@pytest.mark.parametrize("array", [np.array([True, False]), pa.array([True, None])])
def test_bool_arrays_are_rejected(array):
    with pytest.raises(TypeError, match=f"{SID}: bool"):
        bulk(array)


@pytest.mark.parametrize(
    "array",
    [np.array(["1", "2"]), np.array([1 + 1j]), np.array(["2020-01-01"], dtype="datetime64[D]")],
)
def test_other_dtypes_are_rejected(array):
    with pytest.raises(TypeError, match=SID):
        bulk(array)


def test_arrow_arrays_with_nulls():
    table = bulk(pa.array([1, None, 3], type=pa.int32()))
    assert same(values.decode_values(table, "numeric", DEFAULT), [1, None, 3])
    table = bulk(pa.chunked_array([[1.5, None], [float("nan"), 2.0]]))
    assert same(values.decode_values(table, "numeric", DEFAULT), [1.5, None, None, 2.0])
    table = bulk(pa.nulls(2))
    assert values.decode_values(table, "numeric", DEFAULT) == [None, None]


def test_object_and_decimal_arrays_fall_back_to_single_values():
    items = [1, 2.5, None, Decimal("1.25"), 2**70]
    assert bulk(np.array(items, dtype=object)).equals(singles(items))
    decimals = pa.array([Decimal("1.5"), None], type=pa.decimal128(5, 2))
    assert values.decode_values(bulk(decimals, HIGH), "numeric", HIGH) == [Decimal("1.50"), None]
    with pytest.raises(TypeError, match=SID):
        bulk(np.array([1, True], dtype=object))


def test_bulk_high_accuracy_matches_single_values():
    floats = np.array([0.1, np.nan, 1e300, -0.0, 5e-324])
    assert bulk(floats, HIGH).equals(singles(floats.tolist(), HIGH))
    ints = np.array([1, -(2**63), 2**63 - 1])
    assert bulk(ints, HIGH).equals(singles(ints.tolist(), HIGH))
    big = np.array([2**64 - 1], dtype=np.uint64)
    assert values.decode_values(bulk(big, HIGH), "numeric", HIGH) == [Decimal(2**64 - 1)]


def test_bulk_nominal_and_graph_use_single_values():
    items = ["a", [1, 2], {"k": None}, None]
    assert bulk(np.array(items, dtype=object), value_type="nominal").equals(
        singles(items, value_type="nominal")
    )
    assert bulk(pa.array(["x", "y"]), value_type="nominal").equals(
        singles(["x", "y"], value_type="nominal")
    )
    with pytest.raises(ValueError, match=SID):
        bulk([{"v": []}], value_type="graph")


def test_bulk_length_and_shape_checks():
    with pytest.raises(ValueError):
        values.encode_arrays(np.arange(3), np.arange(2), "numeric", DEFAULT, SID)
    with pytest.raises(ValueError):
        values.encode_arrays(np.arange(2), np.ones((2, 2)), "numeric", DEFAULT, SID)
    with pytest.raises(TypeError):
        values.encode_arrays(np.array([0.5]), np.arange(1), "numeric", DEFAULT, SID)


@pytest.mark.parametrize("options, count", [(DEFAULT, 1_000_000), (HIGH, 100_000)])
def test_bulk_numeric_path_has_no_per_value_python_work(monkeypatch, options, count):
    def no_single_values(*args, **kwargs):
        raise AssertionError("encode_value called on the bulk path")

    monkeypatch.setattr(values, "encode_value", no_single_values)
    timestamps = np.arange(count, dtype=np.int64)
    ints = values.encode_arrays(timestamps, np.arange(count), "numeric", options, SID)
    floats = values.encode_arrays(timestamps, np.linspace(0, 1, count), "numeric", options, SID)
    assert ints.num_rows == floats.num_rows == count


def test_bulk_pre_aggregated_dicts_with_value_keys():
    table = values.encode_arrays(
        np.arange(1),
        np.array([{"c": 1, "s": 2, "m": 2.0}]),
        "numeric",
        DEFAULT,
        SID,
        value_keys=MEAN_KEYS,
    )
    assert values.decode_values(table, "numeric", DEFAULT) == [{"c": 1, "s": 2, "m": 2.0}]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(allow_infinity=False, width=64), max_size=20), st.booleans())
def test_bulk_floats_equal_single_values(items, high_accuracy):
    options = HIGH if high_accuracy else DEFAULT
    table = bulk(np.array(items, dtype=np.float64), options)
    assert table.equals(singles(items, options))
    decoded = values.decode_values(table, "numeric", options)
    expected = [None if math.isnan(x) else x for x in items]
    assert [None if x is None else float(x) for x in decoded] == expected


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=20))
def test_bulk_ints_equal_single_values(items):
    array = np.array(items, dtype=np.int64)
    assert bulk(array).equals(singles(items))
    assert values.decode_values(bulk(array), "numeric", DEFAULT) == items


# -- hostile values ----------------------------------------------------------------------------

ALLOWED = (TypeError, ValueError, exceptions.DatastreamException)
CONFIGS = [("numeric", DEFAULT), ("numeric", HIGH), ("nominal", {}), ("graph", {})]
KEYS = {"numeric": set(nasty.DOWNSAMPLER_KEYS), "nominal": {"c", "o", "r", "f"},
        "graph": {"c"}}
WIDTH = 10_000_000


def _aggregate_everything(table: pa.Table, value_type: str, options: dict) -> None:
    """What commits and downsampling do with accepted raw rows: nothing of it may fail."""
    values.decode_values(table, value_type, options)
    if value_type == "numeric":
        raw_numbers.numeric_values(table, values.kinds_of(table))
    rows = downsamplers.partials_from_raw(table, value_type, options, WIDTH, True,
                                          with_frequencies=True)
    coarser = downsamplers.combine_partials(rows, 6 * WIDTH, value_type, options, raw=table)
    for level_rows in (rows, coarser):
        downsamplers.finalize(level_rows, value_type, options, KEYS[value_type], None, WIDTH)


def _object_array(items: list) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    for position, item in enumerate(items):
        array[position] = item
    return array


@settings(max_examples=500, deadline=None)
@given(nasty.values, st.sampled_from(CONFIGS))
# values that used to get in and fail later, in the exact partial state or the int64 counts
@example(Decimal("1e999999"), ("numeric", HIGH))
@example({**dict.fromkeys(nasty.DOWNSAMPLER_KEYS), "c": 2**64}, ("numeric", DEFAULT))
@example({**dict.fromkeys(nasty.DOWNSAMPLER_KEYS), "c": 1, "f": {1: 2**64}}, ("numeric", HIGH))
def test_hostile_values_raise_only_type_or_value_errors(value, config):
    """Nothing but TypeError/ValueError (or a datastream subclass) comes out of validation,
    and a value that gets in can be aggregated (three copies, two levels) without error."""
    value_type, options = config
    try:
        encoded = values.encode_value(value, value_type, options, KEYS[value_type], SID)
    except ALLOWED:
        return
    table = values.encode_table(np.array([0, 1, 1], dtype=np.int64), [encoded] * 3)
    _aggregate_everything(table, value_type, options)


@settings(max_examples=300, deadline=None)
@given(st.lists(nasty.values, max_size=5), st.sampled_from(CONFIGS))
def test_hostile_object_arrays_raise_only_type_or_value_errors(items, config):
    value_type, options = config
    timestamps = np.arange(len(items), dtype=np.int64)
    try:
        table = values.encode_arrays(timestamps, _object_array(items), value_type, options, SID,
                                     value_keys=KEYS[value_type])
    except ALLOWED:
        return
    _aggregate_everything(table, value_type, options)


hostile_arrays = st.one_of(
    hnp.arrays(
        st.one_of(hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(), hnp.floating_dtypes(),
                  hnp.complex_number_dtypes(), hnp.boolean_dtypes(), hnp.datetime64_dtypes(),
                  hnp.timedelta64_dtypes(), hnp.byte_string_dtypes(), hnp.unicode_string_dtypes(),
                  st.just(np.dtype(np.longdouble))),
        st.integers(0, 6),
    ),
    hnp.arrays(np.float64, st.tuples(st.integers(0, 3), st.integers(0, 3))),
    st.lists(st.integers(-(2**63), 2**63 - 1) | st.none(), max_size=5).map(
        lambda items: pa.array(items, pa.int64())),
    st.lists(st.integers(0, 2**64 - 1), max_size=5).map(lambda items: pa.array(items, pa.uint64())),
    st.lists(st.floats() | st.none(), max_size=5).map(pa.array),
    st.lists(st.decimals(-(10**60), 10**60, places=10) | st.none(), max_size=4).map(
        lambda items: pa.array(items, pa.decimal256(76, 10))),
    st.lists(st.text(max_size=3) | st.none(), max_size=4).map(pa.array),
    st.lists(st.booleans(), max_size=4).map(pa.array),
)


@settings(max_examples=300, deadline=None)
@given(hostile_arrays, st.sampled_from(CONFIGS))
def test_hostile_numpy_and_arrow_arrays_raise_only_type_or_value_errors(array, config):
    value_type, options = config
    try:
        table = values.encode_arrays(np.arange(len(array), dtype=np.int64), array, value_type,
                                     options, SID, value_keys=KEYS[value_type])
    except ALLOWED:
        return
    _aggregate_everything(table, value_type, options)

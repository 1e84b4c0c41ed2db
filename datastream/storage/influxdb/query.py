"""The portable tag query language (``datastream.tags``) translated into PostgreSQL.

Stored tags are kept twice: as given (JSON text, returned to callers) and in a *query form*
(``jsonb``, GIN-indexed) that PostgreSQL compares with exactly Python's semantics:

* floats are written as their exact decimal value (``Decimal(0.1)``), so that ``numeric``
  comparisons between ints and floats agree with Python's exact ones, also beyond 2**53;
* strings have ``\\x01`` written as ``\\x01\\x02`` and NUL as ``\\x01\\x01``: jsonb cannot hold
  NUL, and this escape keeps equality, ``C``-collation order and substring tests intact.

The translation is parameterised throughout (values and JSON paths are ``%s`` parameters; only
fixed SQL text is formatted in). Case-insensitive operators compare ASCII case exactly in SQL and
let every non-ASCII candidate through; callers re-check rows with ``tags.matches``, which makes
the result exact whatever Unicode case mapping the server has.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from string import Formatter
from typing import Any

Sql = tuple[str, list[Any]]
_FORMATTER = Formatter()
_COMPARISONS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


class Param:
    """A value passed to the driver as a parameter."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def sql(template: str, **parts: Sql | Param) -> Sql:
    """Fill ``{name}`` slots of fixed SQL text with fragments or parameters, keeping the
    parameters in the order their placeholders appear. Literal braces are written ``{{ }}``."""
    text: list[str] = []
    params: list[Any] = []
    for literal, field, _, _ in _FORMATTER.parse(template):
        text.append(literal)
        if field is None:
            continue
        part = parts[field]
        if isinstance(part, Param):
            text.append("%s")
            params.append(part.value)
        else:
            text.append(part[0])
            params.extend(part[1])
    return "".join(text), params


# -- the query form of JSON values ------------------------------------------------------------


def escape_text(text: str) -> str:
    return text.replace("\x01", "\x01\x02").replace("\x00", "\x01\x01")


def query_json(value: Any) -> str:
    """JSON text of ``value`` in the query form (see module docstring)."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return exact_decimal(value)
    if isinstance(value, str):
        return json.dumps(escape_text(value))
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(query_json(item) for item in value) + "]"
    if isinstance(value, dict):
        items = (json.dumps(key) + ":" + query_json(item) for key, item in value.items())
        return "{" + ",".join(items) + "}"
    raise TypeError(f"tag values must be JSON data, got {value!r}")


def exact_decimal(value: float) -> str:
    """The exact decimal expansion of a finite float, as a JSON number."""
    return str(Decimal(value))


def _nest(path: list[str], value_json: str) -> str:
    for key in reversed(path):
        value_json = "{" + json.dumps(key) + ":" + value_json + "}"
    return value_json


# -- translation ------------------------------------------------------------------------------


def translate(query: dict[str, Any] | None) -> Sql:
    """A WHERE condition over the columns ``stream_id`` and ``tags`` (query form) selecting the
    streams that match ``query`` (validated by ``tags.validate_query``)."""
    conditions = []
    for key, condition in (query or {}).items():
        if key == "stream_id":
            conditions.append(_stream_id(condition))
        else:
            conditions.append(_condition([key], condition))
    return _all(conditions)


def _all(conditions: list[Sql]) -> Sql:
    return _joined(conditions, "AND", "TRUE")


def _any_of(conditions: list[Sql]) -> Sql:
    return _joined(conditions, "OR", "FALSE")


def _joined(conditions: list[Sql], operator: str, empty: str) -> Sql:
    """Conditions joined by ``operator`` in parentheses, their parameters in order; ``empty``
    when there are none."""
    if not conditions:
        return empty, []
    return (
        "(" + f" {operator} ".join(text for text, _ in conditions) + ")",
        [param for _, params in conditions for param in params],
    )


def _stream_id(condition: Any) -> Sql:
    if isinstance(condition, str):
        return sql("stream_id = {id}", id=Param(condition))
    if isinstance(condition, dict) and len(condition) == 1:
        ((operator, argument),) = condition.items()
        if operator == "$eq" and isinstance(argument, str):
            return sql("stream_id = {id}", id=Param(argument))
        if operator == "$in" and isinstance(argument, (list, tuple)):
            ids = [item for item in argument if isinstance(item, str)]
            return sql("stream_id = ANY({ids}::text[])", ids=Param(ids))
    raise ValueError(f"unsupported stream_id condition: {condition!r}")


def _value(path: list[str]) -> Sql:
    """The stored value at ``path`` (SQL NULL when missing). ``->`` with a text key yields NULL
    on arrays, so paths never index into lists."""
    return "(tags" + " -> %s::text" * len(path) + ")", list(path)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _condition(path: list[str], condition: Any) -> Sql:
    if isinstance(condition, dict) and any(str(key).startswith("$") for key in condition):
        return _all([_operator(path, op, argument) for op, argument in condition.items()])
    if isinstance(condition, dict):
        is_dict = sql("jsonb_typeof({v}) = 'object'", v=_value(path))
        return _all([is_dict] + [_condition(path + [k], c) for k, c in condition.items()])
    if isinstance(condition, (list, tuple)):
        wanted = query_json(condition)
        return sql(
            "(tags @> {doc}::jsonb AND {v} = {wanted}::jsonb)",
            doc=Param(_nest(path, wanted)), v=_value(path), wanted=Param(wanted),
        )
    return _equal_or_contains(path, condition)


def _equal_or_contains(path: list[str], wanted: Any) -> Sql:
    """The stored value equals ``wanted`` or is a list holding an element equal to it. For
    scalars this is exactly jsonb containment (index-assisted); for lists and dicts containment
    would be too loose, so equality is spelled out."""
    text = query_json(wanted)
    if _is_scalar(wanted):
        return sql(
            "(tags @> {direct}::jsonb OR tags @> {element}::jsonb)",
            direct=Param(_nest(path, text)), element=Param(_nest(path, "[" + text + "]")),
        )
    return _either(_value(path), lambda item: sql("{x} = {w}::jsonb", x=item, w=Param(text)))


def _either(value: Sql, test: Callable[[Sql], Sql]) -> Sql:
    """MongoDB-like: the value itself or, for a stored list, any of its elements passes."""
    return sql(
        "({direct} OR (jsonb_typeof({v}) = 'array' AND EXISTS (SELECT 1 FROM"
        " jsonb_array_elements({v}) AS e(v) WHERE {each})))",
        direct=test(value), v=value, each=test(("e.v", [])),
    )


def _operator(path: list[str], operator: str, argument: Any) -> Sql:
    value = _value(path)
    if operator == "$eq":
        return _equal_or_contains(path, argument)
    if operator == "$ne":
        return sql("NOT COALESCE({eq}, FALSE)", eq=_equal_or_contains(path, argument))
    if operator == "$exists":
        return sql("{v} IS NOT NULL" if argument else "{v} IS NULL", v=value)
    if operator == "$in":
        return _any_of([_equal_or_contains(path, item) for item in argument])
    if operator == "$all":
        if not argument:
            return "FALSE", []
        return _all([_equal_or_contains(path, item) for item in argument])
    if operator in _COMPARISONS:
        return _either(value, _comparison(_COMPARISONS[operator], argument))
    if operator == "$contains":
        return _either(value, _text("strpos({s}, {arg}) > 0", escape_text(argument)))
    if operator in ("$iexact", "$icontains"):
        return _either(value, _caseless(operator, argument))
    raise ValueError(f"unknown query operator {operator!r}")


def _comparison(op: str, argument: Any) -> Callable[[Sql], Sql]:
    if isinstance(argument, str):
        template = (
            "CASE WHEN jsonb_typeof({x}) = 'string' THEN ({x} #>> '{{}}') COLLATE \"C\" "
            + op + " {arg} ELSE FALSE END"
        )
        arg = Param(escape_text(argument))
    elif isinstance(argument, (int, float)) and not isinstance(argument, bool):
        template = (
            "CASE WHEN jsonb_typeof({x}) = 'number' THEN ({x})::numeric "
            + op + " {arg}::numeric ELSE FALSE END"
        )
        arg = Param(query_json(argument))
    else:
        raise ValueError(f"comparison needs a number or a str, got {argument!r}")
    return lambda item: sql(template, x=item, arg=arg)


def _text(test: str, argument: str) -> Callable[[Sql], Sql]:
    template = "CASE WHEN jsonb_typeof({x}) = 'string' THEN " + test + " ELSE FALSE END"
    return lambda item: sql(template, x=item, s=sql("({x} #>> '{{}}')", x=item),
                            arg=Param(argument))


def _caseless(operator: str, argument: str) -> Callable[[Sql], Sql]:
    """ASCII case folding agrees between Python and any server collation; strings with other
    characters are all candidates (re-checked by the caller)."""
    if not argument.isascii():
        return _text("TRUE", "")
    non_ascii = "octet_length({s}) <> char_length({s})"
    if operator == "$iexact":
        test = "(lower({s} COLLATE \"C\") = {arg} OR " + non_ascii + ")"
    else:
        test = "(strpos(lower({s} COLLATE \"C\"), {arg}) > 0 OR " + non_ascii + ")"
    return _text(test, escape_text(argument.lower()))

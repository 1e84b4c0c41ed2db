"""Tag rules (behaviour §3.2), the portable query language (behaviour §3.4) and tag mutation (§3.5).

:func:`matches` is the reference matcher: every backend either calls it or translates queries
into its own language with exactly these semantics (the contract suite compares them).

Decisions in detail (beyond behaviour §3.2 and §3.4):

* Tags must be a dict (``TypeError`` otherwise). A tag value that is not JSON data (tuple, set,
  Decimal, datetime, numpy scalars other than float64, which is a float) raises ``TypeError``;
  a float NaN or ±inf raises ``ValueError`` (not JSON, and never equal to itself so it could
  never be queried); so does a string that is not valid Unicode (a lone surrogate).
* In a query, a top-level key of RESERVED_TAGS is an ordinary user-tag path (behaviour §3.4 says so
  of ``stream_id`` in ``find_streams``). User tags never hold such a key, so the condition is
  decided without looking at any stream: see :func:`without_reserved`. ``stream_id`` selects ids
  only with ``allow_stream_id=True``.
* Limits (behaviour §3.2): a tag document, a path document of ``remove_tag`` or a query nested
  deeper than ``MAX_DEPTH`` (32) containers, or whose canonical JSON is over ``MAX_BYTES``
  (64 KiB of UTF-8), raises ``ValueError`` naming the limit. Depth is checked without
  recursion first, so no ``RecursionError`` can come out of any later step.
* Operator arguments of the wrong shape (``$in`` not a list, ``$exists`` not a bool...) raise
  ``ValueError``; ``$gt``/``$gte``/``$lt``/``$lte`` take a number or a str.
* A scalar ``None`` leaf matches a stored ``None`` (or a list holding one), never a missing field;
  use ``{'$exists': False}`` for that. ``$in`` never matches a missing field either.
* An empty dict as a query leaf matches a stored dict (with any content).
* Sub-field matches descend into stored dicts only, never into lists of dicts.
* ``$all`` with an empty list matches nothing (as in MongoDB).
* Case-insensitive operators compare ``str.lower()`` of both sides.
* :func:`remove_paths`: an empty dict names its key itself; dicts emptied by a removal stay.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

from .exceptions import ReservedTagNameError
from .messages import show
from .raw_kinds import canonical_json

RESERVED_TAGS = (
    "stream_id",
    "value_downsamplers",
    "time_downsamplers",
    "highest_granularity",
    "derived_from",
    "contributes_to",
    "pending_backprocess",
    "latest_datapoint",
    "earliest_datapoint",
    "downsampled_until",
    "value_type",
    "value_type_options",
    "retention",
)
STREAM_ID = "stream_id"
MAX_DEPTH = 32
MAX_BYTES = 64 * 1024


# -- limits ----------------------------------------------------------------------------------


def check_depth(document: Any, what: str = "tags") -> None:
    """ValueError when containers nest deeper than MAX_DEPTH (the document itself is level 1).

    Iterative, so that any depth (even a self-containing list) is refused without recursion.
    """
    pending = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list | tuple):
            children = value
        else:
            continue
        if depth > MAX_DEPTH:
            raise ValueError(f"{what} nest deeper than the limit of {MAX_DEPTH} levels")
        pending.extend((child, depth + 1) for child in children)


def check_size(document: Any, what: str = "tags") -> None:
    """ValueError when the canonical JSON of a (validated) document exceeds MAX_BYTES."""
    size = len(canonical_json(document).encode("utf-8"))
    if size > MAX_BYTES:
        raise ValueError(
            f"{what} take {size} bytes as canonical JSON, over the limit of {MAX_BYTES} (64 KiB)"
        )


# -- tag rules -------------------------------------------------------------------------------


def _key_problem(key: Any) -> str | None:
    """Why a key is reserved for the query language, or None when it is a fine tag name."""
    if not isinstance(key, str):
        return "keys must be str"
    if not key:
        return "keys must not be empty"
    if key.startswith("$"):
        return "keys must not start with '$'"
    if "__" in key:
        return "keys must not contain '__'"
    if "." in key:
        return "keys must not contain '.'"
    if "\x00" in key:
        return "keys must not contain NUL"
    return None


def check_key(key: Any, where: str = "tags") -> None:
    """Raise ReservedTagNameError when ``key`` could be mistaken for query syntax."""
    problem = _key_problem(key)
    if problem is not None:
        raise ReservedTagNameError(f"reserved tag name {show(key)} in {where}: {problem}")
    _check_text(key, f"{where} (a tag name)")


def _inside(where: str, key: Any) -> str:
    return f"{where}.{key}"


def check_value(value: Any, where: str = "tags") -> None:
    """A tag value must be JSON data; the keys of nested dicts follow the key rules."""
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, str):
        _check_text(value, where)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: NaN and infinity are not JSON values, got {show(value)}")
    elif isinstance(value, list):
        for position, item in enumerate(value):
            check_value(item, f"{where}[{position}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_key(key, where)
            check_value(item, _inside(where, key))
    else:
        raise TypeError(
            f"{where}: tag values must be JSON data, got {type(value).__name__} {show(value)}"
        )


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{where}: strings must be valid Unicode, got {show(text)}") from None


def validate_tags(tags: Any, *, top_level_reserved: bool = True) -> None:
    """Check user tags (behaviour §3.2) before anything is written.

    ``top_level_reserved``: reject top-level names of RESERVED_TAGS (tags, update_tags and
    remove_tag); nested reserved names are ordinary tags.
    """
    if not isinstance(tags, dict):
        raise TypeError(f"tags must be a dict, got {show(tags)}")
    check_depth(tags)
    for key in tags:
        if top_level_reserved and key in RESERVED_TAGS:
            raise ReservedTagNameError(f"tag name {show(key)} is reserved for stream metadata")
    check_value(tags, "tags")
    check_size(tags)


# -- query validation ------------------------------------------------------------------------


def _scalar_or_text(argument: Any) -> bool:
    return isinstance(argument, str) or _is_number(argument)


_ARGUMENT_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "$eq": (lambda argument: True, "any JSON value"),
    "$ne": (lambda argument: True, "any JSON value"),
    "$gt": (_scalar_or_text, "a number or a str"),
    "$gte": (_scalar_or_text, "a number or a str"),
    "$lt": (_scalar_or_text, "a number or a str"),
    "$lte": (_scalar_or_text, "a number or a str"),
    "$in": (lambda argument: isinstance(argument, list), "a list"),
    "$all": (lambda argument: isinstance(argument, list), "a list"),
    "$exists": (lambda argument: isinstance(argument, bool), "a bool"),
    "$iexact": (lambda argument: isinstance(argument, str), "a str"),
    "$contains": (lambda argument: isinstance(argument, str), "a str"),
    "$icontains": (lambda argument: isinstance(argument, str), "a str"),
}
OPERATORS = frozenset(_ARGUMENT_RULES)


def _is_operator_dict(condition: dict) -> bool:
    return any(isinstance(key, str) and key.startswith("$") for key in condition)


def _validate_operators(condition: dict, where: str) -> None:
    for operator, argument in condition.items():
        if not (isinstance(operator, str) and operator.startswith("$")):
            raise ValueError(
                f"query at {where} mixes operators and tag names ({show(operator)}); "
                "use a nested dict for sub-fields"
            )
        if operator not in _ARGUMENT_RULES:
            raise ValueError(
                f"unknown query operator {show(operator)} at {where}; "
                f"supported: {', '.join(sorted(OPERATORS))}"
            )
        accepts, expected = _ARGUMENT_RULES[operator]
        if not accepts(argument):
            raise ValueError(
                f"query operator {operator} at {where} needs {expected}, got {show(argument)}"
            )
        check_value(argument, f"{where}.{operator}")


def _validate_condition(condition: Any, where: str) -> None:
    """A condition is an operator dict, a nested sub-query, or a JSON value (equality)."""
    if isinstance(condition, dict) and _is_operator_dict(condition):
        _validate_operators(condition, where)
    elif isinstance(condition, dict):
        _validate_fields(condition, where)
    else:
        check_value(condition, where)


def _validate_fields(query: dict, where: str) -> None:
    for key, condition in query.items():
        check_key(key, where)
        _validate_condition(condition, _inside(where, key))


def _validate_stream_id(condition: Any) -> None:
    """A top-level stream_id condition: one id or ``{'$in': [ids]}``."""
    if isinstance(condition, str):
        return
    if (
        isinstance(condition, dict)
        and list(condition) == ["$in"]
        and isinstance(condition["$in"], list)
        and all(isinstance(item, str) for item in condition["$in"])
    ):
        return
    raise ValueError(f"query stream_id must be an id or {{'$in': [ids]}}, got {show(condition)}")


def validate_query(query: Any, *, allow_stream_id: bool = False) -> dict:
    """Check a query (behaviour §3.4) and return a private copy of it; None means all streams.

    ``allow_stream_id``: a top-level ``stream_id`` condition selects ids (delete_streams,
    downsample_streams and backprocess_streams); otherwise it is an ordinary user-tag path.
    """
    if query is None:
        return {}
    if not isinstance(query, dict):  # ValueError, as for query_tags (behaviour §3.3)
        raise ValueError(f"a query must be a dict of tag conditions, got {show(query)}")  # noqa: TRY004
    check_depth(query, "query")
    for key, condition in query.items():
        if key == STREAM_ID and allow_stream_id:
            _validate_stream_id(condition)
        else:
            check_key(key, "query")
            _validate_condition(condition, _inside("query", key))
    check_size(query, "query")
    return copy.deepcopy(query)


def without_reserved(query: dict, *, allow_stream_id: bool = False) -> dict | None:
    """``query`` without its top-level conditions on RESERVED_TAGS, or None if one of them
    excludes every stream.

    User tags never hold a top-level reserved name, so such a condition is decided once, as a
    condition on a missing field (``{'$exists': False}`` holds, equality does not), and backends
    never see it. ``stream_id`` stays when ``allow_stream_id`` makes it an id selection.
    """
    rest = {}
    for key, condition in query.items():
        if key in RESERVED_TAGS and not (key == STREAM_ID and allow_stream_id):
            if not _match_field({}, key, condition):
                return None
        else:
            rest[key] = condition
    return rest


# -- matching --------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    """bool is not a number when matching (1 must not match True)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _exact(number: Any) -> Any:
    """A plain float for float subclasses (numpy.float64 compares with a huge int by
    converting the int to a float, which overflows); Python compares int and float exactly."""
    return float(number) if isinstance(number, float) else number


def _json_equal(left: Any, right: Any) -> bool:
    """Equality of JSON data that keeps bools apart from numbers, also inside containers."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if _is_number(left) and _is_number(right):
        return _exact(left) == _exact(right)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(_json_equal, left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_json_equal(left[k], right[k]) for k in left)
    if isinstance(left, str) and isinstance(right, str):
        return left == right
    return left is None and right is None


def _any_element(value: Any, test: Callable[[Any], bool]) -> bool:
    """MongoDB-like: a stored list satisfies a test when the list or any element does."""
    if test(value):
        return True
    return isinstance(value, list) and any(test(item) for item in value)


def _equal_or_contains(value: Any, wanted: Any) -> bool:
    return _any_element(value, lambda item: _json_equal(item, wanted))


def _comparable(left: Any, right: Any) -> bool:
    """Only numbers with numbers and str with str are ordered; anything else never matches."""
    both_numbers = _is_number(left) and _is_number(right)
    return both_numbers or (isinstance(left, str) and isinstance(right, str))


def _ordered(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def test(value: Any, argument: Any) -> bool:
        return _any_element(
            value,
            lambda item: _comparable(item, argument) and compare(_exact(item), _exact(argument)),
        )

    return test


def _text_test(compare: Callable[[str, str], bool]) -> Callable[[Any, Any], bool]:
    def test(value: Any, argument: Any) -> bool:
        return _any_element(value, lambda item: isinstance(item, str) and compare(item, argument))

    return test


# Operators on a present value; $ne and $exists also decide for a missing one (see _apply).
_PRESENT_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "$eq": _equal_or_contains,
    "$gt": _ordered(lambda item, argument: item > argument),
    "$gte": _ordered(lambda item, argument: item >= argument),
    "$lt": _ordered(lambda item, argument: item < argument),
    "$lte": _ordered(lambda item, argument: item <= argument),
    "$in": lambda value, argument: any(_equal_or_contains(value, x) for x in argument),
    "$all": lambda value, argument: (
        bool(argument) and all(_equal_or_contains(value, x) for x in argument)
    ),
    "$iexact": _text_test(lambda item, argument: item.lower() == argument.lower()),
    "$contains": _text_test(lambda item, argument: argument in item),
    "$icontains": _text_test(lambda item, argument: argument.lower() in item.lower()),
}


def _apply(operator: str, argument: Any, present: bool, value: Any) -> bool:
    if operator == "$exists":
        return present == bool(argument)
    if operator == "$ne":
        return not (present and _equal_or_contains(value, argument))
    test = _PRESENT_TESTS.get(operator)
    if test is None:
        raise ValueError(f"unknown query operator {show(operator)}")
    return present and test(value, argument)


def _match_field(container: Any, key: str, condition: Any) -> bool:
    """One path condition against ``container[key]`` (which may be missing)."""
    present = isinstance(container, dict) and key in container
    value = container[key] if present else None
    if isinstance(condition, dict):
        if _is_operator_dict(condition):
            return all(_apply(op, arg, present, value) for op, arg in condition.items())
        if not (present and isinstance(value, dict)):
            return False
        return all(_match_field(value, k, c) for k, c in condition.items())
    if not present:
        return False
    if isinstance(condition, list):
        return _json_equal(value, condition)
    return _equal_or_contains(value, condition)


def matches(tags: dict, query: dict | None, stream_id: str | None = None) -> bool:
    """True when user ``tags`` satisfy ``query`` (behaviour §3.4); all conditions are ANDed.

    A top-level ``stream_id`` condition is checked against ``stream_id`` when it is given.
    Never raises for stored data of unexpected types: incompatible values just do not match.
    """
    for key, condition in (query or {}).items():
        if key == STREAM_ID and stream_id is not None:
            matched = _match_field({STREAM_ID: stream_id}, key, condition)
        else:
            matched = _match_field(tags, key, condition)
        if not matched:
            return False
    return True


# -- mutation --------------------------------------------------------------------------------


def deep_merge(base: dict, update: dict) -> dict:
    """``base`` updated by ``update`` (behaviour §3.5): nested dicts merge, other values replace.

    Returns new dicts and copies every value, so callers may mutate the result or the inputs
    without affecting each other.
    """
    result = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _remove_in_place(tags: dict, paths: dict) -> None:
    for key, below in paths.items():
        if key not in tags:
            continue
        if isinstance(below, dict) and below:
            if isinstance(tags[key], dict):
                _remove_in_place(tags[key], below)
        else:
            del tags[key]


def remove_paths(tags: dict, paths: dict) -> dict:
    """A copy of ``tags`` without the paths named by the keys of ``paths`` (behaviour §3.5).

    Leaf values of ``paths`` are ignored, nested dicts descend, missing paths are ignored.
    """
    if not isinstance(paths, dict):
        raise TypeError(f"paths to remove must be a dict, got {show(paths)}")
    result = copy.deepcopy(tags)
    _remove_in_place(result, paths)
    return result

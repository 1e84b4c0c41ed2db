"""Translation of the portable tag query language (behaviour §3.4) into MongoDB filters.

The semantics are those of :func:`datastream.tags.matches`; MongoDB's own differ in ways that
matter, so nothing is passed through as is:

* MongoDB treats a path through an array as "any element" and a numeric path part as an array
  index. Sub-field conditions therefore first require every parent to be a document that is not
  an array (``$type: 'object'`` and ``$not: {$type: 'array'}``): a key such as ``'0'`` stays a
  field name, and lists of dicts are never searched.
* ``{field: null}`` also matches a missing field in MongoDB; the reference does not, so null
  equality adds ``$exists: true``.
* A list literal must match an equal list only (MongoDB also matches a list holding it as an
  element), while ``$eq``/``$in``/``$all`` with a list argument match both.
* Numbers and bools are distinct. MongoDB keeps them apart, but mongomock compares with Python
  ``==`` (``True == 1``), so scalar number/bool equality is written with ``$type`` guards and
  ``$elemMatch``; the filters mean the same on both.
* Document equality is field-order sensitive in MongoDB: literals (and stored tags, see
  :func:`canonical`) have their keys sorted.
* Regex operators get a pattern built by :func:`literal_pattern`, which escapes everything
  outside ``[A-Za-z0-9_]`` in a syntax that Python ``re`` (mongomock) and PCRE (the server)
  read alike; query values never become operators, field paths or code.

Known differences that remain, on mongomock only: bool vs number *inside* list/dict literals
(``[True]`` equals ``[1]`` there). Case-insensitive operators follow the regex engine's case
folding, which differs from ``str.lower()`` for a few exotic characters (e.g. ``'ſ'``).
"""

from __future__ import annotations

import math
from typing import Any

from ...exceptions import ReservedTagNameError
from ...units import INT64_MAX, INT64_MIN

TAGS_FIELD = "tags"
STREAM_ID = "stream_id"

# A filter no document satisfies (both on the server and in mongomock).
NEVER: dict[str, Any] = {"_id": {"$in": []}}
_NOT_ARRAY = {"$not": {"$type": "array"}}
_ORDERED = ("$gt", "$gte", "$lt", "$lte")
_TEXT = ("$iexact", "$contains", "$icontains")


def check_key(key: Any) -> str:
    """A tag key that is safe as one MongoDB path part (same rules as datastream.tags)."""
    if (
        not isinstance(key, str)
        or not key
        or key.startswith("$")
        or "." in key
        or "__" in key
        or "\x00" in key
    ):
        raise ReservedTagNameError(f"tag name {key!r} cannot be stored or queried")
    return key


def canonical(value: Any, where: str = "tags") -> Any:
    """JSON data as it is stored and compared: dict keys sorted (MongoDB compares documents
    field by field in order), tuples as lists, ints within int64; anything else is refused so
    that a value can never carry a BSON regex, code or operator into a query."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"{where}: integers beyond 64 bits cannot be stored, got {value}")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: NaN and infinity are not JSON values")
        return value
    if isinstance(value, (list, tuple)):
        return [canonical(item, where) for item in value]
    if isinstance(value, dict):
        return {check_key(key): canonical(value[key], where) for key in sorted(value, key=_order)}
    raise TypeError(f"{where}: tag values must be JSON data, got {type(value).__name__}")


def _order(key: Any) -> str:
    return check_key(key)


def translate(query: dict[str, Any] | None) -> dict[str, Any]:
    """A MongoDB filter on stream documents (user tags under ``tags``, id as ``_id``)."""
    clauses: list[dict[str, Any]] = []
    for key, condition in (query or {}).items():
        if key == STREAM_ID:
            clauses.append(_stream_id(condition))
        else:
            clauses.extend(_field([TAGS_FIELD, check_key(key)], condition))
    if not clauses:
        return {}
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _stream_id(condition: Any) -> dict[str, Any]:
    if isinstance(condition, str):
        return {"_id": {"$eq": condition}}
    if isinstance(condition, dict) and list(condition) == ["$in"]:
        ids = condition["$in"]
        if isinstance(ids, list) and all(isinstance(item, str) for item in ids):
            return {"_id": {"$in": list(ids)}}
    raise ValueError(f"query stream_id must be an id or {{'$in': [ids]}}, got {condition!r}")


def _is_operator_dict(condition: Any) -> bool:
    return isinstance(condition, dict) and any(
        isinstance(key, str) and key.startswith("$") for key in condition
    )


def _field(parts: list[str], condition: Any) -> list[dict[str, Any]]:
    """Clauses (ANDed) for one path condition; ``parts`` are validated keys."""
    path = ".".join(parts)
    if _is_operator_dict(condition):
        return [_operator(path, operator, argument) for operator, argument in condition.items()]
    if isinstance(condition, dict):
        # A sub-field match: the stored value must be a dict (never a list of dicts).
        clauses = [{path: {"$type": "object", **_NOT_ARRAY}}]
        for key, below in condition.items():
            clauses.extend(_field([*parts, check_key(key)], below))
        return clauses
    if isinstance(condition, (list, tuple)):
        return [_equal_list(path, canonical(condition, path))]
    return [_equal(path, canonical(condition, path))]


def _operator(path: str, operator: Any, argument: Any) -> dict[str, Any]:
    if operator == "$eq":
        return _equal(path, canonical(argument, path))
    if operator == "$ne":
        return {"$nor": [_equal(path, canonical(argument, path))]}
    if operator in _ORDERED:
        if not _is_number(argument) and not isinstance(argument, str):
            raise ValueError(f"query operator {operator} at {path} needs a number or a str")
        return {path: {operator: canonical(argument, path)}}
    if operator in ("$in", "$all"):
        if not isinstance(argument, (list, tuple)):
            raise ValueError(f"query operator {operator} at {path} needs a list")
        if not argument:
            return NEVER
        parts = [_equal(path, canonical(item, path)) for item in argument]
        if len(parts) == 1:
            return parts[0]
        return {"$or" if operator == "$in" else "$and": parts}
    if operator == "$exists":
        if not isinstance(argument, bool):
            raise ValueError(f"query operator $exists at {path} needs a bool")
        return {path: {"$exists": argument}}
    if operator in _TEXT:
        if not isinstance(argument, str):
            raise ValueError(f"query operator {operator} at {path} needs a str")
        pattern = literal_pattern(argument)
        if operator == "$iexact":
            pattern = f"^{pattern}(?![\\s\\S])"
        options = "" if operator == "$contains" else "i"
        return {path: {"$regex": pattern, "$options": options} if options else {"$regex": pattern}}
    raise ValueError(f"unknown query operator {operator!r} at {path}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _equal(path: str, value: Any) -> dict[str, Any]:
    """The stored value equals ``value`` or is a list holding an element equal to it."""
    if value is None:
        return {path: {"$eq": None, "$exists": True}}
    if isinstance(value, bool) or _is_number(value):
        kind = "bool" if isinstance(value, bool) else "number"
        alone = {"$eq": value, "$type": kind, **_NOT_ARRAY}
        return {"$or": [{path: alone}, {path: {"$elemMatch": alone}}]}
    if isinstance(value, list):
        # The server's {$eq: list} already covers both; mongomock only compares whole lists.
        return {"$or": [{path: {"$eq": value}}, {path: {"$elemMatch": {"$eq": value}}}]}
    return {path: {"$eq": value}}  # str or dict (keys sorted by canonical)


def _equal_list(path: str, value: list[Any]) -> dict[str, Any]:
    """The stored value is a list equal to ``value`` (not merely holding it)."""
    return {path: {"$eq": value, "$not": {"$elemMatch": {"$eq": value}}}}


def literal_pattern(text: str) -> str:
    """A regex matching ``text`` literally, the same in Python ``re`` and in PCRE.

    Word characters stay; other ASCII characters are written ``\\xHH`` (so that neither a
    metacharacter nor a NUL reaches the pattern unescaped); other characters stay literal.
    """
    out = []
    for char in text:
        if char.isascii() and (char.isalnum() or char == "_"):
            out.append(char)
        elif char.isascii():
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return "".join(out)

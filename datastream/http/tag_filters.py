"""django-datastream's tag filters in the query string, as a query of the tag language.

``tags__<key>[__<key>...]=value`` tests the tag at that path for equality;
``...__<lookup>=value`` applies a lookup: ``iexact``, ``contains``, ``icontains``,
``startswith``, ``in`` (comma-separated values), ``exists`` (``true``/``false``), the
comparisons ``gt``, ``gte``, ``lt``, ``lte`` (numerically when the value reads as a number)
or ``all`` (comma-separated values a list tag must all hold). Values from
a query string are always text, so a value that reads as a number also matches that number
(``tags__stream_number=1`` finds the stream tagged ``1`` and the one tagged ``"1"``).

``startswith`` has no operator in the tag query language (behaviour §3.4): it is sent to the
backend as ``$contains`` and the prefix is checked on the streams that come back
(:func:`post_filter`). Filters are ANDed, as in Django: a second condition with the operator a
path already has (``contains`` twice, or ``contains`` and ``startswith``) is checked there too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from starlette.datastructures import QueryParams

from ..results import user_tags
from ..tags import matches
from .errors import ApiError

PREFIX = "tags__"
LOOKUPS = ("exact", "iexact", "contains", "icontains", "startswith", "in", "exists",
           "gt", "gte", "lt", "lte", "all")


def _number(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _candidates(text: str) -> list[Any]:
    """The text itself, and the number it reads as (if any)."""
    number = _number(text.strip())
    return [text] if number is None else [text, number]


def _condition(lookup: str, text: str, name: str) -> dict[str, Any]:
    if lookup == "exact":
        return {"$in": _candidates(text)}
    if lookup == "in":
        return {"$in": [value for part in text.split(",") for value in _candidates(part)]}
    if lookup == "exists":
        if text.lower() not in ("true", "false", "1", "0"):
            raise ApiError(400, f"parameter {name!r}: use true or false")
        return {"$exists": text.lower() in ("true", "1")}
    if lookup in ("gt", "gte", "lt", "lte"):  # numbers compare as numbers, other text as text
        number = _number(text.strip())
        return {f"${lookup}": text if number is None else number}
    if lookup == "all":  # parts that read as numbers are checked on the results (text or number)
        return {"$all": [part for part in text.split(",") if _number(part.strip()) is None]}
    operator = "$contains" if lookup == "startswith" else f"${lookup}"
    return {operator: text}


class TagFilter:
    """The tag query of a request's ``tags__...`` parameters, plus its prefix tests."""

    def __init__(self, params: QueryParams) -> None:
        self.query: dict[str, Any] = {}
        self.prefixes: list[tuple[list[str], str]] = []
        self.extra: list[dict[str, Any]] = []  # conditions the query has no room for
        for name, text in params.multi_items():
            if name.startswith(PREFIX):
                self._add(name, text)

    def _add(self, name: str, text: str) -> None:
        path = name[len(PREFIX):].split("__")
        lookup = path.pop() if len(path) > 1 and path[-1] in LOOKUPS else "exact"
        if not path or not all(path):
            raise ApiError(400, f"parameter {name!r}: no tag path")
        node = self.query
        for key in path[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict) or any(k.startswith("$") for k in child):
                raise ApiError(400, f"parameter {name!r}: the tag path conflicts with "
                                    "another filter")
            node = child
        leaf = node.setdefault(path[-1], {})
        if leaf and not any(key.startswith("$") for key in leaf):
            raise ApiError(400, f"parameter {name!r}: the tag path conflicts with another "
                                "filter")
        condition = _condition(lookup, text, name)
        if lookup == "all":
            for part in text.split(","):
                if _number(part.strip()) is not None:
                    self._extra(path, {"$in": _candidates(part)})
            if not condition["$all"]:
                condition = {"$exists": True}
        if lookup == "startswith":
            self.prefixes.append((path, text))
            if "$contains" in leaf:
                return  # the prefix test alone decides
        if set(condition) & set(leaf):  # the operator is taken: checked on what comes back
            self._extra(path, condition)
            return
        leaf.update(condition)

    def _extra(self, path: list[str], condition: dict[str, Any]) -> None:
        """A condition on ``path`` checked on the streams that come back."""
        extra: dict[str, Any] = condition
        for key in reversed(path):
            extra = {key: extra}
        self.extra.append(extra)

    @property
    def checks_results(self) -> bool:
        """Whether :meth:`post_filter` has anything to check."""
        return bool(self.prefixes or self.extra)

    def post_filter(self, streams: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """The streams whose tags pass the prefix tests (a list holding a passing text
        passes, as for every text operator) and the conditions left out of the query."""
        return [tags for tags in streams
                if all(_starts_with(tags, path, prefix) for path, prefix in self.prefixes)
                and all(matches(user_tags(tags), extra) for extra in self.extra)]


def _starts_with(tags: dict[str, Any], path: list[str], prefix: str) -> bool:
    value: Any = tags
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return False
        value = value[key]
    items = value if isinstance(value, list) else [value]
    return any(isinstance(item, str) and item.startswith(prefix) for item in items)

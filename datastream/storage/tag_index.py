"""Stream ids by the scalar values of their top-level tags: the candidates of a tag query.

A store that keeps its stream records in memory (the embedded one) answers ``find_streams`` by
testing every record against the query. That is fine for one query, but ``ensure_stream`` and
the HTTP service's ``/write`` look a stream up for every new series: with thousands of streams,
creating each one cost a scan of all the others. Most lookups are equalities on top-level tags
(``{"measurement": "cpu", "host": "web1", "field": "idle"}``), which this index narrows to the
few records that can match; those are still tested with the full query rules
(:func:`datastream.tags.matches`), so the index only has to hold a superset of the matches.

A record matches ``{key: scalar}`` when its value at ``key`` equals the scalar or is a list
holding it (behaviour §3.4); numbers equal across int and float but never equal booleans,
which the tokens keep apart.
"""

from __future__ import annotations

from typing import Any

Token = tuple[str, Any]


def _token(value: Any) -> Token | None:
    """The index key of a scalar tag value; None for what the index does not hold."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int) and type(value) is int:
        return ("number", value)
    if isinstance(value, float):
        return None if value != value else ("number", float(value))  # NaN equals nothing
    if isinstance(value, str):
        return ("text", value)
    if value is None:
        return ("null", None)
    return None


def _tokens_of(value: Any) -> set[Token]:
    """Tokens under which a stored value can be found: its own, or its scalar elements'."""
    if isinstance(value, list):
        return {token for item in value if (token := _token(item)) is not None}
    token = _token(value)
    return set() if token is None else {token}


def _wanted(condition: Any) -> set[Token] | None:
    """Tokens one of which a matching record holds; None when the condition is not a plain
    equality (or ``$eq`` / ``$in`` of scalars) the index can narrow."""
    if isinstance(condition, dict):
        if len(condition) != 1:
            return None
        ((operator, argument),) = condition.items()
        if operator == "$eq":
            token = _token(argument)
            return None if token is None else {token}
        if operator == "$in" and isinstance(argument, (list, tuple)):
            tokens = {_token(item) for item in argument}
            return None if None in tokens else tokens  # type: ignore[return-value]
        return None
    if isinstance(condition, list):
        return None
    token = _token(condition)
    return None if token is None else {token}


class TagIndex:
    """Stream ids under each (top-level tag key, scalar token)."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, Token], set[str]] = {}

    def add(self, stream_id: str, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            for token in _tokens_of(value):
                self._ids.setdefault((key, token), set()).add(stream_id)

    def remove(self, stream_id: str, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            for token in _tokens_of(value):
                ids = self._ids.get((key, token))
                if ids is not None:
                    ids.discard(stream_id)
                    if not ids:
                        del self._ids[(key, token)]

    def candidates(self, query: dict[str, Any]) -> set[str] | None:
        """Ids of every stream that may match ``query`` (a superset), or None when no
        condition of it can be narrowed here (then every stream is a candidate)."""
        found: set[str] | None = None
        for key, condition in query.items():
            wanted = _wanted(condition)
            if wanted is None:
                continue
            ids: set[str] = set()
            for token in wanted:
                ids |= self._ids.get((key, token), set())
            found = ids if found is None else found & ids
            if not found:
                return found
        return found

"""Rows of an input file grouped into streams: the ``Parsed`` result shared by every reader.

Streams are told apart by their query tags: constant ``--tag`` pairs plus the values of the
``--tag-column`` columns. Rows are grouped without a per-row loop (dictionary-encode each tag
column, combine the codes, ``numpy.unique``); only the distinct streams become Python dicts.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import tags as tag_rules
from .bad_input import BadInput, Positions


@dataclasses.dataclass
class Parsed:
    """One validated input file. ``stream`` indexes ``series`` (query tags, in order of first
    appearance) for each row; ``t_us`` and ``values`` are the rows' points in file order."""

    positions: Positions
    series: list[dict[str, Any]]
    stream: np.ndarray
    t_us: np.ndarray
    values: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.t_us)


def _codes(array: pa.Array, name: str, positions: Positions) -> tuple[np.ndarray, pa.Array]:
    if array.null_count:
        row = int(np.flatnonzero(pc.is_null(array).to_numpy(zero_copy_only=False))[0])
        raise BadInput(positions.describe(row), "empty, a tag column needs a value", name)
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)
            or pa.types.is_integer(array.type) or pa.types.is_boolean(array.type)
            or pa.types.is_floating(array.type) or pa.types.is_dictionary(array.type)):
        raise BadInput(positions.describe(0), f"tag columns hold scalars, not {array.type}",
                       name)
    encoded = array if pa.types.is_dictionary(array.type) else pc.dictionary_encode(array)
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary


def group_rows(tag_columns: dict[str, pa.Array], rows: int, constant: dict[str, Any],
               positions: Positions) -> tuple[list[dict[str, Any]], np.ndarray]:
    """(query tags per stream in order of first appearance, stream index of every row)."""
    key = np.zeros(rows, dtype=np.int64)
    dictionaries = []
    for name, array in tag_columns.items():
        codes, dictionary = _codes(array, name, positions)
        key = key * len(dictionary) + codes
        key = np.unique(key, return_inverse=True)[1].astype(np.int64)  # dense: never overflows
        dictionaries.append((name, dictionary, codes))
    _, first_rows, inverse = np.unique(key, return_index=True, return_inverse=True)
    order = np.argsort(first_rows, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    series = []
    for row in first_rows[order]:
        query = dict(constant)
        for name, dictionary, codes in dictionaries:
            query[name] = dictionary[int(codes[row])].as_py()
        check_query_tags(query, positions.describe(int(row)))
        series.append(query)
    return series, rank[inverse.reshape(-1)] if rows else np.zeros(0, dtype=np.int64)


def check_query_tags(query: dict[str, Any], where: str) -> None:
    """The tag rules of ensure_stream, checked before anything is written."""
    if not query:
        raise BadInput(where, "no query tags: give --tag-column or --tag")
    try:
        tag_rules.validate_tags(query)
    except (ValueError, TypeError) as error:
        raise BadInput(where, f"query tags {query}: {error}") from None

"""A page of datapoints as JSON text, built column by column with Arrow compute functions.

The shapes are those of ``get_data`` (behaviour §5.4): raw ``{"t": time, "v": value}``;
downsampled ``{"t": {time key: ...}, "v": {value key: ...}}`` without either part when its
filter is empty. Each column of ``Datapoints.to_arrow()`` becomes JSON text in one vectorised
step, the texts are joined into rows and the rows into one array, with no Python work per
datapoint (a page holds up to 10,000 of them):

* times: ISO 8601 UTC strings with microseconds and ``Z``;
* integers and floats: their shortest round-trip text; NaN, ±inf and nulls: ``null``;
* text columns hold JSON already (nominal and graph values, ``most_often``) or an exact
  decimal (high-accuracy numbers), which is a JSON number as it is;
* ``frequencies`` (a map keyed by canonical JSON): an object whose keys are the values' text
  for string values and the canonical JSON of any other value, as ``json.dumps`` would key
  the dict that ``get_data`` returns; a text whose key another entry takes (the text "1"
  beside the number 1) is keyed by its canonical JSON instead, so no key repeats.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..downsamplers import TIME_DOWNSAMPLERS, VALUE_DOWNSAMPLERS

NULL = pa.scalar("null", pa.large_string())
_EMPTY = pa.scalar("", pa.large_string())


def _join(*pieces: pa.Array | str) -> pa.Array:
    """Element-wise concatenation of columns and constant texts (large strings throughout)."""
    return pc.binary_join_element_wise(
        *(pa.scalar(piece, pa.large_string()) if isinstance(piece, str) else piece
          for piece in pieces), _EMPTY)


def _quoted_json(texts: pa.Array) -> pa.Array:
    """JSON string literals of texts without control characters (canonical JSON texts)."""
    escaped = pc.replace_substring(pc.replace_substring(texts, "\\", "\\\\"), '"', '\\"')
    return _join('"', escaped, '"')


def _frequencies(column: pa.Array) -> pa.Array:
    entry = pa.struct([("key", column.type.key_type), ("value", column.type.item_type)])
    column = column.cast(pa.list_(entry))  # list functions have no kernels for maps
    entries = pc.list_flatten(column)
    keys = entries.field("key").cast(pa.large_string())
    literal = pc.if_else(pc.starts_with(keys, '"'), keys, _quoted_json(keys))
    pairs = _join(literal, ":", entries.field("value").cast(pa.large_string()))
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    rows = pa.LargeListArray.from_arrays(pa.array(offsets), pairs)
    body = pc.binary_join(rows, pa.scalar(",", pa.large_string()))
    texts = pc.if_else(pc.is_valid(column), _join("{", body, "}"), NULL)
    clashing = _rows_with_repeated_keys(literal, lengths)
    if not clashing:
        return texts
    patched = texts.to_pylist()
    for row in clashing:
        patched[row] = _object_without_repeats(
            [(entry["key"], entry["value"]) for entry in column[row].as_py()])
    return pa.array(patched, pa.large_string())


def _rows_with_repeated_keys(literals: pa.Array, lengths: np.ndarray) -> list[int]:
    """Rows where two entries got the same JSON key: the text "1" beside the number 1 (keyed
    "1" by its text and by its canonical JSON). Rare, so found column-wise and mended apart."""
    if not len(literals):
        return []
    rows = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    counted = pa.table({"row": rows, "key": literals}).group_by(["row", "key"]).aggregate(
        [("key", "count")])
    repeated = counted.filter(pc.greater(counted.column("key_count"), 1))
    return sorted(set(repeated.column("row").to_pylist()))


def _object_without_repeats(entries: list[tuple[str, int]]) -> str:
    """A frequency table as a JSON object keyed as above, except that text values whose key
    another entry takes are keyed by their canonical JSON (``"\"1\""``), as often as needed:
    canonical JSON texts differ, so every count keeps a key of its own."""
    keys = [json.loads(text) if text.startswith('"') else text for text, _ in entries]
    while True:
        taken = Counter(keys)
        clashing = [i for i, key in enumerate(keys) if taken[key] > 1 and key != entries[i][0]]
        if not clashing:
            break
        for i in clashing:
            keys[i] = entries[i][0]
    pairs = (f"{json.dumps(key, ensure_ascii=False)}:{count}"
             for key, (_, count) in zip(keys, entries, strict=True))
    return "{" + ",".join(pairs) + "}"


def json_column(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Every element of a result column as JSON text (large_string, no nulls)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if pa.types.is_timestamp(kind):
        texts = pc.strftime(column.cast(pa.timestamp("us", "UTC")), format="%Y-%m-%dT%H:%M:%SZ")
        texts = _join('"', texts.cast(pa.large_string()), '"')
    elif pa.types.is_floating(kind):
        finite = pc.is_finite(column)
        texts = pc.if_else(finite, column.cast(pa.large_string()), NULL)
    elif pa.types.is_integer(kind):
        texts = column.cast(pa.large_string())
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        texts = column.cast(pa.large_string())
    elif pa.types.is_map(kind):
        texts = _frequencies(column)
    elif pa.types.is_boolean(kind):
        texts = pc.if_else(column, pa.scalar("true", pa.large_string()),
                           pa.scalar("false", pa.large_string()))
    elif pa.types.is_null(kind):
        texts = pa.nulls(len(column), pa.large_string())
    else:
        raise TypeError(f"no JSON form for a column of {kind}")
    return pc.fill_null(texts, NULL)


def _object(pairs: list[tuple[str, pa.Array]]) -> list[pa.Array | str]:
    pieces: list[pa.Array | str] = ["{"]
    for index, (key, texts) in enumerate(pairs):
        pieces += [("," if index else "") + f'"{key}":', texts]
    return [*pieces, "}"]


def _rows(table: pa.Table, values_asked: bool) -> pa.Array:
    names = table.column_names
    if names == ["t", "v"]:
        return _join(*_object([("t", json_column(table.column("t"))),
                               ("v", json_column(table.column("v")))]))
    times = [(TIME_DOWNSAMPLERS[name[len("time_"):]], json_column(table.column(name)))
             for name in names if name.startswith("time_")]
    values = [(VALUE_DOWNSAMPLERS[name], json_column(table.column(name)))
              for name in names if name in VALUE_DOWNSAMPLERS]
    parts: list[pa.Array | str] = ["{"]
    if times:
        parts += ['"t":', *_object(times)]
    if values or values_asked:
        parts += [',"v":' if times else '"v":', *_object(values)]
    parts.append("}")
    if all(isinstance(part, str) for part in parts):  # no column: the same text every row
        return pa.repeat(pa.scalar("".join(parts), pa.large_string()), table.num_rows)
    return _join(*parts)


def datapoints_json(table: pa.Table, values_asked: bool = False) -> bytes:
    """``[datapoint, ...]`` of a ``Datapoints.to_arrow()`` table, as UTF-8 JSON text.
    ``values_asked``: value downsamplers were named, none of which the stream keeps; the
    datapoints then keep an empty ``"v"``, as ``get_data`` gives them."""
    if not table.num_rows:
        return b"[]"
    rows = _rows(table, values_asked).cast(pa.large_string())
    whole = pa.LargeListArray.from_arrays(pa.array([0, len(rows)], pa.int64()), rows)
    text = pc.binary_join(whole, pa.scalar(",", pa.large_string()))[0]
    return b"[" + text.as_buffer().to_pybytes() + b"]"

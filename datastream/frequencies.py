"""Frequency tables ``{canonical JSON: count}``: the nominal state and most_often/least_often.

Values become codes per distinct canonical text so the counting runs in a numba kernel; only
the tables themselves are Python dicts (stored as JSON in ``x``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import numpy as np

from . import arrow_numpy
from .kernels import order
from .lazy import pa
from .raw_kinds import KIND_EXACT, KIND_FLOAT, KIND_INT, KIND_JSON, canonical_json
from .raw_numbers import texts as _texts

# The canonical text of a table key or of a level's ``x`` (downsamplers writes it through this
# name): raw_kinds.canonical_json, so keys match the stored kind 4 and 5 texts byte for byte.
canonical = canonical_json


def numeric_codes(raw: pa.Table, kinds: np.ndarray, x: np.ndarray, exact: bool):
    """Codes of the plain numbers by canonical text (-1 elsewhere) and the sorted texts."""
    texts_by_group = []
    codes = np.full(len(kinds), -1, np.int64)
    groups = []
    ints = np.flatnonzero(kinds == KIND_INT)
    if ints.size:
        column = arrow_numpy.to_numpy(raw.column("i"), 0).astype(np.int64, copy=False)
        uniq, inv = np.unique(column[ints], return_inverse=True)
        groups.append((ints, inv, [str(int(v)) for v in uniq]))
    floats = np.flatnonzero(
        ((kinds == KIND_FLOAT) | ((kinds == KIND_EXACT) & (not exact))) & ~np.isnan(x))
    if floats.size:
        uniq, inv = np.unique(x[floats], return_inverse=True)
        # -0.0 equals 0.0 (np.unique merges them): one key, "0.0", whichever came first
        groups.append((floats, inv, [repr(float(v) + 0.0) for v in uniq]))
    if exact and (kinds == KIND_EXACT).any():
        where = np.flatnonzero(kinds == KIND_EXACT)
        uniq, inv = np.unique(np.array(_texts(raw, where), dtype=object), return_inverse=True)
        groups.append((where, inv, [str(Decimal(v)) for v in uniq]))
    offset = 0
    for where, inv, texts in groups:
        codes[where] = inv + offset
        offset += len(texts)
        texts_by_group.extend(texts)
    return _recode(codes, texts_by_group)


def nominal_codes(raw: pa.Table, kinds: np.ndarray):
    """Codes of the JSON values (-1 for nulls) by canonical JSON, and the sorted texts."""
    encoded = raw.column("s").combine_chunks().dictionary_encode()
    codes = arrow_numpy.to_numpy(encoded.indices, -1).astype(np.int64)
    codes[kinds != KIND_JSON] = -1
    texts = [canonical(json.loads(v)) for v in encoded.dictionary.to_pylist()]
    return _recode(codes, texts)


def _recode(codes: np.ndarray, texts: list[str]) -> tuple[np.ndarray, list[str]]:
    """Merge codes whose texts are equal; new codes follow the sorted texts."""
    if not texts:
        return codes, []
    uniq, inv = np.unique(np.array(texts, dtype=object), return_inverse=True)
    mapped = np.where(codes >= 0, inv[np.maximum(codes, 0)], -1)
    return mapped.astype(np.int64), uniq.tolist()


def tables(
    codes: np.ndarray, texts: list[str], bounds: np.ndarray
) -> list[dict[str, int] | None]:
    """{canonical JSON: count} per segment (None where the segment has no value)."""
    nb = len(bounds) - 1
    segment_of, code, count = order.code_counts(codes, bounds, len(texts))
    splits = np.searchsorted(segment_of, np.arange(nb + 1))
    labels = np.array(texts, dtype=object)
    out: list[dict[str, int] | None] = [None] * nb
    counts = count.tolist()
    for j in np.flatnonzero(np.diff(splits)).tolist():
        a, b = splits[j], splits[j + 1]
        out[j] = dict(zip(labels[code[a:b]].tolist(), counts[a:b], strict=True))
    return out


def add_tables(tables: Iterable[dict | None]) -> dict[str, int] | None:
    total: Counter = Counter()
    seen = False
    for table in tables:
        if table:
            total.update(table)
            seen = True
    return dict(total) if seen else None


def most(table: dict[str, int], sign: int) -> str:
    """most_often (sign 1) / least_often (sign -1): ties go to the smallest canonical JSON."""
    return min(table.items(), key=lambda kv: (-sign * kv[1], kv[0]))[0]


def keyed_by_value(table: dict[str, int], decode: Callable[[str], Any]) -> dict:
    """Keys are the values; dict/list values are keyed by their canonical JSON, and so is a
    scalar whose value would be the same Python key as another entry's (1, 1.0 and True; the
    text "[1,2]" beside the list [1, 2]), so that no count is lost: canonical JSON texts
    differ from each other, so each collision resolved by them leaves fewer to resolve."""
    entries = [(text, decode(text), count) for text, count in table.items()]
    keys = [text if isinstance(value, (dict, list)) else value for text, value, _ in entries]
    while True:
        taken = Counter(keys)
        clashing = [i for i, key in enumerate(keys)
                    if taken[key] > 1 and key != entries[i][0]]
        if not clashing:
            break
        for i in clashing:
            keys[i] = entries[i][0]
    return {key: count for key, (_, _, count) in zip(keys, entries)}

"""Raw value kinds: what the ``k`` column of a raw row says about its payload (behaviour §5.1).

The one home of the kind numbers and of the text forms the kinds store, so that the encoder
(``values``), the readers (``raw_numbers``, ``exact``, ``frequencies``, the engine's export),
the verification oracles and the backends agree on them. Stored data depends on every constant
here: never renumber a kind or change the canonical text. This module imports nothing from the
package, so any module (storage included) may import it.

Kinds::

    KIND_NULL       0   nothing            (None, float NaN)
    KIND_INT        1   i                  default numeric mode, ints within int64
    KIND_FLOAT      2   f                  default numeric mode, everything else numeric
    KIND_EXACT      3   s                  high-accuracy mode: str(Decimal) in HIGH_ACCURACY
    KIND_JSON       4   s                  nominal and graph values, canonical_json text
    KIND_AGGREGATE  5   s                  a pre-aggregated numeric dict, canonical_json text

Plain ints rather than an enum: they are compared with numpy and Arrow arrays on hot paths and
spliced into SQL text, where a plain int needs no conversion.
"""

from __future__ import annotations

import decimal
import json
from typing import Any

KIND_NULL = 0
KIND_INT = 1
KIND_FLOAT = 2
KIND_EXACT = 3
KIND_JSON = 4
KIND_AGGREGATE = 5

# The kinds that hold one plain number (the numeric readers' "values").
NUMBER_KINDS = (KIND_INT, KIND_FLOAT, KIND_EXACT)

# High-accuracy numbers (kind 3 text and exact results) have 64 significant digits.
HIGH_ACCURACY = decimal.Context(prec=64)


def canonical_json(value: Any) -> str:
    """One text per JSON value (sorted keys, compact, unicode kept, no NaN), so equal values
    compare as equal text: the stored form of kinds 4 and 5 and the keys of frequency tables."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )

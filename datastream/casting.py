"""Locating the element that made a vectorised Arrow cast fail.

A cast over a whole column either succeeds or raises without saying which element was at
fault. Messages about bad input must name its line, so the first offending element is found
by bisection over prefixes: a logarithmic number of vectorised casts, and no per-row Python
work on the normal (valid) path. Shared by the file readers of the CLI and the line protocol
parser.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa


def first_failure(array: pa.Array, convert: Callable[[pa.Array], object]) -> int:
    """Index of the first element that ``convert`` rejects (``convert`` failed on ``array``)."""
    low, high = 0, len(array)  # the shortest failing prefix has a length in (low, high]
    while high - low > 1:
        middle = (low + high) // 2
        try:
            convert(array.slice(0, middle))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
            high = middle
        else:
            low = middle
    return high - 1

"""Verification (behaviour §10): recompute stored data from what it was derived from, and compare.

Levels are recomputed from raw points by DuckDB SQL (``sql_oracle``; Decimal streams in exact
rational arithmetic, ``exact_oracle``), derived streams by replaying their sources through plain
implementations of the operators (``replay``). Neither shares code with the kernels that
produced the stored data, so a bug there shows up here as a mismatch.
"""

from .checker import verify
from .result import ABSENT, Verification, describe

__all__ = ["ABSENT", "Verification", "describe", "verify"]

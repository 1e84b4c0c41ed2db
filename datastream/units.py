"""Numeric constants shared across the package: the time unit and the int64 range.

Times are int64 epoch microseconds everywhere (behaviour §4.1); these names replace the bare
``1_000_000`` and ``2**63`` that used to be spelled out per module. Imports nothing from the
package, so any module may import it.
"""

from __future__ import annotations

US_PER_SECOND = 1_000_000  # microseconds per second, the unit of every stored time

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

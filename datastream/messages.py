"""Bounded reprs for error messages (behaviour §8: every message names the offending value).

A value in a message may be hostile: huge, nested ten thousand levels deep, an int too long to
print, or an object whose ``__repr__`` fails. Naming it must never cost more than a few
hundred characters of work nor raise anything but the error being reported.
"""

from __future__ import annotations

import reprlib
from typing import Any

LIMIT = 200

_REPR = reprlib.Repr()
_REPR.maxlevel = 4
_REPR.maxstring = _REPR.maxother = 120
_REPR.maxlong = 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = 8


def show(value: Any) -> str:
    """A short repr of ``value``; its type name when even that fails."""
    try:
        text = _REPR.repr(value)
    except Exception:  # noqa: BLE001 - e.g. an int too long to print, a broken __repr__
        text = f"<{type(value).__name__}>"
    return text if len(text) <= LIMIT else text[: LIMIT - 3] + "..."

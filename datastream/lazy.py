"""Modules imported on first use, so that ``import datastream`` stays cheap.

``pyarrow.compute`` builds hundreds of wrapper functions with their docstrings when imported
(~0.1 s), and only reads and some encodings need it.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Stands for the module ``name``; the first attribute access imports it."""

    def __init__(self, name: str) -> None:
        self._lazy_name = name

    def __getattr__(self, attribute: str) -> Any:
        module = importlib.import_module(self._lazy_name)
        # later lookups find the attribute here and no longer reach __getattr__
        self.__dict__.update(vars(module))
        return getattr(module, attribute)

    def __repr__(self) -> str:
        return f"<lazy module {self._lazy_name!r}>"


pc = LazyModule("pyarrow.compute")

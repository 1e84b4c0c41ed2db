"""Modules imported on first use, so that ``import datastream`` stays cheap.

pyarrow loads its C++ library (and with it ``socket``, ``uuid``, ``decimal``) in about a third of
what ``import datastream`` costs, and ``pyarrow.compute`` builds hundreds of wrapper functions
with their docstrings (~0.1 s) on top: the modules that ``import datastream`` loads refer to them
through the stand-ins below, which import the real module on the first attribute access (a
stream's first append, flush or read). The same holds for ``blosc2`` (the chunk codec's
compressor, needed from the first chunk written or read) and, on a smaller scale, for ``uuid``
and ``html``. Annotations such as ``pa.Table`` are not evaluated (every
module uses ``from __future__ import annotations``), so they do not count as an access.
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


pa = LazyModule("pyarrow")
pc = LazyModule("pyarrow.compute")
uuid = LazyModule("uuid")  # loads platform and its helpers; only new streams need it
html = LazyModule("html")  # html.entities' table; only notebook displays need it
# blosc2 loads its array, expression and remote-table modules (httpx among them) with its
# compressor: ~0.3 s, which a process that only opens a store and reads metadata never needs.
blosc2 = LazyModule("blosc2")

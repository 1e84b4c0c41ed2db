"""Jupyter display of plain pyarrow Tables, such as ``get_table`` results (behaviour §6.5).

``Datapoints`` and ``Streams`` carry their own ``_repr_html_``; a ``pyarrow.Table`` does not and
is not ours to patch, so its compact HTML is registered with the running IPython shell instead.
IPython is never imported here: a shell that is running has already imported it.
"""

from __future__ import annotations

import sys
from typing import Any

from .html_tables import table_html
from .lazy import pa


def running_shell() -> Any:
    """The active IPython shell, or None outside IPython/Jupyter."""
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    return None if get_ipython is None else get_ipython()


def register_table_html() -> bool:
    """Show pyarrow Tables as compact HTML in the running shell (idempotent); False when
    there is no shell to register with."""
    shell = running_shell()
    formatters = getattr(getattr(shell, "display_formatter", None), "formatters", None)
    if not formatters or "text/html" not in formatters:
        return False
    formatters["text/html"].for_type(pa.Table, _html_of_table)
    return True


def _html_of_table(table: pa.Table) -> str:
    return table_html(table, caption="pyarrow.Table")

"""Compact HTML tables for notebooks: the first and last rows of a result and its size.

Jupyter shows whatever ``_repr_html_`` returns; a result of millions of rows must still render
instantly, so only the rows at both ends are ever converted (behaviour §6.5). Every cell and
column name is escaped. No pandas: these are a handful of Python values.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from typing import Any

from .lazy import html, pa

EDGE_ROWS = 5  # rows shown at each end of a long table

_STYLE = "font-family: monospace; font-size: 90%; border-collapse: collapse"


def table_html(table: pa.Table, caption: str | None = None, edge: int = EDGE_ROWS) -> str:
    """Any pyarrow Table (e.g. a ``get_table`` result) as compact HTML."""
    total = table.num_rows
    if total <= 2 * edge:
        head, tail = table, table.slice(0, 0)
    else:
        head, tail = table.slice(0, edge), table.slice(total - edge, edge)
    return rows_html(table.column_names, table_rows(head), table_rows(tail), total, caption)


def table_rows(table: pa.Table) -> list[tuple]:
    """The rows of a (short) table as tuples of Python values."""
    return list(zip(*(column.to_pylist() for column in table.columns)))


def rows_html(
    columns: Sequence[str],
    head: Sequence[Sequence[Any]],
    tail: Sequence[Sequence[Any]],
    total: int,
    caption: str | None = None,
) -> str:
    """A table of ``head`` (positions 0, 1, ...) and ``tail`` (the last positions of ``total``),
    with an ellipsis row between them when rows were left out, and the total below."""
    header = "".join(f"<th>{html.escape(str(name))}</th>" for name in columns)
    lines = [f'<table style="{_STYLE}">']
    if caption:
        lines.append(f"<caption>{html.escape(caption)}</caption>")
    lines.append(f"<thead><tr><th></th>{header}</tr></thead><tbody>")
    lines.extend(_row(position, row) for position, row in enumerate(head))
    hidden = total - len(head) - len(tail)
    if hidden > 0:
        cells = "<td>⋮</td>" * len(columns)
        lines.append(f'<tr title="{hidden} rows not shown"><th>⋮</th>{cells}</tr>')
    first_tail = total - len(tail)
    lines.extend(_row(first_tail + offset, row) for offset, row in enumerate(tail))
    lines.append("</tbody></table>")
    noun = "row" if total == 1 else "rows"
    lines.append(f"<p><small>{total:,} {noun} × {len(columns)} columns</small></p>")
    return "\n".join(lines)


def _row(position: int, row: Sequence[Any]) -> str:
    cells = "".join(_cell(value) for value in row)
    return f"<tr><th>{position}</th>{cells}</tr>"


def _cell(value: Any) -> str:
    if value is None:
        return '<td style="opacity: 0.5">null</td>'
    align = ' style="text-align: right"' if isinstance(value, int | float) else ""
    return f"<td{align}>{html.escape(cell_text(value))}</td>"


def cell_text(value: Any) -> str:
    """Short text of one value: UTC times without the offset, floats to 6 significant digits
    when their shortest form is long, containers as compact JSON."""
    if isinstance(value, datetime.datetime):
        return utc_text(value)
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text if len(text) <= 12 else f"{value:.6g}"
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def utc_text(moment: datetime.datetime) -> str:
    """``2026-01-01 00:00:00`` (microseconds only when there are some), in UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc)
    pattern = "%Y-%m-%d %H:%M:%S.%f" if moment.microsecond else "%Y-%m-%d %H:%M:%S"
    return moment.strftime(pattern)

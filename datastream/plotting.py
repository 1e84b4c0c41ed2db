"""``Datapoints.plot``: a result drawn with matplotlib (an optional extra, imported here only).

A downsampled read shows every bucket of its range, empty ones as null rows; they become NaN so
that the line and the min–max band break there instead of bridging a gap with a straight line.
Times are plotted as UTC (bucket starts for downsampled results, like ``t`` in the exports).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from .lazy import pc
from .results import ReadContext

PREFERRED = "mean"  # the line of a downsampled result, when the stream stores it
NOT_PLOTTABLE = ("most_often", "least_often", "frequencies")  # values, not magnitudes
BAND_ALPHA = 0.25


def plot_result(table: pa.Table, context: ReadContext | None, ax: Any = None, **kwargs: Any) -> Any:
    """Draw an exported result (``Datapoints.to_arrow()``) on ``ax`` and return the Axes."""
    if context is not None and context.value_type != "numeric":
        raise TypeError(
            f"plot() draws numeric streams; stream {context.stream_id} holds "
            f"{context.value_type} values"
        )
    raw = "v" in table.column_names if context is None else context.raw
    column = "v" if raw else _line_column(table)
    times = _times(table)
    line = _as_floats(table.column(column), column)
    ax = _axes(ax)
    kwargs.setdefault("label", column)
    (drawn,) = ax.plot(times, line, **kwargs)
    if not raw and "min" in table.column_names and "max" in table.column_names:
        low = _as_floats(table.column("min"), "min")
        high = _as_floats(table.column("max"), "max")
        ax.fill_between(times, low, high, where=~(np.isnan(low) | np.isnan(high)),
                        color=drawn.get_color(), alpha=BAND_ALPHA, linewidth=0, label="min–max")
    _cover_range(ax, times)
    _label_axes(ax, column)
    return ax


def _cover_range(ax: Any, times: np.ndarray) -> None:
    """Widen the x axis to the whole result: empty buckets at either end are part of it,
    though matplotlib would scale only to the points it drew."""
    if not len(times):
        return
    import matplotlib.dates as mdates

    ends = mdates.date2num(np.array([times.min(), times.max()]))
    ax.update_datalim([(ends[0], 0.0), (ends[1], 0.0)], updatey=False)
    ax.autoscale_view()


def _line_column(table: pa.Table) -> str:
    """``mean`` when present, else the first value-downsampler column with numbers."""
    candidates = [name for name in table.column_names
                  if name != "t" and not name.startswith("time_") and name not in NOT_PLOTTABLE]
    if PREFERRED in candidates:
        return PREFERRED
    if not candidates:
        raise TypeError("plot() found no numeric downsampler column to draw "
                        f"(columns: {', '.join(table.column_names)})")
    return candidates[0]


def _times(table: pa.Table) -> np.ndarray:
    """``t`` as naive datetime64[us] in UTC, which matplotlib's date axis reads as UTC."""
    return table.column("t").cast(pa.timestamp("us")).to_numpy()


def _as_floats(column: pa.ChunkedArray, name: str) -> np.ndarray:
    """float64 with NaN for nulls; exact decimal text (high-accuracy streams) is rounded."""
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            column = pc.cast(column, pa.float64())
        except pa.ArrowInvalid as error:
            raise TypeError(f"plot() cannot draw the non-numeric column {name!r}") from error
    elif not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        raise TypeError(f"plot() cannot draw column {name!r} of type {kind}")
    return column.cast(pa.float64()).to_numpy()


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    return ax


def _label_axes(ax: Any, column: str) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlabel("time (UTC)")
    if not ax.get_ylabel():
        ax.set_ylabel(column)

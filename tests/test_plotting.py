"""Datapoints.plot (behaviour §6.5): what is drawn, checked on the artists and on the PNG."""

from __future__ import annotations

import datetime
import decimal
import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.image as mimage  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import datastream  # noqa: E402

UTC = datetime.timezone.utc
G = datastream.Granularity
START = datetime.datetime(2026, 1, 1, tzinfo=UTC)
LINE_COLOR = "#d62728"


@pytest.fixture
def ds():
    with datastream.Datastream() as store:
        yield store
    plt.close("all")


@pytest.fixture
def gapped(ds):
    """Three hours of one-second points with nothing between 01:00 and 02:00."""
    stream_id = ds.ensure_stream({"room": "lab"}, {}, ["mean", "min", "max"], G.Seconds)
    seconds = np.concatenate([np.arange(0, 3600), np.arange(7200, 10800)])
    stamps = np.datetime64("2026-01-01T00:00:00", "us") + seconds * np.timedelta64(1, "s")
    ds.append_arrays(stream_id, stamps, 10 + np.sin(seconds / 600.0) + (seconds % 7) / 10)
    ds.downsample_streams(until=START + datetime.timedelta(hours=4))
    return ds, stream_id


def render(ax) -> np.ndarray:
    """The figure as an RGB array (row 0 at the top), drawn at the figure's own dpi."""
    buffer = io.BytesIO()
    ax.figure.savefig(buffer, format="png", dpi=ax.figure.dpi)
    buffer.seek(0)
    return mimage.imread(buffer, format="png")[:, :, :3]


def coloured_columns(ax, image: np.ndarray, colour: str) -> np.ndarray:
    """x pixel positions inside the axes where some pixel has ``colour`` (within 10%)."""
    box = ax.get_window_extent()
    height = image.shape[0]
    top, bottom = int(height - box.y1) + 3, int(height - box.y0) - 3
    left, right = int(box.x0) + 3, int(box.x1) - 3
    inside = image[top:bottom, left:right]
    target = np.array(matplotlib.colors.to_rgb(colour))
    hits = np.all(np.abs(inside - target) < 0.1, axis=2)
    return np.flatnonzero(hits.any(axis=0)) + left


def x_pixel(ax, moment: datetime.datetime) -> float:
    return ax.transData.transform((mdates.date2num(moment), 0))[0]


def test_raw_values_are_drawn_as_a_line_against_utc_time(ds) -> None:
    stream_id = ds.ensure_stream({"room": "lab"}, {}, [], G.Seconds)
    stamps = np.datetime64("2026-01-01T00:00:00", "us") + np.arange(600) * np.timedelta64(1, "s")
    values = np.cos(np.arange(600) / 50.0)
    ds.append_arrays(stream_id, stamps, values)
    ds.append(stream_id, None, START + datetime.timedelta(seconds=600))
    ax = ds.get_data(stream_id, G.Seconds, start=START).plot(color=LINE_COLOR)
    (line,) = ax.get_lines()
    assert np.array_equal(line.get_xdata()[:600], stamps)
    assert np.array_equal(line.get_ydata()[:600], values)
    assert np.isnan(line.get_ydata()[600])  # a null value breaks the line
    assert line.get_color() == LINE_COLOR
    assert ax.get_xlabel() == "time (UTC)" and ax.get_ylabel() == "v"
    assert not ax.collections  # no band for raw points
    drawn = coloured_columns(ax, render(ax), LINE_COLOR)
    first, last = x_pixel(ax, START), x_pixel(ax, START + datetime.timedelta(seconds=599))
    assert drawn.min() <= first + 2 and drawn.max() >= last - 2


def test_downsampled_mean_line_band_and_gap(gapped) -> None:
    ds, stream_id = gapped
    data = ds.get_data(stream_id, G.Minutes, start=START)
    table = data.to_arrow()
    # the empty hour is 60 null rows, not missing ones; the newest minute is still open
    assert table.num_rows == 179
    assert table.column("mean").null_count == 60
    ax = data.plot(color=LINE_COLOR)
    (line,) = ax.get_lines()
    means = np.array(table.column("mean").to_pylist(), dtype=float)
    assert np.array_equal(line.get_ydata(), means, equal_nan=True)
    assert np.isnan(line.get_ydata()[60:120]).all()
    assert line.get_label() == "mean"

    (band,) = ax.collections
    paths = band.get_paths()
    assert len(paths) == 2  # one polygon each side of the gap
    low = np.array(table.column("min").to_pylist(), dtype=float)
    high = np.array(table.column("max").to_pylist(), dtype=float)
    for path, rows in zip(paths, [slice(0, 60), slice(120, 179)]):
        ys = path.vertices[:, 1]
        assert np.isclose(ys.min(), low[rows].min()) and np.isclose(ys.max(), high[rows].max())
        xs = mdates.num2date(path.vertices[:, 0].min())
        assert xs == START + datetime.timedelta(minutes=rows.start)

    drawn = coloured_columns(ax, render(ax), LINE_COLOR)
    gap_from = x_pixel(ax, START + datetime.timedelta(minutes=59)) + 2
    gap_to = x_pixel(ax, START + datetime.timedelta(minutes=120)) - 2
    in_gap = drawn[(drawn > gap_from) & (drawn < gap_to)]
    assert len(in_gap) == 0, "the line bridged the empty buckets"
    assert (drawn < gap_from).sum() > 50 and (drawn > gap_to).sum() > 50


def test_empty_buckets_at_the_end_widen_the_time_axis(ds) -> None:
    stream_id = ds.ensure_stream({"room": "lab"}, {}, ["mean"], G.Seconds)
    ds.append(stream_id, 1.0, START)
    ds.append(stream_id, 2.0, START + datetime.timedelta(seconds=30))
    ds.append(stream_id, 3.0, START + datetime.timedelta(hours=1))
    ds.downsample_streams(until=START + datetime.timedelta(hours=2))
    ax = ds.get_data(stream_id, G.Minutes, start=START).plot()
    left, right = ax.get_xlim()
    assert right >= mdates.date2num(START + datetime.timedelta(minutes=59))


def test_without_mean_the_first_numeric_downsampler_is_drawn(gapped) -> None:
    ds, stream_id = gapped
    data = ds.get_data(stream_id, G.Minutes, start=START, value_downsamplers=["max"])
    fig, ax = plt.subplots()
    returned = data.plot(ax=ax)
    assert returned is ax
    (line,) = ax.get_lines()
    assert line.get_label() == "max" and ax.get_ylabel() == "max"
    assert not ax.collections  # min and max are both needed for a band


def test_high_accuracy_values_are_drawn_as_floats(ds) -> None:
    stream_id = ds.ensure_stream({"room": "lab"}, {}, ["mean"], G.Seconds,
                                 value_type_options={"high_accuracy": True})
    ds.append(stream_id, decimal.Decimal("0.1"), START)
    ds.append(stream_id, decimal.Decimal("2.5"), START + datetime.timedelta(seconds=1))
    ax = ds.get_data(stream_id, G.Seconds, start=START).plot()
    assert list(ax.get_lines()[0].get_ydata()) == [0.1, 2.5]


@pytest.mark.parametrize(("value_type", "value"), [
    ("nominal", "on"),
    ("graph", {"v": [{"i": 1}], "e": []}),
])
def test_non_numeric_streams_are_refused(ds, value_type, value) -> None:
    stream_id = ds.ensure_stream({"room": "lab"}, {}, [], G.Seconds, value_type=value_type)
    ds.append(stream_id, value, START)
    with pytest.raises(TypeError, match=f"holds {value_type} values"):
        ds.get_data(stream_id, G.Seconds, start=START).plot()

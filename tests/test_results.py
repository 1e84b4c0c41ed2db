"""behaviour §6.3, §6.5: Datapoints/Streams exports to pandas and polars, repr and HTML."""

from __future__ import annotations

import datetime
import re
import sys

import numpy as np
import pyarrow as pa
import pytest

import datastream
from datastream.results import Datapoints, TableRows

UTC = datetime.timezone.utc
G = datastream.Granularity
START = datetime.datetime(2026, 1, 1, tzinfo=UTC)
EVER = datetime.datetime.min


def seconds_from_start(count: int) -> np.ndarray:
    return np.datetime64("2026-01-01T00:00:00", "us") + np.arange(count) * np.timedelta64(1, "s")


@pytest.fixture
def ds():
    with datastream.Datastream() as store:
        yield store


@pytest.fixture
def hour(ds):
    """3605 one-second points from 2026-01-01 00:00:00, downsampled up to 01:00:04."""
    stream_id = ds.ensure_stream({"room": "lab"}, {}, ["mean", "min", "max"], G.Seconds)
    ds.append_arrays(stream_id, seconds_from_start(3605), np.arange(3605, dtype="float64"))
    ds.downsample_streams(until=START + datetime.timedelta(hours=2))
    return ds, stream_id


def test_raw_repr_names_count_stream_granularity_and_span(hour) -> None:
    ds, stream_id = hour
    text = repr(ds.get_data(stream_id, G.Seconds, start=START))
    assert text == (
        f"<Datapoints: 3,605 raw points of stream {stream_id[:8]}… at seconds, "
        "2026-01-01 00:00:00 → 2026-01-01 01:00:04>"
    )


def test_downsampled_repr_counts_buckets_and_marks_reverse(hour) -> None:
    ds, stream_id = hour
    minutes = ds.get_data(stream_id, G.Minutes, start=START)
    assert repr(minutes) == (
        f"<Datapoints: 60 buckets of stream {stream_id[:8]}… at minutes, "
        "2026-01-01 00:00:00 → 2026-01-01 00:59:00>"
    )
    newest_first = ds.get_data(stream_id, G.Minutes, start=START, reverse=True)
    assert repr(newest_first).endswith("2026-01-01 00:00:00 → 2026-01-01 00:59:00 (newest first)>")
    assert repr(minutes[1:2]).startswith("<Datapoints: 1 bucket of stream")
    assert "00:01:00 → 2026-01-01 00:01:00" in repr(minutes[1:2])


def test_repr_of_empty_result_and_of_closed_store(ds) -> None:
    stream_id = ds.ensure_stream({"room": "lab"}, {}, [], G.Seconds)
    empty = ds.get_data(stream_id, G.Seconds, start=START)
    assert repr(empty) == f"<Datapoints: 0 raw points of stream {stream_id[:8]}… at seconds>"
    ds.append(stream_id, 1.0, START)
    unread = ds.get_data(stream_id, G.Seconds, start=START)
    ds.close()
    text = repr(unread)  # never raises: a repr is what a debugger or notebook shows
    assert text.startswith(f"<Datapoints of stream {stream_id[:8]}… at seconds (unreadable:")
    assert unread._repr_html_().startswith("<pre>&lt;Datapoints of stream")


def test_repr_without_read_context() -> None:
    """Datapoints built by other callers (no stream context) still describe themselves."""
    table = pa.table({"t": pa.array([0, 90_000_000], pa.timestamp("us", tz="UTC")),
                      "v": [1.0, 2.0]})
    data = Datapoints(TableRows(lambda: table), lambda t: t.to_pylist(), lambda t: t)
    assert repr(data) == "<Datapoints: 2 rows, 1970-01-01 00:00:00 → 1970-01-01 00:01:30>"
    assert "<caption>Datapoints</caption>" in data._repr_html_()


def test_repr_and_html_convert_only_the_ends_of_a_long_gap(ds) -> None:
    """A year at 10 s is ~3 M buckets; showing it must not build them."""
    stream_id = ds.ensure_stream({"room": "lab"}, {}, ["mean"], G.Seconds)
    ds.append(stream_id, 1.0, START)
    ds.append(stream_id, 2.0, START + datetime.timedelta(days=365))
    ds.downsample_streams(until=START + datetime.timedelta(days=366))
    data = ds.get_data(stream_id, G.Seconds10, start=START)
    asked: list[int] = []
    source = data._source
    original = source.rows

    def recording(positions, page):
        asked.append(len(positions))
        return original(positions, page)

    source.rows = recording
    assert len(data) == 365 * 8640
    assert "3,153,600 buckets" in repr(data)
    html = data._repr_html_()
    assert asked and max(asked) <= 5
    assert "3,153,600 rows" in html
    assert "<th>3153599</th>" in html  # the last row's position


def _body_rows(html: str) -> list[str]:
    body = html.split("<tbody>", 1)[1]
    return re.findall(r"<tr[^>]*><th>([^<]*)</th>", body)


def test_html_shows_first_and_last_five_rows_and_total(hour) -> None:
    ds, stream_id = hour
    data = ds.get_data(stream_id, G.Minutes, start=START)
    html = data._repr_html_()
    assert _body_rows(html) == ["0", "1", "2", "3", "4", "⋮", "55", "56", "57", "58", "59"]
    assert "60 rows" in html
    assert "<td>2026-01-01 00:59:00</td>" in html
    assert '<td style="text-align: right">3569.5</td>' in html  # mean of the last minute
    short = data[:3]._repr_html_()
    assert _body_rows(short) == ["0", "1", "2"]


def test_html_escapes_values_and_shows_nulls(ds) -> None:
    stream_id = ds.ensure_stream({"room": "lab"}, {}, [], G.Seconds, value_type="nominal")
    ds.append(stream_id, "<script>alert(1)</script>", START)
    ds.append(stream_id, None, START + datetime.timedelta(seconds=1))
    html = ds.get_data(stream_id, G.Seconds, start=START)._repr_html_()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert ">null</td>" in html


def test_streams_repr_and_html(ds) -> None:
    ids = [ds.ensure_stream({"room": f"r{n}", "kind": "<t>"}, {}, [], G.Seconds) for n in range(12)]
    found = ds.find_streams({"kind": "<t>"})
    text = repr(found)
    assert text.startswith('<Streams: 12 streams: {"room":"r0","kind":"<t>"}')
    assert text.endswith("… (9 more)>")
    one = ds.find_streams({"room": "r3"})
    assert repr(one) == '<Streams: 1 stream: {"room":"r3","kind":"<t>"}>'
    assert repr(ds.find_streams({"room": "none"})) == "<Streams: 0 streams>"
    html = found._repr_html_()
    assert _body_rows(html) == ["0", "1", "2", "3", "4", "⋮", "7", "8", "9", "10", "11"]
    assert ids[0] in html and ids[11] in html and ids[6] not in html
    assert "&lt;t&gt;" in html and "<t>" not in html
    assert "<th>highest_granularity</th>" in html


def test_to_pandas_indexes_by_utc_time(hour) -> None:
    ds, stream_id = hour
    frame = ds.get_data(stream_id, G.Minutes, start=START, value_downsamplers=["mean"],
                        time_downsamplers=[]).to_pandas()
    assert list(frame.columns) == ["mean"]
    assert frame.index.name == "t"
    assert str(frame.index.tz) == "UTC"
    assert frame.index[0].to_pydatetime() == START
    assert frame.loc["2026-01-01 00:01:00+00:00", "mean"] == 89.5
    raw = ds.get_data(stream_id, G.Seconds, start=START).to_pandas()
    assert raw["v"].resample("10min").mean().iloc[0] == 299.5


def test_to_polars_keeps_t_as_utc_datetime_column(hour) -> None:
    import polars as pl

    ds, stream_id = hour
    frame = ds.get_data(stream_id, G.Seconds, start=START).to_polars()
    assert frame.columns == ["t", "v"]
    assert frame.schema["t"] == pl.Datetime("us", "UTC")
    assert frame.height == 3605
    assert frame["v"][-1] == 3604.0
    assert frame["t"][0] == START


@pytest.mark.parametrize(("method", "module", "extra"), [
    ("to_pandas", "pandas", "pandas"),
    ("to_polars", "polars", "polars"),
    ("plot", "matplotlib", "plot"),
])
def test_missing_optional_dependency_names_the_extra(hour, monkeypatch, method, module,
                                                     extra) -> None:
    ds, stream_id = hour
    data = ds.get_data(stream_id, G.Seconds, start=START)
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(ImportError, match=re.escape(f"pip install 'datastream-columnar[{extra}]'")):
        getattr(data, method)()

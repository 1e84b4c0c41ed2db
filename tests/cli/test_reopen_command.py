"""``datastream reopen`` (behaviour §11): what it reopens, late points after it, refusals."""

from __future__ import annotations

import datetime

import pytest

import datastream
from datastream.backends import duckdb

from .support import START, freeze_clock, invoke, minutely_store

NOW = START + datetime.timedelta(days=3, hours=1)
LEVELS = ["10seconds", "minutes", "10minutes", "hours", "6hours", "days"]


@pytest.fixture
def store(tmp_path, monkeypatch):
    """Stream x (three days, one point a minute) and d, its derivative, both downsampled."""
    freeze_clock(monkeypatch, NOW)
    path = tmp_path / "s.duckdb"
    source = minutely_store(path, NOW)
    with datastream.Datastream(duckdb.Backend(str(path)), clock=lambda: NOW) as ds:
        derived = ds.ensure_stream({"n": "d"}, {}, ["mean"], "seconds", derive_from=[source],
                                   derive_op="derivative")
        ds.backprocess_streams()
        ds.downsample_streams()
    return path, source, derived


def bounds(path, stream_id: str) -> dict:
    with datastream.Datastream(duckdb.Backend(str(path))) as ds:
        return ds.get_tags(stream_id)["downsampled_until"]


def bound_lines(*times: str) -> str:
    return "".join(f"  {name:<9}  downsampled until {time}\n"
                   for name, time in zip(LEVELS, times, strict=True))


def test_reopen_lists_each_stream_and_its_new_bounds(store) -> None:
    path, source, derived = store
    result = invoke("reopen", "--db", path, "--tag", "n=x", "--start", "2000-01-03T12:00:35")
    assert result.exit_code == 0, result.output
    # each level goes back to the start of its bucket holding --start; d is derived from x
    lines = bound_lines("2000-01-03T12:00:30+00:00", *["2000-01-03T12:00:00+00:00"] * 4,
                        "2000-01-03T00:00:00+00:00")
    assert result.output == (f'{source} {{"n": "x"}}\n{lines}'
                             f'{derived} {{"n": "d"}} (derived)\n{lines}'
                             "reopened 2 streams from 2000-01-03T12:00:35+00:00\n")


def test_late_points_after_reopening_are_downsampled(store) -> None:
    path, source, _ = store
    before = bounds(path, source)
    late = START + datetime.timedelta(days=2, hours=12, seconds=40)
    with datastream.Datastream(duckdb.Backend(str(path))) as ds:
        with pytest.raises(datastream.exceptions.InvalidTimestamp):
            ds.append(source, 10_000.0, late, check_timestamp=False)
    result = invoke("reopen", "--db", path, "--tag", "n=x", "--start", "2000-01-03T12:00",
                    "--quiet")
    assert result.exit_code == 0 and "reopened" not in result.output
    with datastream.Datastream(duckdb.Backend(str(path))) as ds:
        ds.append(source, 10_000.0, late, check_timestamp=False)
    assert invoke("downsample", "--db", path).exit_code == 0
    assert bounds(path, source) == before  # the reopened buckets are closed again
    with datastream.Datastream(duckdb.Backend(str(path))) as ds:
        hour = ds.get_data(source, "hours", start=late, end=late,
                           value_downsamplers=["max"], time_downsamplers=[])
        assert [point["v"] for point in hour] == [{"u": 10_000.0}]
    verified = invoke("verify", "--db", path)
    assert verified.exit_code == 0, verified.output


def test_nothing_downsampled_after_start_reopens_nothing(store) -> None:
    path, source, _ = store
    before = bounds(path, source)
    result = invoke("reopen", "--db", path, "--start", "2000-02-01")
    assert (result.exit_code, result.output) == (
        0, "reopened 0 streams from 2000-02-01T00:00:00+00:00\n")
    assert bounds(path, source) == before


def test_reopening_before_the_kept_raw_points_is_refused(store) -> None:
    path, source, _ = store
    invoke("retention", "set", "--db", path, "--tag", "n=x", "--keep", "seconds=1d")
    applied = invoke("retention", "apply", "--db", path)
    # d has consumed x up to its last point: x keeps the point before the cut for it
    assert applied.output == "seconds: 2,879 deleted\n2 streams matched\n"
    before = bounds(path, source)
    result = invoke("reopen", "--db", path, "--start", "2000-01-02T00:00:00+00:00")
    assert result.exit_code == 1
    assert result.output == (f"error: cannot reopen stream {source} from"
                             " 2000-01-02T00:00:00+00:00: its buckets are recomputed from"
                             " 2000-01-02T00:00:00+00:00 but raw points are kept only from"
                             " 2000-01-02T23:59:00+00:00\n")
    assert bounds(path, source) == before


@pytest.mark.parametrize(("arguments", "problem"), [
    (["--start", "yesterday"], "Invalid value for --start: 'yesterday' is not an ISO-8601 time"),
    ([], "Missing option '--start'"),
])
def test_bad_start_is_a_usage_error_and_opens_nothing(tmp_path, arguments, problem) -> None:
    path = tmp_path / "never.duckdb"
    result = invoke("reopen", "--db", path, *arguments)
    assert result.exit_code == 2 and problem in result.output
    assert not path.exists()

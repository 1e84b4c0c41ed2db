"""``datastream retention show|set|apply`` (behaviour §11) on a store with a fixed clock."""

from __future__ import annotations

import datetime
import json

import pytest

import datastream
from datastream.backends import duckdb

from .support import START, freeze_clock, invoke, minutely_store, table_rows

NOW = START + datetime.timedelta(days=3, hours=1)
FIRST = "2000-01-01T00:00:00Z"


@pytest.fixture
def store(tmp_path, monkeypatch):
    """Three days of one point a minute, downsampled an hour after the last one."""
    freeze_clock(monkeypatch, NOW)
    path = tmp_path / "s.duckdb"
    return path, minutely_store(path, NOW)


def show_rows(path, *query: str) -> list[list[str]]:
    result = invoke("retention", "show", "--db", path, *query)
    assert result.exit_code == 0, result.output
    return table_rows(result.output)


def test_a_new_stream_keeps_everything_forever(store) -> None:
    path, stream_id = store
    result = invoke("retention", "show", "--db", path)
    assert result.exit_code == 0, result.output
    assert f"{stream_id} {{\"n\": \"x\"}}" in result.output
    assert result.output.endswith("1 streams\n")
    assert table_rows(result.output) == [
        ["seconds (raw)", "forever", FIRST],
        ["10seconds (S)", "forever", FIRST],
        ["minutes (m)", "forever", FIRST],
        ["10minutes (M)", "forever", FIRST],
        ["hours (h)", "forever", FIRST],
        ["6hours (H)", "forever", FIRST],
        ["days (d)", "forever", FIRST],
    ]


def test_set_apply_show(store) -> None:
    path, stream_id = store
    result = invoke("retention", "set", "--db", path, "--tag", "n=x",
                    "--keep", "seconds=1d", "--keep", "m=12h")
    assert (result.exit_code, result.output) == (
        0, "set retention seconds=1d, minutes=12h on 1 streams\n")
    # set deletes nothing by itself
    assert show_rows(path)[0] == ["seconds (raw)", "1d", FIRST]

    result = invoke("retention", "apply", "--db", path)
    # raw: older than now - 1 day (2 d 1 h) where the days level is closed (2 d); minutes:
    # older than 2 d 13 h, but coarser levels absorbed only up to 2 d
    assert (result.exit_code, result.output) == (
        0, "seconds: 2,880 deleted\nminutes: 2,880 deleted\n1 streams matched\n")
    kept = "2000-01-03T00:00:00Z"
    assert show_rows(path, "--tag", "n=x") == [
        ["seconds (raw)", "1d", kept],
        ["10seconds (S)", "forever", FIRST],
        ["minutes (m)", "12h", kept],
        ["10minutes (M)", "forever", FIRST],
        ["hours (h)", "forever", FIRST],
        ["6hours (H)", "forever", FIRST],
        ["days (d)", "forever", FIRST],
    ]
    # nothing more goes until the clock moves
    again = invoke("retention", "apply", "--db", path, "--json")
    assert json.loads(again.output) == {"streams": 1, "deleted": {"minutes": 0, "seconds": 0}}
    with datastream.Datastream(duckdb.Backend(str(path))) as ds:
        assert ds.get_tags(stream_id)["earliest_datapoint"] == START + datetime.timedelta(days=2)
        assert not ds.verify()


def test_apply_json_and_quiet(store) -> None:
    path, _ = store
    invoke("retention", "set", "--db", path, "--keep", "seconds=1d")
    result = invoke("retention", "apply", "--db", path, "--json")
    assert result.exit_code == 0
    assert json.loads(result.output) == {"streams": 1, "deleted": {"seconds": 2880}}
    quiet = invoke("retention", "apply", "--db", path, "--quiet")
    assert (quiet.exit_code, quiet.output) == (0, "seconds: 0 deleted\n")


def test_show_json(store) -> None:
    path, stream_id = store
    invoke("retention", "set", "--db", path, "--keep", "seconds=1d", "--keep", "hours=1y",
           "--keep", "days=forever")
    invoke("retention", "apply", "--db", path)
    result = invoke("retention", "show", "--db", path, "--json")
    assert result.exit_code == 0, result.output
    kept, first = "2000-01-03T00:00:00+00:00", "2000-01-01T00:00:00+00:00"

    def level(name, seconds=None, oldest=first, raw=False):
        return {"granularity": name, "raw": raw, "retention_seconds": seconds,
                "oldest_kept": oldest}

    assert json.loads(result.output) == [{
        "stream_id": stream_id,
        "tags": {"n": "x"},
        "levels": [
            level("seconds", 86_400.0, kept, raw=True),
            level("10seconds"), level("minutes"), level("10minutes"),
            level("hours", 365 * 86_400.0), level("6hours"), level("days"),
        ],
    }]


def test_no_stream_with_a_retention_deletes_nothing(store) -> None:
    path, _ = store
    result = invoke("retention", "apply", "--db", path)
    assert (result.exit_code, result.output) == (0, "1 streams matched, none with a retention\n")
    result = invoke("retention", "apply", "--db", path, "--tag", "n=nothing")
    assert (result.exit_code, result.output) == (0, "0 streams matched, none with a retention\n")


def test_forever_lifts_a_retention_and_other_levels_keep_theirs(store) -> None:
    path, _ = store
    invoke("retention", "set", "--db", path, "--keep", "seconds=1d", "--keep", "minutes=30d")
    result = invoke("retention", "set", "--db", path, "--keep", "s=forever")
    assert result.output == "set retention seconds=forever on 1 streams\n"
    assert [row[:2] for row in show_rows(path)][:3] == [
        ["seconds (raw)", "forever"], ["10seconds (S)", "forever"], ["minutes (m)", "30d"]]
    result = invoke("retention", "apply", "--db", path)
    assert result.output == "minutes: 0 deleted\n1 streams matched\n"


@pytest.mark.parametrize(("keep", "problem"), [
    ("seconds", "'seconds' is not LEVEL=SPAN"),
    ("weeks=1d", "'weeks=1d': unknown level 'weeks'; use one of seconds, 10seconds, minutes,"
                 " 10minutes, hours, 6hours, days (or s S m M h H d)"),
    ("seconds=1.5d", "'seconds=1.5d': '1.5d' is not a span; use a whole number and a unit:"
                     " 90s, 30m, 12h, 7d, 1y (365 days), or forever"),
    ("seconds=0d", "'seconds=0d': '0d': a span must be longer than zero"),
    ("seconds=", "'seconds=': '' is not a span"),
])
def test_bad_keep_is_a_usage_error_and_opens_nothing(tmp_path, keep, problem) -> None:
    path = tmp_path / "never.duckdb"
    result = invoke("retention", "set", "--db", path, "--keep", keep)
    assert result.exit_code == 2
    assert f"Invalid value for --keep: {problem}" in result.output
    assert not path.exists()


def test_a_level_given_twice_or_none_is_a_usage_error(store) -> None:
    path, _ = store
    result = invoke("retention", "set", "--db", path, "--keep", "m=1d", "--keep", "minutes=2d")
    assert result.exit_code == 2
    assert "Invalid value for --keep: 'minutes=2d': minutes is given twice" in result.output
    result = invoke("retention", "set", "--db", path)
    assert result.exit_code == 2 and "Missing option '--keep'" in result.output
    assert [row[1] for row in show_rows(path)] == ["forever"] * 7


def test_a_level_finer_than_some_stream_changes_no_stream(store) -> None:
    path, _ = store
    with datastream.Datastream(duckdb.Backend(str(path))) as ds:
        coarse = ds.ensure_stream({"n": "coarse"}, {}, ["mean"], "minutes")
    result = invoke("retention", "set", "--db", path, "--keep", "seconds=1d")
    assert result.exit_code == 1
    assert result.output == (f"error: stream {coarse} keeps its raw points at minutes: no"
                             f" retention at the finer seconds\n")
    assert [row[1] for row in show_rows(path)] == ["forever"] * (7 + 5)
    # the coarse stream's raw points are its minutes
    result = invoke("retention", "set", "--db", path, "--tag", "n=coarse", "--keep",
                    "minutes=90m")
    assert result.output == "set retention minutes=90m on 1 streams\n"
    assert show_rows(path, "--tag", "n=coarse")[0] == ["minutes (raw)", "90m", "-"]


def test_bad_query_is_refused(store) -> None:
    path, _ = store
    result = invoke("retention", "show", "--db", path, "--query", "{not json")
    assert result.exit_code == 2 and "--query is not JSON" in result.output
    result = invoke("retention", "apply", "--db", path, "--query", '{"a": {"$nope": 1}}')
    assert result.exit_code == 1 and result.output.startswith("error: ")

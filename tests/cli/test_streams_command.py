"""``datastream streams`` and ``datastream info``."""

from __future__ import annotations

import datetime
import json

from .support import START, freeze_clock, invoke, minutely_store, table_rows
from .test_import_command import write_csv


def make_store(tmp_path):
    rows = [(host, "cpu" if host != "c" else "temperature", 946684800_000000 + i * 1_000_000,
             float(i)) for host in "abc" for i in range(30)]
    write_csv(tmp_path / "data.csv", rows)
    invoke("import", tmp_path / "data.csv", "--db", tmp_path / "s.duckdb", "--tag-column",
           "host", "--tag-column", "metric", "--downsamplers", "mean")
    return tmp_path / "s.duckdb"


def test_streams_json_with_query_language(tmp_path):
    store = make_store(tmp_path)
    result = invoke("streams", "--db", store, "--json", "--query",
                    '{"metric": {"$icontains": "CPU"}}')
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert sorted(item["host"] for item in found) == ["a", "b"]
    assert found[0]["highest_granularity"] == "seconds"
    assert found[0]["value_downsamplers"] == ["count", "sum", "mean"]
    assert found[0]["latest_datapoint"] == "2000-01-01T00:00:29+00:00"


def test_streams_json_shows_retention_spans_in_seconds(tmp_path):
    store = make_store(tmp_path)
    result = invoke("retention", "set", "--db", store, "--tag", "host=a", "--keep", "seconds=7d",
                    "--keep", "minutes=forever")
    assert result.exit_code == 0, result.output
    result = invoke("streams", "--db", store, "--json", "--tag", "host=a")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["retention"] == {"seconds": 7 * 86400.0,
                                                         "minutes": None}


def test_streams_table_and_tag_filter(tmp_path):
    store = make_store(tmp_path)
    result = invoke("streams", "--db", store, "--tag", "host=c")
    assert result.exit_code == 0, result.output
    assert "temperature" in result.output and "1 streams" in result.output
    assert "cpu" not in result.output


def test_info_counts_points_and_bytes_per_level(tmp_path):
    store = make_store(tmp_path)
    invoke("downsample", "--db", store, "--until", "2000-01-02")
    result = invoke("info", "--db", store, "--tag", "host=a")
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line.split("│")[2:4] for line in result.output.splitlines()
             if line.startswith("│")}
    assert lines["seconds (raw)"][0].strip() == "30"
    assert lines["10seconds (S)"][0].strip() == "2"  # the bucket with the latest point is open
    assert int(lines["seconds (raw)"][1].strip().replace(",", "")) > 0
    assert "0:00:29" in result.output


def test_bad_query_json_is_a_usage_error(tmp_path):
    store = make_store(tmp_path)
    result = invoke("streams", "--db", store, "--query", "{not json")
    assert result.exit_code == 2 and "--query is not JSON" in result.output
    result = invoke("streams", "--db", store, "--query", '{"a": {"$nope": 1}}')
    assert result.exit_code == 1 and result.output.startswith("error: ")


def test_info_shows_each_levels_retention_and_oldest_point(tmp_path, monkeypatch):
    now = START + datetime.timedelta(days=3, hours=1)
    freeze_clock(monkeypatch, now)
    store = tmp_path / "s.duckdb"
    minutely_store(store, now)
    invoke("retention", "set", "--db", store, "--keep", "seconds=1d", "--keep", "minutes=12h")
    invoke("retention", "apply", "--db", store)
    result = invoke("info", "--db", store)
    assert result.exit_code == 0, result.output
    rows = [[row[0], row[1], row[3], row[4]] for row in table_rows(result.output)]
    first, kept = "2000-01-01T00:00:00Z", "2000-01-03T00:00:00Z"
    assert rows == [
        ["seconds (raw)", "1,440", "1d", kept],  # the third day
        ["10seconds (S)", "25,914", "forever", first],  # to the bucket of the latest point
        ["minutes (m)", "1,439", "12h", kept],
        ["10minutes (M)", "431", "forever", first],
        ["hours (h)", "71", "forever", first],
        ["6hours (H)", "11", "forever", first],
        ["days (d)", "2", "forever", first],
    ]

"""``datastream export``: import then export round trips, one stream or many."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

import datastream
from datastream.backends import duckdb

from .support import invoke, stored
from .test_import_command import write_csv

ROWS = [("a", "cpu", 946684800_000000 + i * 1_500_000, float(i) if i != 3 else float("nan"))
        for i in range(40)]


@pytest.fixture
def store(tmp_path):
    write_csv(tmp_path / "data.csv", ROWS)
    result = invoke("import", tmp_path / "data.csv", "--db", tmp_path / "s.duckdb",
                    "--tag-column", "host", "--tag-column", "metric")
    assert result.exit_code == 0, result.output
    return tmp_path / "s.duckdb"


@pytest.mark.parametrize("extension", ["csv", "parquet", "jsonl"])
def test_raw_round_trip(store, tmp_path, extension):
    out = tmp_path / f"out.{extension}"
    result = invoke("export", "--db", store, "--tag", "host=a", "-o", out)
    assert result.exit_code == 0, result.output
    assert "wrote 40 rows" in result.output
    again = invoke("import", out, "--db", tmp_path / "copy.duckdb", "--time-column", "t",
                   "--value-column", "v", "--tag", "host=a", "--tag", "metric=cpu")
    assert again.exit_code == 0, again.output
    original, copy = stored(store), stored(tmp_path / "copy.duckdb")
    for key in original:
        np.testing.assert_array_equal(copy[key][0], original[key][0])
        np.testing.assert_array_equal(copy[key][1], original[key][1])


def test_level_with_range_and_downsamplers(store, tmp_path):
    assert invoke("downsample", "--db", store, "--until", "2000-01-01T00:01:00").exit_code == 0
    out = tmp_path / "level.csv"
    result = invoke("export", "--db", store, "--tag", "metric=cpu", "--granularity", "10seconds",
                    "--start", "2000-01-01T00:00:10", "--end", "2000-01-01T00:00:40",
                    "--downsamplers", "mean,max", "--time-downsamplers", "", "-o", out)
    assert result.exit_code == 0, result.output
    table = pcsv.read_csv(out)
    assert table.column_names == ["t", "max", "mean"]  # canonical downsampler order
    with datastream.Datastream(duckdb.Backend(str(store))) as ds:
        stream_id = ds.find_streams({"host": "a"})[0]["stream_id"]
        import datetime

        start = datetime.datetime(2000, 1, 1, 0, 0, 10)
        wanted = ds.get_data(stream_id, "10seconds", start=start,
                             end=start + datetime.timedelta(seconds=30),
                             value_downsamplers=["mean", "max"]).to_arrow()
    assert table.num_rows == wanted.num_rows == 4
    np.testing.assert_allclose(table.column("mean").to_numpy(), wanted.column("mean").to_numpy())


def test_jsonl_lines_are_json_objects(store, tmp_path):
    out = tmp_path / "out.jsonl"
    assert invoke("export", "--db", store, "--tag", "host=a", "-o", out).exit_code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[0] == {"t": "2000-01-01T00:00:00.000000Z", "v": 0.0}
    assert records[3]["v"] is None and len(records) == 40


def test_ambiguous_query_is_an_error(store, tmp_path):
    write_csv(tmp_path / "more.csv", [("b", "cpu", 946684800_000000, 1.0)])
    invoke("import", tmp_path / "more.csv", "--db", store, "--tag-column", "host",
           "--tag-column", "metric")
    result = invoke("export", "--db", store, "--tag", "metric=cpu", "-o", tmp_path / "x.csv")
    assert result.exit_code == 1
    assert result.output.startswith("error: the query {'metric': 'cpu'} matches 2 streams")


def test_an_output_of_unknown_format_is_a_usage_error(store, tmp_path):
    result = invoke("export", "--db", store, "--tag", "metric=cpu", "-o", tmp_path / "x.xlsx")
    assert result.exit_code == 2
    assert "cannot tell the format" in result.output and "--format" in result.output
    assert not (tmp_path / "x.xlsx").exists()


def test_table_export_of_many_streams(store, tmp_path):
    write_csv(tmp_path / "more.csv", [("b", "cpu", 946684800_000000, 1.0)])
    invoke("import", tmp_path / "more.csv", "--db", store, "--tag-column", "host",
           "--tag-column", "metric")
    out = tmp_path / "all.parquet"
    result = invoke("export", "--db", store, "--table", "--tag", "metric=cpu", "--granularity",
                    "seconds", "--tag-columns", "host,metric", "-o", out)
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.column_names[:3] == ["stream_id", "host", "metric"]
    assert sorted(table.column("host").to_pylist()) == ["a"] * 40 + ["b"]

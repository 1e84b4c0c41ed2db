"""``datastream import``: each format stored exactly, bad files write nothing, resumable."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from .support import ROOT, invoke, sample_rows, stored, stream_count, subprocess_run


def iso(t_us: int) -> str:
    moment = datetime.datetime.fromtimestamp(t_us / 1e6, datetime.timezone.utc)
    return moment.isoformat().replace("+00:00", "Z")


def expected(rows) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    result = {}
    for host in sorted({row[0] for row in rows}):
        mine = sorted((row for row in rows if row[0] == host), key=lambda row: row[2])
        result[f"host={host},metric=cpu"] = (np.array([row[2] for row in mine]),
                                              np.array([row[3] for row in mine]))
    return result


def assert_same(actual, wanted) -> None:
    assert sorted(actual) == sorted(wanted)
    for key, (t, v) in wanted.items():
        np.testing.assert_array_equal(actual[key][0], t)
        np.testing.assert_array_equal(actual[key][1], v)  # NaN == NaN here


def write_csv(path, rows) -> None:
    lines = ["timestamp,host,metric,value"]
    lines += [f"{iso(t)},{host},{metric},{'' if np.isnan(v) else v}" for host, metric, t, v in rows]
    path.write_text("\n".join(lines) + "\n")


def test_csv_iso_timestamps(tmp_path):
    rows = sample_rows()
    write_csv(tmp_path / "data.csv", rows)
    result = invoke("import", tmp_path / "data.csv", "--db", tmp_path / "s.duckdb",
                    "--tag-column", "host", "--tag-column", "metric")
    assert result.exit_code == 0, result.output
    assert "imported 150 points into 3 streams" in result.output
    assert_same(stored(tmp_path / "s.duckdb"), expected(rows))


def test_parquet_integer_epochs_with_unit(tmp_path):
    rows = sample_rows(seed=2)
    table = pa.table({"ts": [row[2] // 1000 * 1000 for row in rows],
                      "host": [row[0] for row in rows], "reading": [row[3] for row in rows]})
    pq.write_table(table, tmp_path / "data.parquet", row_group_size=40)
    args = ["import", tmp_path / "data.parquet", "--db", tmp_path / "s.duckdb",
            "--time-column", "ts", "--value-column", "reading", "--tag-column", "host",
            "--tag", "metric=cpu"]
    refused = invoke(*args)
    assert refused.exit_code == 2 and "needs --unit" in refused.output
    assert stream_count(tmp_path / "s.duckdb") == 0
    result = invoke(*args, "--unit", "us")
    assert result.exit_code == 0, result.output
    wanted = expected([(h, m, t // 1000 * 1000, v) for h, m, t, v in rows])
    assert_same(stored(tmp_path / "s.duckdb"), wanted)


def test_jsonl_integers_stay_integers(tmp_path):
    lines = [json.dumps({"t": 946684800 + i, "host": "a", "metric": "cpu", "value": i * 3})
             for i in range(20)]
    (tmp_path / "data.jsonl").write_text("\n".join(lines) + "\n")
    result = invoke("import", tmp_path / "data.jsonl", "--db", tmp_path / "s.duckdb",
                    "--time-column", "t", "--unit", "s", "--tag-column", "host",
                    "--tag-column", "metric")
    assert result.exit_code == 0, result.output
    t, v = stored(tmp_path / "s.duckdb")["host=a,metric=cpu"]
    np.testing.assert_array_equal(t, (946684800 + np.arange(20)) * 1_000_000)
    np.testing.assert_array_equal(v, np.arange(20) * 3.0)


def test_line_protocol_fields_become_streams(tmp_path):
    text = (
        "# comment\n"
        "cpu,host=a,region=eu usage=1.5,idle=7i 946684800000000000\n"
        "cpu,region=eu,host=a usage=2.5,idle=8i 946684801500000000\n"
        "disk\\ io,host=b bytes=10 946684802000000000\n"
    )
    (tmp_path / "data.lp").write_text(text)
    result = invoke("import", tmp_path / "data.lp", "--db", tmp_path / "s.duckdb")
    assert result.exit_code == 0, result.output
    data = stored(tmp_path / "s.duckdb")
    assert sorted(data) == ["field=bytes,host=b,measurement=disk io",
                            "field=idle,host=a,measurement=cpu,region=eu",
                            "field=usage,host=a,measurement=cpu,region=eu"]
    t, v = data["field=usage,host=a,measurement=cpu,region=eu"]
    np.testing.assert_array_equal(t, [946684800_000000, 946684801_500000])
    np.testing.assert_array_equal(v, [1.5, 2.5])


def test_line_protocol_precision(tmp_path):
    (tmp_path / "data.lp").write_text("m v=1 946684800\n")
    result = invoke("import", tmp_path / "data.lp", "--db", tmp_path / "s.duckdb",
                    "--precision", "s")
    assert result.exit_code == 0, result.output
    t, _ = stored(tmp_path / "s.duckdb")["field=v,measurement=m"]
    assert t.tolist() == [946684800_000000]


@pytest.mark.parametrize(
    ("name", "content", "options", "message"),
    [
        ("bad.csv", "timestamp,host,value\n2000-01-01T00:00:00Z,a,1\n2000-01-01T00:00:01Z,a,abc\n",
         [], "bad.csv:3: column 'value': 'abc' is not a number"),
        ("bad.csv", "timestamp,host,value\n2000-01-01T00:00:00Z,a,1\n2000-13-01T00:00:01Z,a,2\n",
         [], "bad.csv:3: column 'timestamp': '2000-13-01T00:00:01Z' is not an ISO-8601"),
        ("bad.csv", "timestamp,host,value\n2000-01-01T00:00:00Z,a,1\n2000-01-01T00:00:01Z,a\n",
         [], "bad.csv:3: expected 3 fields, found 2"),
        ("bad.csv", "timestamp,host,value\n2000-01-01T00:00:00Z,,1\n", [],
         "bad.csv:2: column 'host': empty"),
        ("bad.csv", "timestamp,host,value\n2000-01-01T00:00:00Z,a,inf\n", [],
         "bad.csv:2: column 'value': inf is not a finite number"),
        ("bad.jsonl", '{"timestamp": "2000-01-01", "host": "a", "value": 1}\n'
         '{"timestamp": "2000-01-02", "host": "a", "value": "x"}\n', [],
         "bad.jsonl:2: column 'value': 'x' is not a number"),
        ("bad.jsonl", '{"timestamp": "2000-01-01", "host": "a", "value": 1}\n{"timestamp": \n',
         [], "bad.jsonl:2: not valid JSON"),
        ("bad.jsonl", '{"timestamp": 1, "host": "a", "value": 1}\n', ["--unit", "s"], None),
        ("bad.lp", "m,host=a v=1 946684800000000000\nm,host=a v=abc 946684801000000000\n", [],
         "bad.lp:2: field 'v': 'abc' is not a number"),
        ("bad.lp", "m,host=a v=1 946684800000000000\nm,host=a v=\"text\" 1\n", [],
         "bad.lp:2: field 'v': string values are not imported"),
        ("bad.lp", "m,host=a v=1\n", [], "bad.lp:1: no timestamp"),
        ("bad.lp", "m,$host=a v=1 1\n", [], "bad.lp:1: query tags"),
    ],
)
def test_bad_input_names_the_place_and_writes_nothing(tmp_path, name, content, options, message):
    (tmp_path / name).write_text(content)
    line_protocol = name.endswith(".lp")
    good = tmp_path / ("good.lp" if line_protocol else "good.csv")  # a good file first
    good.write_text("z v=1 946684800000000000\n" if line_protocol
                    else "timestamp,host,value\n2000-01-01T00:00:00Z,z,1\n")
    result = invoke("import", good, tmp_path / name, "--db", tmp_path / "s.duckdb",
                    *([] if line_protocol else ["--tag-column", "host"]), *options)
    if message is None:  # a well-formed control case: it imports
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line]
    assert lines == [lines[0]] and lines[0].startswith(f"error: {message}"), result.output
    assert not (tmp_path / "s.duckdb").exists()  # the store is not even created


def test_parquet_bad_value_names_row(tmp_path):
    pq.write_table(pa.table({"timestamp": ["2000-01-01", "2000-01-02"], "host": ["a", "a"],
                             "value": ["1", "x"]}), tmp_path / "bad.parquet")
    result = invoke("import", tmp_path / "bad.parquet", "--db", tmp_path / "s.duckdb",
                    "--tag-column", "host")
    assert result.exit_code == 2
    assert "bad.parquet:row 2: column 'value': 'x' is not a number" in result.output
    assert stream_count(tmp_path / "s.duckdb") == 0


def test_rerun_stores_nothing_twice_and_equal_timestamps_survive(tmp_path):
    rows = [("a", "cpu", 946684800_000000 + (i // 3) * 1_000_000, float(i)) for i in range(30)]
    write_csv(tmp_path / "data.csv", rows)
    args = ["import", tmp_path / "data.csv", "--db", tmp_path / "s.duckdb", "--tag-column",
            "host", "--tag-column", "metric", "--batch-rows", "4"]
    assert invoke(*args).exit_code == 0
    again = invoke(*args)
    assert "imported 0 points" in again.output and "30 rows were already stored" in again.output
    assert_same(stored(tmp_path / "s.duckdb"), expected(rows))


def test_rows_older_than_a_stream_holds_are_reported_not_called_stored(tmp_path):
    (tmp_path / "new.csv").write_text("timestamp,value\n2026-01-02T00:00:00,10\n")
    (tmp_path / "old.csv").write_text("timestamp,value\n2026-01-01T00:00:00,1\n"
                                      "2026-01-01T12:00:00,2\n2026-01-02T00:00:00,99\n")
    base = ["--db", tmp_path / "s.duckdb", "--tag", "k=v"]
    assert invoke("import", tmp_path / "new.csv", *base).exit_code == 0
    result = subprocess_run("import", tmp_path / "old.csv", *base)
    assert result.returncode == 0, result.stderr
    assert "1 rows were already stored" in result.stdout
    assert "warning: 2 rows were not imported" in result.stderr
    again = subprocess_run("import", tmp_path / "new.csv", *base)  # a plain re-run: no warning
    assert "1 rows were already stored" in again.stdout and not again.stderr


def test_a_refused_import_creates_no_stream(tmp_path):
    (tmp_path / "b.csv").write_text("timestamp,host,value\n2026-01-01T00:00:00,b,1\n")
    (tmp_path / "ab.csv").write_text("timestamp,host,value\n2026-01-01T00:00:00,a,1\n"
                                     "2026-01-01T00:00:01,b,2\n")
    base = ["--db", tmp_path / "s.duckdb", "--tag-column", "host"]
    assert invoke("import", tmp_path / "b.csv", *base, "--downsamplers", "mean").exit_code == 0
    result = subprocess_run("import", tmp_path / "ab.csv", *base)  # other downsamplers
    assert result.returncode == 1 and result.stderr.startswith("error: "), result.stderr
    assert stream_count(tmp_path / "s.duckdb") == 1


def test_a_csv_with_a_byte_order_mark(tmp_path):
    """Spreadsheets save CSV as UTF-8 with a BOM before the first column's name."""
    (tmp_path / "bom.csv").write_bytes("\ufefftimestamp,value\n2026-01-01T00:00:00,1.5\n"
                                       .encode("utf-8"))
    result = invoke("import", tmp_path / "bom.csv", "--db", tmp_path / "s.duckdb", "--tag", "k=v")
    assert result.exit_code == 0, result.output
    ((t, v),) = stored(tmp_path / "s.duckdb").values()
    assert v.tolist() == [1.5] and t.tolist() == [1767225600_000000]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_an_empty_file_imports_nothing(tmp_path, fmt):
    path = tmp_path / f"empty.{fmt}"
    if fmt == "csv":
        path.write_text("timestamp,value\n")
    else:
        pq.write_table(pa.table({"timestamp": pa.array([], pa.int64()),
                                 "value": pa.array([], pa.float64())}), path)
    result = subprocess_run("import", path, "--db", tmp_path / "s.duckdb", "--tag", "k=v",
                            "--unit", "s")
    assert result.returncode == 0, result.stderr
    assert "imported 0 points" in result.stdout


def test_killed_import_resumes_to_the_clean_result(tmp_path):
    rows = sample_rows(streams=4, points=400, seed=5)
    rows = [(h, m, t - (t % 1_000_000) + (i % 2), v) for i, (h, m, t, v) in enumerate(rows)]
    write_csv(tmp_path / "data.csv", rows)
    args = ["import", str(tmp_path / "data.csv"), "--db", str(tmp_path / "s.duckdb"),
            "--tag-column", "host", "--tag-column", "metric", "--batch-rows", "37", "--verbose"]
    environment = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, "-m", "datastream", *args], env=environment,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    committed = 0
    for line in child.stdout:
        committed += line.startswith("committed")
        if committed == 15:  # mid-import: the 3rd of 4 streams
            child.send_signal(signal.SIGKILL)
            break
    child.wait(timeout=120)
    assert child.returncode == -signal.SIGKILL
    partial = stored(tmp_path / "s.duckdb")
    assert 0 < sum(len(t) for t, _ in partial.values()) < len(rows)
    resumed = subprocess.run([sys.executable, "-m", "datastream", *args[:-1]], env=environment,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "rows were already stored" in resumed.stdout
    assert_same(stored(tmp_path / "s.duckdb"), expected(rows))


def test_time_column_found_among_usual_names(tmp_path):
    (tmp_path / "data.csv").write_text("time,host,value\n2000-01-01T00:00:00Z,a,1.5\n")
    result = invoke("import", tmp_path / "data.csv", "--db", tmp_path / "s.duckdb",
                    "--tag-column", "host")
    assert result.exit_code == 0, result.output
    (tmp_path / "none.csv").write_text("when,host,value\n2000-01-01T00:00:00Z,a,1.5\n")
    result = invoke("import", tmp_path / "none.csv", "--db", tmp_path / "s.duckdb",
                    "--tag-column", "host")
    assert result.exit_code == 2
    assert "none.csv: no time column" in result.output and "--time-column" in result.output
    result = invoke("import", tmp_path / "none.csv", "--db", tmp_path / "s.duckdb",
                    "--tag-column", "host", "--time-column", "when")
    assert result.exit_code == 0, result.output

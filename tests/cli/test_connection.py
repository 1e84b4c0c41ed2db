"""``--db`` / ``--url``: URL parsing and backends built from it."""

from __future__ import annotations

from unittest import mock

import mongomock
import pytest

from datastream.cli.connection import StoreURLError, make_backend, open_store, parse_url

from .support import invoke


def test_mongodb_url():
    spec = parse_url("mongodb://user:secret@db.example:27018/metrics?authSource=admin")
    assert spec.kind == "mongodb"
    assert spec.arguments == {"database_name": "metrics",
                              "uri": "mongodb://user:secret@db.example:27018/metrics"
                                     "?authSource=admin"}


def test_mongodb_backend_from_url_on_mongomock():
    with mock.patch("pymongo.MongoClient", mongomock.MongoClient):
        backend = make_backend(parse_url("mongodb://127.0.0.1:27017/metrics"))
    try:
        assert backend.find_streams(None) == []
    finally:
        backend.close()


def test_influxdb_url():
    spec = parse_url("influxdb://reader:pw@127.0.0.1:8087/points?metadata="
                     "postgresql://meta:p%40ss@pg.local/records%3Fsslmode%3Ddisable")
    assert spec.kind == "influxdb"
    assert spec.arguments["connection_influxdb"] == {
        "host": "127.0.0.1", "port": 8087, "database": "points", "username": "reader",
        "password": "pw"}
    assert spec.arguments["connection_metadata"] == {
        "host": "pg.local", "port": 5432, "dbname": "records", "user": "meta",
        "password": "p@ss", "sslmode": "disable"}


@pytest.mark.parametrize(("url", "problem"), [
    ("influxdb://h:8086/db", "needs ?metadata="),
    ("influxdb://h:8086/db?metadata=mysql://x/y", "must be a postgresql:// URL"),
    ("mongodb://h:27017/", "one database name"),
    ("redis://h/0", "unknown URL scheme 'redis'"),
])
def test_bad_urls(url, problem):
    with pytest.raises(StoreURLError, match=problem.replace("?", r"\?")):
        parse_url(url)


def test_duckdb_url_and_exactly_one_store(tmp_path):
    assert parse_url(f"duckdb://{tmp_path}/s.duckdb").arguments == {"path": f"{tmp_path}/s.duckdb"}
    with pytest.raises(StoreURLError, match="exactly one"):
        open_store(None, None)
    result = invoke("streams", "--db", tmp_path / "a.duckdb", "--url", "duckdb:b.duckdb")
    assert result.exit_code == 2 and "exactly one of --db PATH or --url URL" in result.output


def test_influxdb_url_end_to_end(tmp_path, influx_servers):
    """import and export through --url on the test servers of tests/servers.py."""
    postgres, influx = influx_servers.postgres, influx_servers.influxdb
    postgres.execute("CREATE DATABASE cli_url_test")
    meta = postgres.connection("cli_url_test")
    url = (f"influxdb://{influx.host}:{influx.port}/cli_url_test?metadata=postgresql://"
           f"{meta['user']}@{meta['host']}:{meta['port']}/cli_url_test")
    (tmp_path / "data.lp").write_text("cpu,host=a usage=1.5 946684800000000000\n"
                                      "cpu,host=a usage=2.5 946684801000000000\n")
    result = invoke("import", tmp_path / "data.lp", "--url", url)
    assert result.exit_code == 0, result.output
    out = tmp_path / "out.csv"
    result = invoke("export", "--url", url, "--tag", "field=usage", "-o", out)
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines()[1:] == ['2000-01-01 00:00:00.000000Z,1.5',
                                                '2000-01-01 00:00:01.000000Z,2.5']

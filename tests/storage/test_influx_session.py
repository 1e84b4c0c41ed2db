"""The InfluxDB backend's own HTTP session (datastream/storage/influxdb/session.py): it takes
the connection settings the InfluxDBClient gets, with that client's defaults, and every data
request carries them."""

from __future__ import annotations

import pytest
import requests

from datastream import exceptions
from datastream.storage.base import WriteBatch
from datastream.storage.influxdb import storage as store
from datastream.storage.influxdb.session import Settings
from tests import servers
from tests.storage.rows import add_stream, raw_rows

TLS = {
    "ssl": True,
    "verify_ssl": "/etc/ssl/certs/example-ca.pem",
    "cert": ("/etc/ssl/client.pem", "/etc/ssl/client.key"),
    "proxies": {"https": "http://proxy.example:3128"},
    "path": "influx",
    "timeout": 7,
    "username": "writer",
    "password": "s3cret",
}


def test_settings_default_as_the_client_does():
    settings = Settings.from_client_options({})
    assert settings.base_url == "http://localhost:8086"
    assert settings.auth == ("root", "root")
    assert settings.verify is False and settings.cert is None and settings.proxies == {}
    assert settings.timeout is None and settings.retries == 3 and not settings.gzip


def test_settings_take_auth_and_tls():
    settings = Settings.from_client_options({"host": "db.example", "port": 8087, **TLS})
    assert settings.base_url == "https://db.example:8087/influx"
    assert settings.auth == ("writer", "s3cret")
    assert settings.verify == TLS["verify_ssl"] and settings.cert == TLS["cert"]
    assert settings.proxies == TLS["proxies"] and settings.timeout == 7
    assert Settings.from_client_options({"username": None}).auth is None
    with pytest.raises(ValueError, match="ssl is disabled"):
        Settings.from_client_options({"cert": "client.pem"})


class Spy:
    """Records the arguments of every request of a session; passes them on or fails."""

    def __init__(self, session: requests.Session, fail: bool) -> None:
        self.send, self.fail, self.calls = session.request, fail, []

    def __call__(self, method, url, **arguments):
        self.calls.append((method, url, arguments))
        if self.fail:
            raise requests.ConnectionError("no TLS server here")
        return self.send(method, url, **arguments)


@pytest.fixture
def databases(influx_servers):
    with servers.fresh_databases(influx_servers) as (influx, metadata):
        yield influx, metadata


def test_username_and_password_reach_the_server(databases):
    """influxd of the tests runs without authentication, so it accepts any credentials:
    the storage works, and its data requests carry them."""
    influx, metadata = databases
    storage = store.InfluxDBStorage({**influx, "user": "writer", "password": "s3cret"},
                                    metadata, raw_cache_points=0)
    try:
        spy = Spy(storage._session.session, fail=False)
        storage._session.session.request = spy
        a = add_stream(storage, {"n": 1})
        storage.commit(WriteBatch(raw={a: raw_rows([1, 2, 3], ints=[4, 5, 6])}))
        assert storage.read_raw(a, None, None).column("i").to_pylist() == [4, 5, 6]
        assert [method for method, _, _ in spy.calls] == ["POST", "GET"]
        assert all(arguments["auth"] == ("writer", "s3cret") and arguments["timeout"] == 30
                   for _, _, arguments in spy.calls)
    finally:
        storage.close()


def test_tls_settings_reach_the_session(databases, monkeypatch):
    influx, metadata = databases
    storage = store.InfluxDBStorage({**influx, **TLS}, metadata)
    try:
        monkeypatch.setattr(storage._client, "create_database", lambda name: None)
        session = storage._session.session
        spy = Spy(session, fail=True)
        session.request = spy
        a = add_stream(storage, {"n": 1})
        with pytest.raises(exceptions.StreamAppendFailed, match="no TLS server"):
            storage.commit(WriteBatch(raw={a: raw_rows([1])}))
        with pytest.raises(exceptions.StorageUnavailable, match="no TLS server"):
            storage.read_raw(a, None, None)
        base = f"https://{influx['host']}:{influx['port']}/influx"
        # a write is tried three times (the client's default), a read once
        assert [(method, url) for method, url, _ in spy.calls] == (
            [("POST", f"{base}/write")] * 3 + [("GET", f"{base}/query")])
        for _, _, arguments in spy.calls:
            assert arguments["verify"] == TLS["verify_ssl"]
            assert arguments["proxies"] == TLS["proxies"]
            assert arguments["timeout"] == 7
            assert arguments["auth"] == ("writer", "s3cret")
        assert session.cert == TLS["cert"]
    finally:
        storage.close()


@pytest.mark.parametrize("gzip", [False, True])
def test_query_responses_are_compressed_only_when_gzip_is_asked_for(databases, gzip):
    """``requests`` asks for gzip by default, which costs influxd more time than it saves on
    a LAN: reads ask for plain responses unless the client's ``gzip`` option is set, and
    decode the same rows either way."""
    influx, metadata = databases
    storage = store.InfluxDBStorage({**influx, "gzip": gzip}, metadata, raw_cache_points=0)
    try:
        session = storage._session.session
        send, answers = session.request, []

        def spy(method, url, **arguments):
            response = send(method, url, **arguments)
            answers.append((method, arguments["headers"], response.headers))
            return response

        session.request = spy
        a = add_stream(storage, {"n": 1})
        times = list(range(0, 20_000, 10))
        values = [round(t / 7, 2) for t in times]
        storage.commit(WriteBatch(raw={a: raw_rows(times, floats=values,
                                                         kinds=[2] * len(times))}))
        table = storage.read_raw(a, None, None)
        assert table.column("t").to_pylist() == times
        assert table.column("f").to_pylist() == values
        ((_, asked, answered),) = [answer for answer in answers if answer[0] == "GET"]
        assert asked["Accept-Encoding"] == ("gzip" if gzip else "identity")
        assert answered.get("Content-Encoding") == ("gzip" if gzip else None)
    finally:
        storage.close()

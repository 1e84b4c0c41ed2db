"""Fixtures of the storage contract suite: every test runs on every backend.

``factory`` opens a storage on one backend's data, the same data at each call: DuckDB on a
file (opening closes the object opened before, the embedded store allowing one per process),
MongoDB on mongomock or the server named by DATASTREAM_MONGODB_URI, InfluxDB + PostgreSQL on
the throwaway servers of tests/servers.py. ``shared_factory`` is the same for the backends
that several processes write at once (``concurrent_writers``): two objects from it are two
processes.
"""

from __future__ import annotations

import pytest

from datastream.backends import duckdb as duckdb_backend

ALL = ["duckdb", "mongodb", "influxdb"]
SHARED = ["mongodb", "influxdb"]


def _open(kind: str, request):
    if kind == "duckdb":
        path = str(request.getfixturevalue("tmp_path") / "store.duckdb")
        made: list = []

        def open_duckdb():
            for storage in made:
                storage.close()
            made.append(duckdb_backend.Backend(path))
            return made[-1]

        try:
            yield open_duckdb
        finally:
            for storage in made:
                storage.close()
    elif kind == "mongodb":
        from tests.mongo_support import mongo_backend_factory

        with mongo_backend_factory() as factory:
            yield factory
    else:
        from tests.servers import influx_backend_factory

        with influx_backend_factory(request.getfixturevalue("influx_servers")) as factory:
            yield factory


@pytest.fixture(params=ALL)
def factory(request):
    """A callable opening a storage of one backend kind on the same (fresh) data."""
    yield from _open(request.param, request)


@pytest.fixture
def storage(factory):
    """A fresh storage of each backend kind."""
    return factory()


@pytest.fixture(params=SHARED)
def shared_factory(request):
    """As ``factory``, for the backends shared by many writing processes."""
    yield from _open(request.param, request)

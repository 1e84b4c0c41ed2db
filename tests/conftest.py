"""Shared fixtures: the backend contract suite runs every API test on every backend.

``ds`` is a fresh ``Datastream`` on each backend in ``BACKENDS``; ``clock`` is a settable clock
injected into it. MongoDB runs on mongomock unless DATASTREAM_MONGODB_URI names a real server;
InfluxDB + PostgreSQL run on throwaway servers started by tests/servers.py.
"""

from __future__ import annotations

import datetime
import importlib.util
import os

import pytest

import datastream
from datastream.kernels import jit

# Tests compare kernels with their numpy references: calls must run the compiled kernels, not
# fall back to the references while they compile (tests/test_coldstart.py tests that, in children).
jit.FALLBACK = False

BACKENDS = ["duckdb"]
if importlib.util.find_spec("datastream.storage.mongodb") and importlib.util.find_spec("mongomock"):
    BACKENDS.append("mongodb")
    from tests.mongo_support import quicken_unique_checks

    quicken_unique_checks()
if os.environ.get("DATASTREAM_SKIP_INFLUXDB") != "1" and importlib.util.find_spec(
    "datastream.storage.influxdb"
):
    BACKENDS.append("influxdb")


class Clock:
    """A settable clock: ``clock.now`` is returned as the current aware UTC time."""

    def __init__(self) -> None:
        self.now = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += datetime.timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="session")
def influx_servers():
    """PostgreSQL and InfluxDB for the whole session, stopped at its end. A missing binary
    fails (CI installs both): it is never a skip."""
    from tests import servers

    try:
        context = servers.influx_servers()
        running = context.__enter__()
    except servers.ServerUnavailable as error:
        pytest.fail(f"test servers unavailable: {error}", pytrace=False)
    try:
        yield running
    finally:
        context.__exit__(None, None, None)


@pytest.fixture(params=BACKENDS)
def backend_factory(request):
    """A callable returning a fresh storage backend of one kind (same data on each call)."""
    name = request.param
    if name == "duckdb":
        from datastream.backends import duckdb

        tmp = request.getfixturevalue("tmp_path")
        path = str(tmp / "store.duckdb")
        yield lambda: duckdb.Backend(path)
    elif name == "mongodb":
        from tests.mongo_support import mongo_backend_factory

        with mongo_backend_factory() as factory:
            yield factory
    elif name == "influxdb":
        from tests.servers import influx_backend_factory

        servers = request.getfixturevalue("influx_servers")
        with influx_backend_factory(servers) as factory:
            yield factory


@pytest.fixture
def ds(backend_factory, clock):
    """A Datastream on a fresh backend, with the settable ``clock``."""
    instance = datastream.Datastream(backend_factory(), clock=clock)
    yield instance
    instance.close()


@pytest.fixture
def reopen(backend_factory, clock):
    """Close a Datastream and open a new one on the same stored data."""

    def _reopen(instance: datastream.Datastream) -> datastream.Datastream:
        instance.close()
        return datastream.Datastream(backend_factory(), clock=clock)

    return _reopen

"""Fixtures of the backend storage tests. The InfluxDB + PostgreSQL session servers come from
``influx_servers`` in tests/conftest.py (started by tests/servers.py); MongoDB runs on
mongomock, and also on the server named by DATASTREAM_MONGODB_URI when set."""

from __future__ import annotations

import pytest

from tests import servers
from tests.mongo_support import mongo_targets, storage_factory


@pytest.fixture
def influx_factory(influx_servers):
    """A callable returning a new backend on fresh databases (the same ones at each call)."""
    with servers.influx_backend_factory(influx_servers) as factory:
        yield factory


@pytest.fixture(params=mongo_targets())
def mongo_factory(request):
    """A callable returning MongoDB storages on one fresh database (one shared client)."""
    with storage_factory(request.param) as made:
        yield made

"""Fixtures of the InfluxDB + PostgreSQL storage tests. The session servers themselves come
from ``influx_servers`` in tests/conftest.py (started by tests/servers.py)."""

from __future__ import annotations

import pytest

from tests import servers


@pytest.fixture
def influx_factory(influx_servers):
    """A callable returning a new backend on fresh databases (the same ones at each call)."""
    with servers.influx_backend_factory(influx_servers) as factory:
        yield factory

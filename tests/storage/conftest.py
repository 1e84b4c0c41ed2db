"""Server fixtures of the InfluxDB + PostgreSQL backend (to move to tests/conftest.py).

The servers are started once per session by tests/servers.py. A missing ``influxd`` or
PostgreSQL binary fails the fixture with the reason: CI installs both, so it is not a skip.
"""

from __future__ import annotations

import pytest

from tests import servers


@pytest.fixture(scope="session")
def influx_servers():
    """PostgreSQL and InfluxDB for the whole session, stopped at its end."""
    try:
        context = servers.influx_servers()
        running = context.__enter__()
    except servers.ServerUnavailable as error:
        pytest.fail(f"test servers unavailable: {error}", pytrace=False)
    try:
        yield running
    finally:
        context.__exit__(None, None, None)


@pytest.fixture
def influx_factory(influx_servers):
    """A callable returning a new backend on fresh databases (the same ones at each call)."""
    with servers.influx_backend_factory(influx_servers) as factory:
        yield factory

"""Storage-level fixtures of the InfluxDB + PostgreSQL backend.

The servers are started once per session (``influx_servers`` in tests/conftest.py); a missing
binary fails the fixture with the reason: CI installs both, so it is not a skip.
"""

from __future__ import annotations

import pytest

from tests import servers


@pytest.fixture
def influx_factory(influx_servers):
    """A callable returning a new backend on fresh databases (the same ones at each call)."""
    with servers.influx_backend_factory(influx_servers) as factory:
        yield factory

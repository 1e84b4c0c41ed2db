"""InfluxDB 1.x + PostgreSQL backend: ``datastream.backends.influxdb.Backend(
connection_influxdb={...}, connection_metadata={...})``."""

from ..storage.influxdb import InfluxDBStorage as Backend
from ..storage.influxdb import StorageUnavailable

__all__ = ["Backend", "StorageUnavailable"]

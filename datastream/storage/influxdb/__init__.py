"""The InfluxDB 1.x + PostgreSQL backend: datapoints in InfluxDB, stream records in PostgreSQL.

:mod:`.storage` holds the storage class and its commit protocol (see its docstring).
"""

from .metadata import StorageUnavailable
from .storage import InfluxDBStorage

__all__ = ["InfluxDBStorage", "StorageUnavailable"]

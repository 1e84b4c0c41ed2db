"""The embedded DuckDB backend: ``datastream.backends.duckdb.Backend(path=None)``."""

from ..storage.duckdb import DuckDBStorage as Backend
from ..storage.duckdb import StorageLocked, StorageUnavailable

__all__ = ["Backend", "StorageLocked", "StorageUnavailable"]

"""The embedded DuckDB backend: one file (or memory), datapoints in compressed chunks.

:mod:`.storage` holds the storage class and its layout, :mod:`.chunks` how rows become
chunks, :mod:`.connection` opening the file and transactions.
"""

from .connection import StorageLocked, StorageUnavailable
from .storage import DuckDBStorage

__all__ = ["DuckDBStorage", "StorageLocked", "StorageUnavailable"]

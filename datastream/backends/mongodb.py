"""The MongoDB backend: ``datastream.backends.mongodb.Backend(database_name, **connection)``.

``connection``: ``uri=...`` or ``host=...``, ``port=...`` and any ``pymongo.MongoClient``
option; or ``client=`` an existing client (tests pass ``mongomock.MongoClient()``).
"""

from ..exceptions import StorageUnavailable
from ..storage.mongodb import MongoDBStorage as Backend

__all__ = ["Backend", "StorageUnavailable"]

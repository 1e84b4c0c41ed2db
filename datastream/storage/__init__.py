"""Storage backends behind the contract of :mod:`datastream.storage.base`.

Concrete backends are imported on demand (``datastream.storage.duckdb`` ...), so that an
optional client library is only needed by the backend that uses it.
"""

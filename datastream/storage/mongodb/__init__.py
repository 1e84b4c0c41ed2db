"""The MongoDB backend: streams, raw chunks and level rows in one MongoDB database.

:mod:`.storage` wires the parts (see its docstring for the collections and the protocol).
"""

from .storage import CHUNK_ROWS, CHUNK_SPAN_US, MongoDBStorage

__all__ = ["CHUNK_ROWS", "CHUNK_SPAN_US", "MongoDBStorage"]

"""A storage wrapper that fails commits on demand (failure injection for any backend)."""

from __future__ import annotations

from typing import Any

from datastream import exceptions
from datastream.storage.base import Storage, WriteBatch


class FailingStorage(Storage):
    """Delegates everything to ``inner``; ``fail`` (True, or a set of stream ids) makes
    commits touching those streams fail before anything is stored."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.fail: bool | set[str] = False
        self.commits = 0
        self.concurrent_writers = inner.concurrent_writers
        # a lost reply: "stored" commits first, "lost" does not; either way the commit raises
        # CommitOutcomeUnknown, whose settle() answers only while ``reachable``
        self.unknown: str | None = None
        self.reachable = False

    def _refuses(self, batch: WriteBatch) -> bool:
        if self.fail is True:
            return True
        return bool(self.fail) and bool(batch.touched() & set(self.fail))

    def commit(self, batch: WriteBatch) -> None:
        if self._refuses(batch):
            raise exceptions.StreamAppendFailed("injected failure: the backend is down")
        if self.unknown is not None:
            stored = self.unknown == "stored"
            if stored:
                self.inner.commit(batch)
                self.commits += 1
            raise exceptions.CommitOutcomeUnknown(
                "injected: the reply of the commit was lost",
                lambda: stored if self.reachable else None)
        self.inner.commit(batch)
        self.commits += 1

    def find_streams(self, query):
        return self.inner.find_streams(query)

    def get_stream(self, stream_id):
        return self.inner.get_stream(stream_id)

    def record_version(self, stream_id):
        return self.inner.record_version(stream_id)

    def set_tags(self, stream_id, tags, expect_version=None):
        self.inner.set_tags(stream_id, tags, expect_version)

    def read_raw(self, stream_id, start_us, end_us, reverse=False):
        return self.inner.read_raw(stream_id, start_us, end_us, reverse)

    def read_level(self, level_key, stream_id, start_us, end_us):
        return self.inner.read_level(level_key, stream_id, start_us, end_us)

    def count_raw(self, stream_id, start_us, end_us):
        return self.inner.count_raw(stream_id, start_us, end_us)

    def first_raw_time(self, stream_id, start_us):
        return self.inner.first_raw_time(stream_id, start_us)

    def maintenance_lock(self, stream_id: str, ttl_seconds: float = 60.0) -> Any:
        return self.inner.maintenance_lock(stream_id, ttl_seconds)

    def close(self) -> None:
        self.inner.close()


def two_writers(backend_factory, clock) -> tuple[FailingStorage, Any, Any]:
    """(failing wrapper, writer one over it, writer two): two Datastream objects over one
    backend; DuckDB, a single-writer file, shares its one storage object."""
    import datastream

    first = backend_factory()
    storage = FailingStorage(first)
    second = first if first.concurrent_writers is False else backend_factory()
    return (storage, datastream.Datastream(storage, clock=clock),
            datastream.Datastream(second, clock=clock))

"""behaviour §4.3 under failures: a failing commit keeps points buffered and surfaces as
``StreamAppendFailed``; after recovery every point is stored exactly once; one failing stream
never blocks the others; memory is bounded; and points survive normal exits, idleness and
garbage collection.

(a) a storage wrapper that fails commits on demand, on every backend;
(b) DuckDB with a real unwritable file: a full filesystem (a small tmpfs filled up) and an
    immutable file and directory (``chattr +i``, which stops root too; plain ``chmod`` does not);
(c) InfluxDB + PostgreSQL with either server stopped and restarted on the same data and port;
(d) MongoDB (mongomock) with write calls failing at every step of a commit;
(e) exit behaviour: interpreter exit, an idle process, garbage collection, append after close.

CI: about 60 s.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import inspect
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import datastream
from datastream import exceptions
from datastream.storage.base import Storage
from tests.conftest import BACKENDS, Clock

UTC = datetime.timezone.utc
T0 = datetime.datetime(2000, 1, 1, 12, tzinfo=UTC)
EVER = datetime.datetime.min
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


# -- (a) a storage whose commits fail on demand --


class FailingStorage(Storage):
    """Wraps any backend's storage object: ``commit`` raises ``StreamAppendFailed`` (nothing
    stored, as the storage contract says of a failed commit) while ``failing`` is set, for every
    batch or, with ``only``, for batches that write those streams. Everything else is delegated
    to the wrapped object, so the engine sees the same backend otherwise."""

    def __init__(self, inner: Storage) -> None:
        self._inner = inner
        self.failing = False
        self.only: set[str] | None = None
        self.failed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _touches(self, batch: Any) -> bool:
        if self.only is None:
            return True
        written = set(getattr(batch, "raw", {}) or {}) | set(getattr(batch, "meta", {}) or {})
        return bool(written & self.only)

    def commit(self, batch: Any) -> None:
        if self.failing and self._touches(batch):
            self.failed += 1
            raise exceptions.StreamAppendFailed("injected: the backend is failing")
        self._inner.commit(batch)


def _delegate_everything_else(cls: type) -> None:
    """Give ``cls`` a delegating version of every public member of the storage contract
    (methods, properties and class-level flags such as ``concurrent_writers``)."""
    for name in dir(Storage):
        if name.startswith("_") or name in cls.__dict__:
            continue
        member = inspect.getattr_static(Storage, name)
        if callable(member):
            def method(self, *args, _name=name, **kwargs):
                return getattr(self._inner, _name)(*args, **kwargs)

            setattr(cls, name, method)
        else:
            setattr(cls, name, property(lambda self, _name=name: getattr(self._inner, _name)))
    cls.__abstractmethods__ = frozenset()


_delegate_everything_else(FailingStorage)


@pytest.fixture
def failing(backend_factory, request):
    """(wrapped storage, reader): ``reader()`` is a Datastream that sees only what is stored.
    DuckDB shares the one Backend object per file while the writer is open (a second Backend
    on the file is refused by design) and opens a new one once the writer is closed; the others
    always open a second backend."""
    backend_kind = request.node.callspec.params["backend_factory"]
    inner = backend_factory()
    wrapped = FailingStorage(inner)
    readers: list[datastream.Datastream] = []
    shared_readers: list[datastream.Datastream] = []

    def reader(writer_closed: bool = False) -> datastream.Datastream:
        shared = backend_kind == "duckdb" and not writer_closed
        ds = datastream.Datastream(inner if shared else backend_factory())
        # A reader on the shared object stays referenced (and unclosed): the last Datastream
        # over a storage object releases it, and the writer goes through the wrapper.
        (shared_readers if shared else readers).append(ds)
        return ds

    yield wrapped, reader
    wrapped.failing = False
    for ds in readers:
        ds.close()
    for ds in shared_readers:
        with contextlib.suppress(exceptions.DatastreamException):
            ds.close()


def _values(ds: datastream.Datastream, stream_id: str) -> list:
    return [point["v"] for point in ds.get_data(stream_id, "seconds", start=EVER)]


def _stored(reader, stream_id: str, writer_closed: bool = False) -> list:
    ds = reader(writer_closed)
    values = _values(ds, stream_id)
    if writer_closed:
        ds.close()
    return values


def test_flush_fails_points_stay_buffered_and_are_stored_once_after_recovery(
        failing, clock) -> None:
    storage, reader = failing
    ds = datastream.Datastream(storage, clock=clock)
    stream_id = ds.ensure_stream({"name": "x"}, {}, ["count", "sum"], "seconds")
    for q in range(3):
        ds.append(stream_id, q, at(q))
    ds.flush()
    storage.failing = True
    for q in range(3, 8):
        ds.append(stream_id, q, at(q))
    with pytest.raises(exceptions.StreamAppendFailed):
        ds.flush()
    assert storage.failed >= 1
    # the failure is kept for flush(): reads of the same object still see every append
    assert _values(ds, stream_id) == list(range(8))
    assert ds.get_tags(stream_id)["latest_datapoint"] == at(7)
    assert _stored(reader, stream_id) == [0, 1, 2]
    with pytest.raises(exceptions.StreamAppendFailed):
        ds.flush()  # still failing: still an error, still nothing lost
    storage.failing = False
    ds.flush()
    assert _stored(reader, stream_id) == list(range(8))
    ds.flush()
    ds.close()
    assert _stored(reader, stream_id, writer_closed=True) == list(range(8))


def test_metadata_of_a_derived_stream_while_failing_sees_every_append(failing, clock) -> None:
    """While the backend refuses the commit, get_tags and find_streams show a derived stream's
    extent with what the buffered source points derive (behaviour §4.3), never without one."""
    storage, _ = failing
    ds = datastream.Datastream(storage, clock=clock)
    source = ds.ensure_stream({"name": "x"}, {}, ["count"], "seconds")
    slope = ds.ensure_stream({"name": "slope"}, {}, ["count"], "seconds",
                             derive_from=[source], derive_op="derivative")
    for q in range(3):
        ds.append(source, q, at(q))
    ds.flush()
    storage.failing = True
    ds.append(source, 5, at(3))
    try:
        tags = ds.get_tags(slope)
        assert (tags["earliest_datapoint"], tags["latest_datapoint"]) == (at(1), at(3))
        found = {t["stream_id"]: t["latest_datapoint"] for t in ds.find_streams()}
        assert found == {source: at(3), slope: at(3)}
    finally:
        storage.failing = False
        ds.close()


def test_close_while_failing_raises_and_drops_nothing(failing, clock) -> None:
    storage, reader = failing
    ds = datastream.Datastream(storage, clock=clock)
    stream_id = ds.ensure_stream({"name": "x"}, {}, ["count"], "seconds")
    storage.failing = True
    ds.append(stream_id, 1, at(1))
    with pytest.raises(exceptions.StreamAppendFailed):
        ds.close()
    storage.failing = False
    ds.close()  # nothing is silently dropped: a close after recovery stores the point
    assert _stored(reader, stream_id, writer_closed=True) == [1]


def test_one_failing_stream_does_not_block_the_others(failing, clock) -> None:
    storage, reader = failing
    ds = datastream.Datastream(storage, clock=clock)
    bad = ds.ensure_stream({"name": "bad"}, {}, ["count"], "seconds")
    good = ds.ensure_stream({"name": "good"}, {}, ["count"], "seconds")
    storage.only, storage.failing = {bad}, True
    for q in range(4):
        ds.append(bad, q, at(q))
        ds.append(good, q, at(q))
    with pytest.raises(exceptions.StreamAppendFailed):
        ds.flush()
    assert _stored(reader, good) == [0, 1, 2, 3], "a failing stream held another one back"
    assert _stored(reader, bad) == []
    ds.append(good, 4, at(4))
    with pytest.raises(exceptions.StreamAppendFailed):
        ds.flush()
    assert _stored(reader, good) == [0, 1, 2, 3, 4]
    storage.failing = False
    ds.flush()
    assert _stored(reader, bad) == [0, 1, 2, 3]
    assert _stored(reader, good) == [0, 1, 2, 3, 4]
    ds.close()
    assert _stored(reader, good, writer_closed=True) == [0, 1, 2, 3, 4]


def test_a_failing_streams_backoff_does_not_delay_the_others(failing, clock) -> None:
    """While one stream waits for its retry (the backoff grows to 30 s), the background
    flusher stores another stream's points by the age limit, without another call."""
    storage, reader = failing
    ds = datastream.Datastream(storage, clock=clock, buffer_seconds=0.2)
    bad = ds.ensure_stream({"name": "bad"}, {}, ["count"], "seconds")
    good = ds.ensure_stream({"name": "good"}, {}, ["count"], "seconds")
    storage.only, storage.failing = {bad}, True
    ds.append(bad, 0, at(0))
    for _ in range(8):  # each failure doubles the retry delay
        with pytest.raises(exceptions.StreamAppendFailed):
            ds.flush()
    ds.append(good, 1, at(1))
    deadline = time.monotonic() + 10
    while _stored(reader, good) != [1] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _stored(reader, good) == [1], "the healthy stream waited for the failing one's retry"
    assert _stored(reader, bad) == []
    with pytest.raises(exceptions.StreamAppendFailed):  # still reported until it is stored
        ds.flush()
    storage.failing = False
    ds.close()
    assert _stored(reader, bad, writer_closed=True) == [0]


def test_the_memory_bound_counts_what_is_still_buffered(failing, clock) -> None:
    """The bound refuses points only while the buffers stay full: the flush it makes stores
    the healthy streams' points, and the append that asked for room goes through."""
    storage, reader = failing
    ds = datastream.Datastream(storage, clock=clock, max_buffered_points=20,
                               buffer_seconds=3600)
    bad = ds.ensure_stream({"name": "bad"}, {}, ["count"], "seconds")
    good = ds.ensure_stream({"name": "good"}, {}, ["count"], "seconds")
    storage.only, storage.failing = {bad}, True
    for q in range(5):
        ds.append(bad, q, at(q))
    for q in range(15):
        ds.append(good, q, at(q))
    ds.append(good, 99, at(100))  # 20 buffered: the flush stores good's 15, room for this
    assert _stored(reader, good) == list(range(15))
    for q in range(5, 20):
        ds.append(bad, q, at(q))
    with pytest.raises(exceptions.StreamAppendFailed):  # 20 of the failing stream: full
        ds.append(bad, 20, at(20))
    storage.failing = False
    ds.close()
    assert _stored(reader, bad, writer_closed=True) == list(range(20))
    assert _stored(reader, good, writer_closed=True) == [*range(15), 99]


def test_unbuffered_append_raises_and_a_retry_stores_once(failing, clock) -> None:
    storage, reader = failing
    ds = datastream.Datastream(storage, clock=clock, buffered=False)
    stream_id = ds.ensure_stream({"name": "x"}, {}, ["count"], "seconds")
    ds.append(stream_id, 1, at(1))
    assert _stored(reader, stream_id) == [1]
    storage.failing = True
    with pytest.raises(exceptions.StreamAppendFailed):
        ds.append(stream_id, 2, at(2))
    with pytest.raises(exceptions.StreamAppendFailed):
        ds.append_multiple([{"stream_id": stream_id, "value": 3, "timestamp": at(3)}])
    storage.failing = False
    try:  # the application retries what raised
        ds.append(stream_id, 2, at(2))
        ds.append_multiple([{"stream_id": stream_id, "value": 3, "timestamp": at(3)}])
    except exceptions.InvalidTimestamp as error:
        pytest.fail(f"retrying the appends that raised was refused: {error}")
    assert _stored(reader, stream_id) == [1, 2, 3]
    ds.flush()
    ds.close()
    assert _stored(reader, stream_id, writer_closed=True) == [1, 2, 3], (
        "a retried append was stored twice")


def test_buffered_points_are_bounded_while_failing(failing, clock) -> None:
    storage, reader = failing
    bound = 20
    ds = datastream.Datastream(storage, clock=clock, max_buffered_points=bound)
    stream_id = ds.ensure_stream({"name": "x"}, {}, ["count"], "seconds")
    storage.failing = True
    ds.append(stream_id, 0, at(0))
    with pytest.raises(exceptions.StreamAppendFailed):
        ds.flush()
    accepted = 1
    refused = None
    for q in range(1, bound + 5):
        try:
            ds.append(stream_id, q, at(q))
        except exceptions.StreamAppendFailed:
            refused = q
            break
        accepted += 1
    assert refused is not None, f"{bound + 4} points buffered with a bound of {bound}"
    assert accepted in (bound - 1, bound), f"refused after {accepted} buffered points"
    with pytest.raises(exceptions.StreamAppendFailed):  # still full: arrays refused whole
        ds.append_arrays(stream_id, np.array([at(100)], dtype="datetime64[us]"),
                         np.array([100]))
    storage.failing = False
    ds.flush()
    assert _stored(reader, stream_id) == list(range(accepted)), "the refused point was kept"
    ds.append(stream_id, refused, at(refused))  # room again
    ds.close()
    assert _stored(reader, stream_id, writer_closed=True) == list(range(accepted)) + [refused]


# -- (b) DuckDB: the database file becomes unwritable --


def _run(command: list[str]) -> bool:
    return subprocess.run(command, capture_output=True).returncode == 0


@contextlib.contextmanager
def _full_filesystem() -> Iterator[tuple[str, Any, Any]]:
    """A 32 MiB tmpfs holding the database; ``fill()`` takes all free space, ``free()`` gives
    it back (the "disk full" case). Needs the right to mount (root in CI)."""
    directory = tempfile.mkdtemp(prefix="ds-full-")
    if not _run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", directory]):
        os.rmdir(directory)
        pytest.skip("cannot mount a tmpfs here (needs CAP_SYS_ADMIN)")
    filler = os.path.join(directory, "filler")

    def fill() -> None:
        with open(filler, "wb") as handle:
            with contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * (1 << 16))
                    handle.flush()

    def free() -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(filler)

    try:
        yield directory, fill, free
    finally:
        _run(["umount", "-l", directory])
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def _immutable_directory(tmp_path) -> Iterator[tuple[str, Any, Any]]:
    """``chattr +i`` on the directory and every file in it (the database and its WAL): no new
    file, no write, even for root. Needs a filesystem with the flag (ext4 here)."""
    directory = str(tmp_path / "immutable")
    os.mkdir(directory)
    probe = os.path.join(directory, "probe")
    open(probe, "w").close()
    if not _run(["chattr", "+i", probe]):
        pytest.skip("chattr +i is not supported here")
    _run(["chattr", "-i", probe])
    os.remove(probe)

    def targets() -> list[str]:
        return [os.path.join(directory, name) for name in os.listdir(directory)] + [directory]

    def lock() -> None:
        for target in targets():
            assert _run(["chattr", "+i", target]), target

    def unlock() -> None:
        for target in targets():
            _run(["chattr", "-i", target])

    try:
        yield directory, lock, unlock
    finally:
        unlock()


@pytest.mark.parametrize("how", ["disk_full", "immutable"])
def test_duckdb_file_becomes_unwritable(how: str, tmp_path) -> None:
    from datastream.backends import duckdb

    clock = Clock()
    manager = _full_filesystem() if how == "disk_full" else _immutable_directory(tmp_path)
    with manager as (directory, break_it, repair):
        path = os.path.join(directory, "store.duckdb")
        ds = datastream.Datastream(duckdb.Backend(path), clock=clock)
        stream_id = ds.ensure_stream({"name": "x"}, {}, ["count", "sum"], "seconds")
        derived = ds.ensure_stream({"name": "d"}, {}, ["count"], "seconds",
                                   derive_from=[stream_id], derive_op="derivative")
        # Random values: compressed chunks of a regular series would be so small that the
        # commit could fit in the file pages already allocated, and never hit the full disk.
        values = [int(v) for v in np.random.default_rng(7).integers(-10**9, 10**9, 4000)]
        for q in range(5):
            ds.append(stream_id, values[q], at(q))
        ds.flush()
        break_it()
        for q in range(5, len(values)):
            ds.append(stream_id, values[q], at(q))
        with pytest.raises(exceptions.StreamAppendFailed):
            ds.flush()
        assert _values(ds, stream_id) == values  # still seen by this object
        repair()
        ds.flush()
        ds.downsample_streams(until=at(100))
        ds.close()
        with datastream.Datastream(duckdb.Backend(path), clock=clock) as again:
            assert _values(again, stream_id) == values
            assert _values(again, derived) == [float(b - a) for a, b in zip(values, values[1:])]
            levels = list(again.get_data(stream_id, "10seconds", start=EVER, end=at(100)))
            assert [row["v"]["c"] for row in levels] == [10] * 10
            assert [row["v"]["s"] for row in levels] == [
                sum(values[k:k + 10]) for k in range(0, 100, 10)]
            if hasattr(again, "verify"):
                assert not again.verify()


# -- (c) InfluxDB + PostgreSQL: a server goes away and comes back --


@pytest.fixture(scope="module")
def own_influx_servers():
    """Servers of this module only: the tests stop and restart them."""
    if "influxdb" not in BACKENDS:
        pytest.skip("the InfluxDB backend is not tested here")
    from tests import servers

    try:
        with servers.influx_servers() as running:
            yield running
    except servers.ServerUnavailable as error:
        pytest.fail(f"test servers unavailable: {error}", pytrace=False)


@pytest.mark.parametrize("server", ["influxdb", "postgresql"])
def test_influx_backend_survives_a_server_outage(server: str, own_influx_servers) -> None:
    from tests.servers import influx_backend_factory

    clock = Clock()
    target = own_influx_servers.influxdb if server == "influxdb" else own_influx_servers.postgres
    with influx_backend_factory(own_influx_servers) as factory:
        ds = datastream.Datastream(factory(), clock=clock)
        stream_id = ds.ensure_stream({"name": "x"}, {}, ["count", "sum"], "seconds")
        derived = ds.ensure_stream({"name": "d"}, {}, ["count"], "seconds",
                                   derive_from=[stream_id], derive_op="derivative")
        for q in range(5):
            ds.append(stream_id, q, at(q))
        ds.flush()
        target.stop()
        try:
            for q in range(5, 25):
                ds.append(stream_id, q, at(q))
            with pytest.raises(exceptions.StreamAppendFailed):
                ds.flush()
            if server == "influxdb":
                # stored points cannot be read without their server: a clear error
                with pytest.raises(exceptions.StorageUnavailable):
                    _values(datastream.Datastream(factory()), stream_id)
            with pytest.raises(exceptions.StreamAppendFailed):
                ds.flush()
        finally:
            target.start()
        ds.flush()
        ds.downsample_streams(until=at(100))
        ds.close()
        with datastream.Datastream(factory(), clock=clock) as again:
            assert _values(again, stream_id) == list(range(25)), "lost or duplicated points"
            assert _values(again, derived) == [1.0] * 24
            levels = list(again.get_data(stream_id, "10seconds", start=EVER))
            assert [row["v"]["c"] for row in levels] == [10, 10]
            if hasattr(again, "verify"):
                assert not again.verify()


# -- (d) MongoDB: write calls fail at each step of a commit --

WRITES = {"insert_many", "insert_one", "update_one", "update_many", "find_one_and_update",
          "delete_many", "delete_one", "bulk_write", "replace_one"}


class WriteFaults:
    """A fault for tests/mongo_support.py's client proxy: counts write calls from ``arm()`` on
    and fails the ``step``-th (``persist``: and every later one) until ``disarm()``."""

    def __init__(self) -> None:
        self.armed = False
        self.step = 0
        self.persist = False
        self.calls = 0
        self.failed = 0

    def arm(self, step: int, persist: bool) -> None:
        self.armed, self.step, self.persist, self.calls = True, step, persist, 0

    def disarm(self) -> None:
        self.armed = False

    def __call__(self, collection: str, method: str, args: tuple, kwargs: dict) -> None:
        import pymongo.errors

        if not self.armed or method not in WRITES:
            return
        index = self.calls
        self.calls += 1
        if index == self.step or (self.persist and index > self.step):
            self.failed += 1
            raise pymongo.errors.AutoReconnect(f"injected failure of {collection}.{method}")


@pytest.mark.parametrize("persist", [False, True], ids=["one_call", "from_then_on"])
def test_mongodb_write_failures_at_every_step_of_a_commit(persist: bool) -> None:
    from tests.mongo_support import storage_factory

    clock = Clock()
    with storage_factory("mongomock") as factory:
        faults = WriteFaults()
        factory.client.fault = faults
        ds = datastream.Datastream(factory(), clock=clock)
        reader = datastream.Datastream(factory(), clock=clock)
        stream_id = ds.ensure_stream({"name": "x"}, {}, ["count", "sum"], "seconds")
        derived = ds.ensure_stream({"name": "d"}, {}, ["count"], "seconds",
                                   derive_from=[stream_id], derive_op="derivative")
        expected: list[int] = []
        q = 0
        step = 0
        while True:
            for _ in range(7):
                ds.append(stream_id, q, at(q))
                expected.append(q)
                q += 1
            faults.arm(step, persist)
            try:
                ds.flush()
            except exceptions.StreamAppendFailed:
                pass
            tripped = faults.failed
            faults.disarm()
            assert _values(ds, stream_id) == expected
            ds.flush()
            ds.downsample_streams(until=at(q - 3))
            assert _values(reader, stream_id) == expected, f"failure at write call {step}"
            assert _values(reader, derived) == [1.0] * (len(expected) - 1), step
            rows = list(reader.get_data(stream_id, "10seconds", start=EVER))
            assert [row["v"]["c"] for row in rows] == [10] * len(rows), step
            if not tripped:
                break  # the flush made fewer write calls than ``step``: every step was hit
            faults.failed = 0
            step += 1
        assert step >= 3, "the commit made suspiciously few write calls"
        if hasattr(reader, "verify"):
            assert not reader.verify()
        ds.close()
        reader.close()


# -- (e) exit behaviour ------------------------------------------------------------------------


def _python(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def _count_points(path: str) -> list:
    from datastream.backends import duckdb

    with datastream.Datastream(duckdb.Backend(path)) as ds:
        streams = list(ds.find_streams({"name": "exit"}))
        assert len(streams) == 1
        return _values(ds, streams[0]["stream_id"])


EXIT_SCRIPT = """
    import datetime, sys
    {imports}
    import datastream
    from datastream.backends import duckdb
    ds = datastream.Datastream(duckdb.Backend(sys.argv[1]))
    stream_id = ds.ensure_stream({{"name": "exit"}}, {{}}, ["count"], "seconds")
    t0 = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
    for q in range(5):
        ds.append(stream_id, q, t0 + datetime.timedelta(seconds=q))
    print("pandas imported:", "pandas" in sys.modules)
    {ending}
"""


@pytest.mark.parametrize(("imports", "ending"), [
    ("", "pass"),
    ("import pandas", "pass"),
    ("", "sys.exit(3)"),
    ("", "raise RuntimeError('uncaught')"),
], ids=["end_of_script", "pandas_imported", "sys_exit", "uncaught_exception"])
def test_points_survive_interpreter_exit_without_close(imports: str, ending: str,
                                                       tmp_path) -> None:
    """Normal interpreter exit, whatever is imported (pandas is installed here; the first
    case runs without importing it)."""
    path = str(tmp_path / "exit.duckdb")
    done = _python(EXIT_SCRIPT.format(imports=imports, ending=ending), path)
    # (without the import, the library may still have loaded pandas itself in the background:
    # pyarrow would import it lazily at the exit flush, which is what failed during shutdown)
    if imports:
        assert "pandas imported: True" in done.stdout, done.stdout + done.stderr
    assert "Exception ignored" not in done.stderr, done.stderr
    assert _count_points(path) == [0, 1, 2, 3, 4], done.stderr


IDLE_SCRIPT = """
    import datetime, sys, time
    import datastream
    from datastream.backends import duckdb
    ds = datastream.Datastream(duckdb.Backend(sys.argv[1]))
    stream_id = ds.ensure_stream({"name": "exit"}, {}, ["count"], "seconds")
    t0 = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
    ds.append(stream_id, 0, t0)
    ds.flush()  # imports and the first commit are paid before the point that matters
    ds.append(stream_id, 1, t0 + datetime.timedelta(seconds=1))
    print("appended", flush=True)
    time.sleep(600)  # no further call: only the background flusher can store the point
"""


def test_an_idle_process_flushes_by_age(tmp_path) -> None:
    path = str(tmp_path / "idle.duckdb")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(IDLE_SCRIPT), path],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env)
    try:
        line = process.stdout.readline()
        assert line.strip() == "appended", line + process.stderr.read()
        time.sleep(3.0)  # three times the default maximum age of a buffered point
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert _count_points(path) == [0, 1]


def test_an_unclosed_datastream_flushes_when_garbage_collected(backend_factory, clock) -> None:
    ds = datastream.Datastream(backend_factory(), clock=clock)
    stream_id = ds.ensure_stream({"name": "gc"}, {}, ["count"], "seconds")
    ds.append(stream_id, 1, at(1))
    gc.collect()  # unrelated garbage (sockets of earlier tests) warns now, not below
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del ds
        gc.collect()
    ours = [w for w in caught if issubclass(w.category, ResourceWarning) and (
        "Datastream" in str(w.message) or isinstance(w.source, datastream.Datastream))]
    assert ours, f"no ResourceWarning for the unclosed Datastream: {[str(w) for w in caught]}"
    # a new backend: for DuckDB this also needs the collected object to have let go of the file
    reader = datastream.Datastream(backend_factory(), clock=clock)
    assert _values(reader, stream_id) == [1]
    reader.close()


def test_append_after_close_raises(backend_factory, clock) -> None:
    ds = datastream.Datastream(backend_factory(), clock=clock)
    stream_id = ds.ensure_stream({"name": "closed"}, {}, ["count"], "seconds")
    ds.append(stream_id, 1, at(1))
    ds.close()
    with pytest.raises(exceptions.DatastreamException):
        ds.append(stream_id, 2, at(2))
    with pytest.raises(exceptions.DatastreamException):
        ds.append_multiple([{"stream_id": stream_id, "value": 3, "timestamp": at(3)}])
    with pytest.raises(exceptions.DatastreamException):
        ds.append_arrays(stream_id, np.array([at(4)], dtype="datetime64[us]"), np.array([4]))
    ds.close()  # idempotent


def test_storage_unavailable_is_a_datastream_exception() -> None:
    assert issubclass(exceptions.StorageUnavailable, exceptions.DatastreamException)


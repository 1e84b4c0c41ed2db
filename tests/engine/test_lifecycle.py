"""The buffering contract: background flushing, exit and garbage-collection flushes, retries of
failed commits with exactly-once storage, per-stream isolation, the memory bound, closing."""

from __future__ import annotations

import datetime
import gc
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import datastream
from datastream import exceptions
from datastream.backends import duckdb
from tests.engine.failing import FailingStorage

G = datastream.Granularity
T0 = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def stored_values(path: str) -> list:
    with datastream.Datastream(duckdb.Backend(path)) as ds:
        (stream,) = list(ds.find_streams())
        return [p["v"] for p in ds.get_data(stream["stream_id"], G.Seconds, start=T0)]


def run_child(code: str, wait: bool = True) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if wait:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    return process


CHILD_PREAMBLE = """
    import datetime, sys
    import datastream
    from datastream.backends import duckdb
    t0 = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
    ds = datastream.Datastream(duckdb.Backend({path!r}){options})
    sid = ds.ensure_stream({{"n": 1}}, {{}}, ["mean"], datastream.Granularity.Seconds)
    for i in range(5):
        ds.append(sid, i, t0 + datetime.timedelta(seconds=i))
"""


def test_exit_without_close_stores_everything(tmp_path):
    path = str(tmp_path / "exit.duckdb")
    run_child(CHILD_PREAMBLE.format(path=path, options=""))
    assert stored_values(path) == [0, 1, 2, 3, 4]


def test_exit_flush_survives_lazy_imports_during_shutdown(tmp_path):
    """pyarrow imports pandas on its first conversion; when that first conversion is the exit
    flush, the import runs after the threading module shut down."""
    path = str(tmp_path / "exit.duckdb")
    run_child("""
    from datastream.engine import lifecycle
    lifecycle._prewarm = lambda: None  # the flusher's warm-up has not happened yet
    """ + CHILD_PREAMBLE.format(path=path, options=", buffer_seconds=3600") + """
    assert "pandas" not in sys.modules
    """)
    assert stored_values(path) == [0, 1, 2, 3, 4]


def test_exit_flush_imports_the_compressor_during_shutdown(tmp_path):
    """The chunk codec's compressor (blosc2) is imported on first use too: a process whose
    first chunk is written by the exit flush imports it after the threading module shut down."""
    path = str(tmp_path / "exit.duckdb")
    run_child(f"""
    import sys
    import numpy as np
    from datastream.engine import lifecycle
    lifecycle._prewarm = lambda: None  # the flusher's warm-up has not happened yet
    import datastream
    from datastream.backends import duckdb
    ds = datastream.Datastream(duckdb.Backend({path!r}), buffer_seconds=3600,
                               buffer_points=10**6)
    sid = ds.ensure_stream({{"n": 1}}, {{}}, ["mean"], datastream.Granularity.Seconds)
    t = 946_684_800_000_000 + np.arange(20_000, dtype=np.int64) * 1_000_000
    ds.append_arrays(sid, t, np.random.default_rng(1).normal(size=t.size), unit="us")
    assert "blosc2" not in sys.modules
    """)
    assert len(stored_values(path)) == 20_000


def test_the_flusher_warms_up_imports_once_points_are_buffered(tmp_path):
    """Opening a store and reading its metadata leave the compressor (blosc2) and pyarrow's
    pandas import out, also after the flusher ran a while; the first buffered point has the
    flusher import them in the background, before any flush is due."""
    path = str(tmp_path / "warm.duckdb")
    child = run_child(f"""
    import datetime, sys, time
    import datastream
    from datastream.backends import duckdb
    ds = datastream.Datastream(duckdb.Backend({path!r}), buffer_seconds=3600)
    sid = ds.ensure_stream({{"n": 1}}, {{}}, ["mean"], datastream.Granularity.Seconds)
    assert len(ds.find_streams()) == 1 and ds.get_tags(sid)["stream_id"] == sid
    time.sleep(0.5)  # ten ticks of the flusher
    print(sorted(m for m in ("blosc2", "pandas") if m in sys.modules))
    ds.append(sid, 1.0, datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc))
    for _ in range(200):
        if "blosc2" in sys.modules:
            break
        time.sleep(0.05)
    print("blosc2" in sys.modules)
    """, wait=False)
    stdout, stderr = child.communicate(timeout=120)
    assert child.returncode == 0, stderr
    assert stdout.split("\n")[:2] == ["[]", "True"]
    assert stored_values(path) == [1.0]


def test_an_idle_process_flushes_by_age_without_another_call(tmp_path):
    path = str(tmp_path / "idle.duckdb")
    child = run_child(CHILD_PREAMBLE.format(path=path, options="") + """
    import time
    print("appended", flush=True)
    time.sleep(60)
    """, wait=False)
    try:
        assert child.stdout.readline().strip() == "appended"
        time.sleep(4)  # a generous multiple of the 1 s age limit
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert stored_values(path) == [0, 1, 2, 3, 4]


def test_garbage_collected_instance_flushes_with_a_resource_warning(tmp_path):
    path = str(tmp_path / "gc.duckdb")
    ds = datastream.Datastream(duckdb.Backend(path), buffer_seconds=3600)
    sid = ds.ensure_stream({"n": 1}, {}, [], G.Seconds)
    ds.append(sid, 42, at(0))
    with pytest.warns(ResourceWarning, match="unclosed Datastream"):
        del ds
        gc.collect()
    assert stored_values(path) == [42]


def test_calls_after_close_raise():
    ds = datastream.Datastream()
    sid = ds.ensure_stream({"n": 1}, {}, [], G.Seconds)
    ds.close()
    with pytest.raises(exceptions.DatastreamException, match="closed"):
        ds.append(sid, 1, at(0))
    with pytest.raises(exceptions.DatastreamException, match="closed"):
        ds.append_multiple([{"stream_id": sid, "value": 1, "timestamp": at(0)}])
    ds.close()  # idempotent


def failing_ds(**options):
    storage = FailingStorage(duckdb.Backend())
    return storage, datastream.Datastream(storage, buffer_seconds=3600, **options)


def test_failed_flush_keeps_points_and_stores_them_once_after_recovery():
    storage, ds = failing_ds()
    sid = ds.ensure_stream({"n": 1}, {}, [], G.Seconds)
    for i in range(3):
        ds.append(sid, i, at(i))
    storage.fail = True
    with pytest.raises(exceptions.StreamAppendFailed):
        ds.flush()
    with pytest.raises(exceptions.StreamAppendFailed):
        ds.close()  # nothing is dropped: the instance stays open
    ds.append(sid, 3, at(3))
    storage.fail = False
    ds.flush()
    assert [p["v"] for p in ds.get_data(sid, G.Seconds, start=T0)] == [0, 1, 2, 3]
    ds.close()


def test_one_failing_stream_does_not_block_the_others():
    storage, ds = failing_ds()
    good = ds.ensure_stream({"n": "good"}, {}, [], G.Seconds)
    bad = ds.ensure_stream({"n": "bad"}, {}, [], G.Seconds)
    ds.append(good, 1, at(0))
    ds.append(bad, 2, at(0))
    storage.fail = {bad}
    with pytest.raises(exceptions.StreamAppendFailed, match=bad):
        ds.flush()
    assert [p["v"] for p in ds.get_data(good, G.Seconds, start=T0)] == [1]
    assert storage.inner.read_raw(bad, None, None).num_rows == 0
    storage.fail = False
    ds.flush()
    assert [p["v"] for p in ds.get_data(bad, G.Seconds, start=T0)] == [2]


def test_unbuffered_append_that_failed_is_not_stored_by_its_retry_twice():
    storage = FailingStorage(duckdb.Backend())
    ds = datastream.Datastream(storage, buffered=False)
    sid = ds.ensure_stream({"n": 1}, {}, [], G.Seconds)
    storage.fail = True
    with pytest.raises(exceptions.StreamAppendFailed):
        ds.append(sid, 7, at(0))
    storage.fail = False
    ds.append(sid, 7, at(0))  # the user's retry
    ds.flush()
    assert [p["v"] for p in ds.get_data(sid, G.Seconds, start=T0)] == [7]


def test_memory_bound_while_the_backend_fails():
    storage, ds = failing_ds(max_buffered_points=5)
    sid = ds.ensure_stream({"n": 1}, {}, [], G.Seconds)
    storage.fail = True
    for i in range(5):
        ds.append(sid, i, at(i))
    with pytest.raises(exceptions.StreamAppendFailed, match="bound"):
        ds.append(sid, 5, at(5))
    storage.fail = False
    ds.append(sid, 5, at(5))
    ds.flush()
    assert [p["v"] for p in ds.get_data(sid, G.Seconds, start=T0)] == [0, 1, 2, 3, 4, 5]


def test_background_flusher_retries_after_recovery():
    storage = FailingStorage(duckdb.Backend())
    ds = datastream.Datastream(storage, buffer_seconds=0.1)
    sid = ds.ensure_stream({"n": 1}, {}, [], G.Seconds)
    storage.fail = True
    ds.append(sid, 1, at(0))
    time.sleep(0.5)
    assert storage.inner.read_raw(sid, None, None).num_rows == 0
    storage.fail = False
    deadline = time.monotonic() + 30  # generous for a loaded CI: it ends at the first success
    while storage.inner.read_raw(sid, None, None).num_rows == 0:
        assert time.monotonic() < deadline, "the background flusher never retried"
        time.sleep(0.05)
    assert storage.inner.read_raw(sid, None, None).num_rows == 1
    ds.close()


class _Hanging(FailingStorage):
    """Commits block until released, then fail (a backend that stopped answering)."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        import threading

        self.release = threading.Event()
        self.hang = False

    def commit(self, batch) -> None:
        if self.hang:
            self.release.wait(30)
            raise exceptions.StreamAppendFailed("injected: the backend stopped answering")
        super().commit(batch)


def test_a_hanging_backend_delays_no_other_datastream():
    """The background flusher flushes each Datastream in a thread of its own: while one
    object's commit hangs, another object's points are stored by the age limit as usual."""
    hanging = _Hanging(duckdb.Backend())
    stuck = datastream.Datastream(hanging, buffer_seconds=0.1)
    healthy = datastream.Datastream(duckdb.Backend(), buffer_seconds=0.1)
    a = stuck.ensure_stream({"n": "a"}, {}, ["mean"], "seconds")
    b = healthy.ensure_stream({"n": "b"}, {}, ["mean"], "seconds")
    hanging.hang = True
    stuck.append(a, 1.0, at(0))
    deadline = time.monotonic() + 30  # generous for a loaded CI: it ends at the first success
    while hanging.commits == 0 and not hanging.release.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)  # the stuck object's flush has begun (and hangs)
        if stuck._engine.lock.acquire(blocking=False):
            stuck._engine.lock.release()
        else:
            break
    healthy.append(b, 2.0, at(0))
    while healthy._engine.buffers.points and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert healthy._engine.buffers.points == 0, "a hanging backend held another one back"
        assert [p["v"] for p in healthy.get_data(b, "seconds", start=at(0))] == [2.0]
    finally:
        hanging.release.set()
        hanging.hang = False
        stuck.close()
        healthy.close()

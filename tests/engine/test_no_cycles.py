"""The rows of a commit are freed when it ends, not when the garbage collector runs.

A reference cycle through a change set (or anything holding rows) keeps every flush's tables
alive until a collection finds it: memory grows between collections and each flush writes to
fresh pages. These tests run the common operations with the collector saving what it finds and
require that none of it is ours.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import gc

import numpy as np

import datastream

T0 = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)


@contextlib.contextmanager
def cyclic_garbage_of_datastream():
    """Yields a list filled, at exit, with the datastream objects only a collection freed."""
    found: list = []
    gc.collect()
    flags = gc.get_debug()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield found
        gc.collect()
        found.extend(o for o in gc.garbage if type(o).__module__.startswith("datastream"))
    finally:
        gc.set_debug(flags)
        gc.garbage.clear()


def _workload(ds: datastream.Datastream) -> None:
    a = ds.ensure_stream({"n": "a"}, {}, ["mean", "median", "most_often"], "seconds")
    b = ds.ensure_stream({"n": "b"}, {}, ["mean", "min"], "seconds")
    ds.ensure_stream({"n": "s"}, {}, ["mean"], "seconds", derive_from=[a, b], derive_op="sum")
    ds.ensure_stream({"n": "d"}, {}, ["mean"], "seconds", derive_from=[a],
                     derive_op="derivative")
    for i in range(200):
        ds.append(a, i % 7, T0 + datetime.timedelta(seconds=i))
        ds.append(b, i * 0.5, T0 + datetime.timedelta(seconds=i))
    ds.flush()
    start_us = int(T0.timestamp() * 1e6)
    ds.append_arrays(a, np.arange(300, 900, dtype=np.int64) * 10**6 + start_us,
                     np.arange(600.0), unit="us")
    ds.append_multiple([{"stream_id": b, "value": 1.0,
                         "timestamp": T0 + datetime.timedelta(seconds=1000)}])
    ds.downsample_streams(until=T0 + datetime.timedelta(hours=1))
    assert len(list(ds.get_data(a, "10seconds", start=T0))) > 0
    assert ds.get_data(a, "seconds", start=T0).to_arrow().num_rows == 800
    assert ds.get_table({}, "minutes", start=T0).num_rows > 0
    assert not ds.verify()
    ds.reopen_streams({"n": "b"}, T0 + datetime.timedelta(seconds=100))
    ds.delete_streams({"n": "d"})


def test_a_workload_leaves_no_cycles_of_ours(backend_factory, clock):
    clock.now = T0 + datetime.timedelta(hours=2)
    with cyclic_garbage_of_datastream() as garbage:
        ds = datastream.Datastream(backend_factory(), clock=clock, buffer_seconds=3600)
        _workload(ds)
        ds.close()
        del ds
    kinds = collections.Counter(type(o).__qualname__ for o in garbage)
    assert not kinds, f"freed only by the garbage collector: {kinds.most_common(8)}"

"""Imported by the crash harness's forkserver only: runs the engine once (on mongomock, so
that no DuckDB thread exists before the fork) so that forked children start with numba's
kernels loaded instead of loading them again in every child."""

from __future__ import annotations

import warnings


def warm() -> None:
    try:
        import mongomock

        from datastream.storage.mongodb import MongoDBStorage
        from tests import crash_child as child
    except ImportError:
        return
    import datastream

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        storage = MongoDBStorage("warmup", client=mongomock.MongoClient())
        with datastream.Datastream(storage, auto_downsample=True) as ds:
            ids = child.ensure_streams(ds)
            for q in range(1, 40):
                ds.append(ids["s0"], q, child.at(q * 7))
            ds.flush()
            ds.downsample_streams(until=child.at(400))
            list(ds.get_data(ids["s0"], "10seconds", start=child.T0))
            list(ds.get_data(ids["d0"], "seconds", start=child.T0))


warm()

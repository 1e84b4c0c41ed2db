"""The process the crash harness kills (behaviour §4.3): it appends and flushes in a loop.

Three numeric streams ``s0``..``s2`` and ``d0`` = derivative(``s0``). A point's value is its
sequence number ``q`` and its timestamp is ``T0 + q`` seconds, so every stored point says which
append it came from, and ``d0`` is 1.0 at every ``s0`` point but the first. After each
``flush()`` returns, the child appends ``ack <stream> <last q>`` lines to the ack file and
fsyncs it: everything up to there must survive any kill. A new run continues after the newest
stored point of each stream (lost, unacknowledged sequence numbers are used again).

Run as ``python tests/crash_child.py CONFIG_JSON`` or call :func:`run` (the harness forks it
from a warm multiprocessing forkserver: imports cost seconds, a fork costs milliseconds).
"""

from __future__ import annotations

import datetime
import json
import os
import random
import sys
import time
import traceback
from typing import Any

import numpy as np

import datastream

UTC = datetime.timezone.utc
T0 = datetime.datetime(2000, 1, 1, tzinfo=UTC)
T0_US = 946684800 * 1_000_000
BASE = ["s0", "s1", "s2"]
DERIVED = "d0"
DOWNSAMPLERS = ["count", "sum", "min", "max"]


def at(q: int) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=q)


def open_backend(config: dict[str, Any]) -> Any:
    """A storage backend from a JSON-able description (the same in parent and child)."""
    kind = config["kind"]
    if kind == "duckdb":
        from datastream.backends import duckdb

        return duckdb.Backend(config["path"])
    if kind == "influxdb":
        from datastream.backends import influxdb

        return short_leases(influxdb.Backend(dict(config["influx"]), dict(config["metadata"])))
    if kind == "mongodb":
        from datastream.backends import mongodb

        return short_leases(mongodb.Backend(config["database"], uri=config["uri"]))
    raise ValueError(f"unknown backend kind {kind!r}")


LEASE_SECONDS = 10.0


def short_leases(storage: Any) -> Any:
    """The storage with maintenance leases of LEASE_SECONDS instead of a minute: a killed
    child's leases still have to expire before the next child may take them over, but the
    final run waits seconds for that, not a minute (a flush here takes milliseconds)."""
    lock = storage.maintenance_lock
    storage.maintenance_lock = lambda stream_id, ttl_seconds=LEASE_SECONDS: lock(stream_id,
                                                                                ttl_seconds)
    return storage


def ensure_streams(ds: datastream.Datastream) -> dict[str, str]:
    ids = {name: ds.ensure_stream({"crash": name}, {}, DOWNSAMPLERS, "seconds") for name in BASE}
    ids[DERIVED] = ds.ensure_stream({"crash": DERIVED}, {}, ["count"], "seconds",
                                    derive_from=[ids["s0"]], derive_op="derivative")
    if ds.get_tags(ids[DERIVED])["pending_backprocess"]:
        # an earlier run was killed between creating s0 (and appending) and creating d0
        ds.backprocess_streams({"crash": DERIVED})
    return ids


def run(config: dict[str, Any]) -> None:
    try:
        _run(config)
    except BaseException:
        with open(config["error_file"], "a") as handle:
            handle.write(traceback.format_exc())
        raise


def _run(config: dict[str, Any]) -> None:
    rng = random.Random(config["seed"])
    auto = bool(config.get("auto_downsample"))
    ds = datastream.Datastream(open_backend(config["backend"]), auto_downsample=auto)
    ids = ensure_streams(ds)
    following: dict[str, int] = {}
    for name in BASE:
        latest = ds.get_tags(ids[name])["latest_datapoint"]
        following[name] = 1 if latest is None else int((latest - T0).total_seconds()) + 1
    acks = os.open(config["ack_file"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    iterations = config.get("iterations")
    done = 0
    while iterations is None or done < iterations:
        done += 1
        chosen = rng.sample(BASE, rng.randint(1, len(BASE)))
        mode = rng.choice(["single", "multiple", "arrays"])
        items: list[dict[str, Any]] = []
        last: dict[str, int] = {}
        for name in chosen:
            first = following[name]
            count = rng.randint(1, 40)
            numbers = range(first, first + count)
            if mode == "single":
                for q in numbers:
                    ds.append(ids[name], q, at(q))
            elif mode == "arrays":
                stamps = (T0_US + np.asarray(numbers, dtype=np.int64) * 1_000_000)
                ds.append_arrays(ids[name], stamps.astype("datetime64[us]"),
                                 np.asarray(numbers, dtype=np.int64))
            else:
                items.extend({"stream_id": ids[name], "value": q, "timestamp": at(q)}
                             for q in numbers)
            following[name] = first + count
            last[name] = first + count - 1
        if items:
            # interleave the streams, each still in time order
            items.sort(key=lambda item: (item["value"], item["stream_id"]))
            ds.append_multiple(items)
        ds.flush()
        line = "".join(f"ack {name} {q}\n" for name, q in sorted(last.items()))
        os.write(acks, line.encode())
        os.fsync(acks)
        if not auto and rng.random() < 0.15:
            until = at(min(following.values()) - rng.randint(0, 120))
            ds.downsample_streams(until=until)
        if rng.random() < 0.2:
            time.sleep(rng.random() * 0.02)
    os.close(acks)
    ds.close()


if __name__ == "__main__":
    run(json.loads(sys.argv[1]))

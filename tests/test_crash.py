"""behaviour §4.3: a SIGKILL at any moment never loses what a completed flush covered, never stores
a point twice, and never leaves raw data, levels and derived streams disagreeing.

Children (tests/crash_child.py) append and flush in a loop and acknowledge each completed flush
in a side file; the parent kills them at random moments and checks the reopened store after
every kill (tests/crash_support.py), then lets a last child run to a clean close.

CI: 7 kills on a DuckDB file and 4 on InfluxDB + PostgreSQL (the children's maintenance
leases last 10 s: the final run waits that long for a killed writer's leases to expire);
MongoDB only against a real server (``DATASTREAM_MONGODB_URI``). ``DATASTREAM_CRASH_KILLS`` sets the
kills per backend for a longer run, ``DATASTREAM_CRASH_SEED`` replays one; bench/crash_soak.py
runs hundreds.
"""

from __future__ import annotations

import os
import random
import uuid

import pytest

from tests.conftest import BACKENDS
from tests.crash_support import CrashHarness

KILLS = {"duckdb": 7, "influxdb": 4, "mongodb": 6}
CRASH_BACKENDS = ["duckdb"]
if "influxdb" in BACKENDS:
    CRASH_BACKENDS.append("influxdb")
if os.environ.get("DATASTREAM_MONGODB_URI"):
    CRASH_BACKENDS.append("mongodb")
STOP_AFTER_PROBLEMS = 3  # a broken store keeps failing: stop early, the first reports suffice


@pytest.fixture
def crash_store(request, tmp_path):
    """A JSON description of a fresh store that a child process can open."""
    kind = request.param
    if kind == "duckdb":
        yield {"kind": "duckdb", "path": str(tmp_path / "crash.duckdb")}
    elif kind == "influxdb":
        from tests.servers import fresh_databases

        with fresh_databases(request.getfixturevalue("influx_servers")) as (influx, metadata):
            yield {"kind": "influxdb", "influx": influx, "metadata": metadata}
    else:
        import pymongo

        name = f"datastream_crash_{uuid.uuid4().hex[:12]}"
        uri = os.environ["DATASTREAM_MONGODB_URI"]
        yield {"kind": "mongodb", "uri": uri, "database": name}
        client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
        client.drop_database(name)
        client.close()


@pytest.mark.parametrize("crash_store", CRASH_BACKENDS, indirect=True)
def test_sigkill_loses_nothing_acknowledged(crash_store, tmp_path) -> None:
    kind = crash_store["kind"]
    kills = int(os.environ.get("DATASTREAM_CRASH_KILLS", KILLS[kind]))
    seed = int(os.environ.get("DATASTREAM_CRASH_SEED", random.randrange(2**31)))
    harness = CrashHarness(crash_store, str(tmp_path), seed)
    problem_cycles = 0
    for _ in range(kills):
        before = len(harness.tally.problems)
        harness.cycle()
        if len(harness.tally.problems) > before:
            problem_cycles += 1
            if problem_cycles >= STOP_AFTER_PROBLEMS:
                break
    else:
        harness.final_run()
    tally = harness.tally
    assert not tally.problems, (
        f"{kind}, DATASTREAM_CRASH_SEED={seed}: {tally.line()}\n" + "\n".join(tally.problems[:8])
    )
    assert tally.kills >= kills // 2, f"only {tally.kills} of {kills} children were killed"
    assert tally.acknowledged > 0 and tally.stored >= tally.acknowledged


@pytest.mark.filterwarnings("ignore::datastream.exceptions.InvalidValueWarning")
def test_the_checker_sees_loss_and_duplicates(tmp_path) -> None:
    """The harness can fail: a store missing an acknowledged point and holding one twice."""
    import datastream
    from tests import crash_child as child

    description = {"kind": "duckdb", "path": str(tmp_path / "broken.duckdb")}
    with datastream.Datastream(child.open_backend(description)) as ds:
        ids = child.ensure_streams(ds)
        for q in [1, 2, 3, 4, 6, 7, 7, 8]:  # 5 lost, 7 twice
            ds.append(ids["s0"], q, child.at(q))
    harness = CrashHarness(description, str(tmp_path), seed=1)
    with open(harness.ack_file, "w") as acks:
        acks.write("ack s0 8\nack s1 0\nack s0 9")  # the last line was cut short by a kill
    harness.check()
    assert harness.tally.lost == 1 and harness.tally.duplicated == 1, harness.tally.problems
    assert harness.tally.acknowledged == 8

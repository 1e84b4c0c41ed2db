"""Crash soak: the loop of tests/test_crash.py for many kills (behaviour §4.3).

Children append and flush in a loop and acknowledge every completed flush; each is SIGKILLed
at a random moment and the reopened store is checked (nothing acknowledged lost, nothing stored
twice, levels and the derived stream consistent with raw data, ``verify()`` empty). At the end
one child runs to a clean close. Prints a tally every 25 kills and at the end; exits 1 when
anything was wrong.

    .venv/bin/python bench/crash_soak.py --backend duckdb --kills 500
    .venv/bin/python bench/crash_soak.py --backend influxdb --kills 200   # starts its servers
    DATASTREAM_MONGODB_URI=mongodb://... .venv/bin/python bench/crash_soak.py --backend mongodb

InfluxDB + PostgreSQL and MongoDB: a child killed inside a flush leaves stream leases that the
next children wait for (60 s), so those soaks take longer per kill.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.crash_support import CrashHarness  # noqa: E402


@contextlib.contextmanager
def store(kind: str, workdir: str) -> Iterator[dict[str, Any]]:
    if kind == "duckdb":
        yield {"kind": "duckdb", "path": os.path.join(workdir, "soak.duckdb")}
    elif kind == "influxdb":
        from tests import servers

        with servers.influx_servers() as running, servers.fresh_databases(running) as (
                influx, metadata):
            yield {"kind": "influxdb", "influx": influx, "metadata": metadata}
    elif kind == "mongodb":
        import pymongo

        uri = os.environ.get("DATASTREAM_MONGODB_URI")
        if not uri:
            raise SystemExit("set DATASTREAM_MONGODB_URI to soak the MongoDB backend")
        name = f"datastream_soak_{uuid.uuid4().hex[:12]}"
        try:
            yield {"kind": "mongodb", "uri": uri, "database": name}
        finally:
            client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
            client.drop_database(name)
            client.close()
    else:
        raise SystemExit(f"unknown backend {kind!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="duckdb", choices=["duckdb", "influxdb", "mongodb"])
    parser.add_argument("--kills", type=int, default=500)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    options = parser.parse_args()
    seed = random.randrange(2**31) if options.seed is None else options.seed
    workdir = tempfile.mkdtemp(prefix="datastream-soak-")
    print(f"crash soak: {options.backend}, {options.kills} kills, seed {seed}, in {workdir}",
          flush=True)
    started = time.monotonic()
    with store(options.backend, workdir) as description:
        harness = CrashHarness(description, workdir, seed, log=lambda m: print(m, flush=True))
        for number in range(1, options.kills + 1):
            harness.cycle()
            if number % 25 == 0:
                print(f"[{time.monotonic() - started:7.1f} s] {harness.tally.line()}",
                      flush=True)
        harness.final_run()
    tally = harness.tally
    print(f"done in {time.monotonic() - started:.1f} s")
    print(f"kills: {tally.kills}")
    print(f"child runs: {tally.runs} (clean exits {tally.clean_exits}, errors "
          f"{tally.child_errors})")
    print(f"acknowledged points: {tally.acknowledged}")
    print(f"stored points: {tally.stored}")
    print(f"lost (acknowledged, missing): {tally.lost}")
    print(f"duplicated: {tally.duplicated}")
    print(f"misplaced: {tally.misplaced}")
    print(f"level mismatches: {tally.level_mismatches}")
    print(f"derived mismatches: {tally.derived_mismatches}")
    print(f"verify failures: {tally.verify_failures}")
    for problem in tally.problems[:20]:
        print("PROBLEM:", problem)
    if not options.keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if tally.problems else 0


if __name__ == "__main__":
    sys.exit(main())

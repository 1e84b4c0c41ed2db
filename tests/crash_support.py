"""Parent side of the crash harness (behaviour §4.3): start children, SIGKILL them, check the store.

Children run :func:`tests.crash_child.run`, forked from a multiprocessing *forkserver* that has
imported datastream and run the engine once (tests/crash_warmup.py): a fresh interpreter per
child would spend seconds on imports and kernel loading, and forking the test process itself
(which holds DuckDB and database connections) is unsafe.

After every kill the parent opens the store in a new ``Datastream`` and checks:

* every acknowledged point (up to the last ``ack`` line of its stream) is stored exactly once;
* no sequence number is stored twice (acknowledged or not) and each sits at its own time;
* ``d0`` is a replay of ``s0``: 1.0 at every ``s0`` point but the first;
* every materialised bucket of every level holds the count and sum of the raw points in it,
  and the levels cover exactly their range (an independent check of raw vs levels);
* ``verify()`` finds nothing (behaviour §10), when the library has it.

:class:`CrashHarness` is shared by tests/test_crash.py (CI) and bench/crash_soak.py (soak).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import multiprocessing
import os
import random
import signal
import time
from collections.abc import Callable
from typing import Any

import datastream
from tests import crash_child as child

EVER = datetime.datetime.min
LEVEL_WIDTHS = {"10seconds": 10, "minutes": 60, "10minutes": 600, "hours": 3600,
                "6hours": 21600, "days": 86400}
# A child killed inside a flush on a shared backend leaves stream leases behind that the next
# children wait for (crash_child.LEASE_SECONDS on InfluxDB + PostgreSQL and MongoDB); a cycle
# waits this long for progress and then kills the child wherever it is. The final run must
# finish regardless.
PROGRESS_PATIENCE = 5.0
FINAL_TIMEOUT = 600.0


@dataclasses.dataclass
class Tally:
    runs: int = 0
    kills: int = 0
    clean_exits: int = 0
    acknowledged: int = 0  # acknowledged points at the last check
    stored: int = 0  # raw points of s0..s2 at the last check
    lost: int = 0  # acknowledged points missing (summed over checks)
    duplicated: int = 0  # sequence numbers stored more than once (summed over checks)
    misplaced: int = 0  # points whose timestamp is not the one their value encodes
    level_mismatches: int = 0
    derived_mismatches: int = 0
    verify_failures: int = 0
    child_errors: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)

    def line(self) -> str:
        return (f"runs {self.runs}, kills {self.kills}, clean exits {self.clean_exits}, "
                f"acknowledged {self.acknowledged}, stored {self.stored}, lost {self.lost}, "
                f"duplicated {self.duplicated}, misplaced {self.misplaced}, "
                f"level mismatches {self.level_mismatches}, derived mismatches "
                f"{self.derived_mismatches}, verify failures {self.verify_failures}, "
                f"child errors {self.child_errors}")


def read_acks(path: str) -> dict[str, int]:
    """The last acknowledged sequence number per stream (complete lines only: a kill may cut
    the final line short)."""
    acks: dict[str, int] = {}
    try:
        with open(path) as handle:
            text = handle.read()
    except FileNotFoundError:
        return acks
    for line in text.split("\n")[:-1]:
        word, name, q = line.split()
        if word == "ack":
            acks[name] = max(acks.get(name, 0), int(q))
    return acks


def ack_lines(path: str) -> int:
    try:
        with open(path, "rb") as handle:
            return handle.read().count(b"\n")
    except FileNotFoundError:
        return 0


class CrashHarness:
    """Kill children working on one store and check the store after each kill."""

    def __init__(self, backend: dict[str, Any], workdir: str, seed: int,
                 log: Callable[[str], None] = lambda message: None) -> None:
        self.backend = backend
        self.ack_file = os.path.join(workdir, "acks.txt")
        self.error_file = os.path.join(workdir, "child-errors.txt")
        self.rng = random.Random(seed)
        self.tally = Tally()
        self.log = log
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(["tests.crash_child", "tests.crash_warmup"])

    # -- children ----------------------------------------------------------------------------
    def _spawn(self, iterations: int | None) -> multiprocessing.process.BaseProcess:
        config = {
            "backend": self.backend,
            "ack_file": self.ack_file,
            "error_file": self.error_file,
            "seed": self.rng.randrange(2**32),
            "auto_downsample": self.rng.random() < 0.35,
            "iterations": iterations,
        }
        process = self.context.Process(target=child.run, args=(config,), daemon=True)
        process.start()
        self.tally.runs += 1
        return process

    def _child_failed(self, process: multiprocessing.process.BaseProcess, what: str) -> None:
        self.tally.child_errors += 1
        try:
            with open(self.error_file) as handle:
                detail = handle.read()[-3000:]
        except FileNotFoundError:
            detail = "(no traceback written)"
        self.tally.problems.append(f"child run {self.tally.runs} {what} (exit code "
                                   f"{process.exitcode}):\n{detail}")

    def cycle(self) -> None:
        """One child run, killed at a random moment, then a check of the store."""
        before = ack_lines(self.ack_file)
        process = self._spawn(None)
        if self.rng.random() < 0.3:
            # any moment, opening and recovery included
            process.join(self.rng.uniform(0.0, 1.5))
        else:
            # after some progress, at a random point of the append/flush loop
            deadline = time.monotonic() + PROGRESS_PATIENCE
            while (ack_lines(self.ack_file) <= before and process.is_alive()
                   and time.monotonic() < deadline):
                time.sleep(0.01)
            process.join(self.rng.uniform(0.0, 0.4))
        if process.is_alive():
            os.kill(process.pid, signal.SIGKILL)
            self.tally.kills += 1
            process.join()
        else:
            self._child_failed(process, "ended by itself before it was killed")
        self.check()

    def final_run(self, iterations: int = 15) -> None:
        """A child that runs to the end and closes: the store must still be usable."""
        process = self._spawn(iterations)
        process.join(FINAL_TIMEOUT)
        if process.is_alive():
            os.kill(process.pid, signal.SIGKILL)
            process.join()
            self.tally.problems.append(f"the final child did not finish in {FINAL_TIMEOUT} s")
        elif process.exitcode != 0:
            self._child_failed(process, "failed")
        else:
            self.tally.clean_exits += 1
        self.check()

    # -- checking the store ---------------------------------------------------------------------
    def check(self) -> None:
        acks = read_acks(self.ack_file)
        self.tally.acknowledged = sum(acks.values())
        try:
            ds = datastream.Datastream(child.open_backend(self.backend))
        except Exception as error:  # noqa: BLE001 - reported as a finding
            self.tally.problems.append(f"after run {self.tally.runs}: the store does not open: "
                                       f"{type(error).__name__}: {error}")
            return
        try:
            self._check(ds, acks)
        except Exception as error:  # noqa: BLE001 - reported as a finding
            self.tally.problems.append(f"after run {self.tally.runs}: reading the store "
                                       f"failed: {type(error).__name__}: {error}")
        finally:
            ds.close()

    def _problem(self, counter: str, message: str, amount: int = 1) -> None:
        setattr(self.tally, counter, getattr(self.tally, counter) + amount)
        self.tally.problems.append(f"after run {self.tally.runs}: {message}")
        self.log(self.tally.problems[-1])

    def _check(self, ds: datastream.Datastream, acks: dict[str, int]) -> None:
        ids = {tags["crash"]: tags["stream_id"] for tags in ds.find_streams()}
        stored = 0
        raw_of: dict[str, list[tuple[datetime.datetime, Any]]] = {}
        for name in child.BASE:
            acked = acks.get(name, 0)
            if name not in ids:
                if acked:
                    self._problem("lost", f"stream {name} is gone with {acked} acknowledged "
                                  "points", acked)
                continue
            points = [(p["t"], p["v"]) for p in ds.get_data(ids[name], "seconds", start=EVER)]
            raw_of[name] = points
            stored += len(points)
            values = [v for _, v in points]
            seen = set(values)
            if len(seen) != len(values):
                doubles = sorted(q for q in seen if values.count(q) > 1)
                self._problem("duplicated", f"{name}: sequence numbers stored twice: "
                              f"{doubles[:10]}", len(values) - len(seen))
            missing = [q for q in range(1, acked + 1) if q not in seen]
            if missing:
                self._problem("lost", f"{name}: {len(missing)} acknowledged points missing "
                              f"(acknowledged up to {acked}), first {missing[:10]}", len(missing))
            wrong = [(t, v) for t, v in points if not isinstance(v, int) or t != child.at(v)]
            if wrong:
                self._problem("misplaced", f"{name}: points not at their own time: {wrong[:5]}",
                              len(wrong))
            self._check_levels(ds, name, ids[name], points, numeric=True)
        self.tally.stored = stored
        if child.DERIVED in ids and "s0" in raw_of:
            self._check_derived(ds, ids[child.DERIVED], raw_of["s0"])
        verify = getattr(ds, "verify", None)
        if verify is not None:
            result = verify()
            if result:
                self._problem("verify_failures", f"verify() found {list(result)[:5]}")

    def _check_derived(self, ds: datastream.Datastream, stream_id: str,
                       source: list[tuple[datetime.datetime, Any]]) -> None:
        tags = ds.get_tags(stream_id)
        if tags["pending_backprocess"]:
            return  # created after s0 held data; the next run backprocesses it
        points = [(p["t"], p["v"]) for p in ds.get_data(stream_id, "seconds", start=EVER)]
        expected = [t for t, _ in source][1:]
        if [t for t, _ in points] != expected or not all(
                v is not None and math.isclose(v, 1.0) for _, v in points):
            self._problem("derived_mismatches", f"d0 is not derivative(s0): {len(points)} "
                          f"points, expected {len(expected)} at the s0 times after the first; "
                          f"first differences: {_first_differences(points, expected)}")
        self._check_levels(ds, child.DERIVED, stream_id, points, numeric=False)

    def _check_levels(self, ds: datastream.Datastream, name: str, stream_id: str,
                      points: list[tuple[datetime.datetime, Any]], numeric: bool) -> None:
        """Every closed bucket from the first one to the bound, each with the count (and sum)
        of the raw points inside it."""
        bounds = ds.get_tags(stream_id)["downsampled_until"]
        for level, bound in bounds.items():
            if bound is None or not points:
                continue
            width = datetime.timedelta(seconds=LEVEL_WIDTHS[level])
            first = _floor(points[0][0], width)
            buckets: dict[datetime.datetime, list[Any]] = {}
            for t, v in points:
                if t < bound:
                    buckets.setdefault(_floor(t, width), []).append(v)
            rows = list(ds.get_data(stream_id, level, start=EVER))
            expected_count = (bound - first) // width
            if len(rows) != expected_count:
                self._problem("level_mismatches", f"{name} {level}: {len(rows)} buckets up to "
                              f"the bound {bound}, expected {expected_count}")
                continue
            for index, row in enumerate(rows):
                start = first + index * width
                values = [v for v in buckets.get(start, []) if v is not None]
                count = row["v"]["c"]
                total = row["v"].get("s") if numeric else None
                ok = count == len(values) and (
                    not numeric or (total is None if not values else total == sum(values)))
                if not ok:
                    self._problem("level_mismatches", f"{name} {level} bucket {start}: count "
                                  f"{count} sum {total}, raw has {len(values)} points summing "
                                  f"to {sum(values)}")
                    break


def _floor(moment: datetime.datetime, width: datetime.timedelta) -> datetime.datetime:
    return child.T0 + ((moment - child.T0) // width) * width


def _first_differences(points: list, expected: list) -> list:
    got = [t for t, _ in points]
    extra = [t for t in got if t not in set(expected)][:3]
    missing = [t for t in expected if t not in set(got)][:3]
    odd = [(t, v) for t, v in points if v is None or not math.isclose(v, 1.0)][:3]
    return [("extra", extra), ("missing", missing), ("values", odd)]

"""The whole public API as a hypothesis state machine, checked against tests/model.py.

Two ``Datastream`` objects share one backend (DuckDB: one ``Backend`` object; MongoDB: one
mongomock client; InfluxDB + PostgreSQL: the same databases) and every rule picks the object
that acts. behaviour §4.1 "Shared backends": every rule must hold as if one process had done all
the work in some order. An append buffered in one object becomes part of that order when the
object flushes; until then the other object neither sees it nor is held back by it.

Buffers never flush by age or size during an example (``buffer_seconds`` is an hour), so the
model always knows what is buffered where. The harness flushes the other object before any
rule that could observe its buffered points; appends and ``downsample_streams`` may run while
the other object still holds points (their rows then land behind a bound the first object
set: they must be folded into its closed buckets, §4.1, §4.3).

CI runs 4-8 examples (``DEFAULT_EXAMPLES``) of ``DATASTREAM_STATEFUL_STEPS`` (30) steps per
backend; ``DATASTREAM_STATEFUL_EXAMPLES`` overrides the number for a soak run. A failure is
reported as generated; set ``DATASTREAM_STATEFUL_SHRINK=1`` to have hypothesis shrink it to a
minimal example (slow). ``DATASTREAM_STATEFUL_STATS=1`` (with ``-s``) prints what was exercised.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import math
import os
import shutil
import tempfile
import uuid
import warnings
from typing import Any

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import event as hypothesis_event
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import datastream
from datastream import exceptions
from tests import model as M
from tests.conftest import BACKENDS, Clock

# CI budget (about 90 s for all backends together): InfluxDB + PostgreSQL costs ~2.5 s per
# example, DuckDB ~1 s, mongomock ~0.3 s.
DEFAULT_EXAMPLES = {"duckdb": 8, "mongodb": 8, "influxdb": 4}
EXAMPLES = os.environ.get("DATASTREAM_STATEFUL_EXAMPLES")
STEPS = int(os.environ.get("DATASTREAM_STATEFUL_STEPS", "30"))
# Shrinking a failing run can take minutes per backend: off in CI, on for debugging.
SHRINK = os.environ.get("DATASTREAM_STATEFUL_SHRINK", "0") == "1"

UTC = datetime.timezone.utc
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)
T0 = datetime.datetime(2000, 1, 1, 12, tzinfo=UTC)
EVER = datetime.datetime.min
US = M.US


def to_us(moment: datetime.datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86400 + delta.seconds) * US + delta.microseconds


def to_dt(us: int) -> datetime.datetime:
    return EPOCH + datetime.timedelta(microseconds=us)


T0_US = to_us(T0)
NO_BUFFER_FLUSH = {"buffer_points": 1_000_000, "buffer_seconds": 3600.0}
STATISTICS: collections.Counter[str] = collections.Counter()


def event(name: str) -> None:
    """Count what the examples exercised (printed with ``-s`` when
    ``DATASTREAM_STATEFUL_STATS=1``)."""
    STATISTICS[name] += 1
    hypothesis_event(name)


# -- stores: where the two objects keep their data ------------------------------------------


class Store:
    """Fresh shared storage for one example; ``open()`` gives the two objects' backends."""

    def open(self) -> tuple[Any, Any]:
        raise NotImplementedError

    def cleanup(self) -> None:
        pass


class DuckDBStore(Store):
    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="ds-state-")
        self.path = os.path.join(self.directory, "store.duckdb")

    def open(self) -> tuple[Any, Any]:
        from datastream.backends import duckdb

        backend = duckdb.Backend(self.path)
        return backend, backend  # one Backend per file and process, shared by both objects

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class MongoStore(Store):
    def __init__(self) -> None:
        from tests.mongo_support import StorageFactory, mongo_targets

        self.factory = StorageFactory(mongo_targets()[-1])

    def open(self) -> tuple[Any, Any]:
        return self.factory(), self.factory()

    def cleanup(self) -> None:
        self.factory.cleanup()


class InfluxStore(Store):
    servers: Any = None

    def __init__(self) -> None:
        from tests.servers import influx_backend_factory

        self.stack = contextlib.ExitStack()
        self.factory = self.stack.enter_context(influx_backend_factory(self.servers))

    def open(self) -> tuple[Any, Any]:
        return self.factory(), self.factory()

    def cleanup(self) -> None:
        self.stack.close()


STORES = {"duckdb": DuckDBStore, "mongodb": MongoStore, "influxdb": InfluxStore}


# -- comparing results with the model ------------------------------------------------------


def _number_close(expected: Any, actual: Any) -> bool:
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(actual, bool) or not isinstance(actual, int | float):
        try:
            actual = float(actual)  # Decimal
        except (TypeError, ValueError):
            return False
    return math.isclose(float(expected), float(actual), rel_tol=1e-9, abs_tol=1e-9)


def same_raw_value(expected: Any, actual: Any, strict: bool) -> bool:
    """Appended values come back as appended (§5.1: ints stay ints, nominal exactly);
    derived values are floats computed by the library."""
    if strict:
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, int) and not isinstance(expected, bool) and not isinstance(
            actual, float):
        return type(expected) is type(actual) and expected == actual
    return _number_close(expected, actual)


def assert_raw(expected: list[tuple[int, Any]], actual: list[dict], strict: bool,
               what: str) -> None:
    got = [(to_us(p["t"]), p["v"]) for p in actual]
    assert [t for t, _ in got] == [t for t, _ in expected], (
        f"{what}: timestamps differ\nexpected {expected}\nactual   {got}")
    for (t, want), (_, have) in zip(expected, got):
        assert same_raw_value(want, have, strict), (
            f"{what}: value at {to_dt(t)}: expected {want!r}, got {have!r}")


def assert_bucket(expected: dict, actual: dict, what: str) -> None:
    assert set(actual) == {"t", "v"}, f"{what}: datapoint keys {set(actual)}"
    assert set(actual["t"]) == set(expected["t"]), f"{what}: time keys {set(actual['t'])}"
    assert set(actual["v"]) == set(expected["v"]), f"{what}: value keys {set(actual['v'])}"
    for key, want in expected["t"].items():
        have = actual["t"][key]
        if key in "maz":
            assert isinstance(have, datetime.datetime), f"{what}: time {key} = {have!r}"
            assert abs(to_us(have) - float(want)) <= 1, (
                f"{what}: time {key}: expected {to_dt(int(want))}, got {have}")
        else:
            assert _number_close(want, have), f"{what}: time {key}: expected {want}, got {have}"
    count = expected["v"].get("c")
    for key, want in expected["v"].items():
        have = actual["v"][key]
        if key == "c":
            ok = type(have) is int and have == want
        elif key in "or":
            ok = type(have) is type(want) and have == want
        elif key == "f":
            ok = have == want or (count == 0 and want is None and have == {})
        else:
            ok = _number_close(want, have)
        assert ok, f"{what}: value {key}: expected {want!r}, got {have!r}"


def bucket_start_of(point: dict, level: M.Level) -> int:
    """The bucket a downsampled datapoint belongs to (its first timestamp is inside it)."""
    return level.floor(to_us(point["t"]["a"]))


# -- the machine -----------------------------------------------------------------------------


NUMBERS = st.one_of(
    st.integers(-20, 40),
    st.integers(-80, 160).map(lambda q: q / 4),
    st.none(),
)
VALUES = {
    "a": NUMBERS,
    "b": NUMBERS,
    "c": st.one_of(st.integers(0, 300), st.integers(0, 300), st.none()),
    "n": st.sampled_from(["x", "y", "z", 1, 2]),
    "e": NUMBERS,
}
TAG_VALUES = st.fixed_dictionaries(
    {},
    optional={
        "group": st.sampled_from(["g1", "g2"]),
        "meta": st.fixed_dictionaries(
            {"k": st.integers(0, 3)}, optional={"note": st.sampled_from(["n", "m"])}),
        "labels": st.lists(st.sampled_from(["l1", "l2", "l3"]), max_size=2, unique=True),
    },
)
FORWARD = [1, 0, 1, 2, 3, 5, 9, 10, 11, 30, 59, 60, 61, 599, 600, 3599, 3601]
BACKWARD = [1, 2, 5, 10, 30, 61, 600, 3700]


class DatastreamMachine(RuleBasedStateMachine):
    store_class: type[Store] = DuckDBStore

    def __init__(self) -> None:
        super().__init__()
        self.store = self.store_class()
        self.clock = Clock()
        self.clock.now = T0
        self.ds: list[datastream.Datastream] = []
        self.model = M.Model()
        self.dirty = [False, False]
        self.buffered = [True, True]
        self.auto = False

    # -- set-up and helpers --------------------------------------------------------------
    @initialize(
        auto=st.sampled_from([False, False, False, True]),
        buffered=st.tuples(st.sampled_from([True, True, False]), st.sampled_from([True, False])),
        data=st.data(),
    )
    def setup(self, auto: bool, buffered: tuple[bool, bool], data: Any) -> None:
        self.auto = auto
        self.buffered = list(buffered)
        self.model = M.Model(auto_downsample=auto)
        self._open()
        # Most examples start with every base stream and some derived ones (created before
        # any data, so they are live); the ensure rules add, re-ensure and recreate later.
        for kind in M.BASE_KINDS:
            if data.draw(st.sampled_from([True, True, True, False]), label=f"create {kind}"):
                self.ensure_base(data, kind, {})
        for kind in M.DERIVED_KINDS:
            if data.draw(st.sampled_from([True, True, False]), label=f"create {kind}"):
                self.ensure_derived(data, kind, {})
        # Some history, so that buckets can close early in an example.
        for stream in self._streams(lambda s: not s.kind.derived):
            who = self._who(data)
            self._before(who, "append", data)
            for _ in range(data.draw(st.integers(0, 12), label=f"seed {stream.kind.name}")):
                self._append_one(data, who, stream, forward_only=True)
        self.steps = 0

    @invariant()
    def count_steps(self) -> None:
        self.steps += 1

    def _open(self) -> None:
        backends = self.store.open()
        self.ds = [
            datastream.Datastream(backend, clock=self.clock, auto_downsample=self.auto,
                                  buffered=self.buffered[who], **NO_BUFFER_FLUSH)
            for who, backend in enumerate(backends)
        ]
        self.dirty = [False, False]

    def teardown(self) -> None:
        event(f"example with {min(getattr(self, 'steps', 0) // 10 * 10, 30)}+ steps")
        try:
            for instance in self.ds:
                with contextlib.suppress(Exception):
                    instance.close()
        finally:
            self.store.cleanup()

    def _flush(self, who: int) -> None:
        self.ds[who].flush()
        self.model.commit(who)
        self.dirty[who] = False

    def _before(self, who: int, kind: str, data: Any) -> None:
        """Bring the other object's buffered points in when the rule could observe them."""
        other = 1 - who
        if self.model.pending[other] or self.dirty[other]:
            keep = (
                kind in ("append", "downsample")
                and not self.dirty[other]
                and data.draw(st.booleans(), label="other object keeps its buffer")
            )
            if not keep:
                self._flush(other)
        if self.auto and kind != "append" and self.model.pending[who]:
            # Auto-downsampling closes buckets at flush: flush first so that the model knows
            # which flush closed what.
            self._flush(who)

    def _after(self, who: int, kind: str) -> None:
        if kind != "append" and self.model.pending[who]:
            self.dirty[who] = True  # the call may have flushed some of them

    def _appended(self, who: int) -> None:
        if not self.buffered[who]:
            self.model.commit(who)  # buffered=False: durable before append returns

    def _streams(self, predicate=lambda s: True) -> list[M.MStream]:
        return [s for s in self.model.ordered() if predicate(s)]

    def _pick(self, data: Any, predicate=lambda s: True) -> M.MStream | None:
        candidates = self._streams(predicate)
        if not candidates:
            return None
        with_data = [s for s in candidates if s.raw or s.kind.derived]
        if with_data and data.draw(st.sampled_from([True, True, True, False]),
                                   label="prefer streams with data"):
            candidates = with_data
        return self._draw_streams(data, candidates, 1, 1)[0]

    @staticmethod
    def _draw_streams(data: Any, candidates: list[M.MStream], low: int, high: int,
                      label: str = "stream") -> list[M.MStream]:
        """Streams drawn by a short, reproducible label (kind and creation number), so that a
        failing example reads well."""
        names = {f"{s.kind.name}#{s.created}": s for s in candidates}
        chosen = data.draw(st.lists(st.sampled_from(list(names)), min_size=low,
                                    max_size=high, unique=True), label=label)
        return [names[name] for name in chosen]

    def _who(self, data: Any) -> int:
        return data.draw(st.integers(0, 1), label="who")

    def _named(self, kind: str) -> list[M.MStream]:
        return self.model.find({"name": kind})

    # -- timestamps ------------------------------------------------------------------------
    def _forward(self, data: Any, stream: M.MStream, latest: int | None) -> int:
        if latest is None:
            latest = T0_US + data.draw(st.sampled_from([0, 7, 65, 3600]), label="start") * US
        t = latest + data.draw(st.sampled_from(FORWARD), label="forward") * US
        if not stream.kind.whole_seconds and data.draw(st.booleans(), label="fraction"):
            t += data.draw(st.integers(0, US - 1), label="us")
        return t

    def _backward(self, data: Any, stream: M.MStream, reference: int) -> int:
        t = reference - data.draw(st.sampled_from(BACKWARD), label="backward") * US
        if not stream.kind.whole_seconds and data.draw(st.booleans(), label="fraction"):
            t += data.draw(st.integers(0, US - 1), label="us")
        return t

    def _timestamp(self, data: Any, stream: M.MStream, who: int) -> tuple[int, bool]:
        """(t µs, check_timestamp) for one append: forward, equal, late, or into a bound."""
        _, latest = self.model.view(who).extent(stream.stream_id)
        modes = ["forward", "forward", "align", "equal", "late", "frozen"]
        mode = data.draw(st.sampled_from(modes), label="mode")
        if mode == "equal" and latest is not None:
            return latest, True
        if mode == "align":
            # a time another stream already has, so that sum sources meet in one bucket
            view = self.model.view(who)
            times = sorted({t for s in self._streams(lambda s: s is not stream and not
                                                     s.kind.derived)
                            for t, _ in view.raw(s.stream_id)
                            if latest is None or t > latest})
            if times:
                return data.draw(st.sampled_from(times[:8]), label="aligned"), True
        if mode == "late" and latest is not None:
            check = data.draw(st.sampled_from([False, False, False, True]), label="check")
            return self._backward(data, stream, latest), check
        if mode == "frozen":
            bounds = [s.bounds[s.first_level.key] for s in
                      [stream, *self.model.transitive_dependents(stream.stream_id)]
                      if s.first_level is not None and s.bounds[s.first_level.key] is not None]
            if bounds:
                return self._backward(data, stream, max(bounds)), False
        return self._forward(data, stream, latest), True

    # -- streams -----------------------------------------------------------------------------
    @rule(data=st.data(), kind=st.sampled_from(M.BASE_KINDS), tags=TAG_VALUES)
    def ensure_base(self, data: Any, kind: str, tags: dict) -> None:
        who = self._who(data)
        self._before(who, "other", data)
        config = M.KINDS[kind]
        query = {"name": kind}
        found = self.model.find(query)
        stream_id = self.ds[who].ensure_stream(
            query, tags, list(config.downsamplers), config.highest,
            value_type=config.value_type)
        self._settle_ensure(stream_id, found, config, tags, [], False)
        self._after(who, "other")

    def _settle_ensure(self, stream_id: str, found: list[M.MStream], config: M.Kind,
                       tags: dict, sources: list[str], pending: bool) -> None:
        user_tags = M.deep_merge(tags, {"name": config.name})
        if found:
            assert stream_id == found[0].stream_id, "ensure_stream did not return the match"
            found[0].tags = user_tags
            return
        assert uuid.UUID(stream_id).version == 4 and str(uuid.UUID(stream_id)) == stream_id
        assert stream_id not in self.model.streams
        self.model.create(stream_id, config, user_tags, sources, pending)

    @rule(data=st.data(), kind=st.sampled_from(M.DERIVED_KINDS), tags=TAG_VALUES)
    def ensure_derived(self, data: Any, kind: str, tags: dict) -> None:
        config = M.KINDS[kind]
        sources = []
        for source_kind, _ in config.sources:
            named = self._named(source_kind)
            if len(named) != 1:
                return
            sources.append(named[0].stream_id)
        who = self._who(data)
        self._before(who, "other", data)
        derive_from: list[Any] = []
        for stream_id, (_, label) in zip(sources, config.sources):
            if label is not None:
                derive_from.append({"stream": stream_id, "name": label})
            elif data.draw(st.booleans(), label="dict form"):
                derive_from.append({"stream": stream_id})
            else:
                derive_from.append(stream_id)
        query = {"name": kind}
        found = self.model.find(query)
        view = self.model.view(who)
        arguments = dict(
            derive_from=derive_from, derive_op=config.op, value_type=config.value_type,
            derive_args=config.derive_args or None)
        if found and set(found[0].sources) != set(sources):
            with pytest.raises(exceptions.InconsistentStreamConfiguration):
                self.ds[who].ensure_stream(query, tags, list(config.downsamplers),
                                           config.highest, **arguments)
            self._after(who, "other")
            return
        pending = any(view.raw(source) for source in sources)
        stream_id = self.ds[who].ensure_stream(
            query, tags, list(config.downsamplers), config.highest, **arguments)
        self._settle_ensure(stream_id, found, config, tags, sources, pending)
        self._after(who, "other")

    @precondition(lambda self: self.model.streams)
    @rule(data=st.data())
    def ensure_inconsistent(self, data: Any) -> None:
        stream = self._pick(data, lambda s: not s.kind.derived and s.tags.get("name"))
        if stream is None:
            return
        who = self._who(data)
        self._before(who, "other", data)
        config = stream.kind
        change = data.draw(st.sampled_from(["granularity", "downsamplers", "type"]))
        highest, downsamplers = config.highest, list(config.downsamplers)
        value_type = config.value_type
        if change == "granularity":
            highest = "minutes" if highest != "minutes" else "hours"
        elif change == "downsamplers":
            downsamplers = ["count"] if config.downsamplers != ("count",) else ["max"]
            if value_type == "nominal":
                downsamplers = ["count"] if "most_often" in config.downsamplers else [
                    "most_often"]
        else:
            value_type = "nominal" if value_type == "numeric" else "numeric"
            downsamplers = ["count"]
        with pytest.raises(exceptions.InconsistentStreamConfiguration):
            self.ds[who].ensure_stream({"name": stream.tags["name"]}, {"group": "changed"},
                                       downsamplers, highest, value_type=value_type)
        self._after(who, "other")

    # -- appends -----------------------------------------------------------------------------
    def _value(self, data: Any, stream: M.MStream) -> Any:
        return data.draw(VALUES[stream.kind.name], label="value")

    def _expect_append(self, outcome: tuple[str, str], call) -> bool:
        """Run an append whose outcome the model predicted; True when it was stored."""
        outcome, why = outcome
        event(f"append expected {outcome}")
        if outcome == "raise":
            with pytest.raises(exceptions.InvalidTimestamp):
                call()
                pytest.fail(f"append not refused with InvalidTimestamp: {why}")
            return False
        if outcome == "either":
            try:
                call()
            except exceptions.InvalidTimestamp:
                return False
            return True
        call()
        return True

    @precondition(lambda self: self.model.streams)
    @rule(data=st.data())
    def append(self, data: Any) -> None:
        stream = self._pick(data, lambda s: not s.kind.derived)
        if stream is None:
            return
        who = self._who(data)
        self._before(who, "append", data)
        for _ in range(data.draw(st.integers(1, 6), label="appends")):
            self._append_one(data, who, stream)

    def _append_one(self, data: Any, who: int, stream: M.MStream,
                    forward_only: bool = False) -> None:
        value = self._value(data, stream)
        use_clock = not forward_only and data.draw(
            st.sampled_from([False, False, False, True]), label="clock")
        if use_clock:
            t, check, timestamp = to_us(self.clock.now), True, None
        elif forward_only:
            t, check = self._forward(data, stream, self.model.view(who).extent(
                stream.stream_id)[1]), True
            timestamp = to_dt(t)
        else:
            t, check = self._timestamp(data, stream, who)
            timestamp = to_dt(t)
        outcome = self.model.append_outcome(who, stream.stream_id, t, check)
        result: dict[str, Any] = {}

        def call() -> None:
            result.update(self.ds[who].append(stream.stream_id, value, timestamp,
                                              check_timestamp=check))

        if self._expect_append(outcome, call):
            assert result["stream_id"] == stream.stream_id
            assert result["granularity"].name == stream.kind.highest
            assert to_us(result["datapoint"]["t"]) == t
            assert same_raw_value(value, result["datapoint"]["v"], strict=True)
            self.model.note_reset_arrival(who, stream.stream_id, t, self.dirty[who])
            self.model.add_pending(who, stream.stream_id, t, value)
            self._appended(who)

    # Appends, downsampling and reads are where the behaviour reference is richest: give them
    # more weight (hypothesis picks rules uniformly).
    @precondition(lambda self: self.model.streams)
    @rule(data=st.data())
    def append_again(self, data: Any) -> None:
        self.append(data)

    @precondition(lambda self: self.model.streams)
    @rule(data=st.data())
    def append_once_more(self, data: Any) -> None:
        self.append(data)

    @precondition(lambda self: self.model.streams)
    @rule(data=st.data())
    def append_multiple(self, data: Any) -> None:
        bases = self._streams(lambda s: not s.kind.derived)
        if not bases:
            return
        who = self._who(data)
        self._before(who, "append", data)
        count = data.draw(st.integers(1, 5), label="items")
        view = self.model.view(who)
        latest = {s.stream_id: view.extent(s.stream_id)[1] for s in bases}
        items, planned, outcomes = [], [], []
        for _ in range(count):
            stream = self._draw_streams(data, bases, 1, 1)[0]
            if data.draw(st.booleans(), label="equal") and latest[stream.stream_id] is not None:
                t = latest[stream.stream_id]
            else:
                t = self._forward(data, stream, latest[stream.stream_id])
            outcomes.append(self.model.append_outcome(who, stream.stream_id, t, True,
                                                      latest[stream.stream_id]))
            latest[stream.stream_id] = t
            value = self._value(data, stream)
            items.append({"stream_id": stream.stream_id, "value": value, "timestamp": to_dt(t)})
            planned.append((stream.stream_id, t, value))
        broken = data.draw(st.sampled_from([None, None, None, "bool", "derived", "unknown",
                                            "frozen"]), label="broken item")
        expected_error: type[Exception] | tuple = ()
        if broken == "bool" and any(s.kind.value_type == "numeric" for s in bases):
            stream = next(s for s in bases if s.kind.value_type == "numeric")
            items.append({"stream_id": stream.stream_id, "value": True,
                          "timestamp": to_dt(self._forward(data, stream,
                                                           latest[stream.stream_id]))})
            expected_error = TypeError
        elif broken == "derived" and self._streams(lambda s: s.kind.derived):
            target = self._streams(lambda s: s.kind.derived)[0]
            items.append({"stream_id": target.stream_id, "value": 1})
            expected_error = exceptions.AppendToDerivedStreamNotAllowed
        elif broken == "unknown":
            items.append({"stream_id": str(uuid.uuid4()), "value": 1})
            expected_error = exceptions.StreamNotFound
        elif broken == "frozen":
            frozen = [s for s in bases if s.first_level and s.bounds[s.first_level.key]]
            if frozen:
                stream = frozen[0]
                items.append({"stream_id": stream.stream_id, "value": None,
                              "timestamp": to_dt(stream.bounds[stream.first_level.key] - US)})
                expected_error = exceptions.InvalidTimestamp
        if any(o[0] == "raise" for o in outcomes) and not expected_error:
            expected_error = exceptions.InvalidTimestamp
        if expected_error:
            with pytest.raises(expected_error):
                self.ds[who].append_multiple(items)
            return  # atomic: nothing of the call is stored (later reads check it)
        try:
            self.ds[who].append_multiple(items)
        except exceptions.InvalidTimestamp:
            assert any(o[0] == "either" for o in outcomes), "append_multiple refused a valid call"
            return
        for stream_id, t, value in planned:
            self.model.note_reset_arrival(who, stream_id, t, self.dirty[who])
            self.model.add_pending(who, stream_id, t, value)
        self._appended(who)

    @precondition(lambda self: self.model.streams)
    @rule(data=st.data())
    def append_arrays(self, data: Any) -> None:
        stream = self._pick(data, lambda s: not s.kind.derived and s.kind.value_type == "numeric")
        if stream is None:
            return
        who = self._who(data)
        self._before(who, "append", data)
        size = data.draw(st.integers(1, 6), label="size")
        view = self.model.view(who)
        _, latest = view.extent(stream.stream_id)
        late = latest is not None and data.draw(st.booleans(), label="late start")
        first = self._backward(data, stream, latest) if late else self._forward(
            data, stream, latest)
        times = [first]
        for _ in range(size - 1):
            times.append(times[-1] + data.draw(st.sampled_from([0, 1, 2, 10, 61])) * US)
        as_float = data.draw(st.booleans(), label="float values")
        if as_float:
            numbers = [data.draw(st.one_of(st.integers(-80, 160).map(lambda q: q / 4),
                                           st.just(math.nan)), label="float")
                       for _ in times]
            values = np.array(numbers, dtype=np.float64)
            expected = [None if math.isnan(x) else x for x in numbers]
        else:
            numbers = [data.draw(st.integers(-20, 300), label="int") for _ in times]
            values = np.array(numbers, dtype=np.int64)
            expected = list(numbers)
        form = data.draw(st.sampled_from(["datetime64", "s", "ms", "us", "ns"]), label="unit")
        stamps = np.array(times, dtype=np.int64)
        if form == "datetime64":
            arguments: dict[str, Any] = {}
            timestamps = stamps.astype("datetime64[us]")
        elif form == "s" and all(t % US == 0 for t in times):
            arguments, timestamps = {"unit": "s"}, stamps // US
        elif form == "ms" and all(t % 1000 == 0 for t in times):
            arguments, timestamps = {"unit": "ms"}, stamps // 1000
        elif form == "ns":
            arguments, timestamps = {"unit": "ns"}, stamps * 1000
        else:
            arguments, timestamps = {"unit": "us"}, stamps
        check = not late
        outcomes, running = [], None
        for t in times:
            outcomes.append(self.model.append_outcome(who, stream.stream_id, t, check, running))
            running = t if running is None else max(running, t)

        def call() -> None:
            self.ds[who].append_arrays(stream.stream_id, timestamps, values,
                                       check_timestamp=check, **arguments)

        outcome = next((o for o in outcomes if o[0] == "raise"), None) or next(
            (o for o in outcomes if o[0] == "either"), ("ok", ""))
        if self._expect_append(outcome, call):
            for t, value in zip(times, expected):
                self.model.note_reset_arrival(who, stream.stream_id, t, self.dirty[who])
                self.model.add_pending(who, stream.stream_id, t, value)
            self._appended(who)

    @precondition(lambda self: self.model.streams)
    @rule(data=st.data())
    def append_refused(self, data: Any) -> None:
        """Appends the behaviour reference refuses change nothing."""
        who = self._who(data)
        self._before(who, "append", data)
        derived = self._pick(data, lambda s: s.kind.derived)
        if derived is not None and data.draw(st.booleans()):
            with pytest.raises(exceptions.AppendToDerivedStreamNotAllowed):
                self.ds[who].append(derived.stream_id, 1.0, self.clock.now)
        else:
            with pytest.raises(exceptions.StreamNotFound):
                self.ds[who].append(str(uuid.uuid4()), 1.0, self.clock.now)

    @rule(data=st.data())
    def flush(self, data: Any) -> None:
        who = self._who(data)
        self._before(who, "flush", data)
        self._flush(who)

    @rule(seconds=st.sampled_from([1, 10, 61, 600, 3600, 7200]), catch_up=st.booleans())
    def advance_clock(self, seconds: int, catch_up: bool) -> None:
        if catch_up:  # to just after the newest datapoint anywhere
            latest = [p[0] for s in self.model.streams.values() for p in s.raw]
            latest += [t for items in self.model.pending.values() for _, t, _ in items]
            if latest and to_dt(max(latest)) > self.clock.now:
                self.clock.now = to_dt(max(latest))
        self.clock.advance(seconds=seconds)

    # -- maintenance -------------------------------------------------------------------------
    def _query(self, data: Any, allow_ids: bool, rare_all: bool = False) -> dict | None:
        streams = self._streams()
        forms = ["all", "all", "names", "group"] + (["ids", "id"] if allow_ids else [])
        if rare_all:  # deleting everything ends the interesting part of an example
            forms = ["names", "names", "group", "ids", "ids", "id"] * 3 + ["all"]
        form = data.draw(st.sampled_from(forms), label="query form")
        if form == "all" or not streams:
            return None
        if form == "names":
            names = data.draw(st.lists(st.sampled_from(list(M.KINDS)), min_size=1, max_size=3,
                                       unique=True), label="names")
            return {"name": {"$in": names}}
        if form == "group":
            return {"group": data.draw(st.sampled_from(["g1", "g2"]))}
        chosen = self._draw_streams(data, streams, 1, 3, label="ids")
        if form == "id":
            return {"stream_id": chosen[0].stream_id}
        return {"stream_id": {"$in": [s.stream_id for s in chosen]}}

    @rule(data=st.data())
    def downsample(self, data: Any) -> None:
        who = self._who(data)
        self._before(who, "downsample", data)
        query = self._query(data, allow_ids=True)
        choice = data.draw(st.sampled_from(["latest", "clock", "far", "early"]), label="until")
        until_us: int | None = None
        if choice == "clock":
            until = None
            until_us = to_us(self.clock.now)
        else:
            view = self.model.view(who)
            latest = [view.extent(s.stream_id)[1] for s in self._streams()]
            latest = [t for t in latest if t is not None] or [T0_US]
            reference = max(latest) if data.draw(st.booleans(), label="newest") else (
                data.draw(st.sampled_from(latest), label="reference"))
            offset = {"latest": data.draw(st.sampled_from([0, 1, 10, 600, 3600])) * US,
                      "far": 30 * 86400 * US,
                      "early": -data.draw(st.sampled_from([1, 30, 3600])) * US}[choice]
            until_us = reference + offset
            until = to_dt(until_us)
        want_points = data.draw(st.booleans(), label="return_datapoints")
        matched = self.model.find_for_maintenance(query)
        pending_elsewhere = {sid for sid, _, _ in self.model.pending[who]} - {
            s.stream_id for s in matched}
        self.model.commit(who)
        view = self.model.view(who)
        before = {s.stream_id: dict(s.bounds) for s in matched}
        for stream in matched:
            self.model.close(stream, view, until_us)
        changed = [s for s in matched if s.bounds != before[s.stream_id]]
        event(f"downsample closed buckets of {min(len(changed), 3)} streams")
        other = self.model.pending[1 - who]
        if other:
            event("downsample while the other object buffers")
            if any(t < (self.model.streams[sid].bounds.get(
                    getattr(self.model.streams[sid].first_level, "key", ""), None) or -1)
                   for sid, t, _ in other if sid in self.model.streams):
                event("buffered rows behind a new bound (fold)")
        returned = self.ds[who].downsample_streams(query, until=until,
                                                   return_datapoints=want_points)
        if pending_elsewhere:
            self.dirty[who] = True
        if not want_points:
            assert returned == []
            return
        self._check_new_points(returned, matched, before, view)

    @rule(data=st.data())
    def downsample_again(self, data: Any) -> None:
        self.downsample(data)

    def _check_new_points(self, returned: list, matched: list[M.MStream],
                          before: dict[str, dict], view: M.View) -> None:
        """return_datapoints: the newly closed buckets, by stream, level (finest first), time.
        Whether empty buckets are listed is not fixed by the behaviour reference: both forms
        are accepted."""
        order = {s.stream_id: index for index, s in enumerate(matched)}
        keys = []
        for item in returned:
            assert set(item) == {"stream_id", "granularity", "datapoint"}, item
            assert item["stream_id"] in order, "a stream that was not asked for"
            level = M.LEVEL_BY_NAME[item["granularity"].name]
            keys.append((order[item["stream_id"]], M.LEVELS.index(level),
                         bucket_start_of(item["datapoint"], level)))
        assert keys == sorted(keys), "return_datapoints out of order"
        for stream in matched:
            if not view.exact(stream.stream_id):
                continue
            for level in M.coarser(stream.kind.highest):
                old, new = before[stream.stream_id][level.key], stream.bounds[level.key]
                got = [item["datapoint"] for item in returned
                       if item["stream_id"] == stream.stream_id
                       and item["granularity"].name == level.name]
                buckets = [(start, point) for start, point in view.level(stream.stream_id, level)
                           if old is None or start >= old]
                if new is None:
                    buckets = []
                full = [point for _, point in buckets]
                raw_times = {level.floor(t) for t, _ in view.raw(stream.stream_id)}
                non_empty = [point for start, point in buckets if start in raw_times]
                what = f"return_datapoints {stream.kind.name} {level.name}"
                assert len(got) in (len(full), len(non_empty)), (
                    f"{what}: {len(got)} points, expected {len(full)} or {len(non_empty)}")
                expected = full if len(got) == len(full) else non_empty
                for want, have in zip(expected, got):
                    assert_bucket(want, have, what)

    @precondition(lambda self: self.model.streams)
    @rule(data=st.data())
    def delete(self, data: Any) -> None:
        who = self._who(data)
        self._before(who, "other", data)
        query = self._query(data, allow_ids=True, rare_all=True)
        matched = self.model.find_for_maintenance(query)
        ids = {s.stream_id for s in matched}
        blocked = [s for s in matched
                   if any(d.stream_id not in ids for d in self.model.dependents(s.stream_id))]
        if blocked:
            with pytest.raises(exceptions.OutstandingDependenciesError):
                self.ds[who].delete_streams(query)
            self._after(who, "other")
            return
        self.ds[who].delete_streams(query)
        self.model.delete(matched)
        self._after(who, "other")
        for stream in matched:
            for reader in (who, 1 - who):  # the other object must not answer from a cache
                with pytest.raises(exceptions.StreamNotFound):
                    self.ds[reader].get_tags(stream.stream_id)

    @precondition(lambda self: any(s.kind.derived for s in self.model.streams.values()))
    @rule(data=st.data())
    def backprocess(self, data: Any) -> None:
        who = self._who(data)
        self._before(who, "other", data)
        query = self._query(data, allow_ids=True)
        matched = [s for s in self.model.find_for_maintenance(query) if s.kind.derived]
        self.ds[who].backprocess_streams(query)
        self._after(who, "other")
        replayed = {s.stream_id for s in matched}
        for stream in matched:
            stream.pending_backprocess = False
            stream.arrival_exact = True
        for stream in matched:
            for dependent in self.model.transitive_dependents(stream.stream_id):
                if dependent.stream_id not in replayed and dependent.kind.op == (
                        "counter_derivative"):
                    dependent.arrival_exact = False  # its reset input was rewritten
        # A replay clears the derived data first (§7); whether the levels are then rebuilt up
        # to the old bounds or start again from nothing is not fixed: adopt what was chosen,
        # but only among those two (or, with auto_downsample, what a flush could close).
        view = self.model.view(who)
        for stream in matched:
            stored = self.ds[who].get_tags(stream.stream_id)["downsampled_until"]
            got = {M.LEVEL_BY_NAME[name].key: None if bound is None else to_us(bound)
                   for name, bound in stored.items()}
            allowed = [dict(stream.bounds), {key: None for key in stream.bounds}]
            if self.auto:
                allowed.append(self.model.closable(stream, view, None))
            if view.exact(stream.stream_id):
                assert got in allowed, (
                    f"backprocess {stream.kind.name}: bounds {got}, expected one of {allowed}")
            stream.bounds = got

    # -- reading -----------------------------------------------------------------------------
    def _range(self, data: Any, instants: list[int]) -> dict[str, Any]:
        instants = sorted(set(instants)) or [T0_US]
        arguments: dict[str, Any] = {}
        low = data.draw(st.sampled_from(["ever", "start", "start_exclusive"]), label="low")
        if low == "ever":
            arguments["start"] = EVER
        else:
            arguments[low] = to_dt(data.draw(st.sampled_from(instants), label="low at"))
        high = data.draw(st.sampled_from([None, "end", "end_exclusive"]), label="high")
        if high is not None:
            arguments[high] = to_dt(data.draw(st.sampled_from(instants), label="high at"))
        arguments["reverse"] = data.draw(st.booleans(), label="reverse")
        return arguments

    @precondition(lambda self: self.model.streams)
    @rule(data=st.data())
    def read_raw(self, data: Any) -> None:
        stream = self._pick(data)
        who = self._who(data)
        self._before(who, "other", data)
        view = self.model.view(who)
        raw = view.raw(stream.stream_id)
        order = view.order(stream.stream_id)
        instants = [t for t, _ in raw][:6] + [t for t, _ in raw][-3:] + [T0_US]
        arguments = self._range(data, instants)
        granularity = stream.kind.highest
        if granularity != "seconds" and data.draw(st.booleans(), label="finer"):
            granularity = "seconds"  # finer than the highest: raw points
        actual = list(self.ds[who].get_data(stream.stream_id, granularity, **arguments))
        self._after(who, "other")
        event(f"raw read {'derived' if stream.kind.derived else 'base'}"
              f"{'' if view.exact(stream.stream_id) else ' (inexact)'}")
        if not view.exact(stream.stream_id):
            return
        lo, lo_open = self._low(arguments)
        hi, hi_open = self._high(arguments)
        rows = [(t, v, key) for (t, v), key in zip(raw, order)
                if (lo is None or t > lo or (t == lo and not lo_open))
                and (hi is None or t < hi or (t == hi and not hi_open))]
        if arguments["reverse"]:
            rows.sort(key=lambda row: (-row[0], row[2]))
        expected = [(t, v) for t, v, _ in rows]
        assert_raw(expected, actual, strict=not stream.kind.derived,
                   what=f"raw {stream.kind.name} {arguments}")

    @staticmethod
    def _low(arguments: dict) -> tuple[int | None, bool]:
        if "start" in arguments:
            start = arguments["start"]
            return (None, False) if start == EVER else (to_us(start), False)
        return to_us(arguments["start_exclusive"]), True

    @staticmethod
    def _high(arguments: dict) -> tuple[int | None, bool]:
        if "end" in arguments:
            return to_us(arguments["end"]), False
        if "end_exclusive" in arguments:
            return to_us(arguments["end_exclusive"]), True
        return None, False

    @precondition(lambda self: self.model.streams)
    @rule(data=st.data())
    def read_level(self, data: Any) -> None:
        stream = self._pick(data, lambda s: bool(s.kind.downsamplers))
        if stream is None:
            return
        who = self._who(data)
        self._before(who, "other", data)
        levels = M.coarser(stream.kind.highest)
        with_bounds = [lv for lv in levels if stream.bounds[lv.key] is not None]
        level = data.draw(st.sampled_from(with_bounds or levels), label="level")
        view = self.model.view(who)
        buckets = view.level(stream.stream_id, level)
        instants = [start for start, _ in buckets][:4] + [start for start, _ in buckets][-2:]
        instants += [start + level.width // 2 for start, _ in buckets][:2] + [T0_US]
        arguments = self._range(data, instants)
        actual = list(self.ds[who].get_data(stream.stream_id, level.name, **arguments))
        self._after(who, "other")
        event(f"level read {'derived' if stream.kind.derived else 'base'}"
              f"{' with buckets' if buckets else ''}"
              f"{'' if view.exact(stream.stream_id) else ' (inexact)'}")
        if not view.exact(stream.stream_id):
            return
        lo, lo_open = self._low(arguments)
        hi, hi_open = self._high(arguments)
        first = None if lo is None else level.floor(lo) + (level.width if lo_open else 0)
        last = None if hi is None else level.floor(hi - 1 if hi_open else hi)
        expected = [(start, point) for start, point in buckets
                    if (first is None or start >= first) and (last is None or start <= last)]
        if arguments["reverse"]:
            expected.reverse()
        what = f"level {stream.kind.name} {level.name} {arguments}"
        assert len(actual) == len(expected), (
            f"{what}: {len(actual)} buckets, expected {len(expected)} "
            f"(bounds {stream.bounds})")
        for (start, want), have in zip(expected, actual):
            assert_bucket(want, have, self._bucket_context(view, stream, level, start, what))

    @precondition(lambda self: self.model.streams)
    @rule(data=st.data())
    def read_level_again(self, data: Any) -> None:
        self.read_level(data)

    @precondition(lambda self: self.model.streams)
    @rule(data=st.data())
    def read_tags(self, data: Any) -> None:
        stream = self._pick(data)
        who = self._who(data)
        self._before(who, "other", data)
        actual = self.ds[who].get_tags(stream.stream_id)
        self._after(who, "other")
        self._check_tags(stream, actual, self.model.view(who))

    def _check_tags(self, stream: M.MStream, actual: dict, view: M.View) -> None:
        name = stream.kind.name
        reserved = {"stream_id", "value_downsamplers", "time_downsamplers",
                    "highest_granularity", "pending_backprocess", "earliest_datapoint",
                    "latest_datapoint", "downsampled_until", "value_type",
                    "value_type_options"}
        if stream.kind.derived:
            reserved.add("derived_from")
        contributes = self.model.contributes_to(stream.stream_id)
        if contributes:
            reserved.add("contributes_to")
        assert set(actual) == reserved | set(stream.tags), (
            f"get_tags {name}: keys {sorted(actual)}")
        assert {k: v for k, v in actual.items() if k in stream.tags} == stream.tags
        assert actual["stream_id"] == stream.stream_id
        assert set(actual["value_downsamplers"]) == M.stored_downsamplers(
            stream.kind.downsamplers)
        assert set(actual["time_downsamplers"]) == set(M.TIME_KEYS)
        assert actual["highest_granularity"].name == stream.kind.highest
        assert actual["pending_backprocess"] is stream.pending_backprocess, name
        assert actual["value_type"] == stream.kind.value_type
        assert actual["value_type_options"] == (
            {"high_accuracy": False} if stream.kind.value_type == "numeric" else {})
        if stream.kind.derived:
            assert actual["derived_from"] == {"stream_ids": stream.sources,
                                              "op": stream.kind.op,
                                              "args": stream.kind.derive_args}
        if contributes:
            assert actual["contributes_to"] == contributes, name
        if not view.exact(stream.stream_id):
            return
        earliest, latest = view.extent(stream.stream_id)
        got = actual["earliest_datapoint"], actual["latest_datapoint"]
        assert got == (None if earliest is None else to_dt(earliest),
                       None if latest is None else to_dt(latest)), f"extent of {name}"
        bounds = actual["downsampled_until"]
        assert set(bounds) == {level.name for level in M.coarser(stream.kind.highest)}
        for level in M.coarser(stream.kind.highest):
            want, have = stream.bounds[level.key], bounds[level.name]
            if want is None and have is not None and earliest is not None:
                # a bound that closes no bucket is as good as none
                assert to_us(have) <= level.floor(earliest), f"{name} {level.name}: {have}"
            else:
                assert have == (None if want is None else to_dt(want)), (
                    f"downsampled_until of {name} at {level.name}: expected "
                    f"{None if want is None else to_dt(want)}, got {have}")

    @rule(data=st.data())
    def find(self, data: Any) -> None:
        who = self._who(data)
        self._before(who, "other", data)
        form = data.draw(st.sampled_from(
            ["all", "name", "group", "in", "nested", "label", "gte", "missing"]))
        query: dict | None = {
            "all": None,
            "name": {"name": data.draw(st.sampled_from(list(M.KINDS)))},
            "group": {"group": data.draw(st.sampled_from(["g1", "g2"]))},
            "in": {"group": {"$in": ["g2", "g3"]}},
            "nested": {"meta": {"k": data.draw(st.integers(0, 3))}},
            "label": {"labels": data.draw(st.sampled_from(["l1", "l2"]))},
            "gte": {"meta": {"k": {"$gte": data.draw(st.integers(0, 3))}}},
            "missing": {"labels": {"$exists": False}},
        }[form]
        found = list(self.ds[who].find_streams(query))
        self._after(who, "other")
        expected = self.model.find(query)
        assert [s["stream_id"] for s in found] == [s.stream_id for s in expected], (
            f"find_streams({query})")
        view = self.model.view(who)
        for stream, actual in zip(expected, found):
            self._check_tags(stream, actual, view)

    # -- tags --------------------------------------------------------------------------------
    @precondition(lambda self: self.model.streams)
    @rule(data=st.data(), update=TAG_VALUES)
    def update_tags(self, data: Any, update: dict) -> None:
        stream = self._pick(data)
        who = self._who(data)
        self._before(who, "other", data)
        self.ds[who].update_tags(stream.stream_id, update)
        stream.tags = M.deep_merge(stream.tags, update)
        self._after(who, "other")

    @precondition(lambda self: self.model.streams)
    @rule(data=st.data())
    def remove_tag(self, data: Any) -> None:
        stream = self._pick(data)
        who = self._who(data)
        self._before(who, "other", data)
        paths = data.draw(st.sampled_from([
            {"group": None}, {"meta": {"k": None}}, {"meta": None}, {"labels": None},
            {"missing": {"deeper": None}}, {"name": None},
        ]), label="paths")
        self.ds[who].remove_tag(stream.stream_id, paths)
        stream.tags = M.remove_paths(stream.tags, paths)
        self._after(who, "other")

    @precondition(lambda self: self.model.streams)
    @rule(data=st.data())
    def clear_tags(self, data: Any) -> None:
        stream = self._pick(data)
        who = self._who(data)
        self._before(who, "other", data)
        self.ds[who].clear_tags(stream.stream_id)
        stream.tags = {}
        self._after(who, "other")

    def _bucket_context(self, view: M.View, stream: M.MStream, level: M.Level, start: int,
                        what: str) -> str:
        """A failure message naming the bucket and the raw points the model put in it."""
        points = [(str(to_dt(t).time()), v) for t, v in view.raw(stream.stream_id)
                  if level.floor(t) == start]
        return f"{what} bucket {to_dt(start)} (raw points in it: {points})"

    @precondition(lambda self: self.model.streams)
    @rule(data=st.data())
    def audit(self, data: Any) -> None:
        """Everything one object can see: every stream's tags, raw points and closed levels."""
        who = self._who(data)
        self._before(who, "other", data)
        view = self.model.view(who)
        for stream in self._streams():
            self._check_tags(stream, self.ds[who].get_tags(stream.stream_id), view)
            if not view.exact(stream.stream_id):
                continue
            actual = list(self.ds[who].get_data(stream.stream_id, stream.kind.highest,
                                                start=EVER))
            assert_raw(view.raw(stream.stream_id), actual, strict=not stream.kind.derived,
                       what=f"audit raw {stream.kind.name}")
            for level in M.coarser(stream.kind.highest):
                if stream.bounds[level.key] is None:
                    continue
                expected = view.level(stream.stream_id, level)
                actual = list(self.ds[who].get_data(stream.stream_id, level.name, start=EVER))
                what = f"audit {stream.kind.name} {level.name}"
                assert len(actual) == len(expected), (
                    f"{what}: {len(actual)} buckets, expected {len(expected)}")
                for (start, want), have in zip(expected, actual):
                    assert_bucket(want, have, self._bucket_context(view, stream, level, start,
                                                                   what))
                event("audit compared a level")
        self._after(who, "other")

    # -- lifecycle and invariants ---------------------------------------------------------------
    @rule(data=st.data())
    def reopen(self, data: Any) -> None:
        """Close both objects (close flushes) and open two new ones on the stored data."""
        first = data.draw(st.integers(0, 1), label="closed first")
        for who in (first, 1 - first):
            # Both objects may share one storage object: closing the first must leave the
            # second working (its buffered points are stored when it closes in turn).
            self.ds[who].close()
            self.model.commit(who)
        self._open()

    @rule(data=st.data())
    def verify(self, data: Any) -> None:
        """§10: after a flush, stored levels and derived streams agree with their raw data."""
        who = self._who(data)
        self._flush(1 - who)
        self._flush(who)
        if not hasattr(self.ds[who], "verify"):
            return  # test_verify_exists reports the missing method
        result = self.ds[who].verify()
        assert not result, f"verify() found mismatches: {list(result)[:5]}"
        assert list(result) == []


def _machine_for(backend: str, request) -> type[DatastreamMachine]:
    store = STORES[backend]
    if backend == "influxdb":
        store = type("SessionInfluxStore", (InfluxStore,),
                     {"servers": request.getfixturevalue("influx_servers")})
    return type(f"DatastreamMachine_{backend}", (DatastreamMachine,), {"store_class": store})


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_machine(backend: str, request) -> None:
    machine = _machine_for(backend, request)
    with warnings.catch_warnings():
        # Zero time steps in derivatives warn by design (§7); nothing else is expected.
        warnings.simplefilter("ignore", exceptions.InvalidValueWarning)
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=int(EXAMPLES) if EXAMPLES else DEFAULT_EXAMPLES[backend],
                stateful_step_count=STEPS,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.explicit, Phase.reuse, Phase.generate]
                + ([Phase.shrink] if SHRINK else []),
                report_multiple_bugs=True,
            ),
        )
    _print_statistics(backend)


def _print_statistics(backend: str) -> None:
    if os.environ.get("DATASTREAM_STATEFUL_STATS") == "1":
        print(f"\nstate machine on {backend}:")
        for name, count in sorted(STATISTICS.items()):
            print(f"  {count:6d}  {name}")
        STATISTICS.clear()


def test_verify_exists() -> None:
    """§10: the state machine calls ``verify()`` after flushes; it must exist."""
    assert callable(getattr(datastream.Datastream, "verify", None))

"""Verify a derived stream's stored points against a replay of its sources (behaviour §7).

The replay reads what the sources hold now (raw points, or bucket means recomputed by SQL for a
source taken at a coarser level, empty buckets included as nulls), merges them in the order of
behaviour §7 and runs the plain operators of ``replay``, window by window with the state carried
over.

What can be known, and so what is compared:

* Only points up to the time every input is final: a raw source's latest datapoint, a level
  source's downsampled bound, a derived source's own final time. Later inputs may still be
  waiting for another source (a sum bucket not yet complete), so later points are not compared;
  for a sum, up to the end of the bucket holding that time, which the engine processes whole.
* A stream created with ``derive_backprocess=False`` never saw the history before its creation,
  and its creation time is not recorded. Its first stored point marks where its processing
  demonstrably ran, and every operator's output, a null one included, fixes the state it
  leaves (the previous input point, or the bucket just emitted): points after it are compared,
  earlier ones are not.
* Streams still ``pending_backprocess`` hold nothing to compare and are skipped.
"""

from __future__ import annotations

import dataclasses
import decimal
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import values
from ..engine.operator_specs import spec
from ..granularity import GranularityLevel, resolve
from ..storage.base import Storage, StreamRecord
from . import replay
from . import windows as window_sizes
from .agreement import agrees, close, exact, strict
from .result import ABSENT, Verification
from .sql_oracle import WindowOracle

Lookup = Callable[[str], StreamRecord]


@dataclasses.dataclass
class _Input:
    """One entry of ``derived_from``: a source stream taken at one granularity."""

    record: StreamRecord
    level: GranularityLevel
    as_reset: bool

    @property
    def at_highest(self) -> bool:
        return self.level == resolve(self.record.meta["highest_granularity"])

    def first(self) -> int | None:
        earliest = self.record.meta.get("earliest_datapoint")
        if earliest is None:
            return None
        return earliest if self.at_highest else self.level.floor_us(earliest)

    def floor(self) -> int | None:
        """Time before which this input cannot be rebuilt any more (retention deleted the
        raw points, or the level buckets, it comes from); None when nothing was deleted."""
        meta = self.record.meta
        raw_floor = meta.get("raw_floor")
        if self.at_highest:
            return raw_floor
        floors = [(meta.get("level_floors") or {}).get(self.level.key)]
        if raw_floor is not None:
            floors.append(self.level.ceil_us(raw_floor))
        kept = [floor for floor in floors if floor is not None]
        return max(kept) if kept else None

    def first_from(self, storage: Storage, time_us: int) -> int | None:
        """Time of this input's first point at or after ``time_us``."""
        if self.at_highest:
            return storage.first_raw_time(self.record.stream_id, time_us)
        return self.level.ceil_us(time_us)

    def points(self, storage: Storage, sql: WindowOracle, a: int, b: int) -> replay.Input:
        """(t, v, scale) of this input in ``[a, b)``, v float with NaN for nulls."""
        stream_id = self.record.stream_id
        if self.at_highest:
            rows = storage.read_raw(stream_id, a, b)
            meta = self.record.meta
            decoded = values.decode_values(rows, meta["value_type"], meta["value_type_options"])
            v = np.empty(len(decoded), dtype=object)
            v[:] = [_as_reset(x) if self.as_reset else _as_number(x) for x in decoded]
            exact = np.zeros(len(v))  # stored values: no rounding to allow for
            return rows.column("t").to_numpy().astype(np.int64), v, exact
        width = self.level.width_us
        bound = (self.record.meta.get("downsampled_until") or {}).get(self.level.key)
        first = self.first()
        if bound is None or first is None:
            return _nothing()
        lo, hi = max(a, first), min(b, bound)
        if lo >= hi:
            return _nothing()
        rows = storage.read_raw(stream_id, lo, hi)
        sql.load(rows)
        numeric = self.record.meta["value_type"] == "numeric"
        stats = sql.float_values([width]) if numeric else {}
        starts = np.arange(lo, hi, width, dtype=np.int64)
        buckets = [stats.get((width, int(start))) for start in starts]
        means = np.array([_mean(bucket) for bucket in buckets], dtype=np.float64)
        return starts, means, np.array([_magnitude(bucket) for bucket in buckets])


def _nothing() -> replay.Input:
    return np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.float64)


def _magnitude(stats: Any) -> float:
    """The rounding a bucket mean may carry is relative to the bucket's values, not to it."""
    if stats is None:
        return 0.0
    return max(abs(stats.low or 0.0), abs(stats.high or 0.0))


def _as_number(value: Any) -> Any:
    """The number a raw value stands for (ints kept exact), None for anything else."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, decimal.Decimal)):
        return None
    return value if isinstance(value, (int, decimal.Decimal)) else float(value)


def _as_reset(value: Any) -> int | None:
    return None if value is None else (1 if value else 0)


def _mean(stats: Any) -> float:
    if stats is None or not stats.c or stats.s is None:
        return float("nan")
    return stats.s / stats.c


def _inputs(record: StreamRecord, lookup: Lookup) -> list[_Input]:
    config = record.meta["derived_from"]
    sources = config.get("sources") or [
        {"stream": stream_id, "granularity": None} for stream_id in config["stream_ids"]
    ]
    out = []
    operator = spec(config["op"])
    for position, source in enumerate(sources):
        source_record = lookup(source["stream"])
        granularity = source.get("granularity") or source_record.meta["highest_granularity"]
        out.append(_Input(source_record, resolve(granularity), operator.is_reset(position)))
    return out


def final_until(record: StreamRecord, lookup: Lookup, visiting: frozenset = frozenset()):
    """The time (µs, inclusive) up to which every input of a derived stream is final, or None
    when some input holds nothing final yet."""
    if record.stream_id in visiting:
        return None
    marks = []
    for source in _inputs(record, lookup):
        meta = source.record.meta
        if not source.at_highest:
            bound = (meta.get("downsampled_until") or {}).get(source.level.key)
            marks.append(None if bound is None else bound - 1)
        elif meta.get("derived_from"):
            marks.append(
                None if meta.get("pending_backprocess")
                else final_until(source.record, lookup, visiting | {record.stream_id})
            )
        else:
            marks.append(meta.get("latest_datapoint"))
    return None if not marks or any(mark is None for mark in marks) else min(marks)


def check_derived(
    storage: Storage,
    record: StreamRecord,
    lookup: Lookup,
    sql: WindowOracle,
    result: Verification,
    window_points: int,
) -> None:
    """Add to ``result`` every stored point of a derived stream that its replay disagrees
    with, and every point only one side has."""
    meta = record.meta
    if meta.get("pending_backprocess"):
        return
    until = final_until(record, lookup)
    inputs = _inputs(record, lookup)
    firsts = [first for first in (source.first() for source in inputs) if first is not None]
    if until is None or not firsts:
        return
    highest = resolve(meta["highest_granularity"])
    width = highest.width_us
    config = meta["derived_from"]
    if spec(config["op"]).bucketed:  # the engine processes that bucket whole (a sum emitted
        until = highest.last_us(until)  # once every source has reached it)
    after = None
    if meta.get("derive_history") == "skip":
        after = _first_settling_point(record, until)
        if after is None:
            return
    own_first = meta.get("earliest_datapoint")
    start = min(firsts if own_first is None else [*firsts, own_first])
    cut = _retention_cut(record, inputs)
    if cut is not None:
        # outputs are compared from where every input is kept and the operator's state
        # (the previous input point, the current bucket) is known again
        start = max(start, cut)
        settled = max([highest.last_us(cut), *(
            first for first in (source.first_from(storage, cut) for source in inputs)
            if first is not None)])
        after = settled if after is None else max(after, settled)
    high_accuracy = (meta["value_type"] == "numeric"
                     and bool((meta.get("value_type_options") or {}).get("high_accuracy")))
    operator = replay.operator(config["op"], config, width, high_accuracy)
    spans = window_sizes.Windows(
        start, until + 1, width, window_points, longest=window_sizes.WINDOW_BUCKETS * width
    )
    for a, b in spans:
        b = min(b, until + 1)
        parts = [source.points(storage, sql, a, b) for source in inputs]
        outputs = operator.feed(*replay.merge(parts))
        stored = storage.read_raw(record.stream_id, a, b)
        spans.observe(stored.num_rows + sum(len(part[0]) for part in parts))
        if after is not None:
            outputs = [out for out in outputs if out[0] > after]
            stored = stored.filter(pc.greater(stored.column("t"), after))
        _compare(record, highest, stored, outputs, result)


def _retention_cut(record: StreamRecord, inputs: list[_Input]) -> int | None:
    """The latest time before which retention deleted an input or the stream's own points."""
    cuts = [floor for floor in (source.floor() for source in inputs) if floor is not None]
    own = record.meta.get("raw_floor")
    if own is not None:
        cuts.append(own)
    return max(cuts) if cuts else None


def _first_settling_point(record: StreamRecord, until: int) -> int | None:
    """Time of the first stored point (up to ``until``), after which the operator state is
    known (see above)."""
    earliest = record.meta.get("earliest_datapoint")
    return earliest if earliest is not None and earliest <= until else None


def _compare(
    record: StreamRecord,
    level: GranularityLevel,
    stored: pa.Table,
    outputs: list[replay.Output],
    result: Verification,
) -> None:
    meta = record.meta
    nominal = meta["value_type"] == "nominal"
    decoded = values.decode_values(stored, meta["value_type"], meta["value_type_options"])
    have: dict[int, list] = {}
    for t, value in zip(stored.column("t").to_pylist(), decoded, strict=True):
        have.setdefault(t, []).append(value)
    want: dict[int, list] = {}
    for t, value, scale in outputs:
        if nominal:
            expected = strict(value)
        elif isinstance(value, decimal.Decimal) and not scale:
            expected = exact(value)  # a high-accuracy result of stored values: to the digit
        else:
            expected = close(None if value is None else float(value), scale)
        want.setdefault(t, []).append(expected)
    for t in sorted(set(have) | set(want)):
        got, expected = have.get(t, []), want.get(t, [])
        for position in range(max(len(got), len(expected))):
            result.checked["points"] += 1
            stored_value = got[position] if position < len(got) else ABSENT
            wanted = expected[position] if position < len(expected) else None
            if wanted is None or stored_value is ABSENT:
                result.add(record.stream_id, level, t, None, stored_value,
                           ABSENT if wanted is None else wanted.value)
            elif not agrees(stored_value if wanted.how == "exact" else _comparable(stored_value),
                            wanted):
                result.add(record.stream_id, level, t, None, stored_value, wanted.value)


def _comparable(value: Any) -> Any:
    return float(value) if isinstance(value, decimal.Decimal) else value

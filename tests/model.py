"""A small, slow, obviously-correct model of the documented behaviour (docs/behaviour.md),
for the state-machine test.

It knows nothing of the library's code: time is int epoch microseconds, a stream is a list of
raw points plus per-level bounds, and every downsampled bucket or derived point is recomputed
from raw data on each question (behaviour §5.2, §5.3, §5.5, §7). What a test compares with it:

* raw points of base streams (appended) and of derived streams (a replay of their sources);
* level buckets: every bucket from the level's first one up to ``downsampled_until``, each the
  exact aggregate of the raw points inside it (empty buckets generated);
* bounds: the three closing rules of §5.5;
* tags, queries, creation order, dependencies.

Two ``Datastream`` objects may share the stored data. Each object has its own *pending*
appends (buffered, not yet known to be stored); a :class:`View` is what one object sees: the
stored points plus its own pending ones. Stored points carry a commit sequence number, which
orders points with equal timestamps.

Where the behaviour reference leaves a detail open, the model says so instead of guessing: a
derived stream whose value depends on such a detail is *inexact* (see :meth:`View.exact`) and
is then only checked by ``verify()``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

US = 1_000_000


@dataclasses.dataclass(frozen=True)
class Level:
    key: str
    name: str
    width: int  # µs

    def floor(self, t: int) -> int:
        return t // self.width * self.width

    def middle(self, start: int) -> int:
        return start + (self.width // US // 2) * US


LEVELS = [
    Level("s", "seconds", 1 * US),
    Level("S", "10seconds", 10 * US),
    Level("m", "minutes", 60 * US),
    Level("M", "10minutes", 600 * US),
    Level("h", "hours", 3600 * US),
    Level("H", "6hours", 21600 * US),
    Level("d", "days", 86400 * US),
]
LEVEL_BY_NAME = {level.name: level for level in LEVELS}


def coarser(highest: str) -> list[Level]:
    index = [level.name for level in LEVELS].index(highest)
    return LEVELS[index + 1 :]


VALUE_KEYS = {
    "count": "c", "sum": "s", "sum_squares": "q", "min": "l", "max": "u", "mean": "m",
    "std_dev": "d", "median": "n", "most_often": "o", "least_often": "r", "frequencies": "f",
}
TIME_KEYS = {
    "mean": "m", "first": "a", "last": "z", "intervals_mean": "i", "intervals_min": "l",
    "intervals_max": "u", "intervals_sum_squares": "q", "intervals_std_dev": "d",
}


def stored_downsamplers(requested: Iterable[str]) -> set[str]:
    """behaviour §3.3 rule 6: count joins any non-empty set; mean and std_dev bring their parts."""
    chosen = set(requested)
    if chosen:
        chosen.add("count")
    if "mean" in chosen:
        chosen |= {"sum", "count"}
    if "std_dev" in chosen:
        chosen |= {"sum", "count", "sum_squares"}
    return chosen


# -- stream kinds the state machine can create ----------------------------------------------


@dataclasses.dataclass(frozen=True)
class Kind:
    name: str
    value_type: str = "numeric"
    highest: str = "seconds"
    downsamplers: tuple[str, ...] = ()
    op: str | None = None
    sources: tuple[tuple[str, str | None], ...] = ()  # (kind name, label)
    args: tuple[tuple[str, Any], ...] = ()
    whole_seconds: bool = False  # appends land on whole seconds only

    @property
    def derived(self) -> bool:
        return self.op is not None

    @property
    def derive_args(self) -> dict[str, Any]:
        return dict(self.args)

    @property
    def first_level(self) -> Level | None:
        levels = coarser(self.highest)
        return levels[0] if levels else None


KINDS = {
    kind.name: kind
    for kind in [
        Kind("a", downsamplers=("mean", "min", "max", "median", "std_dev", "sum_squares"),
             whole_seconds=True),
        Kind("b", downsamplers=("count", "sum"), whole_seconds=True),
        Kind("c"),  # a counter's uptime; never downsampled
        Kind("n", value_type="nominal", downsamplers=("most_often", "least_often", "frequencies")),
        Kind("e", highest="10seconds", downsamplers=("median", "max")),
        Kind("sum_ab", op="sum", sources=(("a", None), ("b", None)), downsamplers=("mean", "max")),
        Kind("der_a", op="derivative", sources=(("a", None),), downsamplers=("min", "max")),
        Kind("reset_c", value_type="nominal", op="counter_reset", sources=(("c", None),),
             downsamplers=("count",)),
        Kind("cd", op="counter_derivative", sources=(("reset_c", "reset"), ("b", None)),
             args=(("max_value", 256),), downsamplers=("mean",)),
        Kind("der_sum", op="derivative", sources=(("sum_ab", None),), downsamplers=("count",)),
    ]
}
BASE_KINDS = [name for name, kind in KINDS.items() if not kind.derived]
DERIVED_KINDS = [name for name, kind in KINDS.items() if kind.derived]


# -- tags and queries (behaviour §3.4, §3.5) -----------------------------------------------------


def deep_merge(base: dict, update: dict) -> dict:
    result = json.loads(json.dumps(base))
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = json.loads(json.dumps(value))
    return result


def remove_paths(tags: dict, paths: dict) -> dict:
    result = json.loads(json.dumps(tags))
    for key, value in paths.items():
        if key not in result:
            continue
        if isinstance(value, dict) and value and isinstance(result[key], dict):
            result[key] = remove_paths(result[key], value)
        else:
            del result[key]
    return result


_MISSING = object()


def _compare(op: str, stored: Any, wanted: Any) -> bool:
    numbers = (int, float)
    if isinstance(stored, bool) or isinstance(wanted, bool):
        return False
    if isinstance(stored, numbers) and isinstance(wanted, numbers):
        pass
    elif not (isinstance(stored, str) and isinstance(wanted, str)):
        return False
    return {"$gt": stored > wanted, "$gte": stored >= wanted, "$lt": stored < wanted,
            "$lte": stored <= wanted}[op]


def _leaf(stored: Any, condition: Any) -> bool:
    if isinstance(condition, dict) and condition and all(k.startswith("$") for k in condition):
        return all(_operator(stored, op, value) for op, value in condition.items())
    if isinstance(condition, dict):
        if not isinstance(stored, dict):
            return False
        return all(_leaf(stored.get(k, _MISSING), v) for k, v in condition.items())
    if stored is _MISSING:
        return False
    if isinstance(condition, list):
        return stored == condition
    if isinstance(stored, list):
        return any(_same(item, condition) for item in stored)
    return _same(stored, condition)


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b or (
        isinstance(a, int | float) and isinstance(b, int | float)
        and not isinstance(a, bool) and not isinstance(b, bool) and a == b
    )


def _operator(stored: Any, op: str, value: Any) -> bool:
    if op == "$exists":
        return (stored is not _MISSING) == bool(value)
    if op == "$eq":
        return _leaf(stored, value) if not isinstance(value, dict) else stored == value
    if op == "$ne":
        return not _leaf(stored, value)
    if op == "$in":
        return any(_leaf(stored, item) for item in value)
    if stored is _MISSING:
        return False
    if op in ("$gt", "$gte", "$lt", "$lte"):
        return _compare(op, stored, value)
    if op == "$all":
        return isinstance(stored, list) and all(
            any(_same(item, wanted) for item in stored) for wanted in value)
    raise ValueError(f"the model does not know {op}")


def matches(tags: dict, query: dict | None) -> bool:
    return all(_leaf(tags.get(key, _MISSING), condition)
               for key, condition in (query or {}).items())


# -- aggregates of one bucket (behaviour §5.2, §5.3) ---------------------------------------------


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _numeric_values(values: list[Any], keys: set[str]) -> dict[str, Any]:
    c = len(values)
    out: dict[str, Any] = {"c": c}
    exact = [Fraction(v) for v in values]
    if c:
        total = sum(exact)
        mean = total / c
        ordered = sorted(exact)
        middle = c // 2
        median = ordered[middle] if c % 2 else (ordered[middle - 1] + ordered[middle]) / 2
        out.update({
            "s": float(total), "q": float(sum(x * x for x in exact)), "l": float(min(exact)),
            "u": float(max(exact)), "m": float(mean),
            "d": math.sqrt(float(sum((x - mean) ** 2 for x in exact) / c)),
            "n": float(median),
        })
        out.update(_frequency_keys(values))
    else:
        out.update({key: None for key in "sqlumdnorf"})
    return {key: value for key, value in out.items() if key in keys}


def _frequency_keys(values: list[Any]) -> dict[str, Any]:
    counts: dict[Any, int] = {}
    canon: dict[Any, str] = {}
    for value in values:
        key = canonical(value) if isinstance(value, dict | list) else value
        counts[key] = counts.get(key, 0) + 1
        canon[key] = canonical(value)
    most = min(counts, key=lambda k: (-counts[k], canon[k]))
    least = min(counts, key=lambda k: (counts[k], canon[k]))
    return {"o": most, "r": least, "f": counts}


def bucket(points: list[tuple[int, Any]], start: int, level: Level, value_type: str,
           value_keys: set[str]) -> dict[str, Any]:
    """The downsampled datapoint of one bucket; ``points`` = (t µs, value) in the bucket."""
    times = sorted(t for t, _ in points)
    non_null = [(t, v) for t, v in points if v is not None]
    middle = level.middle(start)
    time: dict[str, Any] = {
        "m": sum(Fraction(t) for t, _ in non_null) / len(non_null) if non_null else middle,
        "a": times[0] if times else middle,
        "z": times[-1] if times else middle,
    }
    gaps = [Fraction(b - a, US) for a, b in zip(times, times[1:])]
    if gaps:
        mean_gap = sum(gaps) / len(gaps)
        time.update({
            "i": float(mean_gap), "l": float(min(gaps)), "u": float(max(gaps)),
            "q": float(sum(g * g for g in gaps)),
            "d": math.sqrt(float(sum((g - mean_gap) ** 2 for g in gaps) / len(gaps))),
        })
    else:
        time.update({key: None for key in "iluqd"})
    values = [v for _, v in non_null]
    if value_type == "numeric":
        value = _numeric_values(values, value_keys)
    else:
        value = {"c": len(values)}
        value.update(_frequency_keys(values) if values else {"o": None, "r": None, "f": None})
        value = {key: v for key, v in value.items() if key in value_keys}
    return {"t": time, "v": value}


# -- derive operators (behaviour §7), over full source histories ---------------------------------


def derive_sum(sources: list[list[tuple[int, Any]]], width: int) -> tuple[list, bool]:
    """Buckets where every source has a point: the sum of the non-null values. Returns
    (points, exact): with two points of one source in one bucket the behaviour reference does
    not say which values count, so the result is inexact."""
    per_source: list[dict[int, Any]] = []
    exact = True
    for points in sources:
        seen: dict[int, Any] = {}
        for t, v in points:
            b = t // width * width
            if b in seen:
                exact = False
                continue
            seen[b] = v
        per_source.append(seen)
    common = set(per_source[0])
    for seen in per_source[1:]:
        common &= set(seen)
    out = []
    for b in sorted(common):
        present = [seen[b] for seen in per_source if seen[b] is not None]
        out.append((b, float(sum(Fraction(v) for v in present)) if present else None))
    return out, exact


def _derivative_run(points: list[tuple[int, Any]], move_on_zero: bool) -> list:
    out = []
    previous: tuple[int, Any] | None = None
    for t, v in points:
        if v is None:
            out.append((t, None))
            previous = None
            continue
        if previous is not None:
            dt = Fraction(t - previous[0], US)
            if dt == 0:
                if move_on_zero:
                    previous = (t, v)
                continue
            out.append((t, float((Fraction(v) - Fraction(previous[1])) / dt)))
        previous = (t, v)
    return out


def derive_derivative(points: list[tuple[int, Any]]) -> tuple[list, bool]:
    """(v1 − v0)/Δt at t1; a null emits None and resets; zero Δt emits nothing. The
    behaviour reference does not say whether the base then moves to the second point: when that
    matters, inexact."""
    moved = _derivative_run(points, True)
    kept = _derivative_run(points, False)
    return moved, moved == kept


def derive_counter_reset(points: list[tuple[int, Any]]) -> list:
    out = []
    previous = None
    for t, v in points:
        if v is None:
            continue
        if previous is not None and v < previous:
            out.append((t, 1))
        previous = v
    return out


def _counter_derivative_run(reset: list, data: list, max_value: float, move_on_zero: bool):
    events = [(t, 0, i, v) for i, (t, v) in enumerate(reset)]
    events += [(t, 1, i, v) for i, (t, v) in enumerate(data)]
    events.sort(key=lambda e: (e[0], e[1], e[2]))  # time, then declared source order
    out = []
    previous: tuple[int, Any] | None = None
    for t, source, _, v in events:
        if source == 0:
            if v is None:
                out.append((t, None))
            elif v:
                previous = None
            continue
        if v is None:
            out.append((t, None))
            previous = None
            continue
        if previous is not None:
            dt = Fraction(t - previous[0], US)
            delta = Fraction(v) - Fraction(previous[1])
            if delta < 0:
                delta = Fraction(max_value) - Fraction(previous[1]) + Fraction(v)
            if dt == 0:
                if move_on_zero:
                    previous = (t, v)
                continue
            out.append((t, float(delta / dt)))
        previous = (t, v)
    return out


def derive_counter_derivative(reset: list, data: list, max_value: float) -> tuple[list, bool]:
    moved = _counter_derivative_run(reset, data, max_value, True)
    kept = _counter_derivative_run(reset, data, max_value, False)
    return moved, moved == kept


# -- the model ------------------------------------------------------------------------------


@dataclasses.dataclass
class MStream:
    stream_id: str
    kind: Kind
    tags: dict[str, Any]
    created: int
    sources: list[str] = dataclasses.field(default_factory=list)  # derived: declared order
    raw: list[tuple[int, int, Any]] = dataclasses.field(default_factory=list)  # (t, seq, v)
    bounds: dict[str, int | None] = dataclasses.field(default_factory=dict)
    # A first-level bound another reading of §5.5 could have stored although no bucket closed
    # (floor of the earliest point): appends before it may or may not be refused.
    maybe_bound: int | None = None
    pending_backprocess: bool = False
    # counter_derivative: False once a reset point was produced behind data already processed
    # (behaviour §7 then makes the live result depend on arrival order).
    arrival_exact: bool = True

    @property
    def first_level(self) -> Level | None:
        return self.kind.first_level

    def __repr__(self) -> str:  # hypothesis prints drawn streams: keep it short
        return f"<{self.kind.name}#{self.created}>"


class Model:
    def __init__(self, objects: int = 2, auto_downsample: bool = False) -> None:
        self.streams: dict[str, MStream] = {}
        self.counter = 0
        self.seq = 0
        self.pending: dict[int, list[tuple[str, int, Any]]] = {i: [] for i in range(objects)}
        self.auto_downsample = auto_downsample

    # -- structure -----------------------------------------------------------------------
    def ordered(self) -> list[MStream]:
        return sorted(self.streams.values(), key=lambda s: s.created)

    def find(self, query: dict | None) -> list[MStream]:
        return [s for s in self.ordered() if matches(s.tags, query)]

    def find_for_maintenance(self, query: dict | None) -> list[MStream]:
        """delete/downsample/backprocess: a top-level stream_id condition filters ids."""
        query = dict(query or {})
        wanted = None
        if "stream_id" in query:
            condition = query.pop("stream_id")
            wanted = set(condition["$in"]) if isinstance(condition, dict) else {condition}
        return [s for s in self.find(query) if wanted is None or s.stream_id in wanted]

    def create(self, stream_id: str, kind: Kind, tags: dict, sources: list[str],
               pending_backprocess: bool) -> MStream:
        self.counter += 1
        stream = MStream(stream_id, kind, tags, self.counter, list(sources),
                         bounds={level.key: None for level in coarser(kind.highest)},
                         pending_backprocess=pending_backprocess)
        self.streams[stream_id] = stream
        return stream

    def dependents(self, stream_id: str) -> list[MStream]:
        """Derived streams fed directly by a stream, in creation order."""
        return [s for s in self.ordered() if stream_id in s.sources]

    def transitive_dependents(self, stream_id: str) -> list[MStream]:
        found: dict[str, MStream] = {}
        queue = [stream_id]
        while queue:
            for dependent in self.dependents(queue.pop()):
                if dependent.stream_id not in found:
                    found[dependent.stream_id] = dependent
                    queue.append(dependent.stream_id)
        return sorted(found.values(), key=lambda s: s.created)

    def contributes_to(self, stream_id: str) -> dict[str, Any]:
        return {d.stream_id: {"op": d.kind.op, "args": d.kind.derive_args}
                for d in self.dependents(stream_id)}

    def delete(self, streams: list[MStream]) -> None:
        ids = {s.stream_id for s in streams}
        for stream_id in ids:
            del self.streams[stream_id]
        for who, items in self.pending.items():
            self.pending[who] = [item for item in items if item[0] not in ids]

    # -- data ----------------------------------------------------------------------------
    def view(self, who: int | None) -> View:
        return View(self, who)

    def add_pending(self, who: int, stream_id: str, t: int, value: Any) -> None:
        self.pending[who].append((stream_id, t, value))

    def commit(self, who: int) -> None:
        """The object's pending points become stored (a flush), in append order."""
        items, self.pending[who] = self.pending[who], []
        touched = []
        for stream_id, t, value in items:
            stream = self.streams.get(stream_id)
            if stream is None:
                continue
            self.seq += 1
            stream.raw.append((t, self.seq, value))
            touched.append(stream_id)
        if self.auto_downsample and touched:
            self.auto_close(touched)

    def auto_close(self, touched: Iterable[str]) -> None:
        """§5.5 [beyond]: a flush closes buckets by rules (b) and (c) for what it wrote."""
        affected: dict[str, MStream] = {}
        for stream_id in touched:
            affected[stream_id] = self.streams[stream_id]
            for dependent in self.transitive_dependents(stream_id):
                affected[dependent.stream_id] = dependent
        view = self.view(None)
        for stream in sorted(affected.values(), key=lambda s: s.created):
            self.close(stream, view, None)

    def note_reset_arrival(self, who: int, stream_id: str, t: int, dirty: bool) -> None:
        """A point appended to a stream that feeds the reset input of a counter_derivative:
        if the data input already holds a point at or after ``t`` that is not certain to be
        processed together with this one, the live result depends on arrival order (§7).
        ``dirty``: the appending object's own buffer may have been partly flushed already."""
        for dependent in self.transitive_dependents(stream_id):
            if dependent.kind.op != "counter_derivative" or stream_id == dependent.sources[1]:
                continue
            data_id = dependent.sources[1]
            stored = any(p[0] >= t for p in self.streams[data_id].raw)
            elsewhere = any(sid == data_id and pt >= t
                            for other, items in self.pending.items() if other != who or dirty
                            for sid, pt, _ in items)
            if stored or elsewhere:
                dependent.arrival_exact = False

    # -- closing buckets (§5.5) -----------------------------------------------------------
    def close(self, stream: MStream, view: View, until: int | None) -> None:
        if not stream.kind.downsamplers or stream.pending_backprocess:
            return
        times = [t for t, _ in view.raw(stream.stream_id)]
        if not times:
            return
        earliest, latest = min(times), max(times)
        final = view.final(stream.stream_id) if stream.kind.derived else None
        if final is not None:  # a derived stream emits nothing more at or before it (§5.5)
            latest = max(latest, final)
        finer_bound: int | None = None
        for index, level in enumerate(coarser(stream.kind.highest)):
            bound = stream.bounds[level.key]
            start = bound if bound is not None else level.floor(earliest)
            new = level.floor(latest)
            if until is not None:
                new = min(new, level.floor(until))
            if index > 0:
                if finer_bound is None:
                    break
                new = min(new, level.floor(finer_bound))
            if new > start:
                stream.bounds[level.key] = new
            elif index == 0 and bound is None:
                guess = level.floor(earliest)
                stream.maybe_bound = guess if stream.maybe_bound is None else max(
                    stream.maybe_bound, guess)
            finer_bound = stream.bounds[level.key]
            if finer_bound is None:
                break

    def closable(self, stream: MStream, view: View, until: int | None) -> dict[str, int | None]:
        """The bounds a close would reach, without changing the model."""
        saved = (dict(stream.bounds), stream.maybe_bound)
        self.close(stream, view, until)
        result = dict(stream.bounds)
        stream.bounds, stream.maybe_bound = saved
        return result

    # -- append checks (§4.1) -------------------------------------------------------------
    def append_outcome(self, who: int, stream_id: str, t: int, check_timestamp: bool,
                       latest_in_call: int | None = None) -> tuple[str, str]:
        """('ok' | 'raise' | 'either', why): 'raise' = InvalidTimestamp (§4.1), 'either' =
        the behaviour reference allows both."""
        view = self.view(who)
        stream = self.streams[stream_id]
        times = [p[0] for p in view.raw(stream_id)]
        latest = max(times) if times else None
        if latest_in_call is not None:
            latest = latest_in_call if latest is None else max(latest, latest_in_call)
        if check_timestamp and latest is not None and t < latest:
            return "raise", f"older than the latest datapoint {latest}"
        either = ""
        level = stream.first_level
        if level is not None:
            bound = stream.bounds[level.key]
            if bound is not None and t < bound:
                return "raise", f"inside the downsampled range (< {bound})"
            if bound is None and stream.maybe_bound is not None and t < stream.maybe_bound:
                either = "before a bound that closes no bucket"
        late = latest is not None and t < latest
        for dependent in self.transitive_dependents(stream_id):
            if dependent.pending_backprocess or dependent.first_level is None:
                continue
            bound = dependent.bounds[dependent.first_level.key]
            name = dependent.kind.name
            # A point that is not late changes a derived stream only at or after its own time,
            # except through the reset input of a counter_derivative, whose data input may be
            # further ahead: the behaviour reference states the frozen-range rule for late
            # points only.
            via_reset = dependent.kind.op == "counter_derivative" and (
                stream_id != dependent.sources[1])
            if not late and not via_reset:
                continue
            if not view.exact(dependent.stream_id):
                either = f"derived {name} is inexact (its bounds are unknown)"
            elif bound is not None and t < bound:
                if late:
                    return "raise", f"late point inside the downsampled range of {name}"
                either = f"not late, but before the bound of derived {name}"
            elif bound is None and dependent.maybe_bound is not None and (
                    t < dependent.maybe_bound):
                either = f"before a bound of {name} that closes no bucket"
        return ("either", either) if either else ("ok", "")


class View:
    """What one Datastream object sees: stored points plus its own pending appends."""

    def __init__(self, model: Model, who: int | None) -> None:
        self.model = model
        self.who = who
        self._raw: dict[str, list[tuple[int, Any]]] = {}
        self._seq: dict[str, list[int]] = {}
        self._exact: dict[str, bool] = {}

    def _base(self, stream: MStream) -> list[tuple[int, int, Any]]:
        rows = list(stream.raw)
        if self.who is not None:
            offset = 1 << 60
            for index, (stream_id, t, value) in enumerate(self.model.pending[self.who]):
                if stream_id == stream.stream_id:
                    rows.append((t, offset + index, value))
        rows.sort(key=lambda row: (row[0], row[1]))
        return rows

    def raw(self, stream_id: str) -> list[tuple[int, Any]]:
        """Raw points in read order: time, then append (commit) order."""
        if stream_id not in self._raw:
            self._compute(stream_id)
        return self._raw[stream_id]

    def order(self, stream_id: str) -> list[int]:
        """A tiebreak key per raw point (append order among equal timestamps)."""
        if stream_id not in self._raw:
            self._compute(stream_id)
        return self._seq[stream_id]

    def exact(self, stream_id: str) -> bool:
        if stream_id not in self._raw:
            self._compute(stream_id)
        return self._exact[stream_id]

    def _compute(self, stream_id: str) -> None:
        stream = self.model.streams[stream_id]
        kind = stream.kind
        if not kind.derived:
            rows = self._base(stream)
            self._raw[stream_id] = [(t, v) for t, _, v in rows]
            self._seq[stream_id] = [seq for _, seq, _ in rows]
            self._exact[stream_id] = True
            return
        if stream.pending_backprocess:
            points: list = []
            exact = True
        else:
            inputs = [self.raw(source) for source in stream.sources]
            exact = all(self.exact(source) for source in stream.sources)
            if kind.op == "sum":
                width = LEVEL_BY_NAME[kind.highest].width
                points, ok = derive_sum(inputs, width)
            elif kind.op == "derivative":
                points, ok = derive_derivative(inputs[0])
            elif kind.op == "counter_reset":
                points, ok = derive_counter_reset(inputs[0]), True
            else:
                points, ok = derive_counter_derivative(
                    inputs[0], inputs[1], kind.derive_args["max_value"])
                ok = ok and stream.arrival_exact
            exact = exact and ok
        self._raw[stream_id] = points
        self._seq[stream_id] = list(range(len(points)))
        self._exact[stream_id] = exact

    def final(self, stream_id: str) -> int | None:
        """The time up to which a stream's points can no longer change: a raw stream's latest
        point; for a derived one, the earliest final time of the sources that hold it back
        (all but counter_derivative's reset input), and for sum the end of that time's bucket
        once every source has a point there (the bucket before it otherwise)."""
        stream = self.model.streams[stream_id]
        if not stream.kind.derived:
            times = [t for t, _ in self.raw(stream_id)]
            return max(times) if times else None
        if stream.pending_backprocess:
            return None
        holding = stream.sources[1:] if stream.kind.op == "counter_derivative" else stream.sources
        finals = [self.final(source) for source in holding]
        if any(final is None for final in finals):
            return None
        mark = min(finals)
        if stream.kind.op != "sum":
            return mark
        width = LEVEL_BY_NAME[stream.kind.highest].width
        start = mark // width * width
        reached = all(any(start <= t < start + width for t, _ in self.raw(source))
                      for source in stream.sources)
        return start + width - 1 if reached else start - 1

    def extent(self, stream_id: str) -> tuple[int | None, int | None]:
        times = [t for t, _ in self.raw(stream_id)]
        return (min(times), max(times)) if times else (None, None)

    def level(self, stream_id: str, level: Level) -> list[tuple[int, dict[str, Any]]]:
        """(bucket start, datapoint) of every bucket a reader sees at a coarser level."""
        stream = self.model.streams[stream_id]
        bound = stream.bounds.get(level.key)
        raw = self.raw(stream_id)
        if bound is None or not raw:
            return []
        first = level.floor(min(t for t, _ in raw))
        grouped: dict[int, list[tuple[int, Any]]] = {}
        for t, v in raw:
            if t < bound:
                grouped.setdefault(level.floor(t), []).append((t, v))
        keys = {VALUE_KEYS[name] for name in stored_downsamplers(stream.kind.downsamplers)}
        return [
            (start, bucket(grouped.get(start, []), start, level, stream.kind.value_type, keys))
            for start in range(first, bound, level.width)
        ]

"""Derive operators over a commit under construction: validation, propagation and replay.

A derived stream consumes the merged input of its sources in one fixed order (time, then the
declared order of ``derive_from``, then append order) and carries its operator state in its
stored record (:class:`~datastream.engine.state.OperatorState`). Inputs are processed up to the
*watermark*: the time up to which every source that may hold the derived stream back is final
(a raw source: its latest datapoint; a level source: its downsampled bound; a derived source:
its own processed time). A reset input (``counter_derivative``'s) never holds data back;
what each operator needs is declared in :mod:`~datastream.engine.operator_specs`.

Inputs that arrive at or before what was already processed (a late point appended with
``check_timestamp=False``, a reset arriving after the data it applies to, a source that was
itself re-derived) make the derived stream be re-derived from there: every operator's state is
just the previous input point (or the current bucket), so the replay restarts from the input
before the first changed one, and the outputs from that time on are replaced. A derived stream
therefore always equals a replay of its sources, whatever the batching, interleaving or
arrival order.
"""

from __future__ import annotations

import json
import warnings
from decimal import Decimal

import numpy as np

from .. import arrow_numpy, downsamplers, exceptions, raw_numbers, values
from ..granularity import MIN_US, GranularityLevel
from ..lazy import pa
from ..raw_kinds import HIGH_ACCURACY, KIND_NULL
from ..storage.base import raw_schema
from ..units import INT64_MIN, US_PER_SECOND
from . import exact_operators
from .changes import EVERYTHING, ChangeSet
from .operator_specs import Batch, spec
from .state import OperatorState, Source, StreamState
from .view import conform, slice_t

NO_TIME = INT64_MIN
LOOKBACK_START_US = 60 * US_PER_SECOND
LOOKBACK_GROWTH = 16

# -- validation -----------------------------------------------------------------------------


def validate(
    op: str, sources: list[Source], args: dict, highest: GranularityLevel,
    states: dict[str, StreamState],
) -> None:
    """Raise the exception of behaviour §7 for a configuration the operator cannot run."""
    operator = spec(op)
    operator.check_sources([source.stream_id for source in sources],
                           [source.name for source in sources])
    operator.check_args(args)
    for position, source in enumerate(sources):
        if source.level != highest:
            raise exceptions.IncompatibleGranularities(
                f"source {source.stream_id} at {source.level} does not match the derived "
                f"stream's highest granularity {highest}"
            )
        value_type = states[source.stream_id].value_type
        if not operator.is_reset(position) and value_type != operator.source_type:
            raise exceptions.IncompatibleTypes(
                f"{op} needs {operator.source_type} sources; stream {source.stream_id} is "
                f"{value_type}"
            )


# -- reading inputs -------------------------------------------------------------------------


def _is_raw_fed(changes: ChangeSet, source: Source) -> bool:
    return source.level == changes.states[source.stream_id].highest


def final_time(changes: ChangeSet, source: Source) -> int | None:
    """Time up to which a source's input is final (None: nothing yet)."""
    state = changes.states[source.stream_id]
    if source.level == state.highest:
        if state.derivation is not None:
            return None if state.operator is None else state.operator.final
        return state.latest
    bound = state.bound(source.level)
    return None if bound is None else bound - 1


def _as_points(
    changes: ChangeSet, source: Source, rows: pa.Table, is_reset: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(t, v) of input rows with NaN for nulls: raw values (a reset input becomes 1.0 when
    truthy, 0.0 when falsy), or bucket means of level rows (NaN for an empty bucket)."""
    t = arrow_numpy.to_numpy(rows.column("t")).astype(np.int64)
    if not _is_raw_fed(changes, source):
        count = arrow_numpy.to_numpy(rows.column("c")).astype(np.float64)
        total = arrow_numpy.to_numpy(rows.column("s")).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return t, np.where(count > 0, total / count, np.nan)
    if is_reset:
        decoded = values.decode_values(rows, "nominal", {})
        kinds = arrow_numpy.to_numpy(rows.column("k"))
        v = np.array([1.0 if value else 0.0 for value in decoded], dtype=np.float64)
        v[kinds == KIND_NULL] = np.nan
        return t, v
    numbers, valid = raw_numbers.numeric_values(rows, values.kinds_of(rows))
    return t, np.where(valid, numbers, np.nan)


def _exact_points(changes: ChangeSet, source: Source, rows: pa.Table, is_reset: bool,
                  v: np.ndarray) -> list:
    """The Python values of input rows (None for nulls) for the exact operators: raw values
    as appended (a pre-aggregated dict has no one value: None), a reset input as 1 or 0, a
    bucket mean of a high-accuracy level as a Decimal, other bucket means as ``v`` has them."""
    state = changes.states[source.stream_id]
    if not _is_raw_fed(changes, source):
        means: list = [None if np.isnan(mean) else float(mean) for mean in v.tolist()]
        if values.is_high_accuracy(state.options) and "x" in rows.column_names:
            for j, text in enumerate(rows.column("x").to_pylist()):
                exact = json.loads(text) if text else None
                if exact and "mu" in exact and int(exact["c"]) > 0:
                    mean = HIGH_ACCURACY.divide(Decimal(exact["s"]), int(exact["c"]))
                    means[j] = None if mean.is_nan() else mean  # no sum: no one value
        return means
    if is_reset:
        return [None if np.isnan(flag) else int(flag) for flag in v.tolist()]
    decoded = values.decode_values(rows, "numeric", state.options)
    return [None if isinstance(value, dict) else value for value in decoded]


def _exact_mode(state: StreamState, changes: ChangeSet, rows: list[tuple[int, pa.Table]]
                ) -> bool | None:
    """How a run over these input rows ((source index, rows) pairs) computes: None with the
    kernels (float64), False with exact Python numbers (a raw input holds an integer float64
    would round), True in Decimal (a high-accuracy derived stream)."""
    if state.value_type == "numeric" and values.is_high_accuracy(state.options):
        return True
    derivation = state.derivation
    for index, table in rows:
        source = derivation.sources[index]
        if not table.num_rows or not _is_raw_fed(changes, source) or _is_reset(derivation,
                                                                                index):
            continue
        if (values.is_high_accuracy(changes.states[source.stream_id].options)
                or exact_operators.has_rounded_ints(table)):
            return False  # Decimals compared and subtracted exactly; ints beyond 2**53 too
    return None


def _carries_rounded(derivation, operator: OperatorState) -> bool:
    """Whether the carried float state holds a value float64 may have rounded (a previous
    input beyond 2**53): the next batch then replays from that input, exactly."""
    slots = spec(derivation.op).value_slots
    return any(abs(operator.values[slot]) >= exact_operators.ROUNDED_INT for slot in slots)


def _read(changes: ChangeSet, source: Source, start: int | None, end: int | None) -> pa.Table:
    """Input rows of a source with start <= t < end (None = unbounded), as the commit under
    construction will leave them; level inputs include the empty buckets."""
    state = changes.states[source.stream_id]
    if _is_raw_fed(changes, source):
        return changes.view.read_raw(source.stream_id, start, end)
    level = source.level
    bound = state.bound(level)
    first = state.level_start(level)
    if bound is None or first is None:
        return arrow_numpy.empty_table(downsamplers.LEVEL_SCHEMA)
    low = first if start is None else max(level.ceil_us(start), first)
    high = bound if end is None else min(bound, end)
    if low >= high:
        return arrow_numpy.empty_table(downsamplers.LEVEL_SCHEMA)
    stored = changes.view.read_level(level.key, source.stream_id, low, high)
    rows = arrow_numpy.empty_table(downsamplers.LEVEL_SCHEMA) if stored is None else conform(stored)
    return downsamplers.fill_empty(rows, low, high, level.width_us)


def _new_rows(changes: ChangeSet, source: Source) -> pa.Table | None:
    """Rows this commit adds to a raw-fed source (None for level sources: their new buckets
    always lie past everything processed)."""
    if not _is_raw_fed(changes, source):
        return None
    return changes.new_raw(source.stream_id)


def _changed_from(changes: ChangeSet, source: Source) -> int | None:
    """Earliest time from which stored input rows of a source are replaced in this commit."""
    if _is_raw_fed(changes, source):
        return changes.raw_changed_from.get(source.stream_id)
    return changes.level_changed_from.get((source.stream_id, source.level.key))


# -- running one derived stream -------------------------------------------------------------


class _Inputs:
    """Merged input points: time, value (NaN = null), source index, in merge order."""

    def __init__(self) -> None:
        self.t: list[np.ndarray] = []
        self.v: list[np.ndarray] = []
        self.x: list[np.ndarray] = []
        self.src: list[np.ndarray] = []
        self.pos: list[np.ndarray] = []

    def add(self, index: int, t: np.ndarray, v: np.ndarray, x: np.ndarray | None = None) -> None:
        """``x``: the points' exact values (an object array) when the run is exact."""
        if t.size:
            self.t.append(t)
            self.v.append(v)
            if x is not None:
                self.x.append(x)
            self.src.append(np.full(t.size, index, dtype=np.int64))
            self.pos.append(np.arange(t.size, dtype=np.int64))

    def merged(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.t:
            return np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64)
        t, v = np.concatenate(self.t), np.concatenate(self.v)
        src, pos = np.concatenate(self.src), np.concatenate(self.pos)
        self.order = np.lexsort((pos, src, t))
        return t[self.order], v[self.order], src[self.order]

    def exact(self) -> np.ndarray:
        """The exact values in the order of :meth:`merged` (called after it)."""
        if not self.x:
            return np.empty(0, dtype=object)
        return np.concatenate(self.x)[self.order]


def _points(changes: ChangeSet, state: StreamState, rows: list[tuple[int, pa.Table]]
            ) -> tuple[_Inputs, bool | None]:
    """Merged inputs of ``(source index, rows)`` pairs, with exact values when the run must be
    exact (see :func:`_exact_mode`)."""
    mode = _exact_mode(state, changes, rows)
    inputs = _Inputs()
    derivation = state.derivation
    for index, table in rows:
        source, reset = derivation.sources[index], _is_reset(derivation, index)
        t, v = _as_points(changes, source, table, reset)
        x = None
        if mode is not None:
            x = np.empty(t.size, dtype=object)
            x[:] = _exact_points(changes, source, table, reset, v)
        inputs.add(index, t, v, x)
    return inputs, mode


def derive(changes: ChangeSet, stream_id: str) -> None:
    """Bring one derived stream up to date with the commit under construction."""
    state = changes.states[stream_id]
    derivation = state.derivation
    if derivation is None or state.pending_backprocess:
        return
    operator = state.operator or OperatorState.fresh(derivation.op)
    watermark = _watermark(changes, state)
    late = _late_time(changes, state, operator)
    if late is not None:
        _rederive(changes, state, late, watermark)
        return
    if watermark is None:
        return
    done = operator.done
    rows = []
    for index, source in enumerate(derivation.sources):
        table = _unprocessed(changes, state, source, done, watermark)
        if table.num_rows:
            rows.append((index, table))
    if done is not None and rows and (_exact_mode(state, changes, rows) is not None
                                      or _carries_rounded(derivation, operator)):
        # the exact operators start from a fresh state: replay from the input before these,
        # as for a late point (the carried state is float64)
        _rederive(changes, state, done, watermark)
        return
    inputs, mode = _points(changes, state, rows)
    t, v, src = inputs.merged()
    if not t.size and (done is not None and watermark <= done):
        return
    out_t, out_v = _run(state, operator, t, v, src, inputs.exact() if mode is not None else None,
                        mode)
    _advance(state, operator, t, src, watermark)
    state.operator = operator
    changes.touch(stream_id)
    if out_t.size:
        changes.add_raw(stream_id, _output_table(state, out_t, out_v))


def _is_reset(derivation, index: int) -> bool:
    return spec(derivation.op).is_reset(index)


def _watermark(changes: ChangeSet, state: StreamState) -> int | None:
    derivation = state.derivation
    operator = spec(derivation.op)
    holding = [source for position, source in enumerate(derivation.sources)
               if operator.holds_back(position)]
    finals = [final_time(changes, source) for source in holding]
    if any(final is None for final in finals):
        return None
    if not operator.bucketed:
        return min(finals)
    # The bucket holding the earliest final time is processed whole: a source whose final
    # time lies past it holds all its points there, and a source's later points never change
    # its first point of a bucket. So a sum is emitted as soon as every source has a value
    # for the bucket; one some source has not reached yet stays open (``_advance``).
    return state.highest.last_us(min(finals))


def _late_time(changes: ChangeSet, state: StreamState, operator: OperatorState) -> int | None:
    """Earliest changed input time at or before what was already processed, or None."""
    done = operator.done
    if done is None:
        return None
    bucketed = spec(state.derivation.op).bucketed
    late = None
    for index, source in enumerate(state.derivation.sources):
        changed = _changed_from(changes, source)
        if changed is not None and changed <= done:
            late = changed if late is None else min(late, changed)
        new = _new_rows(changes, source)
        if new is not None and new.num_rows:
            first = int(arrow_numpy.to_numpy(new.column("t")).min())
            if bucketed and _in_order(changes, source, first):
                continue  # its bucket's first point, if processed, came before it
            if first < done or (first == done and index < operator.done_src):
                late = first if late is None else min(late, first)
    origin = _origin(state)
    if late is not None and origin is not None:
        late = max(late, origin)
    return late


def _in_order(changes: ChangeSet, source: Source, first: int) -> bool:
    """Whether new rows starting at ``first`` come at or after everything the source held
    before this commit."""
    base = changes.base.get(source.stream_id)
    return base is not None and base.latest is not None and first >= base.latest


def _origin(state: StreamState) -> int | None:
    """Inputs before this time are never processed (history skipped at creation)."""
    return None if state.operator is None else state.operator.origin


def _unprocessed(
    changes: ChangeSet, state: StreamState, source: Source, done: int | None, watermark: int
) -> pa.Table:
    """Input rows of one source not processed yet, up to the watermark."""
    if done is None:
        return _read(changes, source, _origin(state), watermark + 1)
    base = changes.base.get(source.stream_id)
    stored_beyond = base is not None and base.latest is not None and base.latest > done
    if not _is_raw_fed(changes, source) or stored_beyond:
        rows = _read(changes, source, done + 1, watermark + 1)
    else:
        new = changes.new_raw(source.stream_id)
        rows = (arrow_numpy.empty_table(raw_schema()) if new is None
                else slice_t(new, done + 1, watermark + 1))
    new = _new_rows(changes, source)
    origin = _origin(state)
    if new is not None and (origin is None or done >= origin):
        at_done = slice_t(new, done, done + 1)
        if at_done.num_rows:  # appended at the processed time, after what was processed there
            rows = pa.concat_tables([at_done.cast(raw_schema()), rows.cast(raw_schema())])
    return rows


def _advance(
    state: StreamState, operator: OperatorState, t: np.ndarray, src: np.ndarray, watermark: int
) -> None:
    """Record what is processed now: everything up to the watermark, except that a bucketed
    operator (``sum``) keeps an unfinished bucket open (its inputs are read again next time)."""
    done = watermark
    if spec(state.derivation.op).bucketed:
        bucket = state.highest.floor_us(watermark)
        if operator.last is None or operator.last < bucket:
            done = bucket - 1
    at_done = src[t == done]
    previous = operator.done_src if operator.done == done else -1
    operator.done_src = max(previous, int(at_done.max())) if at_done.size else previous
    operator.done = done
    operator.final = done


def _rederive(
    changes: ChangeSet, state: StreamState, late: int, watermark: int | None
) -> None:
    """Replace the outputs from ``late`` on by a replay from the input before it."""
    derivation = state.derivation
    late = max(late, MIN_US)
    start = state.highest.floor_us(late) if spec(derivation.op).bucketed else late
    operator = OperatorState.fresh(derivation.op)
    operator.origin = _origin(state)
    rows = []
    if watermark is not None:
        begin, keep = _restart(changes, state, late, start)
        if operator.origin is not None:
            begin = operator.origin if begin is None else max(begin, operator.origin)
        for index, source in enumerate(derivation.sources):
            table = _read(changes, source, begin, watermark + 1)
            if table.num_rows:
                t, v = _as_points(changes, source, table, _is_reset(derivation, index))
                mask = keep(index, t, v)
                rows.append((index, table.filter(arrow_numpy.from_numpy(mask))))
    inputs, mode = _points(changes, state, rows)
    t, v, src = inputs.merged()
    out_t, out_v = _run(state, operator, t, v, src, inputs.exact() if mode is not None else None,
                        mode)
    if watermark is not None:
        _advance(state, operator, t, src, watermark)
        if spec(derivation.op).bucketed and operator.done < start - 1:
            # The buckets before ``start`` were processed before (``late`` was at or before
            # what was done) and their outputs are kept: a replay that emitted nothing yet (a
            # source level reopened back to ``start``) must not take them up again.
            operator.done = operator.final = start - 1
            operator.done_src = -1
    kept = out_t >= start
    out_t, out_v = out_t[kept], out_v[kept]
    state.operator = operator
    changes.add_raw(state.stream_id, _output_table(state, out_t, out_v), replace_from=start)
    _refresh_extent(changes, state, start, out_t)


def _restart(changes: ChangeSet, state: StreamState, late: int, start: int):
    """Where a replay from ``late`` begins, and which rows at that instant it skips: the
    operators' state is the previous point of their data source, so starting at its last point
    before ``late`` (the last non-null one when nulls keep the state, as for counter_reset)
    with a fresh state reproduces the state exactly."""
    derivation = state.derivation
    origin = _origin(state)

    def everything(index, t, v):
        return np.ones(t.size, dtype=bool)

    operator = spec(derivation.op)
    if operator.bucketed:
        return start, everything
    data_index = operator.data_source
    source = derivation.sources[data_index]
    need_value = operator.nulls_keep_state
    anchor = _last_before(changes, source, late, need_value, origin)
    if anchor is None:
        return origin, everything

    def keep(index, t, v):
        mask = np.ones(t.size, dtype=bool)
        at_anchor = t == anchor
        if index == data_index:
            # only the last (non-null for counter_reset) point at the anchor time: earlier
            # points there were followed by it, so they do not shape the state
            candidates = np.flatnonzero(at_anchor & (~np.isnan(v) if need_value else True))
            if candidates.size:
                mask[at_anchor] = False
                mask[candidates[-1]:][t[candidates[-1]:] == anchor] = True
        else:  # resets at the anchor time came before the anchor point in merge order
            mask[at_anchor] = False
        return mask

    return anchor, keep


def _last_before(
    changes: ChangeSet, source: Source, before: int, need_value: bool, origin: int | None
) -> int | None:
    """Time of the last input point of ``source`` before ``before`` (non-null when
    ``need_value``), looking back in growing windows; None when there is none."""
    state = changes.states[source.stream_id]
    earliest = state.earliest if origin is None else max(origin, state.earliest or origin)
    if earliest is None or earliest >= before:
        return None
    span = LOOKBACK_START_US
    high = before
    while True:
        low = max(before - span, earliest)
        rows = _read(changes, source, low, high)
        if rows.num_rows:
            t, v = _as_points(changes, source, rows, False)
            if need_value:
                valid = ~np.isnan(v)
                t = t[valid]
            if t.size:
                return int(t.max())
        if low <= earliest:
            return None
        high = low
        span *= LOOKBACK_GROWTH


def _refresh_extent(changes: ChangeSet, state: StreamState, start: int, out_t: np.ndarray) -> None:
    """Earliest/latest after outputs from ``start`` on were replaced."""
    if state.latest is not None and state.latest >= start:
        if out_t.size:
            state.latest = int(out_t.max())
        else:
            state.latest = _last_output_before(changes, state, start)
    if state.earliest is not None and state.earliest >= start:
        state.earliest = int(out_t.min()) if out_t.size else None
    elif state.earliest is None and out_t.size:
        state.earliest = int(out_t.min())
    if state.earliest is None:
        state.latest = None


def _last_output_before(changes: ChangeSet, state: StreamState, before: int) -> int | None:
    if state.earliest is None or state.earliest >= before:
        return None
    own = Source(state.stream_id, None, state.highest)
    return _last_before(changes, own, before, False, None)


def _run(
    state: StreamState, operator: OperatorState, t: np.ndarray, v: np.ndarray, src: np.ndarray,
    exact: np.ndarray | None = None, decimal: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the operator's kernel over merged inputs, carrying ``operator`` in and out. With
    ``exact`` values (the run starts from a fresh state), the outputs are those of the exact
    operators instead (Decimal when ``decimal``), an object array; the kernel still runs for
    the state it carries to the next batch and for its warnings."""
    derivation = state.derivation
    last_emitted = operator.last
    size = t.shape[0]
    out_t = np.empty(size, dtype=np.int64)
    out_v = np.empty(size, dtype=np.float64)
    out_valid = np.empty(size, dtype=np.bool_)
    if not size:
        return out_t[:0], out_v[:0]
    operator_spec = spec(derivation.op)
    batch = Batch(
        t, src, v, ~np.isnan(v), np.asarray(operator.values, dtype=np.float64),
        NO_TIME if operator.last is None else operator.last, derivation.args,
        len(derivation.sources), state.highest.width_us, out_t, out_v, out_valid,
    )
    counted = list(operator_spec.warning_counts)
    before = batch.state[counted]
    count = operator_spec.run(batch)
    dropped = batch.state[counted] - before
    if (dropped > 0).any():
        _warn(f"derived stream {state.stream_id}: "
              + operator_spec.warning.format(*(int(n) for n in dropped)))
    operator.last = None if batch.last == NO_TIME else int(batch.last)
    operator.values = batch.state.tolist()
    if exact is not None:
        times, outputs = exact_operators.run(
            derivation.op, t, src, exact.tolist(), derivation.args, len(derivation.sources),
            state.highest.width_us, last_emitted, bool(decimal))
        exact_values = np.empty(len(outputs), dtype=object)
        exact_values[:] = outputs
        return np.array(times, dtype=np.int64), exact_values
    return out_t[:count], np.where(out_valid[:count], out_v[:count], np.nan)


def _warn(message: str) -> None:
    warnings.warn(message, exceptions.InvalidValueWarning, stacklevel=2)


def _output_table(state: StreamState, t: np.ndarray, v: np.ndarray) -> pa.Table:
    if state.value_type == "nominal":
        size = t.shape[0]
        return pa.table(
            {
                "t": arrow_numpy.of_type(t, pa.int64()),
                "k": arrow_numpy.from_numpy(np.full(size, values.KIND_JSON, dtype=np.int8)),
                "i": pa.nulls(size, pa.int64()),
                "f": pa.nulls(size, pa.float64()),
                "s": arrow_numpy.repeated_text("1", size),
            },
            schema=raw_schema(),
        )
    return values.encode_arrays(t, v, "numeric", state.options, state.stream_id)


# -- replay ---------------------------------------------------------------------------------


def replay(changes: ChangeSet, stream_id: str) -> None:
    """Backprocess one derived stream: clear it and process all source history."""
    state = changes.states[stream_id]
    changes.clear(stream_id)
    state.earliest = state.latest = None
    state.bounds = {key: None for key in state.bounds}
    state.pending_backprocess = False
    state.operator = OperatorState.fresh(state.derivation.op)
    watermark = _watermark(changes, state)
    if watermark is None:
        return
    rows = []
    for index, source in enumerate(state.derivation.sources):
        table = _read(changes, source, None, watermark + 1)
        if table.num_rows:
            rows.append((index, table))
    inputs, mode = _points(changes, state, rows)
    t, v, src = inputs.merged()
    out_t, out_v = _run(state, state.operator, t, v, src,
                        inputs.exact() if mode is not None else None, mode)
    _advance(state, state.operator, t, src, watermark)
    changes.add_raw(stream_id, _output_table(state, out_t, out_v))


def skip_history(changes: ChangeSet, state: StreamState) -> None:
    """A new derived stream that never processes what its sources hold now."""
    watermark = _watermark(changes, state)
    operator = state.operator or OperatorState.fresh(state.derivation.op)
    if watermark is not None:
        operator.done = operator.final = watermark
        operator.origin = watermark + 1
        if spec(state.derivation.op).bucketed:
            operator.last = state.highest.floor_us(watermark)
    state.operator = operator


# -- order ----------------------------------------------------------------------------------


def sources_first(states: dict[str, StreamState], ids: set[str]) -> list[str]:
    """``ids`` ordered so that each derived stream comes after its sources among them."""
    ordered: list[str] = []
    placed: set[str] = set()
    remaining = sorted(ids)
    while remaining:
        progressed = False
        for stream_id in list(remaining):
            derivation = states[stream_id].derivation
            sources = derivation.stream_ids if derivation is not None else []
            if all(s not in ids or s in placed or s == stream_id for s in sources):
                ordered.append(stream_id)
                placed.add(stream_id)
                remaining.remove(stream_id)
                progressed = True
        if not progressed:  # a cycle cannot be configured; keep going rather than loop
            ordered.extend(remaining)
            break
    return ordered


__all__ = ["EVERYTHING", "derive", "final_time", "replay", "skip_history", "sources_first",
           "validate"]

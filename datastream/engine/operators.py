"""Derive operators over flushed batches: validation, live propagation and replay (SPEC §7).

Every derived stream keeps, in its metadata, the operator state and the input points it could
not process yet. Inputs of several sources are processed only up to the *watermark*: the time
up to which every source is final (a raw source: its latest datapoint; a level source: its
downsampled bound; a derived source: its own watermark). Below the watermark the merged input
order (time, then declared source order) is fixed, so results never depend on batching.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from .. import exceptions, values
from ..granularity import GranularityLevel, resolve
from ..kernels import derive as kernels
from ..storage.base import RAW_SCHEMA, MetaUpdate, StreamRecord, WriteBatch

NO_WATERMARK = -(2**63)
_STATE_SIZES = {"sum": 0, "derivative": 4, "counter_reset": 2, "counter_derivative": 5}


# -- validation -----------------------------------------------------------------------------


def validate(
    op: str, sources: list[dict], args: dict, highest: GranularityLevel, engine: Any
) -> None:
    """Raise the SPEC's exception for a configuration the operator cannot run."""
    ids = [source["stream"] for source in sources]
    if op == "sum":
        if not sources:
            raise exceptions.InvalidOperatorArguments("sum needs at least one source stream")
        if len(set(ids)) != len(ids):
            raise exceptions.InvalidOperatorArguments(f"sum sources must be distinct: {ids}")
    elif op in ("derivative", "counter_reset"):
        if len(sources) != 1:
            raise exceptions.InvalidOperatorArguments(
                f"{op} needs exactly one source stream, got {len(sources)}"
            )
    elif op == "counter_derivative":
        if len(sources) != 2:
            raise exceptions.InvalidOperatorArguments(
                f"counter_derivative needs exactly two sources, got {len(sources)}"
            )
        if sources[0]["name"] != "reset" or sources[1]["name"] is not None:
            raise exceptions.InvalidOperatorArguments(
                "counter_derivative needs the first source named 'reset' and the second unnamed"
            )
    allowed = {"max_value"} if op == "counter_derivative" else set()
    unknown = set(args) - allowed
    if unknown:
        raise exceptions.InvalidOperatorArguments(
            f"{op} takes no arguments {sorted(map(values.show, unknown))}"
        )
    if "max_value" in args:
        _check_max_value(args["max_value"])
    for position, source in enumerate(sources):
        if resolve(source["granularity"]) != highest:
            raise exceptions.IncompatibleGranularities(
                f"source {source['stream']} at {source['granularity']} does not match the "
                f"derived stream's highest granularity {highest}"
            )
        is_reset = op == "counter_derivative" and position == 0
        value_type = engine.record(source["stream"]).meta["value_type"]
        if not is_reset and value_type != "numeric":
            raise exceptions.IncompatibleTypes(
                f"{op} needs numeric sources; stream {source['stream']} is {value_type}"
            )


def _check_max_value(value: Any) -> None:
    """The kernel wraps counters in float64 and backends store the argument in JSON or BSON: a
    finite positive float, or a positive int within int64 (larger ones: pass a float)."""
    shown = values.show(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise exceptions.InvalidOperatorArguments(f"max_value must be a number, got {shown}")
    if not value > 0:  # also NaN
        raise exceptions.InvalidOperatorArguments(f"max_value must be positive, got {shown}")
    if isinstance(value, int) and value > values.INT64_MAX:
        raise exceptions.InvalidOperatorArguments(
            f"max_value {shown} is beyond int64; pass it as a float"
        )
    if not math.isfinite(value):
        raise exceptions.InvalidOperatorArguments(f"max_value must be finite, got {shown}")


def _fresh_state(op: str) -> dict[str, Any]:
    return {"op": [0.0] * _STATE_SIZES[op], "pending": {}, "watermark": None, "last": None}


# -- inputs ---------------------------------------------------------------------------------


def _points_from_raw(table: pa.Table, as_reset: bool) -> tuple[np.ndarray, np.ndarray]:
    """(t, v) with NaN for nulls; a reset input becomes 1.0 (truthy) or 0.0."""
    t = table.column("t").to_numpy().astype(np.int64)
    if as_reset:
        decoded = values.decode_values(table, "nominal", {})
        kinds = table.column("k").to_numpy()
        v = np.array([1.0 if value else 0.0 for value in decoded], dtype=np.float64)
        v[kinds == 0] = np.nan
        return t, v
    numbers, valid = values.numeric_columns(table)
    return t, np.where(valid, numbers, np.nan)


def _points_from_level(rows: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Bucket starts and bucket means (NaN for empty buckets) of level rows."""
    t = rows.column("t").to_numpy().astype(np.int64)
    count = rows.column("c").to_numpy(zero_copy_only=False).astype(np.float64)
    total = rows.column("s").to_numpy(zero_copy_only=False).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
    return t, mean


class _Run:
    """One derived stream being fed: inputs per source, watermark, state."""

    def __init__(self, record: StreamRecord, state: dict[str, Any]) -> None:
        self.record = record
        self.config = record.meta["derived_from"]
        self.state = state
        count = len(self.config["sources"])
        self.t: list[list[np.ndarray]] = [[] for _ in range(count)]
        self.v: list[list[np.ndarray]] = [[] for _ in range(count)]
        for key, pending in state["pending"].items():
            index = int(key)
            self.t[index].append(np.asarray(pending["t"], dtype=np.int64))
            self.v[index].append(
                np.array([np.nan if x is None else x for x in pending["v"]], dtype=np.float64)
            )

    def add(self, index: int, t: np.ndarray, v: np.ndarray) -> None:
        self.t[index].append(t)
        self.v[index].append(v)

    def feed(
        self,
        engine: Any,
        raw_of: Callable[[str], pa.Table | None],
        level_of: Callable[[StreamRecord, GranularityLevel], pa.Table | None],
    ) -> None:
        """Add each source's new points: raw rows for a source at its highest granularity,
        bucket means of level rows for a source at a coarser level."""
        for index, source in enumerate(self.config["sources"]):
            source_record = engine.record(source["stream"])
            level = resolve(source["granularity"])
            if level == resolve(source_record.meta["highest_granularity"]):
                table = raw_of(source["stream"])
                if table is not None and table.num_rows:
                    is_reset = self.config["op"] == "counter_derivative" and index == 0
                    self.add(index, *_points_from_raw(table, is_reset))
            else:
                rows = level_of(source_record, level)
                if rows is not None and rows.num_rows:
                    self.add(index, *_points_from_level(rows))

    def has_input(self) -> bool:
        return any(part.size for parts in self.t for part in parts)

    def run(self, watermark: int) -> tuple[np.ndarray, np.ndarray]:
        """Process every input point at or before ``watermark``; keep the rest pending."""
        op = self.config["op"]
        ts, vs, srcs, pending = [], [], [], {}
        for index in range(len(self.t)):
            t = np.concatenate(self.t[index]) if self.t[index] else np.empty(0, np.int64)
            v = np.concatenate(self.v[index]) if self.v[index] else np.empty(0, np.float64)
            ready = t <= watermark
            ts.append(t[ready])
            vs.append(v[ready])
            srcs.append(np.full(int(ready.sum()), index, dtype=np.int64))
            if not ready.all():
                pending[index] = (t[~ready], v[~ready])
        t = np.concatenate(ts)
        v = np.concatenate(vs)
        src = np.concatenate(srcs)
        order = np.lexsort((src, t))  # time, then declared source order; stable within
        t, v, src = t[order], v[order], src[order]
        out_t, out_v, kept = self._kernel(op, t, v, src)
        for index, (kt, kv) in kept.items():
            old = pending.get(index)
            pending[index] = (kt, kv) if old is None else (
                np.concatenate([kt, old[0]]), np.concatenate([kv, old[1]]))
        self.state["pending"] = {
            str(index): {"t": pt.tolist(), "v": [None if np.isnan(x) else float(x) for x in pv]}
            for index, (pt, pv) in pending.items()
            if pt.size
        }
        self.state["watermark"] = int(watermark)
        return out_t, out_v

    def _kernel(self, op: str, t, v, src):
        size = t.shape[0]
        out_t = np.empty(size, dtype=np.int64)
        out_v = np.empty(size, dtype=np.float64)
        out_valid = np.empty(size, dtype=np.bool_)
        valid = ~np.isnan(v)
        state = np.asarray(self.state["op"], dtype=np.float64)
        kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        stream_id = self.record.stream_id
        if op == "derivative":
            zero_before = state[3]
            count = kernels.derivative(t, v, valid, state, out_t, out_v, out_valid)
            if state[3] > zero_before:
                warnings.warn(
                    f"derived stream {stream_id}: {int(state[3] - zero_before)} points with a "
                    "zero time step emitted nothing",
                    exceptions.InvalidValueWarning,
                    stacklevel=6,
                )
        elif op == "counter_reset":
            count = kernels.counter_reset(t, v, valid, state, out_t)
            out_v[:count] = 1.0
            out_valid[:count] = True
        elif op == "counter_derivative":
            max_value = float(self.config["args"].get("max_value", -1.0))
            before = state[3], state[4]
            count = kernels.counter_derivative(
                t, src, np.where(valid, v, 0.0), valid, max_value, state, out_t, out_v, out_valid
            )
            if state[3] > before[0] or state[4] > before[1]:
                warnings.warn(
                    f"derived stream {stream_id}: {int(state[3] - before[0])} counter decreases "
                    f"without max_value and {int(state[4] - before[1])} zero time steps emitted "
                    "nothing",
                    exceptions.InvalidValueWarning,
                    stacklevel=6,
                )
        else:  # sum
            level = resolve(self.record.meta["highest_granularity"])
            bucket = (t // level.width_us) * level.width_us
            last = self.state["last"]
            count, last, open_from = kernels.bucket_sum(
                bucket, src, np.where(valid, v, 0.0), valid, len(self.t),
                NO_WATERMARK if last is None else last, out_t, out_v, out_valid,
            )
            self.state["last"] = None if last == NO_WATERMARK else int(last)
            for index in np.unique(src[open_from:]):
                chosen = src[open_from:] == index
                kept[int(index)] = (t[open_from:][chosen], v[open_from:][chosen])
        self.state["op"] = state.tolist()
        out_v = np.where(out_valid[:count], out_v[:count], np.nan)
        return out_t[:count], out_v, kept


# -- propagation ----------------------------------------------------------------------------


def _watermark(engine: Any, source: dict, batch: WriteBatch) -> int:
    """Time up to which a source is final, as seen with ``batch`` applied."""
    record = engine.record(source["stream"])
    update = batch.meta.get(record.stream_id)
    meta = update.apply_to(record.meta) if update else record.meta
    if meta.get("derived_from"):
        state = meta.get("derive_state") or {}
        mark = state.get("watermark")
        return NO_WATERMARK if mark is None else mark
    level = resolve(source["granularity"])
    if level == resolve(meta["highest_granularity"]):
        latest = meta.get("latest_datapoint")
        return NO_WATERMARK if latest is None else latest
    bound = (meta.get("downsampled_until") or {}).get(level.key)
    return NO_WATERMARK if bound is None else bound - 1


def _dependents_in_order(engine: Any, changed: set[str]) -> list[StreamRecord]:
    """Derived streams reachable from ``changed``, each after all of its reachable sources."""
    reachable: dict[str, StreamRecord] = {}
    queue = deque(changed)
    while queue:
        stream_id = queue.popleft()
        for dependent in engine.record(stream_id).meta.get("contributes_to") or {}:
            if dependent not in reachable:
                try:
                    reachable[dependent] = engine.record(dependent)
                except exceptions.StreamNotFound:
                    continue
                queue.append(dependent)
    return _sources_first(reachable)


def _sources_first(records: dict[str, StreamRecord]) -> list[StreamRecord]:
    """Derived streams ordered so that each comes after those of its sources in ``records``."""
    ordered: list[StreamRecord] = []
    placed: set[str] = set()
    while len(ordered) < len(records):
        progressed = False
        for stream_id, record in records.items():
            if stream_id in placed:
                continue
            sources = record.meta["derived_from"]["stream_ids"]
            if all(s not in records or s in placed for s in sources):
                ordered.append(record)
                placed.add(stream_id)
                progressed = True
        if not progressed:  # a cycle cannot be configured; stop rather than loop
            break
    return ordered


def _output_table(record: StreamRecord, t: np.ndarray, v: np.ndarray) -> pa.Table:
    if record.meta["value_type"] == "nominal":
        size = t.shape[0]
        return pa.table(
            {
                "t": pa.array(t, pa.int64()),
                "k": pa.array(np.full(size, 4, dtype=np.int8)),
                "i": pa.nulls(size, pa.int64()),
                "f": pa.nulls(size, pa.float64()),
                "s": pa.array(["1"] * size, pa.string()),
            },
            schema=RAW_SCHEMA,
        )
    return values.encode_arrays(
        t, v, "numeric", record.meta["value_type_options"], record.stream_id
    )


def propagate(
    engine: Any,
    raw_tables: dict[str, pa.Table],
    batch: WriteBatch,
    level_inputs: dict[tuple[str, str], pa.Table] | None = None,
) -> None:
    """Feed new source rows (raw, or materialised level rows keyed by (stream, level key)) into
    every live derived stream that depends on them, adding outputs to ``batch``."""
    level_inputs = level_inputs or {}
    changed = dict(raw_tables)
    roots = set(changed) | {stream_id for stream_id, _ in level_inputs}
    for record in _dependents_in_order(engine, roots):
        if record.meta.get("pending_backprocess"):
            continue
        update = batch.meta.get(record.stream_id)
        meta = update.apply_to(record.meta) if update else record.meta
        state = meta.get("derive_state") or _fresh_state(meta["derived_from"]["op"])
        run = _Run(record, _copy_state(state))
        run.feed(
            engine,
            lambda stream_id: changed.get(stream_id),
            lambda source, level: level_inputs.get((source.stream_id, level.key)),
        )
        if not run.has_input():
            continue
        mark = min(_watermark(engine, source, batch) for source in run.config["sources"])
        out_t, out_v = run.run(mark)
        target = batch.meta.setdefault(record.stream_id, MetaUpdate())
        target.set["derive_state"] = run.state
        if out_t.size:
            output = _output_table(record, out_t, out_v)
            existing = batch.raw.get(record.stream_id)
            batch.raw[record.stream_id] = (
                output if existing is None else pa.concat_tables([existing, output])
            )
            changed[record.stream_id] = output
            target.max["latest_datapoint"] = int(out_t.max())
            target.min["earliest_datapoint"] = int(out_t.min())
        else:
            changed.setdefault(record.stream_id, RAW_SCHEMA.empty_table())


def _copy_state(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "op": list(state["op"]),
        "pending": {k: {"t": list(p["t"]), "v": list(p["v"])} for k, p in state["pending"].items()},
        "watermark": state.get("watermark"),
        "last": state.get("last"),
    }


# -- replay ---------------------------------------------------------------------------------


def backprocess(engine: Any, records: list[StreamRecord]) -> list[str]:
    """Recompute matching derived streams from all source history, sources first."""
    derived = {
        r.stream_id
        for r in records
        if engine.record(r.stream_id).meta.get("derived_from")
        and engine.record(r.stream_id).meta.get("derive_history") != "skip"
    }
    if not derived:
        return []
    done = []
    for record in _sources_first({stream_id: engine.record(stream_id) for stream_id in derived}):
        _replay(engine, engine.record(record.stream_id))
        done.append(record.stream_id)
    return done


def _replay(engine: Any, record: StreamRecord) -> None:
    from .reading import Range, level_rows

    meta = record.meta
    config = meta["derived_from"]
    batch = WriteBatch(clear_raw=[record.stream_id], clear_levels=[record.stream_id])
    reset = MetaUpdate(
        set={
            "earliest_datapoint": None,
            "latest_datapoint": None,
            "downsampled_until": {key: None for key in (meta.get("downsampled_until") or {})},
            "pending_backprocess": False,
            "derive_state": _fresh_state(config["op"]),
        }
    )
    fresh = StreamRecord(record.stream_id, record.tags, reset.apply_to(meta))
    run = _Run(fresh, _fresh_state(config["op"]))
    everything = Range(None, False, None, False)
    run.feed(
        engine,
        lambda stream_id: engine.storage.read_raw(stream_id, None, None),
        lambda source, level: level_rows(engine.storage, source, level, everything, False),
    )
    mark = min(_watermark(engine, source, WriteBatch()) for source in config["sources"])
    out_t, out_v = run.run(mark)
    reset.set["derive_state"] = run.state
    batch.meta[record.stream_id] = reset
    if out_t.size:
        batch.raw[record.stream_id] = _output_table(fresh, out_t, out_v)
        reset.set["earliest_datapoint"] = int(out_t.min())
        reset.set["latest_datapoint"] = int(out_t.max())
    engine.commit(batch)

"""Typed stream state: the engine's view of one stored stream record.

The stored record (:class:`~datastream.storage.base.StreamRecord`) is the truth: user tags, a
JSON ``meta`` dict and a version that every stored change increments. :class:`StreamState` is
the typed form the engine works with; :meth:`StreamState.from_record` and
:meth:`StreamState.meta` are the only places that know the JSON keys, so a misspelt key cannot
hide in the engine. Times are int64 epoch microseconds, granularities ``GranularityLevel``.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from .. import downsamplers
from ..granularity import GranularityLevel, coarser_levels, resolve
from ..storage.base import StreamRecord
from .operator_specs import spec


@dataclasses.dataclass(frozen=True)
class Source:
    """One input of a derived stream: a stream read at one granularity, optionally named."""

    stream_id: str
    name: str | None
    level: GranularityLevel

    def to_json(self) -> dict[str, Any]:
        return {"stream": self.stream_id, "name": self.name, "granularity": self.level.name}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Source:
        return cls(data["stream"], data.get("name"), resolve(data["granularity"]))


@dataclasses.dataclass(frozen=True)
class Derivation:
    """How a derived stream is computed. ``history`` is ``'replay'`` (source history is
    processed by backprocessing) or ``'skip'`` (only points appended after creation)."""

    op: str
    args: dict[str, Any]
    sources: tuple[Source, ...]
    history: str = "replay"

    @property
    def stream_ids(self) -> list[str]:
        return [source.stream_id for source in self.sources]

    def public(self) -> dict[str, Any]:
        """The ``derived_from`` value of get_tags."""
        return {"stream_ids": self.stream_ids, "op": self.op, "args": copy.deepcopy(self.args)}


@dataclasses.dataclass
class OperatorState:
    """What a derived stream carries between batches.

    ``values``: the kernel's state vector. Inputs are processed in merge order (time, then
    declared source order, then append order) up to ``done``: every input at or before that
    time has been processed, and ``done_src`` is the highest source index among the processed
    inputs at exactly ``done`` (-1: none), so that an input arriving later at ``done`` from a
    lower source index is recognised as out of order. ``last``: the last bucket ``sum``
    emitted. ``final``: outputs at or before this time can no longer change (what streams
    derived from this one may process). ``origin``: inputs before this time are never
    processed (a stream created with ``derive_backprocess=False`` skips source history).
    """

    values: list[float]
    done: int | None = None
    done_src: int = -1
    last: int | None = None
    final: int | None = None
    origin: int | None = None

    @classmethod
    def fresh(cls, op: str) -> OperatorState:
        """The state of an operator that has seen nothing (its declared vector size)."""
        return cls([0.0] * spec(op).state_size)

    def to_json(self) -> dict[str, Any]:
        return {
            "values": list(self.values),
            "done": self.done,
            "done_src": self.done_src,
            "last": self.last,
            "final": self.final,
            "origin": self.origin,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None, op: str) -> OperatorState:
        if not data or "values" not in data:
            return cls.fresh(op)
        return cls(
            [float(x) for x in data["values"]],
            data.get("done"),
            int(data.get("done_src", -1)),
            data.get("last"),
            data.get("final"),
            data.get("origin"),
        )


@dataclasses.dataclass
class StreamState:
    """One stream as the engine sees it (typed form of a stored record)."""

    stream_id: str
    tags: dict[str, Any]
    version: int
    value_downsamplers: tuple[str, ...]
    highest: GranularityLevel
    value_type: str
    options: dict[str, Any]
    earliest: int | None = None
    latest: int | None = None
    bounds: dict[str, int | None] = dataclasses.field(default_factory=dict)
    pending_backprocess: bool = False
    contributes_to: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    derivation: Derivation | None = None
    operator: OperatorState | None = None
    # Lifecycle (behaviour §11): retention per granularity key (µs of history kept; absent =
    # forever), the earliest kept bucket of levels that lost older ones, and the time before
    # which raw points were deleted.
    retention: dict[str, int | None] = dataclasses.field(default_factory=dict)
    level_floors: dict[str, int] = dataclasses.field(default_factory=dict)
    raw_floor: int | None = None

    # -- conversions -----------------------------------------------------------------------
    @classmethod
    def new(
        cls,
        stream_id: str,
        tags: dict[str, Any],
        value_downsamplers: list[str],
        highest: GranularityLevel,
        value_type: str,
        options: dict[str, Any],
        derivation: Derivation | None = None,
        pending_backprocess: bool = False,
    ) -> StreamState:
        """A stream that holds no data yet."""
        return cls(
            stream_id=stream_id,
            tags=tags,
            version=0,
            value_downsamplers=tuple(value_downsamplers),
            highest=highest,
            value_type=value_type,
            options=dict(options),
            bounds={level.key: None for level in coarser_levels(highest)},
            pending_backprocess=pending_backprocess,
            derivation=derivation,
            operator=None if derivation is None else OperatorState.fresh(derivation.op),
        )

    @classmethod
    def from_record(cls, record: StreamRecord) -> StreamState:
        meta = record.meta
        highest = resolve(meta["highest_granularity"])
        derived = meta.get("derived_from")
        derivation = None
        operator = None
        if derived:
            derivation = Derivation(
                derived["op"],
                dict(derived.get("args") or {}),
                tuple(Source.from_json(source) for source in derived["sources"]),
                meta.get("derive_history", "replay"),
            )
            operator = OperatorState.from_json(meta.get("derive_state"), derivation.op)
        stored_bounds = meta.get("downsampled_until") or {}
        return cls(
            stream_id=record.stream_id,
            tags=record.tags,
            version=record.version,
            value_downsamplers=tuple(meta["value_downsamplers"]),
            highest=highest,
            value_type=meta["value_type"],
            options=dict(meta["value_type_options"]),
            earliest=meta.get("earliest_datapoint"),
            latest=meta.get("latest_datapoint"),
            bounds={level.key: stored_bounds.get(level.key) for level in coarser_levels(highest)},
            pending_backprocess=bool(meta.get("pending_backprocess", False)),
            contributes_to=dict(meta.get("contributes_to") or {}),
            derivation=derivation,
            operator=operator,
            retention={key: None if us is None else int(us)
                       for key, us in (meta.get("retention") or {}).items()},
            level_floors={key: int(t) for key, t in (meta.get("level_floors") or {}).items()},
            raw_floor=meta.get("raw_floor"),
        )

    def meta(self) -> dict[str, Any]:
        """The JSON ``meta`` dict stored for this state."""
        meta: dict[str, Any] = {
            "value_downsamplers": list(self.value_downsamplers),
            "time_downsamplers": list(downsamplers.TIME_DOWNSAMPLERS),
            "highest_granularity": self.highest.name,
            "value_type": self.value_type,
            "value_type_options": dict(self.options),
            "earliest_datapoint": self.earliest,
            "latest_datapoint": self.latest,
            "downsampled_until": dict(self.bounds),
            "pending_backprocess": self.pending_backprocess,
            "contributes_to": copy.deepcopy(self.contributes_to),
        }
        # always written: a MetaUpdate replaces the keys it names and leaves the others
        meta["retention"] = dict(self.retention)
        meta["level_floors"] = dict(self.level_floors)
        meta["raw_floor"] = self.raw_floor
        if self.derivation is not None:
            derivation = self.derivation
            meta["derived_from"] = {
                **derivation.public(),
                "sources": [source.to_json() for source in derivation.sources],
            }
            meta["derive_history"] = derivation.history
            operator = self.operator or OperatorState.fresh(derivation.op)
            meta["derive_state"] = operator.to_json()
        return meta

    def record(self) -> StreamRecord:
        return StreamRecord(self.stream_id, copy.deepcopy(self.tags), self.meta(), self.version)

    def copy(self) -> StreamState:
        """An independent copy (the engine mutates states while building a commit)."""
        return dataclasses.replace(
            self,
            tags=copy.deepcopy(self.tags),
            options=dict(self.options),
            bounds=dict(self.bounds),
            contributes_to=copy.deepcopy(self.contributes_to),
            retention=dict(self.retention),
            level_floors=dict(self.level_floors),
            operator=None if self.operator is None else dataclasses.replace(
                self.operator, values=list(self.operator.values)
            ),
        )

    # -- derived facts ---------------------------------------------------------------------
    @property
    def levels(self) -> list[GranularityLevel]:
        """Levels coarser than the highest granularity, finest first."""
        return coarser_levels(self.highest)

    @property
    def first_level(self) -> GranularityLevel | None:
        levels = self.levels
        return levels[0] if levels else None

    def bound(self, level: GranularityLevel) -> int | None:
        """``downsampled_until`` of one level (exclusive), None when nothing is closed."""
        return self.bounds.get(level.key)

    def level_start(self, level: GranularityLevel) -> int | None:
        """Start of the earliest bucket a level shows: its first bucket, or the earliest one
        retention kept (None while the stream holds no data)."""
        floor = self.level_floors.get(level.key)
        if floor is not None:
            return floor
        return None if self.earliest is None else level.floor_us(self.earliest)

    @property
    def frozen_until(self) -> int | None:
        """Raw points before this instant are downsampled: appends there are refused."""
        level = self.first_level
        return None if level is None else self.bounds.get(level.key)

    @property
    def value_keys(self) -> set[str]:
        return {downsamplers.VALUE_DOWNSAMPLERS[name] for name in self.value_downsamplers}

    @property
    def is_derived(self) -> bool:
        return self.derivation is not None

    def extend(self, earliest: int, latest: int) -> None:
        """Widen the extent by appended points."""
        self.earliest = earliest if self.earliest is None else min(self.earliest, earliest)
        self.latest = latest if self.latest is None else max(self.latest, latest)

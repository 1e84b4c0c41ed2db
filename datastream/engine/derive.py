"""Derived streams: configuration, dependency bookkeeping and propagation on flush (SPEC §7).

The operators themselves are vectorised kernels in ``datastream.kernels.derive``; this module
validates configurations, keeps ``derived_from`` / ``contributes_to`` consistent, and feeds each
flushed batch of a source into its dependents with their carried state.
"""

from __future__ import annotations

from typing import Any

from .. import exceptions
from ..granularity import GranularityLevel, resolve
from ..storage.base import MetaUpdate, StreamRecord, WriteBatch

# name → value types the derived stream may have
DERIVE_OPERATORS: dict[str, tuple[str, ...]] = {
    "sum": ("numeric",),
    "derivative": ("numeric",),
    "counter_reset": ("nominal",),
    "counter_derivative": ("numeric",),
}


class Deriver:
    """Derived-stream logic bound to one engine."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    # -- configuration ---------------------------------------------------------------------
    def prepare(
        self,
        derive_from: Any,
        derive_op: str | None,
        derive_args: dict[str, Any] | None,
        highest: GranularityLevel,
        value_type: str,
    ) -> dict[str, Any]:
        """Validate a derived-stream configuration; returns the ``derived_from`` metadata."""
        if derive_op is None:
            raise ValueError("derive_op is required when derive_from is given")
        if derive_op not in DERIVE_OPERATORS:
            raise exceptions.UnsupportedDeriveOperator(f"unsupported derive operator {derive_op!r}")
        if derive_from is None:
            raise ValueError(f"derive operator {derive_op!r} needs derive_from")
        if value_type not in DERIVE_OPERATORS[derive_op]:
            raise exceptions.UnsupportedDeriveOperator(
                f"derive operator {derive_op!r} does not support value type {value_type!r}"
            )
        args = {} if derive_args is None else derive_args
        if not isinstance(args, dict):
            raise exceptions.InvalidOperatorArguments(f"derive_args must be a dict, got {args!r}")
        items = derive_from if isinstance(derive_from, list | tuple) else [derive_from]
        sources = [self._source(item) for item in items]
        from . import operators

        operators.validate(derive_op, sources, args, highest, self.engine)
        return {
            "stream_ids": [source["stream"] for source in sources],
            "op": derive_op,
            "args": args,
            "sources": sources,
        }

    def _source(self, item: Any) -> dict[str, Any]:
        if isinstance(item, dict):
            if "stream" not in item:
                raise exceptions.InvalidOperatorArguments(
                    f"a derive_from entry needs a 'stream' key, got {item!r}"
                )
            stream_id, name, granularity = item["stream"], item.get("name"), item.get("granularity")
        else:
            stream_id, name, granularity = item, None, None
        record = self.engine.record(stream_id)
        highest = resolve(record.meta["highest_granularity"])
        level = highest if granularity is None else resolve(granularity)
        if level > highest:
            raise exceptions.IncompatibleGranularities(
                f"source stream {stream_id} has highest granularity {highest}; "
                f"{level} is finer"
            )
        return {"stream": record.stream_id, "name": name, "granularity": level.name}

    def sources_hold_data(self, derived: dict[str, Any]) -> bool:
        for stream_id in derived["stream_ids"]:
            earliest, _ = self.engine.pending_extent(stream_id)
            if earliest is not None:
                return True
        return False

    def link(self, record: StreamRecord) -> None:
        """Record the new derived stream in its sources' ``contributes_to``."""
        derived = record.meta["derived_from"]
        batch = WriteBatch()
        for stream_id in dict.fromkeys(derived["stream_ids"]):
            source = self.engine.record(stream_id)
            contributes = dict(source.meta.get("contributes_to") or {})
            contributes[record.stream_id] = {"op": derived["op"], "args": derived["args"]}
            batch.meta[stream_id] = MetaUpdate(set={"contributes_to": contributes})
        self.engine.commit(batch)

    # -- deleting --------------------------------------------------------------------------
    def delete(self, records: list[StreamRecord]) -> None:
        """Delete streams atomically; refuse when a dependent would be left behind."""
        ids = {record.stream_id for record in records}
        for record in records:
            record = self.engine.record(record.stream_id)
            dependents = set(record.meta.get("contributes_to") or {}) - ids
            if dependents:
                raise exceptions.OutstandingDependenciesError(
                    f"stream {record.stream_id} feeds derived streams {sorted(dependents)}; "
                    "delete them together"
                )
        if not records:
            return
        # Sources that survive forget the derived streams being deleted.
        unlink = WriteBatch()
        for record in records:
            derived = self.engine.record(record.stream_id).meta.get("derived_from")
            for source_id in (derived or {}).get("stream_ids", []):
                if source_id in ids:
                    continue
                source = self.engine.record(source_id)
                contributes = dict(source.meta.get("contributes_to") or {})
                contributes.pop(record.stream_id, None)
                unlink.meta[source_id] = MetaUpdate(set={"contributes_to": contributes})
        self.engine.delete(records)
        self.engine.commit(unlink)

    # -- propagation -----------------------------------------------------------------------
    def on_flush(self, raw_tables: dict, batch: WriteBatch) -> None:
        """Feed flushed source batches into their derived streams (same commit)."""
        from . import operators

        operators.propagate(self.engine, raw_tables, batch)

    def on_levels(self, stream_id: str, steps: list, batch: WriteBatch) -> None:
        """Feed newly materialised level buckets (empty ones included) to derived streams."""
        from .. import downsamplers
        from . import operators
        from .downsampling import conform

        level_inputs = {
            (stream_id, step.level.key): downsamplers.fill_empty(
                conform(step.rows), step.start_us, step.end_us, step.level.width_us
            )
            for step in steps
        }
        operators.propagate(self.engine, {}, batch, level_inputs)

    def backprocess(self, records: list[StreamRecord]) -> list[str]:
        from . import operators

        return operators.backprocess(self.engine, records)

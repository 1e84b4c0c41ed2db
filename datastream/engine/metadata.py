"""The engine's per-stream metadata (``StreamRecord.meta``) and its public, get_tags shape.

``meta`` is plain JSON so every backend can store it: times are int epoch microseconds,
granularities their ``.name``.
"""

from __future__ import annotations

import copy
from typing import Any

from .. import downsamplers
from ..granularity import GranularityLevel, coarser_levels, from_us, resolve
from ..storage.base import StreamRecord


def new_meta(
    value_downsamplers: list[str],
    highest_granularity: GranularityLevel,
    value_type: str,
    value_type_options: dict[str, Any],
    derived_from: dict[str, Any] | None = None,
    pending_backprocess: bool = False,
) -> dict[str, Any]:
    """Metadata of a stream that holds no data yet."""
    meta: dict[str, Any] = {
        "value_downsamplers": value_downsamplers,
        "time_downsamplers": list(downsamplers.TIME_DOWNSAMPLERS),
        "highest_granularity": highest_granularity.name,
        "value_type": value_type,
        "value_type_options": value_type_options,
        "earliest_datapoint": None,
        "latest_datapoint": None,
        "downsampled_until": {level.key: None for level in coarser_levels(highest_granularity)},
        "pending_backprocess": pending_backprocess,
        "contributes_to": {},
    }
    if derived_from is not None:
        meta["derived_from"] = derived_from
    return meta


def _optional_datetime(value: int | None):
    return None if value is None else from_us(value)


def public_tags(record: StreamRecord) -> dict[str, Any]:
    """User tags merged with the reserved fields, as ``get_tags`` returns them (SPEC §3.1)."""
    meta = record.meta
    highest = resolve(meta["highest_granularity"])
    bounds = meta.get("downsampled_until") or {}
    result = copy.deepcopy(record.tags)
    result.update(
        {
            "stream_id": record.stream_id,
            "value_downsamplers": list(meta["value_downsamplers"]),
            "time_downsamplers": list(meta["time_downsamplers"]),
            "highest_granularity": highest,
            "pending_backprocess": bool(meta.get("pending_backprocess", False)),
            "earliest_datapoint": _optional_datetime(meta.get("earliest_datapoint")),
            "latest_datapoint": _optional_datetime(meta.get("latest_datapoint")),
            "downsampled_until": {
                level.name: _optional_datetime(bounds.get(level.key))
                for level in coarser_levels(highest)
            },
            "value_type": meta["value_type"],
            "value_type_options": copy.deepcopy(meta["value_type_options"]),
        }
    )
    if meta.get("derived_from"):
        derived = meta["derived_from"]
        result["derived_from"] = {
            "stream_ids": list(derived["stream_ids"]),
            "op": derived["op"],
            "args": copy.deepcopy(derived["args"]),
        }
    if meta.get("contributes_to"):
        result["contributes_to"] = copy.deepcopy(meta["contributes_to"])
    return result

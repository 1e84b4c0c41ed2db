"""The public, get_tags shape of a stream state (behaviour §3.1)."""

from __future__ import annotations

import copy
from typing import Any

from .. import downsamplers
from ..granularity import from_us
from . import retention
from .state import StreamState


def _optional_datetime(value: int | None):
    return None if value is None else from_us(value)


def public_tags(
    state: StreamState, earliest: int | None, latest: int | None
) -> dict[str, Any]:
    """User tags merged with the reserved fields; ``earliest``/``latest`` include what the
    caller still buffers."""
    result = copy.deepcopy(state.tags)
    result.update(
        {
            "stream_id": state.stream_id,
            "value_downsamplers": list(state.value_downsamplers),
            "time_downsamplers": list(downsamplers.TIME_DOWNSAMPLERS),
            "highest_granularity": state.highest,
            "pending_backprocess": state.pending_backprocess,
            "earliest_datapoint": _optional_datetime(earliest),
            "latest_datapoint": _optional_datetime(latest),
            "downsampled_until": {
                level.name: _optional_datetime(state.bound(level)) for level in state.levels
            },
            "value_type": state.value_type,
            "value_type_options": copy.deepcopy(state.options),
        }
    )
    if state.retention:
        result["retention"] = retention.public(state)
    if state.derivation is not None:
        result["derived_from"] = state.derivation.public()
    if state.contributes_to:
        result["contributes_to"] = copy.deepcopy(state.contributes_to)
    return result

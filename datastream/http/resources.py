"""The stream resource: a stream's ``get_tags`` record in django-datastream's field names.

User tags go under ``tags``; reserved metadata (behaviour §3.1) becomes top-level fields,
granularities by name and times as ISO 8601 UTC strings with microseconds and ``Z``.
"""

from __future__ import annotations

import datetime
from typing import Any

from ..tags import RESERVED_TAGS

API_ROOT = "/api/v1/stream/"


def iso(moment: datetime.datetime | None) -> str | None:
    """``2026-11-30T12:00:00.250000Z`` (the datapoints' format too); None stays None."""
    if moment is None:
        return None
    utc = moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


def resource_uri(stream_id: str) -> str:
    return f"{API_ROOT}{stream_id}/"


def stream_resource(tags: dict[str, Any]) -> dict[str, Any]:
    stream_id = tags["stream_id"]
    return {
        "id": stream_id,
        "resource_uri": resource_uri(stream_id),
        "tags": {key: value for key, value in tags.items() if key not in RESERVED_TAGS},
        "value_downsamplers": list(tags["value_downsamplers"]),
        "time_downsamplers": list(tags["time_downsamplers"]),
        "highest_granularity": tags["highest_granularity"].name,
        "earliest_datapoint": iso(tags["earliest_datapoint"]),
        "latest_datapoint": iso(tags["latest_datapoint"]),
        "value_type": tags["value_type"],
        "value_type_options": tags["value_type_options"],
        "derived_from": tags.get("derived_from"),
        "contributes_to": tags.get("contributes_to"),
        "pending_backprocess": bool(tags["pending_backprocess"]),
    }

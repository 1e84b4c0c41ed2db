"""``datastream.Stream``: attribute access to a get_tags-shaped dict."""

from __future__ import annotations

from typing import Any

from .tags import RESERVED_TAGS

_REQUIRED = (
    ("id", "stream_id"),
    ("value_downsamplers", "value_downsamplers"),
    ("time_downsamplers", "time_downsamplers"),
    ("highest_granularity", "highest_granularity"),
    ("pending_backprocess", "pending_backprocess"),
    ("latest_datapoint", "latest_datapoint"),
    ("earliest_datapoint", "earliest_datapoint"),
    ("value_type", "value_type"),
    ("value_type_options", "value_type_options"),
)
_OPTIONAL = ("downsampled_until", "derived_from", "contributes_to")


class Stream:
    """A stream's metadata. ``tags`` holds the user tags only; reserved fields are attributes."""

    def __init__(self, stream: dict[str, Any]) -> None:
        for attribute, key in _REQUIRED:
            if key not in stream:
                raise ValueError(f"stream metadata lacks the required key {key!r}")
            setattr(self, attribute, stream[key])
        for key in _OPTIONAL:
            if key in stream:
                setattr(self, key, stream[key])
        self.tags = {key: value for key, value in stream.items() if key not in RESERVED_TAGS}

    def __repr__(self) -> str:
        return f"<Stream {self.id} tags={self.tags!r}>"

"""What each level of a stream keeps (behaviour §11): its retention and its oldest point, as
``retention show`` and ``info`` report them."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from .. import Datapoints, Datastream, arrow_numpy
from ..granularity import Granularity, GranularityLevel, from_us, resolve

UNBOUNDED = datetime.datetime.min  # get_data: datetime.min means no lower bound


@dataclasses.dataclass
class LevelKept:
    """One granularity of a stream: raw points (its highest granularity) or a level."""

    granularity: GranularityLevel
    is_raw: bool
    retention: datetime.timedelta | None  # None: kept forever
    oldest: datetime.datetime | None  # None: holds nothing yet

    @property
    def label(self) -> str:
        """``seconds (raw)``, ``10seconds (S)``: the name, and the key storage uses."""
        return f"{self.granularity.name} ({'raw' if self.is_raw else self.granularity.key})"

    @property
    def oldest_text(self) -> str:
        """The oldest point for a table: ISO-8601 with ``Z`` (narrow enough for 80 columns),
        ``-`` when there is none."""
        return "-" if self.oldest is None else self.oldest.isoformat().replace("+00:00", "Z")


def shown_levels(tags: dict[str, Any]) -> list[GranularityLevel]:
    """The stream's highest granularity, then the coarser levels it downsamples into (none
    without value downsamplers)."""
    highest = resolve(tags["highest_granularity"])
    coarser = [level for level in Granularity.values if level < highest]
    return [highest, *coarser] if tags["value_downsamplers"] else [highest]


def full_read(ds: Datastream, stream_id: str, level: GranularityLevel) -> Datapoints:
    """Every datapoint a read of the level returns, lazily (empty buckets included)."""
    return ds.get_data(stream_id, level, start=UNBOUNDED, value_downsamplers=[],
                       time_downsamplers=[])


def first_time(points: Datapoints) -> datetime.datetime | None:
    """Time of a read's first datapoint (a level's bucket start); a level read builds only
    the page that holds it."""
    if not len(points):
        return None
    # through numpy: a timestamp scalar's as_py() imports pandas on its first use
    return from_us(int(arrow_numpy.to_numpy(points[:1].to_arrow().column("t"))[0]))


def level_kept(tags: dict[str, Any], level: GranularityLevel,
               points: Datapoints | None) -> LevelKept:
    """``points``: a full read of a level (unused for raw points, whose oldest kept point
    is ``earliest_datapoint``)."""
    is_raw = level == resolve(tags["highest_granularity"])
    retention = (tags.get("retention") or {}).get(level.name)
    oldest = tags["earliest_datapoint"] if is_raw or points is None else first_time(points)
    return LevelKept(level, is_raw, retention, oldest)


def stream_kept(ds: Datastream, tags: dict[str, Any]) -> list[LevelKept]:
    """Every granularity of one stream, raw points first (read no raw point: their oldest is
    ``earliest_datapoint``)."""
    raw, *levels = shown_levels(tags)
    return [level_kept(tags, raw, None), *(
        level_kept(tags, level, full_read(ds, tags["stream_id"], level)) for level in levels)]

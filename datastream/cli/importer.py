"""Writing an import plan, resumable after an interruption.

Each stream's rows go in time order, in batches of ``batch_rows``, each flushed before the next
(so a batch is committed or absent). Whatever an earlier run committed for a stream is
therefore a prefix of that stream's rows in the plan. On every run the importer reads, per
stream, the latest stored timestamp ``L`` and the number ``k`` of stored raw points at exactly
``L``, and skips the rows before ``L`` and the first ``k`` rows at ``L``: re-running the same
command after a crash stores nothing twice and completes the import. A consequence, by design:
rows older than what a stream already holds are never imported (they count as already stored).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import Datastream
from ..granularity import from_us, to_us
from .plan import ImportPlan

DEFAULT_BATCH_ROWS = 100_000
EVERYTHING = datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)


@dataclasses.dataclass
class ImportReport:
    streams: int = 0
    created: int = 0
    appended: int = 0
    skipped: int = 0
    older: int = 0
    """Of the skipped rows, how many more than the stream holds over their time span: rows
    older than the stream's latest point that an earlier run cannot have stored."""


def already_stored(ds: Datastream, stream_id: str, t_us: np.ndarray) -> int:
    """How many leading rows of a stream's sorted ``t_us`` an earlier run has stored."""
    tags = ds.get_tags(stream_id)
    latest = tags["latest_datapoint"]
    if latest is None or not len(t_us):
        return 0
    latest_us = to_us(latest)
    at_latest = len(ds.get_data(stream_id, tags["highest_granularity"], start=latest,
                                end=latest).to_arrow())
    before = int(np.searchsorted(t_us, latest_us, side="left"))
    through = int(np.searchsorted(t_us, latest_us, side="right"))
    return before + min(at_latest, through - before)


def stored_between(ds: Datastream, stream_id: str, first_us: int, last_us: int) -> int:
    """How many raw points the stream holds from ``first_us`` to ``last_us`` (inclusive)."""
    tags = ds.get_tags(stream_id)
    return len(ds.get_data(stream_id, tags["highest_granularity"], start=from_us(first_us),
                           end=from_us(last_us)))


def write_plan(ds: Datastream, plan: ImportPlan, downsamplers: list[str], granularity: Any,
               batch_rows: int = DEFAULT_BATCH_ROWS,
               advance: Callable[[int], None] = lambda rows: None,
               on_batch: Callable[[dict[str, Any], int], None] = lambda query, rows: None,
               ) -> ImportReport:
    """Create the streams (all of them first), then append each stream's remaining rows."""
    report = ImportReport(streams=len(plan.series))
    existing = [bool(ds.find_streams(query)) for query in plan.series]
    ids: list[str | None] = [None] * len(plan.series)
    # the existing streams first: one whose configuration differs refuses the import before
    # any new stream is created
    for index in sorted(range(len(ids)), key=lambda i: not existing[i]):
        ids[index] = ds.ensure_stream(plan.series[index], {}, downsamplers, granularity)
    report.created = existing.count(False)
    for index, stream_id in enumerate(ids):
        assert stream_id is not None
        t_us, values = plan.stream_rows(index)
        skip = already_stored(ds, stream_id, t_us)
        if skip:
            report.older += max(0, skip - stored_between(ds, stream_id, int(t_us[0]),
                                                         int(t_us[skip - 1])))
        report.skipped += skip
        advance(skip)
        for start in range(skip, len(t_us), batch_rows):
            end = min(start + batch_rows, len(t_us))
            report.appended += ds.append_arrays(stream_id, t_us[start:end],
                                                values[start:end], unit="us")
            ds.flush()
            advance(end - start)
            on_batch(plan.series[index], end - start)
    return report

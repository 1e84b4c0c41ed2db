"""``verify``: every matching stream, one after the other, each read window by window."""

from __future__ import annotations

import duckdb

from ..storage.base import Storage, StreamRecord
from . import windows
from .derived import check_derived
from .levels import check_levels
from .result import Verification
from .sql_oracle import WindowOracle


def verify(
    storage: Storage, records: list[StreamRecord], window_points: int | None = None
) -> Verification:
    """Compare the stored levels of ``records`` with their raw data, and derived streams with
    a replay of their sources. ``window_points`` caps the rows read at once (default
    ``windows.WINDOW_POINTS``)."""
    budget = window_points or windows.WINDOW_POINTS
    result = Verification()
    known: dict[str, StreamRecord] = {record.stream_id: record for record in records}

    def lookup(stream_id: str) -> StreamRecord:
        if stream_id not in known:
            record = storage.get_stream(stream_id)
            if record is None:
                raise LookupError(f"source stream {stream_id} of a derived stream is missing")
            known[stream_id] = record
        return known[stream_id]

    connection = duckdb.connect()
    try:
        sql = WindowOracle(connection)
        for record in records:
            result.checked["streams"] += 1
            check_levels(storage, record, sql, result, budget)
            if record.meta.get("derived_from"):
                check_derived(storage, record, lookup, sql, result, budget)
    finally:
        connection.close()
    return result

"""Derive operators: validation, live propagation and backprocessing (work in progress)."""

from __future__ import annotations

from typing import Any

from ..granularity import GranularityLevel
from ..storage.base import StreamRecord, WriteBatch


def validate(op: str, sources: list[dict], args: dict, highest: GranularityLevel, engine) -> None:
    return None


def propagate(engine: Any, raw_tables: dict, batch: WriteBatch) -> None:
    return None


def backprocess(engine: Any, records: list[StreamRecord]) -> list[str]:
    return []

"""All input files merged into one import plan: rows per stream, in time order.

Streams keep the order in which the files first show them; each stream's rows are sorted by
time stably (rows with equal timestamps keep file order). This fixed order is what makes an
interrupted import resumable (see :mod:`.importer`).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

from .series import Parsed


@dataclasses.dataclass
class ImportPlan:
    """Rows ``starts[i]:starts[i + 1]`` of ``t_us`` / ``values`` belong to ``series[i]``."""

    series: list[dict[str, Any]]
    starts: np.ndarray
    t_us: np.ndarray
    values: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.t_us)

    def stream_rows(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = int(self.starts[index]), int(self.starts[index + 1])
        return self.t_us[start:end], self.values[start:end]


def build_plan(files: list[Parsed]) -> ImportPlan:
    series: list[dict[str, Any]] = []
    known: dict[str, int] = {}
    streams, times, values = [], [], []
    for parsed in files:
        remap = np.empty(len(parsed.series), dtype=np.int64)
        for local, query in enumerate(parsed.series):
            key = json.dumps(query, sort_keys=True, default=str)
            remap[local] = known.setdefault(key, len(series))
            if remap[local] == len(series):
                series.append(query)
        streams.append(remap[parsed.stream] if parsed.rows else parsed.stream)
        times.append(parsed.t_us)
        values.append(parsed.values)
    stream = np.concatenate(streams) if streams else np.zeros(0, dtype=np.int64)
    t_us = np.concatenate(times) if times else np.zeros(0, dtype=np.int64)
    merged = _merge_values(values)
    order = np.lexsort((t_us, stream))  # stable: equal keys keep file order
    stream_sorted = stream[order]
    starts = np.searchsorted(stream_sorted, np.arange(len(series) + 1), side="left")
    return ImportPlan(series, starts, t_us[order], merged[order])


def _merge_values(parts: list[np.ndarray]) -> np.ndarray:
    """One column: int64 when every file had integers without nulls, else float64."""
    if not parts:
        return np.zeros(0, dtype=np.float64)
    if all(part.dtype == np.int64 for part in parts):
        return np.concatenate(parts)
    return np.concatenate([part.astype(np.float64) for part in parts])

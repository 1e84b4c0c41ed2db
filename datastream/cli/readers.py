"""Readers of tabular input files (CSV, Parquet, JSON lines) into validated ``Parsed`` rows.

Files are read with pyarrow's own readers, whole columns at a time; nothing is written until
every file has been read and checked. When pyarrow rejects a file's structure (a CSV row with
the wrong number of fields, a JSON line that does not parse), a slow diagnostic pass over the
text runs only to name the offending line.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any, BinaryIO

import pyarrow as pa

from . import columns
from .bad_input import BadInput, Positions
from .series import Parsed, group_rows

Advance = Callable[[int], None]  # progress callback: bytes read since the last call


@dataclasses.dataclass
class TableSpec:
    """Which columns hold what (the ``import`` options)."""

    time_column: str | None = None  # None: the first of TIME_COLUMNS the file has
    value_column: str = "value"
    tag_columns: tuple[str, ...] = ()
    constant_tags: dict[str, Any] = dataclasses.field(default_factory=dict)
    unit: str | None = None

    @property
    def needed(self) -> list[str]:
        return list(dict.fromkeys([self.time_column, self.value_column, *self.tag_columns]))

    def resolved(self, present: list[str], source: str) -> TableSpec:
        """This spec with its time column chosen among the file's columns, all checked."""
        spec = self
        if self.time_column is None:
            found = next((name for name in TIME_COLUMNS if name in present), None)
            if found is None:
                raise BadInput(source, f"no time column (looked for {', '.join(TIME_COLUMNS)};"
                                       f" columns: {', '.join(present)}): give --time-column")
            spec = dataclasses.replace(self, time_column=found)
        missing = [name for name in spec.needed if name not in present]
        if missing:
            raise BadInput(source, f"no column {missing[0]!r} (columns: {', '.join(present)})")
        return spec


# Names a timestamp column is looked for under when --time-column is not given, in this order.
TIME_COLUMNS = ("timestamp", "time", "t", "ts", "datetime", "date")


class _Counting:
    """A binary file that reports how many bytes were read (progress over bytes)."""

    def __init__(self, handle: BinaryIO, advance: Advance) -> None:
        self._handle = handle
        self._advance = advance
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self._advance(len(data))
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


def parse_table(table: pa.Table, spec: TableSpec, positions: Positions) -> Parsed:
    """Validate and convert the columns of a whole file."""
    t_us = columns.timestamps_us(table.column(spec.time_column), spec.unit, spec.time_column,
                                 positions)
    values = columns.numbers(table.column(spec.value_column), spec.value_column, positions)
    tag_columns = {name: columns.flat(table.column(name)) for name in spec.tag_columns}
    series, stream = group_rows(tag_columns, table.num_rows, spec.constant_tags, positions)
    return Parsed(positions, series, stream, t_us, values)


# -- CSV --------------------------------------------------------------------------------------

def _csv_header(path: str) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        return next(csv.reader(handle), [])


def _csv_structure_problem(path: str, source: str, error: Exception) -> BadInput:
    """Find the first line whose number of fields differs from the header's."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        for fields in reader:
            if fields and len(fields) != len(header):
                return BadInput(f"{source}:{reader.line_num}",
                                f"expected {len(header)} fields, found {len(fields)}")
    return BadInput(source, f"not readable as CSV: {error}")


def read_csv(path: str, spec: TableSpec, advance: Advance) -> Parsed:
    import pyarrow.csv as pcsv

    source = os.path.basename(path)
    header = _csv_header(path)
    spec = spec.resolved(header, source)
    convert = pcsv.ConvertOptions(
        include_columns=spec.needed,
        column_types={name: pa.string() for name in spec.needed},
        strings_can_be_null=True, null_values=[""],
    )
    read = pcsv.ReadOptions(block_size=1 << 22)
    try:
        with open(path, "rb") as handle:
            table = pcsv.read_csv(_Counting(handle, advance), read_options=read,
                                  convert_options=convert)
    except pa.ArrowInvalid as error:
        raise _csv_structure_problem(path, source, error) from None
    return parse_table(table, spec, Positions(source, first_line=2))


# -- Parquet ----------------------------------------------------------------------------------

def read_parquet(path: str, spec: TableSpec, advance: Advance) -> Parsed:
    import pyarrow.parquet as pq

    source = os.path.basename(path)
    try:
        handle = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise BadInput(source, f"not a Parquet file: {error}") from None
    spec = spec.resolved(handle.schema_arrow.names, source)
    size = os.path.getsize(path)
    groups = max(handle.num_row_groups, 1)
    parts = []
    for group in range(handle.num_row_groups):
        parts.append(handle.read_row_group(group, columns=spec.needed))
        advance(size // groups)
    table = (pa.concat_tables(parts) if parts
             else handle.schema_arrow.empty_table().select(spec.needed))
    return parse_table(table, spec, Positions(source, first_line=None))


# -- JSON lines -------------------------------------------------------------------------------

def _json_structure_problem(path: str, source: str, spec: TableSpec,
                            error: Exception) -> BadInput:
    """Find the first line that is not a JSON object or whose value is not a number."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as problem:
                return BadInput(f"{source}:{number}", f"not valid JSON ({problem.msg})")
            if not isinstance(record, dict):
                return BadInput(f"{source}:{number}", "not a JSON object")
            value = record.get(spec.value_column)
            if isinstance(value, bool | str | list | dict):
                return BadInput(f"{source}:{number}", f"{value!r} is not a number",
                                spec.value_column)
    return BadInput(source, f"not readable as JSON lines: {error}")


def read_jsonl(path: str, spec: TableSpec, advance: Advance) -> Parsed:
    import pyarrow.json as pjson

    source = os.path.basename(path)
    try:
        with open(path, "rb") as handle:
            table = pjson.read_json(_Counting(handle, advance),
                                    read_options=pjson.ReadOptions(block_size=1 << 22))
    except pa.ArrowInvalid as error:
        raise _json_structure_problem(path, source, spec, error) from None
    spec = spec.resolved(table.column_names, source)
    return parse_table(table, spec, Positions(source, first_line=1))


READERS: dict[str, Callable[[str, TableSpec, Advance], Parsed]] = {
    "csv": read_csv, "parquet": read_parquet, "jsonl": read_jsonl,
}
EXTENSIONS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl",
              ".ndjson": "jsonl", ".json": "jsonl", ".lp": "line", ".line": "line"}

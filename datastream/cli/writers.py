"""Writing an Arrow table to CSV, Parquet or JSON lines, whole columns at a time.

CSV and Parquet use pyarrow's writers. JSON lines go through DuckDB's JSON writer (DuckDB is
already the embedded store's engine), after timestamps are turned into ISO-8601 text by a
vectorised ``strftime``; it escapes strings and writes maps as objects. CSV holds only flat
columns: a map such as ``frequencies`` must go to Parquet or JSON lines.
"""

from __future__ import annotations

import os

import click
import pyarrow as pa

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl",
           ".ndjson": "jsonl", ".json": "jsonl"}


def format_of(path: str, given: str | None) -> str:
    if given:
        return given
    extension = os.path.splitext(path)[1].lower()
    if extension not in FORMATS:
        raise click.UsageError(f"cannot tell the format of {path!r} from its extension; "
                               "give --format csv|parquet|jsonl")
    return FORMATS[extension]


def _iso_timestamps(table: pa.Table) -> pa.Table:
    import pyarrow.compute as pc

    for index, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            utc = table.column(index).cast(pa.timestamp("us", "UTC"))
            text = pc.strftime(utc, format="%Y-%m-%dT%H:%M:%SZ")
            table = table.set_column(index, field.name, text)
    return table


def write_csv(table: pa.Table, path: str) -> None:
    import pyarrow.csv as pcsv

    for field in table.schema:
        if pa.types.is_nested(field.type):
            raise ValueError(f"CSV cannot hold column {field.name!r} ({field.type}); "
                             "export to .parquet or .jsonl")
    pcsv.write_csv(table, path)


def write_parquet(table: pa.Table, path: str) -> None:
    import pyarrow.parquet as pq

    pq.write_table(table, path)


def write_jsonl(table: pa.Table, path: str) -> None:
    import duckdb

    connection = duckdb.connect()
    try:
        connection.register("export_rows", _iso_timestamps(table))
        escaped = path.replace("'", "''")
        connection.execute(f"COPY export_rows TO '{escaped}' (FORMAT JSON)")
    finally:
        connection.close()


WRITERS = {"csv": write_csv, "parquet": write_parquet, "jsonl": write_jsonl}


def write_table(table: pa.Table, path: str, kind: str) -> None:
    WRITERS[kind](table, path)

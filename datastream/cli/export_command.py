"""``datastream export``: one stream's range at any level, or many streams as one table."""

from __future__ import annotations

import datetime
from typing import Any

import click

from .. import Datastream, exceptions
from .options import (
    parse_granularity,
    parse_time,
    query_options,
    store_options,
    time_downsamplers,
    value_downsamplers,
)
from .progress import progress_bar
from .writers import format_of, write_table

UNBOUNDED = datetime.datetime.min  # get_data: datetime.min means no lower bound


def one_stream(ds: Datastream, stream_id: str | None, query: dict[str, Any]) -> dict[str, Any]:
    """The tags of the one stream named by ``--stream-id`` or by a query."""
    if stream_id:
        return ds.get_tags(stream_id)
    if not query:
        raise click.UsageError("give --stream-id, or --tag/--query naming one stream (or --table)")
    found = ds.find_streams(query)
    if len(found) != 1:
        problem = exceptions.StreamNotFound if not found else exceptions.MultipleStreamsReturned
        raise problem(f"the query {query} matches {len(found)} streams; export needs exactly "
                      "one (or use --table)")
    return found[0]


def tag_paths(text: str | None) -> tuple[Any, ...]:
    """``host,meta.rack`` → ("host", ("meta", "rack"))."""
    if not text:
        return ()
    paths: list[Any] = []
    for name in (part.strip() for part in text.split(",")):
        if name:
            pieces = tuple(name.split("."))
            paths.append(pieces[0] if len(pieces) == 1 else pieces)
    return tuple(paths)


@click.command("export")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, writable=True),
              help="file to write (.csv, .parquet or .jsonl)")
@click.option("--format", "format_", type=click.Choice(["csv", "parquet", "jsonl"]),
              help="output format (default: from the extension)")
@click.option("--stream-id", help="the stream to export")
@click.option("--table", "as_table", is_flag=True,
              help="every stream matching --tag/--query as one long table")
@click.option("--tag-columns", metavar="PATHS",
              help="with --table: tags to add as columns, e.g. host,metric (nested: a.b)")
@click.option("--granularity", help="level to read (default: the stream's highest, raw)")
@click.option("--start", help="ISO-8601, inclusive (default: the first point)")
@click.option("--end", help="ISO-8601, inclusive (default: the last point)")
@click.option("--downsamplers", help="value downsamplers to keep, comma-separated")
@click.option("--time-downsamplers", "time_names",
              help="time downsamplers to keep, comma-separated")
@query_options
@store_options
def export(ds: Datastream, query: dict[str, Any], output: str, format_: str | None,
           stream_id: str | None, as_table: bool, tag_columns: str | None,
           granularity: str | None, start: str | None, end: str | None,
           downsamplers: str | None, time_names: str | None, quiet: bool) -> None:
    """Write datapoints to a CSV, Parquet or JSON lines file.

    Raw points have columns t and v; downsampled levels t and one column per downsampler.
    --table adds stream_id and the --tag-columns, ordered by stream then time."""
    kind = format_of(output, format_)
    level = parse_granularity(granularity)
    begin, until = parse_time(start, "--start"), parse_time(end, "--end")
    values, times = value_downsamplers(downsamplers), time_downsamplers(time_names)
    with progress_bar("exporting", None, quiet=quiet):
        if as_table:
            if level is None:
                raise click.UsageError("--table needs --granularity")
            table = ds.get_table(query, level, start=begin, end=until, value_downsamplers=values,
                                 time_downsamplers=times, tags=tag_paths(tag_columns))
        else:
            tags = one_stream(ds, stream_id, query)
            datapoints = ds.get_data(
                tags["stream_id"], level or tags["highest_granularity"],
                start=begin or UNBOUNDED, end=until,
                value_downsamplers=values, time_downsamplers=times,
            )
            table = datapoints.to_arrow()
        write_table(table, output, kind)
    if not quiet:
        click.echo(f"wrote {table.num_rows:,} rows to {output}")

COMMANDS = [export]

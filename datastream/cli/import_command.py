"""``datastream import FILE...``: CSV, Parquet, JSON lines or InfluxDB line protocol.

Every file is read and checked completely before anything is written (a bad file writes
nothing); then the streams are created and their rows appended per stream, in time order, in
flushed batches, which makes an interrupted import resumable (see :mod:`.importer`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

from .. import Datastream
from .importer import DEFAULT_BATCH_ROWS, write_plan
from .line_protocol import read_line_protocol
from .options import lazy_store_options, parse_granularity, parse_tags, value_downsamplers
from .plan import build_plan
from .progress import progress_bar
from .readers import EXTENSIONS, READERS, TableSpec
from .series import Parsed

DEFAULT_DOWNSAMPLERS = "mean,min,max"


def file_format(path: str, given: str | None) -> str:
    if given:
        return given
    extension = os.path.splitext(path)[1].lower()
    if extension not in EXTENSIONS:
        raise click.BadParameter(f"cannot tell the format of {path!r} from its extension; "
                                 "give --format", param_hint="FILE")
    return EXTENSIONS[extension]


def read_files(paths: tuple[str, ...], formats: list[str], spec: TableSpec, precision: str,
               quiet: bool) -> list[Parsed]:
    total = sum(os.path.getsize(path) for path in paths)
    parsed = []
    with progress_bar("checking", total, unit="bytes", quiet=quiet) as bar:
        for path, kind in zip(paths, formats):
            if kind == "line":
                parsed.append(read_line_protocol(path, precision, spec.constant_tags,
                                                 bar.advance))
            else:
                parsed.append(READERS[kind](path, spec, bar.advance))
    return parsed


@click.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "format_", type=click.Choice(["csv", "parquet", "jsonl", "line"]),
              help="input format (default: from the extension: .csv .parquet .jsonl .lp)")
@click.option("--time-column", metavar="NAME",
              help="the timestamp column (default: the first of timestamp, time, t, ts, "
                   "datetime, date that the file has)")
@click.option("--value-column", default="value", show_default=True)
@click.option("--tag-column", "tag_columns", multiple=True, metavar="NAME",
              help="a column whose values become a query tag (repeatable)")
@click.option("--tag", "constant_tags", multiple=True, metavar="KEY=VALUE",
              help="a query tag given to every stream (KEY:=JSON for non-text values)")
@click.option("--unit", type=click.Choice(["s", "ms", "us", "ns"]),
              help="unit of integer epoch timestamps (required for them)")
@click.option("--precision", type=click.Choice(["ns", "us", "ms", "s"]), default="ns",
              show_default=True, help="line protocol timestamp unit")
@click.option("--downsamplers", default=DEFAULT_DOWNSAMPLERS, show_default=True,
              help="value downsamplers of new streams (comma-separated; '' for none)")
@click.option("--granularity", default="seconds", show_default=True,
              help="highest granularity of new streams")
@click.option("--batch-rows", type=click.IntRange(min=1), default=DEFAULT_BATCH_ROWS,
              show_default=True, help="rows per flushed batch")
@click.option("--verbose", "-v", is_flag=True, help="print a line per committed batch")
@lazy_store_options
def import_(connect: Callable[[], Datastream], files: tuple[str, ...], format_: str | None,
            time_column: str | None, value_column: str, tag_columns: tuple[str, ...],
            constant_tags: tuple[str, ...], unit: str | None, precision: str,
            downsamplers: str, granularity: str, batch_rows: int, verbose: bool,
            quiet: bool) -> None:
    """Import FILE... into streams (created on first sight).

    Rows are grouped into streams by their query tags (--tag-column values plus --tag pairs;
    for line protocol: measurement, tag set and field). Timestamps: ISO-8601 text (naive is
    UTC) or integer epochs with --unit. Re-running an interrupted import completes it without
    storing anything twice."""
    formats = [file_format(path, format_) for path in files]
    names = value_downsamplers(downsamplers) or []
    level = parse_granularity(granularity)
    spec = TableSpec(time_column, value_column, tuple(tag_columns), parse_tags(constant_tags),
                     unit)
    if not spec.tag_columns and not spec.constant_tags and "line" not in formats:
        raise click.UsageError("give --tag-column and/or --tag: they name the streams")
    parsed = read_files(files, formats, spec, precision, quiet)
    plan = build_plan(parsed)

    def on_batch(query: dict[str, Any], rows: int) -> None:
        if verbose:
            click.echo(f"committed {rows} rows of {query}")

    with connect() as ds, progress_bar("importing", plan.rows, quiet=quiet) as bar:
        report = write_plan(ds, plan, names, level, batch_rows, bar.advance, on_batch)
    if not quiet:
        click.echo(f"imported {report.appended:,} points into {report.streams} streams "
                   f"({report.created} new); {report.skipped - report.older:,} rows were "
                   "already stored")
    if report.older:
        click.echo(f"warning: {report.older:,} rows were not imported: they are older than "
                   "the latest point their stream already held, and a stream takes no points "
                   "before its latest", err=True)


COMMANDS = [import_]

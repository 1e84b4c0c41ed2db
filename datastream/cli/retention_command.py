"""``datastream retention show|set|apply``: how much history each level keeps (behaviour §11)."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

import click

from .. import Datastream, Stream
from .. import exceptions as ds_exceptions
from ..granularity import resolve
from .kept import LevelKept, stream_kept
from .options import GRANULARITIES, lazy_store_options, query_options, store_options
from .spans import SPAN_FORMS, format_span, parse_span
from .streams_command import compact_tags, to_json


def parse_keep(pairs: tuple[str, ...]) -> dict[str, datetime.timedelta | None]:
    """``--keep LEVEL=SPAN`` pairs as the retention dict of ``set_retention`` (by level
    name); a usage error names the pair at fault."""
    retention: dict[str, datetime.timedelta | None] = {}
    for pair in pairs:
        name, equals, span = pair.partition("=")
        if not equals:
            raise click.BadParameter(f"{pair!r} is not LEVEL=SPAN", param_hint="--keep")
        try:
            level = resolve(name)
        except ds_exceptions.UnsupportedGranularity:
            raise click.BadParameter(f"{pair!r}: unknown level {name!r}; use one of"
                                     f" {GRANULARITIES}", param_hint="--keep") from None
        if level.name in retention:
            raise click.BadParameter(f"{pair!r}: {level.name} is given twice",
                                     param_hint="--keep")
        try:
            retention[level.name] = parse_span(span)
        except ValueError as error:
            raise click.BadParameter(f"{pair!r}: {error}", param_hint="--keep") from None
    return retention


def _json_level(kept: LevelKept) -> dict[str, Any]:
    span = kept.retention
    return {"granularity": kept.granularity.name, "raw": kept.is_raw,
            "retention_seconds": None if span is None else span.total_seconds(),
            "oldest_kept": to_json(kept.oldest)}


@click.group("retention")
def retention() -> None:
    """Show, set and apply how much history each level of a stream keeps."""


@retention.command("show")
@click.option("--json", "as_json", is_flag=True,
              help="machine output: per stream, each level's retention in seconds (null ="
                   " forever) and oldest kept point")
@query_options
@store_options
def show(ds: Datastream, query: dict[str, Any], as_json: bool, quiet: bool) -> None:
    """Per matching stream (all when no query): each level's retention and oldest kept point
    (the earliest raw point; the first bucket a read of a level returns)."""
    found = list(ds.find_streams(query or None))
    if as_json:
        listing = [{"stream_id": tags["stream_id"], "tags": Stream(tags).tags,
                    "levels": [_json_level(kept) for kept in stream_kept(ds, tags)]}
                   for tags in found]
        click.echo(json.dumps(listing, indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for tags in found:
        table = Table("level", "retention", "oldest kept",
                      title=f"{tags['stream_id']} {compact_tags(tags)}")
        for kept in stream_kept(ds, tags):
            table.add_row(kept.label, format_span(kept.retention), kept.oldest_text)
        console.print(table)
    if not quiet:
        console.print(f"{len(found)} streams")


@retention.command("set")
@click.option("--keep", "pairs", multiple=True, required=True, metavar="LEVEL=SPAN",
              help=f"history kept at a level (name or key; raw points are kept at the"
                   f" stream's highest granularity), SPAN being {SPAN_FORMS}; repeatable")
@query_options
@lazy_store_options
def set_(connect: Callable[[], Datastream], query: dict[str, Any], pairs: tuple[str, ...],
         quiet: bool) -> None:
    """Set the retention of the matching streams (all when no query); levels not named keep
    theirs. Nothing is deleted before "retention apply" or the next downsampling."""
    keep = parse_keep(pairs)  # before the store is opened: bad input creates no file
    with connect() as ds:
        matched = len(ds.find_streams(query or None))
        ds.set_retention(query or None, keep)
    if not quiet:
        spans = ", ".join(f"{name}={format_span(span)}" for name, span in keep.items())
        click.echo(f"set retention {spans} on {matched} streams")


@retention.command("apply")
@click.option("--json", "as_json", is_flag=True,
              help="machine output: the result of apply_retention")
@query_options
@store_options
def apply(ds: Datastream, query: dict[str, Any], as_json: bool, quiet: bool) -> None:
    """Delete what the retention of the matching streams (all when no query) lets go now;
    prints, per granularity, the raw points or buckets deleted."""
    result = ds.apply_retention(query or None)
    if as_json:
        click.echo(json.dumps(result))
        return
    deleted = sorted(result["deleted"].items(), key=lambda item: resolve(item[0]).rank)
    for name, count in deleted:
        click.echo(f"{name}: {count:,} deleted")
    if not quiet:
        has = "" if deleted else ", none with a retention"
        click.echo(f"{result['streams']} streams matched{has}")


COMMANDS = [retention]

"""``datastream streams`` (find streams) and ``datastream info`` (what each one holds)."""

from __future__ import annotations

import datetime
import json
from typing import Any

import click

from .. import Datastream, Stream
from .kept import LevelKept, full_read, level_kept, shown_levels
from .options import query_options, store_options
from .spans import format_span


def to_json(value: Any) -> Any:
    """get_tags values as JSON: datetimes in ISO-8601, retention spans in seconds,
    granularities by name."""
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _compact(value: Any) -> str:
    return json.dumps(to_json(value), sort_keys=True, ensure_ascii=False)


def compact_tags(tags: dict[str, Any]) -> str:
    """The user tags of a get_tags dict as one line of JSON, keys sorted."""
    return _compact(Stream(tags).tags)


@click.command("streams")
@click.option("--json", "as_json", is_flag=True, help="machine output: a JSON list of get_tags")
@query_options
@store_options
def streams(ds: Datastream, query: dict[str, Any], as_json: bool, quiet: bool) -> None:
    """List the streams matching --tag/--query (all when none is given)."""
    found = list(ds.find_streams(query or None))
    if as_json:
        click.echo(json.dumps([to_json(tags) for tags in found], indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("stream_id", "tags", "granularity", "downsamplers", "latest")
    for tags in found:
        stream = Stream(tags)
        table.add_row(stream.id, _compact(stream.tags), str(stream.highest_granularity),
                      ",".join(stream.value_downsamplers),
                      stream.latest_datapoint.isoformat() if stream.latest_datapoint else "-")
    console = Console()
    console.print(table)
    if not quiet:
        console.print(f"{len(found)} streams")


def level_rows(ds: Datastream, tags: dict[str, Any]) -> list[tuple[LevelKept, int, int | None]]:
    """(what the level keeps, datapoints a full read returns, stored bytes or None) for each
    level."""
    sizes = ds.backend.stored_bytes(tags["stream_id"])
    rows = []
    for level in shown_levels(tags):
        points = full_read(ds, tags["stream_id"], level)
        kept = level_kept(tags, level, points)
        key = "raw" if kept.is_raw else level.key
        rows.append((kept, len(points), None if sizes is None else sizes.get(key, 0)))
    return rows


def _span(tags: dict[str, Any]) -> str:
    first, last = tags["earliest_datapoint"], tags["latest_datapoint"]
    if first is None:
        return "no datapoints"
    return f"{first.isoformat()} .. {last.isoformat()} ({last - first})"


@click.command("info")
@query_options
@store_options
def info(ds: Datastream, query: dict[str, Any], quiet: bool) -> None:
    """Per stream: time span, and per level the datapoints, the stored bytes ("n/a" where the
    backend cannot tell), the retention and the oldest point kept."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    found = list(ds.find_streams(query or None))
    for tags in found:
        table = Table("level", "datapoints", "stored bytes", "retention", "oldest kept",
                      title=f"{tags['stream_id']} {compact_tags(tags)}",
                      caption=f"{tags['value_type']}, {_span(tags)}")
        for kept, points, size in level_rows(ds, tags):
            table.add_row(kept.label, f"{points:,}", "n/a" if size is None else f"{size:,}",
                          format_span(kept.retention),
                          kept.oldest_text)
        console.print(table)
    if not quiet:
        console.print(f"{len(found)} streams")


COMMANDS = [streams, info]

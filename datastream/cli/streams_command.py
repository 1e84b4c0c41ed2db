"""``datastream streams`` (find streams) and ``datastream info`` (what each one holds)."""

from __future__ import annotations

import datetime
import json
from typing import Any

import click

from .. import Datastream, Stream
from ..granularity import Granularity, resolve
from .options import query_options, store_options

UNBOUNDED = datetime.datetime.min  # get_data: datetime.min means no lower bound


def to_json(value: Any) -> Any:
    """get_tags values as JSON: datetimes in ISO-8601, granularities by name."""
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _compact(value: Any) -> str:
    return json.dumps(to_json(value), sort_keys=True, ensure_ascii=False)


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


def level_rows(ds: Datastream, tags: dict[str, Any]) -> list[tuple[str, int, int | None]]:
    """(level, datapoints a full read returns, stored bytes or None) for each level."""
    stream_id, highest = tags["stream_id"], resolve(tags["highest_granularity"])
    sizes = ds.backend.stored_bytes(stream_id)
    rows = []
    for level in Granularity.values:
        if level > highest or (level < highest and not tags["value_downsamplers"]):
            continue
        key = "raw" if level == highest else level.key
        points = len(ds.get_data(stream_id, level, start=UNBOUNDED))
        rows.append((f"{level.name} ({'raw' if key == 'raw' else key})", points,
                     None if sizes is None else sizes.get(key, 0)))
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
    """Per stream: time span, and datapoints and stored bytes per level ("n/a" where the
    backend cannot tell bytes)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    found = list(ds.find_streams(query or None))
    for tags in found:
        table = Table("level", "datapoints", "stored bytes",
                      title=f"{tags['stream_id']} {_compact(Stream(tags).tags)}",
                      caption=f"{tags['value_type']}, {_span(tags)}")
        for name, points, size in level_rows(ds, tags):
            table.add_row(name, f"{points:,}", "n/a" if size is None else f"{size:,}")
        console.print(table)
    if not quiet:
        console.print(f"{len(found)} streams")


COMMANDS = [streams, info]

"""``datastream reopen``: open a downsampled range again for late points (behaviour §11)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from .. import Datastream
from .options import lazy_store_options, parse_time, query_options
from .streams_command import compact_tags


def _bound_lines(tags: dict[str, Any]) -> list[str]:
    """One line per level: where its downsampled range ends now (``-``: nothing is)."""
    return [f"  {name:<9}  downsampled until {'-' if bound is None else bound.isoformat()}"
            for name, bound in tags["downsampled_until"].items()]


@click.command("reopen")
@click.option("--start", required=True, metavar="ISO8601",
              help="buckets at or after this time (floored to each level) are discarded;"
                   " naive is UTC")
@query_options
@lazy_store_options
def reopen(connect: Callable[[], Datastream], query: dict[str, Any], start: str,
           quiet: bool) -> None:
    """Discard the buckets of the matching streams (all when no query) and of the streams
    derived from them from --start on, so that late points may be appended there; the next
    downsample recomputes them. Prints each stream reopened and its new downsampled_until."""
    moment = parse_time(start, "--start")  # before the store is opened
    with connect() as ds:
        reopened = ds.reopen_streams(query or None, moment)
        for stream_id in reopened:
            tags = ds.get_tags(stream_id)
            derived = " (derived)" if "derived_from" in tags else ""
            click.echo(f"{stream_id} {compact_tags(tags)}{derived}")
            for line in _bound_lines(tags):
                click.echo(line)
    if not quiet:
        click.echo(f"reopened {len(reopened)} streams from {moment.isoformat()}")


COMMANDS = [reopen]

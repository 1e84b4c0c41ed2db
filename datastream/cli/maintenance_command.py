"""``downsample``, ``backprocess`` and ``verify``: maintenance over the streams of a query.

downsample and verify go one stream at a time (a top-level ``stream_id`` condition) so that a
progress bar can follow them; the result is the same as one call over the whole query.
"""

from __future__ import annotations

from typing import Any

import click

from .. import Datastream
from .bad_input import EXIT_ERROR
from .options import parse_time, query_options, store_options
from .progress import progress_bar
from .streams_command import to_json


def _ids(ds: Datastream, query: dict[str, Any]) -> list[str]:
    return [tags["stream_id"] for tags in ds.find_streams(query or None)]


@click.command("downsample")
@click.option("--until", help="ISO-8601, exclusive (default: now)")
@query_options
@store_options
def downsample(ds: Datastream, query: dict[str, Any], until: str | None, quiet: bool) -> None:
    """Close every complete bucket of the matching streams (all when no query)."""
    bound = parse_time(until, "--until")
    ids = _ids(ds, query)
    with progress_bar("downsampling", len(ids), unit="streams", quiet=quiet) as bar:
        for stream_id in ids:
            ds.downsample_streams({"stream_id": stream_id}, until=bound)
            bar.advance(1)
    if not quiet:
        click.echo(f"downsampled {len(ids)} streams until {bound.isoformat() if bound else 'now'}")


@click.command("backprocess")
@query_options
@store_options
def backprocess(ds: Datastream, query: dict[str, Any], quiet: bool) -> None:
    """Replay the history of derived streams waiting for it."""
    replayed = ds.backprocess_streams(query or None)
    for stream_id in replayed:
        click.echo(stream_id)
    if not quiet:
        click.echo(f"backprocessed {len(replayed)} streams", err=True)


@click.command("verify")
@query_options
@store_options
def verify(ds: Datastream, query: dict[str, Any], quiet: bool) -> None:
    """Recompute stored buckets and derived streams independently and compare; prints each
    mismatch and exits with 1 when there is any."""
    ids = _ids(ds, query)
    mismatches = 0
    checked = {"streams": 0, "buckets": 0, "points": 0}
    with progress_bar("verifying", len(ids), unit="streams", quiet=quiet) as bar:
        for stream_id in ids:
            result = ds.verify({"stream_id": stream_id})
            for mismatch in result:
                mismatches += 1
                click.echo("mismatch " + " ".join(
                    f"{key}={to_json(value)!r}" for key, value in mismatch.items()))
            for key, count in result.checked.items():
                checked[key] = checked.get(key, 0) + count
            bar.advance(1)
    if not quiet:
        click.echo(f"checked {checked['streams']} streams, {checked['buckets']} buckets, "
                   f"{checked['points']} derived points: {mismatches} mismatches", err=True)
    if mismatches:
        raise click.exceptions.Exit(EXIT_ERROR)


COMMANDS = [downsample, backprocess, verify]

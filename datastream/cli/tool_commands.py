"""``demo`` and ``warmup``: the commands the package had before the full command line."""

from __future__ import annotations

import click

from .connection import URL_HELP, open_store


@click.command(help="Write and read a telemetry-like workload into an embedded file (replaced "
                    "if it exists), or with --url into another backend (its earlier demo "
                    "streams are deleted first).")
@click.option("--db", "--path", "path", default="demo.duckdb", show_default=True,
              help="embedded database file")
@click.option("--url", metavar="URL", help=f"another backend instead: {URL_HELP}")
@click.option("--streams", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--points", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="points per stream")
def demo(path: str, url: str | None, streams: int, points: int) -> None:
    from ..demo import run

    if url is not None:
        try:
            open_store(None, url, check_only=True)
        except ValueError as error:
            raise click.UsageError(str(error)) from None
    run(path, streams, points, url=url)


@click.command(help="Compile every kernel into the per-user cache (run once after installing).")
def warmup() -> None:
    from ..warmup import run

    run()


COMMANDS = [demo, warmup]

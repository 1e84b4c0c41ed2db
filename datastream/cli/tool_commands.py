"""``demo`` and ``warmup``: the commands the package had before the full command line."""

from __future__ import annotations

import click


@click.command(help="Write and read a telemetry-like workload into an embedded file.")
@click.option("--path", default="demo.duckdb", show_default=True, help="embedded database file")
@click.option("--streams", type=int, default=50, show_default=True)
@click.option("--points", type=int, default=100_000, show_default=True, help="points per stream")
def demo(path: str, streams: int, points: int) -> None:
    from ..demo import run

    run(path, streams, points)


@click.command(help="Compile every kernel into the per-user cache (run once after installing).")
def warmup() -> None:
    from ..warmup import run

    run()


COMMANDS = [demo, warmup]

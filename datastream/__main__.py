"""Command line: ``datastream demo [--path FILE] [--streams N] [--points N]`` and
``datastream warmup`` (also as ``python -m datastream ...``)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    prog = "python -m datastream" if sys.argv[0].endswith("__main__.py") else "datastream"
    parser = argparse.ArgumentParser(prog=prog)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="write and read a telemetry-like workload")
    demo.add_argument("--path", default="demo.duckdb", help="embedded database file")
    demo.add_argument("--streams", type=int, default=50)
    demo.add_argument("--points", type=int, default=100_000, help="points per stream")
    commands.add_parser(
        "warmup", help="compile every kernel into the per-user cache (run once after installing)"
    )
    arguments = parser.parse_args(argv)
    if arguments.command == "demo":
        from .demo import run

        run(arguments.path, arguments.streams, arguments.points)
    elif arguments.command == "warmup":
        from .warmup import run as warmup

        warmup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

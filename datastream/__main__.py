"""Command line: ``python -m datastream demo [--path FILE] [--streams N] [--points N]``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datastream")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="write and read a telemetry-like workload")
    demo.add_argument("--path", default="demo.duckdb", help="embedded database file")
    demo.add_argument("--streams", type=int, default=50)
    demo.add_argument("--points", type=int, default=100_000, help="points per stream")
    arguments = parser.parse_args(argv)
    if arguments.command == "demo":
        from .demo import run

        run(arguments.path, arguments.streams, arguments.points)
    return 0


if __name__ == "__main__":
    sys.exit(main())

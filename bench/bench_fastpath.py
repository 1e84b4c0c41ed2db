"""The append and raw-read micro targets of ``bench/compare.py --targets``, alone and repeated.

    PYTHONPATH=. .venv/bin/python bench/bench_fastpath.py [--rounds 3] [--append-points 200000]
        [--read-points 1000000] [--read-repeats 5]

Runs compare.py's own ``target_append`` (``append()`` one point at a time, a plain float and an
aware UTC datetime, into a DuckDB file; the flushes it triggers included) and
``target_raw_reads`` (one stream's raw points from a reopened file as ``to_arrow()`` and as
dicts, opening timed apart) ``--rounds`` times, after loading the kernels as compare.py does,
and prints every round and the best and median rates. The other targets (stream-day store,
import, cold numba, peak RSS) take minutes and are left to compare.py.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare  # noqa: E402 - bench/compare.py, next to this file


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--append-points", type=int, default=200_000)
    parser.add_argument("--read-points", type=int, default=1_000_000)
    parser.add_argument("--read-repeats", type=int, default=5)
    args = parser.parse_args(argv)
    compare.warm_kernels()
    rates: dict[str, list[float]] = {"append/s": [], "to_arrow M points/s": [], "dicts/s": []}
    for number in range(args.rounds):
        load = os.getloadavg()[0]
        with tempfile.TemporaryDirectory(prefix="bench-fastpath-") as work:
            append = compare.target_append(args.append_points, work)
        with tempfile.TemporaryDirectory(prefix="bench-fastpath-") as work:
            reads = compare.target_raw_reads(args.read_points, args.read_repeats, work)
        rates["append/s"].append(append["points_per_s"])
        rates["to_arrow M points/s"].append(reads["to_arrow_points_per_s"] / 1e6)
        rates["dicts/s"].append(reads["dicts_per_s"])
        print(f"round {number + 1} (load {load:.2f}): append {append['points_per_s']:,.0f}/s"
              f" ({append['append_s']:.3f} s for {append['points']:,});"
              f" to_arrow {reads['to_arrow_s'] * 1e3:.1f} ms"
              f" ({reads['to_arrow_points_per_s'] / 1e6:.1f} M points/s);"
              f" dicts {reads['dicts_s']:.3f} s ({reads['dicts_per_s']:,.0f}/s);"
              f" open {reads['open_median_s'] * 1e3:.1f} ms", flush=True)
    for name, values in rates.items():
        print(f"{name}: best {max(values):,.1f}, median {statistics.median(values):,.1f}")


if __name__ == "__main__":
    main()

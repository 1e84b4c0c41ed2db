"""Which kernels a first process compiles, and for how long: the ``cold_numba`` task of
``bench/compare.py`` (append, flush and a first downsample of one stream, all seven
aggregates) on an empty kernel cache, with numba's compile events.

    PYTHONPATH=. .venv/bin/python bench/profile_cold.py [--points 20000] [--names mean,median]

A kernel with a numpy twin runs the twin while it is not compiled or loaded
(``jit.Kernel.use_reference``) and compiles nothing on first use; any kernel listed here made
the first call wait. Nested compiles (a kernel calling another) are counted in both.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--names", default=None,
                        help="downsamplers of the stream, comma separated (default: the seven"
                             " of bench/compare.py)")
    args = parser.parse_args()
    os.environ["DATASTREAM_CACHE_DIR"] = tempfile.mkdtemp(prefix="cold-kernels-")
    os.environ.pop("NUMBA_CACHE_DIR", None)

    import compare

    names = args.names.split(",") if args.names else compare.VALUE_NAMES
    spent: collections.Counter = collections.Counter()
    compiles: collections.Counter = collections.Counter()
    started: dict[int, float] = {}

    def on_compile(dispatcher, is_start: bool) -> None:
        kernel = dispatcher.py_func
        if is_start:
            started[id(dispatcher)] = time.perf_counter()
            return
        name = f"{kernel.__module__}.{kernel.__name__}"
        spent[name] += time.perf_counter() - started.pop(id(dispatcher))
        compiles[name] += 1

    import datastream

    clock = compare.Clock()
    data = compare.make_dataset("sensor", 1, args.points, 5)
    with compile_events(on_compile), datastream.Datastream() as ds:
        compare.datastream_task(ds, data, clock, names)
    phases = ", ".join(f"{phase} {seconds:.3f} s" for phase, seconds in clock.phases.items())
    print(f"{args.points} points, {', '.join(names)}: {phases}")
    print(f"numba imported: {'numba' in sys.modules}; compiled {sum(compiles.values())} times,"
          f" {sum(spent.values()):.2f} s")
    for name, seconds in spent.most_common():
        print(f"  {name:50s} {seconds:6.2f} s  x{compiles[name]}")


@contextlib.contextmanager
def compile_events(callback) -> Iterator[None]:
    """``callback(dispatcher, is_start)`` for numba's compile events within the block. numba
    must not be imported before a kernel needs it (that alone changes which code runs), so
    the listener is registered when the first dispatcher is built."""
    from datastream.kernels import jit

    original = jit._jit

    def with_listener(func):
        from numba.core import event

        class Listener(event.Listener):
            def on_start(self, ev) -> None:
                callback(ev.data["dispatcher"], True)

            def on_end(self, ev) -> None:
                callback(ev.data["dispatcher"], False)

        event.register("numba:compile", Listener())
        jit._jit = original  # one listener is enough
        return original(func)

    jit._jit = with_listener
    try:
        yield
    finally:
        jit._jit = original


if __name__ == "__main__":
    main()

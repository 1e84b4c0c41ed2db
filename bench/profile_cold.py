"""Which kernels a first process compiles, and for how long: the ``cold_numba`` task of
``bench/compare.py`` (append, flush and a first downsample of one stream, all seven
aggregates) on an empty kernel cache, with numba's compile events.

    PYTHONPATH=. .venv/bin/python bench/profile_cold.py [--points 20000] [--names mean,median]

A kernel with a numpy twin runs the twin while it is not compiled (``jit.Kernel.use_reference``)
and compiles nothing on first use; any kernel listed here made the first call wait. Nested
compiles (a kernel calling another) are counted in both.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time

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

    def on_compile(event) -> None:  # numba's compile events, when numba gets imported
        kernel = event.data["dispatcher"].py_func
        name = f"{kernel.__module__}.{kernel.__name__}"
        if event.is_start:
            started[id(event.data["dispatcher"])] = time.perf_counter()
        else:
            spent[name] += time.perf_counter() - started.pop(id(event.data["dispatcher"]))
            compiles[name] += 1

    import datastream

    clock = compare.Clock()
    data = compare.make_dataset("sensor", 1, args.points, 5)
    with _compile_events(on_compile), datastream.Datastream() as ds:
        compare.datastream_task(ds, data, clock, names)
    phases = ", ".join(f"{phase} {seconds:.3f} s" for phase, seconds in clock.phases.items())
    print(f"{args.points} points, {', '.join(names)}: {phases}")
    print(f"numba imported: {'numba' in sys.modules}; compiled {sum(compiles.values())} times,"
          f" {sum(spent.values()):.2f} s")
    for name, seconds in spent.most_common():
        print(f"  {name:50s} {seconds:6.2f} s  x{compiles[name]}")


class _compile_events:
    """Listen to numba's compile events if numba is imported by the time the block ends (it
    is imported only when a kernel compiles or loads): a listener registered on exit would
    miss them, so this imports numba's event module lazily, from the first kernel compile on."""

    def __init__(self, callback) -> None:
        self.callback = callback

    def __enter__(self) -> None:
        from datastream.kernels import jit

        original = jit._jit
        callback = self.callback
        registered = []

        def with_listener(func):
            if not registered:
                from numba.core import event

                class Listener(event.Listener):
                    def on_start(self, ev) -> None:
                        callback(_Event(ev, True))

                    def on_end(self, ev) -> None:
                        callback(_Event(ev, False))

                event.register("numba:compile", Listener())
                registered.append(True)
            return original(func)

        jit._jit = with_listener
        self._restore = (jit, original)

    def __exit__(self, *exc) -> None:
        module, original = self._restore
        module._jit = original


class _Event:
    def __init__(self, event, is_start: bool) -> None:
        self.data = event.data
        self.is_start = is_start


if __name__ == "__main__":
    main()

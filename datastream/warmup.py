"""Compile every kernel ahead of time: ``python -m datastream warmup`` (or ``datastream warmup``).

A cold kernel cache costs seconds of numba compilation on the first downsample. Running this
once after installing (in a Dockerfile, or ``make install``) fills the per-user cache, so that
later processes only load machine code; it also leaves the markers by which a process knows it
may load a kernel (with numba set up, in milliseconds) rather than compile it, once its numpy
twins have run long enough to make that worth it (see :mod:`datastream.kernels.jit`).
The signatures are the engine's own because the work goes through the public API, on a
throwaway in-memory store: every value type and downsampler, all levels, a derived stream of
every operator, and one chunk large enough for the codec's numba kernels (smaller chunks go
through their numpy twins).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import Datastream, Granularity
from .downsamplers import DOWNSAMPLERS_BY_VALUE_TYPE
from .engine.derive import DERIVE_OPERATORS
from .kernels import jit
from .storage import codec
from .units import US_PER_SECOND

START = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
START_US = int(START.timestamp()) * US_PER_SECOND
STEP_US = 307_000_000  # an odd step, so buckets of every level hold a varying number of points
POINTS = 1_000  # ~3.5 days: every level down to days gets rows
UNTIL = START + datetime.timedelta(days=4)


@dataclass
class KernelReport:
    """What one kernel cost: signatures compiled or loaded from the cache, seconds compiling."""

    name: str
    compiled: int
    cached: int
    seconds: float


def workload(ds: Datastream) -> None:
    """Streams of every value type, downsampler and derive operator, downsampled and read."""
    times = START_US + np.arange(POINTS, dtype=np.int64) * STEP_US
    rng = np.random.default_rng(0)
    numbers = rng.normal(20.0, 5.0, POINTS).round()  # few distinct values: small frequency tables
    numbers[::17] = np.nan

    def stream(name: str, value_type: str, **kwargs: Any) -> str:
        return ds.ensure_stream({"warmup": name}, {}, list(DOWNSAMPLERS_BY_VALUE_TYPE[value_type]),
                                Granularity.Seconds, value_type=value_type, **kwargs)

    a = stream("numeric", "numeric")
    b = stream("exact", "numeric", value_type_options={"high_accuracy": True})
    nominal = stream("nominal", "nominal")
    graph = stream("graph", "graph")
    uptime = stream("uptime", "numeric")
    derived = {
        "sum": stream("sum", "numeric", derive_from=[a, b], derive_op="sum"),
        "derivative": stream("derivative", "numeric", derive_from=a, derive_op="derivative"),
        "counter_reset": stream("counter_reset", "nominal", derive_from=uptime,
                                derive_op="counter_reset"),
    }
    derived["counter_derivative"] = stream(
        "counter_derivative", "numeric",
        derive_from=[{"stream": derived["counter_reset"], "name": "reset"}, {"stream": a}],
        derive_op="counter_derivative", derive_args={"max_value": 256},
    )
    missing = set(DERIVE_OPERATORS) - set(derived)
    assert not missing, f"warmup lacks derive operators {sorted(missing)}"

    ds.append_arrays(a, times, numbers, unit="us")
    ds.append_arrays(b, times, numbers, unit="us")
    ds.append_arrays(uptime, times, (np.arange(POINTS) % 300).astype(np.float64), unit="us")
    bulk = ds.ensure_stream({"warmup": "bulk"}, {}, ["mean"], Granularity.Seconds)
    ds.append_arrays(bulk, START_US + np.arange(codec.NUMPY_BELOW, dtype=np.int64) * US_PER_SECOND,
                     rng.normal(20.0, 5.0, codec.NUMPY_BELOW).round(2), unit="us")
    for offset, label in enumerate(["idle", "busy", None, "idle", "down"] * 20):
        moment = START + datetime.timedelta(minutes=7 * offset)
        ds.append(nominal, label, moment)
        ds.append(graph, {"v": [{"i": offset}], "e": []}, moment)
    ds.flush()
    ds.downsample_streams(until=UNTIL)
    for granularity in Granularity.values:
        ds.get_data(a, granularity, start=START).to_arrow()
        ds.get_data(nominal, granularity, start=START).to_arrow()


def run(report: Callable[[str], None] = print) -> list[KernelReport]:
    """Run :func:`workload` on a throwaway store; report each kernel and the total time."""
    from numba.core import event

    compiling = _compile_timer()
    began = time.perf_counter()
    fallback, jit.FALLBACK = jit.FALLBACK, False  # compile kernels that have a numpy reference too
    try:
        with event.install_listener("numba:compile", compiling), Datastream() as ds:
            workload(ds)
    finally:
        jit.FALLBACK = fallback
    elapsed = time.perf_counter() - began

    report(f"datastream warmup: kernel cache in {jit.cache_dir()}")
    results = []
    for kernel in jit.KERNELS:
        name = f"{kernel.py_func.__module__.rsplit('.', 1)[-1]}.{kernel.__name__}"
        if not kernel.loaded:
            results.append(KernelReport(name, 0, 0, 0.0))
            report(f"  {'NOT USED':9} {name}")
            continue
        stats = kernel.dispatcher().stats
        result = KernelReport(name, sum(stats.cache_misses.values()),
                              sum(stats.cache_hits.values()),
                              compiling.seconds.get(id(kernel.dispatcher()), 0.0))
        results.append(result)
        if result.compiled:
            report(f"  {'compiled':9} {name:34} {result.compiled} signature(s) "
                   f"in {result.seconds:5.2f} s")
        elif result.cached:
            report(f"  {'cached':9} {name:34} {result.cached} signature(s) loaded")
        else:  # called only from other kernels that came from the cache
            report(f"  {'inlined':9} {name:34} inside kernels loaded from the cache")
    compiled = sum(r.compiled > 0 for r in results)
    report(f"{len(results)} kernels ready ({compiled} compiled, {len(results) - compiled} from "
           f"the cache) in {elapsed:.2f} s")
    return results


def _compile_timer() -> Any:
    """A numba compile-event listener: seconds per dispatcher, without nested compiles."""
    from numba.core import event

    class CompileTimer(event.Listener):
        def __init__(self) -> None:
            self.seconds: dict[int, float] = {}
            self._stack: list[list[float]] = []  # [start, seconds in nested compiles]

        def on_start(self, ev: Any) -> None:
            self._stack.append([time.perf_counter(), 0.0])

        def on_end(self, ev: Any) -> None:
            start, nested = self._stack.pop()
            total = time.perf_counter() - start
            key = id(ev.data["dispatcher"])
            self.seconds[key] = self.seconds.get(key, 0.0) + total - nested
            if self._stack:
                self._stack[-1][1] += total

    return CompileTimer()

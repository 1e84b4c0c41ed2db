"""Chunk codec: bytes per point and encode/decode rates per data kind and chunk size.

    PYTHONPATH=. .venv/bin/python bench/bench_codec.py [--points 1000000] [--days 30] [--repeat 5]

One thread everywhere (blosc2 and numba). Each data kind is a raw table of ``--points`` rows
cut into chunks of 1k, 8k and 64k rows; a rate is the best of ``--repeat`` runs over all chunks,
in millions of rows per second (each row is a timestamp, a kind and a value), wall and CPU
time (the machine is shared: a calibration loop shows how loaded it was). Then the six
levels of the real cascade (``partials_from_raw`` at 10 s, ``combine_partials`` up to a day)
over ``--days`` of 1 Hz data, in bytes per *raw* point, each level chunk encoded afresh and as
the embedded store encodes a stream's chunks in order (column choices remembered per level,
``storage.level_plans``); then the numba kernels against their numpy twins, and whole chunks of
16 to 16k rows through either (the codec takes the twins below ``codec.NUMPY_BELOW`` rows), and
the 10 s level chunk encoded again and again with its remembered choices: µs of CPU per chunk.
Prints Markdown for bench/RESULTS.md.
"""

from __future__ import annotations

import os

os.environ["NUMBA_NUM_THREADS"] = "1"  # must precede the numba import

import argparse  # noqa: E402
import collections  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import blosc2  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from datastream import downsamplers as ds  # noqa: E402
from datastream.kernels import transforms  # noqa: E402
from datastream.kernels.jit import readonly  # noqa: E402
from datastream.storage import codec  # noqa: E402
from datastream.storage.base import RAW_SCHEMA  # noqa: E402
from datastream.storage.level_plans import LevelPlans  # noqa: E402

SECOND = 1_000_000
START = 1_577_836_800 * SECOND
CHUNK_SIZES = [1024, 8192, 65536]
PATH_SIZES = [16, 256, 1024, 4096, 16384]
LEVELS = [10, 60, 600, 3600, 21600, 86400]


def raw_table(t, k, i=None, f=None, s=None) -> pa.Table:
    n = len(t)
    return pa.Table.from_arrays(
        [pa.array(t, pa.int64()), pa.array(k, pa.int8()),
         pa.nulls(n, pa.int64()) if i is None else i,
         pa.nulls(n, pa.float64()) if f is None else f,
         pa.nulls(n, pa.string()) if s is None else s],
        schema=RAW_SCHEMA,
    )


def sensor_values(n: int, rng: np.random.Generator) -> np.ndarray:
    """A daily-ish wave plus noise, rounded to 0.01 (what a thermometer reports)."""
    return np.round(20 + 5 * np.sin(np.arange(n) / 3600) + rng.normal(0, 0.1, n), 2)


def datasets(n: int, seed: int = 0) -> dict[str, pa.Table]:
    rng = np.random.default_rng(seed)
    regular = START + np.arange(n, dtype=np.int64) * SECOND
    floats = np.full(n, 2, np.int8)
    sensor = sensor_values(n, rng)
    jitter = np.sort(regular + rng.integers(-20_000, 20_000, n))  # ±20 ms around 1 Hz
    irregular = START + np.cumsum(rng.integers(SECOND // 2, 3 * SECOND // 2, n))
    missing = rng.random(n) < 0.1
    states = np.array(['"idle"', '"heating"', '"cooling"', '"off"', '{"error": 3}'])
    state = np.cumsum(rng.random(n) < 0.05) % len(states)  # runs, switching 5 % of the time
    return {
        "sensor 0.01": raw_table(regular, floats, f=pa.array(sensor)),
        "random walk": raw_table(regular, floats, f=pa.array(np.cumsum(rng.normal(0, 1, n)))),
        "ints (counter)": raw_table(regular, np.full(n, 1, np.int8),
                                    i=pa.array(np.cumsum(rng.integers(0, 200, n)))),
        "ints (random)": raw_table(regular, np.full(n, 1, np.int8),
                                   i=pa.array(rng.integers(-(10**6), 10**6, n))),
        "jitter ±20 ms": raw_table(jitter, floats, f=pa.array(sensor)),
        "irregular 0.5-1.5 s": raw_table(irregular, floats, f=pa.array(sensor)),
        "10 % nulls": raw_table(regular, np.where(missing, 0, 2).astype(np.int8),
                                f=pa.array(sensor, mask=missing)),
        "nominal strings": raw_table(regular, np.full(n, 4, np.int8),
                                     s=pa.array(states[state])),
    }


def best(run: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Best wall and best CPU seconds of ``repeat`` runs (on a shared machine the CPU time is
    the steadier figure; the wall time is what a caller waits)."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return min(walls), min(cpus)


def rate(count: int, seconds: tuple[float, float]) -> str:
    """'wall / CPU' in millions per second."""
    return f"{count / seconds[0] / 1e6:.1f} / {count / seconds[1] / 1e6:.1f}"


def calibration() -> str:
    """CPU seconds of a fixed pure-Python loop (~0.4 s on a quiet core of this class): how
    much slower than usual the machine runs right now."""
    cpu = time.process_time()
    total = 0
    for i in range(10_000_000):
        total += i
    return f"{time.process_time() - cpu:.2f} s"


def chunks_of(table: pa.Table, size: int) -> list[pa.Table]:
    return [table.slice(a, size) for a in range(0, table.num_rows, size)]


def measure(tables: list[pa.Table], encode, decode, repeat: int) -> tuple[int, tuple, tuple]:
    """(total bytes, encode (wall, CPU) seconds, decode (wall, CPU) seconds) over ``tables``."""
    blobs = [encode(t) for t in tables]
    for blob, table in zip(blobs, tables):  # correctness, outside the timing
        assert decode(blob).equals(table)
    encoding = best(lambda: [encode(t) for t in tables], repeat)
    decoding = best(lambda: [decode(b) for b in blobs], repeat)
    return sum(map(len, blobs)), encoding, decoding


def column_report(blobs: list[bytes]) -> str:
    """Per column: codec(s) chosen (most used first) and bytes per row."""
    sizes: dict[str, int] = collections.Counter()
    kinds: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    rows = 0
    for blob in blobs:
        rows += codec.chunk_stats(blob)[0]
        for name, kind, size in codec.describe(blob):
            sizes[name] += size
            kinds[name][kind] += 1
    parts = []
    for name in sizes:
        if set(kinds[name]) != {"null"}:
            chosen = "/".join(kind for kind, _ in kinds[name].most_common())
            parts.append(f"{name}: {chosen} {sizes[name] / rows:.3f}")
    return ", ".join(parts)


def raw_section(n: int, repeat: int) -> None:
    print(f"### Raw chunks ({n:,} points per data kind)\n")
    print("| data | chunk rows | bytes/point | encode M pts/s wall / CPU | decode M pts/s "
          "wall / CPU | columns (codec, bytes/point) |")
    print("|---|---|---|---|---|---|")
    for name, table in datasets(n).items():
        for size in CHUNK_SIZES:
            tables = chunks_of(table, size)
            total, enc, dec = measure(tables, codec.encode_raw, codec.decode_raw, repeat)
            columns = column_report([codec.encode_raw(t) for t in tables])
            print(f"| {name} | {size:,} | {total / n:.3f} | {rate(n, enc)} | {rate(n, dec)} | "
                  f"{columns} |", flush=True)
    print()


def cascade(raw: pa.Table) -> list[pa.Table]:
    rows = [ds.partials_from_raw(raw, "numeric", {}, LEVELS[0] * SECOND, False)]
    for width in LEVELS[1:]:
        rows.append(ds.combine_partials(rows[-1], width * SECOND, "numeric", {}))
    return rows


def encode_with_plans(pieces: list[tuple[int, pa.Table]]) -> list[bytes]:
    """Level chunks encoded in order as the embedded store does: the column choices
    remembered per (stream, level) key, here one stream."""
    plans = LevelPlans()
    return [codec.encode_level(piece, plans, level) for level, piece in pieces]


def level_section(days: int, repeat: int) -> None:
    n = days * 86_400
    regular = START + np.arange(n, dtype=np.int64) * SECOND
    kinds = np.full(n, 2, np.int8)
    rngs = [np.random.default_rng(seed) for seed in (1, 2, 3, 4)]  # one per series
    irregular = START + np.cumsum(rngs[2].integers(SECOND // 2, 3 * SECOND // 2, n))
    series = {
        "sensor 0.01": (regular, sensor_values(n, rngs[0])),
        "full-entropy random walk": (regular, np.cumsum(rngs[1].normal(0, 1, n))),
        "full-entropy i.i.d. normal(20, 5)": (regular, rngs[3].normal(20, 5, n)),
        "sensor 0.01, irregular 0.5-1.5 s": (irregular, sensor_values(n, rngs[2])),
    }
    print(f"### Raw + all six levels ({days} days of 1 Hz points = {n:,} raw points)\n")
    print("Bytes per raw point. Level rows hold every partial (count, sum, sum of squares, "
          "min, max, mean−min, M2, the time state), i.e. everything mean/min/max/std and the "
          "time downsamplers need; medians are not stored (null column).\n")
    print("| data | chunk rows | raw | 10 s | 1 min | 10 min | 1 h | 6 h | 1 d | "
          "levels | levels, plans | raw + levels | level encode M rows/s wall / CPU | "
          "with plans | level decode M rows/s wall / CPU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, (times, values) in series.items():
        raw = raw_table(times, kinds, f=pa.array(values))
        levels = cascade(raw)
        for size in CHUNK_SIZES:
            raw_bytes = sum(len(codec.encode_raw(t)) for t in chunks_of(raw, size))
            per_level, level_rows, enc, dec = [], 0, np.zeros(2), np.zeros(2)
            for rows in levels:
                total, e, d = measure(chunks_of(rows, size), codec.encode_level,
                                      codec.decode_level, repeat)
                per_level.append(total / n)
                level_rows += rows.num_rows
                enc += e
                dec += d
            pieces = [(level, piece) for level, rows in enumerate(levels)
                      for piece in chunks_of(rows, size)]
            blobs = encode_with_plans(pieces)
            for blob, (_, piece) in zip(blobs, pieces):  # correctness, outside the timing
                assert codec.decode_level(blob).equals(piece)
            planned = sum(map(len, blobs)) / n
            enc_plans = best(lambda pieces=pieces: encode_with_plans(pieces), repeat)
            cells = " | ".join(f"{b:.3f}" for b in per_level)
            print(f"| {name} | {size:,} | {raw_bytes / n:.3f} | {cells} | {sum(per_level):.3f} "
                  f"| {planned:.3f} | {raw_bytes / n + sum(per_level):.3f} | "
                  f"{rate(level_rows, enc)} | {rate(level_rows, enc_plans)} | "
                  f"{rate(level_rows, dec)} |", flush=True)
    for name, (times, values) in series.items():
        tens = cascade(raw_table(times, kinds, f=pa.array(values)))[0]
        blobs = [codec.encode_level(t) for t in chunks_of(tens, 8192)]
        print(f"\n10 s level of {name}, 8k-row chunks, bytes per level row: "
              f"{column_report(blobs)}")
    print()


def kernel_section(n: int, repeat: int) -> None:
    """The fused numba passes against their numpy twins."""
    rng = np.random.default_rng(2)
    x = readonly(sensor_values(n, rng), np.float64)
    t = readonly(START + np.arange(n, dtype=np.int64) * SECOND
                 + rng.integers(-20_000, 20_000, n), np.int64)
    digits, residual = np.empty(n, np.int64), np.empty(n, np.int64)
    z, out, out_f = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.float64)
    transforms.decimal_encode(x, 2, digits, residual)
    transforms.int_encode(t, 1, z)
    # the decoders get read-only inputs, as the codec passes them
    digits_in, z_in = readonly(digits, np.int64), readonly(z, np.int64)
    no_residual = readonly(np.empty(0, np.int64), np.int64)

    # the twins write into their own outputs, so that the kernels' inputs stay as they are
    digits2, residual2 = np.empty(n, np.int64), np.empty(n, np.int64)
    z2, out2, out_f2 = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.float64)
    cases = [
        ("decimal encode (scale, check, delta, zigzag)",
         lambda: transforms.decimal_encode(x, 2, digits, residual),
         lambda: transforms.decimal_encode_numpy(x, 2, digits2, residual2)),
        ("decimal decode (unzigzag, cumsum, scale)",
         lambda: transforms.decimal_decode(digits_in, no_residual, 2, out_f),
         lambda: transforms.decimal_decode_numpy(digits_in, no_residual, 2, out_f2)),
        ("int delta encode", lambda: transforms.int_encode(t, 1, z),
         lambda: transforms.int_encode_numpy(t, 1, z2)),
        ("int delta decode", lambda: transforms.int_decode(z_in, 1, out),
         lambda: transforms.int_decode_numpy(z_in, 1, out2)),
    ]
    print(f"### numba kernels against their numpy twins ({n:,} values, M values/s)\n")
    print("| transform | numba (CPU) | numpy (CPU) | speed-up |")
    print("|---|---|---|---|")
    for label, numba_run, numpy_run in cases:
        numba_run()  # compiled (or loaded from the cache) outside the timing
        a, b = best(numba_run, repeat)[1], best(numpy_run, repeat)[1]
        print(f"| {label} | {n / a / 1e6:.0f} | {n / b / 1e6:.0f} | {b / a:.1f}× |")
    print()


def best_interleaved(runs: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Best CPU µs of each run, alternating between them ``repeat`` times (a load change on the
    shared machine then hits all alike)."""
    cpu = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, run in runs.items():
            cpu[name] = min(cpu[name], best(run, 20)[1] * 1e6)
    return cpu


def chunk_runs(table: pa.Table, encode, decode) -> dict[str, Callable[[], object]]:
    """Encoding and decoding ``table`` through either path: {"encode numba": run, ...}."""
    data = encode(table)

    def through(below: int, run: Callable[[], object]) -> Callable[[], object]:
        def chosen() -> object:
            codec.NUMPY_BELOW = below
            return run()
        return chosen

    runs = {}
    for name, below in (("numba", 0), ("numpy", 2**32)):
        runs[f"encode {name}"] = through(below, lambda: encode(table))
        runs[f"decode {name}"] = through(below, lambda: decode(data))
    return runs


def encode_again(table: pa.Table, plans: LevelPlans) -> bytes:
    """``table`` as the next chunk of one stream and level, through the numba kernels."""
    codec.NUMPY_BELOW = 0
    return codec.encode_level(table, plans, "stream")


def path_section(repeat: int) -> None:
    """Whole chunks through the numba kernels and through their numpy twins."""
    rng = np.random.default_rng(5)
    print("### Small chunks: numba kernels or numpy twins (µs CPU per chunk, numba / numpy)\n")
    print("| chunk rows | raw sensor encode | raw sensor decode | 10 s level encode | "
          "10 s level decode | 10 s level encode, plans (numba) |")
    print("|---|---|---|---|---|---|")
    saved = codec.NUMPY_BELOW
    try:
        for size in PATH_SIZES:
            raw = datasets(size)["sensor 0.01"]
            times = START + np.arange(10 * size, dtype=np.int64) * SECOND
            level = ds.partials_from_raw(
                raw_table(times, np.full(10 * size, 2, np.int8),
                          f=pa.array(sensor_values(10 * size, rng))),
                "numeric", {}, LEVELS[0] * SECOND, False)
            cells = []
            for table, encode, decode in [(raw, codec.encode_raw, codec.decode_raw),
                                          (level, codec.encode_level, codec.decode_level)]:
                runs = chunk_runs(table, encode, decode)
                if table is level:  # the same stream's chunks: choices remembered, re-rated
                    runs["plans"] = functools.partial(encode_again, level, LevelPlans())
                cpu = best_interleaved(runs, repeat)
                for step in ("encode", "decode"):
                    cells.append(f"{cpu[f'{step} numba']:.0f} / {cpu[f'{step} numpy']:.0f}")
            cells.append(f"{cpu['plans']:.0f}")
            print(f"| {size:,} | " + " | ".join(cells) + " |", flush=True)
    finally:
        codec.NUMPY_BELOW = saved
    print(f"\nThe codec takes the numpy twins below {codec.NUMPY_BELOW:,} rows.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    blosc2.set_nthreads(1)
    # compile / load the kernels (smaller chunks take their numpy twins)
    codec.decode_raw(codec.encode_raw(datasets(codec.NUMPY_BELOW)["sensor 0.01"]))
    print(f"load average before: {json.dumps([round(v, 2) for v in os.getloadavg()])}, "
          f"calibration loop {calibration()}, blosc2 {blosc2.__version__}, "
          f"nthreads {blosc2.nthreads}\n")
    raw_section(args.points, args.repeat)
    level_section(args.days, args.repeat)
    kernel_section(args.points, args.repeat)
    path_section(args.repeat)
    print(f"load average after: {json.dumps([round(v, 2) for v in os.getloadavg()])}, "
          f"calibration loop {calibration()}")


if __name__ == "__main__":
    main()

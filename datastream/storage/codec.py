"""The shared chunk codec: one stream's raw or level rows ↔ compact bytes.

Both the embedded store and the MongoDB backend keep points as compressed columnar chunks; this
module is their only encoding, so a chunk written by one is readable by the other and a format
change happens in one place. It returns rows exactly as given (row order, nulls, every float
bit, NaN payloads and -0.0 included) and computes nothing about them.

Layout (little-endian)::

    header   magic b"DSCC", format version u8 (the oldest that reads the chunk: 2 when a
             column uses a format-2 prediction, else 1), table kind u8 (1 raw, 2 level),
             column count u8,
             flags u8 (bit 0: t0/t1 hold the range of the valid timestamps), rows u32,
             t0 i64, t1 i64, CRC-32 of the body u32, CRC-32 of the 32 bytes before it u32
    body     per column, in the frozen order of ``LAYOUTS``: codec u8, flags u8 (bit 0: a
             validity part comes first), param u16, then one u32 byte length per part; after
             all column entries, the parts of every column in the same order

A "packed" part holds unsigned integers narrowed to 1, 2, 4 or 8 bytes (width code 1-4; code 0:
all zero, no bytes), bit-shuffled and LZ4-compressed by blosc2. A validity part is the Arrow
bitmap, zstd-compressed; it exists only when a column mixes nulls and values. Parts below 128
bytes, or that do not compress, are stored as they are: a part exactly as long as its
uncompressed size (always known to the decoder) is raw, any other is one blosc2 chunk. Before any
transform, null slots take their neighbours' values, so nulls cost their bitmap and no more.

Column codecs (``param`` bits in brackets):

* ``NULL`` (0): every row null (or no rows); no parts.
* ``INT`` (1) [order 0-1, width 2-4]: zigzagged order-0/1/2 differences
  (``kernels.transforms.int_encode``); parts: the first ``order`` values as raw int64, the rest
  packed. Regular timestamps cost 16 bytes whatever the row count.
* ``DECIMAL`` (2) [k 0-3, digits width 4-6, residual width 7-9]: ``v = rint(x * 10**k)`` as
  zigzagged deltas plus the ulp distance from ``v / 10**k`` to ``x``
  (``kernels.transforms.decimal_encode``); parts: the first delta raw, the others packed, the
  residuals packed. Values rounded to k decimals have no residual part.
* ``FLOAT_BITS`` (3): IEEE bits byte-shuffled + zstd, when the decimal estimate is no better
  than the raw 64 bits (magnitudes spanning hundreds of orders).
* ``TEXT`` (4) [lengths width 0-2]: UTF-8 lengths packed, the bytes zstd-compressed.
* ``TEXT_DICT`` (5) [indices width 0-2, lengths width 3-5]: the dictionary size (raw u32),
  indices into the distinct strings (first-seen order) packed, the dictionary as in ``TEXT``.
* ``PREDICTED`` (6) [predictor 0-3, width 4-6, decimal scale 7-10]: level columns that other
  columns of the same row give up to rounding (``predictors.PREDICTORS``: the mean offset from
  sum, count and minimum; sum of squares and M2 from each other, M2 also from the integer sums
  of decimal values; counts from counts; the interval sum from the first and last timestamps;
  the first timestamp from the bucket start). Only the difference to the prediction is stored,
  packed (in ulps for floats).
* ``RATIO`` (7, format 2) [predictor 0-3, decimal scale 4-7, numerator width 8-10, residual
  width 11-13]: a level float that is an integer over a divisor (``predictors.SCALED``: the time
  mean offset times the non-null points, µs; sums of squares of values quantised to ``10**-k``
  times ``10**2k``). Parts: the numerator ``rint(x * D)`` minus its predicted value, packed, and
  the ulps from ``numerator / D`` back to ``x`` (usually none), packed.

Predictions are IEEE divisions, products, sums and ``rint``, which every CPU rounds alike; a
NaN prediction becomes 0.0, because the bits of a computed NaN are not portable (see
:mod:`datastream.storage.predictors`). Format 1 chunks (no ``RATIO`` column, predictor ids below
10) decode as before.

Choices are made per column and per chunk from estimates over at most 256 rows (the start and
the middle), modelling what bit shuffling + LZ4 make of each candidate
(``kernels.transforms.shuffled_bits``): the difference order; the decimal scale ``k``; a
prediction when it beats the column's own estimate, greedily by gain and never in a cycle (q
and M2 are never both predicted from each other); a dictionary when it has at most half as
many entries as rows. A level chunk may instead take the choices made for an earlier chunk of
its stream and level (``encode_level(..., plans, key)``, :mod:`.level_plans`): rating them was
most of the fixed cost of a small chunk.

The transforms run as numba kernels, or for chunks below ``NUMPY_BELOW`` rows while numba is not
loaded yet as their numpy twins, which write the same bytes (see there). Predictions likewise:
:mod:`.residuals` computes with numba what :mod:`.predictors` computes with numpy, bit for bit;
the decoder uses the numpy functions.

Damage to a chunk fails its CRC and raises ``ValueError``; so do a wrong magic, an unknown
version, codec or table kind, and anything that does not parse. Chunks are at most 2**32 - 1
rows, and each part at most 2 GiB before compression (a blosc2 limit).
"""

from __future__ import annotations

import struct
import sys
import zlib
from collections.abc import Hashable
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from .. import arrow_numpy
from ..kernels import transforms
from ..kernels.jit import readonly
from ..lazy import blosc2, pc
from . import predictors, residuals
from .level_plans import LevelPlans
from .predictors import PREDICTORS, SCALED, Predictor

MAGIC = b"DSCC"
VERSION = 2  # the newest format; a chunk carries the oldest version that reads it
READS = (1, 2)
RAW, LEVEL = 1, 2
# Rows of one chunk at most. The backends cut chunks far smaller (tens of thousands of rows);
# the bound lets a decoder refuse a damaged row count before allocating for it.
MAX_ROWS = 1 << 20

# The stored column order of format version 1. Chunks depend on it: a new column is appended
# (older chunks decode it as null), never inserted. Tests check these equal the live schemas.
LAYOUTS: dict[int, pa.Schema] = {
    RAW: pa.schema(
        [("t", pa.int64()), ("k", pa.int8()), ("i", pa.int64()), ("f", pa.float64()),
         ("s", pa.string())]
    ),
    LEVEL: pa.schema(
        [("t", pa.int64()), ("c", pa.int64())]
        + [(name, pa.float64()) for name in ("s", "q", "l", "u", "mu", "m2", "n")]
        + [("x", pa.string()), ("np", pa.int64()), ("tn", pa.int64()), ("tm", pa.float64())]
        + [(name, pa.int64()) for name in ("ta", "tz", "ic")]
        + [(name, pa.float64()) for name in ("isum", "il", "iu", "iq", "im2")]
    ),
}

NULL, INT, DECIMAL, FLOAT_BITS, TEXT, TEXT_DICT, PREDICTED, RATIO = range(8)
CODEC_NAMES = ("null", "int", "decimal", "float_bits", "text", "text_dict", "predicted", "ratio")
_PARTS = {NULL: 0, INT: 2, DECIMAL: 3, FLOAT_BITS: 1, TEXT: 2, TEXT_DICT: 4, PREDICTED: 1,
          RATIO: 2}
_TABLES = {PREDICTED: PREDICTORS, RATIO: SCALED}


# (name, numpy type of its filled values: None for strings) of each layout's columns
_NUMPY_TYPES = {kind: [(f.name, None if f.type == pa.string() else
                        np.float64 if f.type == pa.float64() else np.int64) for f in layout]
                for kind, layout in LAYOUTS.items()}

_HEADER = struct.Struct("<4sBBBBIqqI")  # everything the header CRC covers
_HEADER_SIZE = _HEADER.size + 4
_COLUMN = struct.Struct("<BBH")
_U32 = struct.Struct("<I")
_LENGTHS = [struct.Struct(f"<{count}I") for count in range(6)]  # part lengths of one column
_HAS_RANGE = 1
_HAS_VALIDITY = 1

_WIDTHS = (0, 1, 2, 4, 8)  # width code -> bytes per value
_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_SAMPLE = 128  # rows per estimation block (two blocks: the start and the middle)
_NO_COSTS = np.full(transforms.MAX_SCALE + 1, np.inf)
_NO_FLOATS = readonly(np.empty(0, np.float64), np.float64)  # the residual kernels' unused slots
_NO_INTS = readonly(np.empty(0, np.int64), np.int64)
# The decimal path is worth it unless its estimate comes close to the 64 bits of the value.
_DECIMAL_MAX_BITS = 60
_MAX_PART = 2**31 - 64
_RAW_BELOW = 128  # bytes; smaller parts are stored as they are (a blosc2 call costs µs)

NUMPY_BELOW = 4096
"""Chunks of fewer rows go through the numpy twins of the transforms (``transforms.NUMPY``),
others through the numba kernels; both give the same bytes, and decode either's chunks.

The twins are for the first chunks of a process: importing numba and loading the codec's
kernels from the cache took 0.85 s of CPU (1.5 s wall; 6.4 s of CPU compiling them into an
empty cache), where a 100-row chunk takes ~2 ms to encode and decode through the twins. So a
script that appends and reads a few points never loads numba. Once loaded, the kernels are
faster at every size (a call costs 2-10 µs up to 4k values, dispatch included; a twin
10-190 µs), so this is not a speed crossover. ``bench/bench_codec.py``, its last table (µs of
CPU per chunk, numba / numpy, sensor values; shared 2-vCPU machine at load 3.9, its calibration
loop at 0.7 s instead of 0.4 s quiet)::

    rows      raw encode   raw decode   10 s level encode   10 s level decode
    16        117 / 544    161 / 211     725 / 5627          750 / 1217
    1,024     184 / 809    183 / 271     920 / 5154          631 / 961
    4,096     142 / 575    148 / 216    1093 / 5236          822 / 1189
    16,384    296 / 1125   299 / 425    1956 / 7197         1626 / 2505

Up to a few thousand rows the twins cost a roughly fixed extra, a few dozen numpy calls per
column whatever the length (~0.4-0.6 ms per raw chunk, ~4-5 ms per 21-column level chunk);
beyond, the extra grows with the rows. 4096 is also the embedded store's ``SMALL_ROWS``: chunks
below it are small flushes, merged into larger chunks later. Once something else has loaded
numba (the first downsample does), small chunks take the kernels too.
"""


def transforms_for(rows: int) -> transforms.Implementation:
    """The transforms for a chunk of ``rows`` rows (see :data:`NUMPY_BELOW`): the twins only
    while numba is not loaded yet (both write the same bytes, so the choice never shows)."""
    if rows < NUMPY_BELOW and "numba" not in sys.modules:
        return transforms.NUMPY
    return transforms.NUMBA


# == public API =================================================================================


def encode_raw(table: pa.Table | pa.RecordBatch) -> bytes:
    """One chunk of ``RAW_SCHEMA`` rows, kept in the given order (stored order: sorted by t)."""
    return _encode(table, RAW)


def decode_raw(data: bytes) -> pa.Table:
    """The ``RAW_SCHEMA`` rows of a chunk made by :func:`encode_raw`."""
    return _decode(data, RAW)


def encode_level(table: pa.Table | pa.RecordBatch, plans: LevelPlans | None = None,
                 key: Hashable = None, prefix: bytes = b"") -> bytes:
    """One chunk of ``LEVEL_SCHEMA`` rows; other columns (``stream_id``) are not stored.

    With ``plans``, the column choices made for an earlier chunk under ``key`` (its stream and
    level) are reused while they stay good, instead of rating every candidate again (see
    :mod:`datastream.storage.level_plans`); the chunk then differs from a fresh one only in
    choices the data does not tell apart yet. ``prefix`` (a container's tag) is put before the
    chunk in the same copy: a 16k-row chunk is hundreds of kB."""
    return _encode(table, LEVEL, plans, key, prefix)


def decode_level(data: bytes, start_us: int | None = None, end_us: int | None = None
                 ) -> pa.Table:
    """The ``LEVEL_SCHEMA`` rows of a chunk made by :func:`encode_level`; with a bound, only
    its rows with ``start_us <= t < end_us`` (the chunk's rows are sorted by ``t``).

    A read of a few hours at 10 s takes a part of a chunk: the columns stored as they are must
    be integrated from the chunk's start anyway, but the predicted ones are computed for the
    rows asked for only (most of a level chunk's decoding)."""
    return _decode(data, LEVEL, start_us, end_us)


def chunk_stats(data: bytes) -> tuple[int, int | None, int | None]:
    """``(rows, t0, t1)`` from the header alone (checked by its own CRC): what an index over
    stored chunks needs, without touching the body. t0/t1 are the smallest and largest valid
    ``t``, None when there is none."""
    rows, t0, t1, flags = _read_header(data)[3:]
    if not flags & _HAS_RANGE:
        return rows, None, None
    return rows, t0, t1


def describe(data: bytes) -> list[tuple[str, str, int]]:
    """``(column, codec name, stored bytes)`` per column, for benchmarks and debugging."""
    kind = _read_header(data)[1]
    columns, _ = _read_columns(data, kind)
    return [(name, CODEC_NAMES[codec], sum(lengths))
            for name, (codec, _, _, lengths) in zip(LAYOUTS[kind].names, columns)]


# == encoding ===================================================================================


Spec = tuple[int, int, int]
"""The choice for one column: ``(INT, order, 0)``, ``(DECIMAL, k, 0)``, ``(FLOAT_BITS, 0, 0)``,
``(TEXT, 0, 0)`` (plain or dictionary, decided per chunk) or ``(PREDICTED | RATIO, predictor
id, decimal scale)``."""
Plan = tuple[Spec | None, ...]
"""The choices for a chunk's columns in layout order, None for an all-null column (a tuple:
plans are remembered for many streams, and equal ones are shared)."""


def _encode(table: pa.Table | pa.RecordBatch, kind: int, plans: LevelPlans | None = None,
            key: Hashable = None, prefix: bytes = b"") -> bytes:
    layout = LAYOUTS[kind]
    rows = table.num_rows
    if rows > MAX_ROWS:
        raise ValueError(f"a chunk holds at most {MAX_ROWS} rows, not {rows}")
    validity: dict[str, bytes | None] = {}
    values: dict[str, np.ndarray | pa.Array | None] = {}
    for (name, dtype), array in zip(_NUMPY_TYPES[kind], _columns(table, layout)):
        validity[name], values[name] = _prepare(array, dtype)
    implementation = transforms_for(rows)
    if plans is None:
        plan = _rate(kind, values, implementation)
        return _write(kind, rows, validity, values, plan, implementation, prefix)[0]
    signature = tuple(x is not None for x in values.values())
    sampled = min(rows, 2 * _SAMPLE)
    remembered = plans.recall(key, signature, sampled)
    if remembered is not None:
        data, sizes = _write(kind, rows, validity, values, remembered, implementation, prefix)
        if plans.holds(key, sizes, rows):
            return data
    plan = _rate(kind, values, implementation)
    if plan != remembered:
        data, sizes = _write(kind, rows, validity, values, plan, implementation, prefix)
    plans.remember(key, plan, signature, sampled, sizes, rows)
    return data


def _rate(kind: int, values: dict, implementation: transforms.Implementation) -> Plan:
    """Each column's choice from estimates over its sample (see the module docstring)."""
    plan: dict[str, Spec] = {}
    sampled: dict[str, np.ndarray] = {}
    costs: dict[str, float] = {}  # estimated bits per value of each numeric column on its own
    scales: dict[str, int] = {}  # the decimal scale of each decimal column
    for name, x in values.items():
        if x is None:
            continue
        if not isinstance(x, np.ndarray):
            plan[name] = (TEXT, 0, 0)
            continue
        sample = sampled[name] = _sample(x)
        if x.dtype == np.float64:
            (codec, k), costs[name] = _float_plan(sample, implementation)
            plan[name] = (codec, k, 0)
            if codec == DECIMAL:
                scales[name] = k
        else:
            int_costs = implementation.int_costs(sample)
            costs[name] = min(int_costs)
            plan[name] = (INT, int_costs.index(costs[name]), 0)
    if kind == LEVEL:
        plan.update(_choose_predictions(sampled, costs, scales, implementation))
    return tuple(plan.get(name) for name in values)


def _write(kind: int, rows: int, validity: dict, values: dict, plan: Plan,
           implementation: transforms.Implementation, prefix: bytes) -> tuple[bytes, list[int]]:
    """``prefix`` and the chunk of prepared columns encoded as ``plan`` says, and the bytes of
    each column."""
    descriptors = []
    parts: list[bytes] = []
    sizes = []
    t_range = None
    version = 1  # the oldest format that reads the chunk
    for (name, x), spec in zip(values.items(), plan):
        if x is None:
            codec, param, column_parts = NULL, 0, []
        else:
            codec, arg, scale = spec
            if codec in _TABLES:
                param, column_parts = _encode_prediction(codec, arg, scale, values,
                                                         implementation)
                version = max(version, _TABLES[codec][arg].since)
            elif codec == INT:
                param, column_parts, valid_range = _encode_int(x, arg, implementation)
                if name == "t":
                    t_range = valid_range
            elif codec == TEXT:
                codec, param, column_parts = _encode_text(x)
            else:
                param, column_parts = _encode_float(x, codec, arg, implementation)
        flags = 0
        if validity[name] is not None:
            column_parts.insert(0, validity[name])
            flags = _HAS_VALIDITY
        lengths = [len(part) for part in column_parts]
        descriptors.append(_COLUMN.pack(codec, flags, param))
        descriptors.append(_LENGTHS[len(lengths)].pack(*lengths))
        parts.extend(column_parts)
        sizes.append(sum(lengths))
    head_of_body = b"".join(descriptors)
    crc = zlib.crc32(head_of_body)
    for part in parts:  # the body is joined once, with the header
        if part:
            crc = zlib.crc32(part, crc)
    t0, t1 = t_range or (0, 0)
    head = _HEADER.pack(MAGIC, version, kind, len(values), _HAS_RANGE if t_range else 0, rows,
                        t0, t1, crc)
    return b"".join((prefix, head, _U32.pack(zlib.crc32(head)), head_of_body, *parts)), sizes


def _columns(table: pa.Table | pa.RecordBatch, layout: pa.Schema) -> list[pa.Array]:
    """The layout's columns of ``table`` as single arrays of the layout's types. Every pyarrow
    call costs a microsecond or more, so the usual case (one batch, the layout's schema) takes
    the fewest."""
    if not table.schema.equals(layout):
        schema = table.schema
        missing = [name for name in layout.names if schema.get_field_index(name) < 0]
        if missing:
            raise ValueError(f"rows to encode lack the columns {missing}")
        table = table.select(layout.names)
        if not table.schema.equals(layout):
            table = table.cast(layout)
    if isinstance(table, pa.Table):
        batches = table.to_batches()
        if len(batches) != 1:
            table = table.combine_chunks()
            batches = table.to_batches()
        if len(batches) != 1:  # no rows: an empty table may have no batch at all
            return [pa.nulls(0, field.type) for field in layout]
        table = batches[0]
    return [table.column(i) for i in range(len(layout))]


def _prepare(
    array: pa.Array, dtype: type | None
) -> tuple[bytes | None, np.ndarray | pa.Array | None]:
    """(validity part or None, values): None for an all-null column, else the values with null
    slots filled (``dtype`` numpy: int64 or float64; a string array when ``dtype`` is None)."""
    rows, nulls = len(array), array.null_count
    if nulls == rows:
        return None, None
    if nulls == 0:
        validity = None
    else:
        bitmap = pc.is_valid(array).buffers()[1]
        validity = _compress(np.frombuffer(bitmap, np.uint8, (rows + 7) // 8),
                             blosc2.Filter.NOFILTER, blosc2.Codec.ZSTD)
    if dtype is None:
        return validity, array.fill_null("") if nulls else array
    if nulls:
        array = pc.fill_null_backward(pc.fill_null_forward(array))
    return validity, readonly(arrow_numpy.to_numpy(array), dtype)


def _float_plan(sample: np.ndarray, implementation: transforms.Implementation
                ) -> tuple[tuple[int, int], float]:
    """((codec, scale), estimated bits per value) of a float column on its own."""
    costs = _NO_COSTS.copy()
    implementation.decimal_costs(sample, 0, transforms.MAX_SCALE, costs)
    k = int(costs.argmin())
    if costs[k] > _DECIMAL_MAX_BITS:
        return (FLOAT_BITS, 0), 64.0
    return (DECIMAL, k), float(costs[k])


def _choose_predictions(sampled: dict, costs: dict, scales: dict[str, int],
                        implementation: transforms.Implementation) -> dict[str, Spec]:
    """Level columns to store against a prediction: ``{target: (codec, id, scale)}``.
    ``costs`` holds each numeric column's own estimate, ``scales`` the decimal scale of each
    decimal-encoded column; predictions are rated on the samples and taken greedily by gain,
    skipping those that would close a cycle (q from M2 and M2 from q)."""
    options = []
    for codec, table in _TABLES.items():
        for key, predictor in table.items():
            own = costs.get(predictor.target)
            if own is None:
                continue
            scale = scales.get(predictor.scale_from, -1) if predictor.scale_from else 0
            if not 0 <= scale <= predictors.MAX_SQUARED_SCALE:
                continue
            rated = _residuals(codec, key, scale, sampled, implementation, rate=True)
            if rated is not None and rated[1] < own:
                options.append((own - rated[1], (codec, key, scale)))
    chosen: dict[str, Spec] = {}
    for _, spec in sorted(options, key=lambda option: -option[0]):
        predictor = _TABLES[spec[0]][spec[1]]
        if predictor.target not in chosen and not any(
            _depends(name, predictor.target, chosen) for name in predictor.inputs
        ):
            chosen[predictor.target] = spec
    return chosen


def _residuals(codec: int, key: int, scale: int, values: dict,
               implementation: transforms.Implementation, rate: bool = False
               ) -> tuple[list[tuple[np.ndarray, int]], float] | None:
    """What storing a column against one prediction stores: the zigzagged integer columns
    with their bitwise ORs, and when ``rate`` their estimated bits per value (else 0.0). None
    when an input of the prediction is missing. The numba kernels and the numpy predictions
    give the same bits (:mod:`datastream.storage.residuals`)."""
    predictor = _TABLES[codec][key]
    target = values.get(predictor.target)
    inputs = [values.get(name) for name in predictor.inputs]
    for x in (target, *inputs):
        if not isinstance(x, np.ndarray):
            return None
    rows = len(target)
    if implementation is transforms.NUMBA:
        floats = [x for x in inputs if x.dtype == np.float64] + [_NO_FLOATS] * 2
        ints = [x for x in inputs if x.dtype == np.int64] + [_NO_INTS] * 4
        stored = np.empty(rows, np.int64)
        if codec == PREDICTED:
            bits_or, cost = residuals.ulp_residuals(predictor.op, target.view(np.int64),
                                                    floats[0], floats[1], ints[0], ints[1],
                                                    scale, stored, rate)
            return [(stored, bits_or)], cost
        ulps = np.empty(rows, np.int64)
        *ors, cost = residuals.ratio_residuals(predictor.op, target, floats[0], *ints[:4], scale,
                                               stored, ulps, rate)
        return list(zip((stored, ulps), ors)), cost
    parts, cost = [], 0.0
    for x in _numpy_residuals(codec, predictor, scale, values, target):
        x = readonly(x, np.int64)
        if rate:
            cost += implementation.int_costs(x)[0]
        z = np.empty(rows, np.int64)
        parts.append((z, implementation.int_encode(x, 0, z)[0]))
    return parts, cost


def _numpy_residuals(codec: int, predictor: Predictor, scale: int, values: dict,
                     target: np.ndarray) -> tuple[np.ndarray, ...]:
    """The integer columns of a prediction before zigzagging, through the numpy predictions
    (bit differences; for ``RATIO`` numerator differences, then ulps)."""
    if codec == PREDICTED:
        guess = predictors.predict(predictor, values, target.dtype, scale)
        with np.errstate(over="ignore"):
            return (target.view(np.int64) - guess.view(np.int64),)
    guess, divisor = predictors.ratio(predictor, values, scale)
    numerator = predictors.numerators(target, divisor, guess)
    back = predictors.quotients(numerator, divisor)
    with np.errstate(over="ignore"):
        return numerator - guess, target.view(np.int64) - back.view(np.int64)


def _depends(name: str, on: str, chosen: dict[str, Spec]) -> bool:
    """Whether column ``name`` is ``on`` or is predicted from it, directly or not."""
    if name == on:
        return True
    if name not in chosen:
        return False
    return any(_depends(i, on, chosen) for i in _TABLES[chosen[name][0]][chosen[name][1]].inputs)


def _encode_int(x: np.ndarray, order: int, implementation: transforms.Implementation
                ) -> tuple[int, list[bytes], tuple[int, int]]:
    z = np.empty(len(x), np.int64)
    tail, low, high = implementation.int_encode(x, order, z)
    width, packed = _pack(z[order:], tail)
    return order | width << 2, [z[:order].tobytes(), packed], (low, high)


def _encode_prediction(codec: int, key: int, scale: int, values: dict,
                       implementation: transforms.Implementation) -> tuple[int, list[bytes]]:
    stored = _residuals(codec, key, scale, values, implementation)
    if stored is None:  # plans only hold predictions whose inputs the chunk has
        raise RuntimeError(f"{_TABLES[codec][key].target!r} predicted from a missing column")
    widths, parts = [], []
    for z, bits_or in stored[0]:
        width, packed = _pack(z, bits_or)
        widths.append(width)
        parts.append(packed)
    if codec == PREDICTED:
        return key | widths[0] << 4 | scale << 7, parts
    return key | scale << 4 | widths[0] << 8 | widths[1] << 11, parts


def _encode_float(x: np.ndarray, codec: int, k: int, implementation: transforms.Implementation
                  ) -> tuple[int, list[bytes]]:
    if codec == FLOAT_BITS:
        return 0, [_compress(x, blosc2.Filter.SHUFFLE, blosc2.Codec.ZSTD)]
    digits = np.empty(len(x), np.int64)
    residual = np.empty(len(x), np.int64)
    digits_or, residual_or = implementation.decimal_encode(x, k, digits, residual)
    digits_width, packed_digits = _pack(digits[1:], digits_or)
    residual_width, packed_residual = _pack(residual, residual_or)
    param = k | digits_width << 4 | residual_width << 7
    return param, [digits[:1].tobytes(), packed_digits, packed_residual]


def _encode_text(array: pa.Array) -> tuple[int, int, list[bytes]]:
    encoded = array.dictionary_encode()
    dictionary = encoded.dictionary
    if 2 * len(dictionary) > len(array):
        width, lengths, data = _text_parts(array)
        return TEXT, width, [lengths, data]
    indices = arrow_numpy.to_numpy(encoded.indices).astype(np.int64)
    index_width, packed = _pack(indices, int(indices.max()))
    width, lengths, data = _text_parts(dictionary)
    return (TEXT_DICT, index_width | width << 3,
            [_U32.pack(len(dictionary)), packed, lengths, data])


def _text_parts(array: pa.Array) -> tuple[int, bytes, bytes]:
    """(width code, packed lengths, compressed UTF-8) of a string array without nulls."""
    offsets = np.frombuffer(array.buffers()[1], np.int32)
    offsets = offsets[array.offset:array.offset + len(array) + 1]
    lengths = np.diff(offsets).astype(np.int64)
    width, packed = _pack(lengths, int(np.bitwise_or.reduce(lengths)) if len(lengths) else 0)
    data = array.buffers()[2]
    data = b"" if data is None else data[int(offsets[0]):int(offsets[-1])]
    text = _compress(np.frombuffer(data, np.uint8), blosc2.Filter.NOFILTER, blosc2.Codec.ZSTD)
    return width, packed, text


def _sample(x: np.ndarray) -> np.ndarray:
    """Up to two blocks of consecutive values (start and middle): enough to rank transforms,
    and consecutive so that differences mean what they will mean over the whole column."""
    if len(x) <= 2 * _SAMPLE:
        return x
    middle = len(x) // 2
    return readonly(np.concatenate((x[:_SAMPLE], x[middle:middle + _SAMPLE])), x.dtype)


def _pack(values: np.ndarray, bits_or: int) -> tuple[int, bytes]:
    """(width code, compressed bytes) of int64 values read as unsigned, whose bitwise OR is
    ``bits_or``; all-zero values need no bytes."""
    if bits_or == 0 or len(values) == 0:
        return 0, b""
    size = (int(bits_or) & (2**64 - 1)).bit_length()
    code = 1 if size <= 8 else 2 if size <= 16 else 3 if size <= 32 else 4
    narrow = values.view(np.uint64).astype(_UNSIGNED[_WIDTHS[code]])
    return code, _compress(narrow, blosc2.Filter.BITSHUFFLE, blosc2.Codec.LZ4)


def _compress(values: np.ndarray, shuffle: blosc2.Filter, codec: blosc2.Codec) -> bytes:
    """blosc2 bytes of ``values``, or the raw bytes when compressing would not save at least a
    blosc2 header (tiny or incompressible parts): a part exactly as long as its uncompressed
    size is raw, which the decoder can tell because it knows that size."""
    nbytes = values.nbytes
    if nbytes > _MAX_PART:
        raise ValueError(f"a chunk column part holds at most {_MAX_PART} bytes, not {nbytes}: "
                         f"store fewer rows per chunk")
    if nbytes < _RAW_BELOW:
        return values.tobytes()
    packed = blosc2.compress(values, typesize=values.itemsize, clevel=1, filter=shuffle,
                             codec=codec)
    return packed if len(packed) < nbytes else values.tobytes()


# == decoding ===================================================================================


def _read_header(data: bytes) -> tuple[int, int, int, int, int, int, int]:
    """(version, kind, column count, rows, t0, t1, flags) after checking magic, CRC, version."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"a chunk is bytes, not {type(data).__name__}")
    if len(data) < _HEADER_SIZE:
        raise ValueError(f"not a datastream chunk: {len(data)} bytes, shorter than a header "
                         f"({_HEADER_SIZE})")
    magic, version, kind, ncols, flags, rows, t0, t1, _ = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError(f"not a datastream chunk: magic {bytes(magic)!r}, expected {MAGIC!r}")
    (head_crc,) = _U32.unpack_from(data, _HEADER.size)
    if zlib.crc32(memoryview(data)[:_HEADER.size]) != head_crc:
        raise ValueError("corrupted chunk: header checksum mismatch")
    if version not in READS:
        raise ValueError(f"chunk format version {version} is not supported (this version of "
                         f"datastream reads versions {', '.join(map(str, READS))})")
    if kind not in LAYOUTS:
        raise ValueError(f"corrupted chunk: unknown table kind {kind}")
    if rows > MAX_ROWS:
        raise ValueError(f"corrupted chunk: {rows} rows, more than a chunk holds ({MAX_ROWS})")
    return version, kind, ncols, rows, t0, t1, flags


def _read_columns(data: bytes, kind: int) -> tuple[list[tuple[int, int, int, list[int]]], int]:
    """Column entries (codec, flags, param, part lengths) and where the parts start, after
    checking the body CRC."""
    ncols = data[6]
    (body_crc,) = _U32.unpack_from(data, _HEADER.size - 4)
    if zlib.crc32(memoryview(data)[_HEADER_SIZE:]) != body_crc:
        raise ValueError("corrupted chunk: body checksum mismatch")
    if ncols > len(LAYOUTS[kind]):
        raise ValueError(f"chunk has {ncols} columns, this version of datastream knows "
                         f"{len(LAYOUTS[kind])}")
    columns = []
    offset = _HEADER_SIZE
    try:
        for _ in range(ncols):
            codec, flags, param = _COLUMN.unpack_from(data, offset)
            offset += _COLUMN.size
            if codec not in _PARTS:
                raise ValueError(f"corrupted chunk: unknown column codec {codec}")
            count = _PARTS[codec] + (flags & _HAS_VALIDITY)
            lengths = list(struct.unpack_from(f"<{count}I", data, offset))
            offset += 4 * count
            columns.append((codec, flags, param, lengths))
    except struct.error as error:
        raise ValueError(f"corrupted chunk: truncated column table ({error})") from None
    if offset + sum(sum(c[3]) for c in columns) != len(data):
        raise ValueError("corrupted chunk: part lengths do not add up to the chunk size")
    return columns, offset


class StoredColumn(NamedTuple):
    """One column of a parsed chunk: its codec and param, the compressed validity bitmap (None
    when the column has no nulls or is all null) and its other parts, as views of the chunk.
    (Tuples: a read of a million rows parses hundreds of them.)"""

    codec: int
    param: int
    validity: memoryview | None
    parts: list[memoryview]


class ParsedChunk(NamedTuple):
    """A chunk whose header and body checksum were checked, cut into its column parts (in the
    order of ``LAYOUTS[kind]``; a chunk written before a column was added has fewer)."""

    kind: int
    rows: int
    t0: int
    t1: int
    has_range: bool
    columns: list[StoredColumn]


def parse_chunk(data: bytes | memoryview, expected_kind: int) -> ParsedChunk:
    """The column parts of a chunk of ``expected_kind`` rows, without decoding them: for
    decoders that write many chunks into shared outputs (``storage.raw_columns``)."""
    _, kind, _, rows, t0, t1, flags = _read_header(data)
    if kind != expected_kind:
        names = {RAW: "raw", LEVEL: "level"}
        raise ValueError(f"this chunk holds {names[kind]} rows, not {names[expected_kind]} rows")
    entries, offset = _read_columns(data, kind)
    view = memoryview(data)
    columns = []
    for codec, column_flags, param, lengths in entries:
        parts = []
        for length in lengths:
            parts.append(view[offset:offset + length])
            offset += length
        validity = parts.pop(0) if column_flags & _HAS_VALIDITY else None
        columns.append(StoredColumn(codec, param, validity, parts))
    return ParsedChunk(kind, rows, t0, t1, bool(flags & _HAS_RANGE), columns)


def _decode(data: bytes, expected_kind: int, start_us: int | None = None,
            end_us: int | None = None) -> pa.Table:
    chunk = parse_chunk(data, expected_kind)
    rows, layout = chunk.rows, LAYOUTS[chunk.kind]
    validity: dict[str, pa.Buffer | None] = {}
    values: dict[str, np.ndarray | pa.Array | None] = {}
    predicted = []
    scratch = Scratch(rows)
    for field, column in zip(layout, chunk.columns):
        codec, param, parts = column.codec, column.param, column.parts
        try:
            validity[field.name] = None
            if column.validity is not None:
                validity[field.name] = pa.py_buffer(_decompress(column.validity,
                                                                (rows + 7) // 8))
            if codec in _TABLES:
                predicted.append((field, codec, param, parts))
                _predictor(*predicted[-1][:3])
            else:
                values[field.name] = _decode_values(field.type, rows, codec, param, parts,
                                                    scratch)
        except (RuntimeError, ValueError, TypeError) as error:
            raise ValueError(f"corrupted chunk: column {field.name!r} does not decode "
                             f"({error})") from None
    window = _window(values.get("t"), validity.get("t"), rows, start_us, end_us)
    while predicted:  # each once its inputs are decoded (predictions may chain)
        ready = [p for p in predicted if all(
            name in values for name in _predictor(*p[:3]).inputs)]
        if not ready:
            raise ValueError("corrupted chunk: predicted columns depend on each other")
        for item in ready:
            predicted.remove(item)
            field, codec, param, parts = item
            try:
                values[field.name] = _decode_predicted(field, codec, rows, param, parts, values,
                                                       window, scratch)
            except (RuntimeError, ValueError, TypeError) as error:
                raise ValueError(f"corrupted chunk: column {field.name!r} does not decode "
                                 f"({error})") from None
    arrays = []
    for field in layout:
        x = values.get(field.name)
        if x is None:  # all null, or a column added after the chunk was written
            arrays.append(pa.nulls(rows, field.type))
        elif isinstance(x, np.ndarray):
            if field.type == pa.int8():
                x = x.astype(np.int8)
            arrays.append(pa.Array.from_buffers(field.type, rows,
                                                [validity[field.name], pa.py_buffer(x)]))
        elif validity[field.name] is None:
            arrays.append(x)
        else:
            _, offsets, text = x.buffers()
            arrays.append(pa.Array.from_buffers(pa.string(), rows,
                                                [validity[field.name], offsets, text],
                                                offset=x.offset))
    table = pa.Table.from_arrays(arrays, schema=layout)
    if window.start or window.stop < rows:
        table = table.slice(window.start, window.stop - window.start)
    return table


def _window(t: object, t_validity: pa.Buffer | None, rows: int, start_us: int | None,
            end_us: int | None) -> slice:
    """The rows with ``start_us <= t < end_us`` of sorted times ``t`` as a slice (every row
    when there is no bound, or ``t`` is not a decoded column without nulls)."""
    if (start_us is None and end_us is None) or not isinstance(t, np.ndarray) \
            or t_validity is not None:
        return slice(0, rows)
    low = 0 if start_us is None else int(np.searchsorted(t, start_us, side="left"))
    high = rows if end_us is None else int(np.searchsorted(t, end_us, side="left"))
    return slice(low, max(low, high))


def _column(rows: int, dtype: type) -> np.ndarray:
    """A writable array for a decoded column, on Arrow's memory pool: the pool keeps freed
    memory for the next decode, where numpy's 128 kB arrays go back to the system and fault
    in again page by page."""
    return np.frombuffer(pa.allocate_buffer(rows * np.dtype(dtype).itemsize), dtype)


class Scratch:
    """Temporaries of a decode, shared by its columns (and, for a raw read, by its chunks):
    two int64 buffers for values before their transform is undone, and the packed bytes they
    are decompressed from. A 16k-row column is 128 kB, the size from which the allocator maps
    fresh pages for each array (and unmaps them when it is freed): a level chunk made a few
    dozen such temporaries, each paying its page faults. Each buffer is allocated when first
    asked for and grows to the largest request; what a column keeps is allocated for it.

    ``rows``: the length asked for when a call names none (a single chunk's rows)."""

    def __init__(self, rows: int = 0) -> None:
        self.rows = rows
        self._ints = [np.empty(0, np.int64), np.empty(0, np.int64)]
        self._packed = np.empty(0, np.uint8)

    def int64(self, which: int, rows: int | None = None) -> np.ndarray:
        """The first (0) or second (1) int64 buffer, ``rows`` long."""
        rows = self.rows if rows is None else rows
        if len(self._ints[which]) < rows:
            self._ints[which] = np.empty(rows, np.int64)
        return self._ints[which][:rows]

    def unpack(self, part: memoryview, width: int, out: np.ndarray) -> None:
        """:func:`unpack_into` through the shared packed bytes."""
        packed = None
        if width:
            if len(self._packed) < 8 * len(out):
                self._packed = np.empty(8 * len(out), np.uint8)
            packed = self._packed
        unpack_into(part, width, out, packed)


def _decode_values(type_: pa.DataType, rows: int, codec: int, param: int,
                   parts: list[memoryview], scratch: Scratch
                   ) -> np.ndarray | pa.Array | None:
    """The filled values of one column as encoded (numpy, or a string array); None if null."""
    if codec == NULL:
        return None
    if pa.types.is_string(type_):
        if codec not in (TEXT, TEXT_DICT):
            raise ValueError(f"codec {CODEC_NAMES[codec]} cannot hold text")
        return decode_text(rows, codec, param, parts)
    if codec == INT and not pa.types.is_floating(type_):
        return _decode_int(rows, param, parts, scratch)
    if codec == DECIMAL and pa.types.is_floating(type_):
        return _decode_decimal(rows, param, parts, scratch)
    if codec == FLOAT_BITS and pa.types.is_floating(type_):
        return np.frombuffer(_decompress(parts[0], rows * 8), np.float64)
    raise ValueError(f"codec {CODEC_NAMES[codec]} cannot hold {type_}")


def _decode_int(rows: int, param: int, parts: list[memoryview], scratch: Scratch
                ) -> np.ndarray:
    order, width = param & 3, param >> 2 & 7
    heads = np.frombuffer(parts[0], np.int64)
    if len(heads) != min(order, rows) or order > 2:
        raise ValueError("wrong number of leading values")
    if width == 0 and len(heads) == order:  # constant or arithmetic: nothing to integrate
        if len(parts[1]):
            raise ValueError("bytes stored for an all-zero part")
        first = np.empty(order, np.int64)
        transforms_for(rows).int_decode(readonly(heads, np.int64), order, first)
        if order < 2:
            return np.full(rows, first[0] if order else 0, np.int64)
        with np.errstate(over="ignore"):  # int64 arithmetic wraps, as in the encoder
            out = np.arange(rows, dtype=np.int64)
            out *= first[1] - first[0]
            out += first[0]
        return out
    z = scratch.int64(0)
    z[:order] = heads
    scratch.unpack(parts[1], width, z[order:])
    out = _column(rows, np.int64)
    transforms_for(rows).int_decode(readonly(z, np.int64), order, out)
    return out


def _decode_decimal(rows: int, param: int, parts: list[memoryview], scratch: Scratch
                    ) -> np.ndarray:
    k, digits_width, residual_width = param & 15, param >> 4 & 7, param >> 7 & 7
    if k > transforms.MAX_SCALE or len(parts[0]) != 8:
        raise ValueError("bad decimal scale or first value")
    digits = scratch.int64(0)
    digits[:1] = np.frombuffer(parts[0], np.int64)
    scratch.unpack(parts[1], digits_width, digits[1:])
    residual = _NO_RESIDUAL
    if residual_width:
        residual = scratch.int64(1)
        scratch.unpack(parts[2], residual_width, residual)
    elif len(parts[2]):
        raise ValueError("bytes stored for an all-zero part")
    out = _column(rows, np.float64)
    transforms_for(rows).decimal_decode(readonly(digits, np.int64), readonly(residual, np.int64), k,
                                     out)
    return out


_NO_RESIDUAL = np.empty(0, np.int64)


def _predictor(field: pa.Field, codec: int, param: int) -> Predictor:
    predictor = _TABLES[codec].get(param & 15)
    if predictor is None or predictor.target != field.name:
        raise ValueError(f"corrupted chunk: no {CODEC_NAMES[codec]} predictor {param & 15} for "
                         f"{field.name!r}")
    return predictor


def _decode_predicted(field: pa.Field, codec: int, rows: int, param: int,
                      parts: list[memoryview], values: dict, window: slice,
                      scratch: Scratch) -> np.ndarray:
    """A predicted column, ``rows`` long, computed in ``window`` only (zero elsewhere)."""
    predictor = _predictor(field, codec, param)
    whole = window.start == 0 and window.stop == rows
    if not whole:  # the inputs' rows in the window (views)
        values = {name: x[window] if isinstance(x, np.ndarray) else x
                  for name, x in values.items() if name in predictor.inputs}
    scale = param >> (7 if codec == PREDICTED else 4) & 15
    if predictor.scale_from and scale > predictors.MAX_SQUARED_SCALE:
        raise ValueError(f"decimal scale {scale} out of range")
    if codec == PREDICTED:
        dtype = np.float64 if field.type == pa.float64() else np.int64
        guess = predictors.predict(predictor, values, dtype, scale)
        residual = parts[0], param >> 4 & 7
    else:
        ratio = predictors.ratio(predictor, values, scale)
        guess = None if ratio is None else _ratio_guess(*ratio, parts[0], param >> 8 & 7,
                                                        window, scratch)
        residual = parts[1], param >> 11 & 7
    if guess is None:
        raise ValueError("an input of its prediction is missing")
    with np.errstate(over="ignore"):
        differences = _zigzagged(*residual, window, scratch)
        if differences is not None:
            guess.view(np.int64)[:] += differences
    if whole:
        return guess
    column = _column(rows, guess.dtype)
    column[:window.start] = 0
    column[window] = guess
    column[window.stop:] = 0
    return column


def _ratio_guess(numerator: np.ndarray, divisor: np.ndarray, part: memoryview,
                 width: int, window: slice, scratch: Scratch) -> np.ndarray:
    """``N / D`` of a ratio column in ``window``, ``N`` the predicted numerator plus the stored
    difference (a part of the chunk's rows)."""
    with np.errstate(over="ignore"):
        differences = _zigzagged(part, width, window, scratch)
        if differences is not None:
            numerator = numerator + differences
    return predictors.quotients(numerator, divisor)


def _zigzagged(part: memoryview, width: int, window: slice, scratch: Scratch
               ) -> np.ndarray | None:
    """The signed values in ``window`` of a packed part of zigzagged integers (the part holds
    every row of the chunk, and is decompressed whole); None when they are all zero (width 0:
    a prediction that was exact, as counts from counts are)."""
    if width == 0:
        if len(part):
            raise ValueError("bytes stored for an all-zero part")
        return None
    z = scratch.int64(0)
    scratch.unpack(part, width, z)
    z = z[window]
    out = np.empty(len(z), np.int64)
    transforms_for(len(z)).int_decode(readonly(z, np.int64), 0, out)
    return out


def decode_text(rows: int, codec: int, param: int, parts: list[memoryview]) -> pa.Array:
    if codec == TEXT:
        return _strings(rows, param & 7, parts[0], parts[1])
    if len(parts[0]) != 4:
        raise ValueError("dictionary size missing")
    (size,) = _U32.unpack(parts[0])
    if size > rows:  # a dictionary is only used for fewer distinct strings than rows
        raise ValueError(f"a dictionary of {size} strings for {rows} rows")
    indices = np.empty(rows, np.int64)
    _unpack(parts[1], param & 7, indices)
    dictionary = _strings(size, param >> 3 & 7, parts[2], parts[3])
    if rows and (indices.max() >= size or indices.min() < 0):
        raise ValueError("dictionary index out of range")
    return dictionary.take(arrow_numpy.from_numpy(indices))


def _strings(count: int, width: int, lengths: memoryview, data: memoryview) -> pa.Array:
    """``count`` strings from their packed lengths and compressed bytes."""
    sizes = np.empty(count, np.int64)
    _unpack(lengths, width, sizes)
    offsets = np.zeros(count + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    if offsets[-1] >= 2**31 or (count and sizes.min() < 0):
        raise ValueError("bad string lengths")
    text = _decompress(data, int(offsets[-1]))
    return pa.Array.from_buffers(pa.string(), count, [None, pa.py_buffer(offsets.astype(np.int32)),
                                                      pa.py_buffer(text)])


def _unpack(part: memoryview, width: int, out: np.ndarray) -> None:
    """The int64 values of a packed part into ``out`` (inverse of ``_pack``)."""
    unpack_into(part, width, out, None)


def unpack_into(part: memoryview, width: int, out: np.ndarray, scratch: np.ndarray | None
                ) -> None:
    """The int64 values of a packed part into ``out`` (inverse of ``_pack``), decompressing
    through ``scratch`` (uint8, at least 8 bytes a value) when given instead of a new buffer."""
    if width == 0:
        if len(part):
            raise ValueError("bytes stored for an all-zero part")
        out[:] = 0
        return
    if width > 4:
        raise ValueError(f"unknown width code {width}")
    size = _WIDTHS[width]
    if scratch is None or len(part) == len(out) * size:
        values = np.frombuffer(_decompress(part, len(out) * size), _UNSIGNED[size])
    else:
        values = scratch[:len(out) * size].view(_UNSIGNED[size])
        decompress_into(part, values)
    out[:] = values.view(np.int64) if size == 8 else values


def decompress_into(part: memoryview, out: np.ndarray) -> None:
    """The bytes of one part (see ``_compress``) written into the C-contiguous ``out``, whose
    size is what the part must hold."""
    expected = out.nbytes
    if len(part) == expected:
        out.view(np.uint8)[:] = np.frombuffer(part, np.uint8)
        return
    _check_compressed(part, expected)
    if expected:
        blosc2.decompress(part, dst=out)


def _decompress(part: memoryview, expected: int) -> bytes:
    """The ``expected`` bytes of one part (see ``_compress``), checked before allocating."""
    if len(part) == expected:
        return bytes(part)
    _check_compressed(part, expected)
    return blosc2.decompress(part)


def _check_compressed(part: memoryview, expected: int) -> None:
    """Refuse a part that is not one blosc2 chunk of exactly ``expected`` bytes."""
    if len(part) < 32:
        raise ValueError(f"a part of {len(part)} bytes cannot hold {expected}")
    nbytes, cbytes, _ = blosc2.get_cbuffer_sizes(part)
    if nbytes != expected or cbytes != len(part):
        raise ValueError(f"a part of {len(part)} bytes claims {cbytes} bytes holding {nbytes}, "
                         f"where {expected} were expected")

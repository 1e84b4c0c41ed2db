"""Reader of InfluxDB line protocol files into validated ``Parsed`` rows.

The parsing itself is :mod:`datastream.line_protocol`, shared with the HTTP service's
``/write``; this module feeds it a file in blocks of whole lines (so a large file never becomes
one Python string) and turns its errors into :class:`BadInput` naming ``file:line``. The
import keeps to numeric streams (strings and booleans are refused) and needs a timestamp on
every line: a file has no receive time to fall back on.
"""

from __future__ import annotations

import os
from typing import Any

from .. import line_protocol
from .bad_input import BadInput, Positions
from .readers import Advance
from .series import Parsed

BLOCK_BYTES = 16 << 20


def _blocks(path: str, advance: Advance):
    """(block of whole lines, number of its first line), about BLOCK_BYTES each."""
    first_line, rest = 1, b""
    with open(path, "rb") as handle:
        while True:
            data = handle.read(BLOCK_BYTES)
            advance(len(data))
            if not data:
                break
            data = rest + data
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest = data
                continue
            rest = data[cut:]
            yield data[:cut], first_line
            first_line += data.count(b"\n", 0, cut)
    if rest:
        yield rest, first_line


def read_line_protocol(path: str, precision: str, constant: dict[str, Any],
                       advance: Advance) -> Parsed:
    source = os.path.basename(path)
    parser = line_protocol.LineProtocolParser(precision, constant)
    try:
        for block, first_line in _blocks(path, advance):
            parser.feed(block, first_line)
    except line_protocol.LineProtocolError as error:
        raise BadInput(f"{source}:{error.line}", error.problem) from None
    parsed = parser.result()
    return Parsed(Positions(source, lines=parsed.lines), parsed.series, parsed.stream,
                  parsed.t_us, parsed.numbers())

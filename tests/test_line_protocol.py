"""The shared line protocol parser: escapes, value types, timestamps, errors naming the line,
and the columnar path agreeing with the per-line scanner."""

from __future__ import annotations

import numpy as np
import pytest

from datastream.line_protocol import (
    BOOL,
    FLOAT,
    INT,
    TEXT,
    LineProtocolError,
    LineProtocolParser,
    parse,
)


def test_series_fields_and_types():
    body = (b"cpu,host=a,region=eu usage=1.5,idle=7i 1700000000000000000\n"
            b"# comment\n\n"
            b"cpu,region=eu,host=a usage=-2e3,idle=8u 1700000001000000000\r\n"
            b'sys,host=a up="1 day, \\"quoted\\"",ok=T,bad=false 1700000000000000000\n')
    parsed = parse(body, text_values=True)
    assert parsed.series == [
        {"measurement": "cpu", "host": "a", "region": "eu", "field": "usage"},
        {"measurement": "cpu", "host": "a", "region": "eu", "field": "idle"},
        {"measurement": "sys", "host": "a", "field": "up"},
        {"measurement": "sys", "host": "a", "field": "ok"},
        {"measurement": "sys", "host": "a", "field": "bad"},
    ]
    assert parsed.value_types == ["numeric", "numeric", "nominal", "nominal", "nominal"]
    assert parsed.stream.tolist() == [0, 1, 0, 1, 2, 3, 4]
    assert parsed.lines.tolist() == [1, 1, 4, 4, 5, 5, 5]
    assert parsed.kinds.tolist() == [FLOAT, INT, FLOAT, INT, TEXT, BOOL, BOOL]
    assert parsed.arrow().to_pylist() == [1.5, 7, -2000.0, 8, '1 day, "quoted"', True, False]
    assert parsed.t_us.tolist() == [1700000000000000, 1700000000000000, 1700000001000000,
                                    1700000001000000, 1700000000000000, 1700000000000000,
                                    1700000000000000]


def test_escapes_in_names():
    body = b"disk\\ io,path=C:\\,dir\\=x,rack\\ 1=a\\ b free\\ space=1,\\,k=2 1\n"
    parsed = parse(body, precision="s")
    assert parsed.series == [
        {"measurement": "disk io", "path": "C:,dir=x", "rack 1": "a b", "field": "free space"},
        {"measurement": "disk io", "path": "C:,dir=x", "rack 1": "a b", "field": ",k"},
    ]
    assert parsed.t_us.tolist() == [1_000_000, 1_000_000]


def test_integers_and_floats_of_one_field_become_floats():
    parsed = parse(b"m v=1i 1\nm v=2.5 2\nm w=3i 3\n", precision="s")
    assert parsed.kinds.tolist() == [FLOAT, FLOAT, INT]
    assert parsed.numbers().tolist() == [1.0, 2.5, 3.0]
    assert parse(b"m v=1i 1\nm v=2i 2\n", precision="s").numbers().dtype == np.int64


@pytest.mark.parametrize(("precision", "stamp", "micros"), [
    ("ns", "1700000000123456789", 1700000000123456), ("us", "1700000000123456", 1700000000123456),
    ("ms", "1700000000123", 1700000000123000), ("s", "1700000000", 1700000000000000),
    ("m", "28333333", 28333333 * 60_000_000), ("h", "472222", 472222 * 3_600_000_000),
])
def test_precisions(precision, stamp, micros):
    assert parse(f"m v=1 {stamp}".encode(), precision=precision).t_us.tolist() == [micros]


def test_missing_timestamps_take_the_default_time():
    parsed = parse(b"m v=1\nm v=2 5\n", precision="s", default_time_us=42)
    assert parsed.t_us.tolist() == [42, 5_000_000]
    with pytest.raises(LineProtocolError, match="line 1: no timestamp"):
        parse(b"m v=1\n")


@pytest.mark.parametrize(("body", "message"), [
    (b"m v=1 1\nm v=abc 2", "line 2: field 'v': 'abc' is not a number"),
    (b"m v=1 1\n\nm", "line 3: no fields"),
    (b"m v 1", "line 1: field 'v' is not key=value"),
    (b"m v=1 1 2", "line 1: expected"),
    (b"m,host v=1 1", "line 1: tag 'host' is not key=value"),
    (b",host=a v=1 1", "line 1: no measurement name"),
    (b"m,field=x v=1 1", "line 1: tag 'field' clashes"),
    (b"m,a.b=x v=1 1", "line 1: query tags"),
    (b"m v=9223372036854775808i 1", "line 1: field 'v': '9223372036854775808i' is not an "
                                    "integer within int64"),
    (b"m v=-1u 1", "line 1: field 'v': '-1u' is not an unsigned integer"),
    (b"m v=1e999 1", "line 1: field 'v': '1e999' is not a finite number"),
    (b"m v=1 1.5", "line 1: timestamp '1.5' is not an integer"),
    (b"m v=1 99999999999999", "line 1: timestamp 99999999999999 (s) is outside"),
    (b'm v="open 1', "line 1: unterminated string value"),
    (b'm v="x"y 1', "line 1: unexpected 'y'"),
    (b"m v=1 1\n\xff", "line 2: not UTF-8 text"),
    (b'm v=1 1\nm v="t" 2', "line 2: field 'v': string value, but the field holds numeric"),
    (b"m v=t 1\nm v=1 2", "line 2: field 'v': float value, but the field holds string"),
])
def test_errors_name_the_line(body, message):
    with pytest.raises(LineProtocolError) as caught:
        parse(body, precision="s", text_values=True)
    assert str(caught.value).startswith(message), str(caught.value)


def test_text_values_are_refused_unless_allowed():
    with pytest.raises(LineProtocolError, match="string values are not imported"):
        parse(b'm v="x" 1')
    with pytest.raises(LineProtocolError, match="boolean true is not imported"):
        parse(b"m v=true 1")


def test_scanner_and_columnar_path_agree():
    """The same lines, once plain and once forced through the scanner by an escape."""
    rng = np.random.default_rng(3)
    lines = [f"m{i % 3},host=h{i % 5} a={rng.normal():.6f},b={i}i {1_700_000_000 + i}"
             for i in range(200)]
    plain = parse("\n".join(lines).encode(), precision="s")
    escaped = parse("\n".join(line.replace("host=", "ho\\st=") for line in lines).encode(),
                    precision="s")
    assert [{k.replace("\\", ""): v for k, v in q.items()} for q in escaped.series] \
        == [{k.replace("\\", ""): v for k, v in q.items()} for q in plain.series]
    for name in ("stream", "lines", "t_us", "kinds", "ints", "floats"):
        np.testing.assert_array_equal(getattr(plain, name), getattr(escaped, name))
    mixed = parse("\n".join(lines[:100] + ['x s="a b" 1'] + lines[100:]).encode(),
                  precision="s", text_values=True)
    assert mixed.lines.tolist()[:200] == plain.lines.tolist()[:200]
    assert mixed.rows == plain.rows + 1 and mixed.kinds[200] == TEXT


def test_blocks_keep_streams_and_line_numbers():
    parser = LineProtocolParser("s")
    parser.feed(b"m v=1 1\nn v=1 1\n", first_line=1)
    parser.feed(b"\nm v=2 2\n", first_line=3)
    parsed = parser.result()
    assert parsed.series == [{"measurement": "m", "field": "v"},
                             {"measurement": "n", "field": "v"}]
    assert parsed.stream.tolist() == [0, 1, 0] and parsed.lines.tolist() == [1, 2, 4]
    assert LineProtocolParser().result().rows == 0

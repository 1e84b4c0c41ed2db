"""Compact HTML tables (behaviour §6.5): both ends of a table, escaped, with the total."""

from __future__ import annotations

import datetime
import re

import pyarrow as pa

from datastream.html_tables import cell_text, rows_html, table_html

UTC = datetime.timezone.utc


def positions(html: str) -> list[str]:
    body = html.split("<tbody>", 1)[1]
    return re.findall(r"<tr[^>]*><th>([^<]*)</th>", body)


def test_long_table_shows_five_rows_at_each_end_and_an_ellipsis_row() -> None:
    table = pa.table({"n": list(range(23)), "label": [f"x{n}" for n in range(23)]})
    html = table_html(table)
    assert positions(html) == ["0", "1", "2", "3", "4", "⋮", "18", "19", "20", "21", "22"]
    assert "<td>x22</td>" in html and "<td>x5</td>" not in html
    assert 'title="13 rows not shown"' in html
    assert "23 rows × 2 columns" in html
    assert "<th>n</th><th>label</th>" in html


def test_short_table_shows_every_row_without_ellipsis() -> None:
    table = pa.table({"n": list(range(10))})
    html = table_html(table)
    assert positions(html) == [str(n) for n in range(10)]
    assert "⋮" not in html
    assert "10 rows × 1 columns" in html
    assert "0 rows" in table_html(table.slice(0, 0))


def test_names_values_and_caption_are_escaped() -> None:
    table = pa.table({"<b>": ["a & <i>"], "ok": [None]})
    html = table_html(table, caption="<caption>")
    assert "<th>&lt;b&gt;</th>" in html
    assert "<td>a &amp; &lt;i&gt;</td>" in html
    assert "<caption>&lt;caption&gt;</caption>" in html
    assert '<td style="opacity: 0.5">null</td>' in html
    assert "1 row × 2 columns" in html


def test_rows_html_numbers_the_tail_from_the_total() -> None:
    html = rows_html(["v"], [(1,)], [(9,)], 1000)
    assert positions(html) == ["0", "⋮", "999"]


def test_cell_text() -> None:
    moment = datetime.datetime(2026, 1, 1, 1, 2, 3, tzinfo=UTC)
    assert cell_text(moment) == "2026-01-01 01:02:03"
    assert cell_text(moment.replace(microsecond=5)) == "2026-01-01 01:02:03.000005"
    east = datetime.timezone(datetime.timedelta(hours=2))
    assert cell_text(moment.astimezone(east)) == "2026-01-01 01:02:03"
    assert cell_text(2.5) == "2.5"
    assert cell_text(1 / 3) == "0.333333"
    assert cell_text(2**62) == str(2**62)
    assert cell_text(True) == "True"
    assert cell_text({"a": [1, "é"]}) == '{"a":[1,"é"]}'
    assert cell_text([("x", 2)]) == '[["x",2]]'

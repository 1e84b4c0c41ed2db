"""IPython display of pyarrow Tables (behaviour §6.5), in a real InteractiveShell."""

from __future__ import annotations

import datetime
import importlib
import sys

import pyarrow as pa
import pytest

from datastream import notebook


@pytest.fixture
def shell():
    interactive = importlib.import_module("IPython.core.interactiveshell")  # the test extra
    instance = interactive.InteractiveShell.instance()
    yield instance
    instance.display_formatter.formatters["text/html"].pop(pa.Table, None)
    interactive.InteractiveShell.clear_instance()


def test_without_ipython_nothing_is_registered(monkeypatch) -> None:
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert notebook.running_shell() is None
    assert notebook.register_table_html() is False
    assert "IPython" not in sys.modules  # never imported on the caller's behalf


def test_imported_but_not_running_registers_nothing() -> None:
    from IPython.core.interactiveshell import InteractiveShell

    InteractiveShell.clear_instance()
    assert notebook.register_table_html() is False


def test_tables_render_as_compact_html_in_a_running_shell(shell) -> None:
    table = pa.table({"stream_id": ["a"] * 30, "v": [float(n) for n in range(30)]})
    before, _ = shell.display_formatter.format(table)
    assert notebook.register_table_html() is True
    assert notebook.register_table_html() is True  # idempotent
    shown, _ = shell.display_formatter.format(table)
    html = shown["text/html"]
    assert "text/html" not in before or before["text/html"] != html
    assert "<caption>pyarrow.Table</caption>" in html
    assert "30 rows × 2 columns" in html
    assert "<td style=\"text-align: right\">29.0</td>" in html
    assert "<td style=\"text-align: right\">12.0</td>" not in html  # a middle row
    assert shown["text/plain"].startswith("pyarrow.Table")  # plain text untouched


def test_get_table_registers_the_display_in_a_running_shell(shell) -> None:
    import datastream

    with datastream.Datastream() as ds:
        for room in ("a", "b"):
            stream_id = ds.ensure_stream({"room": room}, {}, [], datastream.Granularity.Seconds)
            ds.append(stream_id, 1.5, datetime.datetime(2026, 1, 1))
        assert pa.Table not in shell.display_formatter.formatters["text/html"].type_printers
        table = ds.get_table({}, "seconds", tags=["room"])
    shown, _ = shell.display_formatter.format(table)
    assert "<th>stream_id</th><th>room</th><th>t</th><th>v</th>" in shown["text/html"]
    assert "2 rows × 4 columns" in shown["text/html"]

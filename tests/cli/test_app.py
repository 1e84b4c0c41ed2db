"""The entry points: ``python -m datastream``, help, and errors as one line."""
from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import datastream
from datastream.backends import duckdb

from .support import ROOT, invoke, subprocess_run


def test_python_m_lists_every_command():
    result = subprocess_run("--help")
    assert result.returncode == 0
    for command in ("demo", "warmup", "import", "export", "streams", "info", "downsample",
                    "backprocess", "verify"):
        assert command in result.stdout
    assert "influxdb://" in result.stdout and "mongodb://" in result.stdout


def test_datastream_error_is_one_line_exit_1(tmp_path):
    datastream.Datastream(duckdb.Backend(str(tmp_path / "s.duckdb"))).close()
    result = subprocess_run("export", "--db", tmp_path / "s.duckdb", "--stream-id", "nope",
                            "-o", tmp_path / "x.csv")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("command", [["streams"], ["info"], ["verify"], ["downsample"],
                                     ["export", "--stream-id", "x", "-o", "out.csv"]])
@pytest.mark.parametrize("option", ["--db", "--url"])
def test_commands_on_stored_streams_refuse_a_missing_store(tmp_path, command, option):
    """A mistyped --db path (or duckdb: URL, the same store) is an error, and no empty store
    is left behind under it."""
    missing = tmp_path / "typo.duckdb"
    result = invoke(*command, option, missing if option == "--db" else f"duckdb://{missing}")
    assert result.exit_code == 1
    assert result.output.startswith(f"error: no store at {missing}")
    assert not missing.exists()


def test_demo_keeps_its_options(tmp_path):
    result = invoke("demo", "--path", tmp_path / "demo.duckdb", "--streams", "2",
                    "--points", "500")
    assert result.exit_code == 0, result.output
    assert "2 streams x 500 points" in result.output


def test_demo_takes_db_or_a_backend_url(tmp_path):
    result = invoke("demo", "--db", tmp_path / "d.duckdb", "--streams", "2", "--points", "300")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "d.duckdb").exists()
    url = f"duckdb:///{tmp_path / 'u.duckdb'}"
    for _ in range(2):  # a second run replaces the first run's demo streams
        result = invoke("demo", "--url", url, "--streams", "3", "--points", "300")
        assert result.exit_code == 0, result.output
        assert f"3 streams x 300 points into {url}" in result.output
    with datastream.Datastream(duckdb.Backend(str(tmp_path / "u.duckdb"))) as ds:
        assert len(ds.find_streams()) == 3
    for bad in (["--streams", "0"], ["--points", "-1"], ["--url", "nope://x"]):
        result = subprocess_run("demo", "--db", tmp_path / "bad.duckdb", *bad)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr


def test_import_datastream_stays_light():
    code = "import sys, datastream; print([m for m in ('click', 'rich') if m in sys.modules])"
    output = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout
    assert output.strip() == "[]"


def test_every_command_is_found_where_its_module_is_named():
    from datastream.cli import app

    for name, module in app.COMMAND_MODULES.items():
        commands = importlib.import_module(f"datastream.cli.{module}").COMMANDS
        assert name in {command.name for command in commands}
    defined = {path.stem for path in (ROOT / "datastream" / "cli").glob("*_command*.py")}
    assert set(app.COMMAND_MODULES.values()) == defined


def test_a_command_loads_only_its_own_module(tmp_path):
    """``datastream streams`` does not load the import/export machinery or the HTTP service."""
    datastream.Datastream(duckdb.Backend(str(tmp_path / "s.duckdb"))).close()
    code = ("import sys; from datastream.cli import main; "
            f"assert main(['streams', '--db', {str(tmp_path / 's.duckdb')!r}]) == 0; "
            "print(sorted(m for m in sys.modules if m.startswith('datastream.cli.')"
            " and m.endswith('_command')))")
    output = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout
    assert output.strip().splitlines()[-1] == "['datastream.cli.streams_command']"

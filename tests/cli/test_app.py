"""The entry points: ``python -m datastream``, help, and errors as one line."""

from __future__ import annotations

import subprocess
import sys

from .support import ROOT, invoke, subprocess_run


def test_python_m_lists_every_command():
    result = subprocess_run("--help")
    assert result.returncode == 0
    for command in ("demo", "warmup", "import", "export", "streams", "info", "downsample",
                    "backprocess", "verify"):
        assert command in result.stdout
    assert "influxdb://" in result.stdout and "mongodb://" in result.stdout


def test_datastream_error_is_one_line_exit_1(tmp_path):
    result = subprocess_run("export", "--db", tmp_path / "s.duckdb", "--stream-id", "nope",
                            "-o", tmp_path / "x.csv")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1


def test_demo_keeps_its_options(tmp_path):
    result = invoke("demo", "--path", tmp_path / "demo.duckdb", "--streams", "2",
                    "--points", "500")
    assert result.exit_code == 0, result.output
    assert "2 streams x 500 points" in result.output


def test_import_datastream_stays_light():
    code = "import sys, datastream; print([m for m in ('click', 'rich') if m in sys.modules])"
    output = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout
    assert output.strip() == "[]"

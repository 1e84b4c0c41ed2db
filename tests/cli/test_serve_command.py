"""``datastream serve``: refusals before anything is opened, the token file, and a real server
process that stops cleanly with its acknowledged writes stored."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from datastream.cli.serve_command import is_loopback

from .support import ROOT, invoke, stored


def test_refuses_a_non_loopback_address_without_a_token(tmp_path):
    result = invoke("serve", "--db", tmp_path / "s.duckdb", "--host", "0.0.0.0")
    assert result.exit_code == 2
    assert "refusing to listen on 0.0.0.0 without a token" in result.output
    assert "--insecure" in result.output
    assert not (tmp_path / "s.duckdb").exists()


@pytest.mark.parametrize(("options", "message"), [
    (["--token", "a", "--token-file", "TOKEN_FILE"], "not both"),
    (["--token-file", "EMPTY_FILE"], "is empty"),
    (["--token", " "], "must not be empty"),
    (["--downsamplers", "avg"], "unknown 'avg'"),
])
def test_option_mistakes_are_usage_errors(tmp_path, options, message):
    (tmp_path / "token").write_text("secret\n")
    (tmp_path / "empty").write_text("\n")
    paths = {"TOKEN_FILE": str(tmp_path / "token"), "EMPTY_FILE": str(tmp_path / "empty")}
    result = invoke("serve", "--db", tmp_path / "s.duckdb",
                    *[paths.get(option, option) for option in options])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "s.duckdb").exists()


def test_loopback_addresses():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("[::1]")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::")
    assert not is_loopback("192.0.2.10")  # a documentation address: only classified


def test_serves_with_a_token_file_and_stops_cleanly(tmp_path):
    (tmp_path / "token").write_text("from-a-file\n")
    store = tmp_path / "s.duckdb"
    server = subprocess.Popen(
        [sys.executable, "-m", "datastream", "serve", "--db", str(store), "--port", "0",
         "--token-file", str(tmp_path / "token")],
        env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        banner = server.stdout.readline()
        assert banner.startswith("serving on http://127.0.0.1:"), banner
        assert "token required" in banner
        url = banner.split()[2]
        with httpx.Client(base_url=url, timeout=60) as client:
            assert client.get("/api/v1/stream/").status_code == 401
            auth = {"Authorization": "Bearer from-a-file"}
            response = client.post("/write?precision=s", headers=auth,
                                   content="room,site=lab temp=21.5 946684800\n")
            assert response.status_code == 204, response.text
            listing = client.get("/api/v1/stream/", headers=auth).json()
            assert listing["objects"][0]["tags"]["measurement"] == "room"
    finally:
        server.terminate()
        assert server.wait(timeout=60) == 0, server.stderr.read()
    t, v = stored(store)["field=temp,measurement=room,site=lab"]
    assert t.tolist() == [946684800_000000] and v.tolist() == [21.5]

"""The chart page at / and its static files; a placeholder until they are installed."""

from __future__ import annotations

from datastream.http import pages


def test_placeholder_until_the_page_is_installed(service, tmp_path, monkeypatch):
    monkeypatch.setattr(pages, "STATIC", tmp_path / "static")
    svc = service()
    response = svc.client.get("/")
    assert response.status_code == 200 and "/api/v1/stream/" in response.text
    assert svc.client.get("/static/app.js").status_code == 404
    (tmp_path / "static" / "vendor").mkdir(parents=True)
    (tmp_path / "static" / "index.html").write_text("<title>charts</title>")
    (tmp_path / "static" / "vendor" / "lib.js").write_text("var x = 1;")
    monkeypatch.setattr(pages.StaticDirectory, "__init__", lambda self: super(
        pages.StaticDirectory, self).__init__(directory=tmp_path / "static", check_dir=False))
    svc = service()
    assert svc.client.get("/").text == "<title>charts</title>"
    response = svc.client.get("/static/vendor/lib.js")
    assert response.status_code == 200 and response.text == "var x = 1;"
    assert svc.client.get("/static/../conftest.py").status_code == 404

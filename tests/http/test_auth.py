"""The token guards every endpoint; the accepted ways of presenting it."""

from __future__ import annotations

import base64

import pytest

from .conftest import TOKEN

ENDPOINTS = [("GET", "/"), ("GET", "/static/app.js"), ("GET", "/api/v1/stream/"),
             ("GET", "/api/v1/stream/9b2e8a0e-5a59-4a8e-9a51-7ad7f0000000/"),
             ("POST", "/api/v1/stream/9b2e8a0e-5a59-4a8e-9a51-7ad7f0000000/datapoints"),
             ("POST", "/write"), ("GET", "/ping"), ("GET", "/openapi.json"),
             ("GET", "/no/such/path")]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_endpoint_needs_the_token(service, method, path):
    svc = service()
    anonymous = svc.anonymous()
    response = anonymous.request(method, path, content=b"m v=1")
    assert response.status_code == 401
    assert response.json() == {"error": "this server needs a token"}
    assert response.headers["www-authenticate"].startswith("Bearer")
    wrong = anonymous.request(method, path, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json() == {"error": "invalid token"}


def test_accepted_credentials(service):
    svc = service()
    anonymous = svc.anonymous()
    basic = base64.b64encode(f"telegraf:{TOKEN}".encode()).decode()
    for headers, params in [({"Authorization": f"Bearer {TOKEN}"}, {}),
                            ({"Authorization": f"Token {TOKEN}"}, {}),
                            ({"Authorization": f"Basic {basic}"}, {}),
                            ({}, {"u": "telegraf", "p": TOKEN})]:
        response = anonymous.post("/write", params=params, headers=headers,
                                  content=b"m v=1 1700000000000000000")
        assert response.status_code == 204, (headers, params, response.text)
        assert anonymous.get("/ping", params=params, headers=headers).status_code == 204
    assert anonymous.get("/ping", headers={"Authorization": "Basic !!"}).status_code == 401
    assert anonymous.get("/api/v1/stream/", params={"token": TOKEN}).status_code == 401


def test_the_page_cookie_authenticates_reads_only(service):
    svc = service()
    browser = svc.anonymous()
    page = browser.get("/", params={"token": TOKEN})
    assert page.status_code == 200
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("datastream_token=") and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie and "Path=/" in cookie
    assert browser.get("/api/v1/stream/").status_code == 200  # the cookie jar sends it
    assert browser.get("/openapi.json").status_code == 200
    assert browser.post("/write", content=b"m v=1").status_code == 401
    assert svc.anonymous().get("/", params={"token": "wrong"}).status_code == 401
    assert "set-cookie" not in svc.client.get("/").headers


def test_without_a_token_everything_is_open(service):
    svc = service(token=None)
    anonymous = svc.anonymous()
    assert anonymous.get("/api/v1/stream/").status_code == 200
    assert anonymous.post("/write", content=b"m v=1").status_code == 204
    assert "set-cookie" not in anonymous.get("/", params={"token": "x"}).headers
    assert "security" not in anonymous.get("/openapi.json").json()

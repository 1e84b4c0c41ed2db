"""Body size limits (413), gzip bodies and zip bombs."""

from __future__ import annotations

import gzip
import time
import tracemalloc

import pytest

from datastream.http.errors import ApiError
from datastream.http.limits import inflate

LIMIT = 64 * 1024


def test_inflate_bounds_the_output_not_just_the_check():
    bomb = gzip.compress(b"\0" * (64 * 2**20))  # 64 MiB of zeros in ~64 KiB
    tracemalloc.start()
    try:
        with pytest.raises(ApiError) as caught:
            inflate(bomb, LIMIT)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.status == 413
    assert peak < 4 * LIMIT + 2**20  # never the inflated size
    assert inflate(gzip.compress(b"a") + gzip.compress(b"b"), LIMIT) == b"ab"
    with pytest.raises(ApiError) as caught:
        inflate(gzip.compress(b"x" * 1000)[:-12], LIMIT)
    assert caught.value.status == 400 and "truncated" in caught.value.message
    with pytest.raises(ApiError) as caught:
        inflate(b"not gzip", LIMIT)
    assert caught.value.status == 400


def test_large_and_compressed_bodies_over_http(service):
    svc = service(max_body_bytes=LIMIT)
    big = b"m v=1 1700000000000000000\n" * (LIMIT // 20)
    response = svc.client.post("/write", content=big)
    assert response.status_code == 413
    assert response.json() == {"error": f"the request body is over the limit of {LIMIT} bytes"}

    def chunks():  # no Content-Length: the limit applies while the body streams in
        for _ in range(LIMIT // 1000 + 2):
            yield b"m v=1 1700000000000000000\n" * 40

    assert svc.client.post("/write", content=chunks()).status_code == 413
    started = time.monotonic()
    bomb = gzip.compress(b"m v=1\n" * (16 * 2**20 // 6))
    assert len(bomb) < LIMIT  # small on the wire, 16 MiB inflated
    response = svc.client.post("/write", content=bomb, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413 and "inflated" in response.json()["error"]
    assert time.monotonic() - started < 10
    stream = svc.ds.ensure_stream({"n": 1}, {}, [], "seconds")
    points = b"[" + b",".join([b'{"t": 1700000000, "v": 1}'] * (LIMIT // 20)) + b"]"
    response = svc.client.post(f"/api/v1/stream/{stream}/datapoints", content=points,
                               headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    response = svc.client.post("/write", content=b"m v=1",
                               headers={"Content-Encoding": "br"})
    assert response.status_code == 415
    assert len(svc.ds.find_streams()) == 1  # nothing of the refused bodies was stored
    small = gzip.compress(b"m v=1 1700000000000000000\n" * 100)
    assert svc.client.post("/write", content=small,
                           headers={"Content-Encoding": "gzip"}).status_code == 204

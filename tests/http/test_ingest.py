"""Group commit under concurrent writers: every acknowledged point stored exactly once, every
request all or nothing, and refused requests never take the others down."""

from __future__ import annotations

import concurrent.futures
import datetime

import httpx
import numpy as np

import datastream
from datastream.backends import duckdb
from datastream.http.ingest import downsamplers_for

EVERYTHING = datetime.datetime.min
THREADS, REQUESTS, LINES = 6, 12, 300
BASE_NS = 1_700_000_000 * 10**9


def _body(thread: int, request: int, late: bool) -> str:
    """LINES points for fields v and w of this thread's series; a late request ends with a
    point older than what the series already holds (refused: behaviour §4.1)."""
    start = (request * LINES) * 10**9
    lines = [f"load,thread={thread} v={request}.5,w={index}i {BASE_NS + start + index * 10**9}"
             for index in range(LINES)]
    if late:
        lines.append(f"load,thread={thread} v=0 {BASE_NS}")
    return "\n".join(lines)


def _stored(ds: datastream.Datastream, thread: int, field: str) -> np.ndarray:
    (tags,) = ds.find_streams({"measurement": "load", "thread": str(thread), "field": field})
    table = ds.get_data(tags["stream_id"], "seconds", start=EVERYTHING).to_arrow()
    return table.column("t").cast("int64").to_numpy()


def test_concurrent_writers_store_every_point_once(service, tmp_path):
    store = datastream.Datastream(duckdb.Backend(str(tmp_path / "ingest.duckdb")))
    svc = service(ds=store)

    def writer(thread: int) -> list[tuple[int, int]]:
        outcomes = []
        with httpx.Client(base_url=svc.url, headers=svc.client.headers, timeout=120) as client:
            for request in range(REQUESTS):
                late = request % 4 == 3 and request > 0
                response = client.post("/write?precision=ns", content=_body(thread, request, late))
                outcomes.append((request, response.status_code))
        return outcomes

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(writer, range(THREADS)))
    for thread, outcomes in enumerate(results):
        accepted = [request for request, status in outcomes if status == 204]
        refused = [request for request, status in outcomes if status == 400]
        assert sorted(accepted + refused) == list(range(REQUESTS)), outcomes
        assert refused == [request for request in range(REQUESTS) if request % 4 == 3]
        expected = np.concatenate([(BASE_NS + (request * LINES + np.arange(LINES)) * 10**9)
                                   // 1000 for request in accepted])
        for field in ("v", "w"):
            np.testing.assert_array_equal(_stored(store, thread, field), expected)
    ingest = svc.app.state.ingest
    assert ingest.batches == THREADS * REQUESTS - THREADS * (REQUESTS // 4)
    assert 1 <= ingest.groups <= ingest.batches


def test_json_and_line_writers_share_the_writer(service):
    svc = service()
    target = svc.ds.ensure_stream({"name": "json"}, {}, ["mean"], "seconds")

    def post_json(index: int) -> int:
        points = [{"t": 1_700_000_000 + index * 100 + i, "v": i} for i in range(100)]
        return svc.client.post(f"/api/v1/stream/{target}/datapoints", json=points).status_code

    def post_lines(index: int) -> int:
        return svc.client.post("/write?precision=s",
                               content=f"lp,n={index} v=1 1700000000").status_code

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        lines = list(pool.map(post_lines, range(8)))
    assert lines == [204] * 8
    statuses = [post_json(index) for index in range(5)]  # in order: one stream, rising times
    assert statuses == [204] * 5
    assert len(svc.ds.get_data(target, "seconds", start=EVERYTHING)) == 500
    assert len(svc.ds.find_streams({"measurement": "lp"})) == 8


def test_nominal_streams_keep_the_defaults_that_apply():
    assert downsamplers_for("nominal", ["mean", "most_often"]) == ["most_often"]
    assert downsamplers_for("nominal", ["mean", "max"]) == ["count"]
    assert downsamplers_for("nominal", []) == []
    assert downsamplers_for("numeric", ["mean", "max"]) == ["mean", "max"]

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


def _body(thread: int, request: int, bad: bool) -> str:
    """LINES points for fields v and w of this thread's series; the first request also writes
    the number x, and a bad request ends with a text x, which the numeric stream refuses when
    the writer appends it (behaviour §5.1), after its other lines parsed fine."""
    start = (request * LINES) * 10**9
    lines = [f"load,thread={thread} v={request}.5,w={index}i {BASE_NS + start + index * 10**9}"
             for index in range(LINES)]
    if request == 0:
        lines.append(f"load,thread={thread} x=1 {BASE_NS}")
    if bad:
        lines.append(f'load,thread={thread} x="text" {BASE_NS + start}')
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
                bad = request % 4 == 3
                response = client.post("/write?precision=ns", content=_body(thread, request, bad))
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


def test_late_points_are_accepted_outside_the_frozen_range(service):
    """Out-of-order writes are stored as late points (as InfluxDB accepts them); a point in the
    downsampled (frozen) range is refused with nothing of its request stored."""
    svc = service()
    post = lambda body: svc.client.post("/write?precision=s", content=body)  # noqa: E731
    assert post("late v=10 1700000100\nlate v=11 1700000200").status_code == 204
    assert post("late v=5 1700000050").status_code == 204  # older than the latest: a late point
    (tags,) = svc.ds.find_streams({"measurement": "late"})
    stored = svc.ds.get_data(tags["stream_id"], "seconds", start=EVERYTHING).to_arrow()
    assert stored.column("v").to_pylist() == [5, 10, 11]
    svc.ds.downsample_streams(until=datetime.datetime(2023, 11, 14, 22, 20,
                                                      tzinfo=datetime.timezone.utc))
    response = post("late v=6 1700000300\nlate v=1 1700000051")  # the second is frozen
    assert response.status_code == 400 and "downsampled range" in response.json()["error"]
    stored = svc.ds.get_data(tags["stream_id"], "seconds", start=EVERYTHING).to_arrow()
    assert stored.column("v").to_pylist() == [5, 10, 11]


def test_late_points_can_be_refused(service):
    svc = service(accept_late_points=False)
    assert svc.client.post("/write?precision=s", content="s v=1 1700000100").status_code == 204
    response = svc.client.post("/write?precision=s", content="s v=2 1700000050")
    assert response.status_code == 400 and "older" in response.json()["error"]


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

"""Two servers over one shared backend (MongoDB, InfluxDB + PostgreSQL), as two processes of a
deployment would be: new series arriving at both at once become one stream each, every point
stored once, and a stream deleted through one server is recreated by the other's next write
(its cache of stream ids is never trusted over the store)."""

from __future__ import annotations

import concurrent.futures
import datetime

import pytest

import datastream
from tests.conftest import BACKENDS

SHARED = [name for name in BACKENDS if name != "duckdb"]
EVERYTHING = datetime.datetime.min
WRITERS, REQUESTS, LINES = 4, 6, 50
BASE_S = 1_700_000_000


def _stored_seconds(ds: datastream.Datastream, query: dict) -> list[int]:
    (tags,) = ds.find_streams(query)
    table = ds.get_data(tags["stream_id"], "seconds", start=EVERYTHING).to_arrow()
    return [int(t.timestamp()) for t in table.column("t").to_pylist()]


@pytest.mark.parametrize("backend_factory", SHARED, indirect=True)
def test_two_servers_share_new_series_and_deletions(backend_factory, service):
    first = service(ds=datastream.Datastream(backend_factory()))
    second = service(ds=datastream.Datastream(backend_factory()))
    servers = [first, second]

    def writer(number: int) -> list[int]:
        statuses = []
        for request in range(REQUESTS):
            start = BASE_S + (request * WRITERS + number) * LINES
            body = "\n".join(f"cpu,writer=w{number} v={i} {start + i}\n"
                             f"load,host=shared v={i} {start + i}" for i in range(LINES))
            server = servers[(number + request) % 2]  # each writer alternates between them
            statuses.append(server.client.post("/write?precision=s", content=body).status_code)
        return statuses

    with concurrent.futures.ThreadPoolExecutor(WRITERS) as pool:
        results = list(pool.map(writer, range(WRITERS)))
    assert all(status == 204 for statuses in results for status in statuses), results
    every_second = sorted(BASE_S + (request * WRITERS + number) * LINES + i
                          for number in range(WRITERS) for request in range(REQUESTS)
                          for i in range(LINES))
    for server in servers:
        assert len(server.ds.find_streams({"measurement": "cpu"})) == WRITERS
        for number in range(WRITERS):
            seconds = _stored_seconds(server.ds, {"measurement": "cpu", "writer": f"w{number}"})
            assert seconds == sorted(BASE_S + (request * WRITERS + number) * LINES + i
                                     for request in range(REQUESTS) for i in range(LINES))
        # one stream for the series both servers saw first at once, every point in it once
        assert _stored_seconds(server.ds, {"measurement": "load"}) == every_second

    # deleted through the second server, written again through the first (whose cache knew it)
    line = f"mem,host=a used=1 {BASE_S}"
    assert first.client.post("/write?precision=s", content=line).status_code == 204
    second.ds.delete_streams({"measurement": "mem"})
    again = f"mem,host=a used=2 {BASE_S + 10}"
    assert first.client.post("/write?precision=s", content=again).status_code == 204
    assert _stored_seconds(second.ds, {"measurement": "mem"}) == [BASE_S + 10]
    for server in servers:
        server.ds.close()

"""Writes over HTTP: JSON datapoints for one stream and InfluxDB line protocol at /write."""

from __future__ import annotations

import datetime
import gzip
import time

import numpy as np
import pytest

import datastream

from .conftest import TOKEN

EVERYTHING = datetime.datetime.min
T0 = 1_700_000_000  # UNIX seconds


def raw(ds: datastream.Datastream, stream_id: str) -> list[dict]:
    return list(ds.get_data(stream_id, "seconds", start=EVERYTHING))


def streams(ds: datastream.Datastream) -> dict[str, dict]:
    """Stream tags keyed by 'measurement.field' (the tags /write gives)."""
    return {f"{tags['measurement']}.{tags['field']}": tags for tags in ds.find_streams()}


def test_json_datapoints_are_stored_before_the_204(service):
    svc = service()
    stream_id = svc.ds.ensure_stream({"name": "a"}, {}, ["mean"], "seconds")
    body = [{"t": T0, "v": 1}, {"t": T0 + 0.25, "v": 2.5}, {"t": "2023-11-14T22:13:21Z", "v": None}]
    response = svc.client.post(f"/api/v1/stream/{stream_id}/datapoints", json=body)
    assert response.status_code == 204, response.text
    points = raw(svc.ds, stream_id)
    assert [point["v"] for point in points] == [1, 2.5, None]
    assert points[1]["t"] == datetime.datetime(2023, 11, 14, 22, 13, 20, 250000,
                                               tzinfo=datetime.timezone.utc)
    assert points[2]["t"].isoformat() == "2023-11-14T22:13:21+00:00"


def test_json_datapoints_for_a_nominal_stream(service):
    svc = service()
    stream_id = svc.ds.ensure_stream({"name": "n"}, {}, ["count"], "seconds",
                                     value_type="nominal")
    body = [{"t": T0, "v": "up"}, {"t": T0 + 1, "v": {"state": [1, 2]}}, {"t": T0 + 2, "v": True}]
    assert svc.client.post(f"/api/v1/stream/{stream_id}/datapoints",
                           json=body).status_code == 204
    assert [point["v"] for point in raw(svc.ds, stream_id)] == ["up", {"state": [1, 2]}, True]


def test_bad_json_datapoints_name_the_item_and_store_nothing(service):
    svc = service()
    stream_id = svc.ds.ensure_stream({"name": "a"}, {}, ["mean"], "seconds")
    url = f"/api/v1/stream/{stream_id}/datapoints"
    cases = [
        ([{"t": T0, "v": 1}, {"t": "yesterday", "v": 2}], "item 1: 't'"),
        ([{"t": T0, "v": 1}, {"t": T0 + 1}], "item 1: no 'v'"),
        ([{"t": T0, "v": 1}, {"t": T0 + 1, "v": 2, "x": 0}], "item 1: unknown key 'x'"),
        ([{"t": T0, "v": 1}, [T0, 2]], "item 1: expected an object"),
        ([{"t": T0, "v": 1}, {"t": True, "v": 2}], "item 1: 't' must be"),
        ([{"t": T0, "v": 1}, {"t": 1e30, "v": 2}], "item 1: 't'"),
        ([{"t": T0, "v": "text"}], "item 0: "),
        ([{"t": T0, "v": 1}, {"t": T0 + 1, "v": 2}, {"t": T0 + 2, "v": "text"}],
         "item 2: "),  # the value the library refuses, named by its index
        ([{"t": T0, "v": 1.5}, {"t": T0 + 1, "v": True}], "item 1: "),  # not 1.0
        ([{"t": T0 + 0.5, "v": 1.5}, {"t": True, "v": 2.5}], "item 1: 't' must be"),
        ([{"t": T0, "v": 1}, {"t": T0 + 1, "v": {"m": 1}}], "item 1: "),
        ([{"t": T0 + 1, "v": 1}, {"t": T0, "v": 2}], "must not decrease"),
        ({"t": T0, "v": 1}, "JSON list"),
    ]
    for body, message in cases:
        response = svc.client.post(url, json=body)
        assert response.status_code == 400, (body, response.text)
        assert message in response.json()["error"], (body, response.text)
    for text in (b"[{", b'[{"t": 1, "v": NaN}]'):
        response = svc.client.post(url, content=text,
                                   headers={"Content-Type": "application/json"})
        assert response.status_code == 400 and "not valid JSON" in response.json()["error"]
    assert raw(svc.ds, stream_id) == []


def test_json_datapoints_refusals(service):
    svc = service()
    stream_id = svc.ds.ensure_stream({"name": "a"}, {}, ["mean"], "seconds")
    unknown = "9b2e8a0e-5a59-4a8e-9a51-7ad7f0000000"
    assert svc.client.post(f"/api/v1/stream/{unknown}/datapoints",
                           json=[{"t": T0, "v": 1}]).status_code == 404
    assert svc.client.post(f"/api/v1/stream/{unknown}/datapoints", json=[]).status_code == 404
    assert svc.client.post("/api/v1/stream/not-a-uuid/datapoints", json=[]).status_code == 404
    response = svc.client.post(f"/api/v1/stream/{stream_id}/datapoints", content=b"t,v",
                               headers={"Content-Type": "text/csv"})
    assert response.status_code == 415 and "application/json" in response.json()["error"]
    assert svc.client.get(f"/api/v1/stream/{stream_id}/datapoints").status_code == 405
    # a late point (behaviour §4.1) is refused, the earlier ones stay
    assert svc.client.post(f"/api/v1/stream/{stream_id}/datapoints",
                           json=[{"t": T0 + 5, "v": 1}]).status_code == 204
    late = svc.client.post(f"/api/v1/stream/{stream_id}/datapoints", json=[{"t": T0, "v": 2}])
    assert late.status_code == 400 and "InvalidTimestamp" not in late.text
    assert [point["v"] for point in raw(svc.ds, stream_id)] == [1]


LINES = (
    "# a comment, then a blank line\n"
    "\n"
    "cpu,host=a,region=eu usage=1.5,idle=7i 1700000000000000000\n"
    "cpu,region=eu,host=a usage=2.5,idle=8i 1700000001000000000\n"
    'sys,host=a uptime="1 day, 2 h",healthy=t,boots=3u 1700000000000000000\n'
    "disk\\ io,host=b bytes=10 1700000002000000000\n"
)


def test_write_maps_each_field_to_a_stream(service):
    svc = service(default_value_downsamplers=["mean", "max"])
    response = svc.client.post("/write?db=telegraf", content=LINES)
    assert response.status_code == 204, response.text
    found = streams(svc.ds)
    assert sorted(found) == ["cpu.idle", "cpu.usage", "disk io.bytes", "sys.boots",
                             "sys.healthy", "sys.uptime"]
    usage = found["cpu.usage"]
    assert datastream.Stream(usage).tags == {"measurement": "cpu", "host": "a", "region": "eu",
                                             "field": "usage"}
    assert usage["value_downsamplers"] == ["count", "sum", "max", "mean"]
    assert found["sys.uptime"]["value_type"] == "nominal"
    assert found["sys.uptime"]["value_downsamplers"] == ["count"]
    assert [p["v"] for p in raw(svc.ds, usage["stream_id"])] == [1.5, 2.5]
    assert [p["v"] for p in raw(svc.ds, found["cpu.idle"]["stream_id"])] == [7, 8]
    assert [p["v"] for p in raw(svc.ds, found["sys.uptime"]["stream_id"])] == ["1 day, 2 h"]
    assert [p["v"] for p in raw(svc.ds, found["sys.healthy"]["stream_id"])] == [True]
    assert [p["v"] for p in raw(svc.ds, found["sys.boots"]["stream_id"])] == [3]
    # the same series again goes to the same streams
    assert svc.client.post("/write", content="cpu,host=a,region=eu usage=3 1700000003"
                                              "000000000").status_code == 204
    assert len(streams(svc.ds)) == 6
    assert len(raw(svc.ds, usage["stream_id"])) == 3


def test_write_precision_missing_timestamps_and_gzip(service):
    svc = service()
    assert svc.client.post("/write?precision=s", content="m v=1 1700000000").status_code == 204
    assert svc.client.post("/write?precision=ms", content="m v=2 1700000001500").status_code \
        == 204
    before = time.time()
    assert svc.client.post("/write", content="m v=3").status_code == 204
    after = time.time()
    body = gzip.compress(b"m v=4\n")
    assert svc.client.post("/write", content=body,
                           headers={"Content-Encoding": "gzip"}).status_code == 204
    points = raw(svc.ds, streams(svc.ds)["m.v"]["stream_id"])
    assert [p["v"] for p in points] == [1, 2, 3, 4]
    assert points[1]["t"].timestamp() == 1700000001.5
    assert before - 1 <= points[2]["t"].timestamp() <= after + 1
    response = svc.client.post("/write?precision=weeks", content="m v=5")
    assert response.status_code == 400 and "precision" in response.json()["error"]


def test_malformed_line_rejects_the_whole_request(service):
    svc = service()
    body = ("a,host=x v=1 1700000000000000000\n"
            "b,host=x v=2 1700000000000000000\n"
            "c,host=x v=oops 1700000000000000000\n")
    response = svc.client.post("/write", content=body)
    assert response.status_code == 400
    assert response.json() == {"error": "line 3: field 'v': 'oops' is not a number"}
    assert len(svc.ds.find_streams()) == 0
    for text, message in [("m", "line 1: no fields"), ("m v=1 x", "line 1: timestamp 'x'"),
                          ("m v=\"open 1", "line 1: unterminated string"),
                          ("m v=1i\nm v=\"s\"", "line 2: field 'v': string value"),
                          ("m v=1\nm,h=a,h=b v=1", "line 2: tag 'h' is given twice")]:
        response = svc.client.post("/write", content=text)
        assert response.status_code == 400 and response.json()["error"].startswith(message), \
            response.text
    assert len(svc.ds.find_streams()) == 0


def test_a_refused_batch_leaves_no_half_created_streams(service):
    svc = service()
    assert svc.client.post("/write", content="old,host=x v=1 1700000005000000000\n"
                                             "old,host=x v=1 1700000100000000000").status_code \
        == 204
    svc.ds.downsample_streams(until=datetime.datetime.fromtimestamp(1700000060, datetime.UTC))
    # new streams first, then a point in the existing one's downsampled (frozen) range: the
    # whole batch is refused
    body = ("fresh,host=x v=1 1700000000000000000\n"
            "fresh,host=x w=1 1700000000000000000\n"
            "old,host=x v=2 1700000000000000000\n")
    response = svc.client.post("/write", content=body)
    assert response.status_code == 400
    assert response.json()["error"].startswith("line 3 (the first of series"), response.text
    assert sorted(streams(svc.ds)) == ["old.v"]
    assert len(raw(svc.ds, streams(svc.ds)["old.v"]["stream_id"])) == 2
    # and a type clash with an existing numeric stream
    response = svc.client.post("/write", content='new v=1\nold,host=x v="text" 1800000000'
                                                 '000000000')
    assert response.status_code == 400
    assert response.json()["error"].startswith("line 2 (the first of series"), response.text
    assert sorted(streams(svc.ds)) == ["old.v"]


def _series(ds: datastream.Datastream) -> dict[str, list]:
    """Stored values by the exact tags of each stream (as line protocol tags them)."""
    out = {}
    for tags in ds.find_streams():
        user = {k: v for k, v in datastream.Stream(tags).tags.items()
                if k not in ("measurement", "field")}
        key = ",".join([tags["measurement"], *(f"{k}={v}" for k, v in sorted(user.items()))])
        out[f"{key} {tags['field']}"] = [p["v"] for p in raw(ds, tags["stream_id"])]
    return out


@pytest.mark.parametrize("restart", [False, True])
def test_a_series_is_its_exact_tag_set(service, restart):
    """A series with fewer tags than another (a subset of its tags) is a stream of its own,
    whichever comes first, also once the server starts again over the same store."""
    svc = service()
    lines = ["disk,host=a,path=/ used=1 1767225600000000000",
             "disk,host=a used=2 1767225601000000000",
             "net,host=a bytes=1 1767225600000000000",
             "net,host=a,iface=eth0 bytes=2 1767225601000000000",
             "cpu,host=a v=1 1767225600000000000", "cpu,host=b v=1 1767225600000000000"]
    for line in lines:
        assert svc.client.post("/write", content=line).status_code == 204, line
    if restart:  # a new app over the same store: nothing remembered of the series
        svc = service(svc.ds)
    for line in ["disk,host=a used=3 1767225602000000000", "net,host=a bytes=3 "
                 "1767225602000000000", "cpu v=2 1767225602000000000"]:
        response = svc.client.post("/write", content=line)
        assert response.status_code == 204, response.text
    assert _series(svc.ds) == {
        "disk,host=a,path=/ used": [1.0], "disk,host=a used": [2.0, 3.0],
        "net,host=a bytes": [1.0, 3.0], "net,host=a,iface=eth0 bytes": [2.0],
        "cpu,host=a v": [1.0], "cpu,host=b v": [1.0], "cpu v": [2.0]}


def test_ping(service):
    svc = service()
    for method in ("GET", "HEAD"):
        response = svc.client.request(method, "/ping")
        assert response.status_code == 204 and response.content == b""
    assert np.isfinite(svc.client.get("/ping").elapsed.total_seconds())


def test_agents_can_create_their_database_and_nothing_else(service):
    """Telegraf sends CREATE DATABASE to /query (a form-encoded POST) before writing: it
    succeeds and does nothing; other InfluxQL is refused, naming where reads are."""
    svc = service()
    created = svc.client.post("/query", content='q=CREATE+DATABASE+"telegraf"',
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert created.status_code == 200
    assert created.json() == {"results": [{"statement_id": 0}]}
    assert svc.client.get("/query", params={"q": "create database metrics;"}).json() == \
        {"results": [{"statement_id": 0}]}
    refused = svc.client.get("/query", params={"q": "SELECT * FROM cpu"})
    assert refused.status_code == 400 and "/api/v1/stream/" in refused.json()["error"]
    assert svc.client.post("/query").status_code == 400  # no statement at all
    assert svc.anonymous().post("/query", params={"q": "CREATE DATABASE x"}).status_code == 401
    assert svc.anonymous().post("/query", params={"q": "CREATE DATABASE x", "p": TOKEN}
                                ).status_code == 200
    assert len(svc.ds.find_streams()) == 0

"""The django-datastream compatible reads: stream list, filters, pagination and one stream's
datapoints with its query parameters."""

from __future__ import annotations

import datetime

import pytest

UTC = datetime.timezone.utc
START = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
T0 = int(START.timestamp())


@pytest.fixture
def svc(service):
    svc = service()
    for number in range(25):
        svc.ds.ensure_stream({"title": f"Stream {number}", "stream_number": number},
                             {"site": {"room": "lab" if number % 2 else "hall"},
                              "labels": ["a", "b"] if number < 3 else []},
                             ["mean", "min", "max"], "seconds")
    return svc


def test_list_is_paginated_like_django_datastream(svc):
    body = svc.client.get("/api/v1/stream/").json()
    assert body["meta"] == {"limit": 20, "offset": 0, "total_count": 25,
                            "next": "/api/v1/stream/?limit=20&offset=20", "previous": None}
    assert [stream["tags"]["stream_number"] for stream in body["objects"]] == list(range(20))
    second = svc.client.get(body["meta"]["next"]).json()
    assert [stream["tags"]["stream_number"] for stream in second["objects"]] == list(
        range(20, 25))
    assert second["meta"]["next"] is None
    assert second["meta"]["previous"] == "/api/v1/stream/?limit=20&offset=0"
    assert svc.client.get("/api/v1/stream/?limit=5000").json()["meta"]["limit"] == 1000
    # limit=0 is the largest page, as tastypie's list paginator has it
    everything = svc.client.get("/api/v1/stream/?limit=0").json()
    assert len(everything["objects"]) == 25 and everything["meta"]["limit"] == 1000
    assert everything["meta"]["next"] is None and everything["meta"]["previous"] is None


def test_stream_resource_fields(svc):
    stream = svc.client.get("/api/v1/stream/?limit=1").json()["objects"][0]
    assert stream["resource_uri"] == f"/api/v1/stream/{stream['id']}/"
    assert stream["tags"] == {"title": "Stream 0", "stream_number": 0,
                              "site": {"room": "hall"}, "labels": ["a", "b"]}
    assert stream["value_downsamplers"] == ["count", "sum", "min", "max", "mean"]
    assert len(stream["time_downsamplers"]) == 8
    assert stream["highest_granularity"] == "seconds"
    assert stream["earliest_datapoint"] is None and stream["latest_datapoint"] is None
    assert stream["value_type"] == "numeric"
    assert stream["value_type_options"] == {"high_accuracy": False}
    assert stream["derived_from"] is None and stream["contributes_to"] is None
    assert stream["pending_backprocess"] is False


@pytest.mark.parametrize(("query", "numbers"), [
    ("tags__stream_number=7", [7]),
    ("tags__title=Stream%207", [7]),
    ("tags__title__iexact=stream%207", [7]),
    ("tags__title__icontains=STREAM%202", [2, 20, 21, 22, 23, 24]),
    ("tags__title__contains=m%201", [1, *range(10, 20)]),
    ("tags__title__startswith=Stream%201", [1, *range(10, 20)]),
    ("tags__stream_number__in=1,3,99", [1, 3]),
    ("tags__site__room=lab&tags__stream_number__in=1,2,3", [1, 3]),
    ("tags__labels=a", [0, 1, 2]),
    ("tags__labels__exists=true&tags__stream_number__in=0,5", [0, 5]),
    ("tags__nothing__exists=false&tags__stream_number=4", [4]),
    ("tags__nothing=x", []),
    # filters on one tag are ANDed, whatever their order
    ("tags__title__contains=1&tags__title__startswith=Stream", [1, *range(10, 20), 21]),
    ("tags__title__startswith=Stream&tags__title__contains=1", [1, *range(10, 20), 21]),
    ("tags__title__contains=1&tags__title__contains=2", [12, 21]),
    ("tags__title__icontains=stream&tags__title__icontains=4&tags__stream_number__in=4,14,5",
     [4, 14]),
    # django-datastream's comparisons and list lookups
    ("tags__stream_number__gte=22", [22, 23, 24]),
    ("tags__stream_number__gt=22", [23, 24]),
    ("tags__stream_number__lt=2", [0, 1]),
    ("tags__stream_number__lte=2&tags__stream_number__gte=1", [1, 2]),
    ("tags__title__gt=Stream%208", [9]),  # text compares as text
    ("tags__labels__all=a,b", [0, 1, 2]),
    ("tags__labels__all=a,c", []),
    ("tags__labels__all=a,1", []),  # a part that reads as a number: text or number
    ("tags__stream_number__all=7", [7]),
])
def test_tag_filters(svc, query, numbers):
    body = svc.client.get(f"/api/v1/stream/?limit=100&{query}").json()
    assert sorted(stream["tags"]["stream_number"] for stream in body["objects"]) == numbers
    assert body["meta"]["total_count"] == len(numbers)


def test_filters_are_kept_in_page_links(svc):
    meta = svc.client.get("/api/v1/stream/?tags__site__room=hall&limit=5").json()["meta"]
    assert meta["total_count"] == 13
    assert meta["next"] == "/api/v1/stream/?tags__site__room=hall&limit=5&offset=5"


@pytest.mark.parametrize(("query", "parameter"), [
    ("limit=abc", "'limit'"), ("limit=-1", "'limit'"), ("offset=x", "'offset'"),
    ("tags__x__exists=maybe", "tags__x__exists"), ("tags__=1", "no tag path"),
])
def test_list_errors_name_the_parameter(svc, query, parameter):
    response = svc.client.get(f"/api/v1/stream/?{query}")
    assert response.status_code == 400
    assert parameter in response.json()["error"]


@pytest.fixture
def series(service):
    """120 one-second points from START, downsampled: the buckets holding the last point
    stay open (behaviour §5.5), so 11 Seconds10 buckets and 1 Minutes bucket."""
    svc = service()
    stream_id = svc.ds.ensure_stream({"name": "series"}, {}, ["mean", "min", "max"], "seconds")
    for second in range(120):
        svc.ds.append(stream_id, second * 0.5, START + datetime.timedelta(seconds=second))
    svc.ds.downsample_streams(until=START + datetime.timedelta(minutes=5))
    return svc, stream_id


def test_detail_raw_page(series):
    svc, stream_id = series
    body = svc.client.get(f"/api/v1/stream/{stream_id}/").json()
    assert body["id"] == stream_id and body["tags"] == {"name": "series"}
    assert body["latest_datapoint"] == "2026-11-30T12:01:59.000000Z"
    assert body["query_params"] == {
        "granularity": "seconds", "start": None, "end": None, "start_exclusive": None,
        "end_exclusive": None, "reverse": False, "value_downsamplers": None,
        "time_downsamplers": None}
    assert body["meta"]["limit"] == 100 and body["meta"]["total_count"] == 120
    assert body["meta"]["next"] == f"/api/v1/stream/{stream_id}/?limit=100&offset=100"
    assert len(body["datapoints"]) == 100
    assert body["datapoints"][0] == {"t": "2026-11-30T12:00:00.000000Z", "v": 0}
    assert body["datapoints"][3] == {"t": "2026-11-30T12:00:03.000000Z", "v": 1.5}


def test_detail_ranges_and_order(series):
    svc, stream_id = series
    url = f"/api/v1/stream/{stream_id}/"
    count = {}
    for name, query in [("[s,e]", f"start={T0}&end={T0 + 60}"),
                        ("(s,e]", f"start_exclusive={T0}&end={T0 + 60}"),
                        ("[s,e)", f"start={T0}&end_exclusive={T0 + 60}"),
                        ("(s,e)", f"start_exclusive={T0}&end_exclusive={T0 + 60}")]:
        count[name] = svc.client.get(f"{url}?{query}&limit=1000").json()["meta"]["total_count"]
    assert count == {"[s,e]": 61, "(s,e]": 60, "[s,e)": 60, "(s,e)": 59}
    body = svc.client.get(f"{url}?start={T0 + 0.5}&reverse=true&limit=2").json()
    assert [point["t"] for point in body["datapoints"]] == [
        "2026-11-30T12:01:59.000000Z", "2026-11-30T12:01:58.000000Z"]
    assert body["query_params"]["start"] == "2026-11-30T12:00:00.500000Z"
    assert body["query_params"]["reverse"] is True


def test_detail_levels_and_filters(series):
    svc, stream_id = series
    url = f"/api/v1/stream/{stream_id}/"
    body = svc.client.get(f"{url}?granularity=m").json()
    assert body["query_params"]["granularity"] == "minutes"
    assert body["meta"]["total_count"] == 1
    first = body["datapoints"][0]
    assert first["v"] == {"c": 60, "s": 885.0, "l": 0.0, "u": 29.5, "m": 14.75}
    assert first["t"]["a"] == "2026-11-30T12:00:00.000000Z"
    assert first["t"]["i"] == 1.0
    body = svc.client.get(f"{url}?granularity=10seconds&value_downsamplers=mean,l"
                          "&time_downsamplers=first&time_downsamplers=z").json()
    assert body["query_params"]["value_downsamplers"] == ["mean", "min"]
    assert body["query_params"]["time_downsamplers"] == ["first", "last"]
    assert body["datapoints"][1] == {
        "t": {"a": "2026-11-30T12:00:10.000000Z", "z": "2026-11-30T12:00:19.000000Z"},
        "v": {"l": 5.0, "m": 7.25}}


@pytest.mark.parametrize(("query", "parameter"), [
    ("granularity=weeks", "'granularity'"), ("start=yesterday", "'start'"),
    ("end=1e300", "'end'"), ("start=1&start_exclusive=2", "'start_exclusive'"),
    ("end=1&end_exclusive=2", "'end_exclusive'"), ("value_downsamplers=avg", "avg"),
    ("time_downsamplers=x", "'time_downsamplers'"), ("limit=1.5", "'limit'"),
    ("offset=-3", "'offset'"), ("start=nan", "'start'"), ("reverse=maybe", "'reverse'"),
])
def test_detail_errors_name_the_parameter(series, query, parameter):
    svc, stream_id = series
    response = svc.client.get(f"/api/v1/stream/{stream_id}/?{query}")
    assert response.status_code == 400, response.text
    assert parameter in response.json()["error"]


def test_detail_limits_and_unknown_streams(series):
    svc, stream_id = series
    body = svc.client.get(f"/api/v1/stream/{stream_id}/?limit=20000&offset=110").json()
    assert body["meta"]["limit"] == 10000 and len(body["datapoints"]) == 10
    assert body["meta"]["previous"] == f"/api/v1/stream/{stream_id}/?limit=10000&offset=0"
    nothing = svc.client.get(f"/api/v1/stream/{stream_id}/?limit=0&offset=5").json()
    assert nothing["datapoints"] == []  # django-datastream: an explicit 0 returns nothing
    assert nothing["meta"]["previous"] is None and nothing["meta"]["next"] is None
    for missing in ("9b2e8a0e-5a59-4a8e-9a51-7ad7f0000000", "not-a-uuid"):
        response = svc.client.get(f"/api/v1/stream/{missing}/")
        assert response.status_code == 404 and "error" in response.json()
    response = svc.client.get("/api/v1/nothing/")
    assert response.status_code == 404 and response.json() == {
        "error": "no such path: /api/v1/nothing/"}
    response = svc.client.post("/api/v1/stream/")
    assert response.status_code == 405 and "POST" in response.json()["error"]

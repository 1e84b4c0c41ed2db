"""/openapi.json describes the live service: schemathesis generates requests from it (valid and
invalid ones) against a running server with the token, and every response must be documented
(status, content type, body schema) and none may be a server error.

One check is left out: ``positive_data_acceptance`` expects a 2xx for every request the
schema allows, but a schema cannot say what the service rightly refuses with 400 (line
protocol grammar in a text body, timestamps that must not decrease, a value of the wrong type
for the stream). Invalid requests must still be refused (``negative_data_rejection``)."""

from __future__ import annotations

import datetime
import itertools

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

import datastream
from datastream.http import create_app
from datastream.http.server import ServerThread

from .conftest import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def api_schema():
    ds = datastream.Datastream()
    stream = ds.ensure_stream({"name": "probe"}, {}, ["mean", "max"], "seconds")
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    for second in range(30):
        ds.append(stream, second * 1.5, start + datetime.timedelta(seconds=second))
    ds.downsample_streams(until=start + datetime.timedelta(hours=1))
    server = ServerThread(create_app(ds, token=TOKEN, max_body_bytes=2**20))
    url = server.start()
    config = schemathesis.config.SchemathesisConfig.from_dict(
        {"auth": {"openapi": {"bearer": {"bearer": TOKEN}}}})
    yield schemathesis.openapi.from_url(f"{url}/openapi.json", headers=AUTH, config=config)
    server.stop()
    ds.close()


def test_the_service_matches_its_description(api_schema):
    # Each operation in turn (schemathesis's pytest plugin does not load under pytest 9 yet);
    # schemathesis's own checks decide: no 5xx, documented statuses, content types, schemas.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 7
    for operation, mode in itertools.product(operations, GenerationMode):

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)
        def check(case):
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        check()


def test_the_document_names_every_route(service):
    spec = service().client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) == {"/api/v1/stream/", "/api/v1/stream/{stream_id}/",
                                  "/api/v1/stream/{stream_id}/datapoints", "/write", "/ping",
                                  "/query"}
    assert spec["security"] == [{"bearer": []}]
    detail = spec["paths"]["/api/v1/stream/{stream_id}/"]["get"]
    assert {"400", "401", "404"} <= set(detail["responses"])

"""The OpenAPI 3.0 description served at ``/openapi.json``.

Written out by hand from the same constants the endpoints use (limits, granularities,
downsamplers), so it describes what the service does: every parameter with its type and
range, the response bodies, every error status, and the bearer token as the security scheme
when one is configured. The tests run schemathesis against the live service with it.
"""

from __future__ import annotations

from typing import Any

from .._version import __version__
from ..downsamplers import TIME_DOWNSAMPLERS, VALUE_DOWNSAMPLERS
from ..granularity import Granularity
from . import read_api
from .write_api import PRECISIONS

JSON = "application/json"
GRANULARITIES = [name for level in Granularity.values for name in (level.name, level.key)]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref("Error")}}}


def _errors(*statuses: int) -> dict[str, Any]:
    meanings = {
        400: "A bad parameter or body; the message names it.",
        401: "No valid token.",
        404: "No such stream.",
        413: "The body (or its gzip content) is over the size limit.",
        415: "The body's Content-Type or Content-Encoding is not supported.",
        503: "The store cannot be reached; nothing was acknowledged.",
    }
    return {str(status): _error(meanings[status]) for status in statuses}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def _count(name: str, default: int, description: str) -> dict[str, Any]:
    return _query(name, {"type": "integer", "minimum": 0, "default": default}, description)


def _unix(name: str, description: str) -> dict[str, Any]:
    return _query(name, {"type": "number", "minimum": -9223372036.854775,
                         "maximum": 9223372036.854775}, description)


def _names(known: dict[str, str]) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string", "enum": [*known, *known.values()]}}


NULLABLE_TIME = {"type": "string", "format": "date-time", "nullable": True}
SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"],
              "properties": {"error": {"type": "string"}}},
    "Meta": {
        "type": "object", "required": ["limit", "offset", "total_count", "next", "previous"],
        "properties": {
            "limit": {"type": "integer", "minimum": 0},
            "offset": {"type": "integer", "minimum": 0},
            "total_count": {"type": "integer", "minimum": 0},
            "next": {"type": "string", "nullable": True},
            "previous": {"type": "string", "nullable": True},
        },
    },
    "Stream": {
        "type": "object",
        "required": ["id", "resource_uri", "tags", "value_downsamplers", "time_downsamplers",
                     "highest_granularity", "earliest_datapoint", "latest_datapoint",
                     "value_type", "value_type_options", "derived_from", "contributes_to",
                     "pending_backprocess"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "resource_uri": {"type": "string"},
            "tags": {"type": "object", "description": "The stream's user tags."},
            "value_downsamplers": {"type": "array", "items": {"type": "string"}},
            "time_downsamplers": {"type": "array", "items": {"type": "string"}},
            "highest_granularity": {"type": "string",
                                    "enum": [level.name for level in Granularity.values]},
            "earliest_datapoint": NULLABLE_TIME,
            "latest_datapoint": NULLABLE_TIME,
            "value_type": {"type": "string", "enum": ["numeric", "nominal", "graph"]},
            "value_type_options": {"type": "object"},
            "derived_from": {"type": "object", "nullable": True},
            "contributes_to": {"type": "object", "nullable": True},
            "pending_backprocess": {"type": "boolean"},
        },
    },
    "StreamList": {
        "type": "object", "required": ["meta", "objects"],
        "properties": {"meta": _ref("Meta"),
                       "objects": {"type": "array", "items": _ref("Stream")}},
    },
    "Datapoint": {
        "type": "object",
        "description": "Raw: {t: ISO 8601 time, v: value}. Downsampled: {t: {time key: ...}, "
                       "v: {value key: ...}}, either part left out when its filter is empty.",
        "properties": {"t": {}, "v": {}},
    },
    "StreamDetail": {
        "allOf": [_ref("Stream"), {
            "type": "object", "required": ["datapoints", "query_params", "meta"],
            "properties": {
                "datapoints": {"type": "array", "items": _ref("Datapoint")},
                "query_params": {"type": "object"},
                "meta": _ref("Meta"),
            },
        }],
    },
    "NewDatapoint": {
        "type": "object", "required": ["t", "v"], "additionalProperties": False,
        "properties": {
            "t": {"oneOf": [{"type": "string", "format": "date-time"}, {"type": "number"}],
                  "description": "ISO 8601 (naive is UTC) or UNIX seconds."},
            "v": {"description": "The value, as append() takes it; null is a null point."},
        },
    },
}

STREAM_ID = {"name": "stream_id", "in": "path", "required": True,
             "schema": {"type": "string"}, "description": "The stream's id (a UUID)."}
TAG_FILTERS = ("Tag filters: tags__<key>[__<key>...]=value, with the lookups __iexact, "
               "__contains, __icontains, __startswith, __in (comma-separated) and __exists "
               "(true/false); a value that reads as a number also matches that number.")


def _paths() -> dict[str, Any]:
    no_content = {"description": "Stored durably."}
    return {
        "/api/v1/stream/": {"get": {
            "summary": "Streams, paginated and filtered by tags", "description": TAG_FILTERS,
            "operationId": "listStreams",
            "parameters": [
                _count("limit", read_api.LIST_LIMIT,
                       f"Streams per page (at most {read_api.LIST_MAX}, larger is clamped)."),
                _count("offset", 0, "Streams to skip."),
            ],
            "responses": {"200": {"description": "A page of streams.",
                                  "content": {JSON: {"schema": _ref("StreamList")}}},
                          **_errors(400, 401, 503)},
        }},
        "/api/v1/stream/{stream_id}/": {"get": {
            "summary": "One stream with a page of its datapoints",
            "operationId": "getStream",
            "parameters": [
                STREAM_ID,
                _query("granularity", {"type": "string", "enum": GRANULARITIES},
                       "Name or key; default the stream's highest granularity (raw points)."),
                _unix("start", "Inclusive start, UNIX seconds."),
                _unix("end", "Inclusive end, UNIX seconds."),
                _unix("start_exclusive", "Exclusive start, UNIX seconds (not with start)."),
                _unix("end_exclusive", "Exclusive end, UNIX seconds (not with end)."),
                _query("reverse", {"type": "boolean"}, "Newest first."),
                {**_query("value_downsamplers", _names(VALUE_DOWNSAMPLERS),
                          "Value downsamplers to keep (names or keys)."),
                 "style": "form", "explode": False},
                {**_query("time_downsamplers", _names(TIME_DOWNSAMPLERS),
                          "Time downsamplers to keep (names or keys)."),
                 "style": "form", "explode": False},
                _count("limit", read_api.DETAIL_LIMIT,
                       f"Datapoints per page (at most {read_api.DETAIL_MAX}, larger is "
                       "clamped)."),
                _count("offset", 0, "Datapoints to skip."),
            ],
            "responses": {"200": {"description": "The stream and a page of datapoints.",
                                  "content": {JSON: {"schema": _ref("StreamDetail")}}},
                          **_errors(400, 401, 404, 503)},
        }},
        "/api/v1/stream/{stream_id}/datapoints": {"post": {
            "summary": "Append datapoints to one stream (all or nothing)",
            "operationId": "appendDatapoints",
            "parameters": [STREAM_ID],
            "requestBody": {"required": True, "content": {JSON: {"schema": {
                "type": "array", "items": _ref("NewDatapoint")}}}},
            "responses": {"204": no_content, **_errors(400, 401, 404, 413, 415, 503)},
        }},
        "/write": {"post": {
            "summary": "InfluxDB 1.x line protocol (all or nothing)",
            "description": "Each field of a series is the stream with query tags "
                           "{measurement, <tags>, field}, created on first sight. The body may "
                           "be gzip-compressed (Content-Encoding: gzip).",
            "operationId": "writeLineProtocol",
            "parameters": [
                _query("precision", {"type": "string", "enum": list(PRECISIONS),
                                     "default": "ns"}, "Unit of the timestamps."),
                _query("db", {"type": "string"}, "Accepted and ignored."),
            ],
            "requestBody": {"required": True, "content": {"text/plain": {
                "schema": {"type": "string"}}}},
            "responses": {"204": no_content, **_errors(400, 401, 413, 415, 503)},
        }},
        "/query": {
            method: {
                "summary": "InfluxDB's CREATE DATABASE, accepted as a no-op for agents",
                "description": "Only CREATE DATABASE is accepted (one server is one store); "
                               "any other InfluxQL statement is a 400.",
                "operationId": f"influxQuery{method.capitalize()}",
                "parameters": [_query("q", {"type": "string"}, "An InfluxQL statement.")],
                **({"requestBody": {"required": False, "content": {
                    "application/x-www-form-urlencoded": {"schema": {
                        "type": "object", "properties": {"q": {"type": "string"}}}}}}}
                   if method == "post" else {}),
                "responses": {"200": {"description": "The statement succeeded.", "content": {
                    "application/json": {"schema": {"type": "object", "required": ["results"],
                                                    "properties": {"results": {
                                                        "type": "array",
                                                        "items": {"type": "object"}}}}}}},
                              **_errors(400, 401, 413, 415)},
            } for method in ("get", "post")
        },
        "/ping": {"get": {
            "summary": "Liveness probe (InfluxDB clients call it)", "operationId": "ping",
            "responses": {"204": {"description": "The service is up."}, **_errors(401)},
        }},
    }


def document(secured: bool) -> dict[str, Any]:
    """The OpenAPI document; ``secured`` adds the bearer token requirement."""
    spec: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "datastream", "version": __version__,
                 "description": "Streams, datapoints and ingest over HTTP "
                                "(django-datastream compatible reads)."},
        "paths": _paths(),
        "components": {"schemas": SCHEMAS},
    }
    if secured:
        spec["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "The server's token (--token); also accepted as "
                                      "'Token <token>', Basic password or ?p=."}}
        spec["security"] = [{"bearer": []}]
    return spec

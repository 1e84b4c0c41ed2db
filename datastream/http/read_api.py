"""The read API, compatible with django-datastream's ``/api/v1/stream/`` resource.

``GET /api/v1/stream/``: the streams matching the ``tags__...`` filters (:mod:`.tag_filters`),
paginated (default limit 20, at most 1000). ``GET /api/v1/stream/<id>/``: one stream's
resource plus a page of its datapoints (default limit 100, at most 10,000) for the
``granularity``, time range, order and downsampler filters of the query string. Both are
plain functions: Starlette runs them in its thread pool, so slow reads never hold up the
event loop, and the ``Datastream``'s own lock orders them with the writer.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .. import Datastream
from . import pagination, query_params
from .datapoints_json import datapoints_json
from .errors import ApiError
from .resources import iso, stream_resource
from .tag_filters import TagFilter

LIST_LIMIT, LIST_MAX = 20, 1000
DETAIL_LIMIT, DETAIL_MAX = 100, 10_000


def dumps(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_response(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def list_streams(ds: Datastream, request: Request) -> Response:
    params = request.query_params
    # as django-datastream's list (tastypie's paginator): limit=0 asks for the largest page
    limit = query_params.count(params, "limit", LIST_LIMIT, LIST_MAX) or LIST_MAX
    offset = query_params.count(params, "offset", 0)
    filters = TagFilter(params)
    streams = ds.find_streams(filters.query)
    if filters.checks_results:
        matching = filters.post_filter(streams)
        total, page = len(matching), matching[offset:offset + limit]
    else:
        total = len(streams)
        page = list(streams[offset:offset + limit])
    return json_response(dumps({"meta": pagination.meta(request, limit, offset, total),
                                "objects": [stream_resource(tags) for tags in page]}))


def _range(params: Any) -> dict[str, datetime.datetime | None]:
    bounds = {name: query_params.unix_time(params, name)
              for name in ("start", "end", "start_exclusive", "end_exclusive")}
    if bounds["start"] is not None and bounds["start_exclusive"] is not None:
        raise ApiError(400, "give at most one of the parameters 'start' and 'start_exclusive'")
    if bounds["end"] is not None and bounds["end_exclusive"] is not None:
        raise ApiError(400, "give at most one of the parameters 'end' and 'end_exclusive'")
    return bounds


def stream_detail(ds: Datastream, request: Request, default_time_downsamplers: list[str] | None,
                  ) -> Response:
    stream_id = request.path_params["stream_id"]
    tags = ds.get_tags(stream_id)  # StreamNotFound → 404
    params = request.query_params
    level = query_params.granularity(params, "granularity", tags["highest_granularity"])
    bounds = _range(params)
    reverse = query_params.flag(params, "reverse")
    value_names = query_params.value_downsamplers(params)
    time_names = query_params.time_downsamplers(params) or default_time_downsamplers
    limit = query_params.count(params, "limit", DETAIL_LIMIT, DETAIL_MAX)
    offset = query_params.count(params, "offset", 0)
    start = bounds["start"]
    if start is None and bounds["start_exclusive"] is None:
        start = datetime.datetime.min
    datapoints = ds.get_data(stream_id, level, start=start, end=bounds["end"],
                             start_exclusive=bounds["start_exclusive"],
                             end_exclusive=bounds["end_exclusive"], reverse=reverse,
                             value_downsamplers=value_names, time_downsamplers=time_names)
    total = len(datapoints)
    page = datapoints[offset:offset + limit] if limit else datapoints[0:0]
    points = datapoints_json(page.to_arrow(), values_asked=bool(value_names))
    document = stream_resource(tags)
    document["query_params"] = {
        "granularity": level.name,
        "start": iso(bounds["start"]),
        "end": iso(bounds["end"]),
        "start_exclusive": iso(bounds["start_exclusive"]),
        "end_exclusive": iso(bounds["end_exclusive"]),
        "reverse": reverse,
        "value_downsamplers": value_names,
        "time_downsamplers": time_names,
    }
    document["meta"] = pagination.meta(request, limit, offset, total)
    head = dumps(document)
    return json_response(head[:-1] + b',"datapoints":' + points + b"}")

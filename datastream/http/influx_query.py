"""``/query``, as far as InfluxDB agents need it to write unchanged.

Telegraf's ``influxdb`` output (and other 1.x clients) send ``CREATE DATABASE "name"`` to
``/query`` before their first write. One service is one store, so that statement succeeds and
does nothing, answered in InfluxDB's shape (``{"results": [{"statement_id": 0}]}``). Any other
statement is a 400 saying where reads are served instead: InfluxQL is not implemented.
``q`` comes from the query string or, as Telegraf sends it, a form-encoded POST body.
"""

from __future__ import annotations

import re
import urllib.parse

from starlette.requests import Request
from starlette.responses import Response

from .errors import ApiError
from .limits import read_body
from .read_api import dumps, json_response

_CREATE_DATABASE = re.compile(r'\s*create\s+database\s+("(?:[^"\\]|\\.)+"|\w+)\s*;?\s*',
                              re.IGNORECASE)
FORM_TYPE = "application/x-www-form-urlencoded"


async def _statement(request: Request, max_bytes: int) -> str:
    found = request.query_params.getlist("q")
    if request.method == "POST" and not found:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == FORM_TYPE:
            body = await read_body(request, max_bytes)
            found = urllib.parse.parse_qs(body.decode("utf-8", "replace")).get("q", [])
    if not found:
        raise ApiError(400, "missing parameter 'q' (an InfluxQL statement)")
    return found[-1]


async def query(request: Request, max_bytes: int) -> Response:
    statement = await _statement(request, max_bytes)
    if _CREATE_DATABASE.fullmatch(statement):
        return json_response(dumps({"results": [{"statement_id": 0}]}))
    raise ApiError(400, "only CREATE DATABASE is accepted here (it does nothing: one server "
                        "is one store); read datapoints from /api/v1/stream/")

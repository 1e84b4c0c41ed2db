"""The write API: JSON datapoints for one stream, and InfluxDB 1.x line protocol.

A request is read (size-limited, gzip allowed: :mod:`.limits`) and parsed in the thread pool,
so a malformed body is refused with 400 before it reaches the writer; a valid one goes to the
group commit (:mod:`.ingest`), and 204 is sent once its points are durable.

``POST /write`` answers like InfluxDB 1.x (204, or 400 ``{"error": "line N: ..."}``), so agents
such as Telegraf send to it unchanged: ``precision`` (``ns``/``n``, ``us``/``u``, ``ms``,
``s``, ``m``, ``h``) says the timestamps' unit, lines without a timestamp get the time the
request was received, and the ``db``, ``rp``, ``u`` and ``consistency`` parameters are
accepted and ignored (one service is one store). The ``CREATE DATABASE`` such agents send
first is answered by :mod:`.influx_query`.
"""

from __future__ import annotations

import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from .. import Datastream, line_protocol
from .errors import ApiError
from .ingest import Batch, GroupCommitter
from .json_points import is_json_type, parse_datapoints
from .limits import read_body

PRECISIONS = {"ns": "ns", "n": "ns", "us": "us", "u": "us", "ms": "ms", "s": "s", "m": "m",
              "h": "h"}


def no_content() -> Response:
    return Response(status_code=204)


async def write_datapoints(request: Request, ds: Datastream, ingest: GroupCommitter,
                           max_bytes: int) -> Response:
    stream_id = request.path_params["stream_id"]
    if not is_json_type(request.headers.get("content-type")):
        raise ApiError(415, "send the datapoints as application/json")
    body = await read_body(request, max_bytes)
    await run_in_threadpool(ds.get_tags, stream_id)  # an unknown stream is a 404 first
    t_us, values = await run_in_threadpool(parse_datapoints, body)
    if not len(t_us):
        return no_content()
    await ingest.commit(Batch(stream_id=stream_id, t_us=t_us, values=values))
    return no_content()


def _parse_lines(body: bytes, precision: str, received_us: int) -> line_protocol.ParsedLines:
    try:
        return line_protocol.parse(body, precision, text_values=True,
                                   default_time_us=received_us)
    except line_protocol.LineProtocolError as error:
        raise ApiError(400, str(error)) from None


async def write_lines(request: Request, ingest: GroupCommitter, max_bytes: int) -> Response:
    received_us = time.time_ns() // 1000
    given = request.query_params.get("precision", "ns")
    if given not in PRECISIONS:
        raise ApiError(400, f"parameter 'precision': {given!r} is not one of "
                            f"{', '.join(PRECISIONS)}")
    body = await read_body(request, max_bytes)
    parsed = await run_in_threadpool(_parse_lines, body, PRECISIONS[given], received_us)
    if parsed.rows:
        await ingest.commit(Batch(lines=parsed))
    return no_content()


async def ping(request: Request) -> Response:
    """InfluxDB clients probe ``/ping`` before writing."""
    return no_content()

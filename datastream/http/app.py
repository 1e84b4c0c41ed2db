"""``create_app``: the Starlette application over one ``Datastream``.

Routes: ``/`` and ``/static`` (the chart page, :mod:`.pages`), ``/api/v1/stream/`` and
``/api/v1/stream/<id>/`` (reads, :mod:`.read_api`), ``POST /api/v1/stream/<id>/datapoints``
and ``POST /write`` (writes, :mod:`.write_api`), ``/ping``, ``/query`` (InfluxDB agents'
``CREATE DATABASE``, :mod:`.influx_query`) and ``/openapi.json``. The token
check wraps everything (:mod:`.auth`); errors are JSON (:mod:`.errors`). The writer thread of
the group commit (:mod:`.ingest`) runs for the application's lifespan; at shutdown it finishes
the writes already received and the ``Datastream`` is flushed (closing it is the caller's).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from .. import Datastream, exceptions
from ..downsamplers import TIME_DOWNSAMPLERS, VALUE_DOWNSAMPLERS
from ..granularity import resolve
from . import influx_query, openapi, pages, read_api, write_api
from .auth import TokenAuth
from .errors import HANDLERS
from .ingest import GroupCommitter

DEFAULT_VALUE_DOWNSAMPLERS = ("mean", "min", "max")


def _known(names: Iterable[str], known: dict[str, str], what: str) -> list[str]:
    """The names, checked now: a misconfigured server fails at start, not at a request."""
    names = list(names)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise exceptions.UnsupportedDownsampler(
            f"unknown {what} downsampler {unknown[0]!r}; known: {', '.join(known)}")
    return names


def create_app(ds: Datastream, *, token: str | None = None, max_body_bytes: int = 32 * 2**20,
               default_value_downsamplers: Iterable[str] = DEFAULT_VALUE_DOWNSAMPLERS,
               default_time_downsamplers: Iterable[str] | None = None,
               default_highest_granularity: Any = "seconds",
               accept_late_points: bool = True) -> Starlette:
    """The HTTP service over ``ds``.

    ``token``: required from every request when given (see :mod:`.auth`). ``max_body_bytes``:
    the largest request body, also after gzip inflation (413 beyond). Streams that ``/write``
    creates get ``default_value_downsamplers`` (those that apply to their value type) and
    ``default_highest_granularity``. Every stream computes all time downsamplers (behaviour
    §5.3), so ``default_time_downsamplers`` is the time filter of downsampled reads whose
    request names none (None: all of them, as django-datastream). ``accept_late_points``:
    writes may go back in time, as InfluxDB allows (late points, behaviour §4.1), except into
    a stream's frozen range; False refuses any point older than its stream's latest.
    """
    if not isinstance(ds, Datastream):
        raise TypeError(f"create_app needs a Datastream, got {type(ds).__name__}")
    if token is not None and not token:
        raise ValueError("the token must not be empty (None means no token)")
    if max_body_bytes < 1:
        raise ValueError("max_body_bytes must be positive")
    value_names = _known(default_value_downsamplers, VALUE_DOWNSAMPLERS, "value")
    time_names = (None if default_time_downsamplers is None
                  else _known(default_time_downsamplers, TIME_DOWNSAMPLERS, "time"))
    granularity = resolve(default_highest_granularity)
    ingest = GroupCommitter(ds, value_names, granularity, accept_late_points)
    spec = openapi.document(secured=token is not None)

    def list_streams(request: Request) -> Response:
        return read_api.list_streams(ds, request)

    def stream_detail(request: Request) -> Response:
        return read_api.stream_detail(ds, request, time_names)

    async def write_datapoints(request: Request) -> Response:
        return await write_api.write_datapoints(request, ds, ingest, max_body_bytes)

    async def write_lines(request: Request) -> Response:
        return await write_api.write_lines(request, ingest, max_body_bytes)

    async def influxql(request: Request) -> Response:
        return await influx_query.query(request, max_body_bytes)

    async def openapi_json(request: Request) -> Response:
        return read_api.json_response(read_api.dumps(spec))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ingest.start()
        try:
            yield
        finally:
            ingest.close()
            await run_in_threadpool(ds.flush)

    routes = [
        Route("/", pages.index, methods=["GET"]),
        Mount("/static", app=pages.StaticDirectory(), name="static"),
        Route("/api/v1/stream/", list_streams, methods=["GET"]),
        Route("/api/v1/stream/{stream_id}/", stream_detail, methods=["GET"]),
        Route("/api/v1/stream/{stream_id}/datapoints", write_datapoints, methods=["POST"]),
        Route("/write", write_lines, methods=["POST"]),
        Route("/ping", write_api.ping, methods=["GET", "HEAD"]),
        Route("/query", influxql, methods=["GET", "POST"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers=HANDLERS, lifespan=lifespan,
                    middleware=[Middleware(TokenAuth, token=token)])
    app.state.ingest = ingest
    return app


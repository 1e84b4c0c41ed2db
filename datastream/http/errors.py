"""Errors as JSON ``{"error": message}`` with a 4xx status, never a 500 for bad input.

Handlers turn :class:`ApiError` (raised by the service's own checks), Starlette's 404/405,
the library's exceptions and its ``ValueError``/``TypeError`` (how the library reports bad
arguments, behaviour §8) into JSON responses. Backend outages are 503: the request was fine
and may be retried. Anything else is a bug: 500, logged, with a generic message.
"""

from __future__ import annotations

import json
import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .. import exceptions

log = logging.getLogger("datastream.http")


class ApiError(Exception):
    """A request the service refuses: ``status`` and a message naming what is wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"error": message}, ensure_ascii=False).encode("utf-8")
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def status_of(error: BaseException) -> int:
    """The HTTP status of an exception raised while serving a request."""
    if isinstance(error, ApiError):
        return error.status
    if isinstance(error, exceptions.StreamNotFound):
        return 404
    if isinstance(error, exceptions.InconsistentStreamConfiguration
                  | exceptions.MultipleStreamsReturned):
        return 409
    if isinstance(error, exceptions.StorageUnavailable | exceptions.StreamAppendFailed
                  | exceptions.StreamAppendContended | exceptions.LockExpiredMidMaintenance):
        return 503
    if isinstance(error, ValueError | TypeError):
        return 400
    return 500


def message_of(error: BaseException) -> str:
    if status_of(error) == 500:
        return "internal server error"
    return str(error) or type(error).__name__


async def handle_api_error(request: Request, error: Exception) -> Response:
    status = status_of(error)
    if status == 500:
        log.error("error serving %s %s", request.method, request.url.path, exc_info=error)
    return error_response(status, message_of(error))


async def handle_http_exception(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    messages = {404: f"no such path: {request.url.path}",
                405: f"method {request.method} is not allowed on {request.url.path}"}
    message = messages.get(error.status_code, str(error.detail))
    return error_response(error.status_code, message, headers=error.headers)


HANDLERS = {
    HTTPException: handle_http_exception,
    ApiError: handle_api_error,
    exceptions.DatastreamException: handle_api_error,
    ValueError: handle_api_error,
    TypeError: handle_api_error,
    Exception: handle_api_error,
}

"""The chart page: ``static/index.html`` at ``/`` and the ``static/`` directory at ``/static``.

The directory is looked up on every request rather than once at start-up, so the page works as
soon as its files are there; until then ``/`` serves a short placeholder that points at the
API instead of failing.
"""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"

PLACEHOLDER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>datastream</title></head>
<body><h1>datastream</h1>
<p>The chart page is not installed. The API is at <a href="/api/v1/stream/">/api/v1/stream/</a>
and described by <a href="/openapi.json">/openapi.json</a>.</p></body></html>
"""


async def index(request: Request) -> Response:
    page = STATIC / "index.html"
    if page.is_file():
        return FileResponse(page, media_type="text/html")
    return HTMLResponse(PLACEHOLDER)


class StaticDirectory(StaticFiles):
    """``StaticFiles`` that tolerates a missing directory (404 until it exists)."""

    def __init__(self) -> None:
        super().__init__(directory=STATIC, check_dir=False)

    async def check_config(self) -> None:
        if not STATIC.is_dir():
            raise HTTPException(404)  # checked again on the next request
        await super().check_config()

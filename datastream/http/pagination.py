"""django-datastream's ``meta`` block: limit, offset, total count and page links.

``next`` and ``previous`` are the request's own path and query with ``offset`` (and ``limit``)
replaced, or null: ``next`` when no row follows the page, ``previous`` on the first page, and
both when the limit is 0 (a page of no rows has no neighbours). A previous page that would
start before the first row starts at it.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from starlette.requests import Request


def _link(request: Request, limit: int, offset: int) -> str:
    kept = [(name, value) for name, value in request.query_params.multi_items()
            if name not in ("limit", "offset")]
    query = urllib.parse.urlencode([*kept, ("limit", str(limit)), ("offset", str(offset))])
    return f"{request.url.path}?{query}"


def meta(request: Request, limit: int, offset: int, total: int) -> dict[str, Any]:
    following = limit > 0 and offset + limit < total
    return {
        "limit": limit,
        "offset": offset,
        "total_count": total,
        "next": _link(request, limit, offset + limit) if following else None,
        "previous": (_link(request, limit, max(0, offset - limit))
                     if offset > 0 and limit > 0 else None),
    }

"""Request bodies: size-limited, optionally gzip-compressed.

A body over ``max_bytes`` is refused with 413 as soon as that is known: from its
``Content-Length`` before reading, else while it streams in. A gzip body is inflated with
``zlib``'s ``max_length`` bound, so a small body that would inflate past the limit (a zip
bomb) is refused after allocating at most the limit, never the whole output.
"""

from __future__ import annotations

import zlib

from starlette.requests import Request

from .errors import ApiError


def _too_large(max_bytes: int, what: str = "request body") -> ApiError:
    return ApiError(413, f"the {what} is over the limit of {max_bytes} bytes")


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, inflated when its Content-Encoding is gzip (415 for other encodings)."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip"):
        raise ApiError(415, f"unsupported Content-Encoding {encoding!r} (gzip or none)")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    body = b"".join(chunks)
    return inflate(body, max_bytes) if encoding != "identity" else body


def inflate(data: bytes, max_bytes: int) -> bytes:
    """gzip members one after another (as ``gzip`` allows), at most ``max_bytes`` in all."""
    output, rest = [], data
    budget = max_bytes
    while rest:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            piece = inflater.decompress(rest, budget + 1)
        except zlib.error as error:
            raise ApiError(400, f"the body is not valid gzip: {error}") from None
        budget -= len(piece)
        if budget < 0 or inflater.unconsumed_tail:
            raise _too_large(max_bytes, "inflated request body")
        if not inflater.eof:
            raise ApiError(400, "the gzip body is truncated")
        output.append(piece)
        rest = inflater.unused_data
    return b"".join(output)

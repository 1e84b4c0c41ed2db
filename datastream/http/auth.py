"""The bearer token, required by every endpoint when one is configured.

Accepted credentials, so that browsers, scripts and InfluxDB agents (Telegraf's ``influxdb``
output) all work unchanged:

* ``Authorization: Bearer <token>``, or InfluxDB's ``Authorization: Token <token>``;
* HTTP Basic with the token as the password (any user name);
* the query parameter ``p=<token>`` (InfluxDB 1.x's password parameter);
* for GET and HEAD only, the cookie ``datastream_token``: opening ``/?token=<token>`` sets it
  (HttpOnly, SameSite=Strict), so the chart page's own requests are authenticated without the
  page ever holding the token. A cookie never authenticates a POST: another site cannot make
  a browser write with it.

Tokens are compared in constant time. A request without valid credentials gets 401 JSON.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import urllib.parse
from http.cookies import SimpleCookie
from typing import Any

from .errors import error_response

COOKIE = "datastream_token"
Scope = dict[str, Any]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _authorization(header: str) -> str | None:
    scheme, _, credentials = header.strip().partition(" ")
    scheme, credentials = scheme.lower(), credentials.strip()
    if scheme in ("bearer", "token"):
        return credentials
    if scheme == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]
    return None


def _cookie(scope: Scope) -> str | None:
    header = _header(scope, b"cookie")
    if not header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except Exception:  # a malformed cookie header authenticates nothing
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel else None


def offered_tokens(scope: Scope) -> list[str]:
    """Every credential a request carries (the cookie only for GET and HEAD)."""
    offered = []
    header = _header(scope, b"authorization")
    if header:
        found = _authorization(header)
        if found is not None:
            offered.append(found)
    query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
    offered.extend(query.get("p", []))
    if scope.get("method") in ("GET", "HEAD"):
        if scope.get("path") == "/":
            offered.extend(query.get("token", []))
        cookie = _cookie(scope)
        if cookie is not None:
            offered.append(cookie)
    return offered


def same_token(offered: str, token: str) -> bool:
    return hmac.compare_digest(offered.encode("utf-8"), token.encode("utf-8"))


class TokenAuth:
    """ASGI middleware: 401 unless the request carries the token (nothing to check without
    one). A valid ``?token=`` on ``GET /`` also sets the page's cookie."""

    def __init__(self, app: Any, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.token is None:
            await self.app(scope, receive, send)
            return
        offered = offered_tokens(scope)
        if not any([same_token(candidate, self.token) for candidate in offered]):
            message = "invalid token" if offered else "this server needs a token"
            response = error_response(401, message, headers={
                "WWW-Authenticate": 'Bearer realm="datastream"'})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, self._cookie_setter(scope, send))

    def _cookie_setter(self, scope: Scope, send: Any) -> Any:
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        wanted = query.get("token", [])
        assert self.token is not None
        if not (scope.get("path") == "/" and scope.get("method") in ("GET", "HEAD") and wanted
                and same_token(wanted[-1], self.token)):
            return send
        cookie = SimpleCookie()
        cookie[COOKIE] = self.token
        cookie[COOKIE]["httponly"] = True
        cookie[COOKIE]["samesite"] = "Strict"
        cookie[COOKIE]["path"] = "/"
        header = cookie[COOKIE].OutputString().encode("latin-1")

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                   (b"set-cookie", header)]}
            await send(message)

        return send_with_cookie

"""The InfluxDB backend's own HTTP session, for the two requests that carry the data: chunked
MessagePack queries and line-protocol writes.

``influxdb.InfluxDBClient`` can neither stream MessagePack nor take a prepared byte body without
copying it, so these two go through a ``requests.Session`` this module owns, configured from
the same connection settings the client gets (:class:`Settings`, with the client's defaults,
so that both talk to the same server the same way). The client keeps the administrative
statements (creating the database, ``DROP SERIES``, ``DELETE``) through its public API.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import random
import time
from collections.abc import Iterator
from typing import Any

import requests
from influxdb.exceptions import InfluxDBClientError, InfluxDBServerError
from requests.adapters import HTTPAdapter

# Failures a write is sent again after (the points keep their identities, so a write that
# reached the server before the failure is stored once), as the client does.
RETRIED = (requests.ConnectionError, requests.HTTPError, requests.Timeout)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where and how to reach InfluxDB: the ``influxdb.InfluxDBClient`` keyword arguments that
    matter for HTTP, with that client's defaults (``root``/``root``, no TLS verification
    unless ``verify_ssl`` says so, three attempts per write)."""

    base_url: str
    auth: tuple[str, str] | None = None
    timeout: float | None = None
    verify: bool | str = False
    proxies: dict[str, str] = dataclasses.field(default_factory=dict)
    cert: str | tuple[str, str] | None = None
    retries: int = 3
    gzip: bool = False
    pool_size: int = 10
    socket_options: list[Any] | None = None

    @classmethod
    def from_client_options(cls, options: dict[str, Any]) -> Settings:
        """Settings from keyword arguments of ``InfluxDBClient`` (others are ignored)."""
        ssl = bool(options.get("ssl", False))
        cert = options.get("cert")
        if cert and not ssl:
            raise ValueError("Client certificate provided but ssl is disabled.")
        path = options.get("path") or ""
        if path and not path.startswith("/"):
            path = "/" + path
        scheme = "https" if ssl else "http"
        host = options.get("host", "localhost")
        base_url = f"{scheme}://{host}:{int(options.get('port', 8086))}{path}"
        username, password = options.get("username", "root"), options.get("password", "root")
        return cls(
            base_url=base_url,
            auth=None if username is None or password is None else (username, password),
            timeout=options.get("timeout"),
            verify=options.get("verify_ssl", False),
            proxies=dict(options.get("proxies") or {}),
            cert=cert or None,
            retries=int(options.get("retries", 3)),
            gzip=bool(options.get("gzip", False)),
            pool_size=int(options.get("pool_size", 10)),
            socket_options=options.get("socket_options"),
        )


class _Adapter(HTTPAdapter):
    """A connection pool with the given socket options (None: urllib3's defaults)."""

    def __init__(self, socket_options: list[Any] | None, pool_size: int) -> None:
        self.socket_options = socket_options
        super().__init__(pool_connections=pool_size, pool_maxsize=pool_size)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self.socket_options is not None:
            kwargs["socket_options"] = self.socket_options
        super().init_poolmanager(*args, **kwargs)


class InfluxSession:
    """Queries and writes of one InfluxDB server over a ``requests.Session`` owned here."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.session = requests.Session()
        scheme = settings.base_url.split("://", 1)[0]
        self.session.mount(f"{scheme}://", _Adapter(settings.socket_options, settings.pool_size))
        if settings.cert:
            self.session.cert = settings.cert

    def close(self) -> None:
        self.session.close()

    def _send(self, method: str, endpoint: str, **arguments: Any) -> requests.Response:
        settings = self.settings
        return self.session.request(
            method, f"{settings.base_url}/{endpoint}", auth=settings.auth,
            timeout=settings.timeout, verify=settings.verify, proxies=settings.proxies,
            **arguments,
        )

    @contextlib.contextmanager
    def query(self, database: str, statement: str, bind: dict[str, Any],
              chunk_size: int) -> Iterator[requests.Response]:
        """The streamed response of a chunked query, MessagePack asked for (InfluxDB may
        answer JSON); errors of the HTTP status raised as the client raises them. The response
        is compressed only when the settings ask for gzip (the client's ``gzip`` option covers
        both directions): otherwise ``requests`` would ask for it by default, and influxd
        spends more time compressing MessagePack than a LAN saves carrying it (a 100 k-point
        read on loopback: 0.16 s gzipped against 0.11 s plain)."""
        params = {"q": statement, "db": database, "epoch": "ns", "chunked": "true",
                  "chunk_size": chunk_size, "params": json.dumps(bind)}
        headers = {"Accept": "application/x-msgpack", "Content-Type": "application/json",
                   "Accept-Encoding": "gzip" if self.settings.gzip else "identity"}
        response = self._send("GET", "query", params=params, headers=headers, stream=True)
        with contextlib.closing(response):
            if response.status_code != 200:
                error = InfluxDBServerError if response.status_code >= 500 else InfluxDBClientError
                raise error(f"query failed ({response.status_code}): {response.content[:500]!r}")
            yield response

    def write(self, database: str, body: bytes) -> None:
        """POST line protocol with nanosecond times, sent again after connection failures
        (``retries`` attempts in all, 0: until it gets through) with a short random backoff."""
        headers = {"Accept": "application/json", "Content-Type": "application/octet-stream"}
        if self.settings.gzip:
            headers.update({"Accept-Encoding": "gzip", "Content-Encoding": "gzip"})
            body = gzip.compress(body, compresslevel=9)
        params = {"db": database, "precision": "n"}
        attempt = 0
        while True:
            try:
                response = self._send("POST", "write", params=params, data=body,
                                      headers=headers)
                break
            except RETRIED:
                attempt += 1
                if self.settings.retries and attempt >= self.settings.retries:
                    raise
                time.sleep(2**attempt * random.random() / 100)
        if 500 <= response.status_code < 600:
            raise InfluxDBServerError(response.content)
        if response.status_code != 204:
            raise InfluxDBClientError(response.content, response.status_code)

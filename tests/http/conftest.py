"""A live service for the HTTP tests: real uvicorn on a free loopback port, in a thread.

``service(**options)`` starts one over a fresh in-memory ``Datastream`` (or the one given)
and returns a :class:`Service`: its URL, an authenticated ``httpx`` client and the store.
Every service is stopped (finishing its requests) when the test ends.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import datastream
from datastream.http import create_app
from datastream.http.server import ServerThread

TOKEN = "s3cret-token"


@dataclasses.dataclass
class Service:
    url: str
    client: httpx.Client
    ds: datastream.Datastream
    app: Any

    def anonymous(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)


@pytest.fixture
def service() -> Iterator[Callable[..., Service]]:
    started: list[tuple[ServerThread, httpx.Client, datastream.Datastream, bool]] = []

    def start(ds: datastream.Datastream | None = None, token: str | None = TOKEN,
              **options: Any) -> Service:
        own = ds is None
        ds = ds if ds is not None else datastream.Datastream()
        app = create_app(ds, token=token, **options)
        server = ServerThread(app)
        url = server.start()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(base_url=url, headers=headers, timeout=60)
        started.append((server, client, ds, own))
        return Service(url, client, ds, app)

    yield start
    for server, client, ds, own in started:
        client.close()
        server.stop()
        if own:
            ds.close()

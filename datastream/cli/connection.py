"""Which store a command works on: ``--db PATH`` (embedded) or ``--url URL``.

URL forms (also shown by ``datastream --help``):

* ``duckdb:///absolute/path.duckdb`` or ``duckdb:relative.duckdb``: the embedded store, as
  ``--db``;
* ``mongodb://[user:password@]host[:port]/database[?options]`` (and ``mongodb+srv://``): the
  URL is handed to pymongo as is, the path names the database;
* ``influxdb://[user:password@]host[:port]/database?metadata=postgresql://user:password@host[:port]/dbname``:
  InfluxDB 1.x for the datapoints, the PostgreSQL database of ``metadata`` for the stream
  records. Characters such as ``&``, ``+`` or ``%`` inside the metadata URL must be
  percent-encoded.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from typing import Any

from .. import Datastream

URL_HELP = (
    "mongodb://[user:pass@]host[:port]/database  |  "
    "influxdb://[user:pass@]host[:port]/database?metadata=postgresql://user:pass@host[:port]/dbname"
    "  |  duckdb:///path/file.duckdb"
)


class StoreURLError(ValueError):
    """A ``--db`` / ``--url`` that names no usable store."""


@dataclasses.dataclass
class StoreSpec:
    """A backend name and the keyword arguments of its ``Backend``."""

    kind: str
    arguments: dict[str, Any]


def _host_port(parts: urllib.parse.SplitResult, default_port: int) -> dict[str, Any]:
    try:
        port = parts.port
    except ValueError:
        raise StoreURLError(f"bad port in {parts.geturl()!r}") from None
    return {"host": parts.hostname or "127.0.0.1", "port": port or default_port}


def _database(parts: urllib.parse.SplitResult, what: str) -> str:
    name = urllib.parse.unquote(parts.path.lstrip("/"))
    if not name or "/" in name:
        raise StoreURLError(f"{what} URL needs one database name as its path")
    return name


def _postgresql(url: str) -> dict[str, Any]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise StoreURLError("metadata= must be a postgresql:// URL")
    connection = {**_host_port(parts, 5432), "dbname": _database(parts, "the metadata")}
    if parts.username:
        connection["user"] = urllib.parse.unquote(parts.username)
    if parts.password:
        connection["password"] = urllib.parse.unquote(parts.password)
    for key, values in urllib.parse.parse_qs(parts.query).items():
        connection[key] = values[-1]  # libpq options such as sslmode
    return connection


def parse_url(url: str) -> StoreSpec:
    """The backend a ``--url`` names (nothing is connected yet)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "duckdb":
        path = urllib.parse.unquote(parts.netloc + parts.path)
        if not path:
            raise StoreURLError("duckdb: URL needs a file path")
        return StoreSpec("duckdb", {"path": path})
    if parts.scheme in ("mongodb", "mongodb+srv"):
        return StoreSpec("mongodb", {"database_name": _database(parts, "a mongodb"), "uri": url})
    if parts.scheme == "influxdb":
        query = urllib.parse.parse_qs(parts.query)
        if "metadata" not in query:
            raise StoreURLError("influxdb URL needs ?metadata=postgresql://... for the "
                                   "stream records")
        influx = {**_host_port(parts, 8086), "database": _database(parts, "an influxdb")}
        if parts.username:
            influx["username"] = urllib.parse.unquote(parts.username)
        if parts.password:
            influx["password"] = urllib.parse.unquote(parts.password)
        return StoreSpec("influxdb", {"connection_influxdb": influx,
                                      "connection_metadata": _postgresql(query["metadata"][-1])})
    raise StoreURLError(f"unknown URL scheme {parts.scheme!r}; expected {URL_HELP}")


def make_backend(spec: StoreSpec) -> Any:
    """Connect: each backend module is imported only when used (its client is optional)."""
    if spec.kind == "duckdb":
        from ..backends import duckdb

        return duckdb.Backend(**spec.arguments)
    if spec.kind == "mongodb":
        from ..backends import mongodb

        return mongodb.Backend(**spec.arguments)
    from ..backends import influxdb

    return influxdb.Backend(**spec.arguments)


def open_store(db: str | None, url: str | None, check_only: bool = False) -> Datastream | None:
    """A Datastream on the store named by ``--db`` or ``--url`` (exactly one of them);
    ``check_only`` checks the options and returns None without connecting."""
    if (db is None) == (url is None):
        raise StoreURLError("give exactly one of --db PATH or --url URL")
    spec = StoreSpec("duckdb", {"path": db}) if db is not None else parse_url(url or "")
    if check_only:
        return None
    return Datastream(make_backend(spec))

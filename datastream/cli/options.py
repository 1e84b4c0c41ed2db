"""Options shared by several commands and the parsing of their values."""

from __future__ import annotations

import datetime
import functools
import json
import os
from collections.abc import Callable
from typing import Any

import click

from .. import downsamplers as downsampler_names
from .. import exceptions
from ..granularity import resolve
from .connection import URL_HELP, open_store, parse_url

GRANULARITIES = "seconds, 10seconds, minutes, 10minutes, hours, 6hours, days (or s S m M h H d)"


def store_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--db`` / ``--url`` / ``--quiet``; the command receives an open ``ds`` (closed, so
    flushed, when it returns)."""

    @click.option("--db", metavar="PATH", help="embedded store: a DuckDB file")
    @click.option("--url", metavar="URL", help=f"another backend: {URL_HELP}")
    @click.option("--quiet", "-q", is_flag=True, help="no progress bar and no summary")
    @functools.wraps(command)
    def wrapper(db: str | None, url: str | None, **kwargs: Any) -> Any:
        path = _embedded_path(db, url)
        if path is not None and not os.path.exists(path):
            # these commands read or change stored streams: a mistyped path would otherwise
            # leave a new empty store behind and report nothing
            given = "--db" if url is None else "a duckdb: --url"
            raise FileNotFoundError(f"no store at {path}: {given} names an existing file here "
                                    f"(import or serve create one)")
        with _opener(db, url)() as ds:
            return command(ds=ds, **kwargs)

    return wrapper


def _embedded_path(db: str | None, url: str | None) -> str | None:
    """The file of the embedded store the options name (``--db`` or a ``duckdb:`` URL); None
    for another backend or options that are wrong anyway (reported when opening)."""
    if (db is None) == (url is None):
        return None
    if db is not None:
        return db
    try:
        spec = parse_url(url or "")
    except ValueError:
        return None
    return spec.arguments["path"] if spec.kind == "duckdb" else None


def lazy_store_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """As :func:`store_options`, but the command receives ``connect``, a function opening the
    store: a command that checks its input first opens (or creates) nothing when it is bad."""

    @click.option("--db", metavar="PATH", help="embedded store: a DuckDB file")
    @click.option("--url", metavar="URL", help=f"another backend: {URL_HELP}")
    @click.option("--quiet", "-q", is_flag=True, help="no progress bar and no summary")
    @functools.wraps(command)
    def wrapper(db: str | None, url: str | None, **kwargs: Any) -> Any:
        _opener(db, url, check_only=True)
        return command(connect=_opener(db, url), **kwargs)

    return wrapper


def _opener(db: str | None, url: str | None, check_only: bool = False) -> Callable[[], Any]:
    """A function opening the store named by the options (their mistakes are usage errors).
    ``check_only`` validates the options without opening anything."""

    def connect() -> Any:
        try:
            return open_store(db, url, check_only=check_only)
        except ValueError as error:
            if isinstance(error, exceptions.DatastreamException):
                raise
            raise click.UsageError(str(error)) from None

    if check_only:
        connect()
    return connect


def query_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--tag k=v`` (repeatable) and ``--query JSON``, merged into one tag query."""

    @click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE",
                  help="match a tag: KEY=text, or KEY:=JSON for numbers, booleans, lists")
    @click.option("--query", "query_json", metavar="JSON",
                  help='a query in the tag query language, e.g. \'{"metric": {"$icontains": '
                       '"cpu"}}\'')
    @functools.wraps(command)
    def wrapper(tags: tuple[str, ...], query_json: str | None, **kwargs: Any) -> Any:
        return command(query=build_query(tags, query_json), **kwargs)

    return wrapper


def parse_tag(text: str) -> tuple[str, Any]:
    """``key=text`` → ("key", "text"); ``key:=json`` → ("key", parsed JSON)."""
    key, equals, value = text.partition("=")
    if not equals:
        raise click.BadParameter(f"{text!r} is not KEY=VALUE")
    if key.endswith(":"):
        key = key[:-1]
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise click.BadParameter(f"{text!r}: the value is not JSON ({error.msg})") from None
    if not key:
        raise click.BadParameter(f"{text!r} has no key")
    return key, value


def parse_tags(pairs: tuple[str, ...]) -> dict[str, Any]:
    return dict(parse_tag(pair) for pair in pairs)


def build_query(pairs: tuple[str, ...], query_json: str | None) -> dict[str, Any]:
    query: dict[str, Any] = {}
    if query_json:
        try:
            query = json.loads(query_json)
        except json.JSONDecodeError as error:
            raise click.BadParameter(f"--query is not JSON ({error.msg})") from None
        if not isinstance(query, dict):
            raise click.BadParameter("--query must be a JSON object")
    query.update(parse_tags(pairs))
    return query


def parse_time(text: str | None, option: str) -> datetime.datetime | None:
    """ISO-8601; naive is UTC."""
    if text is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO-8601 time", param_hint=option) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment


def parse_granularity(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return resolve(text)
    except exceptions.UnsupportedGranularity:
        raise click.BadParameter(f"{text!r}; use one of {GRANULARITIES}",
                                 param_hint="--granularity") from None


def parse_names(text: str | None, known: dict[str, Any], option: str) -> list[str] | None:
    """A comma-separated list of downsampler names (None when the option is absent)."""
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise click.BadParameter(f"unknown {unknown[0]!r}; known: {', '.join(known)}",
                                 param_hint=option)
    return names


def value_downsamplers(text: str | None, option: str = "--downsamplers") -> list[str] | None:
    return parse_names(text, downsampler_names.VALUE_DOWNSAMPLERS, option)


def time_downsamplers(text: str | None) -> list[str] | None:
    return parse_names(text, downsampler_names.TIME_DOWNSAMPLERS, "--time-downsamplers")

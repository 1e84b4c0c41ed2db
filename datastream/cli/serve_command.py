"""``datastream serve``: the HTTP service (:mod:`datastream.http`) over one store, with uvicorn.

Safe by default: it listens on 127.0.0.1, and it refuses to listen on any other address
without a token (``--token`` or ``--token-file``) unless ``--insecure`` says that an open
server is intended. The checks run before the store is opened, so a refused start changes
nothing. starlette and uvicorn (the ``http`` extra) are imported only when the command runs.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

import click

from .. import Datastream
from .options import lazy_store_options, parse_granularity, value_downsamplers

DEFAULT_DOWNSAMPLERS = "mean,min,max"


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback address."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(found) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback
                               for info in found)


def read_token(token: str | None, token_file: str | None) -> str | None:
    if token is not None and token_file is not None:
        raise click.UsageError("give --token or --token-file, not both")
    if token_file is not None:
        with open(token_file, encoding="utf-8") as handle:
            token = handle.read().strip()
        if not token:
            raise click.UsageError(f"the token file {token_file!r} is empty")
    if token is not None and not token.strip():
        raise click.UsageError("the token must not be empty")
    return token


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="TCP port (0: any free port, printed at start)")
@click.option("--token", metavar="TOKEN", help="require this token from every request")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False),
              help="read the token from this file (keeps it out of the process list)")
@click.option("--insecure", is_flag=True,
              help="allow listening on a non-loopback address without a token")
@click.option("--downsamplers", default=DEFAULT_DOWNSAMPLERS, show_default=True,
              help="value downsamplers of streams that /write creates ('' for none)")
@click.option("--granularity", default="seconds", show_default=True,
              help="highest granularity of streams that /write creates")
@click.option("--max-body-mb", type=click.IntRange(min=1), default=32, show_default=True,
              help="largest request body in MiB, also after gzip inflation")
@click.option("--reject-late-points", is_flag=True,
              help="refuse points older than their stream's latest (by default they are "
                   "accepted as late points, as InfluxDB does, except in a downsampled range)")
@lazy_store_options
def serve(connect: Callable[[], Datastream], host: str, port: int, token: str | None,
          token_file: str | None, insecure: bool, downsamplers: str, granularity: str,
          max_body_mb: int, reject_late_points: bool, quiet: bool) -> None:
    """Serve the store over HTTP: the django-datastream compatible API under /api/v1/,
    InfluxDB line protocol at /write, the OpenAPI description at /openapi.json and a chart
    page at /. Stops cleanly (finishing acknowledged writes) on Ctrl-C or SIGTERM."""
    token = read_token(token, token_file)
    if token is None and not insecure and not is_loopback(host):
        raise click.UsageError(
            f"refusing to listen on {host} without a token: anyone who can reach it could "
            "read and write the store. Give --token or --token-file, or --insecure to serve "
            "it open anyway")
    names = value_downsamplers(downsamplers) or []
    level = parse_granularity(granularity)
    try:
        from ..http import create_app
        from ..http.server import bind, make_server, serve_until_signal, url_of
    except ImportError as error:
        raise click.UsageError(f"datastream serve needs the http extra ({error.name} is "
                               "missing): pip install 'datastream-columnar[http]'") from None
    try:
        sock = bind(host, port)
    except OSError as error:
        raise click.UsageError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    # A server lives long: small chunks go through the compiled codec kernels from the start
    # (without numba loaded they take their numpy twins, which only spare short scripts the
    # import; ``datastream warmup`` fills the kernel cache ahead of time).
    import numba  # noqa: F401

    with sock, connect() as ds:
        app = create_app(ds, token=token, max_body_bytes=max_body_mb * 2**20,
                         default_value_downsamplers=names, default_highest_granularity=level,
                         accept_late_points=not reject_late_points)
        if not quiet:
            guard = "token required" if token else "no token: open to anyone who can reach it"
            click.echo(f"serving on {url_of(sock)} ({guard}); Ctrl-C stops")
        serve_until_signal(make_server(app, log_level="warning" if quiet else "info"), sock)


COMMANDS = [serve]

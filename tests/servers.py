"""Throwaway PostgreSQL and InfluxDB servers for tests (loopback, temp dirs, free ports).

Both run as children of the test process, under a temporary directory that is removed when
they stop. They are stopped on exit of the context managers, also on failure, and they die
with the test process (parent-death signal) if it is killed, so no server outlives a run.
A missing server binary raises :class:`ServerUnavailable` with an installation hint: CI
installs both, so a missing one is an error, never a reason to skip.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

PG_BIN = os.environ.get("DATASTREAM_PG_BIN", "/usr/lib/postgresql/15/bin")
INFLUXD = os.environ.get("DATASTREAM_INFLUXD", "influxd")
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class ServerUnavailable(RuntimeError):
    """A test server could not be found or started."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent(sig: int) -> Callable[[], None]:
    """preexec_fn: the child gets ``sig`` when the test process dies (Linux prctl)."""

    def set_death_signal() -> None:
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig, 0, 0, 0)  # PR_SET_PDEATHSIG
        except OSError:
            pass

    return set_death_signal


def _tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return ""


def _stop(process: subprocess.Popen | None, sig: int) -> None:
    """Signal a child and reap it; SIGKILL when it does not stop in time."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- PostgreSQL --------------------------------------------------------------------------------


@dataclass
class PostgresServer:
    """A running throwaway cluster; ``connection(dbname)`` gives psycopg2 keyword arguments.
    ``stop()`` and ``start()`` shut it down and bring it back on the same data and port (for
    failure tests)."""

    host: str
    port: int
    user: str
    directory: str
    test_database_ready: bool = False
    command: list[str] | None = None
    run_as: dict[str, Any] | None = None
    process: subprocess.Popen | None = None

    def connection(self, dbname: str = "postgres") -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "user": self.user, "dbname": dbname}

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        """Run statements outside a transaction (CREATE/DROP DATABASE)."""
        import psycopg2

        con = psycopg2.connect(connect_timeout=5, **self.connection(dbname))
        try:
            con.autocommit = True
            with con.cursor() as cur:
                cur.execute(sql)
        finally:
            con.close()

    @property
    def log(self) -> str:
        return os.path.join(self.directory, "server.log")

    def start(self) -> None:
        """Start (or restart) the server and wait until it accepts connections."""
        import psycopg2

        if self.process is not None and self.process.poll() is None:
            return
        assert self.command is not None
        with open(self.log, "ab") as log_file:
            self.process = subprocess.Popen(
                self.command, stdout=log_file, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent(signal.SIGQUIT),
                **(self.run_as or {}),
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                psycopg2.connect(connect_timeout=2, **self.connection()).close()
                return
            except psycopg2.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise ServerUnavailable(
                        f"PostgreSQL did not start on port {self.port}:\n{_tail(self.log)}"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Fast shutdown (SIGINT): open connections are cut."""
        _stop(self.process, signal.SIGINT)


def _postgres_user() -> dict[str, Any]:
    """Popen arguments that run initdb/postgres as ``postgres`` when we are root (both refuse
    to run as root)."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise ServerUnavailable("running as root but there is no 'postgres' user") from None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start PostgreSQL (initdb in a temp dir, loopback, fsync off); stop and remove it after."""
    initdb, postgres = os.path.join(PG_BIN, "initdb"), os.path.join(PG_BIN, "postgres")
    if not (os.access(initdb, os.X_OK) and os.access(postgres, os.X_OK)):
        raise ServerUnavailable(
            f"PostgreSQL binaries not found in {PG_BIN} (apt-get install postgresql-15, or set"
            " DATASTREAM_PG_BIN)"
        )
    run_as = _postgres_user()
    directory = tempfile.mkdtemp(prefix="datastream-pg-")
    server = None
    try:
        if run_as:
            os.chown(directory, run_as["user"], run_as["group"])
        data = os.path.join(directory, "data")
        subprocess.run(
            [initdb, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
             "--locale=C.UTF-8", "--no-sync"],
            check=True, capture_output=True, timeout=120, **run_as,
        )
        port = free_port()
        command = [postgres, "-D", data, "-k", directory, "-h", "127.0.0.1", "-p", str(port),
                   "-c", "fsync=off", "-c", "synchronous_commit=off", "-c",
                   "full_page_writes=off", "-c", "max_connections=200"]
        server = PostgresServer("127.0.0.1", port, "postgres", directory, command=command,
                                run_as=run_as)
        server.start()
        yield server
    except subprocess.CalledProcessError as error:
        raise ServerUnavailable(f"initdb failed: {error.stderr.decode(errors='replace')}") from None
    finally:
        if server is not None:
            server.stop()  # SIGINT = fast shutdown
        shutil.rmtree(directory, ignore_errors=True)


# -- InfluxDB ----------------------------------------------------------------------------------


class InfluxServer:
    """A throwaway ``influxd run``; can be killed and restarted on the same data and ports."""

    def __init__(self, directory: str) -> None:
        self.host = "127.0.0.1"
        self.directory = directory
        self.port = free_port()
        self.rpc_port = free_port()
        self.process: subprocess.Popen | None = None
        self.log = os.path.join(directory, "influxd.log")

    def connection(self, database: str) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "database": database, "timeout": 30}

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "INFLUXDB_REPORTING_DISABLED": "true",
            "INFLUXDB_BIND_ADDRESS": f"127.0.0.1:{self.rpc_port}",
            "INFLUXDB_HTTP_BIND_ADDRESS": f"127.0.0.1:{self.port}",
            "INFLUXDB_META_DIR": os.path.join(self.directory, "meta"),
            "INFLUXDB_DATA_DIR": os.path.join(self.directory, "data"),
            "INFLUXDB_DATA_WAL_DIR": os.path.join(self.directory, "wal"),
            "INFLUXDB_HTTP_LOG_ENABLED": "false",
            "INFLUXDB_DATA_QUERY_LOG_ENABLED": "false",
            "INFLUXDB_MONITOR_STORE_ENABLED": "false",
            "INFLUXDB_LOGGING_LEVEL": "warn",
        })
        return env

    def start(self) -> None:
        """Start (or restart) the server and wait until ``/ping`` answers."""
        if self.process is not None and self.process.poll() is None:
            return
        binary = shutil.which(INFLUXD)
        if binary is None:
            raise ServerUnavailable(
                f"{INFLUXD!r} not found (apt-get install influxdb, or set DATASTREAM_INFLUXD)"
            )
        with open(self.log, "ab") as log_file:
            self.process = subprocess.Popen(
                [binary, "run", "-config", "/dev/null"],
                env=self._environment(), stdout=log_file, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent(signal.SIGKILL),
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        url = f"http://{self.host}:{self.port}/ping"
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 204:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ServerUnavailable(f"influxd did not start on port {self.port}:\n"
                                        f"{_tail(self.log)}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown, only what the WAL holds survives."""
        _stop(self.process, signal.SIGKILL)

    def stop(self) -> None:
        _stop(self.process, signal.SIGTERM)


@contextlib.contextmanager
def influxdb_server() -> Iterator[InfluxServer]:
    """Start influxd on free loopback ports with everything under a temp dir; remove it after."""
    directory = tempfile.mkdtemp(prefix="datastream-influx-")
    server = InfluxServer(directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


# -- both, and fresh backends on them ----------------------------------------------------------


@dataclass
class Servers:
    postgres: PostgresServer
    influxdb: InfluxServer


@contextlib.contextmanager
def influx_servers() -> Iterator[Servers]:
    """Both servers of the influxdb backend, for a whole test session."""
    with postgres_server() as postgres, influxdb_server() as influxdb:
        yield Servers(postgres, influxdb)


TEST_DATABASE = "datastream_tests"


@contextlib.contextmanager
def fresh_databases(servers: Servers) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """A new InfluxDB database and a new PostgreSQL schema (a fifth of the cost of a new
    database), removed afterwards. Yields the ``connection_influxdb`` and
    ``connection_metadata`` arguments of the backend."""
    postgres = servers.postgres
    if not postgres.test_database_ready:
        postgres.execute(f"CREATE DATABASE {TEST_DATABASE}")
        postgres.test_database_ready = True
    name = "ds_" + uuid.uuid4().hex[:12]
    postgres.execute(f"CREATE SCHEMA {name}", TEST_DATABASE)
    metadata = postgres.connection(TEST_DATABASE)
    metadata["options"] = f"-c search_path={name}"
    try:
        yield servers.influxdb.connection(name), metadata
    finally:
        with contextlib.suppress(Exception):  # a leftover schema dies with the cluster
            postgres.execute(f"SET lock_timeout = '5s'; DROP SCHEMA {name} CASCADE",
                             TEST_DATABASE)
        _drop_influx_database(servers.influxdb, name)


def _drop_influx_database(server: InfluxServer, name: str) -> None:
    if server.process is None or server.process.poll() is not None:
        return
    query = urllib.parse.urlencode({"q": f'DROP DATABASE "{name}"'})
    try:
        urllib.request.urlopen(
            urllib.request.Request(f"http://{server.host}:{server.port}/query?{query}",
                                   method="POST"), timeout=10
        ).close()
    except (urllib.error.URLError, OSError):
        pass


@contextlib.contextmanager
def influx_backend_factory(servers: Servers) -> Iterator[Callable[[], Any]]:
    """A callable returning a new ``influxdb.Backend`` on the same fresh databases at each call
    (reopening sees the same data); every backend it made is closed at the end."""
    from datastream.backends import influxdb

    made: list[Any] = []

    with fresh_databases(servers) as (connection_influxdb, connection_metadata):

        def factory() -> Any:
            backend = influxdb.Backend(dict(connection_influxdb), dict(connection_metadata))
            made.append(backend)
            return backend

        try:
            yield factory
        finally:
            for backend in made:
                backend.close()


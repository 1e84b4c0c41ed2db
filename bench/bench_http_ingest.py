"""Line-protocol ingest over HTTP: ``datastream serve`` beside a real InfluxDB 1.x.

    PYTHONPATH=. .venv/bin/python bench/bench_http_ingest.py [--hosts 100] [--seconds 600]
        [--batch 5000] [--clients 1,4] [--json out.json]

One payload per client count, generated once, is posted to both servers by the same client
code: ``--hosts`` series ``cpu,host=node-N usage_user=..,usage_system=..,usage_idle=..`` at
1 Hz for ``--seconds`` seconds (three fields, so three points per line). As with agents, each
of the ``--clients`` threads owns a share of the hosts and sends their lines in time order, in
requests of ``--batch`` lines, each waiting for its 204 as Telegraf's output does. Both
servers start on loopback with their data in a temp directory: ``influxd`` from the Debian
package (tests/servers.py) and ``python -m datastream serve`` on a fresh DuckDB file with its
default downsamplers, so ours also computes every level while InfluxDB only stores raw points.

Reported per system and client count: wall-clock points/s, the server's CPU seconds per
million points (from /proc, a figure that holds on a loaded machine) and the ratio to InfluxDB
in the same run; every point is counted back afterwards (a run that lost points fails).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import requests

FIELDS = ("usage_user", "usage_system", "usage_idle")
TOKEN = "bench-token"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    system: str
    clients: int
    points: int
    seconds: float
    server_cpu_seconds: float

    @property
    def points_per_second(self) -> float:
        return self.points / self.seconds

    @property
    def cpu_seconds_per_million(self) -> float:
        return self.server_cpu_seconds / self.points * 1e6


def payload(hosts: int, seconds: int, batch: int, clients: int) -> list[list[bytes]]:
    """Per client, request bodies of ``batch`` lines: its hosts (every ``clients``-th), all of
    them for each second in turn."""
    rng = np.random.default_rng(11)
    start_ns = 1_767_225_600 * 10**9  # 2026-01-01
    values = np.round(rng.uniform(0, 100, (seconds, hosts, len(FIELDS))), 2).tolist()
    bodies = []
    for client in range(clients):
        lines = []
        for second in range(seconds):
            stamp = start_ns + second * 10**9
            for host in range(client, hosts, clients):
                fields = ",".join(f"{name}={value!r}"
                                  for name, value in zip(FIELDS, values[second][host]))
                lines.append(f"cpu,host=node-{host:04d} {fields} {stamp}")
        bodies.append(["\n".join(lines[at:at + batch]).encode()
                       for at in range(0, len(lines), batch)])
    return bodies


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its waited-for children."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def post_all(url: str, bodies: list[list[bytes]], headers: dict[str, str]) -> float:
    """Seconds to post every client's bodies, a thread and a session per client, each waiting
    for every reply before its next request."""

    def client(own: list[bytes]) -> None:
        with requests.Session() as session:
            session.headers.update(headers)
            for body in own:
                response = session.post(url, data=body, timeout=600)
                if response.status_code != 204:
                    raise RuntimeError(f"{url}: HTTP {response.status_code}: "
                                       f"{response.text[:300]}")

    began = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        for future in [pool.submit(client, own) for own in bodies]:
            future.result()
    return time.perf_counter() - began


def wait_for(url: str, process: subprocess.Popen, log: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited:\n{open(log).read()[-2000:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2, headers={"Authorization": f"Bearer {TOKEN}"}
                            ).status_code == 204:
                return
        time.sleep(0.1)
    raise RuntimeError(f"no answer from {url}:\n{open(log).read()[-2000:]}")


@contextlib.contextmanager
def datastream_server(directory: str) -> Iterator[tuple[str, int, str]]:
    """``python -m datastream serve`` on a fresh DuckDB file: (base URL, pid, db path)."""
    from tests.servers import free_port

    port, path = free_port(), os.path.join(directory, "http.duckdb")
    log = os.path.join(directory, "serve.log")
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "datastream", "serve", "--db", path, "--host", "127.0.0.1",
             "--port", str(port), "--token", TOKEN],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/ping", process, log)
        yield base, process.pid, path
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stored_in_datastream(path: str) -> int:
    import datastream
    from datastream.backends import duckdb

    with datastream.Datastream(duckdb.Backend(path)) as ds:
        table = ds.get_table({"measurement": "cpu"}, datastream.Granularity.Seconds)
        return table.num_rows


def stored_in_influxdb(base: str, database: str) -> int:
    response = requests.get(f"{base}/query", params={
        "db": database, "q": "SELECT count(*) FROM cpu", "epoch": "ns"}, timeout=600)
    series = response.json()["results"][0].get("series", [])
    return int(sum(series[0]["values"][0][1:])) if series else 0


def run_datastream(bodies: list[list[bytes]], points: int) -> Run:
    directory = tempfile.mkdtemp(prefix="bench-http-")
    try:
        with datastream_server(directory) as (base, pid, path):
            cpu_before = cpu_seconds(pid)
            seconds = post_all(f"{base}/write?precision=ns", bodies,
                               {"Authorization": f"Bearer {TOKEN}"})
            cpu = cpu_seconds(pid) - cpu_before
        stored = stored_in_datastream(path)
        if stored != points:
            raise RuntimeError(f"datastream stored {stored} of {points} points")
        return Run("datastream serve", len(bodies), points, seconds, cpu)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run_influxdb(bodies: list[list[bytes]], points: int) -> Run:
    from tests.servers import influxdb_server

    with influxdb_server() as server:
        base, database = f"http://{server.host}:{server.port}", "bench"
        requests.post(f"{base}/query", params={"q": f"CREATE DATABASE {database}"}, timeout=60)
        cpu_before = cpu_seconds(server.process.pid)
        seconds = post_all(f"{base}/write?db={database}&precision=ns", bodies, {})
        cpu = cpu_seconds(server.process.pid) - cpu_before
        stored = stored_in_influxdb(base, database)
        if stored != points:
            raise RuntimeError(f"InfluxDB stored {stored} of {points} points")
        return Run("InfluxDB 1.x", len(bodies), points, seconds, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--clients", default="1,4")
    parser.add_argument("--json")
    args = parser.parse_args()
    points = args.hosts * args.seconds * len(FIELDS)
    runs = []
    for clients in [int(c) for c in args.clients.split(",")]:
        bodies = payload(args.hosts, args.seconds, args.batch, clients)
        sizes = [len(body) for own in bodies for body in own]
        print(f"{clients} clients: {points:,} points in {len(sizes)} requests of up to "
              f"{args.batch} lines ({sum(sizes) / 2**20:.1f} MiB)")
        for runner in (run_influxdb, run_datastream):
            run = runner(bodies, points)
            runs.append(run)
            print(f"{run.system:18s} clients {clients}: {run.points_per_second / 1e6:6.3f} M "
                  f"points/s wall, server CPU {run.cpu_seconds_per_million:6.2f} s per M points")
        ours, theirs = runs[-1], runs[-2]
        print(f"  ratio datastream/InfluxDB, clients {clients}: "
              f"{ours.points_per_second / theirs.points_per_second:.2f}x wall, "
              f"{theirs.cpu_seconds_per_million / ours.cpu_seconds_per_million:.2f}x CPU")
    if args.json:
        with open(args.json, "w") as out:
            json.dump([asdict(run) | {"points_per_second": run.points_per_second}
                       for run in runs], out, indent=2)


if __name__ == "__main__":
    main()

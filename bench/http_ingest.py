"""HTTP ingest rate: InfluxDB line protocol posted to ``/write`` of ``datastream serve``.

    PYTHONPATH=. .venv/bin/python bench/http_ingest.py [--clients 1,4] [--batches 40]
        [--lines 5000] [--series 50]

The server runs as its own process (``python -m datastream serve`` on an embedded DuckDB file
in a temporary directory, a free loopback port, a token); each client is a process of its own
posting ``--batches`` bodies of ``--lines`` lines (``--series`` series of one float field each,
rising timestamps) one after another and waiting for each 204, which the server sends once the
points are durable. Bodies are built before the clock starts. Prints points per second (wall
time from the first post to the last acknowledgement) for each number of clients.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time

import httpx

TOKEN = "bench-token"


def bodies(client: int, batches: int, lines: int, series: int) -> list[bytes]:
    """Each client writes its own series, ``lines / series`` new seconds per batch."""
    per_series = lines // series
    result = []
    for batch in range(batches):
        rows = []
        for step in range(per_series):
            second = 1_700_000_000 + batch * per_series + step
            for index in range(series):
                rows.append(f"bench,client={client},sensor={index} value={step * 0.5 + index} "
                            f"{second}")
        result.append(("\n".join(rows) + "\n").encode())
    return result


def post_all(url: str, payloads: list[bytes], start: multiprocessing.Event) -> float:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"},
                      timeout=300) as client:
        start.wait()
        began = time.perf_counter()
        for payload in payloads:
            response = client.post("/write?precision=s", content=payload)
            response.raise_for_status()
        return time.perf_counter() - began


def _client(args: tuple) -> float:
    url, payloads, start = args
    return post_all(url, payloads, start)


def run(clients: int, batches: int, lines: int, series: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        server = subprocess.Popen(
            [sys.executable, "-m", "datastream", "serve", "--db", f"{folder}/bench.duckdb",
             "--port", "0", "--token", TOKEN],
            stdout=subprocess.PIPE, text=True, env=dict(os.environ))
        try:
            banner = server.stdout.readline()
            url = banner.split()[2]
            payloads = [bodies(client, batches, lines, series) for client in range(clients)]
            with multiprocessing.Manager() as manager:
                start = manager.Event()
                with multiprocessing.Pool(clients) as pool:
                    pending = pool.map_async(_client, [(url, payloads[c], start)
                                                       for c in range(clients)])
                    time.sleep(1.0)
                    began = time.perf_counter()
                    start.set()
                    pending.get()
                    elapsed = time.perf_counter() - began
        finally:
            server.terminate()
            server.wait(timeout=60)
    return clients * batches * (lines // series) * series / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,4")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--series", type=int, default=50)
    options = parser.parse_args()
    for clients in (int(text) for text in options.clients.split(",")):
        rate = run(clients, options.batches, options.lines, options.series)
        print(f"{clients} client(s) x {options.batches} batches of {options.lines} lines: "
              f"{rate:,.0f} points/s", flush=True)


if __name__ == "__main__":
    main()

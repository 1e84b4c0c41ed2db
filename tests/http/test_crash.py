"""A 204 from ``/write`` means durable: ``datastream serve`` killed with SIGKILL at random
moments while a client writes keeps every acknowledged request, stores each request whole or
not at all, and never stores a point twice; the restarted server goes on from there."""

from __future__ import annotations

import datetime
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

import datastream
from datastream.backends import duckdb

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "crash-token"
LINES = 200  # points per request, numbered: the value is the point's number
CYCLES = 3
EVERYTHING = datetime.datetime.min


def _start(store: Path) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "datastream", "serve", "--db", str(store), "--port", "0",
         "--token", TOKEN],
        env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True)
    banner = server.stdout.readline()
    assert banner.startswith("serving on http://"), banner
    return server, banner.split()[2]


def _body(request: int) -> str:
    first = request * LINES
    return "\n".join(f"crash,host=a n={n}i {1_700_000_000 + n}" for n in range(first,
                                                                            first + LINES))


def _write_until_stopped(url: str, stop: threading.Event, first: int, sent: list[int],
                         acknowledged: list[int]) -> None:
    """Post numbered requests one after another, each waiting for its 204."""
    with httpx.Client(base_url=url, timeout=30,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        request = first
        while not stop.is_set():
            sent.append(request)
            try:
                response = http.post("/write?precision=s", content=_body(request))
            except httpx.TransportError:
                return  # killed mid-request: not acknowledged
            assert response.status_code == 204, response.text
            acknowledged.append(request)
            request += 1


def _wait_for_an_acknowledgement(acknowledged: list[int], before: int) -> None:
    """Until this server acknowledged a request: a loaded machine may take seconds to start
    one, and a kill before the first write would test nothing."""
    deadline = time.monotonic() + 120
    while len(acknowledged) == before and time.monotonic() < deadline:
        time.sleep(0.02)


def test_sigkill_keeps_every_acknowledged_write(tmp_path):
    store = tmp_path / "crash.duckdb"
    rng = random.Random(os.environ.get("DATASTREAM_CRASH_SEED"))
    acknowledged: list[int] = []
    sent: list[int] = []
    for _ in range(CYCLES):
        server, url = _start(store)
        stop = threading.Event()
        first = max(sent) + 1 if sent else 0  # an unacknowledged request is never sent again
        writer = threading.Thread(target=_write_until_stopped,
                                  args=(url, stop, first, sent, acknowledged))
        writer.start()
        _wait_for_an_acknowledgement(acknowledged, len(acknowledged))
        time.sleep(rng.uniform(0.0, 1.0))  # then killed at a random moment of the stream
        server.send_signal(signal.SIGKILL)
        server.wait()
        stop.set()
        writer.join()
    assert len(acknowledged) >= CYCLES, "the client never got a write through"
    with datastream.Datastream(duckdb.Backend(str(store))) as ds:
        (tags,) = ds.find_streams({"measurement": "crash"})
        numbers = ds.get_data(tags["stream_id"], "seconds", start=EVERYTHING).to_arrow()
        numbers = numbers.column("v").to_pylist()
        assert not ds.verify()
    assert len(numbers) == len(set(numbers)), "a point was stored twice"
    stored = {n // LINES for n in numbers}
    for number in stored:  # a request is stored whole or not at all
        assert sum(1 for n in numbers if n // LINES == number) == LINES, number
    missing = [number for number in acknowledged if number not in stored]
    assert not missing, f"acknowledged requests lost: {missing}"

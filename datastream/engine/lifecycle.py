"""Buffers that flush without the application's help.

* A background thread (one per process, a daemon) watches every engine and flushes each one
  whose buffer reached its size or age limit, also while the application is idle, and retries
  failed flushes with backoff. Each flush runs in a daemon thread of its own (one at a time per
  engine), so an engine whose backend hangs delays nobody else's flushes. Once some engine
  holds buffered points it imports the chunk compressor (blosc2), so that the first flush is
  not late; a process that never appends (one that lists streams or reads) does so only when
  it reads its first chunk.
* At normal interpreter exit every engine is flushed. The exit path must not depend on
  imports that fail during shutdown: pyarrow imports pandas lazily the first time it converts a
  Python sequence, and pandas imports ``concurrent.futures.thread``, which refuses to load once
  the threading module has shut down. Importing that module when the first engine registers
  makes the late pandas import succeed.
* After ``fork()`` the child drops the buffers it inherited (they belong to the parent, which
  flushes them) and starts its own flusher when it needs one.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .core import Engine

TICK_SECONDS = 0.05

_engines: weakref.WeakSet[Engine] = weakref.WeakSet()
_guard = threading.Lock()
_thread: threading.Thread | None = None
_exiting = False
_working: set[int] = set()  # ids of the engines a flush thread is working on


def register(engine: Engine) -> None:
    """Flush ``engine`` in the background and at exit from now on."""
    global _thread
    import concurrent.futures.thread  # noqa: F401 - for the exit flush: see the module docstring

    with _guard:
        _engines.add(engine)
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run, name="datastream-flusher", daemon=True)
            _thread.start()


def unregister(engine: Engine) -> None:
    with _guard:
        _engines.discard(engine)


def _run() -> None:
    warm = False
    wait = threading.Event().wait
    while not _exiting:
        wait(TICK_SECONDS)
        engines = list(_engines)
        if not warm and any(engine.buffers.points for engine in engines):
            _prewarm()
            warm = True
        for engine in engines:
            key = id(engine)
            if key in _working or not engine.background_due():
                continue
            _working.add(key)
            threading.Thread(target=_flush, args=(engine, key), name="datastream-flush",
                             daemon=True).start()


def _flush(engine: Engine, key: int) -> None:
    try:
        engine.flush_if_due()
    except Exception:  # noqa: BLE001 - recorded on the engine; never kill the thread
        pass
    finally:
        _working.discard(key)


def _prewarm() -> None:
    """blosc2 (the chunk compressor) takes ~0.3 s to import: do it here, off the application's
    path, rather than in the first flush that is due. Only once points wait in a buffer: an
    import holds the GIL for most of its time, which an application that only reads would pay
    for nothing. (pandas, which pyarrow imports on its first conversion, is not warmed up:
    appending, flushing, downsampling and reading numeric streams convert nothing through
    pyarrow; see :mod:`datastream.arrow_numpy`.)"""
    try:
        import blosc2  # noqa: F401 - the chunk codec's compressor, also imported on first use
    except Exception:  # noqa: BLE001 - only a warm-up
        pass


def flush_at_exit() -> None:
    """Flush every registered engine; failures are reported on stderr (never silently)."""
    global _exiting
    _exiting = True
    for engine in list(_engines):
        report_failure(engine, "at exit")


def report_failure(engine: Engine, when: str) -> None:
    """Flush ``engine``; on failure say on stderr how many points could not be stored."""
    try:
        engine.flush()
    except Exception as error:  # noqa: BLE001 - there is no caller to raise to
        sys.stderr.write(
            f"datastream: {engine.buffers.points} buffered points could not be stored {when}:"
            f" {type(error).__name__}: {error}\n"
        )


def _after_fork_in_child() -> None:
    global _thread, _guard
    _guard = threading.Lock()
    _thread = None
    _working.clear()  # the parent's flush threads do not exist here
    engines = list(_engines)
    for engine in engines:
        engine.after_fork()
    if engines:
        register(engines[0])


atexit.register(flush_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

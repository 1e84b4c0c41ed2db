"""Opening the database file, transactions, and DuckDB's errors turned into datastream's."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import duckdb

from ... import exceptions

StorageUnavailable = exceptions.StorageUnavailable  # its name here before it was shared

# DuckDB checkpoints once its write-ahead log holds this much (its default: 16 MB). Each
# checkpoint also rewrites the chunks table's last row group (up to 16 MB of pieces) and leaves
# free blocks behind, so rarer checkpoints write less and keep the file smaller (10 streams of
# 1 M points: 6.7 instead of 8.8 bytes a point). The price: after a crash the next open
# replays up to this much log (about 0.25 s for 50 MB), and data not yet checkpointed stays
# in DuckDB's buffer pool. ``Backend(path, checkpoint_threshold=...)`` overrides it.
CHECKPOINT_THRESHOLD = "64MB"


class StorageLocked(exceptions.StorageUnavailable):
    """Another writer holds the database file (the embedded store has one writing process)."""


# The database file is attached with row groups of this many rows. DuckDB writes a transaction's
# full row groups straight into the file ("optimistic writes") and logs only where they are; the
# rest goes to the write-ahead log and is written a second time at the next checkpoint. Its
# default row group (122,880 rows) is never filled by a commit of chunk pieces, so every byte
# was written twice; a commit whose pieces fill whole row groups of 2048 is written once
# (``storage.piece_counts`` sizes the pieces of large commits to do so).
ROW_GROUP_ROWS = 2048
DATABASE_ALIAS = "datastream"


def open_database(target: str, options: dict[str, Any]) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection to ``target`` (a file, or ``:memory:``), with DuckDB's errors turned
    into datastream's. A file is attached to an in-memory connection, because the row group
    size is an option of ``ATTACH`` only, and made the default database."""
    if "wal_autocheckpoint" not in options:  # DuckDB's other name of the same setting
        options = {"checkpoint_threshold": CHECKPOINT_THRESHOLD, **options}
    try:
        if target == ":memory:":
            return duckdb.connect(target, config=options)
        return _attach(target, dict(options))
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise StorageLocked(
                f"database file {target!r} is in use by another process: the embedded store"
                f" allows one writing process ({exc})"
            ) from exc
        raise StorageUnavailable(f"cannot open {target!r}: {exc}") from exc
    except duckdb.Error as exc:
        raise StorageUnavailable(f"cannot open {target!r}: {exc}") from exc


def _attach(path: str, options: dict[str, Any]) -> duckdb.DuckDBPyConnection:
    attach = [f"ROW_GROUP_SIZE {ROW_GROUP_ROWS}"]
    if str(options.pop("access_mode", "")).lower() == "read_only":
        attach.append("READ_ONLY")
    # where a file database spills by default; an in-memory one would spill into the cwd
    options.setdefault("temp_directory", path + ".tmp")
    con = duckdb.connect(":memory:", config=options)
    try:
        quoted = path.replace("'", "''")
        con.execute(f"ATTACH '{quoted}' AS {DATABASE_ALIAS} ({', '.join(attach)})")
        con.execute(f"USE {DATABASE_ALIAS}")
    except BaseException:
        con.close()
        raise
    return con


def unregister(con: duckdb.DuckDBPyConnection, views: Iterable[str]) -> None:
    """Drop registered Arrow views; never hides the error being raised."""
    for view in views:
        try:
            con.unregister(view)
        except duckdb.Error:
            pass


@contextlib.contextmanager
def transaction(
    con: duckdb.DuckDBPyConnection, error: type[Exception], failure: str
) -> Iterator[None]:
    """BEGIN ... COMMIT; on any error roll back and raise ``error`` naming the cause (an
    interrupt is rolled back and re-raised as it is)."""
    try:
        con.execute("BEGIN TRANSACTION")
        yield
        con.execute("COMMIT")
    except BaseException as exc:
        rollback(con)
        if not isinstance(exc, Exception):
            raise
        raise error(f"{failure}: {type(exc).__name__}: {exc}") from exc


def rollback(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass  # no transaction was open (BEGIN itself failed)


def key_list(keys: Iterable[int]) -> str:
    """An SQL list of integers (formatted as integers, never text)."""
    return "(" + ", ".join(str(int(key)) for key in keys) + ")"

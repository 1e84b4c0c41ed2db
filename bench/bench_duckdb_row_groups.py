"""DuckDB alone: how the piece size and the row group size decide how often a commit of chunk
pieces is written (the experiment behind ``storage.piece_counts``).

    PYTHONPATH=. .venv/bin/python bench/bench_duckdb_row_groups.py [--commits 20]
        [--commit-bytes 3400000] [--cases 8192:default,1660:2048,1536:2048,1024:2048]

Each case commits ``--commits`` transactions of ``--commit-bytes`` random bytes, cut into
pieces of the given size, into a table shaped like the store's ``chunks`` table, in a file
attached with the given ``ROW_GROUP_SIZE`` (``default``: DuckDB's 122,880), then closes it.
Printed: the seconds of the commits and of the close (the final checkpoint), the file size,
and one commit's pieces read back. A commit that fills whole row groups is written straight
into the file; rows left in a partial row group go through the log and are rewritten, with
their neighbours, at a checkpoint.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import duckdb
import numpy as np
import pyarrow as pa

COLUMNS = ("k INTEGER, level SMALLINT, t0 BIGINT, t1 BIGINT, seq BIGINT, part SMALLINT,"
           " rows INTEGER, body BLOB USING COMPRESSION uncompressed")


def pieces(commit: int, count: int, size: int, rng: np.random.Generator) -> pa.Table:
    body = rng.integers(0, 256, count * size, dtype=np.uint8).tobytes()
    offsets = np.arange(count + 1, dtype=np.int64) * size
    numbers = np.arange(count, dtype=np.int64)
    return pa.table({
        "k": pa.array(np.full(count, commit, np.int32)),
        "level": pa.array(np.zeros(count, np.int16)),
        "t0": pa.array(numbers), "t1": pa.array(numbers), "seq": pa.array(numbers // 100),
        "part": pa.array((numbers % 100).astype(np.int16)),
        "rows": pa.array(np.zeros(count, np.int32)),
        "body": pa.LargeBinaryArray.from_buffers(
            pa.large_binary(), count, [None, pa.py_buffer(offsets), pa.py_buffer(body)]),
    })


def run(piece: int, row_group: str, commits: int, commit_bytes: int) -> str:
    path = os.path.join(tempfile.mkdtemp(), "pieces.duckdb")
    con = duckdb.connect()
    option = "" if row_group == "default" else f" (ROW_GROUP_SIZE {int(row_group)})"
    con.execute(f"ATTACH '{path}' AS db{option}")
    con.execute("USE db")
    con.execute("SET checkpoint_threshold = '64MB'")
    con.execute(f"CREATE TABLE chunks ({COLUMNS})")
    rng = np.random.default_rng(1)
    count = commit_bytes // piece
    spent = 0.0
    for commit in range(commits):
        table = pieces(commit, count, piece, rng)
        began = time.perf_counter()
        con.execute("BEGIN")
        con.register("new_pieces", table)
        con.execute("INSERT INTO chunks SELECT * FROM new_pieces")
        con.unregister("new_pieces")
        con.execute("COMMIT")
        spent += time.perf_counter() - began
    began = time.perf_counter()
    con.close()
    closing = time.perf_counter() - began
    reader = duckdb.connect(path, read_only=True)
    began = time.perf_counter()
    reader.sql("SELECT seq, part, body FROM chunks WHERE k = 0 ORDER BY seq, part").to_arrow_table()
    reading = time.perf_counter() - began
    reader.close()
    return (f"piece {piece:>6} B  row group {row_group:>7}  rows/commit {count:>6}  commits"
            f" {spent:.3f} s  close {closing:.3f} s  file {os.path.getsize(path) / 1e6:.1f} MB"
            f"  read one commit {reading * 1e3:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=20)
    parser.add_argument("--commit-bytes", type=int, default=3_400_000)
    parser.add_argument("--cases", default="8192:default,1024:default,1660:2048,1536:2048,"
                                           "1200:2048,800:2048")
    args = parser.parse_args()
    for case in args.cases.split(","):
        piece, row_group = case.split(":")
        print(run(int(piece), row_group, args.commits, args.commit_bytes), flush=True)


if __name__ == "__main__":
    main()

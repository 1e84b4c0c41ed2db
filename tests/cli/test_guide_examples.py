"""The command line guide (docs/guide/cli.md): its examples on the embedded store run as
written (imports, then downsampling, then the rest), on small input files named as the guide
names them."""

from __future__ import annotations

import json
import re
import shlex

import pyarrow as pa
import pyarrow.parquet as pq

from .support import ROOT, invoke

GUIDE = ROOT / "docs" / "guide" / "cli.md"


def guide_commands() -> list[list[str]]:
    """Every ``datastream ...`` command of the guide's ``sh`` blocks (continuations joined)
    that uses the embedded store and no placeholder."""
    blocks = re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), flags=re.S)
    commands = []
    for block in blocks:
        for command in block.replace("\\\n", " ").splitlines():
            words = shlex.split(command)
            if words[:1] == ["datastream"] and "--db" in words and "..." not in command:
                commands.append(words[1:])
    return commands


def write_inputs(folder) -> None:
    lines = ["timestamp,host,metric,value"]
    for second in range(0, 1800, 5):  # half an hour: the 10-minute buckets close
        for host in ("node-01", "node-02"):
            lines.append(f"2026-01-01T00:{second // 60:02d}:{second % 60:02d}Z,{host},cpu,"
                         f"{second * 0.5}")
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    pq.write_table(pa.table({"ts": pa.array([1767225600000 + 1000 * i for i in range(30)]),
                             "reading": pa.array([float(i) for i in range(30)]),
                             "sensor": ["s1"] * 30}), folder / "readings.parquet")


def test_every_embedded_store_example_of_the_guide_runs(tmp_path, monkeypatch):
    commands = guide_commands()
    names = {words[0] for words in commands}
    assert {"import", "export", "streams", "info", "downsample", "verify", "retention",
            "reopen"} <= names
    write_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    # imports first, then downsampling, so that the exports of levels have buckets to show
    order = {"import": 0, "downsample": 1}
    for words in sorted(commands, key=lambda words: order.get(words[0], 2)):
        result = invoke(*words)
        assert result.exit_code == 0, (words, result.output)
    assert pq.read_table(tmp_path / "cpu.parquet").num_rows == 360
    exported = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert {row["host"] for row in exported} == {"node-01", "node-02"}

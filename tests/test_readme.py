"""The README's Python examples run as written, top to bottom, like notebook cells.

Every ```python block is executed in order in one namespace (a later block may use what an
earlier one made), in a temporary directory and with matplotlib's Agg backend.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, code) of each ```python block, in order."""
    return [(text.count("\n", 0, match.start()) + 2, match.group(1))
            for match in BLOCK.finditer(text)]


def test_blocks_are_found_in_order() -> None:
    text = "a\n```python\nx = 1\n```\n```sh\nls\n```\n```python\ny = x\n```\n"
    assert python_blocks(text) == [(3, "x = 1\n"), (9, "y = x\n")]


def test_readme_python_blocks_run(tmp_path, monkeypatch) -> None:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    text = README.read_text(encoding="utf-8")
    blocks = python_blocks(text)
    assert len(blocks) >= 5
    namespace: dict = {"__name__": "readme"}
    try:
        for line, code in blocks:
            exec(compile(code, f"README.md, block at line {line}", "exec"), namespace)
    finally:
        plt.close("all")
    # the walkthrough drew its minutes and built its long table
    assert len(namespace["ax"].get_lines()) == 1
    assert set(namespace["hourly"].column("site").to_pylist()) == {"lab", "hall", "roof"}


@pytest.mark.parametrize("link", re.findall(r"\]\((docs/[^)#]+)", README.read_text("utf-8")))
def test_readme_links_point_into_the_repository(link: str) -> None:
    assert (ROOT / link).is_file(), link

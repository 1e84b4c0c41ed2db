"""The documentation site builds without a warning, and every example in the guide runs.

Each page's ```python blocks run in order in one namespace (later blocks use earlier names),
in a temporary working directory, so files an example creates vanish with it. A block whose
first line is ``# not run`` is shown but skipped (for examples that need a server).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [DOCS / "index.md", *sorted((DOCS / "guide").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
SKIP_MARK = "# not run"


def python_blocks(page: Path) -> list[str]:
    """The page's ```python blocks, in order, without those marked as not run."""
    blocks = BLOCK.findall(page.read_text(encoding="utf-8"))
    return [block for block in blocks if not block.lstrip().startswith(SKIP_MARK)]


def test_the_block_extractor_finds_fenced_python_only() -> None:
    text = "a\n```python\nx = 1\n```\n```sh\nmake\n```\n```python\n# not run\ny\n```\n"
    assert BLOCK.findall(text) == ["x = 1\n", "# not run\ny\n"]
    for page in (DOCS / "index.md", DOCS / "guide" / "api.md"):
        assert python_blocks(page), f"{page.relative_to(ROOT)} has no runnable example"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_example_{page.stem}"}
    for number, block in enumerate(python_blocks(page), start=1):
        code = compile(block, f"{page.relative_to(ROOT)} (python block {number})", "exec")
        exec(code, namespace)
    from datastream import Datastream

    for value in namespace.values():  # an example that leaves one open still releases its file
        if isinstance(value, Datastream):
            value.close()  # idempotent


def test_site_builds_strictly(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which(
        "mkdocs"
    )
    assert mkdocs is not None, "mkdocs comes with the test extra (pip install -e '.[test]')"
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "site" / "guide" / "api" / "index.html").is_file()
    assert (tmp_path / "site" / "reference" / "datastream" / "index.html").is_file()

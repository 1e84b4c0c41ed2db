"""Regenerate docs/images/walkthrough.png from the README's notebook walkthrough.

The picture must show what the walkthrough code draws, so this runs that very code: the
```python blocks of the README section "Notebook walkthrough", in order, then saves the Axes
named ``ax``. Run from anywhere: ``python docs/images/make_walkthrough.py``.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Notebook walkthrough"
OUTPUT = Path(__file__).with_name("walkthrough.png")


def walkthrough_code(readme: str) -> list[str]:
    """The ```python blocks between the walkthrough heading and the next section."""
    start = readme.index(SECTION)
    following = readme.find("\n## ", start + len(SECTION))
    section = readme[start:] if following < 0 else readme[start:following]
    return re.findall(r"^```python\n(.*?)^```", section, re.DOTALL | re.MULTILINE)


def main() -> None:
    blocks = walkthrough_code((ROOT / "README.md").read_text(encoding="utf-8"))
    namespace: dict = {"__name__": "walkthrough"}
    with tempfile.TemporaryDirectory() as scratch:
        here = os.getcwd()
        os.chdir(scratch)
        try:
            for code in blocks:
                exec(compile(code, "README.md (walkthrough)", "exec"), namespace)
        finally:
            os.chdir(here)
    namespace["ax"].figure.savefig(OUTPUT, dpi=100, bbox_inches="tight")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

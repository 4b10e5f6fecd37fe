"""Documented examples that must run: a documented example that does not run is a bug."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.S)


def test_write_a_backend_example_runs_and_prints_what_the_page_says():
    (code,) = _python_blocks("write_a_backend.md")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "docs/write_a_backend.md", "exec"), {"__name__": "docs_example"})
    assert out.getvalue().strip() == "optimal [1 1 0] True ortools:cpsat"
    text = (DOCS / "write_a_backend.md").read_text()
    assert "It prints `optimal [1 1 0] True ortools:cpsat`" in text


def test_readme_first_solve_runs():
    readme = (DOCS.parent / "README.md").read_text()
    block = re.findall(r"```python\n(.*?)```", readme, flags=re.S)[0]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md", "exec"), {"__name__": "readme_example"})
    assert out.getvalue().split()[0] == "optimal"

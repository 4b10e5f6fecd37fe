"""Documented examples that must run: a documented example that does not run is a bug."""

from __future__ import annotations

import contextlib
import io
import re
import tomllib
from pathlib import Path

import docs_runner  # tests/ is on sys.path (pytest's rootdir-relative import)
import pytest

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


# --------------------------------------------------------------- every page, by the runner
_PAGES = docs_runner.pages()


def _ids(p: Path) -> str:
    return p.name


@pytest.mark.parametrize("page", [p for p in _PAGES if any(b[0] == "python" for b in docs_runner.blocks(p))], ids=_ids)
def test_page_python_blocks_run_and_show_what_they_claim(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": f"docs_{page.stem}"}
    for used in docs_runner.uses(page):
        docs_runner.run_python(used, ns)
    _, printed = docs_runner.run_python(page, ns)
    if page.name == "testing.md":
        assert "both properties hold" in printed


@pytest.mark.parametrize("page", [p for p in _PAGES if docs_runner.commands(p)], ids=_ids)
def test_page_commands_parse(page):
    for cmd, line in docs_runner.commands(page):
        try:
            docs_runner.parse_command(cmd)
        except SystemExit as exc:
            raise AssertionError(f"{page.name}:{line}: {cmd!r} does not parse (exit {exc.code})") from None


@pytest.mark.parametrize("page", [p for p in _PAGES if any(b[0] == "toml" for b in docs_runner.blocks(p))], ids=_ids)
def test_page_toml_blocks_are_valid_settings(page):
    from smug.cli import _INPUT_KEYS
    from smug.config import Config
    from smug.study.spec import spec_from_dict

    for lang, code, line in docs_runner.blocks(page):
        if lang != "toml":
            continue
        data = tomllib.loads(code)
        if "project" in data:  # a pyproject.toml excerpt
            continue
        if "backends" in data and "problems" in data:
            spec_from_dict(data)
            continue
        inputs = data.pop("input", {})
        assert set(inputs) <= set(_INPUT_KEYS), f"{page.name}:{line}: unknown [input] keys"
        Config.from_dict(data)


def test_the_runner_catches_a_wrong_claim_and_a_bad_command(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("```python\nx = 1 + 1\nx  # -> 3\n```\n")
    with pytest.raises(docs_runner.ClaimError, match="shows '3'"):
        docs_runner.run_python(page)
    page.write_text("```python\nprint('a')\n```\n\n```text\nb\n```\n")
    with pytest.raises(docs_runner.ClaimError):
        docs_runner.run_python(page)
    with pytest.raises(SystemExit):
        docs_runner.parse_command("smug demo --no-such-flag")
    docs_runner.parse_command("smug demo --force")


def test_the_config_table_lists_every_field_with_its_default():
    import dataclasses

    from smug.config import Config

    rows = {}
    for line in (DOCS / "explain.md").read_text().splitlines():
        m = re.match(r"\|\s*(`[a-z_]+`(?:,\s*`[a-z_]+`)*)\s*\|\s*([^|]*)\|", line)
        if m:
            names = re.findall(r"`([a-z_]+)`", m.group(1))
            defaults = [d.strip() for d in m.group(2).split(",")] if len(names) > 1 else [m.group(2).strip()]
            rows.update(zip(names, defaults))
    assert set(Config.keys()) <= set(rows), f"missing from the table: {sorted(set(Config.keys()) - set(rows))}"
    for f in dataclasses.fields(Config):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = rows[f.name].strip("`")
        if default is None:
            assert shown == "none", (f.name, shown)
        elif isinstance(default, bool):
            assert shown == str(default).lower(), (f.name, shown)
        elif isinstance(default, str):
            assert shown == f'"{default}"', (f.name, shown)
        elif isinstance(default, (int, float)):
            assert float(shown) == float(default), (f.name, shown)
        elif isinstance(default, tuple):
            assert shown == str(list(default)), (f.name, shown)
        else:
            assert shown == "{}" and default == {}, (f.name, shown)

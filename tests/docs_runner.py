"""Run the code blocks of README.md and docs/*.md: a documented example that does not run is a bug.

Conventions the pages follow (and this runner enforces):

* every ```` ```python ```` block of a page runs, in order, in one namespace per
  page, in a scratch working folder; ``<!-- docs-test: uses PAGE -->`` anywhere on
  a page runs PAGE's blocks first (for pages that continue another's example);
* a line ``expr  # -> shown`` is an output claim: ``expr`` is evaluated and its
  value, written as :func:`show` writes it, must equal ``shown``;
* a ```` ```text ```` block right after a python block is that block's output:
  what the block prints must equal it (surrounding blank space aside);
* every command in a ``bash`` block, and every ``smug ...`` / ``.venv/bin/smug ...``
  / ``.venv/bin/python bench/...`` line in any block, must parse: the command's
  own ``argparse`` parser is run on the arguments (a wrong flag, a bad choice or a
  missing argument fails) and stopped before any work; a block fenced as
  ```` ```historical ```` records how a past figure was made by a script that is
  gone, and is not checked;
* every ``toml`` block parses, and smug settings in it are valid
  :class:`smug.config.Config` fields.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import io
import re
import runpy
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
_BLOCK = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", flags=re.S | re.M)
_CLAIM = re.compile(r"^(?P<indent>\s*)(?P<expr>[^#\n][^#\n]*?)\s+# -> (?P<want>.+?)\s*$")
_USES = re.compile(r"<!-- docs-test: uses (\S+) -->")


def pages() -> list[Path]:
    """README.md and every page under docs/."""
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def blocks(page: Path) -> list[tuple[str, str, int]]:
    """``(language, code, first line)`` of every fenced block of ``page``."""
    text = page.read_text(encoding="utf-8")
    return [(m.group(1), m.group(2), text[: m.start()].count("\n") + 2) for m in _BLOCK.finditer(text)]


def uses(page: Path) -> list[Path]:
    """The pages whose examples ``page`` continues (``<!-- docs-test: uses PAGE -->``)."""
    return [DOCS / name for name in _USES.findall(page.read_text(encoding="utf-8"))]


def show(v: Any) -> str:
    """A value as the docs write it: tuples and lists element-wise, enums as ``Class.NAME``, numpy as Python."""
    if isinstance(v, tuple):
        return "(" + ", ".join(show(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, list):
        return "[" + ", ".join(show(x) for x in v) + "]"
    if isinstance(v, enum.Enum):
        return f"{type(v).__name__}.{v.name}"
    if isinstance(v, np.generic):
        return show(v.item())
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return show(v.item())
    return repr(v)


def _instrument(code: str) -> str:
    out = []
    for line in code.splitlines():
        m = _CLAIM.match(line)
        if (
            m
            and not m.group("expr").rstrip().endswith((":", ",", "(", "[", "\\"))
            and "=" not in _strip_calls(m.group("expr"))
        ):
            out.append(f"{m.group('indent')}__docs_claim__(({m.group('expr')}), {m.group('want')!r})")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def _strip_calls(expr: str) -> str:
    """``expr`` with bracketed parts and comparison operators removed (to tell a claim from an assignment)."""
    depth, kept = 0, []
    for ch in expr:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0 and ch not in ")]}":
            kept.append(ch)
    return re.sub(r"[=!<>]=", "", "".join(kept))


class ClaimError(AssertionError):
    """A shown output differs from what the code gives."""


def run_python(page: Path, namespace: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    """Run ``page``'s python blocks in order in one namespace; returns it and everything printed."""
    ns: dict[str, Any] = namespace if namespace is not None else {"__name__": f"docs_{page.stem}"}

    def claim(value: Any, want: str) -> None:
        got = show(value)
        if got != want:
            raise ClaimError(f"{page.name}: the page shows {want!r}, the code gives {got!r}")

    ns["__docs_claim__"] = claim
    printed = []
    found = blocks(page)
    for k, (lang, code, line) in enumerate(found):
        if lang != "python":
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile("\n" * (line - 1) + _instrument(code), str(page), "exec"), ns)
        printed.append(out.getvalue())
        if k + 1 < len(found) and found[k + 1][0] == "text":
            want = found[k + 1][1].strip()
            if out.getvalue().strip() != want:
                raise ClaimError(
                    f"{page.name}:{found[k + 1][2]}: the page shows\n{want}\nthe code prints\n{out.getvalue()}"
                )
    return ns, "".join(printed)


class _Parsed(Exception):
    """Raised by the patched parse_args once the arguments parsed."""


def commands(page: Path) -> list[tuple[str, int]]:
    """Every command of ``page`` that the runner checks: ``(command line, line number)``."""
    found = []
    for lang, code, line in blocks(page):
        if lang == "historical":
            continue
        joined = code.replace("\\\n", " ")
        for k, raw in enumerate(joined.splitlines()):
            cmd = raw.split("  #")[0].split(" # ")[0].strip()
            for part in (p.strip() for p in cmd.split("&&")):
                first = part.split(" ")[0] if part else ""
                if first in ("smug", ".venv/bin/smug") or part.startswith(
                    (".venv/bin/python bench/", "python bench/", ".venv/bin/python -m smug")
                ):
                    found.append((part, line + k))
                elif (
                    lang == "bash"
                    and first
                    and first not in ("python3", ".venv/bin/pip", "dask", ".venv/bin/mkdocs")
                    and not part.startswith(".venv/bin/python -m pytest")
                ):
                    raise AssertionError(f"{page.name}:{line + k}: the runner does not know how to check {part!r}")
    return found


def parse_command(cmd: str) -> None:
    """Run the command's argparse parser on its arguments (raises SystemExit on a bad command line)."""
    argv = shlex.split(cmd)
    prog = argv[0]
    real = argparse.ArgumentParser.parse_args

    def parse_then_stop(self: argparse.ArgumentParser, args: Any = None, namespace: Any = None) -> Any:
        real(self, args, namespace)
        raise _Parsed

    argparse.ArgumentParser.parse_args = parse_then_stop  # type: ignore[method-assign]
    old_argv = sys.argv
    try:
        if prog.endswith("smug"):
            from smug.cli import main

            sys.argv = ["smug", *argv[1:]]
            main(argv[1:])
        elif argv[1:3] == ["-m", "smug"] or argv[1:2] == ["-m"]:
            raise AssertionError(f"{cmd!r}: python -m commands are not checked")
        else:
            script = ROOT / argv[1]
            assert script.is_file(), f"{cmd!r}: {argv[1]} does not exist"
            sys.argv = [str(script), *argv[2:]]
            runpy.run_path(str(script), run_name="__main__")
    except _Parsed:
        return
    finally:
        argparse.ArgumentParser.parse_args = real  # type: ignore[method-assign]
        sys.argv = old_argv
    raise AssertionError(f"{cmd!r} never parsed its arguments with argparse")

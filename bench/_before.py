"""The code of another git revision in a worktree, answering solve requests line by line (bench/hostile.py --before)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, sys, time
from fractions import Fraction
import smug
for line in sys.stdin:
    path, backend, limit = line.split()
    p = smug.Problem.from_json(path)
    t0 = time.perf_counter()
    try:
        s = smug.solve(p, backend, time_limit=float(limit))
        out = {"status": s.status.value, "objective": s.objective, "bound": s.bound, "verified": s.verified,
               "exact_objective": None, "assignment": None,
               "exact_bound": None if s.bound is None else str(Fraction(s.bound))}
        if s.assignment is not None:
            q = sum((Fraction(float(c)) * Fraction(float(v)) for c, v in zip(p.objective, s.assignment)),
                    Fraction(float(p.objective_constant)))
            out["exact_objective"] = str(q)
            out["assignment"] = [float(v) for v in s.assignment]
    except Exception as exc:
        out = {"status": "error", "objective": None, "bound": None, "verified": None, "error": repr(exc),
               "exact_objective": None}
    out["wall"] = time.perf_counter() - t0
    print(json.dumps(out), flush=True)
"""


class Before:
    """The code of another git revision, in a worktree, answering solve requests line by line."""

    def __init__(self, rev: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="smug-before-"))
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(self.dir / "tree"), rev], cwd=ROOT, check=True)
        tree = self.dir / "tree"
        env = {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}
        # run from the worktree: "python -c" puts the working directory first on sys.path
        probe = subprocess.run(
            [sys.executable, "-c", "import smug; print(smug.__file__)"],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
        )
        if not probe.stdout.startswith(str(tree)):
            raise RuntimeError(f"the worker would not import the revision's smug: {probe.stdout or probe.stderr}")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tree
        )
        self.rev = rev

    def solve(self, path: Path, backend: str, limit: float) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{path} {backend} {limit}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    solve_full = solve

    def close(self) -> None:
        self.proc.kill()
        subprocess.run(["git", "worktree", "remove", "--force", str(self.dir / "tree")], cwd=ROOT, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

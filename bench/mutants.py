"""Deliberate bugs the test suite must catch: each is applied to a copy of the tree, the suite runs, and the bug
is *caught* when some test fails.

The first four are the bugs issue 10 found surviving the old suite; the rest
are the mistakes the new core could make.  Usage::

    .venv/bin/python bench/mutants.py            # every mutant, its test files
    .venv/bin/python bench/mutants.py --full     # every mutant against the whole suite

Writes ``bench/results/mutants.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: (name, file, old text, new text, test files that should catch it)
MUTANTS = [
    (
        "the exact row check accepts violations of 1e-5 relative (the SMUG margin ignored)",
        "smug/ir/exact.py",
        "    surely = finite & np.where(sense == _GE, d > err, np.where(sense == _LE, d < -err, False))",
        "    surely = finite & np.where(sense == _GE, d > err - 1e-5 * mag, "
        "np.where(sense == _LE, d < -err + 1e-5 * mag, False))",
        ["tests/test_exact.py", "tests/test_backends.py"],
    ),
    (
        "Problem.evaluate's default tolerance loosened to 1e-5",
        "smug/ir/problem.py",
        "    def evaluate(self, x: Any, *, tol: float = 1e-9, exact: bool = False) -> Evaluation:",
        "    def evaluate(self, x: Any, *, tol: float = 1e-5, exact: bool = False) -> Evaluation:",
        ["tests/test_ir.py", "tests/test_exact.py"],
    ),
    (
        "z3 sees strict <= rows with the margin's sign flipped",
        "smug/ir/export.py",
        "        rhs = rq[i]\n",
        "        rhs = rq[i] + (2 * frac(p.margin[i]) if p.strict[i] and p.sense[i] == _LE else 0)\n",
        ["tests/test_backends.py", "tests/test_backend_z3.py"],
    ),
    (
        "smug.solve's final check at tolerance 1e-3 instead of exact",
        "smug/solving/run.py",
        "            sol.verified = chk.feasible\n",
        "            sol.verified = problem.evaluate(x, tol=1e-3).feasible\n            chk.feasible = sol.verified\n",
        ["tests/test_solve.py", "tests/test_backends.py"],
    ),
    (
        'the "sum" saliency rule computes a max',
        "smug/explain/common.py",
        '    if rule == "sum":',
        '    if rule == "never":',
        ["tests/test_text_explain.py", "tests/test_explain.py"],
    ),
    (
        "certification believes a MILP's optimal claim",
        "smug/solving/run.py",
        "    exact = caps.exact and g.exact\n",
        "    exact = g.exact\n",
        ["tests/test_backends.py", "tests/test_solve.py"],
    ),
    (
        "the shared search calls a strict check's sat model optimal",
        "smug/solving/search.py",
        "            if q >= best_q:\n",
        "            if q >= best_q:\n                lo = best_q\n                return finish(Status.OPTIMAL)\n",
        ["tests/test_solve.py", "tests/test_backends.py"],
    ),
    (
        "presolve drops a row that holds only within 1e-9 (no safety margin)",
        "smug/reductions/presolve.py",
        "        tol = 1e-9 * (1.0 + size) + (nnz + 4) * _U * size\n",
        "        tol = -1e-9 * (1.0 + size)\n",
        ["tests/test_reductions.py", "tests/test_backends.py"],
    ),
    (
        "integer scaling rounds the tight rows the wrong way",
        "smug/reductions/integer_scaling.py",
        "    tight_vals = _round_scaled(sub.data, kk, down=sgn == GE)",
        "    tight_vals = _round_scaled(sub.data, kk, down=sgn == LE)",
        ["tests/test_reductions.py", "tests/test_backends.py"],
    ),
    (
        "the MPS export drops strict margins",
        "smug/ir/export.py",
        "        if p.strict[i]:\n            m = float(p.margin[i])",
        "        if False:\n            m = float(p.margin[i])",
        ["tests/test_exports.py"],
    ),
]


def run(full: bool) -> list[dict]:
    rows = []
    for name, rel, old, new, tests in MUTANTS:
        with tempfile.TemporaryDirectory() as tmp:
            dst = Path(tmp) / "tree"
            skip = shutil.ignore_patterns(".venv", ".git", "site", "__pycache__", ".hypothesis", "results")
            shutil.copytree(ROOT, dst, ignore=skip)
            probe = subprocess.run(
                [sys.executable, "-c", "import smug; print(smug.__file__)"],
                cwd=dst,
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": str(dst)},
            )
            assert str(dst) in probe.stdout, f"the copy's smug is not the one imported: {probe.stdout}"
            f = dst / rel
            text = f.read_text()
            if old not in text:
                rows.append({"mutant": name, "caught": "NOT APPLIED (the code changed)", "seconds": 0.0})
                continue
            f.write_text(text.replace(old, new, 1))
            cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"] + ([] if full else tests)
            t0 = time.perf_counter()
            env = {**os.environ, "PYTHONPATH": str(dst)}
            res = subprocess.run(cmd, cwd=dst, capture_output=True, text=True, env=env)
            secs = time.perf_counter() - t0
            failed = [ln for ln in res.stdout.splitlines() if ln.startswith("FAILED")]
            caught = res.returncode != 0
            rows.append(
                {
                    "mutant": name,
                    "caught": f"caught by {failed[0].split()[1] if failed else 'an error'}" if caught else "SURVIVED",
                    "seconds": round(secs, 1),
                }
            )
            print(f"{rows[-1]['caught'][:12]:>12}  {name}", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="run the whole suite for every mutant")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "mutants.md"))
    args = ap.parse_args(argv)
    rows = run(args.full)
    lines = ["| deliberate bug | verdict | seconds |", "|---|---|---|"]
    lines += [f"| {r['mutant']} | {r['caught']} | {r['seconds']} |" for r in rows]
    caught = sum(r["caught"].startswith("caught") for r in rows)
    lines.append("")
    lines.append(f"{caught} of {len(rows)} deliberate bugs caught.")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if caught == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

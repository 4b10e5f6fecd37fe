"""Do time limits hold under load?  Every backend, two solves at once, the first call of a fresh process included.

For each installed backend, two fresh worker processes are started together;
each makes ``--calls`` solves of the same hard problem (a market-split
instance: ``--rows`` equality rows over ``--vars`` 0/1 variables with
coefficients in 0..99, right-hand sides half the row sums, plus a cardinality
objective; branch and bound cannot close such problems quickly) with
``time_limit=--limit``.  The first call of each worker is the first in its
process, so it pays the solver's import inside the limit.  For every call the
bench records the wall-clock time from the call to its return and its
*overshoot*: that time minus the hard limit (limit + grace).  A call that
returns later than limit + grace has a positive overshoot.

Writes ``bench/results/time_limits.md`` and ``.csv``.

Usage::

    .venv/bin/python bench/time_limits.py --limit 1.0 --calls 3
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import smug
from smug.solving.deadline import grace_seconds
from smug.solving.registry import backend_table

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results"

WORKER = r"""
import json, sys, time
t_proc = time.perf_counter()
path, backend, limit, calls = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
sys.stdin.readline()  # start together with the other worker
import smug
p = smug.Problem.from_json(path)
for k in range(calls):
    t0 = time.perf_counter()
    s = smug.solve(p, backend, time_limit=limit)
    t1 = time.perf_counter()
    print(json.dumps({"call": k, "seconds": t1 - t0, "status": s.status.value, "message": (s.message or "")[:120]}),
          flush=True)
"""


def market_split(rows: int, n: int, seed: int) -> smug.Problem:
    """``rows`` equality rows ``a_i . x = floor(sum a_i / 2)`` over ``n`` binaries (Cornuejols-Dawande)."""
    rng = np.random.default_rng(seed)
    A = rng.integers(0, 100, size=(rows, n)).astype(float)
    b = smug.ProblemBuilder()
    m = b.add_mask(n)
    b.add_rows(A, "==", np.floor(A.sum(axis=1) / 2))
    b.set_objective(m, 1.0)
    return b.build()


def run_backend(path: Path, backend: str, limit: float, calls: int) -> list[dict]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(path), backend, str(limit), str(calls)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    time.sleep(0.5)  # both interpreters up before either imports smug
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    rows = []
    hard = limit + grace_seconds(limit)
    for w, p in enumerate(procs):
        out, err = p.communicate(timeout=calls * (hard + 60) + 120)
        for line in out.splitlines():
            r = json.loads(line)
            r.update(backend=backend, worker=w, overshoot=r["seconds"] - hard)
            rows.append(r)
        if p.returncode:
            rows.append(
                {
                    "backend": backend,
                    "worker": w,
                    "call": -1,
                    "seconds": float("nan"),
                    "status": "crash",
                    "message": err[-200:],
                    "overshoot": float("nan"),
                }
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=float, default=1.0)
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--vars", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backends", nargs="*", default=None)
    args = ap.parse_args()
    names = args.backends or [r.name for r in backend_table() if r.installed]
    p = market_split(args.rows, args.vars, args.seed)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "market_split.json"
        path.write_text(p.to_json())
        for name in names:
            t0 = time.perf_counter()
            got = run_backend(path, name, args.limit, args.calls)
            rows.extend(got)
            worst = max((r["overshoot"] for r in got if r["call"] >= 0), default=float("nan"))
            print(f"{name:<14} worst overshoot {worst:+.3f} s  ({time.perf_counter() - t0:.1f} s)", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / "time_limits.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["backend", "worker", "call", "seconds", "overshoot", "status", "message"])
        w.writeheader()
        w.writerows(rows)
    hard = args.limit + grace_seconds(args.limit)
    lines = [
        f"# Time limits under load: limit {args.limit:g} s, hard limit {hard:.3f} s (limit + grace)",
        "",
        f"Two fresh processes at once per backend, {args.calls} calls each, market split "
        f"{args.rows}x{args.vars} (seed {args.seed}). Call 0 is each process's first (imports included).",
        "",
        "| backend | first call (s, max of 2) | later calls (s, max) | worst overshoot (s) | statuses |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        mine = [r for r in rows if r["backend"] == name and r["call"] >= 0]
        first = max((r["seconds"] for r in mine if r["call"] == 0), default=float("nan"))
        later = max((r["seconds"] for r in mine if r["call"] > 0), default=float("nan"))
        worst = max((r["overshoot"] for r in mine), default=float("nan"))
        statuses = ", ".join(sorted({r["status"] for r in rows if r["backend"] == name}))
        lines.append(f"| {name} | {first:.3f} | {later:.3f} | {worst:+.3f} | {statuses} |")
    (OUT / "time_limits.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Backend comparison on a fixed, seeded set of SMUG-like problems of growing size, optionally before/after.

Runs every installed backend (and the plain z3 encoding of the original SMUG
code, ``z3:original``, as the comparison row) with a per-problem time limit.
With ``--before REV`` the same problems also go, interleaved in the same run, to
the code of git revision ``REV`` (checked out into a temporary worktree and
driven by a worker process), so the two are compared under the same load.

Writes into ``--out`` (default ``bench/results``): ``backends.csv`` (one row
per side, backend and problem), ``backends.md`` (the tables) and
``cactus.png`` (problems proven optimal vs. time); ``--docs`` copies the
picture to ``docs/img/cactus.png``.

Usage::

    .venv/bin/python bench/backends.py --time-limit 5 --before 3ca23ac --docs
    .venv/bin/python bench/backends.py --quick          # smaller set, for a smoke run
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import smug
from smug.solving.registry import backend_table
from smug.testing.generators import smug_like_problem

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


def problem_set(quick: bool) -> list[tuple[str, smug.Problem]]:
    sizes = [49, 196] if quick else [49, 196, 784]
    rows = [10, 50] if quick else [10, 30, 100]
    out = []
    for n in sizes:
        for r in rows:
            for kind in ("dense", "sparse"):
                out.append((f"{kind}-{n}x{r}", smug_like_problem(n, r, kind=kind, seed=n * 1000 + r)))
    return out


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


def plot(rows: list[dict], names: list[str], sides: list[str], path: Path, title: str) -> None:
    """The cactus plot: one solid line per backend (after), dotted for before."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, b in enumerate(names):
        for side in sides:
            ts = sorted(r["wall"] for r in rows if r["backend"] == b and r["side"] == side and r["status"] == "optimal")
            if ts:
                ax.step(
                    ts,
                    range(1, len(ts) + 1),
                    where="post",
                    color=colors[i % len(colors)],
                    lw=1.6,
                    ls="-" if side == "after" else ":",
                    label=b if side == "after" else None,
                )
    ax.set_xscale("log")
    ax.set_xlabel("wall time per problem (s, log scale)")
    ax.set_ylabel("problems proven optimal")
    ax.set_title(title + (" (solid: after, dotted: before)" if len(sides) > 1 else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--backends", nargs="*", help="default: every installed backend")
    ap.add_argument("--before", help="a git revision to compare with, in the same run")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--docs", action="store_true", help="also copy the cactus plot to docs/img")
    ap.add_argument("--replot", action="store_true", help="only redraw the plot from --out's backends.csv")
    args = ap.parse_args(argv)
    if args.replot:
        rows = list(csv.DictReader(open(Path(args.out) / "backends.csv")))
        for r in rows:
            r["wall"] = float(r["wall"])
        names = list(dict.fromkeys(r["backend"] for r in rows))
        sides = list(dict.fromkeys(r["side"] for r in rows))
        n = len({r["problem"] for r in rows})
        plot(rows, names, sides, Path(args.out) / "cactus.png", f"{n} SMUG-like problems, limit {args.time_limit:g} s")
        if args.docs:
            shutil.copy(Path(args.out) / "cactus.png", ROOT / "docs" / "img" / "cactus.png")
        return 0

    names = args.backends or [r.name for r in backend_table() if r.installed]
    problems = problem_set(args.quick)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="smug-bench-"))
    paths = {}
    for pname, p in problems:
        paths[pname] = tmp / f"{pname}.json"
        p.to_json(str(paths[pname]))
    before = Before(args.before) if args.before else None
    sides = ["after"] + (["before"] if before else [])
    rows = []
    total = len(names) * len(problems) * len(sides)
    k = 0
    t_all = time.perf_counter()
    try:
        for pname, p in problems:
            for b in names:
                for side in sides:
                    k += 1
                    if side == "after":
                        t0 = time.perf_counter()
                        sol = smug.solve(p, b, time_limit=args.time_limit)
                        r = {
                            "status": sol.status.value,
                            "objective": sol.objective,
                            "bound": sol.bound,
                            "verified": sol.verified,
                            "exact_objective": None if sol.exact_objective is None else str(sol.exact_objective),
                            "wall": time.perf_counter() - t0,
                            "certification_s": (sol.stats.get("certification") or {}).get("seconds"),
                            "decided_by": sol.stats.get("decided_by"),
                        }
                    else:
                        r = before.solve(paths[pname], b, args.time_limit)  # type: ignore[union-attr]
                    r.update(side=side, problem=pname, n_mask=p.n_mask, rows=p.n_rows, backend=b)
                    r["wall"] = round(r["wall"], 4)
                    rows.append(r)
                    print(
                        f"[{k}/{total} {time.perf_counter() - t_all:6.0f}s] {pname:<14} {b:<13} {side:<6} "
                        f"{r['status']:<9} obj={r['objective']} wall={r['wall']:.2f}s",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        if before:
            before.close()
        shutil.rmtree(tmp, ignore_errors=True)
    fields = sorted({k for r in rows for k in r})
    with open(out / "backends.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)

    # the exact optimum per problem, from any proven answer; disagreements are wrong answers
    proven: dict[str, set[Fraction]] = {}
    for r in rows:
        if r["status"] == "optimal" and r.get("exact_objective"):
            proven.setdefault(r["problem"], set()).add(Fraction(r["exact_objective"]))
    disagree = sorted(pn for pn, v in proven.items() if len(v) > 1)

    lines = [
        f"Time limit {args.time_limit:g} s per problem; {len(problems)} problems "
        f"(sizes {sorted({p.n_mask for _, p in problems})}, dense and sparse rows)"
        + (f"; *before* is revision `{args.before}`, run interleaved with *after* (this tree)." if before else "."),
        "",
        "| backend | side | proven optimal | feasible | no solution | verified | median wall (s) | total wall (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for b in names:
        for side in sides:
            rs = [r for r in rows if r["backend"] == b and r["side"] == side]
            opt = sum(r["status"] == "optimal" for r in rs)
            feas = sum(r["status"] == "feasible" for r in rs)
            ver = sum(bool(r.get("verified")) for r in rs if r["status"] in ("optimal", "feasible"))
            walls = [r["wall"] for r in rs]
            lines.append(
                f"| {b} | {side} | {opt} | {feas} | {len(rs) - opt - feas} | {ver} | "
                f"{statistics.median(walls):.2f} | {sum(walls):.1f} |"
            )
    cert = [r["certification_s"] for r in rows if r["side"] == "after" and r.get("certification_s") is not None]
    if cert:
        lines += [
            "",
            f"Certification (after, every backend whose claims are certified): median {statistics.median(cert):.3f} s, "
            f"max {max(cert):.2f} s over {len(cert)} solves.",
        ]
    lines += [
        "",
        "Proven optimum per problem (after; every proven optimum agrees"
        + (f"; DISAGREEMENT on {disagree})" if disagree else ")")
        + ":",
        "",
        "| problem | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for pname, _ in problems:
        cells = []
        for b in names:
            r = next(r for r in rows if r["problem"] == pname and r["backend"] == b and r["side"] == "after")
            if r["status"] == "optimal":
                cells.append(f"**{r['objective']:g}** ({r['wall']:.2f}s)")
            elif r["status"] == "feasible":
                cells.append(f"{r['objective']:g} (limit)")
            else:
                cells.append(r["status"])
        lines.append(f"| {pname} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    (out / "backends.md").write_text(table)
    print(table)

    plot(rows, names, sides, out / "cactus.png", f"{len(problems)} SMUG-like problems, limit {args.time_limit:g} s")
    if args.docs:
        (ROOT / "docs" / "img").mkdir(parents=True, exist_ok=True)
        shutil.copy(out / "cactus.png", ROOT / "docs" / "img" / "cactus.png")
    return 1 if disagree else 0


if __name__ == "__main__":
    sys.exit(main())

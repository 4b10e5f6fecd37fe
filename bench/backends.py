"""Backend comparison on a fixed, seeded set of SMUG-like problems of growing size.

Runs every installed backend (and the plain z3 encoding of the original SMUG
code, ``z3:original``, as the comparison row) with a per-problem time limit,
and writes:

* ``bench/results/backends.csv``: one row per (backend, problem);
* ``bench/results/backends.md``: the summary table;
* ``docs/img/cactus.png``: problems solved to optimality vs. time (cactus plot).

Usage::

    .venv/bin/python bench/backends.py --time-limit 10
    .venv/bin/python bench/backends.py --quick          # smaller set, for a smoke run
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import smug
from smug.solving.registry import backend_table
from smug.testing.generators import smug_like_problem

ROOT = Path(__file__).resolve().parents[1]


def problem_set(quick: bool) -> list[tuple[str, smug.Problem]]:
    sizes = [49, 196] if quick else [49, 196, 784]
    rows = [10, 50] if quick else [10, 30, 100]
    out = []
    for n in sizes:
        for r in rows:
            for kind in ("dense", "sparse"):
                name = f"{kind}-{n}x{r}"
                out.append((name, smug_like_problem(n, r, kind=kind, seed=n * 1000 + r)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--backends", nargs="*", help="default: every installed backend")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)

    names = args.backends or [r.name for r in backend_table() if r.installed]
    problems = problem_set(args.quick)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    total = len(names) * len(problems)
    k = 0
    t_all = time.perf_counter()
    for pname, p in problems:
        for b in names:
            k += 1
            t0 = time.perf_counter()
            sol = smug.solve(p, b, time_limit=args.time_limit)
            wall = time.perf_counter() - t0
            rows.append(
                {
                    "problem": pname,
                    "n_mask": p.n_mask,
                    "rows": p.n_rows,
                    "nnz": p.A.nnz,
                    "backend": b,
                    "status": sol.status.value,
                    "objective": sol.objective,
                    "bound": sol.bound,
                    "verified": sol.verified,
                    "build_time": round(sol.build_time, 4),
                    "solve_time": round(sol.solve_time, 4),
                    "wall": round(wall, 4),
                }
            )
            print(
                f"[{k}/{total} {time.perf_counter() - t_all:6.0f}s] {pname:<14} {b:<13} {sol.status.value:<9} "
                f"obj={sol.objective} bound={sol.bound} wall={wall:.2f}s",
                file=sys.stderr,
                flush=True,
            )
    with open(out / "backends.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    # optimum per problem (any backend that proved it), to flag disagreements
    best = {}
    for r in rows:
        if r["status"] == "optimal":
            best.setdefault(r["problem"], set()).add(r["objective"])
    disagree = [p for p, v in best.items() if len(v) > 1]

    lines = [
        f"Time limit {args.time_limit:g} s per problem; {len(problems)} problems "
        f"(sizes {sorted({p.n_mask for _, p in problems})}, dense and sparse rows).",
        "",
        "| backend | optimal | feasible at limit | no solution | median wall (s) | total wall (s) | mean gap |",
        "|---|---|---|---|---|---|---|",
    ]
    for b in names:
        rs = [r for r in rows if r["backend"] == b]
        opt = sum(r["status"] == "optimal" for r in rs)
        feas = sum(r["status"] == "feasible" for r in rs)
        none = len(rs) - opt - feas
        walls = [r["wall"] for r in rs]
        gaps = []
        for r in rs:
            if r["status"] in ("optimal", "feasible") and r["bound"] is not None and r["objective"]:
                gaps.append(max(0.0, (r["objective"] - r["bound"]) / max(1.0, abs(r["objective"]))))
        mg = f"{np.mean(gaps):.3f}" if gaps else "-"
        lines.append(f"| {b} | {opt} | {feas} | {none} | {statistics.median(walls):.2f} | {sum(walls):.1f} | {mg} |")
    lines.append("")
    lines.append(
        "Optimal objective per problem (every backend that proved optimality agrees"
        + (f"; DISAGREEMENT on {disagree})" if disagree else ")")
        + ":"
    )
    lines.append("")
    lines.append("| problem | " + " | ".join(names) + " |")
    lines.append("|---|" + "---|" * len(names))
    for pname, _ in problems:
        cells = []
        for b in names:
            r = next(r for r in rows if r["problem"] == pname and r["backend"] == b)
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

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for b in names:
        ts = sorted(r["wall"] for r in rows if r["backend"] == b and r["status"] == "optimal")
        if ts:
            ax.step(ts, range(1, len(ts) + 1), where="post", label=b, lw=1.8, ls="--" if b == "z3:original" else "-")
    ax.set_xscale("log")
    ax.set_xlabel("wall time per problem (s, log scale)")
    ax.set_ylabel("problems solved to proven optimality")
    ax.set_title(f"Cactus plot: {len(problems)} SMUG-like problems, limit {args.time_limit:g} s")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    img = ROOT / "docs" / "img"
    img.mkdir(parents=True, exist_ok=True)
    fig.savefig(img / "cactus.png", dpi=120)
    return 1 if disagree else 0


if __name__ == "__main__":
    sys.exit(main())

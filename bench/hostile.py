"""Exact verdicts on hostile problems: every backend against the exact oracle, optionally before/after.

Draws ``--problems`` random problems of the hostile kinds
(:func:`smug.testing.hostile_problems`: coefficients from 1e-7 to 1e6 and
subnormals, near-ties to an ulp, strict margins down to the smallest
subnormal, equality rows, ReLU networks with hostile weights; a quarter of
them ReLU networks), computes each exact optimum with the oracle of
:mod:`smug.testing.oracle` (which shares no code with smug's verification),
and solves each with every installed backend.  A **wrong answer** is an
``optimal`` whose exact objective is not the optimum, an ``infeasible`` on a
feasible problem, a returned solution that is not exactly feasible, or a
proven bound above the optimum.  With ``--before REV`` the same problems also
go to the code of revision ``REV`` (judged by the same oracle; its
``verified`` was a float-tolerance check).

Writes ``hostile.csv``, ``hostile.md`` and ``hostile.png`` into ``--out``;
``--docs`` copies the figure to ``docs/img/hostile.png``.  Usage::

    .venv/bin/python bench/hostile.py --problems 500 --before 3ca23ac --docs
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hseed

import smug
from smug.solving.registry import backend_table
from smug.testing import exact_optimum, exactly_feasible, hostile_problems

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _before import Before  # noqa: E402  (the worker for another revision)

ROOT = Path(__file__).resolve().parents[1]


def draw(n: int, relu: bool, seed: int) -> list[smug.Problem]:
    got: list[smug.Problem] = []

    @hseed(seed)
    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(hostile_problems(relu=relu, max_vars=10 if not relu else 5))
    def collect(p: smug.Problem) -> None:
        got.append(p)

    collect()
    return got


def judge(p: smug.Problem, opt: Fraction | None, r: dict) -> str:
    """``proven`` (a correct proof), ``unproven`` (a correct but unproven answer) or ``wrong: ...``."""
    st = r["status"]
    x = r.get("assignment")
    if x is not None:
        vals = [Fraction(v) for v in r["rational"]] if r.get("rational") else [Fraction(float(v)) for v in x]
        if not exactly_feasible(p, vals):
            return "wrong: a solution that is not exactly feasible" + (
                " (called verified)" if r.get("verified") else ""
            )
    if opt is None:
        if st == "infeasible":
            return "proven"
        return "wrong: a solution of an infeasible problem" if x is not None else "unproven"
    if st == "infeasible":
        return "wrong: infeasible, but the problem is feasible"
    if r.get("exact_bound") is not None and Fraction(r["exact_bound"]) > opt:
        return "wrong: a proven bound above the optimum"
    if st == "optimal":
        q = Fraction(r["exact_objective"]) if r.get("exact_objective") else None
        return "proven" if q == opt else "wrong: optimal, but not the exact optimum"
    return "unproven"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=500)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--time-limit", type=float, default=20.0)
    ap.add_argument("--backends", nargs="*")
    ap.add_argument("--before")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--docs", action="store_true")
    args = ap.parse_args(argv)
    names = args.backends or [r.name for r in backend_table() if r.installed]
    n_relu = args.problems // 4
    problems = draw(args.problems - n_relu, False, args.seed) + draw(n_relu, True, args.seed + 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="smug-hostile-"))
    before = Before(args.before) if args.before else None
    sides = ["after"] + (["before"] if before else [])
    rows: list[dict] = []
    t_all = time.perf_counter()
    try:
        for i, p in enumerate(problems):
            opt = exact_optimum(p).optimum
            path = tmp / f"p{i}.json"
            p.to_json(str(path))
            for b in names:
                if not p.is_pure_binary and not smug.get_backend(b).capabilities.real_vars:
                    continue
                for side in sides:
                    if side == "after":
                        t0 = time.perf_counter()
                        s = smug.solve(p, b, time_limit=args.time_limit)
                        r = {
                            "status": s.status.value,
                            "verified": s.verified,
                            "assignment": None if s.assignment is None else s.assignment.tolist(),
                            "rational": None if s.rational is None else [str(q) for q in s.rational],
                            "exact_objective": None if s.exact_objective is None else str(s.exact_objective),
                            "exact_bound": None if s.exact_bound is None else str(s.exact_bound),
                            "wall": time.perf_counter() - t0,
                        }
                    else:
                        r = before.solve_full(path, b, args.time_limit)  # type: ignore[union-attr]
                    verdict = judge(p, opt, r)
                    rows.append(
                        {
                            "problem": i,
                            "relu": p.n_relu > 0,
                            "backend": b,
                            "side": side,
                            "status": r["status"],
                            "verdict": verdict,
                            "wall": round(r["wall"], 4),
                        }
                    )
                    if verdict.startswith("wrong"):
                        print(f"WRONG {side} {b} problem {i}: {verdict}", file=sys.stderr, flush=True)
            if (i + 1) % 25 == 0:
                print(f"[{i + 1}/{len(problems)} {time.perf_counter() - t_all:6.0f}s]", file=sys.stderr, flush=True)
    finally:
        if before:
            before.close()
        shutil.rmtree(tmp, ignore_errors=True)
    with open(out / "hostile.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = [
        f"{len(problems)} hostile problems ({len(problems) - n_relu} 0/1, {n_relu} ReLU networks; seed {args.seed}), "
        f"limit {args.time_limit:g} s"
        + (f"; *before* is revision `{args.before}`, judged by the same exact oracle." if before else "."),
        "",
        "| backend | side | problems | proven correct | correct, unproven | **wrong** | median wall (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    summary = {}
    for b in names:
        for side in sides:
            rs = [r for r in rows if r["backend"] == b and r["side"] == side]
            if not rs:
                continue
            wrong = sum(r["verdict"].startswith("wrong") for r in rs)
            proven = sum(r["verdict"] == "proven" for r in rs)
            summary[(b, side)] = (proven, len(rs) - proven - wrong, wrong, len(rs))
            lines.append(
                f"| {b} | {side} | {len(rs)} | {proven} | {len(rs) - proven - wrong} | **{wrong}** | "
                f"{statistics.median(r['wall'] for r in rs):.3f} |"
            )
    kinds = sorted({r["verdict"][len("wrong: ") :] for r in rows if r["verdict"].startswith("wrong")})
    if kinds:
        lines += [
            "",
            "Wrong answers by kind (a solver can be wrong in several ways on one problem; the first counts):",
            "",
        ]
        lines += ["| backend | side | " + " | ".join(kinds) + " |", "|---|---|" + "---|" * len(kinds)]
        for b in names:
            for side in sides:
                rs = [r for r in rows if r["backend"] == b and r["side"] == side]
                counts = [sum(r["verdict"] == f"wrong: {k}" for r in rs) for k in kinds]
                if any(counts):
                    lines.append(f"| {b} | {side} | " + " | ".join(str(c) for c in counts) + " |")
        relu_wrong = sum(r["verdict"].startswith("wrong") and r["relu"] for r in rows)
        lines += ["", f"Of the wrong answers, {relu_wrong} were on ReLU networks."]
    table = "\n".join(lines) + "\n"
    (out / "hostile.md").write_text(table)
    print(table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    xs = np.arange(len(names))
    width = 0.38 if before else 0.6
    for k, side in enumerate(sides):
        vals = [summary.get((b, side), (0, 0, 0, 1)) for b in names]
        off = (k - (len(sides) - 1) / 2) * width
        wrong = [100 * v[2] / v[3] for v in vals]
        unproven = [100 * v[1] / v[3] for v in vals]
        ax.bar(xs + off, wrong, width, color="#d62728" if side == "after" else "#ff9896", label=f"wrong ({side})")
        ax.bar(
            xs + off,
            unproven,
            width,
            bottom=wrong,
            color="#bbbbbb" if side == "after" else "#dddddd",
            label=f"correct, unproven ({side})",
        )
        for x, w_ in zip(xs + off, wrong):
            ax.text(x, w_ + 0.5, f"{w_:.0f}%", ha="center", fontsize=7)
    ax.set_xticks(xs, names, rotation=30, ha="right", fontsize=8)
    top = max((100 * (v[1] + v[2]) / v[3] for v in summary.values()), default=1.0)
    ax.set_ylim(0, max(5.0, top * 1.18))
    ax.set_ylabel("% of problems")
    ax.set_title(f"{len(problems)} hostile problems against the exact oracle" + (" (pale: before)" if before else ""))
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "hostile.png", dpi=120)
    if args.docs:
        shutil.copy(out / "hostile.png", ROOT / "docs" / "img" / "hostile.png")
    return 1 if any(v[2] for (b, side), v in summary.items() if side == "after") else 0


if __name__ == "__main__":
    sys.exit(main())

"""SMUG for text on Rotten Tomatoes test reviews: every installed backend on the same problems, through ``smug study``.

The problems and backends are ``bench/specs/explain_text.toml``: the reference
text CNN's problems on the first 100 test reviews with the text demo's settings
(family ``text``: top_k 30, gamma 0.5) and harder ones (family ``text-hard``:
top_k 100, gamma 0.8), each review tokenized, scored and encoded once, the same
IR problem to every backend with a 10 s limit.  This script runs that study into
``--out`` (a rerun resumes), writes its report there, and a table per family in
``<out>/explain_text.md`` with the review lengths and the model's accuracy.

Usage::

    .venv/bin/python bench/explain_text.py                  # the full study (resumes)
    .venv/bin/python bench/explain_text.py --reviews 5 --out /tmp/et --backends z3 ortools:highs
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from _study import ROOT, SPECS, run, spec_with, table

from smug.study.store import Store
from smug.zoo.text import text_model_metrics


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reviews", type=int, help="reviews per family (default: the spec's 100)")
    ap.add_argument("--time-limit", type=float, help="seconds per solve (default: the spec's 10)")
    ap.add_argument("--backends", nargs="*", help="default: the spec's (every backend)")
    ap.add_argument("--workers", type=int, default=1, help="local workers (1: one solve at a time)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "explain_text"))
    args = ap.parse_args(argv)
    spec = spec_with(SPECS / "explain_text.toml", n=args.reviews, time_limit=args.time_limit, backends=args.backends)
    out = Path(args.out)
    cells = run(spec, out, workers=args.workers)
    with Store(out, create=False) as store:
        sizes = {h: p["n_vars"] for h, p in store.problems().items()}
    metrics = text_model_metrics()
    lines = [
        "# SMUG on Rotten Tomatoes test reviews: backends compared",
        "",
        f"Text CNN (test accuracy {metrics['test_accuracy']:.1%}), zero baseline, {spec.time_limit:g} s limit per "
        f"solve, seed 0, one thread, {args.workers} worker(s). Wall: the whole cell (the solver child's start, the "
        "solve, the exact check).",
    ]
    for family in sorted({c["family"] for c in cells}):
        fc = [c for c in cells if c["family"] == family]
        tokens = [sizes[h] for h in {c["problem"] for c in fc}]
        src = next(p for p in spec.problems if p.family == family)
        lines += [
            "",
            f"## `{family}`: top_k={src.params.get('top_k')}, gamma={src.params.get('gamma')}, {len(tokens)} reviews "
            f"(tokens: median {statistics.median(tokens):g}, max {max(tokens)})",
            "",
            *table(fc, spec.time_limit),
        ]
    text = "\n".join(lines) + "\n"
    (out / "explain_text.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""SMUG end to end on MNIST test images: every backend on the same problems, through ``smug study``.

The problems and backends are ``bench/specs/explain_mnist.toml``: the reference
CNN's first-layer problems with the demo's settings (top_k=200, gamma=0.8,
window=2) on the first 100 test digits, each scored and encoded once, the same
IR problem to every backend with a 10 s limit.  This script runs that study
into ``--out`` (a rerun resumes), writes its report there, and adds what a cell
does not measure: the time of neuron scoring and of one whole ``explain`` call,
and where the solve time goes (decided by presolve, certification).  Writes
``<out>/explain_mnist.md`` beside the study's ``report.md``.

Usage::

    .venv/bin/python bench/explain_mnist.py                 # the full study (resumes)
    .venv/bin/python bench/explain_mnist.py --images 5 --out /tmp/em --backends z3 ortools:highs
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from _study import ROOT, SPECS, run, spec_with, stats, table

from smug.encoders.selection import hook_point, score_neurons
from smug.explain.api import explain
from smug.zoo.data import load_mnist
from smug.zoo.demo import DEMO_CONFIG
from smug.zoo.models import pretrained


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, help="problems (default: the spec's 100)")
    ap.add_argument("--time-limit", type=float, help="seconds per solve (default: the spec's 10)")
    ap.add_argument("--backends", nargs="*", help="default: the spec's (every backend)")
    ap.add_argument("--workers", type=int, default=1, help="local workers (1: one solve at a time)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "explain_mnist"))
    args = ap.parse_args(argv)
    spec = spec_with(SPECS / "explain_mnist.toml", n=args.images, time_limit=args.time_limit, backends=args.backends)
    out = Path(args.out)
    model = pretrained("mnist_cnn", progress=False)
    X, _ = load_mnist("test")
    x0 = torch.tensor(X[0])[None]
    hook, _ = hook_point(model, x0, ["0"])
    mod = dict(model.named_modules())[hook]
    ig = []
    for _ in range(5):
        t0 = time.perf_counter()
        score_neurons(model, x0, 7, mod, steps=200, batch=50)
        ig.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    explain(model, torch.tensor(X[0]), config=DEMO_CONFIG)
    e2e = time.perf_counter() - t0

    cells = run(spec, out, workers=args.workers)
    n = len({c["problem"] for c in cells})
    lines = [
        f"{n} MNIST test images, model `mnist_cnn`, settings top_k={DEMO_CONFIG.top_k}, gamma={DEMO_CONFIG.gamma}, "
        f"window={DEMO_CONFIG.window}; limit {spec.time_limit:g} s per solve; {args.workers} worker(s). "
        "Wall: the whole cell (the solver child's start, the solve, the exact check).",
        "",
        f"Neuron scoring (IG, 200 steps, batches of 50), one image: median {statistics.median(ig):.3f} s. "
        f"One full `explain` call (score, encode, solve with {DEMO_CONFIG.backend}, replay): {e2e:.2f} s.",
        "",
        *table(cells, spec.time_limit),
        "",
        "Where the time goes. *decided by presolve*: the shared presolve fixed every variable, so no solver ran; "
        "*certified*: a tolerance-based optimum proven exact (MILP) or a rounded one (CP-SAT); *certification / "
        "backend*: the median ratio of the certification's time to the backend's own solve, over the images "
        "that needed one.",
        "",
        "| backend | decided by presolve | solver ran | certified | median certification / backend |",
        "|---|---|---|---|---|",
    ]
    by: dict[str, list] = defaultdict(list)
    for c in cells:
        by[c["label"]].append(stats(c))
    for label, ss in by.items():
        dec = sum(s.get("decided_by") == "presolve" for s in ss)
        cert = [s for s in ss if s.get("certified") is not None]
        ratio = [s["certify_seconds"] / s["backend_seconds"] for s in cert if s.get("backend_seconds")]
        med = f"{statistics.median(ratio):.0%}" if ratio else "-"
        lines.append(f"| {label} | {dec} | {len(ss) - dec} | {sum(bool(s['certified']) for s in cert)} | {med} |")
    text = "\n".join(lines) + "\n"
    (out / "explain_mnist.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

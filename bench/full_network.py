"""Benchmark: full-network explanations of the paper-like MNIST MLP (784-32-10).

For each MNIST test image (first ``--images``), window size and backend, run
:func:`smug.explain.network.explain_network` and record the status, the kind of
minimality achieved, the mask size, the bound and the time.  The SMUG paper
reports that a plain SMT encoding of this question solved 41 of 100 images.

Usage::

    python bench/full_network.py --backends ortools:scip ortools:highs ortools:cbc \\
        --images 100 --windows 1 2 --time-limit 60 --out bench/results/full_network
    python bench/full_network.py --backends z3 pysmt:yices --images 20 --time-limit 20 \\
        --out bench/results/full_network_smt
    python bench/full_network.py --summarize bench/results/full_network*.csv

Results: one CSV row per run (``<out>.csv``), and a markdown table
(``<out>.md``) made by ``--summarize``.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

FIELDS = [
    "image",
    "label",
    "window",
    "masking",
    "eps",
    "minimality_asked",
    "backend",
    "time_limit",
    "status",
    "minimality",
    "mask_size",
    "bound",
    "gap",
    "verified",
    "n_relu",
    "n_unstable",
    "heuristic_size",
    "solver_status",
    "solver_calls",
    "time",
]


def run(args: argparse.Namespace) -> None:
    """Run every (image, window, backend, minimality) combination and append rows to the CSV."""
    from smug.explain.network import explain_network
    from smug.zoo.data import load_mnist
    from smug.zoo.models import pretrained

    images, labels = load_mnist("test")
    model = pretrained("mnist_mlp", progress=False)
    out = Path(args.out).with_suffix(".csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists() and not args.overwrite:
        with out.open() as fh:
            for r in csv.DictReader(fh):
                done.add((r["image"], r["window"], r["masking"], r["minimality_asked"], r["backend"]))
    mode = "a" if out.exists() and not args.overwrite else "w"
    with out.open(mode, newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        if mode == "w":
            w.writeheader()
        for backend in args.backends:
            for window in args.windows:
                for minimality in args.minimality:
                    for i in range(args.start, args.start + args.images):
                        key = (str(i), str(window), args.masking, minimality, backend)
                        if key in done:
                            continue
                        t = time.perf_counter()
                        if args.raw:
                            rows_raw = _raw(model, images[i], backend, window, args)
                            row = {"image": i, "label": int(labels[i]), "window": window, "masking": args.masking}
                            row.update(rows_raw, minimality_asked="raw-" + minimality, backend=backend)
                            row["time_limit"] = args.time_limit
                            row["time"] = round(time.perf_counter() - t, 3)
                            w.writerow(row)
                            fh.flush()
                            print(json.dumps(row), flush=True)
                            continue
                        x = np.array(images[i])
                        extra = {}
                        if args.masking == "robust" and args.eps is not None:
                            extra["input_range"] = (np.clip(x - args.eps, 0, 1), np.clip(x + args.eps, 0, 1))
                        e = explain_network(
                            model,
                            x,
                            backend=backend,
                            window=window,
                            masking=args.masking,
                            minimality=minimality,
                            time_limit=args.time_limit,
                            delta=args.delta,
                            **extra,
                        )
                        dt = time.perf_counter() - t
                        row = {
                            "image": i,
                            "label": int(labels[i]),
                            "window": window,
                            "masking": args.masking,
                            "eps": "" if args.eps is None else args.eps,
                            "minimality_asked": minimality,
                            "backend": backend,
                            "time_limit": args.time_limit,
                            "status": e.status.value,
                            "minimality": e.minimality,
                            "mask_size": e.mask_size if e.objective is not None else "",
                            "bound": "" if e.bound is None else e.bound,
                            "gap": "" if e.gap is None else round(e.gap, 4),
                            "verified": e.verified,
                            "n_relu": e.n_relu,
                            "n_unstable": e.n_unstable,
                            "heuristic_size": e.stats.get("heuristic_size", ""),
                            "solver_status": e.stats.get("solver_status", ""),
                            "solver_calls": e.stats.get("solver_calls", ""),
                            "time": round(dt, 3),
                        }
                        w.writerow(row)
                        fh.flush()
                        print(json.dumps(row), flush=True)


def _raw(model: object, image: np.ndarray, backend: str, window: int, args: argparse.Namespace) -> dict:
    """Ablation: the plain encoding (interval bounds, no heuristic incumbent, no budget) solved directly."""
    import smug
    from smug.explain.network import network_problem

    p = network_problem(model, np.array(image), window=window, delta=args.delta)
    sol = smug.solve(p, backend, time_limit=args.time_limit)
    opt = sol.status.value == "optimal"
    return {
        "status": sol.status.value,
        "minimality": "cardinality" if opt else "none",
        "mask_size": "" if sol.objective is None else int(round(sol.objective)),
        "bound": "" if sol.bound is None else sol.bound,
        "gap": "" if sol.gap is None else round(sol.gap, 4),
        "verified": bool(sol.verified),
        "n_relu": p.metadata.get("n_relu", ""),
        "n_unstable": p.metadata.get("n_unstable", ""),
        "solver_status": sol.status.value,
    }


def summarize(paths: list[str], out: str | None) -> str:
    """A markdown table per (masking, minimality asked, backend, window) from CSV files."""
    rows: list[dict[str, str]] = []
    for p in paths:
        with open(p) as fh:
            rows.extend(csv.DictReader(fh))
    groups: dict[tuple[str, str, str, str, str], list[dict[str, str]]] = {}
    for r in rows:
        masking = r["masking"] + (f" (eps {r['eps']})" if r.get("eps") else "")
        key = (masking, r["minimality_asked"], r["backend"], r["window"], r["time_limit"])
        groups.setdefault(key, []).append(r)
    lines = [
        "| masking | asked | backend | window | limit (s) | images | proven optimal | subset-minimal | "
        "valid mask | verified | mean mask size | median time (s) | max time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in sorted(groups):
        rs = groups[key]
        n = len(rs)
        opt = sum(r["minimality"] == "cardinality" and r["status"] == "optimal" for r in rs)
        sub = sum(r["minimality"] in ("cardinality", "subset") for r in rs)
        valid = [r for r in rs if r["mask_size"] != ""]
        ver = sum(r["verified"] == "True" for r in rs)
        sizes = [float(r["mask_size"]) for r in valid]
        times = [float(r["time"]) for r in rs]
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {key[4]} | {n} | {opt}/{n} | {sub}/{n} | "
            f"{len(valid)}/{n} | {ver}/{n} | {statistics.mean(sizes) if sizes else float('nan'):.2f} | "
            f"{statistics.median(times):.2f} | {max(times):.2f} |"
        )
    text = "\n".join(lines) + "\n"
    if out:
        Path(out).write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", nargs="+", default=["ortools:scip"])
    ap.add_argument("--windows", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--minimality", nargs="+", default=["cardinality", "subset"])
    ap.add_argument("--masking", default="baseline", choices=["baseline", "robust"])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--delta", type=float, default=0.0)
    ap.add_argument("--eps", type=float, default=None, help="robust: range x +- eps (clipped to [0, 1]), not [0, 1]")
    ap.add_argument("--out", default="bench/results/full_network")
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument(
        "--raw", action="store_true", help="ablation: solve the plain encoding directly (no heuristic, no budget)"
    )
    ap.add_argument("--summarize", nargs="*", help="CSV files to summarise into a markdown table")
    ap.add_argument("--summary-out", default=None)
    args = ap.parse_args(argv)
    if args.summarize:
        print(summarize(args.summarize, args.summary_out))
        return 0
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

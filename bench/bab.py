"""The exact robustness checks of robust explanations: the batched branch and bound against the one-node one.

For each MNIST test image (the first ``--images``), one robust explanation at
pixel level (eps ``--eps`` around the image, clipped to [0, 1], the default
traversal) records every exact check the traversal makes (its box and
``delta``).  Each recorded check is then answered again by
:meth:`smug.explain.lpbab.LPBranchAndBound.check` with ``method="batched"``
and with ``method="lp"`` (GLOP per node), each with ``--cap`` seconds, in the
same process, one after the other: the table gives the checks each decided,
the nodes and the time of each, and whether the verdicts agree (they must
wherever both decided: both are exact).

Usage::

    .venv/bin/python bench/bab.py --images 3 --model mnist_mlp
    .venv/bin/python bench/bab.py --images 3 --model mnist_mlp_3x10
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import smug.explain.lpbab as lpbab
from smug.explain.network import explain_network
from smug.zoo.data import load_mnist
from smug.zoo.models import pretrained


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--model", default="mnist_mlp")
    ap.add_argument("--eps", type=float, default=0.05)
    ap.add_argument("--cap", type=float, default=6.0, help="seconds per check and method")
    ap.add_argument("--time-limit", type=float, default=60.0, help="seconds per recording explanation")
    args = ap.parse_args(argv)
    model = pretrained(args.model, progress=False)
    X, _ = load_mnist("test")
    checks: list[tuple[object, np.ndarray, np.ndarray, float]] = []
    real = lpbab.LPBranchAndBound.check

    def record(self, lo, hi, delta, **kw):  # noqa: ANN001, ANN003, ANN202
        checks.append((self, np.array(lo, dtype=np.float64), np.array(hi, dtype=np.float64), float(delta)))
        return real(self, lo, hi, delta, **kw)

    lpbab.LPBranchAndBound.check = record  # type: ignore[method-assign]
    try:
        for i in range(args.images):
            lo, hi = np.clip(X[i] - args.eps, 0, 1), np.clip(X[i] + args.eps, 0, 1)
            explain_network(model, torch.tensor(X[i]), masking="robust", minimality="subset", window=1,
                            input_range=(lo, hi), time_limit=args.time_limit)  # fmt: skip
    finally:
        lpbab.LPBranchAndBound.check = real  # type: ignore[method-assign]
    res: dict[str, dict[str, float]] = {m: {"decided": 0, "nodes": 0, "seconds": 0.0} for m in ("batched", "lp")}
    verdicts: dict[str, list[str]] = {"batched": [], "lp": []}
    for bab, lo, hi, delta in checks:
        for m in ("batched", "lp"):
            t0 = time.perf_counter()
            r = real(bab, lo, hi, delta, time_limit=args.cap, method=m)
            res[m]["seconds"] += time.perf_counter() - t0
            res[m]["nodes"] += r.nodes
            res[m]["decided"] += r.verdict != "unknown"
            verdicts[m].append(r.verdict)
    both = [(a, b) for a, b in zip(verdicts["batched"], verdicts["lp"]) if "unknown" not in (a, b)]
    disagree = sum(a != b for a, b in both)
    print(f"# Exact checks of {args.images} robust explanation(s): `{args.model}`, eps {args.eps}, cap {args.cap} s\n")
    print(f"{len(checks)} checks ({verdicts['lp'].count('valid')} valid, {verdicts['lp'].count('invalid')} invalid "
          f"by the one-node search); verdicts disagree on {disagree} of the {len(both)} both decided\n")  # fmt: skip
    print("| method | decided | nodes | seconds | ms per check |")
    print("|---|---|---|---|---|")
    for m in ("batched", "lp"):
        r = res[m]
        print(f"| {m} | {r['decided']} | {r['nodes']} | {r['seconds']:.1f} | {1000 * r['seconds'] / len(checks):.0f} |")
    s_b, s_l = res["batched"]["seconds"], res["lp"]["seconds"]
    print(f"\none-node / batched time: {s_l / s_b:.1f}x")
    return 1 if disagree else 0


if __name__ == "__main__":
    raise SystemExit(main())

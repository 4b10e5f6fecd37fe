"""Speed of the first-layer encoder on an Inception-v1-sized first layer.

Times :meth:`smug.encoders.FirstLayer.affine_rows` for ``Conv2d(3, 64, 7,
stride=2, padding=3)`` on a 3x224x224 input, the top 3000 neurons and 4x4
windows (56 * 56 = 3136 mask variables), median of 5 runs, and checks the
result against torch on a few random masks.  The target is under 0.2 s.

Usage::

    .venv/bin/python bench/encoder_speed.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch import nn

from smug.encoders import feature_groups, find_first_layer, make_baseline


def main() -> None:
    """Run the benchmark and print the median time."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--top-k", type=int, default=3000)
    ap.add_argument("--window", type=int, default=4)
    ap.add_argument("--baseline", default="zero", help="zero, mean or a number")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 64, 7, stride=2, padding=3), nn.BatchNorm2d(64), nn.ReLU()).eval()
    layer = find_first_layer(model)
    rng = np.random.default_rng(0)
    x = rng.random((3, 224, 224))
    ids = feature_groups(x.shape, window=args.window)
    pre = layer.preactivations(x)
    neurons = np.argsort(-pre)[: args.top_k]
    baseline = args.baseline if args.baseline in ("zero", "mean") else float(args.baseline)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        C, d = layer.affine_rows(x, baseline, ids, neurons)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    # correctness spot check against the model itself (conv + BatchNorm in float64)
    base = make_baseline(x, baseline)
    ref_model = model[:2].double()
    err = 0.0
    for _ in range(3):
        m = rng.integers(0, 2, C.shape[1]).astype(np.float64)
        xm = base + m[ids] * (x - base)
        with torch.no_grad():
            ref = ref_model(torch.from_numpy(xm)[None])[0].numpy().ravel()[neurons]
        err = max(err, float(np.abs(C @ m + d - ref).max()))
    print(f"max |C m + d - torch| over 3 random masks: {err:.2e}")
    print(f"C: {C.shape[0]} x {C.shape[1]}, nnz {C.nnz}, baseline {baseline!r}")
    print(
        f"affine_rows median of {args.repeats}: {med * 1000:.1f} ms (min {min(times) * 1000:.1f} ms); target < 200 ms"
    )


if __name__ == "__main__":
    main()

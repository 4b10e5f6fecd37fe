"""How far the CNN's robust frontier is from what relaxations prove: every pixel free at once.

For each of the first ``--images`` MNIST test images, with *every* pixel free in
the L-infinity ball of radius ``--eps`` clipped to [0, 1] (the box the last
checks of a robust explanation approach when the network is robust on it):

- the smallest margin a PGD attack finds (an upper bound on the true minimum;
  positive: no counterexample found);
- the CROWN lower bound of :class:`smug.encoders.bounds.SparseCrown` (and its
  unstable ReLUs per layer);
- with ``--lp``, the triangle LP relaxation's optimum for the class CROWN finds
  hardest (every ReLU and pooling window relaxed with the same layer bounds;
  scipy's HiGHS; slow: minutes per image), the bound every LP-based branch and
  bound starts from.

A positive attack margin beside a negative LP bound means the subset-minimal
explanation needs a proof the relaxations are far from giving.

Usage::

    .venv/bin/python bench/cnn_gap.py --images 10
    .venv/bin/python bench/cnn_gap.py --images 1 --lp
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp
import torch

from smug.encoders.bounds import SparseCrown
from smug.encoders.network import AffineOp, ReluOp, lower_network
from smug.zoo.data import load_mnist
from smug.zoo.models import pretrained


def pgd(model, x0, lo, hi, t, restarts=4, steps=100, seed=0) -> float:
    """The smallest margin ``logit_t - max_j logit_j`` found by signed-gradient descent from random starts."""
    g = torch.Generator().manual_seed(seed)
    lo_t, hi_t = torch.from_numpy(lo), torch.from_numpy(hi)
    best = np.inf
    for _ in range(restarts):
        z = (lo_t + torch.rand(lo.size, generator=g, dtype=torch.float64) * (hi_t - lo_t)).requires_grad_(True)
        for _ in range(steps):
            lg = model(z.view(1, *x0.shape))[0]
            m = lg[t] - torch.cat([lg[:t], lg[t + 1 :]]).max()
            best = min(best, float(m.detach()))
            (gr,) = torch.autograd.grad(m, z)
            with torch.no_grad():
                z -= 0.01 * gr.sign()
                z.copy_(torch.minimum(torch.maximum(z, lo_t), hi_t))
    return best


def triangle_lp(net, lo, hi, layers, t, j) -> tuple[float, float]:
    """Minimum of ``logit_t - logit_j`` over the triangle relaxation with the given layer bounds (and seconds)."""
    from scipy.optimize import linprog

    lbs, ubs, eq, ub = [], [], [], []  # eq / ub: lists of (row blocks as {var offset: matrix}, rhs)
    n = 0

    def new(lb, ub_):
        nonlocal n
        lbs.append(lb)
        ubs.append(ub_)
        n += lb.size
        return n - lb.size

    cur, cl, cu = new(lo, hi), lo, hi
    k = 0
    for op in net.ops:
        if isinstance(op, AffineOp):
            W = sp.csr_matrix(op.W)
            Wp, Wn = W.maximum(0), W.minimum(0)
            l2, u2 = Wp @ cl + Wn @ cu + op.b, Wp @ cu + Wn @ cl + op.b
            if k < len(layers):
                l2, u2 = np.maximum(l2, layers[k][0]), np.minimum(u2, layers[k][1])
            nxt = new(l2 - 1e-7, u2 + 1e-7)
            eq.append(({cur: W, nxt: -sp.eye(W.shape[0])}, -op.b))
            cur, cl, cu = nxt, l2, u2
        elif isinstance(op, ReluOp):
            k += 1
            out = new(np.maximum(cl, 0), np.maximum(cu, 0) + 1e-7)
            act, un = cl >= 0, (cl < 0) & (cu > 0)
            sel = lambda r, m=cl.size: sp.csr_matrix((np.ones(r.size), (np.arange(r.size), r)), shape=(r.size, m))  # noqa: E731
            r = np.flatnonzero(act)
            eq.append(({cur: sel(r), out: -sel(r)}, np.zeros(r.size)))
            r = np.flatnonzero(un)
            s = cu[r] / (cu[r] - cl[r])
            ub.append(({cur: sel(r), out: -sel(r)}, np.zeros(r.size)))  # z <= y
            ub.append(({cur: -sp.diags(s) @ sel(r), out: sel(r)}, -s * cl[r]))  # y <= s (z - l)
            cur, cl, cu = out, np.maximum(cl, 0), np.maximum(cu, 0)
        else:  # max-pooling: m >= x_k, m <= x_k + max(0, max_{i != k} u_i - l_k)
            k += 1
            w = op.windows
            valid = w >= 0
            lw = np.where(valid, cl[np.maximum(w, 0)], -np.inf)
            uw = np.where(valid, cu[np.maximum(w, 0)], -np.inf)
            out = new(lw.max(1), uw.max(1) + 1e-7)
            no = w.shape[0]
            for c in range(w.shape[1]):
                r = np.flatnonzero(valid[:, c])
                P = sp.csr_matrix((np.ones(r.size), (np.arange(r.size), w[r, c])), shape=(r.size, cl.size))
                Q = sp.csr_matrix((np.ones(r.size), (np.arange(r.size), r)), shape=(r.size, no))
                ub.append(({cur: P, out: -Q}, np.zeros(r.size)))
                uo = np.delete(uw, c, axis=1).max(1)[r] if w.shape[1] > 1 else np.full(r.size, -np.inf)
                ub.append(({cur: -P, out: Q}, np.maximum(0.0, uo - lw[r, c])))
            cur, cl, cu = out, lw.max(1), uw.max(1)

    def assemble(blocks):
        """Stack row blocks given as {variable offset: coefficient matrix} into one matrix over all variables."""
        mats, rhs = [], []
        for parts, b in blocks:
            rows = next(iter(parts.values())).shape[0]
            pieces, at = [], 0
            for off, A in sorted(parts.items()):
                if off > at:
                    pieces.append(sp.csr_matrix((rows, off - at)))
                pieces.append(sp.csr_matrix(A))
                at = off + A.shape[1]
            if at < n:
                pieces.append(sp.csr_matrix((rows, n - at)))
            mats.append(sp.hstack(pieces))
            rhs.append(b)
        return sp.vstack(mats).tocsr(), np.concatenate(rhs)

    Ae, be = assemble(eq)
    Au, bu = assemble(ub)
    c = np.zeros(n)
    c[cur + t], c[cur + j] = 1.0, -1.0
    t0 = time.perf_counter()
    r = linprog(c, A_ub=Au, b_ub=bu, A_eq=Ae, b_eq=be, bounds=np.c_[np.concatenate(lbs), np.concatenate(ubs)],
                method="highs")  # fmt: skip
    return (float(r.fun) if r.status == 0 else float("nan")), time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=10)
    ap.add_argument("--eps", type=float, default=0.05)
    ap.add_argument("--model", default="mnist_cnn")
    ap.add_argument("--lp", action="store_true", help="also the triangle LP bound (minutes per image)")
    args = ap.parse_args(argv)
    model = pretrained(args.model, progress=False).double().eval()
    X, _ = load_mnist("test")
    print("| image | PGD margin (all free) | CROWN bound | unstable ReLUs per layer | CROWN s |"
          + (" triangle LP bound | LP s |" if args.lp else ""))  # fmt: skip
    print("|---|---|---|---|---|" + ("---|---|" if args.lp else ""))
    for i in range(args.images):
        x0 = np.asarray(X[i], dtype=np.float64)
        net = lower_network(model, x0.shape)
        flat = x0.reshape(-1)
        t = int(np.argmax(net.forward(flat)))
        lo, hi = np.clip(flat - args.eps, 0, 1), np.clip(flat + args.eps, 0, 1)
        t0 = time.perf_counter()
        mlb, layers = SparseCrown(net, t).bounds(lo, hi)
        secs = time.perf_counter() - t0
        unst = [
            int(((lw < 0) & (up > 0)).sum())
            for (lw, up), op in zip(layers, [o for o in net.ops if not isinstance(o, AffineOp)], strict=True)
            if isinstance(op, ReluOp)
        ]  # noqa: E501
        atk = pgd(model, x0, lo, hi, t, seed=i)
        line = f"| {i} | {atk:.2f} | {mlb.min():.2f} | {unst} | {secs:.2f} |"
        if args.lp:
            v, s = triangle_lp(net, lo, hi, layers, t, int(np.argmin(mlb)))
            line += f" {v:.2f} | {s:.0f} |"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

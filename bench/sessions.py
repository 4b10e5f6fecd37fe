"""Related checks per second: one open session vs one solve per check, per backend.

(a) **Enumeration.**  The k best masks of a first-layer SMUG problem of an
MNIST test digit (smug's reference CNN, ``DEMO_CONFIG``): step ``i`` adds the
no-good of mask ``i - 1`` and minimises again.  The session adds one row per
step (:func:`smug.open_session`); the fresh side solves the problem with all
no-goods so far through :func:`smug.solve`, in the calling process
(``isolate=False``) and in a forked child per solve (``isolate=True``, what a
time-limited solve does).  The exact objective sequences must be equal.

(b) **Deletion loop.**  The solver checks of a full-network robust explanation
(``masking="robust"``, ``minimality="subset"``, inputs free in the L-infinity
ball of radius ``--eps``) of a digit by a 64-8-10 MLP
trained here on scikit-learn's 8x8 digits: the masks the deletion loop sends to
the solver are recorded once, then replayed through the loop's verifier with
``sessions=True`` (one open session, each check a set of bound changes) and
``sessions=False`` (each check encodes the network for its mask and solves it
afresh); attacks are off in the replay, so every check reaches the bound
propagation and then the solver.  The verdicts must be equal.

Writes ``bench/results/sessions.md`` and ``.csv``.

Usage::

    .venv/bin/python bench/sessions.py --steps 200 --backends z3 ortools:scip ortools:highs ortools:cpsat pysmt:yices
    .venv/bin/python bench/sessions.py --only deletion --eps 0.1 0.15 --backends ortools:scip z3
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

import smug
from smug.solving.contract import Status

OUT = Path(__file__).resolve().parent / "results"


def _exact(sol: smug.Solution) -> Fraction | None:
    return sol.exact_objective if sol.status == Status.OPTIMAL else None


def enumeration(backend: str, steps: int, image: int, modes: list[str], overrides: dict) -> list[dict]:
    """Step-by-step k-best enumeration, session vs fresh; returns one row per mode."""
    from smug.explain.api import explanation_problem
    from smug.zoo.data import load_mnist
    from smug.zoo.demo import DEMO_CONFIG
    from smug.zoo.models import pretrained

    X, _ = load_mnist("test")
    cfg = DEMO_CONFIG.merged(**overrides)
    p = explanation_problem(pretrained("mnist_cnn", progress=False), X[image], config=cfg)
    smug.solve(p, backend, isolate=False)  # warm-up: imports and the certifier's first use are not timed
    rows, seqs = [], {}
    for mode in modes:
        found: list[np.ndarray] = []
        seq: list[Fraction | None] = []
        t0 = time.perf_counter()
        if mode == "session":
            with smug.open_session(p, backend, isolate=False) as s:
                for _ in range(steps):
                    if found:
                        A, r = p.nogood_rows(found[-1:])
                        s.add_rows(A, ">=", r)
                    sol = s.solve()
                    seq.append(_exact(sol))
                    if sol.status != Status.OPTIMAL:
                        break
                    found.append(sol.assignment[: p.n_vars])
        else:
            for _ in range(steps):
                q = p
                if found:
                    A, r = p.nogood_rows(found)
                    q = p.with_rows(A, ">=", r)
                sol = smug.solve(q, backend, isolate=(mode == "fresh-child"))
                seq.append(_exact(sol))
                if sol.status != Status.OPTIMAL:
                    break
                found.append(sol.assignment)
        dt = time.perf_counter() - t0
        seqs[mode] = seq
        rows.append(
            dict(
                bench="enumeration",
                backend=backend,
                mode=mode,
                checks=len(seq),
                seconds=round(dt, 3),
                checks_per_s=round(len(seq) / dt, 2),
                first=str(seq[0]),
                last=str(seq[-1]),
                n_vars=p.n_vars,
                n_rows=p.n_rows,
            )
        )
        print(f"  enumeration {backend:14s} {mode:12s} {len(seq):4d} steps {dt:8.2f} s", file=sys.stderr)
    ref = seqs[modes[0]]
    for m, s in seqs.items():
        if s != ref:
            raise AssertionError(f"{backend}: the objective sequence of {m} differs from {modes[0]}: {s} vs {ref}")
    return rows


def _digits_mlp(hidden: int = 16, seed: int = 0) -> tuple[torch.nn.Module, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    X = torch.tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10)
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(X), y).backward()
        opt.step()
    acc = float((net(X).argmax(1) == y).float().mean())
    print(f"  digits MLP 64-{hidden}-10: train accuracy {acc:.3f}", file=sys.stderr)
    return net.eval(), (d.data / 16.0).reshape(-1, 1, 8, 8)


def deletion(backend: str, eps: float, image: int, time_limit: float, hidden: int) -> list[dict]:
    """Record the deletion loop's solver checks, replay them with and without a session."""
    import smug.explain.network as nw

    model, X = _digits_mlp(hidden)
    x = X[image]
    ranges = (np.clip(x - eps, 0, 1), np.clip(x + eps, 0, 1))  # the L-infinity ball of radius eps in [0, 1]
    kw = dict(masking="robust", minimality="subset", backend=backend, time_limit=time_limit)
    recorded: list[np.ndarray] = []
    orig = nw._Verifier._in_session

    def spy(self, mask, lo, hi, mlb):  # noqa: ANN001 - records what reaches the solver
        recorded.append(np.array(mask))
        return orig(self, mask, lo, hi, mlb)

    nw._Verifier._in_session = spy
    try:
        ex = nw.explain_network(model, x, input_range=ranges, **kw)
    finally:
        nw._Verifier._in_session = orig
    print(
        f"  deletion {backend}: {len(recorded)} solver checks recorded ({ex.status.value}, "
        f"{ex.stats.get('deletion_checks')} deletion checks)",
        file=sys.stderr,
    )
    rows, verdicts = [], {}
    for sessions in (True, False):
        cfg = nw._config(None, {**kw, "sessions": sessions})
        ctx = nw._Context(model, x, None, cfg, None, None, ranges)
        enc0 = nw._session_base(ctx)
        stats: dict = {}
        t0 = time.perf_counter()
        v = nw._Verifier(ctx, t0, stats, base=enc0)
        out = []
        for m in recorded:
            out.append(v(m, use_attack=False)[0])
        v.close()
        dt = time.perf_counter() - t0
        verdicts[sessions] = out
        mode = "session" if sessions else "fresh"
        rows.append(
            dict(
                bench=f"deletion eps={eps}",
                backend=backend,
                mode=mode,
                checks=len(out),
                seconds=round(dt, 3),
                checks_per_s=round(len(out) / dt, 2),
                first=out.count("valid"),
                last=out.count("invalid"),
                n_vars=enc0.problem.n_vars,
                n_rows=enc0.problem.n_rows,
            )
        )
        print(
            f"  deletion {backend:14s} {mode:8s} {len(out):4d} checks {dt:8.2f} s "
            f"({out.count('valid')} valid, {out.count('invalid')} invalid)",
            file=sys.stderr,
        )
    if verdicts[True] != verdicts[False]:
        raise AssertionError(f"{backend}: session and fresh verdicts differ: {verdicts}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backends", nargs="+", default=["z3", "ortools:scip", "ortools:highs", "ortools:cpsat"])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--image", type=int, default=0)
    ap.add_argument("--window", type=int, help="enumeration problem: DEMO_CONFIG's window (2) unless given")
    ap.add_argument("--gamma", type=float)
    ap.add_argument("--top-k", type=int)
    ap.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.15])
    ap.add_argument("--hidden", type=int, default=8, help="deletion: the digits MLP's hidden width")
    ap.add_argument("--time-limit", type=float, default=120, help="deletion: the recorded explanation's limit")
    ap.add_argument("--only", choices=["enumeration", "deletion"])
    ap.add_argument("--modes", nargs="+", default=["session", "fresh", "fresh-child"])
    ap.add_argument("--out", type=Path, default=OUT / "sessions")
    a = ap.parse_args()
    rows: list[dict] = []
    for b in a.backends:
        if a.only != "deletion":
            over = {k: v for k, v in (("window", a.window), ("gamma", a.gamma), ("top_k", a.top_k)) if v is not None}
            rows += enumeration(b, a.steps, a.image, a.modes, over)
        if a.only != "enumeration" and smug.get_backend(b).capabilities.real_vars:  # networks need reals
            for eps in a.eps:
                rows += deletion(b, eps, a.image, a.time_limit, a.hidden)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with open(a.out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = [
        "| bench | backend | mode | checks | seconds | checks/s | session speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ses = next(
            x for x in rows if x["bench"] == r["bench"] and x["backend"] == r["backend"] and x["mode"] == "session"
        )
        up = r["seconds"] / ses["seconds"] * ses["checks"] / r["checks"]
        lines.append(
            f"| {r['bench']} | {r['backend']} | {r['mode']} | {r['checks']} | {r['seconds']} | {r['checks_per_s']} | "
            f"{'' if r['mode'] == 'session' else f'{up:.1f}x'} |"
        )
    cmd = "    .venv/bin/python bench/sessions.py " + " ".join(sys.argv[1:])
    a.out.with_suffix(".md").write_text("\n".join([cmd, "", *lines, ""]))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

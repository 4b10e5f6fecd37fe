"""``smug study`` itself: the speed-up of 2 local workers over 1, and the per-cell overhead of the Dask path.

(a) **Workers.**  A solver-bound study: ``--cells`` market-split problems (4
equality rows over 40 binaries; no backend closes one within the limit), one
backend, ``time_limit=--limit``, so every cell is a solver running for the whole
limit.  Run with 1 and with 2 local workers; the speed-up is the ratio of wall
times.

(b) **Dask overhead.**  ``--tiny`` trivial cells (a 3-variable problem that z3
answers in milliseconds) run with 1 local worker and on a Dask ``LocalCluster``
of 1 worker; the per-cell overhead of each path is (study wall time - the sum
of the cells' own wall times) / cells, and the Dask path's extra is the
difference.  Cluster start-up is measured apart.

Writes ``bench/results/study_scaling.md``.

Usage::

    .venv/bin/python bench/study_scaling.py --cells 16 --limit 2 --tiny 100
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import smug
from smug.study.runner import run_study
from smug.study.spec import spec_from_dict
from smug.study.store import Store

OUT = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from time_limits import market_split  # noqa: E402


def _write(problems: list[smug.Problem], folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for k, p in enumerate(problems):
        (folder / f"p{k:03d}.json").write_text(p.to_json())
    return str(folder / "*.json")


def _timed(spec, out: Path, **kw) -> tuple[float, list[dict]]:
    t0 = time.perf_counter()
    run_study(spec, out, progress=False, log=lambda s: None, **kw)
    wall = time.perf_counter() - t0
    with Store(out) as store:
        return wall, store.cells()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=16)
    ap.add_argument("--limit", type=float, default=2.0)
    ap.add_argument("--backend", default="ortools:scip")
    ap.add_argument("--tiny", type=int, default=100)
    args = ap.parse_args()
    lines = ["# `smug study` scaling and overhead", ""]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        glob = _write([market_split(4, 40, seed) for seed in range(args.cells)], tmp / "hard")
        spec = spec_from_dict({"problems": [glob], "backends": [args.backend], "time_limit": args.limit})
        w1, c1 = _timed(spec, tmp / "w1", workers=1)
        w2, c2 = _timed(spec, tmp / "w2", workers=2)
        statuses = sorted({c["status"] for c in c1 + c2})
        lines += [
            f"(a) {args.cells} solver-bound cells ({args.backend}, market split 4x40, limit {args.limit:g} s; "
            f"statuses {statuses}):",
            "",
            "| workers | wall (s) | cells / s | speed-up |",
            "|---|---|---|---|",
            f"| 1 | {w1:.1f} | {args.cells / w1:.2f} | 1.00x |",
            f"| 2 | {w2:.1f} | {args.cells / w2:.2f} | {w1 / w2:.2f}x |",
            "",
        ]
        problems = []
        for k in range(args.tiny):  # distinct problems (distinct hashes): the rhs varies slightly
            bb = smug.ProblemBuilder()
            mm = bb.add_mask(3)
            bb.add_rows([[1.0, 2.0, 0.5]], ">=", [1.0 + k / (10 * args.tiny)])
            bb.set_objective(mm, 1.0)
            problems.append(bb.build())
        glob = _write(problems, tmp / "tiny")
        spec = spec_from_dict({"problems": [glob], "backends": ["z3"], "time_limit": 10})
        wl, cl = _timed(spec, tmp / "local", workers=1)
        wd, cd = _timed(spec, tmp / "dask", dask_local=1)
        own_l, own_d = sum(c["wall"] for c in cl), sum(c["wall"] for c in cd)
        ovl, ovd = (wl - own_l) / args.tiny, (wd - own_d) / args.tiny
        # cluster start-up: a study of one cell on a fresh cluster, less that cell's own time
        one = spec_from_dict({"problems": [str(tmp / "tiny" / "p000.json")], "backends": ["z3"], "time_limit": 10})
        ws, cs = _timed(one, tmp / "startup", dask_local=1)
        startup = ws - cs[0]["wall"]
        per_cell_dask = (wd - startup - own_d) / args.tiny
        per_cell_local = ovl
        lines += [
            f"(b) {args.tiny} trivial cells (z3, a 3-variable problem; mean cell time "
            f"{np.mean([c['wall'] for c in cl]) * 1e3:.0f} ms local):",
            "",
            "| path | study wall (s) | sum of cell times (s) | overhead per cell (ms) |",
            "|---|---|---|---|",
            f"| local, 1 worker | {wl:.2f} | {own_l:.2f} | {per_cell_local * 1e3:.1f} |",
            f"| Dask LocalCluster, 1 worker | {wd:.2f} | {own_d:.2f} | {ovd * 1e3:.1f} (with start-up), "
            f"{per_cell_dask * 1e3:.1f} (without) |",
            "",
            f"Dask cluster start-up (one-cell study less the cell): {startup:.2f} s. "
            f"Dask's extra per cell over the local path: {(per_cell_dask - per_cell_local) * 1e3:.1f} ms.",
        ]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "study_scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

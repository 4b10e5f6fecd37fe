"""Robust (formally sufficient) explanations at pixel level: the batched traversal against the sequential one.

For each MNIST test image (the first ``--images``) and each traversal, run
:func:`smug.explain_network` with ``masking="robust"``, ``minimality="subset"``,
single pixels (``window=1``) and every masked pixel free in the L-infinity ball
of radius ``--eps`` around the image, clipped to [0, 1] (VeriX's setting), with
``--time-limit`` seconds per explanation.  Records the status, whether the
explanation is subset-minimal, its size, the time, whether the final exact
re-check proved it, and the checks each stage decided.  Rows are appended to
``<out>/rows.jsonl`` as they finish (a rerun skips finished (traversal, image)
pairs); ``<out>/robust.md`` holds the tables and ``<out>/robust.png`` a few
explanations beside a counterexample of each.

Usage::

    .venv/bin/python bench/robust.py --images 20 --traversals batched --time-limit 60
    .venv/bin/python bench/robust.py --images 8 --traversals sequential --time-limit 60
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from smug.explain.network import explain_network
from smug.zoo.data import load_mnist
from smug.zoo.models import pretrained

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument(
        "--traversals",
        nargs="+",
        default=["batched", "sequential"],
        help="batched, sequential, batched-occlusion (the batched traversal in VeriX's occlusion order)",
    )
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--eps", type=float, default=0.05)
    ap.add_argument("--model", default="mnist_mlp")
    ap.add_argument("--window", type=int, default=1, help="side of the pixel windows (1: single pixels)")
    ap.add_argument("--backend", default="ortools:highs")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "robust"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.jsonl"
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()] if rows_path.exists() else []
    done = {(r["traversal"], r["image"]) for r in rows}
    model = pretrained(args.model, progress=False)
    X, y = load_mnist("test")
    shown: dict[int, object] = {}
    for trav in args.traversals:
        for i in range(args.images):
            if (trav, i) in done:
                continue
            lo, hi = np.clip(X[i] - args.eps, 0, 1), np.clip(X[i] + args.eps, 0, 1)
            t0 = time.perf_counter()
            e = explain_network(model, torch.tensor(X[i]), masking="robust", minimality="subset", window=args.window,
                                input_range=(lo, hi), backend=args.backend, time_limit=args.time_limit,
                                traversal=trav.split("-")[0],
                                order="occlusion" if trav.endswith("-occlusion") else "gradient")  # fmt: skip
            # (the plain names run the gradient order, the measurements' first order; "-occlusion" the default)
            secs = time.perf_counter() - t0
            st = e.stats
            row = {
                "model": args.model, "traversal": trav, "image": i, "label": int(y[i]), "status": e.status.value,
                "minimality": e.minimality, "size": e.mask_size, "seconds": round(secs, 3),
                "verified": e.verified, "final_check": st.get("final_check"),
                "stages": st.get("stages"), "bab_nodes": st.get("bab_nodes"), "bab_proofs": st.get("bab_proofs"),
                "bab_refutations": st.get("bab_refutations"), "unknown_checks": st.get("unknown_checks"),
                "solver_calls": st.get("solver_calls"), "attack_refutations": st.get("attack_refutations"),
                "ibp_proofs": st.get("ibp_proofs"), "deletion_checks": st.get("deletion_checks"),
            }  # fmt: skip
            rows.append(row)
            with rows_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            if trav == args.traversals[0] and len(shown) < 4 and e.minimality == "subset":
                shown[i] = e
            print(f"{trav:<10} image {i:>3}: {e.minimality:<7} size {e.mask_size:>4} {secs:6.1f}s "
                  f"final={row['final_check']}", flush=True)  # fmt: skip
    write_report(rows, args, out)
    if shown:
        plot(shown, X, out / "robust.png", model)
    return 0


def write_report(rows: list[dict], args: argparse.Namespace, out: Path) -> None:
    """The tables: per traversal, and sizes on the images both traversals finished."""
    lines = [
        f"# Robust explanations: `{args.model}`, windows {args.window}x{args.window}, eps {args.eps}, "
        f"limit {args.time_limit:g} s",
        "",
        "| traversal | images | subset-minimal | proven by the final check | median time (s) | worst time (s) "
        "| mean size (finished) | checks: bounds / attack / exact (batched: boxes in batches / kept / blocks) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for trav in dict.fromkeys(r["traversal"] for r in rows):
        rs = [r for r in rows if r["traversal"] == trav]
        fin = [r for r in rs if r["minimality"] == "subset"]
        ts = [r["seconds"] for r in rs]
        size = f"{statistics.fmean(r['size'] for r in fin):.1f}" if fin else "-"
        if trav.startswith("batched"):
            st = [r["stages"] or {} for r in rs]
            boxes, batches = sum(s.get("bound_boxes", 0) for s in st), sum(s.get("bound_batches", 0) for s in st)
            checks = (f"{boxes} boxes in {batches} batches / {sum(s.get('kept_by_attack', 0) for s in st)} kept / "
                      f"{sum(s.get('solver_checks', 0) for s in st)}")  # fmt: skip
        else:
            exact = sum((r["solver_calls"] or 0) + (r["bab_proofs"] or 0) + (r["bab_refutations"] or 0) for r in rs)
            ibp, atk = sum(r["ibp_proofs"] or 0 for r in rs), sum(r["attack_refutations"] or 0 for r in rs)
            checks = f"{ibp} / {atk} / {exact}"
        proven = sum(bool(r["verified"]) for r in rs)
        lines.append(
            f"| {trav} | {len(rs)} | {len(fin)} | {proven} | {statistics.median(ts):.1f} | {max(ts):.1f} | {size} "
            f"| {checks} |"
        )
    by = {(r["traversal"], r["image"]): r for r in rows}

    def finished(t: str, i: int) -> bool:
        return by.get((t, i), {}).get("minimality") == "subset"

    for bt, sq in (("batched", "sequential"), ("batched-occlusion", "sequential-occlusion")):
        both = sorted(i for (t, i) in by if t == bt and finished(bt, i) and finished(sq, i))
        if not both:
            continue
        b = [by[(bt, i)]["size"] for i in both]
        s = [by[(sq, i)]["size"] for i in both]
        lines += [
            "",
            f"On the {len(both)} images both {bt} and {sq} finished: mean size {statistics.fmean(b):.1f} (batched) "
            f"against {statistics.fmean(s):.1f} (sequential, the plain sensitivity-order deletion); "
            f"batched is smaller on {sum(x < z for x, z in zip(b, s))}, equal on {sum(x == z for x, z in zip(b, s))}, "
            f"larger on {sum(x > z for x, z in zip(b, s))}.",
        ]
    (out / "robust.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def plot(shown: dict[int, object], X: np.ndarray, path: Path, model: torch.nn.Module) -> None:
    """Per explanation: the image, the kept pixels, and a counterexample for one kept pixel freed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(shown), 3, figsize=(6.6, 2.3 * len(shown)), squeeze=False)
    for row, (i, e) in zip(axes, shown.items()):
        row[0].imshow(X[i, 0], cmap="gray", vmin=0, vmax=1)
        row[0].set_title(f"test image {i}", fontsize=8)
        row[1].imshow(X[i, 0], cmap="gray", vmin=0, vmax=1)
        row[1].imshow(np.ma.masked_where(e.mask[0] < 0.5, e.mask[0]), cmap="autumn", alpha=0.9)
        row[1].set_title(f"kept: {int(e.mask.sum())} pixels (subset-minimal)", fontsize=8)
        if e.witnesses:
            g, w = next(iter(e.witnesses.items()))
            w = np.asarray(w).reshape(X[i].shape)
            row[2].imshow(w[0], cmap="gray", vmin=0, vmax=1)
            with torch.no_grad():
                pred = int(model(torch.from_numpy(w[None].astype(np.float32))).argmax())
            row[2].set_title(f"pixel {g} freed too: predicted {pred}", fontsize=8)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())

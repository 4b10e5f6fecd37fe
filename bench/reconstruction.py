"""Salient-input reconstruction on MNIST (Thakur & Fischmeister, ICPR 2020): which maps' salient pixels keep the class.

For the first ``--images`` MNIST test digits and the reference CNN, every method's
map keeps its top ``--keeps`` fractions of pixels; the shipped VAE
(:func:`smug.methods.reconstruct.pretrained_vae`) fills in the rest ``--n`` times,
and the CNN classifies each variation.  Controls: random pixels and random 4x4
patches of the same size, the VAE's reconstruction of the full image, and draws
with nothing kept.  Rows go to ``<out>/rows.jsonl`` as they are made (a rerun
resumes after the last finished digit); the summary to ``<out>/summary.md``, the
figures to ``<out>/curves.png`` and ``<out>/grid.png`` (and, with ``--docs``, to
``docs/img/reconstruction_*.png``).

Usage::

    .venv/bin/python bench/reconstruction.py --docs              # 100 digits, about 15 minutes on 2 cores
    .venv/bin/python bench/reconstruction.py --images 3 --n 4 --out /tmp/rec
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from smug.methods.reconstruct import pretrained_vae
from smug.study.reconstruction import (
    _maps,
    _patch_map,
    format_reconstruction_markdown,
    plot_reconstruction_curves,
    plot_reconstruction_grid,
    run_reconstruction_study,
    summarise_reconstruction,
)
from smug.zoo.data import load_mnist
from smug.zoo.models import pretrained

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("smug", "integrated-gradients", "optimised-mask", "pathwaygrad", "saliency")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100, help="first N MNIST test digits (default 100)")
    ap.add_argument("--n", type=int, default=16, help="variations per digit, method and fraction (default 16)")
    ap.add_argument("--keeps", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3], help="kept fractions")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), help=f"methods (default {' '.join(METHODS)})")
    ap.add_argument("--steps", type=int, default=100, help="Langevin steps (default 100)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "reconstruction")
    ap.add_argument("--docs", action="store_true", help="also copy the figures to docs/img/")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    rows_path = args.out / "rows.jsonl"
    settings = {"images": args.images, "n": args.n, "keeps": args.keeps, "methods": args.methods, "steps": args.steps}
    meta = args.out / "settings.json"
    if rows_path.exists() and (not meta.exists() or json.loads(meta.read_text()) != settings):
        sys.exit(f"{rows_path} holds rows of other settings; pass another --out or delete it")
    meta.write_text(json.dumps(settings) + "\n")
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()] if rows_path.exists() else []
    per_digit = len(args.methods) * len(args.keeps) + 2 * len(args.keeps) + 2
    done = {i for i in {r["index"] for r in rows} if sum(r["index"] == i for r in rows) == per_digit}
    rows = [r for r in rows if r["index"] in done]
    rows_path.write_text("".join(json.dumps(r) + "\n" for r in rows))  # drop a half-written digit

    cnn, vae = pretrained("mnist_cnn"), pretrained_vae()
    images = torch.from_numpy(np.array(load_mnist("test")[0][: args.images]))
    todo = [i for i in range(args.images) if i not in done]
    print(f"{len(done)} digits done, {len(todo)} to run", file=sys.stderr)
    t0 = time.perf_counter()
    with rows_path.open("a") as fh:

        def keep(row: dict) -> None:
            fh.write(json.dumps(row) + "\n")
            fh.flush()

        if todo:
            rows += run_reconstruction_study(
                cnn, vae, images[todo], methods=args.methods, keeps=args.keeps, n=args.n, steps=args.steps,
                indices=todo, on_row=keep,
            )  # fmt: skip
    seconds = time.perf_counter() - t0
    summary = summarise_reconstruction(rows)
    table = format_reconstruction_markdown(summary)
    (args.out / "summary.md").write_text(
        f"# Reconstruction study: {args.images} MNIST test digits, reference CNN, shipped VAE, "
        f"{args.n} variations each, {args.steps} Langevin steps\n\n"
        "Share of variations the CNN assigns to the digit's predicted class (mean ± s.e. over digits, %).\n\n" + table
    )
    print(table)
    curves = plot_reconstruction_curves(summary, args.out / "curves.png", title=f"{args.images} MNIST test digits, CNN")
    examples = []
    rng = np.random.default_rng(0)
    for i in (0, 1, 2):
        x = images[i]
        pred = int(cnn(x.unsqueeze(0)).argmax(1))
        maps = _maps(cnn, x, pred, ["smug", "integrated-gradients", "saliency"], {})
        maps["random-patches"] = _patch_map(rng, 28, 28)
        examples.append((x, maps))
    grid = plot_reconstruction_grid(
        cnn, vae, examples, args.out / "grid.png", keep=0.1, title="keep 10 % of the pixels"
    )
    if args.docs:
        shutil.copyfile(curves, ROOT / "docs" / "img" / "reconstruction_curves.png")
        shutil.copyfile(grid, ROOT / "docs" / "img" / "reconstruction_grid.png")
    print(f"{len(todo)} digits in {seconds:.0f} s; written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

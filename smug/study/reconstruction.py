"""Scoring saliency maps by salient-input reconstruction (Thakur & Fischmeister, ICPR 2020).

For each input, method and kept fraction, :func:`smug.methods.reconstruct.reconstruct`
keeps the most salient pixels and draws variations from the model of the data;
the score is the share of variations the classifier assigns to the input's
original (predicted) class -- the paper's "classification accuracy" of the
reconstructions.  Three controls run beside the methods:

* ``random-pixels``: a kept region of the same size, its pixels drawn uniformly at random (seeded per input);
* ``random-patches``: a kept region of the same size made of random 4x4 patches -- a region, not a scatter;
* ``full-image``: every pixel kept and *not* pasted back -- the model of the
  data's own reconstruction of the input: the ceiling the generator allows;
* ``prior``: nothing kept -- draws from the prior alone: the floor (about the
  classifier's class frequencies).

:func:`run_reconstruction_study` returns one row per (input, method, kept
fraction); :func:`summarise_reconstruction` averages them; :func:`plot_reconstruction_grid`
and :func:`plot_reconstruction_curves` draw the figures; ``bench/reconstruction.py``
runs the whole study on MNIST and writes ``docs/results.md``'s figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, ShapeError
from ..methods.reconstruct import _check_keep, _check_vae, keep_mask, reconstruct_many
from .metrics import to_map

__all__ = [
    "CONTROLS",
    "run_reconstruction_study",
    "summarise_reconstruction",
    "format_reconstruction_markdown",
    "plot_reconstruction_grid",
    "plot_reconstruction_curves",
]

#: The control rows every study adds beside the methods.
CONTROLS: tuple[str, ...] = ("random-pixels", "random-patches", "full-image", "prior")
#: The side of the random patches of the ``random-patches`` control.
PATCH = 4


def _patch_map(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random map constant on ``PATCH x PATCH`` blocks: its top pixels are whole random patches."""
    blocks = rng.random((-(-h // PATCH), -(-w // PATCH)))
    return np.kron(blocks, np.ones((PATCH, PATCH)))[:h, :w]


def _maps(classifier: nn.Module, x: torch.Tensor, pred: int, methods: Sequence[str], options: dict) -> dict:
    from ..methods import get_method, method_info

    maps = {}
    for name in methods:
        info = method_info(name)
        attr = get_method(name, classifier, **options.get(name, {})).attribute(x.unsqueeze(0), target=pred)
        maps[name] = to_map(attr, info.map_mode)
    return maps


def run_reconstruction_study(
    classifier: nn.Module,
    model_of_data: nn.Module,
    images: Any,
    *,
    methods: Sequence[str] = ("smug", "integrated-gradients", "optimised-mask", "saliency", "pathwaygrad"),
    keeps: Sequence[float] = (0.05, 0.1, 0.2, 0.3),
    n: int = 16,
    steps: int = 100,
    step_size: float = 0.02,
    seed: int = 0,
    indices: Sequence[int] | None = None,
    method_options: dict[str, dict[str, Any]] | None = None,
    maps: Callable[[int, torch.Tensor, int], dict[str, np.ndarray]] | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Score each method's maps by the share of reconstructions that keep the class.

    Args:
        classifier: the model explained (``(B, C, H, W)`` -> logits).
        model_of_data: the generative model (:func:`smug.methods.reconstruct.pretrained_vae`).
        images: ``(N, C, H, W)`` inputs in ``[0, 1]``.
        methods: registry names (:func:`smug.methods.method_names`) whose maps are scored.
        keeps: kept fractions, each in ``(0, 1]``.
        n: variations per (input, method, fraction).
        steps: Langevin steps (see :func:`smug.methods.reconstruct.reconstruct`).
        step_size: the Langevin run's first step size.
        seed: seeds every draw; input ``i`` uses ``seed + i``, so rows do not depend on which other inputs run.
        indices: the inputs' ids written into the rows (default ``0..N-1``).
        method_options: constructor options per method name.
        maps: ``maps(i, x, pred) -> {method: (H, W) map}`` instead of building the methods (tests, cached maps).
        on_row: called with each row as soon as it exists (write it out: no lost results).
        progress: a progress bar (off when the output is not a terminal).

    Returns:
        Rows with ``index``, ``label`` (the classifier's prediction on the input),
        ``method`` (a method or a control), ``keep``, ``n``, ``kept_class`` (the
        share of variations predicted as ``label``) and ``classes`` (the predicted
        classes, in draw order).

    Raises:
        ConfigError: a fraction outside ``(0, 1]``, an unknown method, or ``n``/``steps`` not positive.
        ShapeError: images not ``(N, C, H, W)``, or a model of the data of another shape.
    """
    from tqdm import tqdm

    keeps = [_check_keep(k) for k in keeps]
    if not keeps:
        raise ConfigError("keeps is empty: give at least one kept fraction in (0, 1]")
    for name, v in (("n", n), ("steps", steps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name} must be a positive integer, got {v!r}")
    bad = [m for m in methods if m in CONTROLS]
    if bad:
        raise ConfigError(f"{bad} are the study's controls, added to every study; do not list them as methods")
    if maps is None:
        from ..methods import method_info

        for m in methods:
            method_info(m)  # an unknown name fails here, before any work
    x_all = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images).float()
    if x_all.dim() != 4:
        raise ShapeError(f"images must be (N, C, H, W), got shape {tuple(x_all.shape)}")
    _check_vae(model_of_data, x_all[0])
    ids = list(range(len(x_all))) if indices is None else [int(i) for i in indices]
    if len(ids) != len(x_all):
        raise ConfigError(f"{len(ids)} indices for {len(x_all)} images")
    was = classifier.training
    classifier.eval()
    rows: list[dict[str, Any]] = []
    h, w = x_all.shape[-2:]
    try:
        for i, x in tqdm(
            list(zip(ids, x_all)), desc="reconstructing", unit="input", disable=None if progress else True
        ):
            with torch.no_grad():
                pred = int(classifier(x.unsqueeze(0)).argmax(1))
            mp = maps(i, x, pred) if maps is not None else _maps(classifier, x, pred, methods, method_options or {})
            regions: list[tuple[str, float, torch.Tensor]] = []
            for name in methods:
                regions += [(name, k, keep_mask(mp[name], k, tuple(x.shape), seed=seed + i)) for k in keeps]
            rng = np.random.default_rng(seed + i)
            for k in keeps:
                regions.append(("random-pixels", k, keep_mask(rng.random((h, w)), k, tuple(x.shape), seed=seed + i)))
            for k in keeps:
                regions.append(
                    ("random-patches", k, keep_mask(_patch_map(rng, h, w), k, tuple(x.shape), seed=seed + i))
                )
            regions.append(("prior", 0.0, torch.zeros(h, w, dtype=torch.bool)))
            masks = torch.stack([r[2] for r in regions])
            out = reconstruct_many(model_of_data, x, masks, n, steps=steps, step_size=step_size, seed=seed + i)
            full = reconstruct_many(
                model_of_data, x, torch.ones(1, h, w, dtype=torch.bool), n, steps=steps, step_size=step_size,
                paste=False, seed=seed + i,
            )  # fmt: skip
            regions.append(("full-image", 1.0, torch.ones(h, w, dtype=torch.bool)))
            out = torch.cat([out, full])
            with torch.no_grad():
                classes = classifier(out.flatten(0, 1)).argmax(1).view(len(regions), n)
            for (name, k, _), cl in zip(regions, classes):
                row = {
                    "index": i,
                    "label": pred,
                    "method": name,
                    "keep": k,
                    "n": n,
                    "kept_class": float((cl == pred).float().mean()),
                    "classes": cl.tolist(),
                }
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    finally:
        classifier.train(was)
    return rows


def summarise_reconstruction(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (method, kept fraction): inputs, the mean share of variations that keep the class, its standard error.

    The standard error is over inputs (each input's share is one observation), so
    it does not pretend the ``n`` variations of one input are independent.
    """
    groups: dict[tuple[str, float], list[float]] = {}
    for r in rows:
        groups.setdefault((r["method"], float(r["keep"])), []).append(float(r["kept_class"]))
    out = []
    for (method, keep), vals in groups.items():
        v = np.asarray(vals)
        se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")
        out.append({"method": method, "keep": keep, "inputs": len(v), "kept_class": float(v.mean()), "se": se})
    order = {m: j for j, m in enumerate(dict.fromkeys(r["method"] for r in out))}
    return sorted(out, key=lambda r: (r["method"] in CONTROLS, order[r["method"]], r["keep"]))


def format_reconstruction_markdown(summary: Sequence[dict[str, Any]]) -> str:
    """A markdown table: one row per method (controls last), one column per kept fraction (mean ± s.e., in %)."""
    keeps = sorted({r["keep"] for r in summary if r["method"] not in ("prior", "full-image")})
    methods = list(dict.fromkeys(r["method"] for r in summary))
    cell = {(r["method"], r["keep"]): r for r in summary}
    lines = [
        "| method | " + " | ".join(f"keep {k:.0%}" for k in keeps) + " |",
        "|---|" + "---|" * len(keeps),
    ]
    for m in methods:
        vals = []
        for k in keeps:
            r = cell.get((m, k)) or (cell.get((m, 1.0)) if m == "full-image" else cell.get((m, 0.0)))
            vals.append("" if r is None else f"{100 * r['kept_class']:.1f} ± {100 * r['se']:.1f}")
        if m in ("prior", "full-image"):  # independent of the fraction: one value, shown once
            vals = [vals[0]] + ["—"] * (len(vals) - 1)
        lines.append(f"| {m} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def plot_reconstruction_grid(
    classifier: nn.Module,
    model_of_data: nn.Module,
    examples: Sequence[tuple[torch.Tensor, dict[str, np.ndarray]]],
    path: str | Path,
    *,
    keep: float = 0.1,
    n_shown: int = 6,
    steps: int = 100,
    seed: int = 0,
    title: str = "",
) -> Path:
    """A figure: per example and method, the input, the map, the kept region and ``n_shown`` variations.

    Each variation is titled with the classifier's prediction, green when it is
    the input's class and red otherwise.

    Args:
        examples: ``(x, {method: map})`` pairs (a control's map: e.g. a random map for a random region).
        path: where the PNG goes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(x, name, m) for x, maps in examples for name, m in maps.items()]
    cols = 3 + n_shown
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.25 * cols, 1.4 * len(rows)), squeeze=False)
    for r, (x, name, m) in enumerate(rows):
        with torch.no_grad():
            pred = int(classifier(x.unsqueeze(0)).argmax(1))
        mask = keep_mask(m, keep, tuple(x.shape), seed=seed)
        var = reconstruct_many(model_of_data, x, mask.unsqueeze(0), n_shown, steps=steps, seed=seed)[0]
        with torch.no_grad():
            cls = classifier(var).argmax(1).tolist()
        kept = torch.where(mask, x[0], torch.full_like(x[0], 0.5))
        panels = [(x[0], f"input: {pred}"), (torch.as_tensor(m), name), (kept, f"kept {keep:.0%}")]
        panels += [(v[0], str(c)) for v, c in zip(var, cls)]
        for c, (img, label) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(
                np.asarray(img, dtype=np.float64),
                cmap="magma" if c == 1 else "gray",
                vmin=None if c == 1 else 0,
                vmax=None if c == 1 else 1,
            )
            color = "black" if c < 3 else ("green" if cls[c - 3] == pred else "red")
            ax.set_title(label, fontsize=8, color=color)
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()) if title else None)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_reconstruction_curves(summary: Sequence[dict[str, Any]], path: str | Path, *, title: str = "") -> Path:
    """Share of reconstructions keeping the class against the kept fraction, per method, with the controls."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    methods = list(dict.fromkeys(r["method"] for r in summary))
    for m in methods:
        pts = sorted((r["keep"], r["kept_class"], r["se"]) for r in summary if r["method"] == m)
        if m in ("full-image", "prior"):
            ax.axhline(pts[0][1], ls=":", color="grey" if m == "prior" else "black", label=f"{m} ({pts[0][1]:.0%})")
            continue
        k, v, se = (np.array(t) for t in zip(*pts))
        ax.errorbar(k, v, yerr=se, marker="o", capsize=3, ls="--" if m.startswith("random") else "-", label=m)
    ax.axhline(0.89, color="tab:red", lw=0.8, alpha=0.6, label="paper's 89%")
    ax.set_xlabel("fraction of pixels kept (most salient)")
    ax.set_ylabel("reconstructions keeping the class")
    ax.set_ylim(0, 1.02)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.legend(fontsize=7, loc="lower right")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

"""Explaining a handful of real inputs with a reference model: what ``smug demo`` and ``smug explain`` run."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import Config
from .errors import ConfigError
from .saliency import Explanation, explain

__all__ = ["DEMO_CONFIG", "DemoRow", "load_model", "load_inputs", "run_explanations", "format_table"]

#: The demo's settings: enough neurons and a high enough gamma that the mask shows the digit's evidence.
DEMO_CONFIG = Config(top_k=200, gamma=0.8, window=2, time_limit=60.0)

DATASETS = ("mnist", "digits")


@dataclass
class DemoRow:
    """One explained input: what the demo table prints."""

    index: int
    label: int
    explanation: Explanation
    seconds: float
    png: Path | None


def load_model(spec: str) -> nn.Module:
    """A reference model by name (``mnist_cnn``, ``mnist_mlp``: trained and cached on first use) or a saved module.

    A path must name a file written by ``torch.save(model)`` (a whole module) or a TorchScript file.
    """
    from .models import pretrained

    if spec in ("mnist_cnn", "mnist_mlp"):
        return pretrained(spec)
    p = Path(spec)
    if not p.exists():
        raise ConfigError(
            f"model {spec!r} is neither a reference model ('mnist_cnn', 'mnist_mlp') nor an existing file"
        )
    try:
        return torch.jit.load(str(p)).eval()
    except Exception:  # not TorchScript: a pickled module
        obj = torch.load(str(p), weights_only=False)
        if not isinstance(obj, nn.Module):
            raise ConfigError(
                f"{spec!r} holds a {type(obj).__name__}, not a torch.nn.Module (save the whole model)"
            ) from None
        return obj.eval()


def load_inputs(dataset: str, split: str, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels at ``indices`` of a bundled dataset (``mnist`` or ``digits``)."""
    from .data import load_digits, load_mnist

    if dataset == "mnist":
        X, y = load_mnist(split)
    elif dataset == "digits":
        X, y = load_digits()
    else:
        raise ConfigError(f"dataset {dataset!r} is unknown; choose one of {DATASETS}")
    bad = [i for i in indices if not 0 <= i < len(X)]
    if bad:
        raise ConfigError(f"indices {bad} are out of range for {dataset} ({len(X)} inputs)")
    return np.array(X[list(indices)]), np.array(y[list(indices)])


def run_explanations(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    indices: Sequence[int],
    config: Config,
    out_dir: Path | None,
    *,
    progress: bool = True,
) -> list[DemoRow]:
    """Explain each image, show a progress bar, and save ``input | mask | saliency`` PNGs to ``out_dir``."""
    from tqdm import tqdm

    rows = []
    it = tqdm(list(zip(indices, images, labels)), desc="explaining", unit="input", disable=not progress)
    for idx, img, lab in it:
        t0 = time.perf_counter()
        e = explain(model, torch.from_numpy(img), config=config)
        secs = time.perf_counter() - t0
        png = None
        if out_dir is not None:
            png = e.save(Path(out_dir) / f"explanation_{idx:05d}.png")
            e.save(Path(out_dir) / f"explanation_{idx:05d}.json")
        rows.append(DemoRow(int(idx), int(lab), e, secs, png))
        it.set_postfix(status=e.status.value, size=e.mask_size)
    return rows


def format_table(rows: list[DemoRow]) -> str:
    """The demo's table: digit, prediction, mask size, status, verified, time."""
    head = (
        f"{'index':>6} {'digit':>5} {'pred':>4} {'masked':>6} {'compl.':>6} {'mask':>5} {'pixels':>6} "
        f"{'constr.':>7} {'status':<9} {'verified':<8} {'time (s)':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        e = r.explanation
        lines.append(
            f"{r.index:>6} {r.label:>5} {e.prediction:>4} {e.masked_prediction:>6} {e.complement_prediction:>6} "
            f"{e.mask_size:>5} {int(e.mask.sum()):>6} {e.n_constraints:>7} {e.status.value:<9} "
            f"{str(e.verified):<8} {r.seconds:>8.2f}"
        )
    return "\n".join(lines)


def describe(config: Config, extra: dict[str, Any]) -> str:
    """One line stating the settings used, for the demo's header."""
    w = config.window
    return (
        f"backend={config.backend} top_k={config.top_k} gamma={config.gamma} window={w} "
        f"scoring={config.scoring} time_limit={config.time_limit} " + " ".join(f"{k}={v}" for k, v in extra.items())
    )

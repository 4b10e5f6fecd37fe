"""The SMUG pipeline: model + input -> minimal mask -> saliency map.

1. score the first layer's neurons (:mod:`smug.encoders.selection`);
2. keep the top-k with a positive original pre-activation;
3. state "each kept neuron's pre-activation on the masked input exceeds gamma x
   its original value" as an IR problem over one 0/1 variable per group of
   input features (:mod:`smug.encoders`), minimising the kept count or area;
4. solve it with the configured backend (:func:`smug.solve`);
5. replay the mask through the real model in float64, and record the
   prediction on the masked input and on its complement;
6. saliency: each pixel's base value is the largest (or summed) score of the kept
   neurons whose receptive field covers it; the SMUG map is the minimal mask
   times the base map.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import Config
from ..encoders import feature_groups, find_first_layer, group_areas, groups_matrix, make_baseline
from ..encoders.selection import Selection
from ..errors import NonFiniteError, ShapeError, ValidationError
from ..ir import Problem
from ..solving.contract import Solution, Status
from .common import (
    base_map as saliency_base_map,
)
from .common import (
    capture,
    check_called_once,
    check_target,
    first_layer_problem,
    guarded_forward,
    model_device_dtype,
    predictions,
    replay_check,
    resolve_config,
    restores_modes,
    run_solver,
    score_and_select,
    solution_mask,
    solve_stats,
)
from .results import save_explanation

__all__ = ["Explanation", "explain_image", "image_explanation_problem"]


@dataclass
class Explanation:
    """A SMUG explanation of one prediction.

    Attributes:
        mask: 0/1 array shaped like the input's spatial dims (H, W): kept pixels.
        saliency: the SMUG saliency map (H, W): mask x base map.
        base_map: the base map (H, W) before masking.
        mask_groups: the solver's 0/1 value per mask variable (group).
        alternatives: further minimal masks (H, W) when enumeration was asked for.
        status: the solver's status (``"optimal"``, ``"feasible"``, ...).
        verified: every kept neuron's constraint held when the mask was replayed
            through the real model in float64.
        target: the explained class.
        prediction: the model's class on the original input; ``probability`` its probability.
        masked_prediction, masked_probability: on the masked input (kept features only).
        complement_prediction, complement_probability: on the complement (kept features removed).
        neurons: flat indices of the constrained first-layer neurons.
        scores: every first-layer neuron's score.
        n_constraints: how many constraints were imposed (<= top_k).
        input: the explained input (C, H, W).
        stats: timings (scoring, build, solve, replay), sizes, backend, version, seed, bound, gap.
        config: the configuration used.
        solution: the raw :class:`~smug.solving.contract.Solution`.
    """

    mask: np.ndarray
    saliency: np.ndarray
    base_map: np.ndarray
    mask_groups: np.ndarray
    alternatives: list[np.ndarray]
    status: Status
    verified: bool
    target: int
    prediction: int
    probability: float
    masked_prediction: int
    masked_probability: float
    complement_prediction: int
    complement_probability: float
    neurons: np.ndarray
    scores: np.ndarray
    n_constraints: int
    input: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)
    config: Config = field(default_factory=Config)
    solution: Solution | None = None

    @property
    def mask_size(self) -> int:
        """Number of kept groups (the objective for ``objective="count"``)."""
        return int(self.mask_groups.sum())

    @property
    def kept_fraction(self) -> float:
        """Fraction of the input's pixels kept."""
        return float(self.mask.mean())

    def to_dict(self) -> dict[str, Any]:
        """Plain data (no input image): for JSON reports and tables."""
        return {
            "status": self.status.value,
            "verified": self.verified,
            "target": self.target,
            "prediction": self.prediction,
            "probability": self.probability,
            "masked_prediction": self.masked_prediction,
            "masked_probability": self.masked_probability,
            "complement_prediction": self.complement_prediction,
            "complement_probability": self.complement_probability,
            "mask_size": self.mask_size,
            "kept_fraction": self.kept_fraction,
            "n_constraints": self.n_constraints,
            "mask": self.mask.astype(int).tolist(),
            "stats": self.stats,
            "config": self.config.to_dict(),
        }

    def plot(self, ax: Any = None, *, title: str | None = None) -> Any:
        """Input, minimal mask and saliency overlay side by side; returns the matplotlib figure."""
        import matplotlib.pyplot as plt

        if ax is None:
            fig, ax = plt.subplots(1, 3, figsize=(9, 3.2))
        else:
            fig = ax[0].figure
        img = self.input
        show = img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))
        cmap = "gray" if img.shape[0] == 1 else None
        lo, hi = float(np.min(show)), float(np.max(show))
        norm = (show - lo) / (hi - lo) if hi > lo else show * 0
        ax[0].imshow(norm, cmap=cmap)
        ax[0].set_title(f"input: class {self.prediction} ({self.probability:.2f})")
        ax[1].imshow(norm, cmap=cmap, alpha=0.35)
        ax[1].imshow(np.ma.masked_where(self.mask == 0, self.mask), cmap="autumn", alpha=0.9, vmin=0, vmax=1)
        px = int(self.mask.sum())
        ax[1].set_title(f"minimal mask: {self.mask_size} groups, {px} px ({self.status.value})", fontsize=9)
        ax[2].imshow(norm, cmap="gray" if cmap else None, alpha=0.5)
        sal = np.ma.masked_where(self.saliency <= 0, self.saliency)
        im = ax[2].imshow(sal, cmap="jet", alpha=0.75)
        ax[2].set_title("SMUG saliency")
        fig.colorbar(im, ax=ax[2], fraction=0.046, pad=0.04)
        for a in ax:
            a.set_xticks([])
            a.set_yticks([])
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return fig

    def save(self, path: str | Path) -> Path:
        """Save as ``.png`` (the plot), ``.json`` (:meth:`to_dict`) or ``.npz`` (every array)."""
        return save_explanation(
            path,
            self.to_dict,
            lambda: {
                "mask": self.mask,
                "saliency": self.saliency,
                "base_map": self.base_map,
                "mask_groups": self.mask_groups,
                "input": self.input,
                "neurons": self.neurons,
                "scores": self.scores,
            },
            figure=self.plot,
        )


# ----------------------------------------------------------------- helpers
def _as_input(x: Any) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.array(x))  # a copy: inputs may be read-only views of cached data
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"the input must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise ValidationError(
            f"the input has dtype {x.dtype}; smug needs floating point (for uint8 images: x.float() / 255)"
        )
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ShapeError(
                f"explain() takes one input, got a batch of {x.shape[0]}; use MinimalMask.attribute for batches"
            )
        x = x[0]
    if x.dim() != 3:
        raise ShapeError(f"the input must have shape (C, H, W) or (1, C, H, W), got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise NonFiniteError("the input contains NaN or infinite values")
    return x.detach().cpu()


# ------------------------------------------------------------------ explain
@dataclass
class _Prepared:
    """Everything computed before the solve (shared by :func:`explain` and :func:`explanation_problem`)."""

    cfg: Config
    model: nn.Module
    x_np: np.ndarray
    layer: Any
    hook_name: str
    scores: np.ndarray
    selection: Selection
    base_arr: np.ndarray
    prediction: int
    target: int
    problem: Any
    stats: dict[str, Any]


def _prepare(
    model: nn.Module,
    x: Any,
    target: int | None,
    config: Config | None,
    baseline: Any,
    feature_mask: Any,
    overrides: dict[str, Any],
) -> _Prepared:
    cfg = resolve_config(model, config, overrides)
    model = model.eval()
    xt = _as_input(x)
    device, dtype = model_device_dtype(model)
    xb = xt.unsqueeze(0).to(device=device, dtype=dtype)
    stats: dict[str, Any] = {}

    t0 = time.perf_counter()
    logits, calls = guarded_forward(model, xb)
    probs = torch.softmax(logits, dim=1)[0]
    prediction = int(probs.argmax())
    target = check_target(target, probs.shape[0], prediction)

    layer = find_first_layer(model, cfg.first_layer, example_input=xb)
    check_called_once(model, calls, layer.name)
    x_np = xt.double().numpy()
    pre = layer.preactivations(x_np)
    hook_name, scores, selection = score_and_select(model, xb, layer.module_names, pre, target, cfg, cfg.top_k)
    stats["scoring_time"] = time.perf_counter() - t0

    # ---- encode
    t1 = time.perf_counter()
    base_arr = make_baseline(x_np, cfg.baseline if baseline is None else baseline)
    if feature_mask is not None:
        if isinstance(feature_mask, torch.Tensor):
            feature_mask = feature_mask.detach().cpu().numpy()
        ids = feature_groups(tuple(x_np.shape), feature_mask=feature_mask)
    else:
        ids = feature_groups(tuple(x_np.shape), window=cfg.window)
    neurons = selection.neurons
    C, d = layer.affine_rows(x_np, base_arr, ids, neurons)
    n_groups = int(ids.max()) + 1
    weights = group_areas(ids).astype(np.float64) if cfg.objective == "area" else np.ones(n_groups)
    problem = first_layer_problem(
        C,
        d,
        pre[neurons],
        cfg,
        groups_matrix(ids),
        tuple(x_np.shape),
        weights,
        {"first_layer": layer.name, "target": target, "neurons": neurons.tolist()},
    )
    stats["build_time"] = time.perf_counter() - t1
    return _Prepared(
        cfg, model, x_np, layer, hook_name, scores, selection, base_arr, prediction, target, problem, stats
    )


@restores_modes
def image_explanation_problem(
    model: nn.Module,
    x: Any,
    target: int | None = None,
    config: Config | None = None,
    *,
    baseline: Any = None,
    feature_mask: Any = None,
    **overrides: Any,
) -> Problem:
    """The IR problem :func:`explain_image` would solve, without solving it (see :func:`smug.explain.api.explain`)."""
    return _prepare(model, x, target, config, baseline, feature_mask, overrides).problem


@restores_modes
def explain_image(
    model: nn.Module,
    x: Any,
    target: int | None = None,
    config: Config | None = None,
    *,
    baseline: Any = None,
    feature_mask: Any = None,
    **overrides: Any,
) -> Explanation:
    """SMUG on one image; arguments as for :func:`smug.explain.api.explain` (which dispatches here)."""
    prep = _prepare(model, x, target, config, baseline, feature_mask, overrides)
    cfg, model, x_np, layer = prep.cfg, prep.model, prep.x_np, prep.layer
    hook_name, scores, selection, base_arr = prep.hook_name, prep.scores, prep.selection, prep.base_arr
    prediction, target, problem, stats = prep.prediction, prep.target, prep.problem, prep.stats
    neurons = selection.neurons

    # ---- solve
    sol = run_solver(problem, cfg)
    spatial = tuple(x_np.shape[1:])
    mask_groups = solution_mask(sol, problem.n_mask)

    def spatial_mask(mg: np.ndarray) -> np.ndarray:
        kept = problem.features_kept(mg)
        return kept.reshape(x_np.shape).max(axis=0)

    mask = spatial_mask(mask_groups)

    # ---- replay in float64 through the real model
    t2 = time.perf_counter()
    kept_full = problem.features_kept(mask_groups).reshape(x_np.shape)
    x_masked = base_arr + kept_full * (x_np - base_arr)
    x_compl = base_arr + (1 - kept_full) * (x_np - base_arr)
    m64 = copy.deepcopy(model).cpu().double().eval()
    batch = torch.from_numpy(np.stack([x_np, x_masked, x_compl]))
    layer_out, logits3 = capture(m64, layer.module_names[-1], batch)
    pre_replay = layer_out.reshape(3, -1).numpy()
    probs3 = torch.softmax(logits3, dim=1).numpy()
    verified, min_margin = replay_check(pre_replay, neurons, cfg, sol)
    stats["replay_time"] = time.perf_counter() - t2

    # ---- saliency
    rf = layer.receptive_fields(tuple(x_np.shape), neurons)
    base_map = saliency_base_map(rf, scores[neurons], cfg.saliency, spatial)
    saliency = mask * base_map

    stats.update(solve_stats(problem, sol, cfg))
    stats.update(
        {
            "first_layer": layer.name,
            "scored_at": hook_name,
            "eligible_neurons": selection.eligible,
            "max_replay_margin": min_margin,
        }
    )
    return Explanation(
        mask=mask,
        saliency=saliency,
        base_map=base_map,
        mask_groups=mask_groups,
        alternatives=[spatial_mask(m) for m in sol.masks[1:]],
        status=sol.status,
        verified=verified,
        target=target,
        **predictions(probs3, prediction, target),
        neurons=neurons,
        scores=scores,
        n_constraints=selection.imposed,
        input=x_np,
        stats=stats,
        config=cfg,
        solution=sol,
    )

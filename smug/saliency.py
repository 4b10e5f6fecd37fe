"""The SMUG pipeline: model + input -> minimal mask -> saliency map.

1. score the first layer's neurons (:mod:`smug.selection`);
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
import json
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from .backends.base import Solution, Status
from .config import Config
from .encoders import feature_groups, find_first_layer, group_areas, groups_matrix, make_baseline
from .errors import ConfigError, NonFiniteError, ShapeError, ValidationError
from .ir import Problem, ProblemBuilder
from .selection import Selection, hook_point, score_neurons, select_neurons
from .solve import solve

__all__ = ["Explanation", "explain", "explanation_problem", "MinimalMask"]


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
        solution: the raw :class:`~smug.backends.base.Solution`.
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


def save_explanation(
    path: str | Path,
    to_dict: Any,
    arrays: Any,
    *,
    figure: Any = None,
    html: Any = None,
) -> Path:
    """Write an explanation by the path's suffix: ``.json`` (``to_dict()``), ``.npz`` (``arrays()``, compressed),
    ``.png`` (``figure()``, a matplotlib figure) or ``.html`` / ``.htm`` (``html()``, a page), each only when given.

    Parent folders are created.  Raises :class:`~smug.errors.ValidationError` naming the suffixes
    this explanation can be saved as.
    """
    p = Path(path)
    writers = {".json": "json", ".npz": "npz"}
    if figure is not None:
        writers[".png"] = "png"
    if html is not None:
        writers.update({".html": "html", ".htm": "html"})
    kind = writers.get(p.suffix)
    if kind is None:
        shown = [k for k in (".png", ".html", ".json", ".npz") if k in writers]
        raise ValidationError(f"cannot save to {str(p)!r}: use a {', '.join(shown[:-1])} or {shown[-1]} path")
    p.parent.mkdir(parents=True, exist_ok=True)
    if kind == "png":
        import matplotlib.pyplot as plt

        fig = figure()
        fig.savefig(p, dpi=110)
        plt.close(fig)
    elif kind == "html":
        p.write_text(html(), encoding="utf-8")
    elif kind == "json":
        p.write_text(json.dumps(to_dict(), indent=2))
    else:
        np.savez_compressed(p, **arrays())
    return p


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
    return x.detach().float()


def _forward_probs(model: nn.Module, xs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(model(xs), dim=1)


def _capture(model: nn.Module, module_name: str, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The output of ``module_name`` and the logits, for a batch."""
    mod = dict(model.named_modules())[module_name]
    out: dict[str, torch.Tensor] = {}
    h = mod.register_forward_hook(lambda m, i, o: out.__setitem__("o", o.detach()))
    try:
        with torch.no_grad():
            logits = model(xs)
    finally:
        h.remove()
    return out["o"], logits


def _base_map(rf: sp.csr_matrix, scores: np.ndarray, rule: str, spatial: tuple[int, int]) -> np.ndarray:
    weighted = sp.csr_matrix(rf.multiply(scores.reshape(-1, 1)))
    if rule == "sum":
        base = np.asarray(weighted.sum(axis=0)).ravel()
    else:
        covered = np.asarray(rf.sum(axis=0)).ravel() > 0
        base = np.zeros(rf.shape[1])
        if weighted.nnz:
            # max over the neurons that cover each pixel (not over implicit zeros)
            coo = weighted.tocoo()
            base = np.full(rf.shape[1], -np.inf)
            np.maximum.at(base, coo.col, coo.data)
            base[~covered] = 0.0
            base[np.isneginf(base)] = 0.0
    return base.reshape(spatial)


# ----------------------------------------------------- shared by images and text
def _caller_level() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside smug (the user's call)."""
    pkg = str(Path(__file__).resolve().parent)
    frame, level = sys._getframe(1), 1
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(pkg):
        frame, level = frame.f_back, level + 1
    return level


def _resolve_config(model: Any, config: Config | None, overrides: dict[str, Any]) -> Config:
    cfg = (config or Config()).merged(**overrides) if overrides else (config or Config())
    if cfg.gamma + cfg.margin >= 1:
        raise ConfigError(f"gamma ({cfg.gamma}) + margin ({cfg.margin}) must be below 1, or no mask can satisfy it")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return cfg


def _check_target(target: Any, n_classes: int, prediction: int) -> int:
    if target is None:
        return prediction
    if isinstance(target, torch.Tensor):
        target = int(target.item())
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or not 0 <= int(target) < n_classes:
        raise ValidationError(
            f"target {target!r} is out of range: the model has {n_classes} classes (0..{n_classes - 1})"
        )
    return int(target)


def _score_and_select(
    model: nn.Module, xb: torch.Tensor, module_names: Any, pre: np.ndarray, target: int, cfg: Config, top_k: int
) -> tuple[str, np.ndarray, Selection]:
    """Score the first layer's neurons (IG by default) and keep the top-k active ones."""
    hook_name, _ = hook_point(model, xb, module_names)
    scores = score_neurons(
        model,
        xb,
        target,
        dict(model.named_modules())[hook_name],
        method=cfg.scoring,
        steps=cfg.ig_steps,
        batch=cfg.ig_batch,
    )
    selection = select_neurons(scores, pre, top_k)
    if selection.imposed < top_k:
        warnings.warn(
            f"only {selection.imposed} of the first layer's neurons are active on this input; "
            f"imposing {selection.imposed} constraints instead of top_k={top_k}",
            stacklevel=_caller_level(),
        )
    return hook_name, scores, selection


def _first_layer_problem(
    C: sp.csr_matrix,
    d: np.ndarray,
    orig: np.ndarray,
    cfg: Config,
    groups: sp.csr_matrix,
    input_shape: tuple[int, ...],
    weights: np.ndarray,
    metadata: dict[str, Any],
) -> Problem:
    """The SMUG problem: minimise ``weights . m`` s.t. ``C m + d > gamma * orig`` (with the relative margin)."""
    b = ProblemBuilder()
    mv = b.add_mask(groups.shape[0], groups=groups, input_shape=input_shape)
    if C.shape[0]:
        b.add_rows(C, ">=", cfg.gamma * orig - d, strict=True, margin=cfg.margin * orig)
    b.set_objective(mv, weights)
    b.metadata.update({"kind": "smug-first-layer", "gamma": cfg.gamma, **metadata})
    return b.build()


def _run_solver(problem: Problem, cfg: Config) -> Solution:
    return solve(
        problem,
        cfg.backend,
        time_limit=cfg.time_limit,
        seed=cfg.seed,
        threads=cfg.threads,
        num_solutions=cfg.num_solutions,
        verbose=cfg.verbose,
        **cfg.backend_options,
    )


def _solution_mask(sol: Solution, n_groups: int) -> np.ndarray:
    """The solver's mask, or everything kept (trivially sufficient; the status says so) when none was found."""
    if sol.mask is not None:
        return sol.mask.astype(np.int8)
    return np.ones(n_groups, dtype=np.int8)


def _replay_check(pre_replay: np.ndarray, neurons: np.ndarray, cfg: Config, sol: Solution) -> tuple[bool, float | None]:
    """(verified, smallest margin): row 0 the original pre-activations, row 1 those under the mask."""
    if not neurons.size:
        return sol.status.has_solution, None
    slack = pre_replay[1, neurons] - cfg.gamma * pre_replay[0, neurons]
    return bool(np.all(slack > 0)) and sol.status.has_solution, float(np.min(slack))


def _predictions(probs3: np.ndarray, prediction: int, target: int) -> dict[str, Any]:
    """The prediction fields of an explanation from the softmax of (original, kept only, kept removed)."""
    return {
        "prediction": prediction,
        "probability": float(probs3[0, prediction]),
        "masked_prediction": int(probs3[1].argmax()),
        "masked_probability": float(probs3[1, target]),
        "complement_prediction": int(probs3[2].argmax()),
        "complement_probability": float(probs3[2, target]),
    }


def _solve_stats(problem: Problem, sol: Solution, cfg: Config) -> dict[str, Any]:
    return {
        "solve_time": sol.solve_time,
        "solver_build_time": sol.build_time,
        "variables": problem.n_vars,
        "constraints": problem.n_rows,
        "nonzeros": int(problem.A.nnz),
        "objective": sol.objective,
        "bound": sol.bound,
        "gap": sol.gap,
        "backend": sol.backend,
        "version": sol.version,
        "seed": cfg.seed,
    }


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
    cfg = _resolve_config(model, config, overrides)
    model = model.eval()
    xt = _as_input(x)
    xb = xt.unsqueeze(0)
    stats: dict[str, Any] = {}

    t0 = time.perf_counter()
    probs = _forward_probs(model, xb)[0]
    prediction = int(probs.argmax())
    target = _check_target(target, probs.shape[0], prediction)

    layer = find_first_layer(model, cfg.first_layer, example_input=xb)
    x_np = xt.double().numpy()
    pre = layer.preactivations(x_np)
    hook_name, scores, selection = _score_and_select(model, xb, layer.module_names, pre, target, cfg, cfg.top_k)
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
    problem = _first_layer_problem(
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


def explanation_problem(
    model: nn.Module,
    x: Any,
    target: int | None = None,
    config: Config | None = None,
    *,
    baseline: Any = None,
    feature_mask: Any = None,
    tokenizer: Any = None,
    maskable: Any = None,
    **overrides: Any,
) -> Problem:
    """The IR problem :func:`explain` would solve, without solving it.

    For backend comparison studies: score and encode once, then hand the same
    problem to every backend with :func:`smug.solve`.  Arguments as for
    :func:`explain` (images and text alike).
    """
    if _is_text_input(model, x):
        from .text_explain import text_explanation_problem

        _no_feature_mask_for_text(feature_mask)
        return text_explanation_problem(
            model, x, target, config, baseline=baseline, tokenizer=tokenizer, maskable=maskable, **overrides
        )
    _no_text_options_for_images(tokenizer, maskable, model, x)
    return _prepare(model, x, target, config, baseline, feature_mask, overrides).problem


def _is_text_input(model: Any, x: Any) -> bool:
    """A string, a list of strings' ids, or an integer tensor / array for a model with an ``nn.Embedding``."""
    if isinstance(x, str):
        return True
    if isinstance(x, (list, tuple)) and x and all(isinstance(v, (int, np.integer)) for v in x):
        return True
    has_embedding = isinstance(model, nn.Module) and any(isinstance(m, nn.Embedding) for m in model.modules())
    if isinstance(x, torch.Tensor) and not torch.is_floating_point(x) and x.dtype != torch.bool:
        return has_embedding
    if isinstance(x, np.ndarray) and x.dtype.kind in "iu":
        return has_embedding
    return False


def _no_feature_mask_for_text(feature_mask: Any) -> None:
    if feature_mask is not None:
        raise ValidationError(
            "feature_mask groups pixels of an image; for text, choose the maskable token positions with maskable="
        )


def _no_text_options_for_images(tokenizer: Any, maskable: Any, model: Any = None, x: Any = None) -> None:
    first = next((m for m in model.modules() if next(m.children(), None) is None), None) if model is not None else None
    if isinstance(first, nn.Embedding) and (isinstance(x, (torch.Tensor, np.ndarray))):
        raise ValidationError(
            "this model starts with nn.Embedding, so it takes token ids: pass an integer tensor of ids, or a string "
            f"with tokenizer=; got {getattr(x, 'dtype', type(x).__name__)} values"
        )
    if tokenizer is not None or maskable is not None:
        raise ValidationError(
            "tokenizer= and maskable= are for text inputs (a string or integer token ids with a model that starts "
            "with nn.Embedding); this input is an image"
        )


def explain(
    model: nn.Module,
    x: Any,
    target: int | None = None,
    config: Config | None = None,
    *,
    baseline: Any = None,
    feature_mask: Any = None,
    tokenizer: Any = None,
    maskable: Any = None,
    **overrides: Any,
) -> Any:
    """Explain ``model``'s prediction on ``x`` by a minimal mask (the SMUG method).

    Images and text share this entry point: a string, or integer token ids for
    a model that starts with ``nn.Embedding``, is explained as text (see
    :func:`smug.text_explain.explain_text`) and gives a
    :class:`~smug.text_explain.TextExplanation`.

    Args:
        model: a PyTorch classifier returning logits; its first layer must be
            ``Linear`` (after ``Flatten``) or ``Conv2d`` (BatchNorm folded), or,
            for text, ``Conv1d`` / ``Linear`` right after an ``nn.Embedding``.
        x: one image, shape (C, H, W) or (1, C, H, W), floating point; or one
            text: a string (needs ``tokenizer``) or token ids, shape (L,) or (1, L).
        target: the class to explain (default: the predicted class).
        config: a :class:`~smug.config.Config`; ``**overrides`` replace its fields
            (for example ``backend="z3", top_k=20``).
        baseline: the value masked features take, overriding ``config.baseline``:
            ``"zero"``, ``"mean"``, a number, or a tensor shaped like ``x``; for
            text ``"zero"``, ``"pad"`` or an embedding-sized vector.
        feature_mask: Captum-style integer segment map (superpixels) shaped like
            ``x`` or its spatial dims; replaces the window grouping (images only).
        tokenizer: text only: turns a string into ids -- a
            :class:`smug.text.Vocabulary` (as :func:`smug.text.pretrained_text_cnn`
            returns) or any callable ``str -> list[int]``; also names the tokens.
        maskable: text only: which token positions get a mask variable
            (default: every non-pad position).

    Returns:
        An :class:`Explanation` (images) or a :class:`~smug.text_explain.TextExplanation` (text).
    """
    if _is_text_input(model, x):
        from .text_explain import explain_text

        _no_feature_mask_for_text(feature_mask)
        return explain_text(
            model, x, target, config, baseline=baseline, tokenizer=tokenizer, maskable=maskable, **overrides
        )
    _no_text_options_for_images(tokenizer, maskable, model, x)
    prep = _prepare(model, x, target, config, baseline, feature_mask, overrides)
    cfg, model, x_np, layer = prep.cfg, prep.model, prep.x_np, prep.layer
    hook_name, scores, selection, base_arr = prep.hook_name, prep.scores, prep.selection, prep.base_arr
    prediction, target, problem, stats = prep.prediction, prep.target, prep.problem, prep.stats
    neurons = selection.neurons

    # ---- solve
    sol = _run_solver(problem, cfg)
    spatial = tuple(x_np.shape[1:])
    mask_groups = _solution_mask(sol, problem.n_mask)

    def spatial_mask(mg: np.ndarray) -> np.ndarray:
        kept = problem.features_kept(mg)
        return kept.reshape(x_np.shape).max(axis=0)

    mask = spatial_mask(mask_groups)

    # ---- replay in float64 through the real model
    t2 = time.perf_counter()
    kept_full = problem.features_kept(mask_groups).reshape(x_np.shape)
    x_masked = base_arr + kept_full * (x_np - base_arr)
    x_compl = base_arr + (1 - kept_full) * (x_np - base_arr)
    m64 = copy.deepcopy(model).double().eval()
    batch = torch.from_numpy(np.stack([x_np, x_masked, x_compl]))
    layer_out, logits3 = _capture(m64, layer.module_names[-1], batch)
    pre_replay = layer_out.reshape(3, -1).numpy()
    probs3 = torch.softmax(logits3, dim=1).numpy()
    verified, min_margin = _replay_check(pre_replay, neurons, cfg, sol)
    stats["replay_time"] = time.perf_counter() - t2

    # ---- saliency
    rf = layer.receptive_fields(tuple(x_np.shape), neurons)
    base_map = _base_map(rf, scores[neurons], cfg.saliency, spatial)
    saliency = mask * base_map

    stats.update(_solve_stats(problem, sol, cfg))
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
        **_predictions(probs3, prediction, target),
        neurons=neurons,
        scores=scores,
        n_constraints=selection.imposed,
        input=x_np,
        stats=stats,
        config=cfg,
        solution=sol,
    )


class MinimalMask:
    """Captum-style SMUG attribution: ``MinimalMask(model).attribute(inputs, target=...)``.

    Attributions are shaped like the (batch-first) inputs: each sample's SMUG
    saliency map, repeated over channels.  The per-sample
    :class:`Explanation` objects are kept in ``self.explanations``.

    Example:
        >>> mm = MinimalMask(model, backend="ortools:scip", top_k=20)
        >>> attr = mm.attribute(images, target=labels)

    For text, pass the tokenizer (e.g. the vocabulary of
    :func:`smug.text.pretrained_text_cnn`) and token ids or strings:

        >>> mm = MinimalMask(text_model, tokenizer=vocab, top_k=30, gamma=0.5)
        >>> attr = mm.attribute(["a gorgeous, witty film", "dull and overlong"])
    """

    def __init__(
        self,
        model: nn.Module,
        backend: str | None = None,
        config: Config | None = None,
        *,
        tokenizer: Any = None,
        **overrides: Any,
    ):
        self.model = model
        self.tokenizer = tokenizer
        cfg = config or Config()
        if backend is not None:
            overrides["backend"] = backend
        self.config = cfg.merged(**overrides) if overrides else cfg
        self.explanations: list[Any] = []

    def attribute(
        self,
        inputs: torch.Tensor,
        target: Any = None,
        baselines: Any = None,
        feature_mask: Any = None,
    ) -> torch.Tensor:
        """SMUG saliency for each input of a batch.

        Text: ``inputs`` is a ``(B, L)`` integer tensor of token ids (each row
        explained as given, padding included, pad positions unmasked) and the
        result is a ``(B, L)`` float tensor of token saliencies; or a list of
        strings (the ``tokenizer`` given to the constructor encodes them) and the
        result is a list of 1-D tensors, one per text.

        Args:
            inputs: (B, C, H, W) images, (B, L) token ids, or a list of strings.
            target: ``None`` (each sample's predicted class), an int, or a
                sequence / tensor of B ints.
            baselines: ``None`` (the config's), a number, or a tensor shaped like
                ``inputs`` or like one sample.
            feature_mask: integer segment ids shaped like ``inputs``, like one
                sample, or like the spatial dims (Captum's convention).

        Returns:
            A tensor shaped like ``inputs``.
        """
        if isinstance(inputs, (list, tuple)) or (
            isinstance(inputs, torch.Tensor)
            and not torch.is_floating_point(inputs)
            and _is_text_input(self.model, inputs)
        ):
            return self._attribute_text(inputs, target, baselines)
        if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4:
            shape = tuple(inputs.shape) if hasattr(inputs, "shape") else type(inputs).__name__
            raise ShapeError(f"inputs must be a batch-first tensor (B, C, H, W), got {shape}")
        bsz = inputs.shape[0]

        def per_sample(v: Any, name: str) -> list[Any]:
            if v is None or isinstance(v, (int, float, str)):
                return [v] * bsz
            if isinstance(v, torch.Tensor) and v.dim() == 0:
                return [v.item()] * bsz
            if isinstance(v, torch.Tensor) and name != "target" and v.dim() == inputs.dim() and v.shape[0] == bsz:
                return list(v)
            if isinstance(v, torch.Tensor) and name != "target" and (v.dim() < inputs.dim() or v.shape[0] == 1):
                return [v[0] if v.dim() == inputs.dim() else v] * bsz
            seq = list(v.tolist() if isinstance(v, torch.Tensor) else v)
            if len(seq) != bsz:
                raise ShapeError(f"{name} has {len(seq)} entries for a batch of {bsz}")
            return seq

        targets = per_sample(target, "target")
        bases = per_sample(baselines, "baselines")
        masks = per_sample(feature_mask, "feature_mask")
        out = torch.zeros_like(inputs, dtype=torch.float32)
        self.explanations = []
        for i in range(bsz):
            base_i = bases[i]
            if isinstance(base_i, torch.Tensor):
                base_i = base_i.detach().double().numpy()
            e = explain(self.model, inputs[i], targets[i], self.config, baseline=base_i, feature_mask=masks[i])
            self.explanations.append(e)
            out[i] = torch.from_numpy(e.saliency).float().unsqueeze(0).expand_as(inputs[i])
        return out

    def _attribute_text(self, inputs: Any, target: Any, baselines: Any) -> Any:
        bsz = len(inputs)
        if isinstance(target, torch.Tensor):
            target = target.tolist()
        targets = list(target) if isinstance(target, (list, tuple)) else [target] * bsz
        if len(targets) != bsz:
            raise ShapeError(f"target has {len(targets)} entries for a batch of {bsz}")
        if isinstance(inputs, torch.Tensor) and inputs.dim() != 2:
            raise ShapeError(f"token ids must be a batch (B, L), got shape {tuple(inputs.shape)}")
        if baselines is not None and not isinstance(baselines, str):
            raise ValidationError("for text, baselines must be 'zero' or 'pad' (or set a vector with explain())")
        self.explanations = []
        out = []
        for i in range(bsz):
            e = explain(self.model, inputs[i], targets[i], self.config, baseline=baselines, tokenizer=self.tokenizer)
            self.explanations.append(e)
            out.append(torch.from_numpy(e.saliency).float())
        if isinstance(inputs, torch.Tensor):
            return torch.stack(out)
        return out

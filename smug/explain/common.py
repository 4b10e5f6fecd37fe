"""Helpers shared by the image and text SMUG pipelines (and the whole-network one): public, so no module
reaches into another's private names."""

from __future__ import annotations

import contextlib
import itertools
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ..config import Config
from ..encoders.selection import Selection, hook_point, score_neurons, select_neurons
from ..errors import ConfigError, NonFiniteError, ShapeError, ValidationError
from ..ir import Problem, ProblemBuilder
from ..solving.contract import Solution
from ..solving.run import solve

__all__ = [
    "kept_modes",
    "restores_modes",
    "check_finite_model",
    "expected_input",
    "guarded_forward",
    "check_called_once",
    "capture",
    "base_map",
    "caller_level",
    "resolve_config",
    "check_target",
    "score_and_select",
    "first_layer_problem",
    "run_solver",
    "model_device_dtype",
    "solution_mask",
    "replay_check",
    "predictions",
    "solve_stats",
    "is_text_input",
    "no_feature_mask_for_text",
    "no_text_options_for_images",
]


@contextlib.contextmanager
def kept_modes(model: Any) -> Iterator[None]:
    """Restore every module's ``training`` flag on exit: explaining puts the model in eval mode, the caller's
    model comes back in the mode it was in."""
    if not isinstance(model, nn.Module):
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def restores_modes(fn: Any) -> Any:
    """Decorator: run ``fn(model, ...)`` inside :func:`kept_modes` of its first argument."""
    import functools

    @functools.wraps(fn)
    def wrapper(model: Any, *args: Any, **kwargs: Any) -> Any:
        with kept_modes(model):
            return fn(model, *args, **kwargs)

    return wrapper


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """The device and floating dtype of ``model``'s first floating parameter or buffer (CPU float32 if none).

    Inputs are cast to these before the model runs, so float64 models and CUDA models take the
    caller's input as they would in their own code; the solver side always works on CPU float64 copies.
    """
    for t in itertools.chain(model.parameters(), model.buffers()):
        if torch.is_floating_point(t):
            return t.device, t.dtype
    return torch.device("cpu"), torch.float32


def check_finite_model(model: nn.Module) -> None:
    """Raise :class:`NonFiniteError` naming the first parameter or buffer with a NaN or infinite value."""
    for name, t in itertools.chain(model.named_parameters(), model.named_buffers()):
        if t is None or not torch.is_floating_point(t):
            continue
        bad = ~torch.isfinite(t.detach())
        if bool(bad.any()):
            n_nan = int(torch.isnan(t.detach()).sum())
            n_inf = int(bad.sum()) - n_nan
            raise NonFiniteError(
                f"the model's {'parameter' if isinstance(t, nn.Parameter) else 'buffer'} {name!r} "
                f"(shape {tuple(t.shape)}) has {n_nan} NaN and {n_inf} infinite value(s); smug needs finite "
                "weights, biases and statistics (check the training run or the file it was loaded from)"
            )


def expected_input(model: nn.Module) -> str:
    """A phrase naming the input the model's first layer takes (for shape errors)."""
    for name, m in model.named_modules():
        label = f"{name!r} " if name else ""
        if isinstance(m, nn.Linear):
            n = m.in_features
            return f"its first layer {label}(Linear) takes {n} features (after flattening), e.g. shape (1, {n})"
        if isinstance(m, nn.Conv2d):
            return f"its first layer {label}(Conv2d) takes {m.in_channels} channel(s): shape (C={m.in_channels}, H, W)"
        if isinstance(m, nn.Conv1d):
            return f"its first layer {label}(Conv1d) takes {m.in_channels} channel(s)"
        if isinstance(m, nn.Embedding):
            return f"its first layer {label}(Embedding) takes token ids below {m.num_embeddings}, shape (L,) or (1, L)"
    return "see the model's first layer"


def guarded_forward(model: nn.Module, xb: torch.Tensor) -> tuple[torch.Tensor, dict[int, int]]:
    """Run ``model`` on the batch ``xb`` without gradients, checked.

    Returns the logits and, per module ``id``, how many times it was called.
    Raises :class:`NonFiniteError` on a non-finite parameter or on the first
    module whose output is not finite (named), and :class:`ShapeError` naming
    the expected input when the model rejects the input's shape or does not
    return logits of shape ``(1, classes)``.
    """
    check_finite_model(model)
    names = {id(m): n for n, m in model.named_modules()}
    calls: dict[int, int] = {}
    first_bad: list[str] = []

    def hook(mod: nn.Module, inp: Any, out: Any) -> None:
        calls[id(mod)] = calls.get(id(mod), 0) + 1
        if not first_bad and isinstance(out, torch.Tensor) and torch.is_floating_point(out):
            if not bool(torch.isfinite(out).all()):
                first_bad.append(names.get(id(mod), type(mod).__name__) or type(mod).__name__)

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            logits = model(xb)
    except (RuntimeError, ValueError, IndexError) as exc:
        raise ShapeError(
            f"the model rejected an input of shape {tuple(xb.shape[1:])} (batch axis removed): "
            f"{type(exc).__name__}: {exc}; {expected_input(model)}"
        ) from exc
    finally:
        for h in handles:
            h.remove()
    if first_bad:
        raise NonFiniteError(
            f"the model's module {first_bad[0]!r} produced NaN or infinite activations on this input "
            "(finite weights can still overflow float32); smug needs finite activations"
        )
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != xb.shape[0]:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ShapeError(f"the model must return logits of shape (1, classes), got {got}")
    return logits, calls


def check_called_once(model: nn.Module, calls: dict[int, int], module_name: str) -> None:
    """Raise when the first layer ``module_name`` runs more than once in one forward pass.

    The encodings assume the first layer is applied once, to the input; a model
    that reuses the module (weight sharing) would get a mask for a different
    network than the one that runs.
    """
    mod = dict(model.named_modules()).get(module_name)
    n = calls.get(id(mod), 0) if mod is not None else 0
    if n > 1:
        raise ValidationError(
            f"the first layer {module_name!r} is called {n} times in one forward pass (the module is reused); "
            "smug encodes it as applied once to the input. Give the later uses their own module, or name "
            "the real first layer with first_layer="
        )


def capture(model: nn.Module, module_name: str, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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


def base_map(rf: sp.csr_matrix, scores: np.ndarray, rule: str, spatial: tuple[int, int]) -> np.ndarray:
    """Per input feature: the largest (``rule="max"``) or summed (``"sum"``) score of the kept neurons covering it.

    ``rf`` is the neurons x features receptive-field matrix; features no neuron covers get 0.
    """
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


def caller_level() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside smug (the user's call)."""
    pkg = str(Path(__file__).resolve().parents[1])  # the smug package, not just smug/explain
    frame, level = sys._getframe(1), 1
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(pkg):
        frame, level = frame.f_back, level + 1
    return level


def resolve_config(model: Any, config: Config | None, overrides: dict[str, Any]) -> Config:
    """``config`` (default: ``Config()``) with ``overrides`` applied, checked before any slow work."""
    cfg = (config or Config()).merged(**overrides) if overrides else (config or Config())
    if cfg.gamma + cfg.margin >= 1:
        raise ConfigError(f"gamma ({cfg.gamma}) + margin ({cfg.margin}) must be below 1, or no mask can satisfy it")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return cfg


def check_target(target: Any, n_classes: int, prediction: int) -> int:
    """The class to explain: ``target`` checked against the model's classes, or the prediction when ``None``."""
    if target is None:
        return prediction
    if isinstance(target, torch.Tensor):
        target = int(target.item())
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or not 0 <= int(target) < n_classes:
        raise ValidationError(
            f"target {target!r} is out of range: the model has {n_classes} classes (0..{n_classes - 1})"
        )
    return int(target)


def score_and_select(
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
            stacklevel=caller_level(),
        )
    return hook_name, scores, selection


def first_layer_problem(
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


def run_solver(problem: Problem, cfg: Config) -> Solution:
    """:func:`smug.solve` with the backend, limits and options of ``cfg``."""
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


def solution_mask(sol: Solution, n_groups: int) -> np.ndarray:
    """The solver's mask, or everything kept (trivially sufficient; the status says so) when none was found."""
    if sol.mask is not None:
        return sol.mask.astype(np.int8)
    return np.ones(n_groups, dtype=np.int8)


def replay_check(pre_replay: np.ndarray, neurons: np.ndarray, cfg: Config, sol: Solution) -> tuple[bool, float | None]:
    """(verified, smallest margin): row 0 the original pre-activations, row 1 those under the mask."""
    if not neurons.size:
        return sol.status.has_solution, None
    slack = pre_replay[1, neurons] - cfg.gamma * pre_replay[0, neurons]
    return bool(np.all(slack > 0)) and sol.status.has_solution, float(np.min(slack))


def predictions(probs3: np.ndarray, prediction: int, target: int) -> dict[str, Any]:
    """The prediction fields of an explanation from the softmax of (original, kept only, kept removed)."""
    return {
        "prediction": prediction,
        "probability": float(probs3[0, prediction]),
        "masked_prediction": int(probs3[1].argmax()),
        "masked_probability": float(probs3[1, target]),
        "complement_prediction": int(probs3[2].argmax()),
        "complement_probability": float(probs3[2, target]),
    }


def solve_stats(problem: Problem, sol: Solution, cfg: Config) -> dict[str, Any]:
    """The solve's numbers an explanation records in its ``stats``."""
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


def is_text_input(model: Any, x: Any) -> bool:
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


def no_feature_mask_for_text(feature_mask: Any) -> None:
    """Refuse ``feature_mask=`` for text (it groups pixels), naming ``maskable=`` instead."""
    if feature_mask is not None:
        raise ValidationError(
            "feature_mask groups pixels of an image; for text, choose the maskable token positions with maskable="
        )


def no_text_options_for_images(tokenizer: Any, maskable: Any, model: Any = None, x: Any = None) -> None:
    """Refuse text-only options for an image, and float input for a model that starts with ``nn.Embedding``."""
    if model is not None and not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
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

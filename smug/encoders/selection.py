"""Scoring and selecting first-layer neurons (SMUG step 1 and 2).

The default score is Integrated Gradients taken with respect to the first
layer's *post-activation* output ``a``: the rest of the network is the function
being attributed, the target is the softmax probability of the explained
class, the baseline is ``a = 0``, and the path integral uses the midpoint rule
with ``steps`` points, evaluated in batches::

    IG_j = a_j * mean_i  d p_target(f(alpha_i * a)) / d a_j,   alpha_i = (i + 1/2) / steps

By completeness, ``sum_j IG_j`` approximates ``p_target(f(a)) - p_target(f(0))``.
Raw activation (``a_j``) and plain gradient (``d p / d a_j``) scores are offered
too.  All scores are indexed like the first layer's flattened output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import ValidationError

__all__ = ["ACTIVATIONS", "hook_point", "score_neurons", "select_neurons", "Selection"]

#: Element-wise activation modules recognised right after the first layer.
ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.ReLU6, nn.Hardtanh)


def _leaf_call_order(model: nn.Module, x: torch.Tensor) -> list[str]:
    order: list[str] = []
    handles = []
    for name, mod in model.named_modules():
        if len(list(mod.children())) == 0:
            handles.append(mod.register_forward_hook(lambda m, i, o, n=name: order.append(n)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return order


def hook_point(model: nn.Module, x: torch.Tensor, layer_names: list[str]) -> tuple[str, bool]:
    """The module whose output is the first layer's post-activation output.

    ``layer_names`` are the modules that make up the first layer (the layer
    itself and a folded BatchNorm, in call order).  Returns ``(name, is_activation)``:
    the element-wise activation module called right after them, or, when the
    activation is not a module (``F.relu`` in ``forward``), the last of
    ``layer_names`` (scores are then taken on the pre-activation output).
    """
    order = _leaf_call_order(model, x)
    last = layer_names[-1]
    if last not in order:
        raise ValidationError(f"the first layer {last!r} is not called in the model's forward pass")
    i = order.index(last)
    mods = dict(model.named_modules())
    if i + 1 < len(order) and isinstance(mods[order[i + 1]], ACTIVATIONS):
        return order[i + 1], True
    return last, False


def _output_hook(module: nn.Module, replace: callable) -> torch.utils.hooks.RemovableHandle:  # type: ignore[valid-type]
    return module.register_forward_hook(lambda m, i, o: replace(o))


def score_neurons(
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    hook_module: nn.Module,
    *,
    method: str = "ig",
    steps: int = 200,
    batch: int = 50,
) -> np.ndarray:
    """Score every neuron of ``hook_module``'s output for class ``target`` (float64, flattened).

    Args:
        model: the classifier (logits out).
        x: one input with a batch dimension of 1.
        target: the explained class.
        hook_module: the module whose output holds the neurons (see :func:`hook_point`).
        method: ``"ig"``, ``"activation"`` or ``"gradient"``.
        steps: IG path points.
        batch: IG points per forward pass.
    """
    if method not in ("ig", "activation", "gradient"):
        raise ValidationError(f"unknown scoring method {method!r}; use 'ig', 'activation' or 'gradient'")
    captured: dict[str, torch.Tensor] = {}

    def keep(o: torch.Tensor) -> None:
        captured["a"] = o.detach()

    h = _output_hook(hook_module, keep)
    try:
        with torch.no_grad():
            model(x)
    finally:
        h.remove()
    a0 = captured["a"][0]
    if method == "activation":
        return a0.double().flatten().cpu().numpy()

    def grads_at(alphas: torch.Tensor) -> torch.Tensor:
        z = (alphas.view(-1, *([1] * a0.dim())) * a0.unsqueeze(0)).requires_grad_(True)
        hh = _output_hook(hook_module, lambda o: z)
        try:
            logits = model(x.expand(alphas.shape[0], *x.shape[1:]))
        finally:
            hh.remove()
        p = torch.softmax(logits, dim=1)[:, target]
        (g,) = torch.autograd.grad(p.sum(), z)
        return g

    if method == "gradient":
        return grads_at(torch.ones(1, dtype=a0.dtype, device=a0.device))[0].double().flatten().cpu().numpy()
    alphas = (torch.arange(steps, dtype=a0.dtype, device=a0.device) + 0.5) / steps
    total = torch.zeros_like(a0)
    for s in range(0, steps, batch):
        total += grads_at(alphas[s : s + batch]).sum(dim=0)
    return (a0 * total / steps).double().flatten().cpu().numpy()


@dataclass
class Selection:
    """The neurons SMUG constrains.

    Attributes:
        neurons: flat indices of the kept neurons, best score first.
        scores: every neuron's score (flattened like the first layer's output).
        requested: the ``top_k`` asked for.
        eligible: how many neurons had a positive original pre-activation.
    """

    neurons: np.ndarray
    scores: np.ndarray
    requested: int
    eligible: int

    @property
    def imposed(self) -> int:
        """How many constraints were actually imposed (at most ``requested``)."""
        return int(self.neurons.shape[0])


def select_neurons(scores: np.ndarray, preactivations: np.ndarray, top_k: int) -> Selection:
    """The ``top_k`` neurons by score among those whose original pre-activation is positive.

    Ties are broken by the lower index, so the choice is deterministic.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    pre = np.asarray(preactivations, dtype=np.float64).ravel()
    if scores.shape != pre.shape:
        raise ValidationError(f"{scores.shape[0]} scores for {pre.shape[0]} neurons")
    if top_k < 1:
        raise ValidationError(f"top_k must be >= 1, got {top_k}")
    if top_k > pre.shape[0]:
        raise ValidationError(
            f"top_k={top_k} exceeds the first layer's {pre.shape[0]} neurons; choose top_k <= {pre.shape[0]}"
        )
    eligible = np.flatnonzero(pre > 0)
    order = eligible[np.lexsort((eligible, -scores[eligible]))]
    return Selection(order[:top_k], scores, top_k, int(eligible.shape[0]))

"""PathwayGrad: input gradients through a network's critical pathway.

Khakzar et al., "Neural Response Interpretation through the Lens of Critical
Pathways", CVPR 2021.

1. Every scalar output of every ReLU *call site* is a neuron.  Call sites are
   counted in the order they run during one forward pass, so a ReLU module
   called three times gives three sites, and a functional ``F.relu`` in
   ``forward`` is a site like any module.
2. Each neuron gets a contribution to the target logit ``S``:

   - ``"taylor"`` (default): ``|a * dS/da|``, the first-order estimate of the
     change in ``S`` when the neuron is removed;
   - ``"ig"``: neuron-level Integrated Gradients: one site's activations are
     scaled by ``alpha`` from 0 to 1 while the other sites run unchanged,
     ``a * mean_alpha dS/da(alpha a)``, in absolute value.

3. One global percentile threshold over all sites keeps the top ``100 - sparsity``
   percent of the neurons (the critical pathway); neurons scoring zero are always
   dropped.
4. The attribution is the input gradient of ``S`` through the *gated* network:
   the dropped neurons are zeroed in the forward pass (so the activations after
   them change too), and the gradient flows through the kept ones only.

How ReLUs are found: a :class:`torch.overrides.TorchFunctionMode` is active
during each forward pass and intercepts ``torch.nn.functional.relu`` /
``relu_``, ``torch.relu`` / ``torch.relu_`` and ``Tensor.relu`` / ``relu_``,
which covers ``nn.ReLU`` modules (also ``inplace=True``) and every functional
spelling.  Forward pre-hooks on the model's modules name the module that made
each call.  Nothing in the model is replaced.  Not covered: ReLUs computed
another way (``clamp(min=0)``, ``torch.maximum(x, 0)``, ``F.relu6``,
``F.hardtanh``, leaky or other activations), TorchScript models, and compiled
kernels that bypass Python dispatch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import ConfigError, ValidationError
from ._common import check_inputs, check_model, resolve_targets, target_logits

__all__ = ["PathwayGrad", "Pathway", "ReluSite", "relu_sites"]

_RELU_INPLACE = frozenset({F.relu_, torch.relu_, torch.Tensor.relu_})
_RELU_FUNCS = frozenset({F.relu, torch.relu, torch.Tensor.relu}) | _RELU_INPLACE
Contribution = Literal["taylor", "ig"]


@dataclass(frozen=True)
class ReluSite:
    """One ReLU call site of a forward pass.

    Attributes:
        index: position among the forward pass's ReLU calls (0, 1, ...).
        module: qualified name of the innermost module running when the call was
            made (``""`` for the model itself); for an ``nn.ReLU`` module its own name.
        function: the intercepted function's name (``"relu"`` or ``"relu_"``).
        shape: the shape of one sample's output (without the batch dimension).
    """

    index: int
    module: str
    function: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        """Number of neurons at this site (per sample)."""
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass
class Pathway:
    """A batch's critical pathways.

    Attributes:
        sites: the ReLU call sites, in call order.
        scores: per site, the neurons' contributions ``(B, *site.shape)``.
        keep: per site, the 0/1 gates ``(B, *site.shape)`` of the kept neurons.
        thresholds: ``(B,)`` the global percentile threshold per sample.
        targets: ``(B,)`` the explained classes.
    """

    sites: list[ReluSite]
    scores: list[torch.Tensor]
    keep: list[torch.Tensor]
    thresholds: np.ndarray
    targets: torch.Tensor

    @property
    def kept_fraction(self) -> np.ndarray:
        """``(B,)`` the fraction of all neurons in each sample's pathway."""
        kept = sum(k.flatten(1).sum(1) for k in self.keep)
        total = sum(s.size for s in self.sites)
        return (kept.double() / total).numpy()


class _ReluMode(TorchFunctionMode):
    """Calls ``on_site(index, output, inplace, module)`` for every ReLU call and uses what it returns."""

    def __init__(self, on_site: Callable[[int, torch.Tensor, bool, str], torch.Tensor], stack: list[str]):
        super().__init__()
        self.on_site = on_site
        self.stack = stack
        self.count = 0

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func not in _RELU_FUNCS or not args or not isinstance(args[0], torch.Tensor):
            return func(*args, **kwargs)
        inp = args[0]
        inplace = func in _RELU_INPLACE or bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
        i = self.count
        self.count += 1
        # computed out of place, so the gate never overwrites a tensor autograd saved; an in-place call
        # then writes the gated result into its input, as the original call would have written the ReLU
        res = self.on_site(i, torch.relu(inp), inplace, self.stack[-1] if self.stack else "")
        if inplace:
            return inp.copy_(res)
        return res


Forward = Callable[[torch.Tensor], torch.Tensor]


def _run(
    model: nn.Module,
    x: torch.Tensor,
    on_site: Callable[[int, torch.Tensor, bool, str], torch.Tensor],
    grad: bool = True,
    forward: Forward | None = None,
) -> tuple[torch.Tensor, int]:
    """One forward pass with every ReLU output routed through ``on_site``: (output, number of sites).

    ``forward`` (default: ``model`` itself) computes the output from ``x``, e.g. a text model run from its
    embeddings; the module names in the sites are ``model``'s either way.
    """
    stack: list[str] = []
    handles = []

    def enter(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any) -> None:
            stack.append(name)

        return hook

    def leave(module: nn.Module, args: Any, output: Any) -> None:
        if stack:
            stack.pop()

    for name, mod in model.named_modules():
        handles.append(mod.register_forward_pre_hook(enter(name)))
        handles.append(mod.register_forward_hook(leave))
    mode = _ReluMode(on_site, stack)
    try:
        with torch.set_grad_enabled(grad), mode:
            out = (model if forward is None else forward)(x)
    finally:
        for h in handles:
            h.remove()
    return out, mode.count


def relu_sites(model: nn.Module, inputs: torch.Tensor) -> list[ReluSite]:
    """The ReLU call sites of one forward pass of ``model`` on ``inputs`` (a batch)."""
    check_model(model)
    x = check_inputs(inputs)
    sites: list[ReluSite] = []

    def on_site(i: int, out: torch.Tensor, inplace: bool, module: str) -> torch.Tensor:
        sites.append(ReluSite(i, module, "relu_" if inplace else "relu", tuple(out.shape[1:])))
        return out

    _run(model, x, on_site, grad=False)
    return sites


class PathwayGrad:
    """Gradients of the target logit through the critical pathway (Captum-style ``attribute``).

    Args:
        model: a network with at least one ReLU (module or functional); use it in eval mode.
        sparsity: percentile in ``[0, 100)``: the share of neurons dropped (default 90: keep the top 10%).
        contribution: ``"taylor"`` (``|a * dS/da|``) or ``"ig"`` (neuron-level Integrated Gradients).
        ig_steps: points on the 0..1 path for ``"ig"`` (midpoint rule).
        batch: the most rows per forward pass for ``"ig"``.

    After :meth:`attribute`, ``self.pathway`` holds the batch's :class:`Pathway`.

    Example:
        >>> pg = PathwayGrad(model, sparsity=90)
        >>> attr = pg.attribute(images, target=labels)  # shaped like images
        >>> pg.pathway.kept_fraction
    """

    def __init__(
        self,
        model: nn.Module,
        sparsity: float = 90.0,
        contribution: Contribution = "taylor",
        ig_steps: int = 16,
        batch: int = 256,
    ):
        self.model = check_model(model)
        if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 100:
            raise ConfigError(f"sparsity must be a percentile in [0, 100), got {sparsity!r}")
        if contribution not in ("taylor", "ig"):
            raise ConfigError(f"contribution must be 'taylor' or 'ig', got {contribution!r}")
        if not isinstance(ig_steps, int) or ig_steps < 1:
            raise ConfigError(f"ig_steps must be a positive int, got {ig_steps!r}")
        if not isinstance(batch, int) or batch < 1:
            raise ConfigError(f"batch must be a positive int, got {batch!r}")
        self.sparsity = float(sparsity)
        self.contribution = contribution
        self.ig_steps = ig_steps
        self.batch = batch
        self.pathway: Pathway | None = None

    # ------------------------------------------------------------------ scoring
    def _record(
        self, x: torch.Tensor, targets: torch.Tensor, forward: Forward | None = None
    ) -> tuple[list[ReluSite], list[torch.Tensor]]:
        """Sites and Taylor contributions ``|a * dS/da|`` (the gradient of S w.r.t. a unit gate is ``a dS/da``)."""
        bsz = x.shape[0]
        sites: list[ReluSite] = []
        gates: list[torch.Tensor] = []

        def on_site(i: int, out: torch.Tensor, inplace: bool, module: str) -> torch.Tensor:
            if out.dim() == 0 or out.shape[0] != bsz:
                raise ValidationError(
                    f"ReLU call {i} (in module {module!r}) returned shape {tuple(out.shape)}, which is not "
                    f"batch-first for a batch of {bsz}; PathwayGrad needs every ReLU to act on batch-first activations"
                )
            sites.append(ReluSite(i, module, "relu_" if inplace else "relu", tuple(out.shape[1:])))
            g = torch.ones_like(out, requires_grad=True)
            gates.append(g)
            return out * g

        out, _ = _run(self.model, x, on_site, forward=forward)
        if not sites:
            raise ValidationError(
                f"{type(self.model).__name__} makes no ReLU call (nn.ReLU, F.relu, torch.relu, Tensor.relu); "
                "PathwayGrad needs a ReLU network"
            )
        grads = torch.autograd.grad(target_logits(out, targets).sum(), gates, allow_unused=True)
        scores = [
            torch.zeros_like(g).detach() if gr is None else gr.detach().abs()
            for g, gr in zip(gates, grads, strict=True)
        ]
        return sites, scores

    def _ig_scores(
        self, x: torch.Tensor, targets: torch.Tensor, sites: list[ReluSite], forward: Forward | None = None
    ) -> list[torch.Tensor]:
        """Neuron-level IG per site: scale site ``l`` by alpha (others unchanged), ``mean_alpha dS/d(gate)``."""
        bsz = x.shape[0]
        alphas = (torch.arange(self.ig_steps, dtype=x.dtype) + 0.5) / self.ig_steps
        per_pass = max(1, self.batch // bsz)
        scores: list[torch.Tensor] = []
        for site in sites:
            total = torch.zeros((bsz, *site.shape), dtype=x.dtype)
            for chunk in alphas.split(per_pass):
                k = chunk.numel()
                xs = x.repeat(k, *([1] * (x.dim() - 1)))
                gate = chunk.repeat_interleave(bsz).view(-1, *([1] * len(site.shape))).expand(k * bsz, *site.shape)
                gate = gate.clone().requires_grad_(True)

                def on_site(i: int, out: torch.Tensor, inplace: bool, module: str, g=gate, s=site) -> torch.Tensor:
                    return out * g.to(out.dtype) if i == s.index else out

                out, count = _run(self.model, xs, on_site, forward=forward)
                if count != len(sites):
                    raise ValidationError(
                        f"the model made {count} ReLU calls on a scaled pass but {len(sites)} on the first pass; "
                        "PathwayGrad needs the same ReLU calls on every forward pass"
                    )
                (gr,) = torch.autograd.grad(target_logits(out, targets).sum(), [gate], allow_unused=True)
                if gr is not None:
                    total += gr.detach().view(k, bsz, *site.shape).sum(0)
            scores.append((total / self.ig_steps).abs())
        return scores

    def critical_pathway(self, inputs: Any, target: Any = None) -> Pathway:
        """Score every ReLU neuron and keep the critical pathway (no attribution)."""
        x = check_inputs(inputs)
        return self._pathway(x, resolve_targets(self.model, x, target))

    def _pathway(self, x: torch.Tensor, targets: torch.Tensor, forward: Forward | None = None) -> Pathway:
        """The critical pathway of ``x`` (checked) for ``targets`` (resolved), run through ``forward``."""
        sites, scores = self._record(x, targets, forward)
        if self.contribution == "ig":
            scores = self._ig_scores(x, targets, sites, forward)
        flat = torch.cat([s.flatten(1) for s in scores], dim=1).double().numpy()
        thresholds = np.percentile(flat, self.sparsity, axis=1)
        keep = []
        for s in scores:
            thr = torch.from_numpy(thresholds).view(-1, *([1] * (s.dim() - 1)))
            keep.append(((s.double() >= thr) & (s > 0)).to(s.dtype))
        return Pathway(sites, scores, keep, thresholds, targets)

    # -------------------------------------------------------------- attribution
    def attribute(self, inputs: Any, target: Any = None) -> torch.Tensor:
        """Input gradient of the target logit through each sample's critical pathway.

        Args:
            inputs: a batch-first tensor, e.g. ``(B, C, H, W)``.
            target: ``None`` (each sample's predicted class), an int, or B ints.

        Returns:
            A tensor shaped like ``inputs``.

        Raises:
            ValidationError: the model makes no ReLU call, or its ReLU calls are not batch-first.
        """
        x = check_inputs(inputs)
        pathway = self.critical_pathway(x, target)
        self.pathway = pathway
        return self._gated_gradient(x, pathway)

    def _gated_gradient(self, x: torch.Tensor, pathway: Pathway, forward: Forward | None = None) -> torch.Tensor:
        """``dS/dx`` through the network with the neurons outside ``pathway`` zeroed, run through ``forward``."""
        xg = x.clone().requires_grad_(True)

        def on_site(i: int, out: torch.Tensor, inplace: bool, module: str) -> torch.Tensor:
            if i >= len(pathway.keep):
                raise ValidationError("the model made more ReLU calls on the gated pass than on the first pass")
            return out * pathway.keep[i].to(out.dtype)

        out, _ = _run(self.model, xg, on_site, forward=forward)
        (grad,) = torch.autograd.grad(target_logits(out, pathway.targets).sum(), [xg], allow_unused=True)
        return torch.zeros_like(x) if grad is None else grad.detach()

"""A black-box saliency map from a randomly optimised input mask (forward passes only).

After Thakur & Fischmeister, "A generalizable saliency map-based interpretation
of model outcome", ICPR 2020.  ``batch`` independent chains run side by side
(one batched forward pass per step); each chain:

1. starts from a coarse ``grid x grid`` mask whose cells are on with probability ``p_on``;
2. at every step upsamples the mask bilinearly to ``(grid + 1) * cell`` pixels,
   crops it at a random shift (as in RISE), multiplies it into the input
   (``baseline + mask * (x - baseline)``) and measures the target class's
   probability ``p``;
3. updates the mask: each on-cell stays on with probability ``p``, each off-cell
   turns on with probability ``1 - p``; a newly switched-on cell gets the weight
   ``1 - eta * |p - p_previous|`` (clipped to ``[0, 1]``), a cell that stays on
   keeps its weight.

So a chain lingers on masks that keep the prediction and reshuffles masks that
lose it.  Every evaluated (upsampled, weighted) mask is accumulated; the map is
``max(acc - kappa * mean(acc), 0)`` normalised to a maximum of 1.

The chains and the final map are input-agnostic (:func:`_chains`, :func:`_saliency`);
:class:`smug.methods.text.TextOptimisedMask` runs the same chains over token positions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, ShapeError, ValidationError
from ._common import check_inputs, check_model, resolve_targets
from ._common import positive_int as _positive_int

__all__ = ["OptimisedMask"]


def _check_chain_params(p_on: Any, eta: Any, kappa: Any, seed: Any) -> None:
    """A :class:`~smug.errors.ConfigError` for a bad ``p_on``, ``eta``, ``kappa`` or ``seed``."""
    if isinstance(p_on, bool) or not isinstance(p_on, (int, float)) or not 0 < p_on < 1:
        raise ConfigError(f"p_on must be a probability in (0, 1), got {p_on!r}")
    for name, v in (("eta", eta), ("kappa", kappa)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ConfigError(f"{name} must be a finite number >= 0, got {v!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an int, got {seed!r}")


def _chains(
    evaluate: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    gen: torch.Generator,
    *,
    cells: tuple[int, ...],
    size: tuple[int, ...],
    steps: int,
    batch: int,
    p_on: float,
    eta: float,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Run ``min(batch, steps)`` chains side by side until ``steps`` masks are evaluated; their float64 sum.

    ``evaluate(weight)`` takes the chains' cell weights ``(n, *cells)`` and returns the masks it applied
    ``(n, *size)`` and the target's probability under each ``(n,)``; it may draw from ``gen`` too.
    """
    n = min(batch, steps)
    ones = [1] * len(cells)
    on = torch.rand((n, *cells), generator=gen) < p_on
    weight = on.to(dtype)
    acc = torch.zeros(size, dtype=torch.float64)
    p_prev: torch.Tensor | None = None
    done = 0
    while done < steps:
        k = min(n, steps - done)  # the last step may count only some of the chains
        masks, p = evaluate(weight)
        acc += masks[:k].sum(0).double()
        done += k
        pk = p.view(n, *ones)
        u = torch.rand((n, *cells), generator=gen)
        stay = on & (u < pk)
        new = ~on & (u < 1 - pk)
        change = torch.zeros_like(p) if p_prev is None else (p - p_prev).abs()
        w_new = (1 - eta * change).clamp(0, 1).view(n, *ones).expand_as(weight)
        weight = torch.where(stay, weight, torch.where(new, w_new, torch.zeros_like(weight)))
        on = stay | new
        p_prev = p
    return acc


def _saliency(acc: torch.Tensor, kappa: float, valid: torch.Tensor | None = None) -> torch.Tensor:
    """``max(acc - kappa * mean(acc), 0)`` scaled to a maximum of 1; with ``valid`` (bool, like ``acc``)
    the mean is over the valid entries only and the others are 0."""
    mean = acc.mean() if valid is None else acc[valid].mean()
    sal = (acc - kappa * mean).clamp(min=0)
    if valid is not None:
        sal = torch.where(valid, sal, torch.zeros_like(sal))
    top = sal.max()
    return sal / top if top > 0 else sal


class OptimisedMask:
    """Black-box optimised-mask saliency (Captum-style ``attribute``); seeded and reproducible.

    Args:
        model: any classifier returning ``(B, n_classes)`` logits; only forward passes are used.
        grid: cells per side of the coarse mask (at most the input's height and width).
        p_on: probability that a cell starts on, in ``(0, 1)``.
        steps: forward passes per input (masks evaluated), spread over ``batch`` chains.
        eta: weight decay of newly switched-on cells per unit change of the probability (``>= 0``).
        kappa: the multiple of the accumulated map's mean subtracted before clipping (``>= 0``).
        batch: chains run side by side (rows per forward pass).
        seed: seeds every random choice; the same seed gives the same map.
        baseline: the value masked-out pixels take (a number, or a tensor broadcastable to one sample).

    Example:
        >>> om = OptimisedMask(model, grid=8, steps=4000, seed=0)
        >>> attr = om.attribute(images)  # (B, C, H, W), each map in [0, 1]
    """

    def __init__(
        self,
        model: nn.Module,
        grid: int = 8,
        p_on: float = 0.3,
        steps: int = 4000,
        eta: float = 0.02,
        kappa: float = 1.0,
        batch: int = 100,
        seed: int = 0,
        baseline: float | torch.Tensor = 0.0,
    ):
        self.model = check_model(model)
        self.grid = _positive_int("grid", grid)
        self.steps = _positive_int("steps", steps)
        self.batch = _positive_int("batch", batch)
        _check_chain_params(p_on, eta, kappa, seed)
        self.p_on = float(p_on)
        self.eta = float(eta)
        self.kappa = float(kappa)
        self.seed = seed
        self.baseline = baseline

    def _upsample(self, cells: torch.Tensor, size: tuple[int, int], gen: torch.Generator) -> torch.Tensor:
        """``(n, g, g)`` cell weights -> ``(n, H, W)`` masks: bilinear upsampling, then a random crop (RISE)."""
        H, W = size
        ch, cw = math.ceil(H / self.grid), math.ceil(W / self.grid)
        up = F.interpolate(cells.unsqueeze(1), size=((self.grid + 1) * ch, (self.grid + 1) * cw), mode="bilinear")
        n = cells.shape[0]
        dy = torch.randint(0, ch, (n,), generator=gen)
        dx = torch.randint(0, cw, (n,), generator=gen)
        rows = (dy.view(n, 1) + torch.arange(H).view(1, H)).view(n, 1, H, 1).expand(n, 1, H, up.shape[-1])
        taller = up.gather(2, rows)
        cols = (dx.view(n, 1) + torch.arange(W).view(1, W)).view(n, 1, 1, W).expand(n, 1, H, W)
        return taller.gather(3, cols).squeeze(1)

    def _one(self, x: torch.Tensor, target: int, base: torch.Tensor) -> torch.Tensor:
        """The map ``(H, W)`` for one sample ``(C, H, W)``, from a generator seeded with ``self.seed``."""
        gen = torch.Generator().manual_seed(self.seed)
        _, H, W = x.shape
        base = base.expand_as(x)

        def evaluate(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            masks = self._upsample(weight, (H, W), gen)
            with torch.no_grad():
                p = torch.softmax(self.model(base + masks.unsqueeze(1) * (x - base)), dim=1)[:, target].to(x.dtype)
            return masks, p

        acc = _chains(evaluate, gen, cells=(self.grid, self.grid), size=(H, W), steps=self.steps,
                      batch=self.batch, p_on=self.p_on, eta=self.eta, dtype=x.dtype)  # fmt: skip
        return _saliency(acc, self.kappa).to(x.dtype)

    def attribute(self, inputs: Any, target: Any = None) -> torch.Tensor:
        """The optimised-mask saliency of each input.

        Args:
            inputs: ``(B, C, H, W)``.
            target: ``None`` (each sample's predicted class), an int, or B ints.

        Returns:
            ``(B, C, H, W)``: each sample's map in ``[0, 1]``, repeated over channels.

        Raises:
            ShapeError: inputs are not 4-D.
            ValidationError: ``grid`` is larger than the input's height or width.
        """
        x = check_inputs(inputs, image=True)
        _, _, H, W = x.shape
        if self.grid > H or self.grid > W:
            raise ValidationError(f"grid {self.grid} is larger than the input ({H}x{W}); use grid <= {min(H, W)}")
        base = torch.as_tensor(self.baseline, dtype=x.dtype).detach()
        try:
            ok = (base + x[0]).shape == x[0].shape
        except RuntimeError:
            ok = False
        if not ok:
            raise ShapeError(
                f"baseline of shape {tuple(base.shape)} does not broadcast to one sample {tuple(x.shape[1:])}"
            )
        targets = resolve_targets(self.model, x, target)
        out = torch.zeros_like(x)
        for i in range(x.shape[0]):
            out[i] = self._one(x[i], int(targets[i]), base).unsqueeze(0).expand_as(x[i])
        return out

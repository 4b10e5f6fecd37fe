"""Gradient and perturbation baselines from Captum, behind smug's ``attribute(inputs, target=None)`` signature.

Thin wrappers: Captum does the work; these fill in the predicted class when
``target`` is ``None`` (Captum needs one for a multi-class output), pick
defaults that suit small images, and check the settings against the input.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ValidationError
from ._common import check_inputs, check_model, resolve_targets
from ._common import positive_int as _positive_int

__all__ = ["IntegratedGradients", "Saliency", "Occlusion", "FeatureAblation"]


class IntegratedGradients:
    """Integrated Gradients on the input (Sundararajan et al., 2017), via :class:`captum.attr.IntegratedGradients`.

    Args:
        model: the classifier.
        n_steps: points on the straight path from the baseline to the input.
        baselines: the path's start (a number or a tensor shaped like the inputs or one sample).
        method: Captum's integration rule (``"gausslegendre"``, ``"riemann_trapezoid"``, ...).
        internal_batch_size: rows per forward pass (``None``: all ``n_steps`` at once).

    Attributions are signed, shaped like the inputs.
    """

    def __init__(
        self,
        model: nn.Module,
        n_steps: int = 50,
        baselines: float | torch.Tensor = 0.0,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
    ):
        from captum.attr import IntegratedGradients as _IG

        self.model = check_model(model)
        self.n_steps = _positive_int("n_steps", n_steps)
        self.baselines = baselines
        self.method = method
        self.internal_batch_size = internal_batch_size
        self._impl = _IG(self.model)

    def attribute(self, inputs: Any, target: Any = None) -> torch.Tensor:
        """Integrated Gradients of each sample's target logit, shaped like ``inputs``."""
        x = check_inputs(inputs)
        t = resolve_targets(self.model, x, target)
        out = self._impl.attribute(
            x.clone().requires_grad_(True),
            baselines=self.baselines,
            target=t,
            n_steps=self.n_steps,
            method=self.method,
            internal_batch_size=self.internal_batch_size,
        )
        return out.detach()


class Saliency:
    """Plain input gradients of the target logit (Simonyan et al., 2014), via :class:`captum.attr.Saliency`.

    Args:
        model: the classifier.
        abs: return ``|gradient|`` (Captum's default) instead of the signed gradient.
    """

    def __init__(self, model: nn.Module, abs: bool = True):
        from captum.attr import Saliency as _Saliency

        self.model = check_model(model)
        self.abs = bool(abs)
        self._impl = _Saliency(self.model)

    def attribute(self, inputs: Any, target: Any = None) -> torch.Tensor:
        """The input gradient of each sample's target logit, shaped like ``inputs``."""
        x = check_inputs(inputs)
        t = resolve_targets(self.model, x, target)
        return self._impl.attribute(x.clone().requires_grad_(True), target=t, abs=self.abs).detach()


class Occlusion:
    """Sliding-window occlusion (Zeiler & Fergus, 2014), via :class:`captum.attr.Occlusion`.

    Each ``window x window`` patch (all channels), moved by ``stride``, is set to
    ``baseline``; a pixel's attribution is the mean drop of the target logit over
    the patches covering it (positive: the pixel supports the class).

    Args:
        model: the classifier.
        window: patch side in pixels.
        stride: patch step in pixels.
        baseline: the value occluded pixels take.
        perturbations_per_eval: patches per forward pass.
    """

    def __init__(
        self,
        model: nn.Module,
        window: int = 4,
        stride: int = 2,
        baseline: float = 0.0,
        perturbations_per_eval: int = 64,
    ):
        from captum.attr import Occlusion as _Occlusion

        self.model = check_model(model)
        self.window = _positive_int("window", window)
        self.stride = _positive_int("stride", stride)
        self.baseline = baseline
        self.perturbations_per_eval = _positive_int("perturbations_per_eval", perturbations_per_eval)
        self._impl = _Occlusion(self.model)

    def attribute(self, inputs: Any, target: Any = None) -> torch.Tensor:
        """Occlusion attributions, shaped like ``inputs`` ``(B, C, H, W)``."""
        x = check_inputs(inputs, image=True)
        _, c, h, w = x.shape
        if self.window > min(h, w):
            raise ValidationError(f"window {self.window} is larger than the input ({h}x{w})")
        t = resolve_targets(self.model, x, target)
        out = self._impl.attribute(
            x,
            sliding_window_shapes=(c, self.window, self.window),
            strides=(c, self.stride, self.stride),
            baselines=self.baseline,
            target=t,
            perturbations_per_eval=self.perturbations_per_eval,
        )
        return out.detach().to(x.dtype)


class FeatureAblation:
    """Ablation of square pixel patches, via :class:`captum.attr.FeatureAblation`.

    The input is cut into non-overlapping ``patch x patch`` squares (all channels
    together); each square is set to ``baseline`` in turn and its attribution is
    the drop of the target logit.

    Args:
        model: the classifier.
        patch: square side in pixels.
        baseline: the value ablated pixels take.
        perturbations_per_eval: squares per forward pass.
    """

    def __init__(self, model: nn.Module, patch: int = 2, baseline: float = 0.0, perturbations_per_eval: int = 64):
        from captum.attr import FeatureAblation as _FA

        self.model = check_model(model)
        self.patch = _positive_int("patch", patch)
        self.baseline = baseline
        self.perturbations_per_eval = _positive_int("perturbations_per_eval", perturbations_per_eval)
        self._impl = _FA(self.model)

    def feature_mask(self, shape: tuple[int, ...]) -> torch.Tensor:
        """The ``(1, C, H, W)`` integer map of patch ids for inputs of ``shape`` ``(B, C, H, W)``."""
        _, c, h, w = shape
        rows = torch.arange(h) // self.patch
        cols = torch.arange(w) // self.patch
        ids = rows.view(h, 1) * ((w + self.patch - 1) // self.patch) + cols.view(1, w)
        return ids.view(1, 1, h, w).expand(1, c, h, w).contiguous()

    def attribute(self, inputs: Any, target: Any = None) -> torch.Tensor:
        """Patch-ablation attributions, shaped like ``inputs`` ``(B, C, H, W)``."""
        x = check_inputs(inputs, image=True)
        _, _, h, w = x.shape
        if self.patch > min(h, w):
            raise ValidationError(f"patch {self.patch} is larger than the input ({h}x{w})")
        t = resolve_targets(self.model, x, target)
        out = self._impl.attribute(
            x,
            baselines=self.baseline,
            target=t,
            feature_mask=self.feature_mask(tuple(x.shape)),
            perturbations_per_eval=self.perturbations_per_eval,
        )
        return out.detach().to(x.dtype)

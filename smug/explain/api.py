"""The entry points shared by images and text: :func:`explain`, :func:`explanation_problem` and the
Captum-style :class:`MinimalMask`; each dispatches to :mod:`.image` or :mod:`.text` by the input."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..config import Config
from ..errors import ShapeError, ValidationError
from ..ir import Problem
from .common import is_text_input, no_feature_mask_for_text, no_text_options_for_images
from .image import explain_image, image_explanation_problem
from .text import explain_text, text_explanation_problem

__all__ = ["explain", "explanation_problem", "MinimalMask"]


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
    if is_text_input(model, x):
        no_feature_mask_for_text(feature_mask)
        return text_explanation_problem(
            model, x, target, config, baseline=baseline, tokenizer=tokenizer, maskable=maskable, **overrides
        )
    no_text_options_for_images(tokenizer, maskable, model, x)
    return image_explanation_problem(
        model, x, target, config, baseline=baseline, feature_mask=feature_mask, **overrides
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
    :func:`smug.explain.text.explain_text`) and gives a
    :class:`~smug.explain.text.TextExplanation`.

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
            :class:`smug.zoo.text.Vocabulary` (as :func:`smug.zoo.text.pretrained_text_cnn`
            returns) or any callable ``str -> list[int]``; also names the tokens.
        maskable: text only: which token positions get a mask variable
            (default: every non-pad position).

    Returns:
        An :class:`Explanation` (images) or a :class:`~smug.explain.text.TextExplanation` (text).
    """
    if is_text_input(model, x):
        no_feature_mask_for_text(feature_mask)
        return explain_text(
            model, x, target, config, baseline=baseline, tokenizer=tokenizer, maskable=maskable, **overrides
        )
    no_text_options_for_images(tokenizer, maskable, model, x)
    return explain_image(model, x, target, config, baseline=baseline, feature_mask=feature_mask, **overrides)


class MinimalMask:
    """Captum-style SMUG attribution: ``MinimalMask(model).attribute(inputs, target=...)``.

    Attributions are shaped like the (batch-first) inputs: each sample's SMUG
    saliency map, repeated over channels.  The per-sample
    :class:`Explanation` objects are kept in ``self.explanations``.

    Example:
        >>> mm = MinimalMask(model, backend="ortools:scip", top_k=20)
        >>> attr = mm.attribute(images, target=labels)

    For text, pass the tokenizer (e.g. the vocabulary of
    :func:`smug.zoo.text.pretrained_text_cnn`) and token ids or strings:

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
            and is_text_input(self.model, inputs)
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

"""Gradient and perturbation baselines for text classifiers: one attribution per token.

Token ids are integers, so gradient methods work on the embedding layer's
output: Captum's layer methods attribute to the ``(B, L, E)`` embeddings and
the token's attribution is the sum (Integrated Gradients) or the L2 norm
(plain gradient) over the embedding axis.  Occlusion replaces one token's
embedding at a time by the zero vector (the SMUG text encoder's default
baseline) and records the drop in the target's probability.

Each class has smug's ``attribute(ids, target=None)`` signature: ``ids`` is a
``(B, L)`` int64 tensor; the result is a ``(B, L)`` float tensor.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ShapeError, ValidationError
from ._common import positive_int as _positive_int

__all__ = ["TextIntegratedGradients", "TextSaliency", "TextOcclusion", "embedding_of"]


def embedding_of(model: nn.Module) -> nn.Embedding:
    """The model's first ``nn.Embedding`` (the layer whose output the text methods attribute to)."""
    for mod in model.modules():
        if isinstance(mod, nn.Embedding):
            return mod
    raise ValidationError(f"{type(model).__name__} has no nn.Embedding; the text methods attribute to token embeddings")


def _ids(ids: Any) -> torch.Tensor:
    t = ids if isinstance(ids, torch.Tensor) else torch.as_tensor(ids)
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2 or torch.is_floating_point(t):
        raise ShapeError(f"ids must be a (B, L) integer tensor of token ids, got {tuple(t.shape)} {t.dtype}")
    return t.long()


def _targets(model: nn.Module, ids: torch.Tensor, target: Any) -> torch.Tensor:
    if target is None:
        with torch.no_grad():
            return model(ids).argmax(dim=1)
    t = torch.as_tensor(target, dtype=torch.long).reshape(-1)
    if t.numel() == 1:
        t = t.expand(ids.shape[0])
    if t.numel() != ids.shape[0]:
        raise ShapeError(f"target has {t.numel()} entries for a batch of {ids.shape[0]}")
    return t


class TextIntegratedGradients:
    """Integrated Gradients on the embeddings (Captum), summed over the embedding axis.

    Captum's ``IntegratedGradients`` runs on the ``(B, L, E)`` embeddings (the
    model is called with its embedding's output replaced through a forward
    hook), on the straight path from the zero embedding -- the SMUG text
    encoder's default baseline -- to the text's.  Signed.
    """

    def __init__(self, model: nn.Module, n_steps: int = 50, internal_batch_size: int | None = None):
        from captum.attr import IntegratedGradients

        self.model = model.eval()
        self.n_steps = _positive_int("n_steps", n_steps)
        self.internal_batch_size = internal_batch_size
        self._emb = embedding_of(model)
        self._impl = IntegratedGradients(self._forward)

    def _forward(self, emb: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        h = self._emb.register_forward_hook(lambda _m, _i, o: emb.to(o.dtype))
        try:
            return self.model(ids)
        finally:
            h.remove()

    def attribute(self, inputs: Any, target: Any = None) -> torch.Tensor:
        """Per-token IG of each sample's target logit, ``(B, L)``."""
        ids = _ids(inputs)
        t = _targets(self.model, ids, target)
        with torch.no_grad():
            emb = self._emb(ids)
        attr = self._impl.attribute(
            emb,
            baselines=torch.zeros_like(emb),
            target=t,
            additional_forward_args=(ids,),
            n_steps=self.n_steps,
            internal_batch_size=self.internal_batch_size,
        )
        return attr.sum(dim=-1).detach().float()


class TextSaliency:
    """The L2 norm, per token, of the target logit's gradient with respect to the embeddings (Captum)."""

    def __init__(self, model: nn.Module):
        from captum.attr import LayerGradientXActivation

        self.model = model.eval()
        self._impl = LayerGradientXActivation(self.model, embedding_of(model), multiply_by_inputs=False)

    def attribute(self, inputs: Any, target: Any = None) -> torch.Tensor:
        """``||d logit_target / d e_t||`` for each token ``t``, ``(B, L)``."""
        ids = _ids(inputs)
        t = _targets(self.model, ids, target)
        return self._impl.attribute(ids, target=t).norm(dim=-1).detach().float()


class TextOcclusion:
    """The drop in the target's probability when one token's embedding is replaced by zero (one token at a time)."""

    def __init__(self, model: nn.Module):
        self.model = model.eval()
        self._emb = embedding_of(model)

    def attribute(self, inputs: Any, target: Any = None) -> torch.Tensor:
        """``p(target | text) - p(target | text with token t zeroed)`` for each token, ``(B, L)``."""
        ids = _ids(inputs)
        t = _targets(self.model, ids, target)
        B, L = ids.shape
        out = torch.zeros(B, L)
        eye = 1.0 - torch.eye(L)  # row j zeroes token j
        for b in range(B):
            gates = torch.cat([torch.ones(1, L), eye]).unsqueeze(-1)  # (L+1, L, 1): the text, then each occlusion

            def hook(_m: nn.Module, _i: Any, o: torch.Tensor, g: torch.Tensor = gates) -> torch.Tensor:
                return o * g.to(o.dtype)

            h = self._emb.register_forward_hook(hook)
            try:
                with torch.no_grad():
                    p = torch.softmax(self.model(ids[b : b + 1].expand(L + 1, L)), dim=1)[:, int(t[b])]
            finally:
                h.remove()
            out[b] = (p[0] - p[1:]).float()
        return out

"""Gradient and perturbation baselines for text classifiers: one attribution per token.

Token ids are integers, so gradient methods work on the embedding layer's
output: Captum's layer methods attribute to the ``(B, L, E)`` embeddings and
the token's attribution is the sum (Integrated Gradients) or the L2 norm
(plain gradient) over the embedding axis.  Occlusion replaces one token's
embedding at a time by the zero vector (the SMUG text encoder's default
baseline) and records the drop in the target's probability.

:class:`TextPathwayGrad` and :class:`TextOptimisedMask` are the image methods
:class:`~smug.methods.PathwayGrad` and :class:`~smug.methods.OptimisedMask` run
on the embeddings: the first gates the network's ReLU neurons and takes the
embedding gradient through the kept ones, the second optimises a random mask
over token positions (a masked token takes ``<pad>``'s embedding).

Each class has smug's ``attribute(ids, target=None)`` signature: ``ids`` is a
``(B, L)`` int64 tensor; the result is a ``(B, L)`` float tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

from ..errors import ConfigError, ShapeError, ValidationError
from ._common import check_model, resolve_targets
from ._common import positive_int as _positive_int
from .blackbox import _chains, _check_chain_params, _saliency
from .pathwaygrad import Contribution, Pathway, PathwayGrad, _run

__all__ = [
    "TextIntegratedGradients",
    "TextSaliency",
    "TextOcclusion",
    "TextPathwayGrad",
    "TextOptimisedMask",
    "embedding_of",
]


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


def _checked_ids(ids: Any, emb: nn.Embedding) -> torch.Tensor:
    """``_ids(ids)``, refusing an empty sequence and ids outside ``emb``'s vocabulary."""
    t = _ids(ids)
    if t.shape[1] == 0:
        raise ShapeError("ids hold no tokens (L = 0); there is nothing to attribute")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= emb.num_embeddings):
        raise ValidationError(
            f"token ids must lie in [0, {emb.num_embeddings}) (the embedding's vocabulary), "
            f"got ids from {int(t.min())} to {int(t.max())}"
        )
    return t


def _from_embeddings(model: nn.Module, emb_layer: nn.Embedding, ids: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    """``model(ids)`` with ``emb_layer``'s output replaced by ``emb`` (a forward hook; the model is unchanged)."""
    h = emb_layer.register_forward_hook(lambda _m, _i, o: emb.to(o.dtype))
    try:
        return model(ids)
    finally:
        h.remove()


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
        return _from_embeddings(self.model, self._emb, ids, emb)

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


Reduce = Literal["norm", "sum"]


class TextPathwayGrad:
    """PathwayGrad on a text model: the embedding gradient through the critical pathway, one score per token.

    The ReLU neurons of the network (its call sites, found as :class:`~smug.methods.PathwayGrad`
    finds them; on :class:`~smug.zoo.text.TextCNN` the one ``act`` after the convolution, ``n_filters x L``
    neurons) are scored by their contribution to the target logit ``S``, the top ``100 - sparsity``
    percent are kept, and the gradient of ``S`` through the gated network is taken with respect to the
    ``(B, L, E)`` embeddings (the model is run from its embeddings through a forward hook, as
    :class:`TextIntegratedGradients` does).  A token's score is, with ``reduce``:

    - ``"norm"`` (default): ``||dS/de_t||``, the L2 norm over the embedding axis, as :class:`TextSaliency`;
    - ``"sum"``: ``sum_e (dS/de_t * e_t)``, gradient x embedding summed over the embedding axis (signed).

    PathwayGrad always drops neurons whose contribution is exactly zero, so ``sparsity=0`` keeps every
    neuron that matters to ``S``.  On the text CNN (one ReLU layer, max-pooled over positions) the neurons
    it drops are the ones the max-pool does not select or that are off, which changes neither the
    output nor its gradient: ``sparsity=0`` gives exactly the plain embedding gradient, reduced the same
    way (:class:`TextSaliency` for ``"norm"``).  In deeper networks zeroing a neuron with zero gradient
    can change later activations, so the equality need not hold there.  Because only about one neuron
    per filter has a non-zero contribution, on the text CNN a pathway is narrower than the plain
    gradient's only when ``100 - sparsity`` percent of all ``n_filters x L`` neurons is fewer than the
    filters that fire, e.g. at the default ``sparsity=90`` only on texts of fewer than about 10 tokens.

    ``<pad>`` positions are scored like any other token (they pass through the convolution), as in
    :class:`TextSaliency`; explain unpadded ids.

    Args:
        model: a text classifier taking ``(B, L)`` token ids, with an ``nn.Embedding`` and at least one
            ReLU call after it; it is put in eval mode.
        sparsity: percentile in ``[0, 100)``: the share of neurons dropped (default 90: keep the top 10%).
        contribution: ``"taylor"`` (``|a * dS/da|``) or ``"ig"`` (neuron-level Integrated Gradients).
        ig_steps: points on the 0..1 path for ``"ig"``.
        batch: the most rows per forward pass for ``"ig"``.
        reduce: ``"norm"`` or ``"sum"``, the per-token reduction over the embedding axis.

    After :meth:`attribute`, ``self.pathway`` holds the batch's :class:`~smug.methods.Pathway`.

    Example:
        >>> model, vocab = pretrained_text_cnn()
        >>> ids = torch.tensor([vocab.encode("a moving and funny film")])
        >>> pg = TextPathwayGrad(model, sparsity=99)
        >>> pg.attribute(ids).shape  # one score per token
        torch.Size([1, 5])
    """

    def __init__(
        self,
        model: nn.Module,
        sparsity: float = 90.0,
        contribution: Contribution = "taylor",
        ig_steps: int = 16,
        batch: int = 256,
        reduce: Reduce = "norm",
    ):
        self.model = check_model(model).eval()
        self._pg = PathwayGrad(model, sparsity=sparsity, contribution=contribution, ig_steps=ig_steps, batch=batch)
        if reduce not in ("norm", "sum"):
            raise ConfigError(f"reduce must be 'norm' (gradient norm) or 'sum' (gradient x embedding), got {reduce!r}")
        self.sparsity = self._pg.sparsity
        self.contribution = contribution
        self.reduce = reduce
        self._emb = embedding_of(model)
        self.pathway: Pathway | None = None

    def _prepare(
        self, inputs: Any, target: Any
    ) -> tuple[torch.Tensor, torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
        """(embeddings, targets, forward from embeddings); a named error for a model without ReLUs."""
        ids = _checked_ids(inputs, self._emb)
        targets = resolve_targets(self.model, ids, target)
        with torch.no_grad():
            emb = self._emb(ids).detach()

        def forward(e: torch.Tensor) -> torch.Tensor:  # PathwayGrad's "ig" passes repeat the batch k times
            reps = e.shape[0] // ids.shape[0]
            return _from_embeddings(self.model, self._emb, ids if reps == 1 else ids.repeat(reps, 1), e)

        _, count = _run(self.model, emb, lambda i, out, inplace, module: out, grad=False, forward=forward)
        if count == 0:
            raise ValidationError(
                f"{type(self.model).__name__} makes no ReLU call after its embedding (nn.ReLU, F.relu, torch.relu, "
                "Tensor.relu), so TextPathwayGrad has no neurons to gate; use a model with ReLU activations, "
                "or an attribution without pathways (TextSaliency, TextIntegratedGradients)"
            )
        return emb, targets, forward

    def critical_pathway(self, inputs: Any, target: Any = None) -> Pathway:
        """Score every ReLU neuron and keep the critical pathway of each text (no attribution)."""
        emb, targets, forward = self._prepare(inputs, target)
        return self._pg._pathway(emb, targets, forward)

    def attribute(self, inputs: Any, target: Any = None) -> torch.Tensor:
        """Per-token score of the target logit's embedding gradient through each text's critical pathway.

        Args:
            inputs: ``(B, L)`` (or ``(L,)``) integer token ids.
            target: ``None`` (each text's predicted class), an int, or B ints.

        Returns:
            ``(B, L)`` in the embedding's dtype: the gradient's norm (``reduce="norm"``, non-negative) or
            gradient x embedding summed (``"sum"``) per token.

        Raises:
            ShapeError: ids are not a 2-D integer tensor, or hold no tokens.
            ValidationError: an id is outside the vocabulary, or the model makes no ReLU call.
        """
        emb, targets, forward = self._prepare(inputs, target)
        pathway = self._pg._pathway(emb, targets, forward)
        self.pathway = pathway
        grad = self._pg._gated_gradient(emb, pathway, forward)
        return grad.norm(dim=-1) if self.reduce == "norm" else (grad * emb).sum(dim=-1)


class TextOptimisedMask:
    """The black-box optimised mask over token positions (forward passes only); seeded and reproducible.

    :class:`~smug.methods.OptimisedMask`'s chains (same update rule, same code) on a 1-D mask with one
    cell per token: a chain's mask weight ``m_t`` in ``[0, 1]`` blends token ``t``'s embedding with
    ``<pad>``'s (``pad + m_t * (e_t - pad)``; the embedding's ``padding_idx`` row, or the zero vector
    when it has none), so a masked token reads as padding.  Each token's accumulated weight becomes the
    map ``max(acc - kappa * mean(acc), 0)``, scaled to a maximum of 1.  Every random choice comes from a
    ``torch.Generator`` seeded with ``seed`` afresh for each text: the same seed gives the same map bit
    for bit (and a text's map does not depend on the rest of the batch).

    Positions that already hold ``<pad>`` (masking them changes nothing) get 0 and are left out of the
    mean.

    Args:
        model: a text classifier taking ``(B, L)`` token ids, with an ``nn.Embedding``; it is put in eval mode.
        p_on: probability that a token starts unmasked, in ``(0, 1)``.
        steps: masks evaluated per text, spread over ``batch`` chains.
        eta: weight decay of newly unmasked tokens per unit change of the probability (``>= 0``).
        kappa: the multiple of the accumulated map's mean subtracted before clipping (``>= 0``).
        batch: chains run side by side (rows per forward pass).
        seed: seeds every random choice.

    Example:
        >>> model, vocab = pretrained_text_cnn()
        >>> ids = torch.tensor([vocab.encode("a moving and funny film")])
        >>> om = TextOptimisedMask(model, steps=1000, seed=0)
        >>> om.attribute(ids).shape  # (B, L), each map in [0, 1]
        torch.Size([1, 5])
    """

    def __init__(
        self,
        model: nn.Module,
        p_on: float = 0.3,
        steps: int = 4000,
        eta: float = 0.02,
        kappa: float = 1.0,
        batch: int = 100,
        seed: int = 0,
    ):
        self.model = check_model(model).eval()
        self.steps = _positive_int("steps", steps)
        self.batch = _positive_int("batch", batch)
        _check_chain_params(p_on, eta, kappa, seed)
        self.p_on = float(p_on)
        self.eta = float(eta)
        self.kappa = float(kappa)
        self.seed = seed
        self._emb = embedding_of(model)

    def _pad(self) -> torch.Tensor:
        """``<pad>``'s embedding ``(E,)``: the ``padding_idx`` row, or zeros when the embedding has none."""
        w = self._emb.weight.detach()
        idx = self._emb.padding_idx
        return w[idx].clone() if idx is not None else torch.zeros(w.shape[1], dtype=w.dtype)

    def _one(self, ids: torch.Tensor, target: int, pad: torch.Tensor) -> torch.Tensor:
        """The map ``(L,)`` of one text ``(L,)``, from a generator seeded with ``self.seed``."""
        gen = torch.Generator().manual_seed(self.seed)
        (L,) = ids.shape
        with torch.no_grad():
            emb = self._emb(ids.unsqueeze(0))[0].detach()  # (L, E)

        def evaluate(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            n = weight.shape[0]
            masked = pad + weight.unsqueeze(-1) * (emb - pad)  # (n, L, E)
            with torch.no_grad():
                logits = _from_embeddings(self.model, self._emb, ids.expand(n, L), masked)
            return weight, torch.softmax(logits, dim=1)[:, target].to(emb.dtype)

        acc = _chains(evaluate, gen, cells=(L,), size=(L,), steps=self.steps, batch=self.batch,
                      p_on=self.p_on, eta=self.eta, dtype=emb.dtype)  # fmt: skip
        idx = self._emb.padding_idx
        valid = None if idx is None else ids != idx
        if valid is not None and not bool(valid.any()):
            return torch.zeros(L, dtype=emb.dtype)
        return _saliency(acc, self.kappa, valid).to(emb.dtype)

    def attribute(self, inputs: Any, target: Any = None) -> torch.Tensor:
        """The optimised-mask saliency of each text.

        Args:
            inputs: ``(B, L)`` (or ``(L,)``) integer token ids.
            target: ``None`` (each text's predicted class), an int, or B ints.

        Returns:
            ``(B, L)`` in the embedding's dtype: each text's map in ``[0, 1]``, 0 on ``<pad>`` positions.

        Raises:
            ShapeError: ids are not a 2-D integer tensor, or hold no tokens.
            ValidationError: an id is outside the vocabulary.
        """
        ids = _checked_ids(inputs, self._emb)
        targets = resolve_targets(self.model, ids, target)
        pad = self._pad()
        out = torch.zeros(ids.shape, dtype=pad.dtype)
        for b in range(ids.shape[0]):
            out[b] = self._one(ids[b], int(targets[b]), pad)
        return out

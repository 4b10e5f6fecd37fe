"""The entry points shared by images and text: :func:`explain`, :func:`explanation_problem` and the
Captum-style :class:`MinimalMask`; each dispatches to :mod:`.image` or :mod:`.text` by the input."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import Config
from ..errors import ShapeError, UnprovenExplanationError, UnprovenExplanationWarning, ValidationError
from ..ir import Problem
from .common import (
    caller_level,
    is_text_input,
    model_device_dtype,
    no_feature_mask_for_text,
    no_text_options_for_images,
)
from .image import explain_image, image_explanation_problem
from .text import explain_text, text_explanation_problem

__all__ = ["explain", "explanation_problem", "MinimalMask", "sample_status", "ON_UNPROVEN"]


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


#: What :class:`MinimalMask` does when a sample's mask is not proven optimal and verified.
ON_UNPROVEN: tuple[str, ...] = ("warn", "raise", "ignore")

# the worker processes of MinimalMask(n_jobs > 1) inherit the job by fork: no pickling of the model
_JOB: dict[str, Any] = {}


def _explain_job(i: int, x: Any, target: Any, baseline: Any, feature_mask: Any) -> tuple[int, Any]:
    torch.set_num_threads(1)  # one solver and one torch thread per worker: n_jobs workers share the cores
    job = _JOB
    return i, explain(
        job["model"], x, target, job["config"], baseline=baseline, feature_mask=feature_mask,
        tokenizer=job["tokenizer"],
    )  # fmt: skip


def sample_status(e: Any) -> dict[str, Any]:
    """One explanation's status as :class:`MinimalMask` reports it per sample.

    ``{"status": "optimal" | "feasible" | ..., "verified": bool, "proven": bool,
    "mask_size": int}``; ``proven`` is true when the solver proved the mask
    optimal and the mask was verified by replay.
    """
    status = e.status.value if hasattr(e.status, "value") else str(e.status)
    return {
        "status": status,
        "verified": bool(e.verified),
        "proven": status == "optimal" and bool(e.verified),
        "mask_size": int(e.mask_size),
    }


class MinimalMask:
    """Captum-style SMUG attribution: ``MinimalMask(model).attribute(inputs, target=...)``.

    Attributions are shaped like the (batch-first) inputs, with the input's
    dtype and device: each sample's SMUG saliency map, repeated over channels.
    The per-sample :class:`Explanation` objects of the last call are in
    ``self.explanations`` and their statuses in ``self.statuses`` (see
    :func:`sample_status`; ``attribute(..., return_status=True)`` also returns
    them).  A sample whose mask is not proven optimal and verified (a time-out,
    say) gives an :class:`~smug.errors.UnprovenExplanationWarning`, or an
    :class:`~smug.errors.UnprovenExplanationError` with ``on_unproven="raise"``.
    The model is not changed: its train/eval modes are restored and it is
    never moved or cast (a CUDA or float64 model runs as it is; the solver
    works on CPU float64 copies).

    Example:
        >>> mm = MinimalMask(model, backend="ortools:scip", top_k=20)
        >>> attr = mm.attribute(images, target=labels)

    For text, pass the tokenizer (e.g. the vocabulary of
    :func:`smug.zoo.text.pretrained_text_cnn`) and token ids or strings:

        >>> mm = MinimalMask(text_model, tokenizer=vocab, top_k=30, gamma=0.5)
        >>> attr = mm.attribute(["a gorgeous, witty film", "dull and overlong"])

    Args:
        model: the classifier (images or text, as for :func:`explain`).
        backend: the solver backend (overrides the config's).
        config: a :class:`~smug.config.Config`; ``**overrides`` replace its fields.
        tokenizer: text only, as for :func:`explain`.
        on_unproven: ``"warn"`` (default), ``"raise"`` or ``"ignore"``.
        n_jobs: explain a batch's samples in this many worker processes (forked,
            one thread each; ``-1``: one per CPU core); ``1`` (default) in this process.
        progress: show a progress bar over the batch (``None``: only on a terminal, for batches above one).
    """

    def __init__(
        self,
        model: nn.Module,
        backend: str | None = None,
        config: Config | None = None,
        *,
        tokenizer: Any = None,
        on_unproven: str = "warn",
        n_jobs: int = 1,
        progress: bool | None = None,
        **overrides: Any,
    ):
        if on_unproven not in ON_UNPROVEN:
            raise ValidationError(f"on_unproven must be one of {list(ON_UNPROVEN)}, got {on_unproven!r}")
        if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or not (n_jobs >= 1 or n_jobs == -1):
            raise ValidationError(f"n_jobs must be a positive integer or -1 (one per core), got {n_jobs!r}")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.tokenizer = tokenizer
        self.on_unproven = on_unproven
        self.n_jobs = n_jobs
        self.progress = progress
        cfg = config or Config()
        if backend is not None:
            overrides["backend"] = backend
        self.config = cfg.merged(**overrides) if overrides else cfg
        self.explanations: list[Any] = []
        self.statuses: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ input forms
    @staticmethod
    def _unwrap(inputs: Any) -> tuple[Any, bool, bool]:
        """(inputs as a tensor or list of strings, was a 1-tuple, was numpy)."""
        as_tuple = False
        if isinstance(inputs, tuple) and not all(isinstance(t, str) for t in inputs):
            if len(inputs) != 1:
                raise ValidationError(
                    f"MinimalMask explains models with one input tensor; got a tuple of {len(inputs)} inputs "
                    "(Captum's multi-input form). Pass (x,) or x"
                )
            inputs, as_tuple = inputs[0], True
        if isinstance(inputs, np.ndarray):
            if inputs.dtype.kind not in "fiu":
                raise ValidationError(f"numpy inputs must be numeric, got dtype {inputs.dtype}")
            return torch.from_numpy(np.array(inputs)), as_tuple, True
        if isinstance(inputs, (list, tuple)):
            if not all(isinstance(t, str) for t in inputs):
                kinds = sorted({type(t).__name__ for t in inputs})
                raise ValidationError(
                    f"a list of inputs must hold strings (texts), got {kinds}; "
                    "for images or token ids pass one batch tensor (torch.stack the samples)"
                )
            return list(inputs), as_tuple, False
        if not isinstance(inputs, torch.Tensor):
            raise TypeError(
                f"inputs must be a torch.Tensor (or numpy array, a 1-tuple of either, or a list of strings), "
                f"got {type(inputs).__name__}"
            )
        return inputs, as_tuple, False

    @staticmethod
    def _targets(target: Any, bsz: int) -> list[Any]:
        """Captum's target forms: None, an int, a 0-d / (B,) / (B, 1) tensor, a list of ints or of 1-tuples."""
        if target is None or (isinstance(target, (int, np.integer)) and not isinstance(target, bool)):
            return [None if target is None else int(target)] * bsz
        if isinstance(target, (torch.Tensor, np.ndarray)):
            t = target.detach().cpu().numpy() if isinstance(target, torch.Tensor) else np.asarray(target)
            if t.ndim == 0:
                return [int(t)] * bsz
            if t.ndim == 2 and t.shape[1] == 1:
                t = t[:, 0]
            if t.ndim != 1:
                raise ShapeError(
                    f"target tensor must have shape (B,) or (B, 1), got {tuple(t.shape)}; "
                    "smug explains one class of (B, classes) logits per sample"
                )
            if t.dtype.kind not in "iu":
                raise ValidationError(f"target must hold integer class indices, got dtype {t.dtype}")
            seq: list[Any] = [int(v) for v in t]
        elif isinstance(target, (list, tuple)):
            seq = []
            for v in target:
                if isinstance(v, tuple):
                    if len(v) != 1:
                        raise ValidationError(
                            f"target {v!r} indexes a multi-dimensional output; smug explains (B, classes) "
                            "logits, so each target is one class index (an int or a 1-tuple)"
                        )
                    v = v[0]
                seq.append(v)
        else:
            raise ValidationError(f"target must be None, an int, a tensor or a list of ints, got {target!r}")
        if len(seq) != bsz:
            raise ShapeError(f"target has {len(seq)} entries for a batch of {bsz}")
        return seq

    # ------------------------------------------------------------------ attribute
    def attribute(
        self,
        inputs: Any,
        target: Any = None,
        baselines: Any = None,
        feature_mask: Any = None,
        *,
        return_status: bool = False,
    ) -> Any:
        """SMUG saliency for each input of a batch.

        Images: ``inputs`` is a ``(B, C, H, W)`` floating-point tensor (or numpy
        array, or a 1-tuple ``(x,)``, Captum's multi-input convention with one
        input); the result has its shape, dtype and device (numpy in, numpy out;
        a tuple in, a tuple out).  Text: ``inputs`` is a ``(B, L)`` integer tensor
        of token ids (each row explained as given, padding included, pad
        positions unmasked) and the result is a ``(B, L)`` tensor of token
        saliencies in the model's dtype on the ids' device; or a list of strings
        (the ``tokenizer`` given to the constructor encodes them) and the result
        is a list of 1-D tensors, one per text.

        Args:
            inputs: (B, C, H, W) images, (B, L) token ids, or a list of strings.
            target: ``None`` (each sample's predicted class), an int, a 0-d,
                ``(B,)`` or ``(B, 1)`` integer tensor, or a list of B ints (or of
                1-tuples, Captum's per-sample index form).
            baselines: ``None`` (the config's), a number, or a tensor shaped like
                ``inputs`` or like one sample.
            feature_mask: integer segment ids shaped like ``inputs``, like one
                sample, or like the spatial dims (Captum's convention).
            return_status: also return the per-sample statuses (see :func:`sample_status`).

        Returns:
            The attributions, or ``(attributions, statuses)`` with ``return_status``.

        Raises:
            UnprovenExplanationError: ``on_unproven="raise"`` and a sample is not proven.
        """
        x, as_tuple, was_numpy = self._unwrap(inputs)
        if isinstance(x, list) or (not torch.is_floating_point(x) and is_text_input(self.model, x)):
            out = self._attribute_text(x, target, baselines)
        else:
            out = self._attribute_images(x, target, baselines, feature_mask)
        if was_numpy:
            out = out.cpu().numpy().astype(inputs[0].dtype if as_tuple else inputs.dtype, copy=False)
        if as_tuple:
            out = (out,)
        return (out, list(self.statuses)) if return_status else out

    def _run(self, jobs: list[tuple[Any, Any, Any, Any]]) -> list[Any]:
        """Explain each ``(x, target, baseline, feature_mask)``; in worker processes when ``n_jobs`` asks."""
        import os

        from tqdm import tqdm

        n = len(jobs)
        workers = (os.cpu_count() or 1) if self.n_jobs == -1 else self.n_jobs
        workers = max(1, min(workers, n))
        show = self.progress if self.progress is not None else (None if n > 1 else False)
        bar = tqdm(total=n, desc="explaining", unit="sample", disable=None if show is None else not show)
        results: list[Any] = [None] * n
        try:
            if workers == 1:
                for i, (x, t, b, fm) in enumerate(jobs):
                    results[i] = explain(
                        self.model, x, t, self.config, baseline=b, feature_mask=fm, tokenizer=self.tokenizer
                    )
                    bar.update(1)
            else:
                import concurrent.futures as cf

                from ..solving.pipeline import mp_context

                _JOB.update(model=self.model, config=self.config, tokenizer=self.tokenizer)
                try:
                    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp_context()) as pool:
                        futures = [pool.submit(_explain_job, i, *job) for i, job in enumerate(jobs)]
                        for fut in cf.as_completed(futures):
                            i, e = fut.result()
                            results[i] = e
                            bar.update(1)
                finally:
                    _JOB.clear()
        finally:
            bar.close()
        self.explanations = results
        self.statuses = [sample_status(e) for e in results]
        self._check_proven()
        return results

    def _check_proven(self) -> None:
        bad = [(i, s) for i, s in enumerate(self.statuses) if not s["proven"]]
        if not bad or self.on_unproven == "ignore":
            return
        what = ", ".join(f"sample {i}: {s['status']}{'' if s['verified'] else ', not verified'}" for i, s in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        msg = (
            f"{len(bad)} of {len(self.statuses)} masks are not proven minimal and verified ({what}{more}); "
            "their attributions come from an unproven mask. Raise time_limit, or read mm.statuses"
        )
        if self.on_unproven == "raise":
            raise UnprovenExplanationError(msg)
        warnings.warn(msg, UnprovenExplanationWarning, stacklevel=caller_level())

    def _attribute_images(self, inputs: torch.Tensor, target: Any, baselines: Any, feature_mask: Any) -> Any:
        if inputs.dim() != 4:
            raise ShapeError(f"inputs must be a batch-first tensor (B, C, H, W), got {tuple(inputs.shape)}")
        if not torch.is_floating_point(inputs):
            raise ValidationError(
                f"image inputs must be floating point, got {inputs.dtype} (for uint8 images: x.float() / 255)"
            )
        bsz = inputs.shape[0]

        def per_sample(v: Any, name: str) -> list[Any]:
            if isinstance(v, np.ndarray):
                v = torch.from_numpy(np.array(v))
            if v is None or isinstance(v, (int, float, str)):
                return [v] * bsz
            if isinstance(v, torch.Tensor) and v.dim() == 0:
                return [v.item()] * bsz
            if isinstance(v, torch.Tensor) and v.dim() == inputs.dim() and v.shape[0] == bsz:
                return list(v)
            if isinstance(v, torch.Tensor) and (v.dim() < inputs.dim() or v.shape[0] == 1):
                return [v[0] if v.dim() == inputs.dim() else v] * bsz
            seq = list(v.tolist() if isinstance(v, torch.Tensor) else v)
            if len(seq) != bsz:
                raise ShapeError(f"{name} has {len(seq)} entries for a batch of {bsz}")
            return seq

        targets = self._targets(target, bsz)
        bases = [
            b.detach().cpu().double().numpy() if isinstance(b, torch.Tensor) else b
            for b in per_sample(baselines, "baselines")
        ]
        masks = [
            m.detach().cpu() if isinstance(m, torch.Tensor) else m for m in per_sample(feature_mask, "feature_mask")
        ]
        xs = inputs.detach().cpu()
        results = self._run([(xs[i], targets[i], bases[i], masks[i]) for i in range(bsz)])
        out = torch.zeros(inputs.shape, dtype=inputs.dtype)
        for i, e in enumerate(results):
            out[i] = torch.from_numpy(e.saliency).to(inputs.dtype).unsqueeze(0).expand_as(out[i])
        return out.to(inputs.device)

    def _attribute_text(self, inputs: Any, target: Any, baselines: Any) -> Any:
        bsz = len(inputs)
        targets = self._targets(target, bsz)
        if isinstance(inputs, torch.Tensor) and inputs.dim() != 2:
            raise ShapeError(f"token ids must be a batch (B, L), got shape {tuple(inputs.shape)}")
        if baselines is not None and not isinstance(baselines, str):
            raise ValidationError("for text, baselines must be 'zero' or 'pad' (or set a vector with explain())")
        rows = inputs.detach().cpu() if isinstance(inputs, torch.Tensor) else inputs
        results = self._run([(rows[i], targets[i], baselines, None) for i in range(bsz)])
        _, dtype = model_device_dtype(self.model)
        out = [torch.from_numpy(e.saliency).to(dtype) for e in results]
        if isinstance(inputs, torch.Tensor):
            return torch.stack(out).to(inputs.device)
        return out

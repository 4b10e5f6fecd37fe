"""SMUG for text: the minimal set of tokens that keeps the top-k first-layer neurons active.

The same pipeline as for images (:mod:`smug.explain.image`), with one 0/1 variable
per token position instead of per pixel window:

1. the text is tokenized (a string and a ``tokenizer``) or taken as token ids,
   cut or refused when longer than the model's maximum length
   (``Config.max_len`` / ``Config.truncate``), and checked (empty, only unknown
   tokens, ids out of the vocabulary);
2. the neurons of the first layer after the embedding (``Conv1d`` or
   ``Linear``) are scored by Integrated Gradients, and the top-k active ones kept;
3. each kept neuron's pre-activation on the masked embeddings is affine in the
   token mask (:meth:`smug.encoders.text.TextFirstLayer.affine_rows`); a masked
   token's embedding becomes the baseline (zero, ``<pad>``'s, or a vector);
4. the solver finds the fewest tokens keeping every such neuron above
   ``gamma`` x its original value; ``<pad>`` positions get no variable;
5. the mask is replayed through a float64 copy of the real model, giving the
   prediction on the kept tokens alone and with the kept tokens removed;
6. a token's saliency is the largest score among kept neurons whose window
   covers it (``Config.saliency="sum"`` adds them), times the mask.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ..config import Config
from ..encoders.text import TextFirstLayer, find_text_first_layer
from ..errors import ShapeError, ValidationError
from ..ir import Problem
from ..solving.contract import Solution, Status
from .common import (
    base_map as saliency_base_map,
)
from .common import (
    caller_level,
    check_called_once,
    check_target,
    first_layer_problem,
    guarded_forward,
    model_device_dtype,
    predictions,
    replay_check,
    resolve_config,
    restores_modes,
    run_solver,
    score_and_select,
    solution_mask,
    solve_stats,
)
from .results import save_explanation

__all__ = ["TextExplanation", "explain_text", "text_explanation_problem", "prepare_ids"]


@dataclass
class TextExplanation:
    """A SMUG explanation of one text classification.

    Attributes:
        tokens: the explained tokens, one per position (``<pad>`` included
            when the ids carry padding).
        ids: the explained token ids ``(L,)``.
        positions: the positions that got a mask variable, in variable order.
        kept: bool per position: the tokens the minimal mask keeps.
        mask_groups: the solver's 0/1 value per mask variable.
        saliency: per token: ``kept`` x the base map.
        base_map: per token: the largest (or summed) score of the kept neurons
            whose window covers it.
        alternatives: further minimal token masks (bool per position) when enumeration was asked for.
        status: the solver's status.
        verified: every kept neuron's constraint held when the mask was replayed in float64.
        target, prediction, probability: the explained class, the predicted one and its probability.
        masked_prediction, masked_probability: with only the kept tokens (the others at the baseline).
        complement_prediction, complement_probability: with the kept tokens masked.
        neurons, scores, n_constraints: the constrained first-layer neurons, every neuron's score, how many.
        truncated: the text was cut to the model's maximum length.
        pad_id: the ``<pad>`` id (its positions never get a variable).
        class_names: names of the classes, if known (for display).
        stats, config, solution: timings and sizes, the configuration, the raw solution.
    """

    tokens: list[str]
    ids: np.ndarray
    positions: np.ndarray
    kept: np.ndarray
    mask_groups: np.ndarray
    saliency: np.ndarray
    base_map: np.ndarray
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
    truncated: bool = False
    class_names: Sequence[str] | None = None
    pad_id: int | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    config: Config = field(default_factory=Config)
    solution: Solution | None = None

    # ------------------------------------------------------------ summaries
    @property
    def mask(self) -> np.ndarray:
        """0/1 per token position (int8): the same information as :attr:`kept`."""
        return self.kept.astype(np.int8)

    @property
    def mask_size(self) -> int:
        """Number of kept tokens."""
        return int(self.mask_groups.sum())

    @property
    def kept_tokens(self) -> list[str]:
        """The kept tokens, in text order."""
        return [t for t, k in zip(self.tokens, self.kept) if k]

    @property
    def kept_fraction(self) -> float:
        """Fraction of the maskable tokens kept."""
        return self.mask_size / max(1, len(self.positions))

    @property
    def text(self) -> str:
        """The explained tokens joined by spaces (``<pad>`` positions dropped)."""
        return " ".join(t for t, i in zip(self.tokens, self.ids) if self.pad_id is None or int(i) != self.pad_id)

    def _class(self, c: int) -> str:
        names = self.class_names
        return f"{names[c]} ({c})" if names is not None and 0 <= c < len(names) else str(c)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON reports and tables."""
        return {
            "text": self.text,
            "tokens": list(self.tokens),
            "ids": self.ids.tolist(),
            "kept": self.kept.astype(int).tolist(),
            "kept_tokens": self.kept_tokens,
            "saliency": self.saliency.tolist(),
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
            "truncated": self.truncated,
            "class_names": list(self.class_names) if self.class_names is not None else None,
            "stats": self.stats,
            "config": self.config.to_dict(),
        }

    def _prediction_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            k: getattr(self, k)
            for k in (
                "target",
                "prediction",
                "probability",
                "masked_prediction",
                "masked_probability",
                "complement_prediction",
                "complement_probability",
            )
        }
        if self.class_names is not None:
            info["class_names"] = list(self.class_names)
        info["minimal mask"] = f"{self.mask_size} of {len(self.positions)} tokens ({self.status.value})"
        return info

    # ------------------------------------------------------------- display
    def render(self, *, color: bool = True) -> str:
        """The text on one line, kept tokens bold/underlined (``[bracketed]`` without colour), shaded by saliency."""
        from .render.text import render_terminal

        return render_terminal(self.tokens, self.saliency, self.kept, color=color)

    def summary(self, *, color: bool = True) -> str:
        """A few lines for a terminal: the highlighted text and the three predictions."""
        lines = [
            self.render(color=color),
            f"  full text: {self._class(self.prediction)} p={self.probability:.3f}   "
            f"kept tokens only: {self._class(self.masked_prediction)} p[target]={self.masked_probability:.3f}   "
            f"kept tokens removed: {self._class(self.complement_prediction)} "
            f"p[target]={self.complement_probability:.3f}",
            f"  minimal mask: {self.mask_size} of {len(self.positions)} tokens, {self.status.value}, "
            f"verified={self.verified}",
        ]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary(color=False)

    def to_html(self, *, title: str = "SMUG explanation") -> str:
        """A standalone HTML page (tokens shaded by saliency, kept tokens outlined, the predictions in a table)."""
        from .render.text import render_html

        return render_html(self.tokens, self.saliency, self.kept, title=title, prediction=self._prediction_info())

    def save(self, path: str | Path) -> Path:
        """Save as ``.html`` (:meth:`to_html`), ``.json`` (:meth:`to_dict`) or ``.npz`` (the arrays)."""
        return save_explanation(
            path,
            self.to_dict,
            lambda: {
                "ids": self.ids,
                "positions": self.positions,
                "kept": self.kept,
                "mask_groups": self.mask_groups,
                "saliency": self.saliency,
                "base_map": self.base_map,
                "neurons": self.neurons,
                "scores": self.scores,
            },
            html=self.to_html,
        )


# ----------------------------------------------------------------- inputs
def _model_limit(model: nn.Module, layer: TextFirstLayer, cfg: Config) -> int | None:
    if layer.kind == "linear":
        if cfg.max_len is not None and cfg.max_len > int(layer.seq_len or 0):
            raise ValidationError(
                f"max_len={cfg.max_len} exceeds what the model takes: its first layer {layer.name!r} is a Linear over "
                f"exactly {layer.seq_len} tokens; set max_len <= {layer.seq_len}"
            )
        return cfg.max_len or layer.seq_len
    if cfg.max_len is not None:
        return cfg.max_len
    limit = getattr(model, "max_len", None)
    return int(limit) if isinstance(limit, (int, np.integer)) and not isinstance(limit, bool) else None


def _cut(ids: list[int], limit: int | None, mode: str, what: str) -> tuple[list[int], bool]:
    if limit is None or len(ids) <= limit:
        return ids, False
    msg = f"the text has {len(ids)} {what}, more than the model's maximum length max_len={limit}"
    if mode == "error":
        raise ValidationError(f"{msg}; shorten it, raise max_len, or set truncate='warn' to cut it")
    warnings.warn(
        f"{msg}; explaining the first {limit} (set truncate='error' to refuse instead)", stacklevel=caller_level()
    )
    return ids[:limit], True


def _unk_id(tokenizer: Any) -> int | None:
    unk = getattr(tokenizer, "unk_id", None)
    return int(unk) if isinstance(unk, (int, np.integer)) and not isinstance(unk, bool) else None


def prepare_ids(
    model: nn.Module, x: Any, layer: TextFirstLayer, cfg: Config, tokenizer: Any = None
) -> tuple[np.ndarray, bool]:
    """The token ids SMUG explains for ``x`` (a string or ids), and whether they were truncated.

    Strings are encoded with ``tokenizer`` (a :class:`smug.zoo.text.Vocabulary` or a
    callable ``str -> ids``).  A text longer than the model's maximum length
    (``cfg.max_len``, else the model's ``max_len`` attribute, else a ``Linear``
    first layer's fixed length) is cut with a warning or refused, as
    ``cfg.truncate`` says; for a ``Linear`` first layer shorter texts are padded
    with ``<pad>`` to its length.

    Raises:
        ValidationError: empty text, only unknown tokens, a string without a
            tokenizer, ids out of the vocabulary, a non-integer id tensor.
        ShapeError: ids that are not one sequence.
    """
    limit = _model_limit(model, layer, cfg)
    truncated = False
    if isinstance(x, str):
        if tokenizer is None:
            raise ValidationError(
                "a string needs a tokenizer to become token ids: pass tokenizer=vocab (the Vocabulary returned by "
                "smug.zoo.text.pretrained_text_cnn(), or any callable str -> list[int]), or pass the ids themselves"
            )
        if not x.strip():
            raise ValidationError(f"empty text: nothing to explain (got {x!r})")
        if hasattr(tokenizer, "encode") and hasattr(tokenizer, "tokenize"):
            n_tokens = len(tokenizer.tokenize(x))
            if limit is not None and n_tokens > limit:
                _, truncated = _cut([0] * n_tokens, limit, cfg.truncate, "tokens")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the length warning was given above, once
                ids = list(tokenizer.encode(x, max_len=limit, truncate="silent"))
        elif callable(tokenizer):
            ids = [int(i) for i in tokenizer(x)]
            if not ids:
                raise ValidationError(f"empty text: the tokenizer returned no tokens for {x!r}")
            ids, truncated = _cut(ids, limit, cfg.truncate, "tokens")
        else:
            raise ValidationError(
                "tokenizer must be a smug.zoo.text.Vocabulary or a callable str -> list[int], "
                f"got {type(tokenizer).__name__}"
            )
    else:
        if isinstance(x, torch.Tensor):
            if torch.is_floating_point(x):
                raise ValidationError(f"token ids must be integers, got a {x.dtype} tensor")
            arr = x.detach().cpu().numpy()
        else:
            arr = np.asarray(x)
        if arr.ndim == 2 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 1:
            raise ShapeError(
                f"explain() takes one text: ids of shape (L,) or (1, L), got shape {arr.shape}; "
                "use MinimalMask.attribute for batches"
            )
        if arr.size == 0:
            raise ValidationError("empty text: nothing to explain (the id sequence is empty)")
        if arr.dtype.kind not in "iu":
            raise ValidationError(f"token ids must be integers, got dtype {arr.dtype}")
        ids, truncated = _cut([int(i) for i in arr], limit, cfg.truncate, "token ids")
        unk = _unk_id(tokenizer)
        if unk is not None and all(i in (unk, layer.pad_id) for i in ids):
            raise ValidationError(
                "every token of the text is unknown (<unk>) or padding: there is nothing the model can base a "
                "prediction on"
            )
    if layer.kind == "linear" and layer.seq_len is not None and len(ids) < layer.seq_len:
        ids = ids + [layer.pad_id] * (layer.seq_len - len(ids))
    arr = layer._ids(np.asarray(ids, dtype=np.int64))  # range and length checks, named errors
    if not (arr != layer.pad_id).any():
        raise ValidationError(f"the text holds only <pad> (id {layer.pad_id}): nothing to explain")
    return arr, truncated


def _token_names(ids: np.ndarray, tokenizer: Any) -> list[str]:
    decode = getattr(tokenizer, "decode", None)
    if callable(decode):
        try:
            toks = list(decode(ids))
            if len(toks) == len(ids) and all(isinstance(t, str) for t in toks):
                return toks
        except Exception:  # noqa: BLE001 -- a foreign decode that does not map ids one to one: show the ids
            pass
    return [f"#{int(i)}" for i in ids]


# ------------------------------------------------------------------ pipeline
@dataclass
class _TextPrepared:
    cfg: Config
    model: nn.Module
    layer: TextFirstLayer
    ids: np.ndarray
    positions: np.ndarray
    truncated: bool
    base_vec: np.ndarray
    hook_name: str
    scores: np.ndarray
    selection: Any
    prediction: int
    target: int
    problem: Problem
    stats: dict[str, Any]


def _prepare_text(
    model: nn.Module,
    x: Any,
    target: Any,
    config: Config | None,
    baseline: Any,
    tokenizer: Any,
    maskable: Any,
    overrides: dict[str, Any],
) -> _TextPrepared:
    cfg = resolve_config(model, config, overrides)
    model = model.eval()
    layer = find_text_first_layer(model, cfg.first_layer)
    ids, truncated = prepare_ids(model, x, layer, cfg, tokenizer)
    L = int(ids.shape[0])
    positions = layer.mask_positions(ids, maskable)
    if positions.size == 0:
        raise ValidationError("no token position is maskable: nothing to explain")
    base_spec = cfg.baseline if baseline is None else baseline
    if isinstance(base_spec, str) and base_spec == "mean":
        raise ValidationError("baseline 'mean' is for images; for text use 'zero', 'pad' or an embedding vector")
    if isinstance(base_spec, (int, float)) and not isinstance(base_spec, bool):
        base_spec = np.full(layer.embed_dim, float(base_spec))
    base_vec = layer.baseline_vector(base_spec)
    stats: dict[str, Any] = {"tokens": L, "truncated": truncated}

    t0 = time.perf_counter()
    xb = torch.from_numpy(ids).unsqueeze(0).to(model_device_dtype(model)[0])
    logits, calls = guarded_forward(model, xb)
    check_called_once(model, calls, layer.name)
    probs = torch.softmax(logits, dim=1)[0]
    prediction = int(probs.argmax())
    target = check_target(target, probs.shape[0], prediction)
    pre = layer.preactivations(ids)
    top_k = cfg.top_k
    if top_k > pre.size:
        warnings.warn(
            f"top_k={top_k} exceeds the {pre.size} first-layer neurons of this {L}-token text; using {pre.size}",
            stacklevel=caller_level(),
        )
        top_k = int(pre.size)
    hook_name, scores, selection = score_and_select(model, xb, layer.module_names, pre, target, cfg, top_k)
    stats["scoring_time"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    neurons = selection.neurons
    C, d = layer.affine_rows(ids, neurons, baseline=base_vec, maskable=positions)
    T = positions.size
    groups = sp.csr_matrix((np.ones(T), (np.arange(T), positions)), shape=(T, L))
    problem = first_layer_problem(
        C,
        d,
        pre[neurons],
        cfg,
        groups,
        (L,),
        np.ones(T),
        {"first_layer": layer.name, "target": target, "neurons": neurons.tolist(), "modality": "text"},
    )
    stats["build_time"] = time.perf_counter() - t1
    return _TextPrepared(
        cfg, model, layer, ids, positions, truncated, base_vec, hook_name, scores, selection, prediction, target,
        problem, stats,
    )  # fmt: skip


@restores_modes
def text_explanation_problem(
    model: nn.Module,
    x: Any,
    target: int | None = None,
    config: Config | None = None,
    *,
    baseline: Any = None,
    tokenizer: Any = None,
    maskable: Any = None,
    **overrides: Any,
) -> Problem:
    """The IR problem :func:`explain_text` would solve, without solving it (for backend studies)."""
    return _prepare_text(model, x, target, config, baseline, tokenizer, maskable, overrides).problem


@restores_modes
def explain_text(
    model: nn.Module,
    x: Any,
    target: int | None = None,
    config: Config | None = None,
    *,
    baseline: Any = None,
    tokenizer: Any = None,
    maskable: Any = None,
    class_names: Sequence[str] | None = None,
    **overrides: Any,
) -> TextExplanation:
    """Explain a text classifier's prediction by the fewest tokens that keep its top-k first-layer neurons active.

    :func:`smug.explain` calls this for text inputs; arguments as there.

    Args:
        model: logits from token ids ``(B, L)``; an ``nn.Embedding`` followed by
            ``Conv1d`` or ``Linear`` (see :func:`smug.encoders.text.find_text_first_layer`).
        x: a string (with ``tokenizer``) or token ids ``(L,)`` / ``(1, L)``.
        target: the class to explain (default: the predicted one).
        config: a :class:`~smug.config.Config`; ``**overrides`` replace its fields.
        baseline: a masked token's embedding: ``"zero"`` (default), ``"pad"``, a
            number (every component) or a vector of the embedding's width.
        tokenizer: a :class:`smug.zoo.text.Vocabulary` or a callable ``str -> ids``.
        maskable: positions that get a variable (default: every non-pad one).
        class_names: names for display (default: the model's, else the
            tokenizer's ``class_names`` attribute, if any).

    Returns:
        A :class:`TextExplanation`.
    """
    prep = _prepare_text(model, x, target, config, baseline, tokenizer, maskable, overrides)
    cfg, layer, ids, positions, problem, stats = (
        prep.cfg,
        prep.layer,
        prep.ids,
        prep.positions,
        prep.problem,
        prep.stats,
    )
    neurons = prep.selection.neurons
    L = int(ids.shape[0])

    sol = run_solver(problem, cfg)
    mask_groups = solution_mask(sol, problem.n_mask)

    def kept_of(mg: np.ndarray) -> np.ndarray:
        return problem.features_kept(mg).astype(bool)

    kept = kept_of(mask_groups)

    # ---- replay in float64 through the real model, with the embedding's output replaced
    t2 = time.perf_counter()
    m64 = copy.deepcopy(prep.model).cpu().double().eval()
    embs = np.stack(
        [
            layer.masked_embeddings(ids, m, baseline=prep.base_vec, maskable=positions)
            for m in (np.ones(positions.size), mask_groups, 1 - mask_groups)
        ]
    )
    ids3 = torch.from_numpy(np.stack([ids] * 3))
    captured: dict[str, torch.Tensor] = {}
    mod = dict(m64.named_modules())[layer.module_names[-1]]
    handle = mod.register_forward_hook(lambda m, i, o: captured.__setitem__("o", o.detach()))
    try:
        with torch.no_grad():
            logits3 = layer.forward_embeddings(m64, ids3, torch.from_numpy(embs))
    finally:
        handle.remove()
    pre_replay = captured["o"].reshape(3, -1).numpy()
    probs3 = torch.softmax(logits3, dim=1).numpy()
    verified, min_margin = replay_check(pre_replay, neurons, cfg, sol)
    stats["replay_time"] = time.perf_counter() - t2

    # ---- saliency: a token's score is the best score of the kept neurons whose window covers it
    rf = layer.receptive_fields(L, neurons)
    base_map = saliency_base_map(rf, prep.scores[neurons], cfg.saliency, (L,))
    saliency = kept * base_map

    stats.update(solve_stats(problem, sol, cfg))
    stats.update(
        {
            "first_layer": layer.name,
            "scored_at": prep.hook_name,
            "eligible_neurons": prep.selection.eligible,
            "max_replay_margin": min_margin,
        }
    )
    names = class_names
    for owner in (prep.model, tokenizer):
        if names is None:
            names = getattr(owner, "class_names", None)
    return TextExplanation(
        tokens=_token_names(ids, tokenizer),
        ids=ids,
        positions=positions,
        kept=kept,
        mask_groups=mask_groups,
        saliency=saliency,
        base_map=base_map,
        alternatives=[kept_of(m) for m in sol.masks[1:]],
        status=sol.status,
        verified=verified,
        target=prep.target,
        **predictions(probs3, prep.prediction, prep.target),
        neurons=neurons,
        scores=prep.scores,
        n_constraints=prep.selection.imposed,
        truncated=prep.truncated,
        pad_id=layer.pad_id,
        class_names=list(names) if names is not None else None,
        stats=stats,
        config=cfg,
        solution=sol,
    )

"""How good is a saliency map?  Metrics for comparing explanation methods.

Each metric states its direction in :data:`DIRECTIONS`:

| metric | better | what it measures |
|---|---|---|
| ``saliency_metric`` | lower | Dabkowski & Gal (2017): ``log(max(a, 0.05)) - log(p)`` of the best bounding box |
| ``text_saliency_metric`` | lower | the same with the kept tokens' fraction and the probability with only them kept |
| ``sparsity`` | lower | fraction of the input kept (or holding a share of the map's mass) |
| ``insertion_auc`` | higher | RISE: probability as the most salient pixels are inserted |
| ``deletion_auc`` | lower | RISE: probability as the most salient pixels are deleted |

Maps are ``(H, W)`` arrays; attributions shaped like the input become maps with
:func:`to_map`.  The model is only called on inputs, never modified; use it in eval mode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, NonFiniteError, ShapeError, ValidationError

__all__ = [
    "DIRECTIONS",
    "SaliencyMetric",
    "TextSaliencyMetric",
    "InsertionDeletion",
    "to_map",
    "crop_resize",
    "saliency_metric",
    "text_saliency_metric",
    "best_text_saliency_metric",
    "text_insertion_deletion",
    "sparsity",
    "insertion_deletion",
    "plot_curves",
]

#: Whether a lower or a higher value of each metric is better.
DIRECTIONS: dict[str, Literal["lower", "higher"]] = {
    "saliency_metric": "lower",
    "text_saliency_metric": "lower",
    "sparsity": "lower",
    "insertion_auc": "higher",
    "deletion_auc": "lower",
}


# ------------------------------------------------------------------------------ helpers
def _image(x: Any) -> torch.Tensor:
    """One input as a float ``(C, H, W)`` tensor (a copy of a numpy array)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.array(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"the input must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 3:
        raise ShapeError(f"the input must have shape (C, H, W) or (1, C, H, W), got {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise ValidationError(f"the input has dtype {x.dtype}; metrics need floating point")
    return x.detach()


def to_map(attribution: Any, mode: Literal["abs", "positive", "identity"] = "identity") -> np.ndarray:
    """A ``(H, W)`` float64 saliency map from an attribution ``(H, W)``, ``(C, H, W)`` or ``(1, C, H, W)``.

    Channels are averaged, then ``mode`` applies: ``"abs"`` averages ``|a|``
    instead, ``"positive"`` keeps the positive part, ``"identity"`` leaves the values.
    """
    a = (
        attribution.detach().cpu().double().numpy()
        if isinstance(attribution, torch.Tensor)
        else np.asarray(attribution)
    )
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim not in (2, 3):
        raise ShapeError(f"an attribution must be (H, W), (C, H, W) or (1, C, H, W), got {a.shape}")
    if not np.isfinite(a).all():
        raise NonFiniteError("the attribution contains NaN or infinite values")
    if mode == "abs":
        a = np.abs(a)
    elif mode not in ("positive", "identity"):
        raise ConfigError(f"mode must be 'abs', 'positive' or 'identity', got {mode!r}")
    m = a.mean(axis=0) if a.ndim == 3 else a
    return np.maximum(m, 0.0) if mode == "positive" else m


def _map_for(x: torch.Tensor, saliency: Any) -> np.ndarray:
    m = to_map(saliency)
    if m.shape != tuple(x.shape[1:]):
        raise ShapeError(f"the saliency map has shape {m.shape} but the input's spatial shape is {tuple(x.shape[1:])}")
    return m


def _log_probs(model: nn.Module, xs: torch.Tensor, batch: int = 256) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([torch.log_softmax(model(c), dim=1) for c in xs.split(batch)]).double()


def _predicted(model: nn.Module, x: torch.Tensor, target: Any) -> tuple[int, torch.Tensor]:
    """The explained class (default: the prediction on ``x``) and ``x``'s log-probabilities."""
    lp = _log_probs(model, x.unsqueeze(0))[0]
    if target is None:
        return int(lp.argmax()), lp
    t = int(target.item()) if isinstance(target, torch.Tensor) else target
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= int(t) < lp.numel():
        raise ValidationError(f"target {target!r} is out of range: the model has {lp.numel()} classes")
    return int(t), lp


def _check_min_area(min_area: float) -> float:
    if not isinstance(min_area, (int, float)) or not 0 < min_area <= 1:
        raise ConfigError(f"min_area must be in (0, 1], got {min_area!r}")
    return float(min_area)


# ------------------------------------------------------------------ saliency metric
@dataclass
class SaliencyMetric:
    """The saliency metric of one map (Dabkowski & Gal, 2017).  **Lower is better.**

    Attributes:
        score: the best (lowest) ``log(max(area, min_area)) - log(probability)`` over the thresholds.
        area: the best box's area as a fraction of the input.
        probability: the target's probability on the best box, cropped and resized to the input size.
        threshold: the map value whose box scored best (``None`` when the map has no positive value
            and the whole input was the box).
        box: ``(row0, row1, col0, col1)``, half-open, of the best box.
        target: the class scored (the original prediction unless given).
        thresholds, areas, probabilities, scores: every threshold tried and its result.
    """

    score: float
    area: float
    probability: float
    threshold: float | None
    box: tuple[int, int, int, int]
    target: int
    thresholds: np.ndarray = field(default_factory=lambda: np.zeros(0))
    areas: np.ndarray = field(default_factory=lambda: np.zeros(0))
    probabilities: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _thresholds(m: np.ndarray, thresholds: Any) -> np.ndarray:
    if isinstance(thresholds, (int, np.integer)) and not isinstance(thresholds, bool):
        if thresholds < 1:
            raise ConfigError(f"thresholds must be a positive number of levels or an array of values, got {thresholds}")
        pos = m[m > 0]
        if not pos.size:
            return np.zeros(0)
        return np.unique(np.quantile(pos, np.linspace(0.0, 1.0, int(thresholds) + 1)))
    t = np.asarray(thresholds, dtype=np.float64).ravel()
    if not t.size or not np.isfinite(t).all():
        raise ConfigError("thresholds must be a non-empty array of finite values (or a number of levels)")
    return np.unique(t)


def _box(kept: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(kept.any(axis=1))
    cols = np.flatnonzero(kept.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def crop_resize(x: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """``x`` ``(C, H, W)`` cropped to ``box`` (half-open rows, cols) and resized back to ``(H, W)`` (bilinear)."""
    r0, r1, c0, c1 = box
    crop = x[:, r0:r1, c0:c1].unsqueeze(0)
    return F.interpolate(crop, size=tuple(x.shape[1:]), mode="bilinear", align_corners=False)[0]


def saliency_metric(
    model: nn.Module,
    x: Any,
    saliency: Any,
    target: int | None = None,
    thresholds: int | Sequence[float] = 20,
    min_area: float = 0.05,
) -> SaliencyMetric:
    """The saliency metric of Dabkowski & Gal (2017), as the SMUG paper uses it.  **Lower is better.**

    For each threshold, the pixels with map value ``>= threshold`` define their
    tightest bounding box; the box is cropped from ``x``, resized back to the
    input size (bilinear) and classified.  With ``a`` the box's area fraction and
    ``p`` the probability of the class originally predicted, the score is
    ``log(max(a, min_area)) - log(p)``; the best (lowest) over the thresholds is
    reported.  A map with no positive value scores the whole input (``a = 1``).

    Args:
        model: the classifier.
        x: one input ``(C, H, W)`` or ``(1, C, H, W)``.
        saliency: the map ``(H, W)`` (or an attribution shaped like ``x``: channels are averaged;
            apply :func:`to_map` first for signed attributions).
        target: the class scored (default: the model's prediction on ``x``).
        thresholds: a number ``n`` of levels (the map's positive values at the quantiles
            ``0, 1/n, ..., 1``; default 20) or explicit threshold values.
        min_area: the area floor ``a`` is clipped to (Dabkowski & Gal's 0.05).
    """
    x = _image(x)
    m = _map_for(x, saliency)
    min_area = _check_min_area(min_area)
    target, lp_full = _predicted(model, x, target)
    H, W = m.shape
    ts = _thresholds(m, thresholds)
    boxes: list[tuple[int, int, int, int]] = []
    kept_ts: list[float] = []
    for t in ts:
        kept = m >= t
        if kept.any():
            boxes.append(_box(kept))
            kept_ts.append(float(t))
    if not boxes:
        lp = float(lp_full[target])
        return SaliencyMetric(
            score=float(np.log(1.0) - lp), area=1.0, probability=float(np.exp(lp)), threshold=None,
            box=(0, H, 0, W), target=target,
        )  # fmt: skip
    unique = sorted(set(boxes))
    lps = _log_probs(model, torch.stack([crop_resize(x, b) for b in unique]))[:, target].numpy()
    lp_of = dict(zip(unique, lps))
    areas = np.array([(b[1] - b[0]) * (b[3] - b[2]) / (H * W) for b in boxes])
    logp = np.array([lp_of[b] for b in boxes])
    scores = np.log(np.maximum(areas, min_area)) - logp
    i = int(np.argmin(scores))
    return SaliencyMetric(
        score=float(scores[i]),
        area=float(areas[i]),
        probability=float(np.exp(logp[i])),
        threshold=kept_ts[i],
        box=boxes[i],
        target=target,
        thresholds=np.array(kept_ts),
        areas=areas,
        probabilities=np.exp(logp),
        scores=scores,
    )


# ------------------------------------------------------------------------------- text
@dataclass
class TextSaliencyMetric:
    """The saliency metric for text: **lower is better**.

    Attributes:
        score: ``log(max(kept_fraction, min_area)) - log(probability)``.
        kept_fraction: kept tokens / tokens (``<pad>`` positions are not counted).
        probability: the target's probability with only the kept tokens (the others' embeddings zeroed).
        target: the class scored (the original prediction unless given).
    """

    score: float
    kept_fraction: float
    probability: float
    target: int


def _embedding(model: nn.Module) -> nn.Embedding:
    for mod in model.modules():
        if isinstance(mod, nn.Embedding):
            return mod
    raise ValidationError(f"{type(model).__name__} has no nn.Embedding; the text metric masks token embeddings")


def text_saliency_metric(
    model: nn.Module, ids: Any, kept: Any, target: int | None = None, min_area: float = 0.05
) -> TextSaliencyMetric:
    """The saliency metric for a text classifier's explanation.  **Lower is better.**

    The kept tokens' fraction ``a`` and the probability ``p`` of the class
    originally predicted when only the kept tokens remain (every other token's
    embedding is replaced by the zero vector, through a forward hook on the
    model's first ``nn.Embedding``) give ``log(max(a, min_area)) - log(p)``.

    Args:
        model: a text classifier with an ``nn.Embedding`` (e.g. :class:`smug.zoo.text.TextCNN`).
        ids: token ids ``(L,)`` or ``(1, L)``.
        kept: per token, 1 / ``True`` to keep it, shaped like ``ids``.
        target: the class scored (default: the model's prediction on ``ids``).
        min_area: the floor of the kept fraction.
    """
    t_ids, k, target = _text_inputs(model, ids, kept, target, what="kept")
    if not np.isin(k, (0.0, 1.0)).all():
        raise ValidationError("kept must be 0/1 (or boolean) per token")
    min_area = _check_min_area(min_area)
    counted = _counted(model, t_ids)
    lp = float(_gated_log_probs(model, t_ids, k[None, :], target)[0])
    frac = float(k[counted].sum() / counted.sum())
    return TextSaliencyMetric(
        score=float(np.log(max(frac, min_area)) - lp), kept_fraction=frac, probability=float(np.exp(lp)), target=target
    )


def _gated_log_probs(
    model: nn.Module, ids: torch.Tensor, gates: np.ndarray, target: int, batch: int = 256
) -> np.ndarray:
    """The target's log-probability for ``ids`` with each token's embedding multiplied by ``gates`` (a row each)."""
    emb = _embedding(model)
    out = []
    for s in range(0, gates.shape[0], batch):
        g = torch.from_numpy(gates[s : s + batch]).unsqueeze(-1)

        def hook(_m: nn.Module, _a: Any, o: torch.Tensor, g: torch.Tensor = g) -> torch.Tensor:
            return o * g.to(o.dtype)

        h = emb.register_forward_hook(hook)
        try:
            with torch.no_grad():
                lp = torch.log_softmax(model(ids.expand(g.shape[0], -1)), dim=1)[:, target]
        finally:
            h.remove()
        out.append(lp.double().numpy())
    return np.concatenate(out)


def _counted(model: nn.Module, t_ids: torch.Tensor) -> np.ndarray:
    """Which positions count as tokens (not the embedding's ``padding_idx``); an all-pad sequence is an error."""
    pad = _embedding(model).padding_idx
    counted = (t_ids[0] != pad).numpy() if pad is not None else np.ones(t_ids.shape[1], dtype=bool)
    if not counted.any():
        raise ValidationError("the sequence has no token other than <pad>")
    return counted


def _text_inputs(
    model: nn.Module, ids: Any, saliency: Any, target: int | None, what: str = "saliency"
) -> tuple[torch.Tensor, np.ndarray, int]:
    """Token ids ``(1, L)``, the per-token values (``what``: their name in errors) and the target class."""
    _embedding(model)  # a model without an embedding fails first, naming it
    t_ids = torch.as_tensor(np.asarray(ids.tolist() if isinstance(ids, torch.Tensor) else ids), dtype=torch.long)
    t_ids = t_ids.reshape(1, -1)
    m = np.asarray(saliency.tolist() if isinstance(saliency, torch.Tensor) else saliency, dtype=np.float64).ravel()
    if m.size != t_ids.shape[1]:
        raise ShapeError(f"{what} has {m.size} entries for {t_ids.shape[1]} tokens")
    if not np.isfinite(m).all():
        raise NonFiniteError(f"{what} contains NaN or infinite values")
    with torch.no_grad():
        logits = model(t_ids)[0]
    if target is None:
        target = int(logits.argmax())
    elif isinstance(target, bool) or not isinstance(target, (int, np.integer)) or not 0 <= target < logits.numel():
        raise ValidationError(f"target {target!r} is out of range: the model has {logits.numel()} classes")
    return t_ids, m, int(target)


def best_text_saliency_metric(
    model: nn.Module, ids: Any, saliency: Any, target: int | None = None, min_area: float = 0.05
) -> TextSaliencyMetric:
    """The text saliency metric of a token map: the best (lowest) over thresholds.  **Lower is better.**

    For each distinct positive map value ``v``, the tokens with value ``>= v``
    are kept (the others' embeddings zeroed) and scored as
    :func:`text_saliency_metric` does; the lowest score wins -- the text
    counterpart of the image metric's threshold sweep.  A map without a
    positive value keeps nothing (probability with every embedding zeroed).

    Args:
        model: a text classifier with an ``nn.Embedding``.
        ids: token ids ``(L,)`` or ``(1, L)``.
        saliency: one value per token.
        target: the class scored (default: the model's prediction).
        min_area: the floor of the kept fraction.
    """
    t_ids, m, target = _text_inputs(model, ids, saliency, target)
    min_area = _check_min_area(min_area)
    counted = _counted(model, t_ids)
    levels = np.unique(m[(m > 0) & counted])[::-1]
    gates = (m[None, :] >= levels[:, None]).astype(np.float64) if levels.size else np.zeros((1, m.size))
    gates[:, ~counted] = 1.0  # padding stays as it is
    p = np.exp(_gated_log_probs(model, t_ids, gates, target))
    frac = (gates[:, counted].sum(axis=1)) / counted.sum() if levels.size else np.zeros(1)
    scores = np.log(np.maximum(frac, min_area)) - np.log(np.maximum(p, 1e-300))
    best = int(np.argmin(scores))
    return TextSaliencyMetric(
        score=float(scores[best]), kept_fraction=float(frac[best]), probability=float(p[best]), target=target
    )


def text_insertion_deletion(model: nn.Module, ids: Any, saliency: Any, target: int | None = None) -> InsertionDeletion:
    """RISE's insertion and deletion curves over tokens (deleted token = zero embedding).

    Tokens are ordered by decreasing map value (ties by position); deletion
    zeroes them one at a time from the full text, insertion puts them back one
    at a time into the all-zero sequence.  ``<pad>`` positions are left as they
    are.  Areas by the trapezoid rule over the fraction of tokens: **insertion
    higher is better, deletion lower is better**.
    """
    t_ids, m, target = _text_inputs(model, ids, saliency, target)
    pad = _embedding(model).padding_idx
    counted = (t_ids[0] != pad).numpy() if pad is not None else np.ones(m.size, dtype=bool)
    pos = np.flatnonzero(counted)
    order = pos[np.argsort(-m[pos], kind="stable")]
    n = order.size
    first = np.zeros((n + 1, m.size))
    for j in range(1, n + 1):
        first[j] = first[j - 1]
        first[j, order[j - 1]] = 1.0
    keep_pad = (~counted).astype(np.float64)
    deleted = 1.0 - first
    inserted = first + keep_pad
    deleted[:, ~counted] = 1.0
    p = np.exp(_gated_log_probs(model, t_ids, np.concatenate([inserted, deleted]), target))
    ins, dele = p[: n + 1], p[n + 1 :]
    fr = np.arange(n + 1) / max(n, 1)
    return InsertionDeletion(
        fractions=fr,
        insertion=ins,
        deletion=dele,
        insertion_auc=float(np.trapezoid(ins, fr)),
        deletion_auc=float(np.trapezoid(dele, fr)),
        target=target,
    )


# ---------------------------------------------------------------------------- sparsity
def sparsity(mask_or_map: Any, mass: float | None = None) -> float:
    """The fraction of the input an explanation keeps.  **Lower is sparser.**

    Args:
        mask_or_map: a 0/1 mask or a non-negative map (any shape; an attribution
            shaped like the input is reduced with :func:`to_map` first).
        mass: ``None``: the fraction of entries above zero (a mask's kept
            fraction).  A share in ``(0, 1]``: the smallest fraction of entries
            that together hold that share of the map's total (the largest
            entries first); negative entries count as zero.

    A map that is zero everywhere keeps nothing (0.0).
    """
    if isinstance(mask_or_map, torch.Tensor):
        mask_or_map = mask_or_map.detach().cpu().numpy()
    a = np.asarray(mask_or_map, dtype=np.float64)
    if a.ndim in (3, 4):
        a = to_map(a)
    if not a.size:
        raise ShapeError("the mask or map is empty")
    if not np.isfinite(a).all():
        raise NonFiniteError("the mask or map contains NaN or infinite values")
    if mass is None:
        return float((a > 0).mean())
    if isinstance(mass, bool) or not isinstance(mass, (int, float)) or not 0 < mass <= 1:
        raise ConfigError(f"mass must be a share in (0, 1], got {mass!r}")
    v = np.sort(np.maximum(a.ravel(), 0.0))[::-1]
    total = v.sum()
    if total <= 0:
        return 0.0
    need = int(np.searchsorted(np.cumsum(v), mass * total * (1 - 1e-12))) + 1
    return float(min(need, v.size) / v.size)


# ------------------------------------------------------------------- insertion/deletion
@dataclass
class InsertionDeletion:
    """RISE's causal metrics of one map (Petsiuk et al., 2018).

    Attributes:
        fractions: ``(steps + 1,)`` the fraction of pixels inserted / deleted at each point.
        insertion: the target's probability as the most salient pixels are put into the baseline.
        deletion: the target's probability as the most salient pixels are replaced by the baseline.
        insertion_auc: area under ``insertion`` over ``fractions`` (**higher is better**).
        deletion_auc: area under ``deletion`` (**lower is better**).
        target: the class scored.
    """

    fractions: np.ndarray
    insertion: np.ndarray
    deletion: np.ndarray
    insertion_auc: float
    deletion_auc: float
    target: int


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, int(round(3 * sigma)))
    g = torch.exp(-((torch.arange(-r, r + 1, dtype=x.dtype) / sigma) ** 2) / 2)
    g = g / g.sum()
    c = x.shape[0]
    y = F.conv2d(
        F.pad(x.unsqueeze(0), (r, r, 0, 0), mode="replicate"), g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c
    )
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return y[0]


def insertion_deletion(
    model: nn.Module,
    x: Any,
    saliency: Any,
    target: int | None = None,
    steps: int = 56,
    baseline: float | torch.Tensor | Literal["blur"] = 0.0,
    blur_sigma: float = 2.0,
    batch: int = 128,
) -> InsertionDeletion:
    """RISE's insertion and deletion curves and their areas.

    Pixels (all channels together) are ordered by decreasing map value, ties by
    pixel index (row-major).  Deletion starts from ``x`` and replaces the pixels
    in that order by the baseline; insertion starts from the baseline and puts
    them back.  At ``steps + 1`` evenly spaced fractions the target's softmax
    probability is recorded; the areas under the curves (trapezoid rule over the
    fraction axis, so both lie in ``[0, 1]``) are the scores: **insertion higher
    is better, deletion lower is better**.

    Args:
        model: the classifier.
        x: one input ``(C, H, W)`` or ``(1, C, H, W)``.
        saliency: the map ``(H, W)`` (attributions shaped like ``x``: channels averaged).
        target: the class (default: the model's prediction on ``x``).
        steps: curve segments (default 56: 14 pixels a step on 28x28).
        baseline: a number, a tensor shaped like ``x``, or ``"blur"`` (``x`` blurred
            with a Gaussian of ``blur_sigma`` pixels, as RISE's insertion).
        blur_sigma: the blur's standard deviation in pixels.
        batch: images per forward pass.
    """
    x = _image(x)
    m = _map_for(x, saliency)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be a positive int, got {steps!r}")
    target, _ = _predicted(model, x, target)
    C, H, W = x.shape
    if isinstance(baseline, str):
        if baseline != "blur":
            raise ConfigError(f"baseline must be a number, a tensor or 'blur', got {baseline!r}")
        base = _blur(x, float(blur_sigma))
    else:
        base = torch.as_tensor(baseline, dtype=x.dtype)
        if base.dim() == 4 and base.shape[0] == 1:
            base = base[0]
        if base.dim() and tuple(base.shape) != tuple(x.shape):
            raise ShapeError(f"baseline has shape {tuple(base.shape)}; expected a number or {tuple(x.shape)}")
        base = base.expand_as(x)
    n = H * W
    order = torch.from_numpy(np.argsort(-m.ravel(), kind="stable"))
    counts = np.round(np.linspace(0, n, steps + 1)).astype(int)
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n)
    # first[j] is True where the pixel is among the first counts[j] in the order
    first = (rank.view(1, n) < torch.from_numpy(counts).view(-1, 1)).view(-1, 1, H, W).to(x.dtype)
    deleted = first * base.unsqueeze(0) + (1 - first) * x.unsqueeze(0)
    inserted = first * x.unsqueeze(0) + (1 - first) * base.unsqueeze(0)
    p = _log_probs(model, torch.cat([inserted, deleted]), batch)[:, target].exp().numpy()
    ins, dele = p[: steps + 1], p[steps + 1 :]
    fr = counts / n
    return InsertionDeletion(
        fractions=fr,
        insertion=ins,
        deletion=dele,
        insertion_auc=float(np.trapezoid(ins, fr)),
        deletion_auc=float(np.trapezoid(dele, fr)),
        target=target,
    )


def plot_curves(
    results: InsertionDeletion | Mapping[str, InsertionDeletion], ax: Any = None, title: str | None = None
) -> Any:
    """Insertion (left) and deletion (right) curves, one line per method, AUCs in the legend; returns the figure.

    Args:
        results: one :class:`InsertionDeletion` or ``{label: result}``.
        ax: two matplotlib axes to draw on (default: a new figure).
        title: the figure's title.
    """
    import matplotlib.pyplot as plt

    if isinstance(results, InsertionDeletion):
        results = {"map": results}
    if ax is None:
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    else:
        fig = ax[0].figure
    for label, r in results.items():
        ax[0].plot(r.fractions, r.insertion, label=f"{label} ({r.insertion_auc:.3f})")
        ax[1].plot(r.fractions, r.deletion, label=f"{label} ({r.deletion_auc:.3f})")
    ax[0].set_title("insertion (AUC: higher is better)", fontsize=10)
    ax[1].set_title("deletion (AUC: lower is better)", fontsize=10)
    for a in ax:
        a.set_xlabel("fraction of pixels")
        a.set_xlim(0, 1)
        a.set_ylim(0, 1.02)
        a.legend(fontsize=7)
    ax[0].set_ylabel("target probability")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig

"""Helpers shared by the attribution methods: input checks and target resolution."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, NonFiniteError, ShapeError, ValidationError


def positive_int(name: str, v: Any) -> int:
    """``v`` itself if it is an int >= 1, else a :class:`~smug.errors.ConfigError` naming ``name``."""
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{name} must be a positive int, got {v!r}")
    return v


def check_model(model: Any) -> nn.Module:
    """``model`` itself, or a ``TypeError`` when it is not a ``torch.nn.Module``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def check_inputs(inputs: Any, *, image: bool = False) -> torch.Tensor:
    """A batch-first floating-point tensor (a copy of a numpy array); ``(B, C, H, W)`` when ``image``."""
    if isinstance(inputs, np.ndarray):
        inputs = torch.from_numpy(np.array(inputs))  # a copy: arrays may be read-only views of cached data
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs must be a torch.Tensor or numpy array, got {type(inputs).__name__}")
    if not torch.is_floating_point(inputs):
        raise ValidationError(f"inputs have dtype {inputs.dtype}; attribution needs floating point")
    if image and inputs.dim() != 4:
        raise ShapeError(f"inputs must be a batch-first image tensor (B, C, H, W), got {tuple(inputs.shape)}")
    if inputs.dim() < 2:
        raise ShapeError(f"inputs must be batch-first (B, ...), got shape {tuple(inputs.shape)}")
    if not torch.isfinite(inputs).all():
        raise NonFiniteError("inputs contain NaN or infinite values")
    return inputs.detach()


def logits_of(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The model's ``(B, n_classes)`` output on a batch, without gradients; a ``ShapeError`` for other outputs."""
    with torch.no_grad():
        out = model(inputs)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != inputs.shape[0]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ShapeError(f"the model must return (B, n_classes) logits for a batch of {inputs.shape[0]}, got {shape}")
    return out


def resolve_targets(model: nn.Module, inputs: torch.Tensor, target: Any) -> torch.Tensor:
    """One class per sample as a ``(B,)`` int64 tensor.

    ``target`` is ``None`` (each sample's predicted class), an int (every sample),
    or a sequence / tensor of B ints.
    """
    bsz = inputs.shape[0]
    logits = logits_of(model, inputs)
    n_classes = logits.shape[1]
    if target is None:
        return logits.argmax(dim=1)
    if isinstance(target, torch.Tensor):
        t = target.detach().reshape(-1).long()
    elif isinstance(target, bool):
        raise ValidationError(f"target must be an int or a sequence of ints, got {target!r}")
    elif isinstance(target, (int, np.integer)):
        t = torch.tensor([int(target)])
    else:
        try:
            t = torch.as_tensor(np.asarray(target, dtype=np.int64)).reshape(-1)
        except (TypeError, ValueError):
            raise ValidationError(f"target must be an int or a sequence of ints, got {target!r}") from None
    if t.numel() == 1:
        t = t.expand(bsz)
    if t.numel() != bsz:
        raise ShapeError(f"target has {t.numel()} entries for a batch of {bsz}")
    if bool(((t < 0) | (t >= n_classes)).any()):
        raise ValidationError(f"target {t.tolist()} is out of range: the model has {n_classes} classes")
    return t.clone()


def target_logits(out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``out[i, targets[i]]`` for each row (the batch may be ``targets`` repeated ``k`` times)."""
    reps = out.shape[0] // targets.shape[0]
    t = targets.repeat(reps) if reps > 1 else targets
    return out.gather(1, t.view(-1, 1)).squeeze(1)

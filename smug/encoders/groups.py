"""Grouping of input features into mask variables.

SMUG has one 0/1 mask variable per *group* of input features: a window of
pixels, a superpixel, or any segment of a user-given map.  A grouping is an
integer array ``ids`` with the input's shape holding group ids ``0..G-1``; the
helpers here build such arrays, turn them into the IR's sparse ``groups``
matrix and measure their spatial area.

Shapes follow PyTorch: an image is ``(C, H, W)``; the *spatial* axes are the
last two axes of an input with two or more axes and the only axis of a
one-dimensional input.  Leading axes are channels, which share the mask of the
spatial position they sit on when groups come from windows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import NonFiniteError, ShapeError, ValidationError

__all__ = ["window_groups", "feature_groups", "groups_matrix", "group_areas", "to_numpy"]


def to_numpy(value: Any, *, dtype: Any = None) -> np.ndarray:
    """Return ``value`` (a NumPy array, a torch tensor, a nested list or a number) as a NumPy array.

    Torch tensors are detached and moved to the CPU first; torch is never
    imported here, so this works without it.
    """
    if hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "numpy"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def _pair(name: str, value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValidationError(f"{name} must be an integer or a pair (height, width), got {value!r}")
        pair = tuple(value)
    else:
        pair = (value, value)
    for v in pair:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ValidationError(f"{name} must be an integer or a pair of integers, got {value!r}")
        if v < 1:
            raise ValidationError(f"{name} must be >= 1 in each dimension, got {value!r}")
    return int(pair[0]), int(pair[1])


def _spatial_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The spatial part of an input shape: the last two axes, or the only axis of a 1-D input."""
    return tuple(shape[-2:]) if len(shape) >= 2 else tuple(shape)


def window_groups(spatial: tuple[int, int], window: int | tuple[int, int]) -> np.ndarray:
    """Group ids of non-overlapping ``window`` tiles over an ``H x W`` grid.

    Tiles are numbered in row-major order; tiles cut by the right or bottom edge
    (when the window does not divide the image) are groups of their own.

    Args:
        spatial: ``(H, W)``, the image size.
        window: tile side, or ``(height, width)`` for rectangular tiles.

    Returns:
        An ``(H, W)`` int64 array of ids ``0..G-1`` with
        ``G = ceil(H / wh) * ceil(W / ww)``.

    Raises:
        ValidationError: a window below 1 or larger than the image.
    """
    if len(tuple(spatial)) != 2:
        raise ShapeError(f"spatial must be (height, width), got {spatial!r}")
    H, W = (int(s) for s in spatial)
    if H < 1 or W < 1:
        raise ValidationError(f"image size must be positive, got {H}x{W}")
    wh, ww = _pair("window", window)
    if wh > H or ww > W:
        raise ValidationError(f"window {wh}x{ww} is larger than the image {H}x{W}; use a window of at most {H}x{W}")
    cols = -(-W // ww)
    r = np.arange(H, dtype=np.int64) // wh
    c = np.arange(W, dtype=np.int64) // ww
    return r[:, None] * cols + c[None, :]


def _remap(ids: np.ndarray) -> np.ndarray:
    _, inverse = np.unique(ids, return_inverse=True)
    return inverse.reshape(ids.shape).astype(np.int64)


def feature_groups(
    input_shape: tuple[int, ...],
    *,
    window: int | tuple[int, int] | None = None,
    feature_mask: Any = None,
) -> np.ndarray:
    """Group id of every input feature, an int64 array of shape ``input_shape`` with ids ``0..G-1``.

    Args:
        input_shape: shape of one input without the batch axis, e.g. ``(C, H, W)``
            (any shape is accepted; see the module docstring for which axes are spatial).
        window: square side or ``(height, width)`` of the spatial windows; all
            channels of a pixel share its window's group.  For a 1-D input, an
            integer window groups runs of that many consecutive features.
        feature_mask: a segment map in Captum's convention: an integer array or
            tensor with the input's shape or broadcastable to it (``(1, H, W)``
            or ``(H, W)`` for masks shared by all channels; a leading batch
            axis of size 1 is dropped).  Ids are arbitrary integers, remapped
            to ``0..G-1`` in sorted order.

    Give at most one of ``window`` and ``feature_mask``; with neither, every
    spatial position is its own group (``window=1``).

    Raises:
        ValidationError: both options given, a bad window, or a non-integer map.
        ShapeError: a ``feature_mask`` that does not broadcast to ``input_shape``.
    """
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise ShapeError(f"input_shape must be a non-empty tuple of positive sizes, got {input_shape!r}")
    if window is not None and feature_mask is not None:
        raise ValidationError("give either window or feature_mask, not both")
    if feature_mask is not None:
        mask = to_numpy(feature_mask)
        if mask.dtype.kind == "b":
            mask = mask.astype(np.int64)
        elif mask.dtype.kind == "f":
            if np.isnan(mask).any():
                raise ValidationError("feature_mask contains NaN; it must hold integer group ids")
            if not np.isfinite(mask).all() or (mask != np.round(mask)).any():
                bad = mask[~np.isfinite(mask) | (mask != np.round(mask))].ravel()[0]
                raise ValidationError(f"feature_mask must hold integer group ids, found {bad!r}; pass an integer array")
            mask = mask.astype(np.int64)
        elif mask.dtype.kind not in "iu":
            raise ValidationError(f"feature_mask must be an integer array, got dtype {mask.dtype}")
        orig_shape = mask.shape
        while mask.ndim > len(shape) and mask.shape[0] == 1:
            mask = mask[0]
        try:
            full = np.broadcast_to(mask, shape)
        except ValueError:
            raise ShapeError(
                f"feature_mask has shape {orig_shape}, which does not broadcast to the input shape {shape}; "
                f"give a map of shape {shape}, or {(1, *shape[1:])} / {shape[1:]} to share it across channels"
            ) from None
        return _remap(np.ascontiguousarray(full))
    spatial = _spatial_shape(shape)
    if len(spatial) == 1:
        if isinstance(window, (tuple, list)):
            raise ValidationError(f"a 1-D input of shape {shape} takes an integer window, got {window!r}")
        w, _ = _pair("window", 1 if window is None else window)
        if w > spatial[0]:
            raise ValidationError(f"window {w} is longer than the input of length {spatial[0]}")
        return np.arange(spatial[0], dtype=np.int64) // w
    sp_ids = window_groups(spatial, 1 if window is None else window)
    return np.ascontiguousarray(np.broadcast_to(sp_ids, shape))


def _check_ids(ids: Any) -> np.ndarray:
    arr = to_numpy(ids)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.isfinite(arr).all() and (arr == np.round(arr)).all():
            arr = arr.astype(np.int64)
        elif arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise NonFiniteError("group ids contain NaN or infinite values")
        else:
            raise ValidationError(f"group ids must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size == 0:
        raise ShapeError("group ids are empty")
    if arr.min() < 0:
        raise ValidationError(f"group ids must be >= 0, found {int(arr.min())}; use feature_groups to remap them")
    return arr


def groups_matrix(ids: Any) -> sp.csr_matrix:
    """The ``G x n_features`` 0/1 CSR matrix of a grouping (the IR's ``Problem.groups``).

    Entry ``(g, f)`` is 1.0 when feature ``f`` (features flattened in C order)
    belongs to group ``g``; ``G = ids.max() + 1``.  Pass it with
    ``input_shape=ids.shape`` to :meth:`smug.ir.ProblemBuilder.add_mask`.
    """
    arr = _check_ids(ids).ravel()
    n = arr.shape[0]
    G = int(arr.max()) + 1
    return sp.csr_matrix((np.ones(n, dtype=np.float64), (arr, np.arange(n, dtype=np.int64))), shape=(G, n))


def group_areas(ids: Any) -> np.ndarray:
    """Spatial area of every group: how many spatial positions it covers (int64, length ``G``).

    A position counts once however many channels it has, so a 4x4 window of an
    RGB image has area 16.  When a map gives channels of one position different
    groups, the position counts towards each of them.
    """
    arr = _check_ids(ids)
    G = int(arr.max()) + 1
    spatial = _spatial_shape(arr.shape)
    n_sp = int(np.prod(spatial))
    flat = arr.reshape(-1, n_sp)
    if flat.shape[0] == 1 or (flat == flat[:1]).all():
        return np.bincount(flat[0], minlength=G).astype(np.int64)
    keys = np.unique(flat * n_sp + np.arange(n_sp, dtype=np.int64)[None, :])
    return np.bincount(keys // n_sp, minlength=G).astype(np.int64)


def neuron_indices(neurons: Any, n_out: int) -> np.ndarray:
    """Validated flat neuron indices (int64) from integer indices or a boolean selector over ``n_out`` neurons."""
    arr = to_numpy(neurons)
    if arr.dtype.kind == "b":
        if arr.size != n_out:
            raise ShapeError(f"a boolean neuron selector needs {n_out} entries, got {arr.size}")
        return np.flatnonzero(arr.ravel()).astype(np.int64)
    if arr.size and arr.dtype.kind not in "iu":
        raise ValidationError(f"neurons must be integer flat indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64).ravel()
    bad = (arr < 0) | (arr >= n_out)
    if bad.any():
        raise ValidationError(
            f"neuron index {int(arr[bad][0])} is out of range; this layer has {n_out} neurons (0..{n_out - 1})"
        )
    return arr

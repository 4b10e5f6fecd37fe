"""The first layer of a network as an exact affine function of the mask.

SMUG masks an input ``x`` towards a baseline, ``x_m = baseline + m[ids] * (x - baseline)``,
with one 0/1 variable ``m_g`` per feature group.  The first layer is affine, so
each of its neurons' pre-activation on ``x_m`` is affine in ``m``::

    pre(m) = C m + d,   C = W diag(x - baseline) G^T,   d = W baseline + b

(rows of ``W`` restricted to the chosen neurons, ``G`` the groups matrix).
:func:`find_first_layer` extracts that layer from a PyTorch model (folding a
zero padding in front of it and a BatchNorm behind it), and
:meth:`FirstLayer.affine_rows` computes ``C`` and ``d`` exactly in float64,
vectorised over neurons and kernel taps.

Supported first layers: ``nn.Linear`` (optionally after ``nn.Flatten``) and
``nn.Conv2d`` with ``padding_mode="zeros"`` (any stride, padding, dilation and
groups; optionally after ``nn.ZeroPad2d`` / ``nn.ConstantPad2d`` with value 0),
each optionally followed by ``nn.BatchNorm1d`` / ``nn.BatchNorm2d``.
"""

from __future__ import annotations

import difflib
import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import NonFiniteError, ShapeError, ValidationError
from .groups import neuron_indices, to_numpy
from .layers import SKIPPED_LAYERS

__all__ = ["FirstLayer", "find_first_layer", "make_baseline", "BASELINE_OPTIONS", "SUPPORTED_FIRST_LAYERS"]

#: The named baselines :func:`make_baseline` understands (besides numbers and arrays).
BASELINE_OPTIONS = ("zero", "mean")

#: Human-readable list of the first layers smug can encode (used in error messages).
SUPPORTED_FIRST_LAYERS = (
    "nn.Linear (optionally after nn.Flatten), "
    "nn.Conv2d with padding_mode='zeros' (optionally after nn.ZeroPad2d or nn.ConstantPad2d with value 0), "
    "each optionally followed by nn.BatchNorm1d / nn.BatchNorm2d; nn.Identity and dropout modules are skipped"
)

_PADS = (nn.ZeroPad2d, nn.ConstantPad2d)


# ---------------------------------------------------------------- baselines
def make_baseline(x: Any, spec: Any = "zero") -> np.ndarray:
    """The value masked features take, as a float64 array with ``x``'s shape.

    Args:
        x: the input (array or tensor, no batch axis).
        spec: ``"zero"`` (default; also ``None``), ``"mean"`` (the mean of each
            channel of ``x``: over the last two axes of an input with three or
            more axes, over everything otherwise), a finite number, or an array
            / tensor with ``x``'s shape or broadcastable to it (a leading batch
            axis of size 1 is dropped).

    Raises:
        ValidationError: an unknown name.
        ShapeError: an array that does not broadcast to ``x``'s shape.
        NonFiniteError: NaN or infinite values (in ``spec``, or in ``x`` for ``"mean"``).
    """
    xa = to_numpy(x, dtype=np.float64)
    if spec is None or (isinstance(spec, str) and spec in ("zero", "zeros")):
        return np.zeros_like(xa)
    if isinstance(spec, str) and spec == "mean":
        if not np.isfinite(xa).all():
            raise NonFiniteError("the input contains NaN or infinite values, so its mean is not a usable baseline")
        if xa.ndim >= 3:
            return np.broadcast_to(xa.mean(axis=(-2, -1), keepdims=True), xa.shape).copy()
        return np.full_like(xa, xa.mean())
    if isinstance(spec, str):
        raise ValidationError(
            f"unknown baseline {spec!r}; use one of {BASELINE_OPTIONS}, a number, or an array with the input's shape"
        )
    if isinstance(spec, (bool, np.bool_)):
        raise ValidationError(f"baseline {spec!r} is a bool; use one of {BASELINE_OPTIONS}, a number or an array")
    if isinstance(spec, (int, float, np.integer, np.floating)):
        if not math.isfinite(float(spec)):
            raise NonFiniteError(f"baseline {spec!r} is not finite; use a finite number")
        return np.full_like(xa, float(spec))
    arr = to_numpy(spec, dtype=np.float64)
    orig = arr.shape
    while arr.ndim > xa.ndim and arr.shape[0] == 1:
        arr = arr[0]
    try:
        arr = np.broadcast_to(arr, xa.shape)
    except ValueError:
        raise ShapeError(f"baseline has shape {orig}, which does not broadcast to the input shape {xa.shape}") from None
    if not np.isfinite(arr).all():
        raise NonFiniteError(f"baseline contains {int((~np.isfinite(arr)).sum())} NaN or infinite value(s)")
    return np.array(arr, dtype=np.float64)


# ------------------------------------------------------------ the first layer
def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return int(v[0]), int(v[1])
    return int(v), int(v)


@dataclass(eq=False)
class FirstLayer:
    """A network's first affine layer, with any zero padding before it and BatchNorm after it folded in.

    Attributes:
        name: module name of the layer (``""`` when the model is the layer itself).
        kind: ``"linear"`` or ``"conv2d"``.
        weight: float64 weight after BatchNorm folding; ``(out, in)`` for linear,
            ``(out_channels, in_channels // groups, kh, kw)`` for conv.
        bias: float64 bias after folding, ``(out,)`` (zeros when the layer has none).
        stride: conv stride ``(sh, sw)``.
        dilation: conv dilation ``(dh, dw)``.
        groups: conv groups.
        padding: total zero padding ``(top, bottom, left, right)``: the conv's own
            (``"same"`` resolved as PyTorch does) plus any padding module before it.
        kernel_size: ``(kh, kw)``.
        in_shape: the input shape the layer expects, without the batch axis:
            ``(in_channels, H, W)`` for conv (``H``, ``W`` are ``None`` unless the
            layer was found by tracing an example input), ``(in_features,)`` for
            linear (an input of any shape with that many elements is flattened
            in C order), or the traced input shape.
        modules: names of the modules folded into this layer, in execution order.
    """

    name: str
    kind: Literal["linear", "conv2d"]
    weight: np.ndarray
    bias: np.ndarray
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    kernel_size: tuple[int, int] = (1, 1)
    in_shape: tuple[int | None, ...] = ()
    modules: tuple[str, ...] = ()

    # ------------------------------------------------------------- geometry
    @property
    def module_names(self) -> tuple[str, ...]:
        """Alias of :attr:`modules`; the last one is the module whose output equals :meth:`preactivations`."""
        return self.modules

    @property
    def in_channels(self) -> int:
        """Input channels (conv) or input features (linear)."""
        if self.kind == "conv2d":
            return int(self.weight.shape[1] * self.groups)
        return int(self.weight.shape[1])

    @property
    def out_channels(self) -> int:
        """Output channels (conv) or output features (linear)."""
        return int(self.weight.shape[0])

    def _input_shape(self, input_shape: Any) -> tuple[int, ...]:
        shape = tuple(int(s) for s in input_shape)
        if self.kind == "conv2d":
            if len(shape) == 4 and shape[0] == 1:
                shape = shape[1:]
            if len(shape) != 3:
                raise ShapeError(f"layer {self.name!r} is a Conv2d and takes a (C, H, W) input, got shape {shape}")
            if shape[0] != self.in_channels:
                raise ShapeError(
                    f"layer {self.name!r} takes {self.in_channels} input channel(s), got an input of shape {shape}"
                )
            return shape
        if int(np.prod(shape)) != self.in_channels:
            raise ShapeError(
                f"layer {self.name!r} is a Linear with {self.in_channels} input features, "
                f"got an input of shape {shape} ({int(np.prod(shape))} features)"
            )
        return shape

    def out_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The layer's output shape (no batch axis) for one input of ``input_shape``.

        ``(out_channels, H_out, W_out)`` for conv, ``(out_features,)`` for linear.
        """
        shape = self._input_shape(input_shape)
        if self.kind == "linear":
            return (self.out_channels,)
        _, H, W = shape
        top, bottom, left, right = self.padding
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        Ho = (H + top + bottom - dh * (kh - 1) - 1) // sh + 1
        Wo = (W + left + right - dw * (kw - 1) - 1) // sw + 1
        if Ho < 1 or Wo < 1:
            raise ShapeError(
                f"input of size {H}x{W} (padded to {H + top + bottom}x{W + left + right}) is smaller than the "
                f"dilated kernel {dh * (kh - 1) + 1}x{dw * (kw - 1) + 1} of layer {self.name!r}"
            )
        return (self.out_channels, Ho, Wo)

    def n_neurons(self, input_shape: tuple[int, ...]) -> int:
        """Number of neurons (output units) for one input of ``input_shape``."""
        return int(np.prod(self.out_shape(input_shape)))

    def unravel_neurons(self, neurons: Any, input_shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
        """Output coordinates of flat neuron indices: ``(channel, row, col)`` for conv, ``(feature,)`` for linear."""
        out = self.out_shape(input_shape)
        idx = self._neurons(neurons, int(np.prod(out)))
        return np.unravel_index(idx, out)

    # ---------------------------------------------------------- validation
    def _input(self, x: Any, what: str = "x") -> np.ndarray:
        xa = to_numpy(x, dtype=np.float64)
        if self.kind == "conv2d" and xa.ndim == 4 and xa.shape[0] == 1:
            xa = xa[0]
        self.out_shape(xa.shape)
        if not np.isfinite(xa).all():
            raise NonFiniteError(f"{what} contains {int((~np.isfinite(xa)).sum())} NaN or infinite value(s)")
        return xa

    @staticmethod
    def _neurons(neurons: Any, n_out: int) -> np.ndarray:
        return neuron_indices(neurons, n_out)

    def _ids(self, ids: Any, shape: tuple[int, ...], n_groups: int | None) -> tuple[np.ndarray, int]:
        arr = to_numpy(ids)
        if arr.dtype.kind not in "iu":
            raise ValidationError(f"ids must be integer group ids, got dtype {arr.dtype}")
        orig = arr.shape
        while arr.ndim > len(shape) and arr.shape[0] == 1:
            arr = arr[0]
        if arr.size != int(np.prod(shape)) or arr.shape != shape:
            try:
                arr = np.broadcast_to(arr, shape)
            except ValueError:
                raise ShapeError(f"ids have shape {orig} but the input has shape {shape}") from None
        flat = np.ascontiguousarray(arr, dtype=np.int64).ravel()
        if flat.size and flat.min() < 0:
            raise ValidationError(f"group ids must be >= 0, found {int(flat.min())}")
        top = int(flat.max()) + 1 if flat.size else 0
        G = top if n_groups is None else int(n_groups)
        if G < top:
            raise ValidationError(f"n_groups={n_groups} but the ids go up to {top - 1}")
        return flat, G

    # ------------------------------------------------------- computations
    def preactivations(self, x: Any) -> np.ndarray:
        """The layer's output (pre-activation, BatchNorm folded) on one input, float64, flattened in C order.

        ``x`` is ``(C, H, W)`` for conv (a batch axis of size 1 is dropped) and
        any shape with ``in_features`` elements for linear.
        """
        xa = self._input(x)
        if self.kind == "linear":
            return self.weight @ xa.ravel() + self.bias
        top, bottom, left, right = self.padding
        t = F.pad(torch.from_numpy(np.ascontiguousarray(xa))[None], (left, right, top, bottom))
        y = F.conv2d(
            t,
            torch.from_numpy(self.weight),
            torch.from_numpy(self.bias),
            stride=self.stride,
            padding=0,
            dilation=self.dilation,
            groups=self.groups,
        )
        return y[0].numpy().ravel()

    def _conv_taps(
        self, shape: tuple[int, ...], neurons: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per neuron, its output channel and the input rows/cols of its kernel taps (with validity)."""
        _, Ho, Wo = self.out_shape(shape)
        _, H, W = shape
        top, _, left, _ = self.padding
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        o, rem = np.divmod(neurons, Ho * Wo)
        i, j = np.divmod(rem, Wo)
        r = i[:, None] * sh - top + dh * np.arange(kh)[None, :]  # (k, kh)
        q = j[:, None] * sw - left + dw * np.arange(kw)[None, :]  # (k, kw)
        vr = (r >= 0) & (r < H)
        vq = (q >= 0) & (q < W)
        return o, np.clip(r, 0, H - 1), np.clip(q, 0, W - 1), vr, vq, np.asarray((H, W))

    def affine_rows(
        self, x: Any, baseline: Any, ids: Any, neurons: Any, *, n_groups: int | None = None
    ) -> tuple[sp.csr_matrix, np.ndarray]:
        """Exact affine form ``pre = C @ m + d`` of the chosen neurons' pre-activations in the mask ``m``.

        For every 0/1 vector ``m`` of length ``G``, ``C @ m + d`` equals
        ``preactivations(baseline + m[ids] * (x - baseline))[neurons]`` (up to
        float64 rounding).

        Args:
            x: the input, ``(C, H, W)`` for conv.
            baseline: the masked value: an array with ``x``'s shape or anything
                :func:`make_baseline` accepts (``"zero"``, ``"mean"``, a number).
            ids: group id of every input feature (``x``'s shape, or broadcastable
                to it, e.g. ``(H, W)``), as built by
                :func:`smug.encoders.feature_groups`.
            neurons: flat output indices (C order over ``out_shape``), ``k`` of them.
            n_groups: number of mask variables ``G`` (default ``ids.max() + 1``).

        Returns:
            ``C``, a ``k x G`` float64 CSR matrix (sorted indices, no explicit
            zeros), and ``d``, a float64 vector of length ``k``.
        """
        xa = self._input(x)
        base = make_baseline(xa, baseline)
        shape = xa.shape
        n_out = self.n_neurons(shape)
        nrn = self._neurons(neurons, n_out)
        flat_ids, G = self._ids(ids, shape, n_groups)
        delta = (xa - base).ravel()
        base_flat = base.ravel()
        if self.kind == "linear":
            Wk = self.weight[nrn]  # (k, nf)
            nf = delta.shape[0]
            Gd = sp.csr_matrix((delta, (flat_ids, np.arange(nf))), shape=(G, nf))  # G diag(delta)
            C = sp.csr_matrix(np.asarray(Gd @ Wk.T).T)
            d = Wk @ base_flat + self.bias[nrn]
        else:
            C, d = self._conv_rows(shape, nrn, flat_ids, G, delta, base_flat)
        C.sum_duplicates()
        C.eliminate_zeros()
        C.sort_indices()
        return C, np.asarray(d, dtype=np.float64)

    def _conv_rows(
        self,
        shape: tuple[int, ...],
        nrn: np.ndarray,
        flat_ids: np.ndarray,
        G: int,
        delta: np.ndarray,
        base_flat: np.ndarray,
    ) -> tuple[sp.csr_matrix, np.ndarray]:
        """Conv branch of :meth:`affine_rows`: gather each neuron's kernel taps, weight them, sum per group."""
        o, r, q, vr, vq, (H, W) = self._conv_taps(shape, nrn)
        k = nrn.shape[0]
        Cin = shape[0]
        Cg = self.weight.shape[1]
        Og = self.out_channels // self.groups
        n_sp = H * W
        pos = r[:, :, None] * W + q[:, None, :]  # (k, kh, kw) spatial index of every tap (clipped)
        valid = vr[:, :, None] & vq[:, None, :]  # (k, kh, kw) False where the tap falls on padding
        Wk = self.weight[o]  # (k, Cg, kh, kw)
        if self.groups == 1:
            patches = delta.reshape(Cin, n_sp)[:, pos]  # (Cin, k, kh, kw)
            patches = patches.transpose(1, 0, 2, 3)
        else:
            chan = (o // Og)[:, None] * Cg + np.arange(Cg)[None, :]  # (k, Cg) input channels of each neuron
            patches = delta.reshape(Cin, n_sp)[chan[:, :, None, None], pos[:, None, :, :]]
        ids2 = flat_ids.reshape(Cin, n_sp)
        if Cin == 1 or (ids2 == ids2[:1]).all():  # channels share their pixel's group: sum them first
            vals = np.einsum("kcab,kcab->kab", Wk, patches) * valid
            cols = ids2[0][pos]
        else:
            vals = Wk * patches * valid[:, None, :, :]
            if self.groups == 1:
                cols = ids2[:, pos].transpose(1, 0, 2, 3)
            else:
                cols = ids2[chan[:, :, None, None], pos[:, None, :, :]]
        T = int(np.prod(vals.shape[1:]))
        C = sp.csr_matrix(
            (vals.reshape(-1), cols.reshape(-1), np.arange(0, k * T + 1, T, dtype=np.int64)), shape=(k, G)
        )
        if base_flat.any():
            if self.groups == 1:
                bp = base_flat.reshape(Cin, n_sp)[:, pos].transpose(1, 0, 2, 3)
            else:
                bp = base_flat.reshape(Cin, n_sp)[chan[:, :, None, None], pos[:, None, :, :]]
            d = self.bias[o] + (np.einsum("kcab,kcab->kab", Wk, bp) * valid).reshape(k, -1).sum(axis=1)
        else:
            d = self.bias[o].copy()
        return C, d

    def receptive_fields(self, input_shape: tuple[int, ...], neurons: Any) -> sp.csr_matrix:
        """Which spatial positions each chosen neuron depends on: a ``k x n_spatial`` 0/1 CSR matrix.

        Spatial positions are the ``H * W`` pixels of a ``(C, H, W)`` input
        (channels collapsed), flattened row-major; for a linear layer on an
        input with fewer than three axes every feature is a position.  A
        position is in a neuron's field when some weight on it is non-zero
        (kernel taps falling on padding are not positions).
        """
        shape = self._input_shape(input_shape)
        n_out = self.n_neurons(shape)
        nrn = self._neurons(neurons, n_out)
        k = nrn.shape[0]
        if self.kind == "linear":
            Wk = self.weight[nrn]
            n_sp = int(np.prod(shape[-2:])) if len(shape) >= 2 else int(np.prod(shape))
            nz = (Wk.reshape(k, -1, n_sp) != 0).any(axis=1)
            R = sp.csr_matrix(nz.astype(np.float64))
        else:
            o, r, q, vr, vq, (H, W) = self._conv_taps(shape, nrn)
            tap_nz = (self.weight != 0).any(axis=1)[o]  # (k, kh, kw)
            keep = tap_nz & vr[:, :, None] & vq[:, None, :]
            pos = np.broadcast_to(r[:, :, None] * W + q[:, None, :], keep.shape)
            rows = np.broadcast_to(np.arange(k)[:, None, None], keep.shape)[keep]
            R = sp.csr_matrix((np.ones(rows.shape[0]), (rows, pos[keep])), shape=(k, H * W))
            R.sum_duplicates()
            R.data[:] = 1.0
        R.sort_indices()
        return R


# ------------------------------------------------------------- discovery
def _display(name: str, module: nn.Module) -> str:
    label = repr(name) if name else "(the model itself)"
    return f"{label} ({type(module).__module__}.{type(module).__qualname__})"


def _unsupported(name: str, module: nn.Module, why: str = "") -> ValidationError:
    extra = f" ({why})" if why else ""
    return ValidationError(
        f"the first layer {_display(name, module)} is not supported{extra}. Supported: {SUPPORTED_FIRST_LAYERS}. "
        "If the real first layer is another module, name it with first_layer=/name=."
    )


def _is_exact(module: nn.Module, base: type) -> bool:
    """True when ``module`` is a ``base`` whose forward is the stock one (no custom behaviour)."""
    return isinstance(module, base) and type(module).forward is base.forward


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    out = []
    for name, m in model.named_modules():
        has_children = next(m.children(), None) is not None
        has_own_params = next(m.parameters(recurse=False), None) is not None
        if not has_children or has_own_params:
            out.append((name, m))
    return out


def _valid_names(model: nn.Module, wanted: str) -> str:
    names = [n for n, _ in model.named_modules() if n]
    layers = [n for n, m in model.named_modules() if n and isinstance(m, (nn.Linear, nn.Conv2d))]
    close = difflib.get_close_matches(wanted, names, n=3)
    shown = list(dict.fromkeys(close + layers + names))[:12]
    more = f", ... ({len(names)} in all)" if len(names) > len(shown) else ""
    return ", ".join(repr(n) for n in shown) + more


def _fold_bn(name: str, bn: nn.Module, W: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if bn.running_mean is None or bn.running_var is None:
        raise ValidationError(
            f"{_display(name, bn)} has no running statistics (track_running_stats=False): it normalises with "
            "batch statistics, which is not a fixed affine map and cannot be folded into the first layer"
        )
    if bn.num_features != W.shape[0]:
        raise ShapeError(f"{_display(name, bn)} has {bn.num_features} features but the layer has {W.shape[0]} outputs")
    if bn.training:
        warnings.warn(
            f"{_display(name, bn)} is in training mode; folding its running statistics (what it uses in eval "
            "mode). Call model.eval() before explaining.",
            UserWarning,
            stacklevel=3,
        )
    mean = bn.running_mean.detach().cpu().double().numpy()
    var = bn.running_var.detach().cpu().double().numpy()
    gamma = bn.weight.detach().cpu().double().numpy() if bn.weight is not None else np.ones_like(mean)
    beta = bn.bias.detach().cpu().double().numpy() if bn.bias is not None else np.zeros_like(mean)
    s = gamma / np.sqrt(var + float(bn.eps))
    W = W * s.reshape((-1,) + (1,) * (W.ndim - 1))
    b = (b - mean) * s + beta
    return W, b


def _build(seq: list[tuple[str, nn.Module]], start: int, in_shape: tuple[int, ...] | None) -> tuple[FirstLayer, int]:
    """Parse ``[prefix modules] layer [batchnorm]`` from ``seq[start:]``; returns the layer and the last index used."""
    pad = np.zeros(4, dtype=np.int64)  # top, bottom, left, right
    prefix: list[str] = []
    flatten: str | None = None
    pad_name: str | None = None
    idx = start
    while idx < len(seq):
        name, m = seq[idx]
        if isinstance(m, SKIPPED_LAYERS):
            prefix.append(name)
        elif isinstance(m, nn.Flatten) and _is_exact(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise _unsupported(
                    name,
                    m,
                    f"Flatten(start_dim={m.start_dim}, end_dim={m.end_dim}); "
                    "only Flatten(1, -1) can precede the first layer",
                )
            flatten = name
            prefix.append(name)
        elif isinstance(m, _PADS):
            if float(m.value) != 0.0:
                raise _unsupported(name, m, f"padding value {m.value!r}; only zero padding is supported")
            left, right, top, bottom = (int(v) for v in m.padding)
            if min(left, right, top, bottom) < 0:
                raise _unsupported(name, m, f"negative padding {m.padding!r} (cropping)")
            pad += np.array([top, bottom, left, right])
            pad_name = name
            prefix.append(name)
        else:
            break
        idx += 1
    if idx >= len(seq):
        raise ValidationError(
            "found no nn.Linear or nn.Conv2d layer"
            + (f" after {', '.join(repr(p) for p in prefix)}" if prefix else "")
            + f"; supported first layers: {SUPPORTED_FIRST_LAYERS}"
        )
    name, m = seq[idx]
    if _is_exact(m, nn.Conv2d):
        if flatten is not None:
            raise _unsupported(name, m, f"a Conv2d after Flatten {flatten!r}")
        if m.padding_mode != "zeros":
            raise _unsupported(name, m, f"padding_mode={m.padding_mode!r}; only padding_mode='zeros' is supported")
        kh, kw = _pair(m.kernel_size)
        dh, dw = _pair(m.dilation)
        if isinstance(m.padding, str):
            if m.padding == "valid":
                own = (0, 0, 0, 0)
            elif m.padding == "same":  # PyTorch puts the odd extra pixel at the bottom/right
                th, tw = dh * (kh - 1), dw * (kw - 1)
                own = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
            else:
                raise _unsupported(name, m, f"padding={m.padding!r}")
        else:
            ph, pw = _pair(m.padding)
            own = (ph, ph, pw, pw)
        W = m.weight.detach().cpu().double().numpy()
        b = m.bias.detach().cpu().double().numpy() if m.bias is not None else np.zeros(W.shape[0])
        kind: Literal["linear", "conv2d"] = "conv2d"
        geometry: dict[str, Any] = dict(
            stride=_pair(m.stride),
            dilation=(dh, dw),
            groups=int(m.groups),
            padding=tuple(int(v) for v in pad + np.array(own)),
            kernel_size=(kh, kw),
        )
        bn_type: type = nn.BatchNorm2d
        shape: tuple[int | None, ...] = (int(m.in_channels), None, None)
    elif _is_exact(m, nn.Linear):
        if pad_name is not None:
            raise _unsupported(name, m, f"a Linear after padding module {pad_name!r}")
        W = m.weight.detach().cpu().double().numpy()
        b = m.bias.detach().cpu().double().numpy() if m.bias is not None else np.zeros(W.shape[0])
        kind = "linear"
        geometry = {}
        bn_type = nn.BatchNorm1d
        shape = (int(m.in_features),)
    else:
        raise _unsupported(name, m)
    used = [*prefix, name]
    last = idx
    if idx + 1 < len(seq):
        bn_name, bn = seq[idx + 1]
        if _is_exact(bn, bn_type) or _is_exact(bn, nn.SyncBatchNorm):
            W, b = _fold_bn(bn_name, bn, W, b)
            used.append(bn_name)
            last = idx + 1
    if in_shape is not None:
        shape = tuple(in_shape)
    layer = FirstLayer(
        name=name,
        kind=kind,
        weight=np.ascontiguousarray(W),
        bias=np.ascontiguousarray(b),
        in_shape=shape,
        modules=tuple(used),
        **geometry,
    )
    return layer, last


def _prefix_start(seq: list[tuple[str, nn.Module]], idx: int) -> int:
    while idx > 0 and isinstance(seq[idx - 1][1], (*SKIPPED_LAYERS, nn.Flatten, *_PADS)):
        idx -= 1
    return idx


class _StopTrace(Exception):
    pass


_Call = tuple[str, nn.Module, tuple[Any, ...], Any]


def _example_tensor(model: nn.Module, example_input: Any) -> torch.Tensor:
    p = next(model.parameters(), None)
    dtype = p.dtype if p is not None and p.dtype.is_floating_point else torch.float32
    device = p.device if p is not None else torch.device("cpu")
    if isinstance(example_input, tuple) and all(isinstance(s, (int, np.integer)) for s in example_input):
        gen = torch.Generator().manual_seed(0)
        t = torch.rand((1, *(int(s) for s in example_input)), generator=gen, dtype=torch.float64) + 0.5
    else:
        t = torch.as_tensor(to_numpy(example_input, dtype=np.float64))
    return t.to(dtype=dtype, device=device)


def _trace(model: nn.Module, example: torch.Tensor, target: nn.Module | None) -> list[_Call]:
    """Run ``model`` on ``example`` with hooks on its leaves; record calls up to the one after the layer.

    The layer is ``target`` when given, else the first call that is not a
    padding / flatten / skipped module.  The model runs in eval mode without
    gradients, and its modules' training flags are restored afterwards.
    """
    leaves = _leaves(model)
    names = {id(m): n for n, m in reversed(leaves)}
    calls: list[_Call] = []
    layer_seen = [False]

    def hook(mod: nn.Module, inp: tuple[Any, ...], out: Any) -> None:
        calls.append((names[id(mod)], mod, inp, out))
        if layer_seen[0]:
            raise _StopTrace
        if mod is target if target is not None else not isinstance(mod, (*SKIPPED_LAYERS, nn.Flatten, *_PADS)):
            layer_seen[0] = True

    handles = [m.register_forward_hook(hook) for _, m in leaves]
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    except _StopTrace:
        pass
    except Exception as exc:
        raise ValidationError(
            f"running the model on the example input of shape {tuple(example.shape)} failed: "
            f"{type(exc).__name__}: {exc}. Pass a batch of one input, e.g. shape (1, C, H, W)."
        ) from exc
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.training = mode
    return calls


def _same_values(a: Any, b: Any) -> bool:
    return (
        isinstance(a, torch.Tensor)
        and isinstance(b, torch.Tensor)
        and a.numel() == b.numel()
        and torch.equal(a.reshape(-1), b.reshape(-1))
    )


def find_first_layer(model: nn.Module, name: str | None = None, example_input: Any = None) -> FirstLayer:
    """Find a model's first affine layer and return it as a :class:`FirstLayer`.

    Without ``example_input`` the layer is found by walking
    ``model.named_modules()`` in registration order, which assumes that
    modules are registered in the order ``forward`` runs them (true for
    ``nn.Sequential`` and most hand-written models).  With ``example_input`` the
    model is run once (in eval mode, without gradients, stopping early) with
    forward hooks on its leaf modules, so the first module actually *called*
    is found; this also checks that the layer receives the input unchanged (no
    normalisation hidden in ``forward``), that a folded BatchNorm runs on the
    layer's output, and that the folded layer reproduces the model's own
    output on the example.

    Args:
        model: the network.
        name: module name of the first layer (e.g. ``"features.0"``) to skip
            the search; padding / flatten modules right before it and a
            BatchNorm right after it are still folded in.
        example_input: a batch of one input (tensor or array, e.g. shape
            ``(1, C, H, W)``), or an input shape without batch axis (a tuple of
            ints; a random input of that shape is used).

    Raises:
        ValidationError: an unknown ``name``, an unsupported first layer (the
            message names it and lists what is supported), or a layer that does
            not see the raw input.
    """
    if not isinstance(model, nn.Module):
        raise ValidationError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    target: nn.Module | None = None
    if name is not None:
        modules = dict(model.named_modules())
        if name not in modules:
            raise ValidationError(
                f"model has no module named {name!r}; valid names include {_valid_names(model, name)}"
            )
        target = modules[name]
        if next(target.children(), None) is not None and next(target.parameters(recurse=False), None) is None:
            raise _unsupported(name, target, "it is a container; name the layer inside it")

    if example_input is None:
        seq = _leaves(model)
        start = 0 if target is None else _prefix_start(seq, [m for _, m in seq].index(target))
        layer, _ = _build(seq, start, None)
        return layer

    example = _example_tensor(model, example_input)
    calls = _trace(model, example, target)
    seq = [(n, m) for n, m, _, _ in calls]
    if target is None:
        start = 0
    else:
        pos = [i for i, (_, m) in enumerate(seq) if m is target]
        if not pos:
            raise ValidationError(f"module {name!r} was not called when the model ran on the example input")
        start = _prefix_start(seq, pos[0])
    if not calls:
        raise ValidationError("the model ran on the example input without calling any module")
    if not _same_values(calls[start][2][0] if calls[start][2] else None, example):
        raise ValidationError(
            f"module {_display(*seq[start])} does not receive the model's input unchanged (forward() transforms "
            "it first, e.g. normalises it). SMUG masks the first layer's input: move the transformation out of "
            "the model, or name a layer that sees the raw input."
        )
    in_shape = tuple(int(s) for s in example.shape[1:])
    layer, last = _build(seq, start, in_shape)
    for i in range(start + 1, last + 1):  # each folded module must consume the previous one's output
        if not _same_values(calls[i][2][0] if calls[i][2] else None, calls[i - 1][3]):
            raise ValidationError(
                f"module {_display(*seq[i])} runs after {_display(*seq[i - 1])} but not on its output; "
                "smug cannot fold this chain"
            )
    out = calls[last][3]
    if isinstance(out, torch.Tensor) and out.dtype in (torch.float32, torch.float64):
        ref = out.detach().cpu().double().numpy().ravel()
        got = layer.preactivations(example[0].detach().cpu().double().numpy().reshape(in_shape))
        tol = (1e-4 if out.dtype == torch.float32 else 1e-9) * (1.0 + np.abs(ref).max(initial=0.0))
        if got.shape != ref.shape or np.abs(got - ref).max(initial=0.0) > tol:
            raise ValidationError(
                f"the folded first layer {layer.name!r} does not reproduce the model's output on the example "
                f"input (modules {layer.modules}); the model's forward() does something smug cannot see"
            )
    return layer

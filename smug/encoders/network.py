"""Whole ReLU networks as IR problems: the logit-margin encoding.

A ``nn.Sequential``-style network is first *lowered* (:func:`lower_network`) to
a short list of operations on flat float64 vectors (C order):

* :class:`AffineOp` -- ``y = W x + b`` with a sparse ``W``.  ``nn.Linear``,
  ``nn.Conv2d`` / ``nn.Conv1d`` (any stride, padding, padding mode, dilation,
  groups), ``nn.AvgPool2d``, ``nn.AdaptiveAvgPool2d`` and ``nn.Flatten`` are
  affine; their matrix is read off the module itself (applied, without its
  bias, to the unit vectors in float64), so it matches PyTorch's own
  definition.  An eval-mode ``nn.BatchNorm1d`` / ``nn.BatchNorm2d`` is folded
  into the affine operation before it, and consecutive affine operations are
  composed into one.  ``nn.Dropout*`` and ``nn.Identity`` are no-ops.
* :class:`ReluOp` -- ``nn.ReLU``.
* :class:`MaxPoolOp` -- ``nn.MaxPool2d``, encoded exactly with ReLUs:
  ``max(a, b) = a + relu(b - a)``, chained over each window.

:func:`encode_network` then states a question about the network on a masked
input as an IR :class:`~smug.ir.Problem`:

* **inputs**: with ``masking="baseline"`` an input feature is
  ``x_i = b_i + m_g (x_i - b_i)``, affine in its group's 0/1 mask variable, so
  no real input variable is needed; with ``masking="robust"`` every feature is
  a real variable in ``[lo_i, hi_i]`` tied to its mask variable by
  ``x_i - x0_i <= (hi_i - x0_i)(1 - m_g)`` and ``x_i - x0_i >= (lo_i - x0_i)(1 - m_g)``
  (a kept feature equals its original value, a masked one may take any value
  in the range).
* **layers**: one real variable per pre-activation that is not provably off,
  bounded by sound interval bounds (optionally tightened by LPs,
  :func:`encode_network` ``bounds="lp"``).  A ReLU whose bounds prove it always
  on or always off is linear (no ReLU constraint, hence no binary, no big-M);
  only the *unstable* ones become IR ReLU constraints.
* **output**: ``"margin"``: ``logit_c - logit_j >= threshold`` for every
  ``j != c`` (minimise the mask); ``"counterexample"``: some ``j != c`` has
  ``logit_c - logit_j <= threshold`` (a disjunction over 0/1 selectors with
  sound big-M from the bounds) -- the negation, used to verify a robust
  explanation: infeasible means no completion of the masked features changes
  the answer.

Interval bounds are computed two ways at every layer and intersected: plain
interval arithmetic on the previous layer's value intervals, and the
expression of each value over the problem's variables evaluated on their
boxes (exact for the first layer, where the mask correlates the pixels of a
window).  Both are sound.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ..errors import BoundsError, ShapeError, ValidationError
from ..ir import Problem, ProblemBuilder
from .groups import groups_matrix

__all__ = [
    "SUPPORTED_NETWORK_LAYERS",
    "AffineOp",
    "ReluOp",
    "MaxPoolOp",
    "LoweredNetwork",
    "NetworkEncoding",
    "lower_network",
    "pools_as_relus",
    "encode_network",
    "interval_bounds",
    "linear_margin_bounds",
]

#: The layers :func:`lower_network` accepts (named in every "unsupported layer" error).
SUPPORTED_NETWORK_LAYERS = (
    "nn.Linear",
    "nn.Conv1d",
    "nn.Conv2d",
    "nn.ReLU",
    "nn.Flatten",
    "nn.AvgPool2d",
    "nn.AdaptiveAvgPool2d",
    "nn.MaxPool2d",
    "nn.BatchNorm1d / nn.BatchNorm2d (eval mode, with running statistics; folded into the affine layer before it)",
    "nn.Dropout / Dropout1d / Dropout2d / AlphaDropout (no-ops in eval mode)",
    "nn.Identity",
    "nn.Sequential (nested)",
)

#: Relative widening of every computed bound, so it stays sound in exact arithmetic.
_SLACK = 1e-9

_AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
_NOOP = (nn.Identity, nn.modules.dropout._DropoutNd)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


# ------------------------------------------------------------------ lowering
@dataclass(eq=False)
class AffineOp:
    """``y = W x + b`` on flat vectors (``W`` sparse CSR, float64)."""

    W: sp.csr_matrix
    b: np.ndarray
    modules: tuple[str, ...] = ()


@dataclass(eq=False)
class ReluOp:
    """``y = max(0, x)`` elementwise."""

    modules: tuple[str, ...] = ()


@dataclass(eq=False)
class MaxPoolOp:
    """``y_o = max_k x[windows[o, k]]``; entries ``-1`` of ``windows`` are padding (ignored)."""

    windows: np.ndarray
    modules: tuple[str, ...] = ()


Op = AffineOp | ReluOp | MaxPoolOp


@dataclass(eq=False)
class LoweredNetwork:
    """A network as a list of operations on flat float64 vectors.

    Attributes:
        ops: the operations, in order.
        input_shape: the shape of one input (no batch axis).
        n_outputs: number of logits.
        layers: ``(module name, type name)`` of every module read, in order.
    """

    ops: list[Op]
    input_shape: tuple[int, ...]
    n_outputs: int
    layers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def n_inputs(self) -> int:
        """Number of input features."""
        return int(np.prod(self.input_shape))

    @property
    def n_relu_neurons(self) -> int:
        """ReLUs in the network's encoding (each max-pool window of k inputs counts k - 1)."""
        n = 0
        width = self.n_inputs
        for op in self.ops:
            if isinstance(op, AffineOp):
                width = op.W.shape[0]
            elif isinstance(op, ReluOp):
                n += width
            else:
                n += int((op.windows[:, 1:] >= 0).sum())
                width = op.windows.shape[0]
        return n

    def forward(self, x: Any) -> np.ndarray:
        """Logits for a batch ``(B, ...)`` or one input, in float64 (the lowered network, not torch)."""
        a = np.asarray(x, dtype=np.float64)
        single = a.size == self.n_inputs
        h = a.reshape(1 if single else a.shape[0], -1)
        for op in self.ops:
            if isinstance(op, AffineOp):
                h = np.asarray((op.W @ h.T).T) + op.b
            elif isinstance(op, ReluOp):
                h = np.maximum(h, 0.0)
            else:
                w = op.windows
                vals = np.where(w[None] >= 0, h[:, np.maximum(w, 0)], -np.inf)
                h = vals.max(axis=2)
        return h[0] if single else h


def _tname(m: nn.Module) -> str:
    return f"nn.{type(m).__name__}" if type(m).__module__.startswith("torch.nn") else type(m).__qualname__


def _unsupported(name: str, m: nn.Module, why: str = "") -> ValidationError:
    where = f"layer {name!r} ({_tname(m)})" if name else f"module {_tname(m)}"
    reason = f": {why}" if why else " is not supported"
    return ValidationError(
        f"{where}{reason}. The full-network encoding supports: {'; '.join(SUPPORTED_NETWORK_LAYERS)}"
    )


def _leaves(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    if type(model) is nn.Sequential:
        out: list[tuple[str, nn.Module]] = []
        for name, child in model.named_children():
            out.extend(_leaves(child, f"{prefix}.{name}" if prefix else name))
        return out
    return [(prefix, model)]


def _supported_leaf(m: nn.Module) -> bool:
    return (
        type(m) in (*_AFFINE, nn.ReLU, nn.Flatten, nn.MaxPool2d, *_BN, nn.Identity)
        or isinstance(m, nn.modules.dropout._DropoutNd)
        and type(m).__module__.startswith("torch.nn")
    )


def _affine_matrix(mod: nn.Module, shape: tuple[int, ...]) -> tuple[sp.csr_matrix, np.ndarray, tuple[int, ...]]:
    """The exact matrix and bias of an affine module on flat inputs of ``shape``."""
    m = copy.deepcopy(mod).double().eval()
    n_in = int(np.prod(shape))
    with torch.no_grad():
        zero = torch.zeros((1, *shape), dtype=torch.float64)
        b_out = m(zero)
        out_shape = tuple(b_out.shape[1:])
        if getattr(m, "bias", None) is not None:
            m.bias = None
        n_out = int(np.prod(out_shape))
        chunk = max(1, min(n_in, (1 << 22) // max(1, n_out)))
        rows, cols, vals = [], [], []
        for s in range(0, n_in, chunk):
            k = min(chunk, n_in - s)
            E = torch.zeros((k, n_in), dtype=torch.float64)
            E[torch.arange(k), torch.arange(s, s + k)] = 1.0
            Y = m(E.reshape((k, *shape))).reshape(k, n_out).numpy()
            kk, oo = np.nonzero(Y)
            rows.append(oo)
            cols.append(kk + s)
            vals.append(Y[kk, oo])
    W = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_out, n_in), dtype=np.float64
    )
    return W, b_out.reshape(-1).numpy().copy(), out_shape


def _bn_affine(name: str, bn: nn.Module, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    if bn.running_mean is None or bn.running_var is None:
        raise _unsupported(name, bn, "BatchNorm without running statistics (track_running_stats=False) is not affine")
    C = bn.num_features
    if len(shape) < 1 or shape[0] != C:
        raise ShapeError(f"layer {name!r} ({_tname(bn)}) expects {C} channels, got an input of shape {shape}")
    var = bn.running_var.detach().double().numpy()
    mean = bn.running_mean.detach().double().numpy()
    gamma = bn.weight.detach().double().numpy() if bn.weight is not None else np.ones(C)
    beta = bn.bias.detach().double().numpy() if bn.bias is not None else np.zeros(C)
    scale = gamma / np.sqrt(var + bn.eps)
    shift = beta - mean * scale
    per = int(np.prod(shape[1:]))
    return np.repeat(scale, per), np.repeat(shift, per)


def _maxpool_windows(name: str, mod: nn.MaxPool2d, shape: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...]]:
    if mod.return_indices:
        raise _unsupported(name, mod, "return_indices=True returns a tuple")
    if len(shape) != 3:
        raise ShapeError(f"layer {name!r} (nn.MaxPool2d) takes (C, H, W) inputs, got shape {shape}")

    def pair(v: Any) -> tuple[int, int]:
        return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))

    (k0, k1), (p0, p1), (d0, d1) = pair(mod.kernel_size), pair(mod.padding), pair(mod.dilation)
    s0, s1 = pair(mod.stride if mod.stride is not None else mod.kernel_size)
    with torch.no_grad():
        out = mod(torch.zeros((1, *shape), dtype=torch.float64))
    C, H, W = shape
    _, Ho, Wo = out.shape[1:]
    oh = np.arange(Ho)[:, None, None, None]
    ow = np.arange(Wo)[None, :, None, None]
    kh = np.arange(k0)[None, None, :, None]
    kw = np.arange(k1)[None, None, None, :]
    ih = oh * s0 - p0 + kh * d0
    iw = ow * s1 - p1 + kw * d1
    ih, iw = np.broadcast_arrays(ih, iw)
    valid = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
    flat = np.where(valid, ih * W + iw, -1).reshape(Ho * Wo, k0 * k1)
    chan = (np.arange(C) * H * W)[:, None, None]
    win = np.where(flat[None] >= 0, flat[None] + chan, -1).reshape(C * Ho * Wo, k0 * k1)
    # valid indices first in each window (the chain starts from a real input)
    order = np.argsort(win < 0, axis=1, kind="stable")
    win = np.take_along_axis(win, order, axis=1)
    return win.astype(np.int64), (C, Ho, Wo)


def lower_network(model: nn.Module, input_shape: tuple[int, ...]) -> LoweredNetwork:
    """Lower an ``nn.Sequential``-style ReLU network to :class:`LoweredNetwork` operations.

    Args:
        model: the network (``nn.Sequential``, possibly nested, or one supported layer).
        input_shape: the shape of one input, without the batch axis.

    Raises:
        ValidationError: a layer that is not supported (the message names it and
            lists :data:`SUPPORTED_NETWORK_LAYERS`), or a module with its own
            ``forward`` that is not a plain ``nn.Sequential``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    shape = tuple(int(s) for s in input_shape)
    ops: list[Op] = []
    layers: list[tuple[str, str]] = []
    leaves = _leaves(model)
    for name, m in leaves:
        if not _supported_leaf(m):
            why = ""
            if list(m.children()):
                why = (
                    "a module with its own forward() cannot be read layer by layer; write the network as nn.Sequential"
                )
            raise _unsupported(name, m, why)
    for name, m in leaves:
        layers.append((name, _tname(m)))
        if isinstance(m, _NOOP):
            continue
        if type(m) is nn.Flatten:
            if m.start_dim != 1 or m.end_dim != -1:
                raise _unsupported(name, m, f"only Flatten(start_dim=1, end_dim=-1) is supported, got {m.start_dim}")
            shape = (int(np.prod(shape)),)
            continue
        if type(m) is nn.ReLU:
            ops.append(ReluOp((name,)))
            continue
        if type(m) is nn.MaxPool2d:
            win, shape = _maxpool_windows(name, m, shape)
            ops.append(MaxPoolOp(win, (name,)))
            continue
        if type(m) in _BN:
            scale, shift = _bn_affine(name, m, shape)
            if ops and isinstance(ops[-1], AffineOp):
                prev = ops[-1]
                ops[-1] = AffineOp(
                    sp.csr_matrix(sp.diags(scale) @ prev.W), scale * prev.b + shift, (*prev.modules, name)
                )
            else:
                ops.append(AffineOp(sp.diags(scale, format="csr"), shift, (name,)))
            continue
        try:
            W, b, shape = _affine_matrix(m, shape)
        except RuntimeError as exc:
            raise ShapeError(f"layer {name!r} ({_tname(m)}) cannot take an input of shape {shape}: {exc}") from None
        if ops and isinstance(ops[-1], AffineOp):
            prev = ops[-1]
            ops[-1] = AffineOp(sp.csr_matrix(W @ prev.W), W @ prev.b + b, (*prev.modules, name))
        else:
            ops.append(AffineOp(W, b, (name,)))
    n_out = int(np.prod(shape))
    return LoweredNetwork(ops, tuple(int(s) for s in input_shape), n_out, layers)


# -------------------------------------------------------------------- bounds
def _split(W: sp.csr_matrix) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    Wp, Wn = W.copy(), W.copy()
    Wp.data = np.maximum(Wp.data, 0.0)
    Wn.data = np.minimum(Wn.data, 0.0)
    return Wp, Wn


def _affine_box(W: sp.csr_matrix, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    Wp, Wn = _split(W)
    return Wp @ lo + Wn @ hi + b, Wp @ hi + Wn @ lo + b


def _pool_as_relu_ops(windows: np.ndarray, n_in: int) -> list[Op]:
    """Max-pooling as affine and ReLU layers: a tournament of ``max(a, b) = b + relu(a - b)``, with the carried
    ``b`` written ``relu(b) - relu(-b)`` (exact over the reals)."""
    w = np.asarray(windows, dtype=np.int64)
    n_out = w.shape[0]
    rows = np.arange(n_out)
    # slot k: (an (n_out, n_cur) expression matrix, rows where the slot holds a value)
    slots = [
        (sp.csr_matrix((np.ones(int((w[:, k] >= 0).sum())), (rows[w[:, k] >= 0], w[w[:, k] >= 0, k])),
                       shape=(n_out, n_in)), w[:, k] >= 0)
        for k in range(w.shape[1])
    ]  # fmt: skip
    ops: list[Op] = []
    while len(slots) > 1:
        blocks, nxt = [], []
        n_new = 0
        for k in range(0, len(slots), 2):
            if k + 1 == len(slots):  # the odd slot passes through: (A, -A), A = relu(A) - relu(-A)
                ((A, va),) = slots[k:]
                blocks += [A, -A]
                P = sp.eye(n_out, format="csr")
                nxt.append((sp.hstack([sp.csr_matrix((n_out, n_new)), P, -P]), va))
                n_new += 2 * n_out
                continue
            (A, va), (B, vb) = slots[k], slots[k + 1]
            # where only one of the two holds a value, that one is carried; where both do, b + relu(a - b)
            carry = sp.diags(vb.astype(np.float64)) @ B + sp.diags((~vb).astype(np.float64)) @ A
            diff = sp.diags((va & vb).astype(np.float64)) @ (A - B)
            blocks += [carry, -carry, diff]
            P = sp.eye(n_out, format="csr")
            nxt.append((sp.hstack([sp.csr_matrix((n_out, n_new)), P, -P, P]), va | vb))
            n_new += 3 * n_out
        M = sp.vstack(blocks).tocsr()
        ops += [AffineOp(M, np.zeros(M.shape[0])), ReluOp()]
        slots = [(sp.hstack([S, sp.csr_matrix((n_out, n_new - S.shape[1]))]).tocsr(), v) for S, v in nxt]
    ops.append(AffineOp(slots[0][0].tocsr(), np.zeros(n_out)))
    return ops


def pools_as_relus(net: LoweredNetwork) -> LoweredNetwork:
    """The same network with every max-pooling layer rewritten as affine and ReLU layers (exact over the reals).

    ``max(a, b) = b + relu(a - b)`` with ``b = relu(b) - relu(-b)``, applied as a
    tournament over each window, and consecutive affine layers merged, so the
    result alternates affine and ReLU layers and the branch and bound of
    :mod:`smug.explain.lpbab` takes it.  A pooling layer of ``n`` windows of
    ``k`` inputs adds about ``log2(k)`` ReLU layers of up to ``3 n`` neurons.
    """
    ops: list[Op] = []
    width = net.n_inputs
    for op in net.ops:
        new = _pool_as_relu_ops(op.windows, width) if isinstance(op, MaxPoolOp) else [op]
        for o in new:
            if isinstance(o, AffineOp) and ops and isinstance(ops[-1], AffineOp):
                prev = ops.pop()
                W = sp.csr_matrix(o.W) @ sp.csr_matrix(prev.W)
                b = np.asarray(o.W @ prev.b + o.b, dtype=np.float64)
                o = AffineOp(sp.csr_matrix(W), b, prev.modules + o.modules)
            ops.append(o)
        if isinstance(op, AffineOp):
            width = op.W.shape[0]
        elif isinstance(op, MaxPoolOp):
            width = op.windows.shape[0]
    return LoweredNetwork(ops=ops, input_shape=net.input_shape, n_outputs=net.n_outputs, layers=list(net.layers))


def interval_bounds(net: LoweredNetwork, lo: Any, hi: Any, target: int | None = None) -> dict[str, Any]:
    """Sound interval bounds of every layer of ``net`` over the input box ``[lo, hi]``.

    Returns a dict with ``"pre"`` (a ``(lb, ub)`` pair per ReLU / max-pool
    operation, on its input), ``"logits"`` (``(lb, ub)``) and, with ``target``,
    ``"margin_lb"`` / ``"margin_ub"``: bounds on ``logit_target - logit_j`` per
    ``j`` (computed from the last layer directly, tighter than subtracting
    logit intervals; ``+inf`` / ``-inf`` at ``j = target``).
    """
    lo = np.asarray(lo, dtype=np.float64).ravel()
    hi = np.asarray(hi, dtype=np.float64).ravel()
    pre: list[tuple[np.ndarray, np.ndarray]] = []
    last_in: tuple[np.ndarray, np.ndarray] | None = None
    for i, op in enumerate(net.ops):
        if isinstance(op, AffineOp):
            if i == len(net.ops) - 1:
                last_in = (lo, hi)
            lo, hi = _affine_box(op.W, op.b, lo, hi)
        elif isinstance(op, ReluOp):
            pre.append((lo, hi))
            lo, hi = np.maximum(lo, 0.0), np.maximum(hi, 0.0)
        else:
            pre.append((lo, hi))
            w = op.windows
            lo = np.where(w >= 0, lo[np.maximum(w, 0)], -np.inf).max(axis=1)
            hi = np.where(w >= 0, hi[np.maximum(w, 0)], -np.inf).max(axis=1)
    out: dict[str, Any] = {"pre": pre, "logits": (lo, hi)}
    if target is not None:
        if last_in is not None:
            op = net.ops[-1]
            assert isinstance(op, AffineOp)
            D = sp.csr_matrix(op.W[[target]].toarray() - op.W.toarray()) if op.W.shape[0] <= 64 else None
            if D is not None:
                mlo, mhi = _affine_box(D, op.b[target] - op.b, *last_in)
            else:
                mlo, mhi = lo[target] - hi, hi[target] - lo
        else:
            mlo, mhi = lo[target] - hi, hi[target] - lo
        mlo, mhi = mlo.copy(), mhi.copy()
        mlo[target], mhi[target] = np.inf, -np.inf
        out["margin_lb"], out["margin_ub"] = mlo, mhi
    return out


def linear_margin_bounds(net: LoweredNetwork, lo: Any, hi: Any, target: int) -> np.ndarray:
    """Sound lower bounds on ``logit_target - logit_j`` over the box ``[lo, hi]`` by linear relaxation.

    A backward pass (as in CROWN / DeepPoly): each unstable ReLU is replaced by a
    linear lower or upper bound (triangle relaxation, lower slope chosen by the
    larger side), with pre-activation bounds from :func:`interval_bounds`; the
    resulting linear function of the input is minimised over the box exactly.
    Much tighter than interval arithmetic once many inputs are free.  Networks
    with max-pooling fall back to the interval bounds.  ``+inf`` at ``j = target``.
    """
    lo = np.asarray(lo, dtype=np.float64).ravel()
    hi = np.asarray(hi, dtype=np.float64).ravel()
    ib = interval_bounds(net, lo, hi, target)
    if any(isinstance(op, MaxPoolOp) for op in net.ops):
        return ib["margin_lb"]
    n = net.n_outputs
    Lam = -np.eye(n)
    Lam[:, target] += 1.0  # row j: e_target - e_j
    bias = np.zeros(n)
    pre = list(ib["pre"])
    for op in reversed(net.ops):
        if isinstance(op, AffineOp):
            bias = bias + Lam @ op.b
            Lam = np.asarray(sp.csr_matrix(op.W).T.dot(Lam.T)).T if sp.issparse(op.W) else Lam @ op.W
        else:
            low, upp = pre.pop()
            act = low >= 0
            unst = (low < 0) & (upp > 0)
            den = np.where(unst, upp - low, 1.0)
            a_u = np.where(act, 1.0, np.where(unst, upp / den, 0.0))
            b_u = np.where(unst, -upp * low / den, 0.0)
            a_l = np.where(act, 1.0, np.where(unst, (upp > -low).astype(np.float64), 0.0))
            pos, neg = np.maximum(Lam, 0.0), np.minimum(Lam, 0.0)
            bias = bias + neg @ b_u
            Lam = pos * a_l + neg * a_u
    out = np.maximum(Lam, 0.0) @ lo + np.minimum(Lam, 0.0) @ hi + bias
    out = out - 1e-9 * (1.0 + np.abs(out))  # float rounding: stay sound
    out = np.maximum(out, ib["margin_lb"])
    out[target] = np.inf
    return out


# ------------------------------------------------------------------ encoding
@dataclass(eq=False)
class NetworkEncoding:
    """An encoded question about a network, with what the encoder learnt on the way.

    Attributes:
        problem: the IR problem (mask variables first).
        n_relu: ReLUs of the encoded network (max-pool windows included).
        n_unstable: ReLUs whose bounds do not fix their phase; only these are
            IR ReLU constraints (one binary each in a MILP).
        n_active, n_inactive: ReLUs proven always on / always off (linear).
        input_vars: indices of the real input variables (robust masking), else ``None``.
        selector_vars: the 0/1 selectors of the counterexample disjunction (one per
            candidate class), else empty.
        candidates: the classes ``j`` that can still beat the target (counterexample
            output), in the order of ``selector_vars``.
        trivially_valid: (counterexample output) the bounds alone prove that no
            class can reach the target's logit within ``threshold``: no counterexample.
        threshold: the margin threshold used in the output rows.
        bounds_time: seconds spent on LP bound tightening.
        logits: the logits as ``(H, h0)``: ``logits = H @ assignment + h0``.
    """

    problem: Problem
    n_relu: int
    n_unstable: int
    n_active: int
    n_inactive: int
    input_vars: np.ndarray | None = None
    selector_vars: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    candidates: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    trivially_valid: bool = False
    threshold: float = 0.0
    bounds_time: float = 0.0
    logits: tuple[sp.csr_matrix, np.ndarray] | None = None
    steps: list[tuple[Any, ...]] = field(default_factory=list, repr=False)

    def complete(self, mask: Any, inputs: Any = None) -> np.ndarray:
        """The full assignment a 0/1 group ``mask`` determines (with ``inputs`` for robust masking).

        Every layer variable is computed forward from the mask (and the input
        variables), exactly as the encoding defines it; selectors of a
        counterexample disjunction are set to the first candidate whose row holds
        (or 1 on the first when none does).  For testing and for brute force
        (:func:`smug.testing.brute_force` ``complete=``).
        """
        p = self.problem
        v = np.zeros(p.n_vars)
        v[: p.n_mask] = np.asarray(mask, dtype=np.float64).ravel()[: p.n_mask]
        if self.input_vars is not None:
            if inputs is None:
                raise ValidationError("robust encodings need inputs= to complete an assignment")
            v[self.input_vars] = np.asarray(inputs, dtype=np.float64).ravel()
        for step in self.steps:
            if step[0] == "z":
                _, idx, H, h0 = step
                v[idx] = sp.csr_matrix(H) @ v[: H.shape[1]] + h0
            else:
                _, y, z = step
                v[y] = np.maximum(v[z], 0.0)
        if self.selector_vars.size:
            H, h0 = self.logits  # type: ignore[misc]
            lg = H @ v[: H.shape[1]] + h0
            t = int(p.metadata["target"])
            diffs = lg[t] - lg[self.candidates]
            hit = np.flatnonzero(diffs <= self.threshold)
            v[self.selector_vars[hit[0] if hit.size else 0]] = 1.0
        return v


class _Expr:
    """Values ``H v + h0`` over the problem's variables, with interval bounds ``[lo, hi]``."""

    def __init__(self, H: sp.csr_matrix, h0: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        self.H, self.h0, self.lo, self.hi = H, h0, lo, hi


class _Enc:
    def __init__(self, lp: bool) -> None:
        self.b = ProblemBuilder()
        self.vlb: list[np.ndarray] = []
        self.vub: list[np.ndarray] = []
        # the computed ("tight") boxes, before the widening that keeps declared bounds sound in exact arithmetic;
        # phases are decided on these, so a value that is exactly 0 stays a stable ReLU
        self.tlb: list[np.ndarray] = []
        self.tub: list[np.ndarray] = []
        self.n = 0
        self.lp = lp
        # rows kept for LP tightening: (csr block, sense code, rhs)
        self.rows: list[tuple[sp.csr_matrix, str, np.ndarray]] = []
        self.tri: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.n_relu = self.n_unstable = self.n_active = self.n_inactive = 0
        self.bounds_time = 0.0
        self.steps: list[tuple[Any, ...]] = []

    def var_box(self, tight: bool = False) -> tuple[np.ndarray, np.ndarray]:
        if tight:
            return np.concatenate(self.tlb), np.concatenate(self.tub)
        return np.concatenate(self.vlb), np.concatenate(self.vub)

    def add_vars(
        self, kind: str, lb: np.ndarray, ub: np.ndarray, tight: tuple[Any, Any] | None = None, **kw: Any
    ) -> np.ndarray:
        lb = np.asarray(lb, dtype=np.float64)
        ub = np.asarray(ub, dtype=np.float64)
        tl, tu = (lb, ub) if tight is None else (np.asarray(tight[0], float), np.asarray(tight[1], float))
        self.tlb.append(tl)
        self.tub.append(tu)
        if kind == "mask":
            idx = self.b.add_mask(lb.shape[0], **kw)
        elif kind == "binary":
            idx = self.b.add_binary(lb.shape[0])
        else:
            idx = self.b.add_real(lb, ub)
        self.vlb.append(lb)
        self.vub.append(ub)
        self.n += lb.shape[0]
        return idx

    def widen(self, H: sp.csr_matrix) -> sp.csr_matrix:
        H = sp.csr_matrix(H)
        if H.shape[1] == self.n:
            return H
        return sp.csr_matrix((H.data, H.indices, H.indptr), shape=(H.shape[0], self.n))

    def add_rows(self, A: sp.csr_matrix, sense: str, rhs: np.ndarray) -> None:
        A = self.widen(A)
        self.b.add_rows(A, sense, rhs)
        if self.lp:
            self.rows.append((A, sense, np.asarray(rhs, dtype=np.float64)))

    def expr_bounds(self, H: sp.csr_matrix, h0: np.ndarray, tight: bool = True) -> tuple[np.ndarray, np.ndarray]:
        vl, vu = self.var_box(tight)
        return _affine_box(self.widen(H), h0, vl, vu)

    def lp_tighten(self, H: sp.csr_matrix, h0: np.ndarray, lo: np.ndarray, hi: np.ndarray, which: np.ndarray) -> None:
        """Tighten ``[lo, hi]`` of rows ``which`` of ``H v + h0`` by LPs over the relaxation so far."""
        import time

        from scipy.optimize import linprog

        t0 = time.perf_counter()
        n = self.n
        vl, vu = self.var_box()
        A_ub, b_ub, A_eq, b_eq = [], [], [], []
        for A, s, r in self.rows:
            A = self.widen(A)
            if s == "==":
                A_eq.append(A)
                b_eq.append(r)
            elif s == "<=":
                A_ub.append(A)
                b_ub.append(r)
            else:
                A_ub.append(-A)
                b_ub.append(-r)
        for z, y, lz, uz in self.tri:  # triangle relaxation of each unstable ReLU
            k = z.shape[0]
            r = np.arange(k)
            A_ub.append(sp.csr_matrix((np.r_[np.ones(k), -np.ones(k)], (np.r_[r, r], np.r_[z, y])), shape=(k, n)))
            b_ub.append(np.zeros(k))
            slope = uz / (uz - lz)
            A_ub.append(sp.csr_matrix((np.r_[np.ones(k), -slope], (np.r_[r, r], np.r_[y, z])), shape=(k, n)))
            b_ub.append(-slope * lz)
        kw: dict[str, Any] = {"bounds": np.column_stack([vl, vu]), "method": "highs"}
        if A_ub:
            kw["A_ub"], kw["b_ub"] = sp.vstack(A_ub, format="csr"), np.concatenate(b_ub)
        if A_eq:
            kw["A_eq"], kw["b_eq"] = sp.vstack(A_eq, format="csr"), np.concatenate(b_eq)
        Hw = self.widen(H)
        for i in which:
            c = Hw[i].toarray().ravel()
            for sign in (1.0, -1.0):
                res = linprog(sign * c, **kw)
                if res.status == 0:
                    val = sign * res.fun + h0[i]
                    slack = 1e-7 * max(1.0, abs(val))  # LP tolerances: keep the bound sound
                    if sign > 0:
                        lo[i] = max(lo[i], val - slack)
                    else:
                        hi[i] = min(hi[i], val + slack)
        self.bounds_time += time.perf_counter() - t0

    def relu(self, E: _Expr) -> _Expr:
        """Encode ``max(0, E)`` elementwise; returns the output expression."""
        lo, hi = self.expr_bounds(E.H, E.h0)
        lo, hi = np.maximum(lo, E.lo), np.minimum(hi, E.hi)
        hi = np.maximum(hi, lo)
        if self.lp:
            unst = np.flatnonzero((lo < 0) & (hi > 0))
            if unst.size:
                self.lp_tighten(E.H, E.h0, lo, hi, unst)
        # phases from the computed bounds; then widen the declared bounds by a hair: bounds summed in floats
        # may miss the exact value (which SMT solvers see) by an ulp
        act0, inact0 = lo >= 0, hi <= 0
        tlo, thi = lo.copy(), hi.copy()
        lo, hi = lo - _SLACK * (1.0 + np.abs(lo)), hi + _SLACK * (1.0 + np.abs(hi))
        k = lo.shape[0]
        act = act0
        inact = inact0 & ~act
        unst = ~act & ~inact
        need = np.flatnonzero(act | unst)
        self.n_relu += k
        self.n_active += int(act.sum())
        self.n_inactive += int(inact.sum())
        self.n_unstable += int(unst.sum())
        cols = np.full(k, -1, dtype=np.int64)
        if need.size:
            z = self.add_vars("real", lo[need], hi[need], tight=(tlo[need], thi[need]))
            Hn = self.widen(E.H)[need]
            A = sp.hstack([Hn[:, : self.n - need.size], -sp.identity(need.size, format="csr")], format="csr")
            self.add_rows(A, "==", -E.h0[need])
            self.steps.append(("z", z, Hn[:, : self.n - need.size], E.h0[need].copy()))
            zmap = dict(zip(need.tolist(), z.tolist()))
            cols[need] = z
            u = np.flatnonzero(unst)
            if u.size:
                y = self.add_vars("real", np.zeros(u.size), hi[u], tight=(np.zeros(u.size), thi[u]))
                zu = np.array([zmap[i] for i in u.tolist()], dtype=np.int64)
                self.b.add_relu(y, zu, lo[u], hi[u])
                self.steps.append(("y", y, zu))
                self.tri.append((zu, y, lo[u], hi[u]))
                cols[u] = y
        rows = np.flatnonzero(cols >= 0)
        H = sp.csr_matrix((np.ones(rows.size), (rows, cols[rows])), shape=(k, self.n))
        olo = np.where(act, tlo, 0.0)
        ohi = np.where(inact, 0.0, thi)
        return _Expr(H, np.zeros(k), olo, ohi)


def encode_network(
    net: LoweredNetwork,
    x: Any,
    target: int,
    *,
    ids: Any,
    masking: str = "baseline",
    baseline: Any = None,
    input_range: tuple[Any, Any] = (0.0, 1.0),
    threshold: float = 0.0,
    output: str = "margin",
    fixed_mask: Any = None,
    bounds: str = "interval",
    weights: Any = None,
    max_kept: int | None = None,
    margin_lb: Any = None,
    layer_bounds: Any = None,
) -> NetworkEncoding:
    """State a question about ``net`` on a masked copy of ``x`` as an IR problem.

    Args:
        net: the lowered network (:func:`lower_network`).
        x: the input (shape ``net.input_shape``).
        target: the class whose logit must win (``output="margin"``) or lose
            (``"counterexample"``).
        ids: group id of every input feature (:func:`~smug.encoders.feature_groups`);
            one mask variable per group.
        masking: ``"baseline"`` (a masked feature takes ``baseline``) or
            ``"robust"`` (any value in ``input_range``).
        baseline: array like ``x`` (baseline masking).
        input_range: ``(lo, hi)``, numbers or arrays like ``x`` (robust masking).
        threshold: ``"margin"``: ``logit_t - logit_j >= threshold`` for every ``j``;
            ``"counterexample"``: some ``j`` has ``logit_t - logit_j <= threshold``.
        output: ``"margin"`` (objective: the weighted mask size) or
            ``"counterexample"`` (feasibility; objective 0).
        fixed_mask: 0/1 per group: fix the mask variables to these values (their
            bounds), and compute every bound for that mask (much tighter).
        bounds: ``"interval"`` or ``"lp"`` (tighten unstable ReLUs' bounds by LPs).
        weights: objective weight per group (default 1).
        max_kept: baseline masking only: add ``sum(m) <= max_kept`` (for example
            one below a known valid mask's size, to ask for a better one) and
            use it in the first layer's bounds (each pre-activation moves from
            its all-masked value by at most the ``max_kept`` largest
            contributions), which makes many more ReLUs stable.
        margin_lb: known sound lower bounds on ``logit_target - logit_j`` per class
            (for example :func:`linear_margin_bounds` for the fixed mask's box); a
            class whose bound exceeds ``threshold`` leaves the counterexample
            disjunction.
        layer_bounds: known sound bounds ``(lo, hi)`` on the input of every ReLU and
            max-pooling layer, in order, over the same input box (for example
            :meth:`smug.encoders.bounds.SparseCrown.bounds` for the fixed mask's
            box); they are intersected with the encoding's own, so fewer ReLUs stay
            unstable and the big-M constants shrink.

    Returns:
        A :class:`NetworkEncoding`.
    """
    if masking not in ("baseline", "robust"):
        raise ValidationError(f"masking must be 'baseline' or 'robust', got {masking!r}")
    if output not in ("margin", "counterexample"):
        raise ValidationError(f"output must be 'margin' or 'counterexample', got {output!r}")
    if bounds not in ("interval", "lp"):
        raise ValidationError(f"bounds must be 'interval' or 'lp', got {bounds!r}")
    x0 = np.asarray(x, dtype=np.float64).reshape(-1)
    if x0.size != net.n_inputs:
        raise ShapeError(f"the input has {x0.size} features, the network takes {net.n_inputs}")
    ids = np.asarray(ids).reshape(-1).astype(np.int64)
    G = groups_matrix(ids.reshape(net.input_shape))
    n_groups = G.shape[0]
    if not 0 <= int(target) < net.n_outputs:
        raise ValidationError(f"target {target!r} is out of range: the network has {net.n_outputs} outputs")
    target = int(target)

    mlb, mub = np.zeros(n_groups), np.ones(n_groups)
    if fixed_mask is not None:
        fm = np.asarray(fixed_mask, dtype=np.float64).ravel()
        if fm.shape[0] != n_groups or not np.isin(fm, (0.0, 1.0)).all():
            raise ShapeError(f"fixed_mask must hold {n_groups} values in {{0, 1}}")
        mlb = mub = fm
    enc = _Enc(lp=bounds == "lp")
    m = enc.add_vars("mask", mlb, mub, groups=G, input_shape=net.input_shape)
    input_vars = None
    n_in = net.n_inputs
    if masking == "baseline":
        base = np.zeros(n_in) if baseline is None else _per_feature("baseline", baseline, net)
        d = x0 - base
        H = sp.csr_matrix((d, (np.arange(n_in), m[ids])), shape=(n_in, enc.n))
        ilo, ihi = np.minimum(x0, base), np.maximum(x0, base)
        if fixed_mask is not None:
            kept = mlb[ids] > 0.5
            ilo = np.where(kept, x0, base)
            ihi = ilo.copy()
        E = _Expr(H, base.copy(), ilo, ihi)
    else:
        lo = _per_feature("input_range low", input_range[0], net)
        hi = _per_feature("input_range high", input_range[1], net)
        if (lo > hi).any():
            i = int(np.flatnonzero(lo > hi)[0])
            raise BoundsError(f"input_range has low {lo[i]!r} above high {hi[i]!r} at feature {i}")
        out = (x0 < lo) | (x0 > hi)
        if out.any():
            i = int(np.flatnonzero(out)[0])
            raise BoundsError(
                f"input feature {i} = {x0[i]!r} lies outside input_range [{lo[i]!r}, {hi[i]!r}]; "
                "a robust explanation keeps features at their values inside the range"
            )
        vlo, vhi = lo.copy(), hi.copy()
        if fixed_mask is not None:
            kept = mlb[ids] > 0.5
            vlo = np.where(kept, x0, lo)
            vhi = np.where(kept, x0, hi)
        u = enc.add_vars("real", vlo, vhi)
        input_vars = u
        r = np.arange(n_in)
        # x_i + (hi_i - x0_i) m_g <= hi_i  and  x_i + (lo_i - x0_i) m_g >= lo_i
        A_hi = sp.csr_matrix((np.r_[np.ones(n_in), hi - x0], (np.r_[r, r], np.r_[u, m[ids]])), shape=(n_in, enc.n))
        A_lo = sp.csr_matrix((np.r_[np.ones(n_in), lo - x0], (np.r_[r, r], np.r_[u, m[ids]])), shape=(n_in, enc.n))
        enc.add_rows(A_hi, "<=", hi)
        enc.add_rows(A_lo, ">=", lo)
        E = _Expr(sp.csr_matrix((np.ones(n_in), (r, u)), shape=(n_in, enc.n)), np.zeros(n_in), vlo, vhi)

    budget = max_kept is not None and masking == "baseline" and fixed_mask is None
    if budget:
        if int(max_kept) < 0:
            raise ValidationError(f"max_kept must be >= 0, got {max_kept!r}")
        enc.add_rows(sp.csr_matrix((np.ones(n_groups), (np.zeros(n_groups), m)), shape=(1, enc.n)), "<=", [max_kept])
    known = list(layer_bounds) if layer_bounds is not None else None
    if known is not None and len(known) != sum(not isinstance(op, AffineOp) for op in net.ops):
        raise ShapeError(
            f"layer_bounds holds {len(known)} pairs; the network has "
            f"{sum(not isinstance(op, AffineOp) for op in net.ops)} ReLU and max-pooling layers"
        )
    first = True
    for op in net.ops:
        if known is not None and not isinstance(op, AffineOp):
            kl, ku = (np.asarray(a, dtype=np.float64).ravel() for a in known.pop(0))
            if kl.shape != E.lo.shape or ku.shape != E.hi.shape:
                raise ShapeError(f"layer_bounds: a pair has {kl.size} values, the layer has {E.lo.size} inputs")
            nlo = np.maximum(E.lo, kl)
            E = _Expr(E.H, E.h0, nlo, np.maximum(np.minimum(E.hi, ku), nlo))
        if isinstance(op, AffineOp):
            H = sp.csr_matrix(op.W @ enc.widen(E.H))
            h0 = op.W @ E.h0 + op.b
            lo1, hi1 = _affine_box(op.W, op.b, E.lo, E.hi)
            lo2, hi2 = enc.expr_bounds(H, h0)
            lo, hi = np.maximum(lo1, lo2), np.minimum(hi1, hi2)
            if budget and first:
                lo3, hi3 = _budget_bounds(H[:, :n_groups], h0, int(max_kept))
                lo, hi = np.maximum(lo, lo3), np.minimum(hi, hi3)
            E = _Expr(H, h0, lo, hi)
            first = False
        elif isinstance(op, ReluOp):
            E = enc.relu(E)
            first = False
        else:
            E = _maxpool(enc, E, op.windows)
            first = False

    # output rows over the logits' expression
    L = E
    H = enc.widen(L.H)
    others = np.array([j for j in range(net.n_outputs) if j != target], dtype=np.int64)
    D = sp.csr_matrix(H[[target] * others.size] - H[others]) if others.size else sp.csr_matrix((0, enc.n))
    d0 = L.h0[target] - L.h0[others]
    dlo, _ = enc.expr_bounds(D, d0)
    _, dhi = enc.expr_bounds(D, d0, tight=False)  # the big-M below must hold for the declared boxes
    dlo = np.maximum(dlo, L.lo[target] - L.hi[others])
    dhi = np.minimum(dhi, L.hi[target] - L.lo[others])
    if margin_lb is not None:
        dlo = np.maximum(dlo, np.asarray(margin_lb, dtype=np.float64)[others])
    selectors = np.zeros(0, dtype=np.int64)
    candidates = np.zeros(0, dtype=np.int64)
    trivially_valid = False
    if output == "margin":
        if others.size:
            enc.add_rows(D, ">=", threshold - d0)
        if weights is None:
            weights = np.ones(n_groups)
        enc.b.set_objective(m, np.asarray(weights, dtype=np.float64))
    else:
        cand = np.flatnonzero(dlo <= threshold)
        candidates = others[cand]
        if cand.size == 0:
            trivially_valid = True
            # an infeasible row (0 >= 1) keeps the problem honest: no counterexample exists
            enc.add_rows(sp.csr_matrix((1, enc.n)), ">=", np.array([1.0]))
        elif cand.size == 1:
            i = int(cand[0])
            enc.add_rows(D[[i]], "<=", np.array([threshold - d0[i]]))
        else:
            s = enc.add_vars("binary", np.zeros(cand.size), np.ones(cand.size))
            selectors = s
            enc.add_rows(sp.csr_matrix((np.ones(cand.size), (np.zeros(cand.size), s)), shape=(1, enc.n)), ">=", [1.0])
            # D_i v + d0_i <= t + (U_i - t)(1 - s_i)  <=>  D_i v + (U_i - t) s_i <= U_i - d0_i
            U = np.maximum(dhi[cand] + _SLACK * (1.0 + np.abs(dhi[cand])), threshold)
            rows = enc.widen(D[cand]) + sp.csr_matrix(
                (U - threshold, (np.arange(cand.size), s)), shape=(cand.size, enc.n)
            )
            enc.add_rows(rows, "<=", U - d0[cand])
    enc.b.metadata.update(
        {
            "kind": "smug-full-network",
            "target": target,
            "masking": masking,
            "output": output,
            "threshold": float(threshold),
            "n_relu": enc.n_relu,
            "n_unstable": enc.n_unstable,
        }
    )
    problem = enc.b.build()
    return NetworkEncoding(
        problem=problem,
        n_relu=enc.n_relu,
        n_unstable=enc.n_unstable,
        n_active=enc.n_active,
        n_inactive=enc.n_inactive,
        input_vars=input_vars,
        selector_vars=selectors,
        candidates=candidates,
        trivially_valid=trivially_valid,
        threshold=float(threshold),
        bounds_time=enc.bounds_time,
        logits=(enc.widen(L.H), L.h0.copy()),
        steps=enc.steps,
    )


def _per_feature(name: str, value: Any, net: LoweredNetwork) -> np.ndarray:
    """A number or an array (flat, or broadcastable to the input shape) as one float64 value per feature."""
    a = np.asarray(value, dtype=np.float64)
    if a.size == net.n_inputs:
        return a.reshape(-1).copy()
    try:
        return np.broadcast_to(a, net.input_shape).reshape(-1).copy()
    except ValueError:
        raise ShapeError(f"{name} has shape {a.shape}, which does not fit the input shape {net.input_shape}") from None


def _budget_bounds(C: sp.csr_matrix, c0: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of ``C m + c0`` over 0/1 vectors ``m`` with at most ``k`` ones."""
    n_rows = C.shape[0]
    lo, hi = c0.copy(), c0.copy()
    if k <= 0:
        return lo, hi
    step = max(1, (1 << 22) // max(1, C.shape[1]))
    for s in range(0, n_rows, step):
        D = C[s : s + step].toarray()
        kk = min(k, D.shape[1])
        pos = np.maximum(D, 0.0)
        neg = np.minimum(D, 0.0)
        hi[s : s + step] += -np.sort(-pos, axis=1)[:, :kk].sum(axis=1)
        lo[s : s + step] += np.sort(neg, axis=1)[:, :kk].sum(axis=1)
    return lo, hi


def _maxpool(enc: _Enc, E: _Expr, windows: np.ndarray) -> _Expr:
    """``max`` over each window as a chain ``acc <- acc + relu(x_k - acc)``."""
    n_out, K = windows.shape
    H = enc.widen(E.H)
    w0 = windows[:, 0]
    acc = _Expr(H[w0], E.h0[w0].copy(), E.lo[w0].copy(), E.hi[w0].copy())
    for k in range(1, K):
        wk = windows[:, k]
        rows = np.flatnonzero(wk >= 0)
        if rows.size == 0:
            continue
        accH = enc.widen(acc.H)
        Hd = sp.csr_matrix(enc.widen(E.H)[wk[rows]] - accH[rows])
        h0d = E.h0[wk[rows]] - acc.h0[rows]
        dlo = E.lo[wk[rows]] - acc.hi[rows]
        dhi = E.hi[wk[rows]] - acc.lo[rows]
        r = enc.relu(_Expr(Hd, h0d, dlo, dhi))
        rc = enc.widen(r.H).tocoo()
        add = sp.csr_matrix((rc.data, (rows[rc.row], rc.col)), shape=(n_out, enc.n))
        newH = sp.csr_matrix(enc.widen(acc.H) + add)
        lo = acc.lo.copy()
        hi = acc.hi.copy()
        lo[rows] = np.maximum(acc.lo[rows], E.lo[wk[rows]])
        hi[rows] = np.maximum(acc.hi[rows], E.hi[wk[rows]])
        acc = _Expr(newH, acc.h0, lo, hi)
    return acc

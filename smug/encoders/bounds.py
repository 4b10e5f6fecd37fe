"""Batched bounds on a lowered network's margins: interval arithmetic and CROWN, many input boxes in one torch pass.

A robustness check asks whether ``logit_t - logit_j > delta`` for every input in
a box ``[lo, hi]`` and every other class ``j``.  :class:`BatchBounds` answers the
cheap, sound part of that question for a *batch* of boxes at once (``(B, n)``
arrays of lower and upper ends), in float64:

- :meth:`BatchBounds.interval`: interval arithmetic through every layer;
- :meth:`BatchBounds.crown`: a backward linear relaxation (CROWN; Zhang et al.
  2018, the DeepPoly relaxation of ReLU with the adaptive lower slope), with
  every ReLU layer's pre-activation bounds computed by the same backward pass
  from the layers before it (not by intervals), so bounds stay tight through
  deep networks.  Max-pooling is bounded by intervals and the linear relaxation
  restarts after the last pooling layer, from that layer's output box.

Soundness against float rounding: every bound is moved outwards by
``1e-9 * (1 + the sum of the magnitudes of the terms it adds up)``, far more
than float64 rounding can lose in sums of this length (``n * 2**-53``), so a
bound is never above the true minimum of the float64-exact network.  These
bounds only ever *prove* robustness (``lb > delta``); an unproven box goes to an
attack and then to an exact solver.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from .network import AffineOp, LoweredNetwork, MaxPoolOp, ReluOp

__all__ = ["BatchBounds"]

#: Relative outward rounding of every bound (see the module docstring).
_ROUND = 1e-9

#: An affine layer with at most this many entries is held dense (faster products); larger ones stay sparse.
_DENSE_LIMIT = 12_000_000


class _Affine:
    def __init__(self, op: AffineOp) -> None:
        W = sp.csr_matrix(op.W)
        self.n_out, self.n_in = W.shape
        self.b = torch.from_numpy(np.asarray(op.b, dtype=np.float64))
        if W.shape[0] * W.shape[1] <= _DENSE_LIMIT:
            self.W = torch.from_numpy(W.toarray())
            self.Wt_sparse = None
        else:
            self.W = None
            coo = W.T.tocoo()
            idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
            self.Wt_sparse = torch.sparse_coo_tensor(idx, torch.from_numpy(coo.data), (self.n_in, self.n_out))
            self.Wt_sparse = self.Wt_sparse.coalesce()
            absW = abs(W)
            coo = absW.T.tocoo()
            self.absWt_sparse = torch.sparse_coo_tensor(idx, torch.from_numpy(coo.data), (self.n_in, self.n_out))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """``X @ W^T + b`` for ``X`` of shape ``(B, n_in)``."""
        if self.W is not None:
            return X @ self.W.T + self.b
        return torch.sparse.mm(self.Wt_sparse.t(), X.T).T + self.b

    def box(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Interval image of the box (batched), moved outwards."""
        mid, rad = 0.5 * (lo + hi), 0.5 * (hi - lo)
        if self.W is not None:
            c = mid @ self.W.T + self.b
            r = rad @ self.W.abs().T
            mag = mid.abs() @ self.W.abs().T + self.b.abs()
        else:
            c = self.forward(mid)
            r = torch.sparse.mm(self.absWt_sparse.t(), rad.T).T
            mag = torch.sparse.mm(self.absWt_sparse.t(), mid.abs().T).T + self.b.abs()
        slack = _ROUND * (1.0 + mag + r)
        return c - r - slack, c + r + slack

    def back(self, Lam: torch.Tensor) -> torch.Tensor:
        """``Lam @ W`` for ``Lam`` of shape ``(B, m, n_out)``."""
        if self.W is not None:
            return Lam @ self.W
        B, m, _ = Lam.shape
        flat = Lam.reshape(B * m, self.n_out)
        return torch.sparse.mm(self.Wt_sparse, flat.T).T.reshape(B, m, self.n_in)


class BatchBounds:
    """Sound lower bounds on ``logit_target - logit_j`` over batches of input boxes (see the module docstring).

    Args:
        net: the lowered network (:func:`smug.encoders.network.lower_network`).
        target: the class whose margin is bounded.
    """

    def __init__(self, net: LoweredNetwork, target: int) -> None:
        self.net, self.target = net, int(target)
        self.ops: list[Any] = []
        for op in net.ops:
            if isinstance(op, AffineOp):
                self.ops.append(_Affine(op))
            elif isinstance(op, ReluOp):
                self.ops.append("relu")
            elif isinstance(op, MaxPoolOp):
                self.ops.append(("maxpool", torch.from_numpy(np.asarray(op.windows, dtype=np.int64))))
            else:  # pragma: no cover - lower_network produces only these
                raise TypeError(f"unknown lowered operation {type(op).__name__}")
        n = net.n_outputs
        C = -np.eye(n)
        C[:, self.target] += 1.0
        self.C = torch.from_numpy(np.delete(C, self.target, axis=0))  # (n - 1, n): e_t - e_j, j != t
        self.others = np.delete(np.arange(n), self.target)
        last_pool = max((i for i, o in enumerate(self.ops) if isinstance(o, tuple)), default=-1)
        self.linear_from = last_pool + 1  # the relaxation restarts after the last pooling layer

    # ------------------------------------------------------------ helpers
    @staticmethod
    def _as_batch(lo: Any, hi: Any) -> tuple[torch.Tensor, torch.Tensor]:
        LO = torch.as_tensor(np.atleast_2d(np.asarray(lo, dtype=np.float64)))
        HI = torch.as_tensor(np.atleast_2d(np.asarray(hi, dtype=np.float64)))
        if LO.shape != HI.shape:
            raise ValueError(f"lo and hi differ in shape: {tuple(LO.shape)} vs {tuple(HI.shape)}")
        return LO, HI

    def _full(self, out: torch.Tensor) -> np.ndarray:
        """(B, n - 1) bounds over the other classes -> (B, n) with +inf at the target."""
        res = np.full((out.shape[0], self.net.n_outputs), np.inf)
        res[:, self.others] = out.numpy()
        return res

    @staticmethod
    def _pool(windows: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        valid = windows >= 0
        idx = windows.clamp(min=0)
        neg = torch.tensor(-torch.inf, dtype=lo.dtype)
        lo2 = torch.where(valid, lo[:, idx], neg).amax(dim=2)
        hi2 = torch.where(valid, hi[:, idx], neg).amax(dim=2)
        return lo2, hi2

    # ------------------------------------------------------------ interval
    def _propagate(self, ops: list[Any], LO: torch.Tensor, HI: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Interval bounds through ``ops`` (affine, ReLU, max-pool), batched."""
        for op in ops:
            if isinstance(op, _Affine):
                LO, HI = op.box(LO, HI)
            elif op == "relu":
                LO, HI = LO.clamp(min=0), HI.clamp(min=0)
            else:
                LO, HI = self._pool(op[1], LO, HI)
        return LO, HI

    def interval(self, lo: Any, hi: Any) -> np.ndarray:
        """Interval lower bounds on the margins, ``(B, n_classes)`` (``+inf`` at the target)."""
        if not isinstance(self.ops[-1], _Affine):  # pragma: no cover - lower_network ends with the logits' layer
            raise ValueError("the network must end with an affine layer")
        LO, HI = self._as_batch(lo, hi)
        with torch.no_grad():
            return self._full(self._margin_box(self.ops[-1], *self._propagate(self.ops[:-1], LO, HI)))

    def _margin_box(self, op: _Affine, LO: torch.Tensor, HI: torch.Tensor) -> torch.Tensor:
        """Interval bounds of ``C (W a + b)`` over the box of ``a`` (the last layer folded into the margin)."""
        W = op.W if op.W is not None else torch.from_numpy(np.asarray(self.net.ops[-1].W.toarray()))
        D, d = self.C @ W, self.C @ op.b
        mid, rad = 0.5 * (LO + HI), 0.5 * (HI - LO)
        c, r = mid @ D.T + d, rad @ D.abs().T
        return c - r - _ROUND * (1.0 + mid.abs() @ D.abs().T + d.abs() + r)

    # ------------------------------------------------------------ CROWN
    def crown(self, lo: Any, hi: Any) -> np.ndarray:
        """CROWN lower bounds on the margins, ``(B, n_classes)`` (``+inf`` at the target); never below
        the interval bounds (the better of the two is returned per entry)."""
        LO, HI = self._as_batch(lo, hi)
        with torch.no_grad():
            return self._crown(LO, HI)[0]

    def crown_and_layers(self, lo: Any, hi: Any) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """For one box: the CROWN margin bounds ``(n_classes,)`` and the bounds on the input of every ReLU, in
        order, from the same pass (networks without max-pooling)."""
        if self.linear_from:
            raise ValueError("layer bounds need a network without max-pooling")
        LO, HI = self._as_batch(lo, hi)
        with torch.no_grad():
            margins, pre = self._crown(LO, HI)
        return margins[0], [(pre[k][0][0].numpy(), pre[k][1][0].numpy()) for k in sorted(pre)]

    def _crown(self, LO: torch.Tensor, HI: torch.Tensor) -> tuple[np.ndarray, dict[int, Any]]:
        """The margin bounds ``(B, n_classes)`` and the ReLU input bounds by index in the ops after the last
        pooling layer."""
        # interval bounds up to where the linear relaxation starts
        LO, HI = self._propagate(self.ops[: self.linear_from], LO, HI)
        tail = self.ops[self.linear_from :]
        box_lo, box_hi = LO, HI
        pre: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # index in tail of a relu -> its input bounds
        for k, op in enumerate(tail):
            if op != "relu":
                continue
            if k == 0:  # a ReLU right where the relaxation starts: its input is the box
                pre[k] = (LO, HI)
                continue
            if k == 1 and isinstance(tail[0], _Affine):
                pre[k] = tail[0].box(LO, HI)  # one affine layer from the box: its interval bounds are exact
                continue
            n = self._width(tail, k)
            eye = torch.eye(n, dtype=torch.float64).expand(LO.shape[0], n, n)
            Lam = torch.cat([eye, -eye], dim=1)  # lower bounds of z and of -z in one pass
            b = self._back(tail, k, Lam, pre, box_lo, box_hi)
            low, upp = b[:, :n], -b[:, n:]
            pre[k] = (low, torch.maximum(upp, low))
        Lam = self.C.expand(LO.shape[0], *self.C.shape).clone()
        out = self._back(tail, len(tail), Lam, pre, box_lo, box_hi)
        ib = self._margin_box(tail[-1], *self._propagate(tail[:-1], LO, HI))
        return self._full(torch.maximum(out, ib)), pre

    @staticmethod
    def _width(tail: list[Any], k: int) -> int:
        for op in reversed(tail[:k]):
            if isinstance(op, _Affine):
                return op.n_out
        raise ValueError("a ReLU before any affine layer")  # pragma: no cover

    @staticmethod
    def _back(
        tail: list[Any],
        k: int,
        Lam: torch.Tensor,
        pre: dict[int, tuple[torch.Tensor, torch.Tensor]],
        box_lo: torch.Tensor,
        box_hi: torch.Tensor,
    ) -> torch.Tensor:
        """Lower bound of ``Lam @ (the value entering op k)`` over the box, by backward substitution."""
        c = torch.zeros(Lam.shape[:2], dtype=torch.float64)
        mag = torch.zeros_like(c)
        for j in range(k - 1, -1, -1):
            op = tail[j]
            if isinstance(op, _Affine):
                cb = Lam @ op.b
                c = c + cb
                mag = mag + Lam.abs() @ op.b.abs()
                Lam = op.back(Lam)
            else:  # relu with input bounds pre[j]
                low, upp = pre[j]
                act = low >= 0
                unst = (low < 0) & (upp > 0)
                den = torch.where(unst, upp - low, torch.ones_like(low))
                a_u = torch.where(act, 1.0, torch.where(unst, upp / den, 0.0))
                b_u = torch.where(unst, -upp * low / den, 0.0)
                a_l = torch.where(act, 1.0, torch.where(unst, (upp > -low).to(low.dtype), 0.0))
                pos, neg = Lam.clamp(min=0), Lam.clamp(max=0)
                c = c + (neg * b_u[:, None, :]).sum(-1)
                mag = mag + (neg.abs() * b_u[:, None, :]).sum(-1)
                Lam = pos * a_l[:, None, :] + neg * a_u[:, None, :]
        pos, neg = Lam.clamp(min=0), Lam.clamp(max=0)
        lo_t = (pos * box_lo[:, None, :]).sum(-1) + (neg * box_hi[:, None, :]).sum(-1)
        mag = mag + (pos * box_lo[:, None, :].abs()).sum(-1) + (neg.abs() * box_hi[:, None, :].abs()).sum(-1)
        val = lo_t + c
        return val - _ROUND * (1.0 + mag + c.abs())

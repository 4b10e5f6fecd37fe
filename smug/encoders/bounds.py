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
  deep networks.  For a network with max-pooling it returns the bounds of
  :class:`SparseCrown`, one box at a time.

:class:`SparseCrown` is the same relaxation with sparse backward passes, so it
goes through convolutions and max-pooling (see its docstring).

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

__all__ = ["BatchBounds", "SparseCrown"]

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
        pooled = any(isinstance(o, tuple) for o in self.ops)
        self._sparse = SparseCrown(net, target) if pooled else None  # the dense passes below: no pooling

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
        if self._sparse is not None:  # through the convolutions and max-pooling, sparse (see SparseCrown)
            return self._sparse.margins(lo, hi)
        LO, HI = self._as_batch(lo, hi)
        with torch.no_grad():
            return self._crown(LO, HI)[0]

    def crown_and_layers(self, lo: Any, hi: Any) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """For one box: the CROWN margin bounds ``(n_classes,)`` and the bounds on the input of every ReLU, in
        order, from the same pass (networks without max-pooling)."""
        if self._sparse is not None:
            raise ValueError("layer bounds need a network without max-pooling")
        LO, HI = self._as_batch(lo, hi)
        with torch.no_grad():
            margins, pre = self._crown(LO, HI)
        return margins[0], [(pre[k][0][0].numpy(), pre[k][1][0].numpy()) for k in sorted(pre)]

    def _crown(self, LO: torch.Tensor, HI: torch.Tensor) -> tuple[np.ndarray, dict[int, Any]]:
        """The margin bounds ``(B, n_classes)`` and the ReLU input bounds by op index (no pooling)."""
        tail = self.ops
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
            if isinstance(tail[k - 1], _Affine) and (k - 2) in pre:  # never looser than the interval bounds from
                plo, phi = pre[k - 2]  # the layer before (a ReLU's output is >= 0, which CROWN may not see)
                ilo, ihi = tail[k - 1].box(plo.clamp(min=0), phi.clamp(min=0))
                low, upp = torch.maximum(low, ilo), torch.minimum(upp, ihi)
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


class SparseCrown:
    """CROWN through convolutions and max-pooling, one box at a time, with sparse back-substitution.

    :class:`BatchBounds` holds every backward pass dense, which a CNN's
    intermediate layers make too large (a backward pass from each of a
    convolution's thousands of neurons).  Here each pass is a sparse matrix:
    a convolution's rows keep their receptive fields, a ReLU scales its
    columns, and max-pooling keeps one input per window (the lower relaxation
    ``max_k x_k >= x_{k*}``, ``k*`` the input with the largest lower bound;
    the upper one is ``max_k x_k <= max_k u_k``, or ``x_{k*}`` itself when its
    lower bound reaches every other input's upper bound), so rows stay as
    sparse as their receptive fields.  Every layer that feeds a ReLU or a
    pooling layer gets its bounds by such a pass from the layers before it
    (for the neurons its interval bounds leave unstable), so the bounds stay
    tight through the whole network.

    Soundness against float rounding: beside each coefficient matrix a matrix of
    magnitudes is carried (``|W|`` products, never below the coefficients'
    magnitudes, entry by entry), and every bound moves outwards by ``1e-9 * (1 +
    the magnitudes of every term it sums)``, as in :class:`BatchBounds`.

    Args:
        net: the lowered network (:func:`smug.encoders.network.lower_network`), ending with an affine layer.
        target: the class whose margin is bounded.
    """

    def __init__(self, net: LoweredNetwork, target: int) -> None:
        self.net, self.target = net, int(target)
        self.ops: list[Any] = []
        for op in net.ops:
            if isinstance(op, AffineOp):
                W = sp.csr_matrix(op.W, dtype=np.float64)
                self.ops.append(("affine", W, np.asarray(op.b, dtype=np.float64), abs(W)))
            elif isinstance(op, ReluOp):
                self.ops.append(("relu",))
            elif isinstance(op, MaxPoolOp):
                self.ops.append(("pool", np.asarray(op.windows, dtype=np.int64)))
            else:  # pragma: no cover - lower_network produces only these
                raise TypeError(f"unknown lowered operation {type(op).__name__}")
        if self.ops[-1][0] != "affine":  # pragma: no cover - lower_network ends with the logits' layer
            raise ValueError("the network must end with an affine layer")
        n = net.n_outputs
        C = -np.eye(n)
        C[:, self.target] += 1.0
        C = np.delete(C, self.target, axis=0)
        _, W, b, _ = self.ops[-1]
        self.D = sp.csr_matrix(C @ W.toarray())  # the margins as a function of the last layer's input
        self.d = C @ b
        self.others = np.delete(np.arange(n), self.target)
        self._cache: dict[bytes, tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]] = {}
        # per op: the largest row sum of |W| and the largest |b| (affine), whether windows share inputs (pooling)
        self._w1max, self._bmax, self._overlap = {}, {}, {}
        for j, op in enumerate(self.ops):
            if op[0] == "affine":
                self._w1max[j] = float(np.asarray(op[3].sum(axis=1)).max(initial=0.0))
                self._bmax[j] = float(np.abs(op[2]).max(initial=0.0))
            elif op[0] == "pool":
                used = op[1][op[1] >= 0]
                self._overlap[j] = bool(np.unique(used).size < used.size)

    # ---------------------------------------------------------------- public
    def bounds(self, lo: Any, hi: Any) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """The margin lower bounds ``(n_classes,)`` (``+inf`` at the target) over the box and the bounds on the
        input of every ReLU and max-pooling layer, in order (sound, moved outwards)."""
        lo = np.asarray(lo, dtype=np.float64).ravel()
        hi = np.asarray(hi, dtype=np.float64).ravel()
        if lo.shape != hi.shape or lo.size != self.net.n_inputs:
            raise ValueError(f"lo and hi must both hold {self.net.n_inputs} values, got {lo.size} and {hi.size}")
        key = lo.tobytes() + hi.tobytes()
        if key in self._cache:  # the same box again (a traversal bounds a box, then checks it)
            return self._cache[key]
        out = self._bounds(lo, hi)
        self._cache[key] = out
        if len(self._cache) > 64:
            self._cache.pop(next(iter(self._cache)))
        return out

    def _bounds(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        pre: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # the box of the value entering each op
        lo_v, hi_v = lo, hi
        nonlinear = False
        last = len(self.ops) - 1
        for i, op in enumerate(self.ops[:last]):
            pre[i] = (lo_v, hi_v)
            if op[0] == "affine":
                _, W, b, absW = op
                nl, nu = self._box(W, b, absW, lo_v, hi_v)
                if nonlinear and self.ops[i + 1][0] in ("relu", "pool"):
                    rows = np.flatnonzero((nl < 0) & (nu > 0)) if self.ops[i + 1][0] == "relu" else np.arange(nl.size)
                    if rows.size:
                        Wr = W[rows]
                        val = self._back(i, sp.vstack([Wr, -Wr]).tocsr(), np.concatenate([b[rows], -b[rows]]),
                                         pre, lo, hi)  # fmt: skip
                        r = rows.size
                        nl[rows] = np.maximum(nl[rows], val[:r])
                        nu[rows] = np.maximum(np.minimum(nu[rows], -val[r:]), nl[rows])
                lo_v, hi_v = nl, nu
            elif op[0] == "relu":
                lo_v, hi_v = np.maximum(lo_v, 0.0), np.maximum(hi_v, 0.0)
                nonlinear = True
            else:
                w = op[1]
                lo_v = np.where(w >= 0, lo_v[np.maximum(w, 0)], -np.inf).max(axis=1)
                hi_v = np.where(w >= 0, hi_v[np.maximum(w, 0)], -np.inf).max(axis=1)
                nonlinear = True
        Dabs = abs(self.D)
        ib, _ = self._box(self.D, self.d, Dabs, lo_v, hi_v)
        val = self._back(last, self.D, self.d, pre, lo, hi) if nonlinear else ib
        res = np.full(self.net.n_outputs, np.inf)
        res[self.others] = np.maximum(val, ib)
        return res, [pre[k] for k in sorted(pre) if self.ops[k][0] != "affine"]

    def margins(self, LO: Any, HI: Any) -> np.ndarray:
        """:meth:`bounds`' margin lower bounds for a batch of boxes, ``(B, n_classes)``."""
        LO, HI = np.atleast_2d(np.asarray(LO, dtype=np.float64)), np.atleast_2d(np.asarray(HI, dtype=np.float64))
        return np.stack([self.bounds(a, b)[0] for a, b in zip(LO, HI, strict=True)])

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _box(W: Any, b: np.ndarray, absW: Any, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mid, rad = 0.5 * (lo + hi), 0.5 * (hi - lo)
        c, r = W @ mid + b, absW @ rad
        slack = _ROUND * (1.0 + absW @ np.abs(mid) + np.abs(b) + r)
        return c - r - slack, c + r + slack

    def _back(
        self, k: int, Lam: Any, c: np.ndarray, pre: dict[int, tuple[np.ndarray, np.ndarray]],
        lo: np.ndarray, hi: np.ndarray,
    ) -> np.ndarray:  # fmt: skip
        """Lower bound over the box of ``Lam @ v + c``, ``v`` the value entering op ``k``, by back-substitution.

        ``asum`` bounds, per row, the sum of the magnitudes of every coefficient's terms so far (a product of
        the layers' largest row sums of ``|W|``: ReLU slopes are at most 1, pooling moves coefficients), and
        ``mag`` the magnitudes summed into the constant; both set the outward rounding.
        """
        Lam = sp.csr_matrix(Lam, copy=True)  # (eliminate_zeros below works in place)
        c = np.array(c, dtype=np.float64)
        mag = np.abs(c)
        asum = np.asarray(abs(Lam).sum(axis=1)).ravel()
        m = Lam.shape[0]
        best = np.full(m, -np.inf)
        for j in range(k - 1, -1, -1):
            op = self.ops[j]
            if j < k - 1 and op[0] != "affine":  # stop here: the box of the value leaving op j (entering j + 1)
                best = np.maximum(best, self._concretise(Lam, asum, c, mag, *pre[j + 1]))
            if op[0] == "affine":
                _, W, b, _ = op
                c = c + Lam @ b
                mag = mag + asum * self._bmax[j]
                asum = asum * self._w1max[j]
                Lam = (Lam @ W).tocsr()
            elif op[0] == "relu":
                low, upp = pre[j]
                act = low >= 0
                unst = (low < 0) & (upp > 0)
                den = np.where(unst, upp - low, 1.0)
                a_u = np.where(act, 1.0, np.where(unst, upp / den, 0.0))
                b_u = np.where(unst, -upp * low / den, 0.0)
                a_l = np.where(act, 1.0, np.where(unst, (upp > -low).astype(np.float64), 0.0))
                rows = np.repeat(np.arange(m), np.diff(Lam.indptr))
                col, d = Lam.indices, Lam.data
                neg = d < 0
                c = c + np.bincount(rows[neg], weights=d[neg] * b_u[col[neg]], minlength=m)
                mag = mag + asum * (b_u.max() if b_u.size else 0.0)
                Lam = sp.csr_matrix(
                    (d * np.where(neg, a_u[col], a_l[col]), col.copy(), Lam.indptr.copy()), shape=Lam.shape
                )
                Lam.eliminate_zeros()
            else:  # max-pooling, windows op[1] over an input with bounds pre[j]
                low, upp = pre[j]
                w = op[1]
                valid = w >= 0
                wi = np.maximum(w, 0)
                lw = np.where(valid, low[wi], -np.inf)
                uw = np.where(valid, upp[wi], -np.inf)
                ar = np.arange(w.shape[0])
                kl = lw.argmax(axis=1)
                pick = w[ar, kl]
                lmax = lw[ar, kl]
                umax = uw.max(axis=1)
                uo = uw.copy()
                uo[ar, kl] = -np.inf
                dom = lmax >= uo.max(axis=1)  # the picked input is the maximum everywhere in the box
                rows = np.repeat(np.arange(m), np.diff(Lam.indptr))
                col, d = Lam.indices, Lam.data
                keep = (d > 0) | dom[col]
                drop = ~keep
                c = c + np.bincount(rows[drop], weights=d[drop] * umax[col[drop]], minlength=m)
                mag = mag + asum * np.abs(umax).max()
                indptr = np.concatenate([[0], np.cumsum(np.bincount(rows[keep], minlength=m))])
                Lam = sp.csr_matrix((d[keep], pick[col[keep]], indptr), shape=(m, low.size))
                if self._overlap[j]:  # windows share inputs: one coefficient per input again
                    Lam.sum_duplicates()
        return np.maximum(best, self._concretise(Lam, asum, c, mag, lo, hi))

    @staticmethod
    def _concretise(
        Lam: Any, asum: np.ndarray, c: np.ndarray, mag: np.ndarray, lo: np.ndarray, hi: np.ndarray
    ) -> np.ndarray:
        """Lower bound of ``Lam @ v + c`` over the box ``lo <= v <= hi``, moved outwards."""
        d = Lam.data
        pos = sp.csr_matrix((np.maximum(d, 0.0), Lam.indices, Lam.indptr), shape=Lam.shape)
        neg = sp.csr_matrix((np.minimum(d, 0.0), Lam.indices, Lam.indptr), shape=Lam.shape)
        val = pos @ lo + neg @ hi + c
        vmax = max(float(np.abs(lo).max(initial=0.0)), float(np.abs(hi).max(initial=0.0)))
        return val - _ROUND * (1.0 + mag + asum * vmax)

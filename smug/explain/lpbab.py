"""An exact robustness check by branch and bound over ReLU phases with *safe* LP bounds.

The question: is ``logit_t(x) - logit_j(x) > delta`` for every ``x`` in the box
``[lo, hi]`` and every class ``j != t``?  A MILP solver answers it within its
float tolerances, and certifying its "infeasible" exactly (z3 on hundreds of
real inputs) can take minutes.  This module answers it exactly and fast on the
small ReLU networks of robust explanations:

- every node is the LP relaxation of the network on the box (the triangle
  relaxation of each unstable ReLU, with CROWN pre-activation bounds from
  :class:`smug.encoders.bounds.BatchBounds`, and the phase splits of the node),
  minimising one class's margin, solved by GLOP (OR-Tools) in one model per
  box, each node's splits applied as bound changes and re-solved warm;
- the LP's optimum is not trusted: from its dual values a **safe lower bound**
  is computed (Neumaier and Shcherbina, *Safe bounds in linear and mixed-integer
  programming*, Math. Programming 2004): for *any* duals ``y`` (``y <= 0`` on
  the ``<=`` rows), ``c.v >= y.b + sum_i min(r_i l_i, r_i u_i)`` with
  ``r = c - A^T y``, evaluated in float64 with a rigorous bound on its rounding
  error.  A node is pruned only when that bound is above ``delta``; an
  infeasible node is pruned only when a safe bound proves its split constraints
  cannot all hold;
- the LP's point is replayed through the network in float64; a margin below
  ``delta`` is a real counterexample;
- otherwise the node is split on the unstable ReLU with the largest relaxation
  gap at the LP point.

The relaxation rows with float-computed coefficients are widened outwards, so
every true network point satisfies every node LP of its region.  A check that
runs out of nodes or time says ``unknown``, never ``valid``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..encoders.network import AffineOp, LoweredNetwork, ReluOp

__all__ = ["LPBranchAndBound", "BabResult"]

_U = 2.0**-53  # unit round-off of float64


@dataclass
class BabResult:
    """The answer of :meth:`LPBranchAndBound.check`.

    Attributes:
        verdict: ``"valid"`` (proven robust), ``"invalid"`` (``witness`` is a counterexample) or ``"unknown"``.
        witness: a flat input in the box whose margin is at most ``delta`` (``"invalid"``).
        nodes: LPs solved.
        classes: classes that needed branch and bound (the others were proven at the root or not needed).
        reason: why the answer is ``"unknown"``.
    """

    verdict: str
    witness: np.ndarray | None = None
    nodes: int = 0
    classes: list[int] = field(default_factory=list)
    reason: str = ""


def _supported(net: LoweredNetwork) -> bool:
    ops = net.ops
    return (
        bool(ops)
        and isinstance(ops[0], AffineOp)
        and isinstance(ops[-1], AffineOp)
        and all(isinstance(o, (AffineOp, ReluOp)) for o in ops)
        and all(isinstance(a, AffineOp) != isinstance(b, AffineOp) for a, b in zip(ops, ops[1:]))
    )


class _NodeLP:
    """The LP of one box in one GLOP model; a node's phase splits are bound changes, re-solved warm.

    Rows: the network's equalities, the triangle rows, and per unstable ReLU a row ``a - z`` that is free
    until an active split pins it to 0.  An active split also raises ``z``'s lower bound to 0; an inactive
    one sets ``a``'s upper bound and ``z``'s upper bound to 0.
    """

    def __init__(self, bab: LPBranchAndBound, lo: np.ndarray, hi: np.ndarray, pre: list[Any]) -> None:
        from ortools.linear_solver import pywraplp

        A_eq, b_eq, A_ub, b_ub, lb, ub, offs, prev = bab._lp(lo, hi, pre, {})
        self.offs, self.prev, self.pre = offs, prev, pre
        self.unstable = [(k, int(i)) for k, (lw, up) in enumerate(pre) for i in np.flatnonzero((lw < 0) & (up > 0))]
        nv = lb.size
        rows, cols, vals = [], [], []
        self.extra_row: dict[tuple[int, int], int] = {}
        for r, (k, i) in enumerate(self.unstable):
            z, a = offs[k] + i, offs[k] + len(pre[k][0]) + i
            rows += [r, r]
            cols += [a, z]
            vals += [1.0, -1.0]
            self.extra_row[(k, i)] = A_eq.shape[0] + A_ub.shape[0] + r
        extra = sp.csr_matrix((vals, (rows, cols)), shape=(len(self.unstable), nv))
        # the triangle's upper row of the t-th unstable ReLU (rows come in pairs: lower, upper), and its intercept
        self.upper_row = {u: A_eq.shape[0] + 2 * t + 1 for t, u in enumerate(self.unstable)}
        self.intercept = {
            (k, i): float(-pre[k][1][i] * pre[k][0][i] / (pre[k][1][i] - pre[k][0][i])) for k, i in self.unstable
        }
        self.A = sp.vstack([A_eq, A_ub, extra]).tocsr()
        m = len(self.unstable)
        self.rlo0 = np.concatenate([b_eq, np.full(A_ub.shape[0], -np.inf), np.full(m, -np.inf)])
        self.rhi0 = np.concatenate([b_eq, b_ub, np.full(m, np.inf)])
        self.lb0, self.ub0 = lb, ub
        self.rlo, self.rhi, self.lb, self.ub = self.rlo0.copy(), self.rhi0.copy(), lb.copy(), ub.copy()
        self.s = pywraplp.Solver.CreateSolver("GLOP")
        inf = self.s.infinity()
        self.vars = [self.s.NumVar(float(a), float(b), "") for a, b in zip(lb, ub)]
        self.cons = []
        A = self.A
        for r in range(A.shape[0]):
            lo_r = float(self.rlo[r]) if np.isfinite(self.rlo[r]) else -inf
            hi_r = float(self.rhi[r]) if np.isfinite(self.rhi[r]) else inf
            ct = self.s.Constraint(lo_r, hi_r)
            for j, v in zip(A.indices[A.indptr[r] : A.indptr[r + 1]], A.data[A.indptr[r] : A.indptr[r + 1]]):
                ct.SetCoefficient(self.vars[j], float(v))
            self.cons.append(ct)
        self.touched_vars: set[int] = set()
        self.touched_rows: set[int] = set()

    def objective(self, c: np.ndarray) -> None:
        obj = self.s.Objective()
        obj.Clear()
        for j in np.flatnonzero(c):
            obj.SetCoefficient(self.vars[int(j)], float(c[j]))
        obj.SetMinimization()

    def apply(self, split: dict[tuple[int, int], int]) -> None:
        """Set the bounds of the node ``split`` (restoring what the previous node changed)."""
        inf = self.s.infinity()
        for j in self.touched_vars:
            self.lb[j], self.ub[j] = self.lb0[j], self.ub0[j]
        for r in self.touched_rows:
            self.rlo[r], self.rhi[r] = self.rlo0[r], self.rhi0[r]
        vs, rs = set(self.touched_vars), set(self.touched_rows)
        self.touched_vars, self.touched_rows = set(), set()
        for (k, i), ph in split.items():
            z, a = self.offs[k] + i, self.offs[k] + len(self.pre[k][0]) + i
            if ph == 1:
                r = self.extra_row[(k, i)]
                self.rlo[r] = self.rhi[r] = 0.0
                self.lb[z] = max(self.lb[z], 0.0)
                self.lb[a] = max(self.lb[a], 0.0)
                self.touched_rows.add(r)
                self.touched_vars.update((z, a))
            else:
                self.ub[z] = min(self.ub[z], 0.0)
                self.lb[a] = self.ub[a] = 0.0
                self.touched_vars.update((z, a))
        for j in vs | self.touched_vars:
            self.vars[j].SetBounds(float(self.lb[j]), float(max(self.ub[j], self.lb[j])))
        for r in rs | self.touched_rows:
            lo_r = float(self.rlo[r]) if np.isfinite(self.rlo[r]) else -inf
            hi_r = float(self.rhi[r]) if np.isfinite(self.rhi[r]) else inf
            self.cons[r].SetBounds(lo_r, hi_r)

    def solve(self) -> tuple[str, np.ndarray | None, np.ndarray | None]:
        from ortools.linear_solver import pywraplp

        st = self.s.Solve()
        if st == pywraplp.Solver.INFEASIBLE:
            return "infeasible", None, None
        if st != pywraplp.Solver.OPTIMAL:
            return "error", None, None
        v = np.array([x.solution_value() for x in self.vars])
        y = np.array([ct.dual_value() for ct in self.cons])
        return "optimal", v, y

    def safe_bound(self, c: np.ndarray, y: np.ndarray) -> float:
        """A rigorous lower bound on the node LP's minimum from its row duals ``y``."""
        return _safe_lower_bound(c, self.A, self.rlo, self.rhi, self.lb, np.maximum(self.ub, self.lb), y)


def _safe_lower_bound(
    c: np.ndarray, A: sp.csr_matrix, rlo: np.ndarray, rhi: np.ndarray, lb: np.ndarray, ub: np.ndarray, y: np.ndarray
) -> float:
    """A rigorous lower bound on ``min c.v`` s.t. ``rlo <= A v <= rhi``, ``lb <= v <= ub`` from *any* row duals
    ``y`` (Neumaier and Shcherbina; see the module docstring), with a bound on its float rounding.

    A dual whose sign would need an infinite row side is set to 0 first, so no sign convention of the LP
    solver can make the bound unsound (a wrong one only makes it weak)."""
    y = np.where((y > 0) & ~np.isfinite(rlo), 0.0, y)
    y = np.where((y < 0) & ~np.isfinite(rhi), 0.0, y)
    lo_r = np.where(np.isfinite(rlo), rlo, 0.0)
    hi_r = np.where(np.isfinite(rhi), rhi, 0.0)
    dual_terms = np.minimum(y * lo_r, y * hi_r)
    r = c - A.T @ y
    n = A.shape[0] + 4
    e = 2.0 * (n + 2) * _U * (np.abs(c) + abs(A).T @ np.abs(y))
    terms = np.minimum(r * lb, r * ub) - e * np.maximum(np.abs(lb), np.abs(ub))
    total = terms.sum() + dual_terms.sum()
    m = terms.size + dual_terms.size + 2
    err = 2.0 * (m + 2) * _U * (np.abs(terms).sum() + np.abs(dual_terms).sum())
    return float(total - err)


class LPBranchAndBound:
    """Exact robustness checks of one network and target (see the module docstring).

    Args:
        net: a lowered network of alternating affine and ReLU layers (no max-pooling).
        target: the class that must win.
        margins: ``margins(X) -> (B,)`` the target's margin over the other classes for flat inputs (the float64
            replay of a candidate counterexample).
    """

    def __init__(self, net: LoweredNetwork, target: int, margins: Any) -> None:
        if not _supported(net):
            raise ValueError("LP branch and bound takes alternating affine / ReLU layers ending in an affine layer")
        from ..encoders.bounds import BatchBounds

        self.net, self.target, self.margins = net, int(target), margins
        self.bounds = BatchBounds(net, target)
        self.affine = [op for op in net.ops if isinstance(op, AffineOp)]

    # ------------------------------------------------------------ one node
    def _lp(
        self,
        lo: np.ndarray,
        hi: np.ndarray,
        pre: list[tuple[np.ndarray, np.ndarray]],
        split: dict[tuple[int, int], int],
        relax: bool = False,
    ) -> tuple[Any, ...]:
        """The node LP's data: (A_eq, b_eq, A_ub, b_ub, lb, ub, layout) with variables
        ``[x, z_1, a_1, ..., z_L-1, a_L-1]`` (``z``: a ReLU's input, ``a``: its output).

        ``relax``: a split's sign (``z >= 0`` / ``z <= 0``) is left out of the variable bounds (the caller adds
        it as a row relaxed by a slack)."""
        n0 = lo.size
        sizes = [len(p[0]) for p in pre]
        offs = [n0]
        for n in sizes:
            offs.append(offs[-1] + 2 * n)
        nv = offs[-1]
        lbv = [lo]
        ubv = [hi]
        eq_rows, eq_rhs, ub_rows, ub_rhs = [], [], [], []
        prev = (0, n0)  # the variables the next affine layer reads
        for k, (low, upp) in enumerate(pre):
            W = sp.csr_matrix(self.affine[k].W)
            b = np.asarray(self.affine[k].b, dtype=np.float64)
            n = sizes[k]
            z0, a0 = offs[k], offs[k] + n
            # z = W prev + b
            blk = sp.hstack([sp.csr_matrix((n, prev[0])), -W, sp.csr_matrix((n, nv - prev[0] - W.shape[1]))]).tocsr()
            blk = blk + sp.csr_matrix((np.ones(n), (np.arange(n), z0 + np.arange(n))), shape=(n, nv))
            eq_rows.append(blk)
            eq_rhs.append(b)
            zl, zu = low.copy(), upp.copy()
            al, au = np.maximum(low, 0.0), np.maximum(upp, 0.0)
            rows, cols, vals, rhs_e, rows_u, cols_u, vals_u, rhs_u = [], [], [], [], [], [], [], []
            ne = nu = 0
            for i in range(n):
                ph = split.get((k, i))
                if ph is None and low[i] >= 0:
                    ph = 1
                if ph is None and upp[i] <= 0:
                    ph = 0
                relaxed = relax and (k, i) in split
                if ph == 1:  # a = z, z >= 0
                    rows += [ne, ne]
                    cols += [a0 + i, z0 + i]
                    vals += [1.0, -1.0]
                    rhs_e.append(0.0)
                    ne += 1
                    if not relaxed:
                        zl[i] = max(zl[i], 0.0)
                    al[i], au[i] = zl[i], max(zu[i], zl[i])
                elif ph == 0:  # a = 0, z <= 0
                    al[i] = au[i] = 0.0
                    if not relaxed:
                        zu[i] = min(zu[i], 0.0)
                else:  # triangle: a >= z, a <= s (z - l), s widened, rhs rounded up
                    rows_u += [nu, nu]
                    cols_u += [z0 + i, a0 + i]
                    vals_u += [1.0, -1.0]
                    rhs_u.append(0.0)
                    nu += 1
                    s = upp[i] / (upp[i] - low[i]) * (1.0 + 8 * _U)
                    c = -s * low[i]
                    rows_u += [nu, nu]
                    cols_u += [a0 + i, z0 + i]
                    vals_u += [1.0, -s]
                    rhs_u.append(c + 8 * _U * abs(c) + 1e-300)
                    nu += 1
            if ne:
                eq_rows.append(sp.csr_matrix((vals, (rows, cols)), shape=(ne, nv)))
                eq_rhs.append(np.array(rhs_e))
            if nu:
                ub_rows.append(sp.csr_matrix((vals_u, (rows_u, cols_u)), shape=(nu, nv)))
                ub_rhs.append(np.array(rhs_u))
            lbv += [zl, al]
            ubv += [np.maximum(zu, zl), np.maximum(au, al)]
            prev = (a0, n)
        A_eq = sp.vstack(eq_rows).tocsr()
        A_ub = sp.vstack(ub_rows).tocsr() if ub_rows else sp.csr_matrix((0, nv))
        b_ub = np.concatenate(ub_rhs) if ub_rhs else np.zeros(0)
        return A_eq, np.concatenate(eq_rhs), A_ub, b_ub, np.concatenate(lbv), np.concatenate(ubv), offs, prev

    def _objective(self, j: int, nv: int, prev: tuple[int, int]) -> tuple[np.ndarray, float]:
        last = self.affine[-1]
        W = sp.csr_matrix(last.W)
        row = (W[self.target] - W[j]).toarray().ravel()
        c = np.zeros(nv)
        c[prev[0] : prev[0] + row.size] = row
        return c, float(last.b[self.target] - last.b[j])

    # ------------------------------------------------------------ the check
    def check(
        self,
        lo: np.ndarray,
        hi: np.ndarray,
        delta: float,
        *,
        time_limit: float | None = None,
        max_nodes: int = 4000,
        confirm: float = 1e-9,
    ) -> BabResult:
        """Is the target's margin above ``delta`` on the whole box ``[lo, hi]`` (flat arrays)?"""
        t0 = time.perf_counter()
        lo = np.asarray(lo, dtype=np.float64).ravel()
        hi = np.asarray(hi, dtype=np.float64).ravel()
        root, pre = self.bounds.crown_and_layers(lo, hi)
        out = BabResult("valid")
        node_lp: _NodeLP | None = None
        for j in np.argsort(root):
            j = int(j)
            if j == self.target or root[j] > delta:
                continue
            out.classes.append(j)
            if node_lp is None:
                node_lp = _NodeLP(self, lo, hi, pre)
            c, c0 = self._objective(j, node_lp.lb.size, node_lp.prev)
            node_lp.objective(c)
            stack: list[dict[tuple[int, int], int]] = [{}]
            while stack:
                if out.nodes >= max_nodes or (time_limit is not None and time.perf_counter() - t0 > time_limit):
                    out.verdict, out.reason = "unknown", "node or time limit"
                    return out
                split = stack.pop()
                node_lp.apply(split)
                out.nodes += 1
                status, v, y = node_lp.solve()
                if status == "infeasible":  # prune only with a proof that the splits cannot all hold
                    if not self._infeasible(split, lo, hi, pre):
                        out.verdict, out.reason = "unknown", "an infeasible node without a safe proof"
                        return out
                    continue
                if status != "optimal":
                    out.verdict, out.reason = "unknown", "the node LP failed"
                    return out
                safe = node_lp.safe_bound(c, y) + c0 - 4 * _U * abs(c0)
                if safe > delta:
                    continue
                v = np.clip(v, node_lp.lb, np.maximum(node_lp.ub, node_lp.lb))
                x = np.clip(v[: lo.size], lo, hi)
                m = float(self.margins(x[None])[0])
                if m <= delta - confirm:
                    out.verdict, out.witness = "invalid", x
                    return out
                # split the ReLU whose triangle costs the bound most: |dual of its upper row| x its intercept
                # (BaBSR's score); the largest relaxation gap at the LP point breaks ties at zero
                best, score, gap_best, gap = None, 0.0, None, 0.0
                for u in node_lp.unstable:
                    if u in split:
                        continue
                    sc = abs(y[node_lp.upper_row[u]]) * node_lp.intercept[u]
                    if sc > score:
                        best, score = u, sc
                    k, i = u
                    n = len(pre[k][0])
                    zv, av = v[node_lp.offs[k] + i], v[node_lp.offs[k] + n + i]
                    g = (av - max(zv, 0.0)) * (pre[k][1][i] - pre[k][0][i])
                    if gap_best is None or g > gap:
                        gap_best, gap = u, g
                if best is None:
                    best = gap_best
                if best is None:  # every ReLU is fixed: the LP is the network here, yet no counterexample replays
                    out.verdict, out.reason = "unknown", f"exact leaf without a replayed counterexample (margin {m})"
                    return out
                stack.append({**split, best: 0})
                stack.append({**split, best: 1})
        return out

    def _infeasible(self, split, lo, hi, pre) -> bool:
        """A safe proof that a node's split constraints cannot all hold: min over the node of ``t`` where each
        split is relaxed by ``t`` has a safe lower bound above 0."""
        from scipy.optimize import linprog

        # the node's LP with each split's sign relaxed by t: min t
        A_eq, b_eq, A_ub, b_ub, lb, ub, offs, prev = self._lp(lo, hi, pre, split, relax=True)
        nv = lb.size
        rows, rhs = [], []
        for (k, i), ph in split.items():
            r = np.zeros(nv + 1)
            zi = offs[k] + i
            # active: z >= -t  ->  -z - t <= 0 ; inactive: z <= t -> z - t <= 0
            r[zi] = -1.0 if ph == 1 else 1.0
            r[nv] = -1.0
            rows.append(r)
            rhs.append(0.0)
        if not rows:
            return False
        A_ub2 = sp.vstack([sp.hstack([A_ub, sp.csr_matrix((A_ub.shape[0], 1))]), sp.csr_matrix(np.array(rows))]).tocsr()
        b_ub2 = np.concatenate([b_ub, rhs])
        A_eq2 = sp.hstack([A_eq, sp.csr_matrix((A_eq.shape[0], 1))]).tocsr()
        big = float(max(np.abs(lb).max(), np.abs(ub).max(), 1.0)) * 4
        lb2, ub2 = np.append(lb, -big), np.append(ub, big)
        c = np.zeros(nv + 1)
        c[nv] = 1.0
        res = linprog(c, A_ub=A_ub2, b_ub=b_ub2, A_eq=A_eq2, b_eq=b_eq, bounds=np.stack([lb2, ub2], axis=1),
                      method="highs")  # fmt: skip
        if res.status != 0:
            return False
        A = sp.vstack([A_eq2, A_ub2]).tocsr()
        rlo = np.concatenate([b_eq, np.full(A_ub2.shape[0], -np.inf)])
        rhi = np.concatenate([b_eq, b_ub2])
        y = np.concatenate([np.asarray(res.eqlin.marginals), np.asarray(res.ineqlin.marginals)])
        safe = _safe_lower_bound(c, A, rlo, rhi, lb2, ub2, y)
        return safe > 0.0

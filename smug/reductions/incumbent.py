"""Incumbents and cuts every backend can use: a greedy feasible start and implied cardinality rows.

* :func:`greedy_incumbent` -- a quick feasible assignment of a pure 0/1 problem,
  exactly verified; :func:`smug.solve` reports it at once (a time-limited solve
  always has it), passes it to backends that take hints, and starts the shared
  search from it.
* :class:`CardinalityCuts` -- for every inequality row over binaries only, the
  cardinality constraint it implies ("at least ``k`` of its positive entries
  are 1", ``k`` found exactly on the exactly scaled integers) as a redundant
  row with unit coefficients: the feasible set does not change (an exact
  reduction), and :func:`cardinality_lower_bound` turns the cuts into a quick
  lower bound on the objective.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import scipy.sparse as sp

from ..ir import EQ, GE, LE, Problem
from ..ir.exact import exact_rhs, frac, rows_hold, scaled_row, trivial_lower_bound
from .base import EXACT, Applied, Reduction

__all__ = ["greedy_incumbent", "CardinalityCuts", "Cut", "cardinality_lower_bound", "cardinality_cuts"]


def _exactly_feasible(problem: Problem, x: np.ndarray) -> bool:
    inbox = bool(np.all((x >= problem.lb) & (x <= problem.ub)))
    return inbox and bool(rows_hold(problem, x).all())


def greedy_incumbent(problem: Problem) -> np.ndarray | None:
    """A quick feasible assignment of a pure 0/1 problem, or ``None``.

    Starts with every free binary (``lb < ub``) at the value that loosens most
    rows (1 when its entries help ``>=`` rows more than they hurt), then, in
    order of decreasing objective gain, flips each free binary to its cheaper
    value where every row keeps a safe float slack.  The result is returned
    only when it satisfies every row exactly (:func:`smug.ir.exact.rows_hold`).
    """
    if problem.n_real or problem.n_relu or problem.n_vars == 0:
        return None
    A = problem.A
    free = problem.lb < problem.ub
    base = problem.lb.astype(np.float64)
    sign = np.where(problem.sense == GE, 1.0, np.where(problem.sense == LE, -1.0, 0.0))
    help_one = (A.T @ sign) >= 0  # per column: weighted help of x_j = 1 to the inequality rows
    x = np.where(free, help_one.astype(np.float64), base)
    if not _exactly_feasible(problem, x):
        x = np.where(free, 1.0, base)
        if not _exactly_feasible(problem, x):
            return None
    rhs = problem.effective_rhs()
    slack = sign * (A @ x - rhs)  # >= 0 on inequality rows
    tol = 1e-9 * (1.0 + np.abs(rhs) + abs(A) @ np.ones(problem.n_vars))
    c = problem.objective
    target = np.where(c > 0, 0.0, 1.0)
    cand = np.flatnonzero(free & (c != 0) & (x != target))
    if (problem.sense == EQ).any() or cand.size == 0:
        return x
    At = A.tocsc()
    order = cand[np.argsort(-np.abs(c[cand]), kind="stable")]
    # among equal gains, try columns whose flip costs the least slack first
    cost = np.zeros(problem.n_vars)
    for j in order.tolist():
        lo, hi = At.indptr[j], At.indptr[j + 1]
        d = (target[j] - x[j]) * At.data[lo:hi] * sign[At.indices[lo:hi]]
        cost[j] = float(np.maximum(-d, 0).sum())
    order = order[np.lexsort((cost[order], -np.abs(c[order])))]
    for j in order.tolist():
        lo, hi = At.indptr[j], At.indptr[j + 1]
        rows = At.indices[lo:hi]
        d = (target[j] - x[j]) * At.data[lo:hi] * sign[rows]
        if np.all(slack[rows] + d >= tol[rows]):
            slack[rows] += d
            x[j] = target[j]
    return x if _exactly_feasible(problem, x) else None


@dataclass(frozen=True)
class Cut:
    """``sum_{j in cols} x_j >= need``, implied by a row over binaries."""

    need: int
    cols: np.ndarray


def cardinality_cuts(problem: Problem) -> list[Cut]:
    """The cardinality constraints the inequality rows over binaries imply (see the module docstring).

    For ``sum a_j x_j >= r`` (a ``<=`` row negated first) with fixed binaries
    moved into ``r`` exactly: entries with ``a_j <= 0`` only lower the sum, so
    at least ``k`` of the positive entries are 1, where ``k`` is the fewest
    largest positive coefficients reaching ``r`` (integer arithmetic on the
    exactly scaled row).  Cuts with ``k <= 1`` are left out (they add little).
    """
    A = problem.A
    fixed_one = problem.is_binary & (problem.lb == 1)
    free = problem.is_binary & (problem.lb < problem.ub)
    cuts: list[Cut] = []
    seen: set[tuple[int, bytes]] = set()
    rows = [i for i in range(problem.n_rows) if problem.sense[i] != EQ]
    rq = dict(zip(rows, exact_rhs(problem, rows)))
    for i in rows:
        lo, hi = A.indptr[i], A.indptr[i + 1]
        cols, vals = A.indices[lo:hi], A.data[lo:hi]
        if not problem.is_binary[cols].all():
            continue
        r = rq[i]
        one = fixed_one[cols]
        if one.any():
            r -= sum((frac(v) for v in vals[one]), Fraction(0))
        keep = free[cols]
        cols, vals = cols[keep], vals[keep]
        if cols.size < 2:
            continue
        if problem.sense[i] == LE:
            vals, r = -vals, -r
        ints, rs = scaled_row(vals, r)
        k_rhs = math.ceil(rs)
        if k_rhs <= 0:
            continue
        pos = sorted(((cf, j) for cf, j in zip(ints, cols.tolist()) if cf > 0), reverse=True)
        total, need = 0, None
        for t, (cf, _) in enumerate(pos):
            if total >= k_rhs:
                need = t
                break
            total += cf
        else:
            need = len(pos) if total >= k_rhs else None
        if need is None or need < 2:
            continue  # an infeasible row is left to the row itself; k <= 1 adds little
        cset = np.array(sorted(j for _, j in pos), dtype=np.int64)
        key = (need, cset.tobytes())
        if key in seen:
            continue
        seen.add(key)
        cuts.append(Cut(need, cset))
    return cuts


def cardinality_lower_bound(problem: Problem, cuts: list[Cut]) -> Fraction:
    """A lower bound on the objective: the box bound, raised by the costliest cut.

    A cut "at least ``k`` of ``cols`` are 1" costs at least the sum of the ``k``
    smallest positive objective coefficients on ``cols`` (negative ones are in the
    box bound already).
    """
    base = trivial_lower_bound(problem)
    extra = Fraction(0)
    c = problem.objective
    for cut in cuts:
        w = sorted(frac(v) for v in np.maximum(c[cut.cols], 0.0).tolist())
        extra = max(extra, sum(w[: cut.need], Fraction(0)))
    return base + extra


class CardinalityCuts(Reduction):
    """The implied cardinality rows as extra (redundant) rows: an exact reduction."""

    name = "cuts"

    def apply(self, problem: Problem) -> Applied:
        """The problem with one extra row per cut; ``data`` holds the cuts."""
        cuts = cardinality_cuts(problem)
        stats = {"cuts": len(cuts)}
        if not cuts:
            return Applied(problem, cuts, EXACT, stats)
        rows = np.concatenate([np.full(c.cols.size, k) for k, c in enumerate(cuts)])
        cols = np.concatenate([c.cols for c in cuts])
        M = sp.csr_matrix((np.ones(cols.size), (rows, cols)), shape=(len(cuts), problem.n_vars))
        names = None
        if problem.row_names is not None:
            names = [f"cut_{k}" for k in range(len(cuts))]
            taken = set(problem.row_names)
            names = [s if s not in taken else f"{s}~{problem.n_rows + k}" for k, s in enumerate(names)]
        reduced = problem.with_rows(M, GE, [float(c.need) for c in cuts], names=names)
        return Applied(reduced, cuts, EXACT, stats)

"""Presolve: exact, sound reductions on the binaries, to a fixed point.

* **fixed variables**: variables with ``lb == ub`` count as constants;
* **empty columns**: a binary in no kept row is fixed to its cheaper value;
* **dominated binaries**: a binary with a positive (negative) objective
  coefficient whose every row entry makes its row easier at 0 (1) is fixed
  there -- every optimum sets it so;
* **forced binaries**: a binary a row cannot do without (by activity bounds) is fixed;
* **redundant rows**: rows that hold for every point in the box are dropped;
* **duplicate and dominated rows**: of rows with the same coefficients (a
  ``<=`` row counts as the ``>=`` row of its negation), only the one with the
  strongest exact right-hand side is kept.

Fixings become bounds (``lb == ub``), not substitutions, so the reduced problem
has the same variables and the exact same numbers: no right-hand side is
rounded.  Activity decisions keep a safety margin of ``1e-9`` of the row's
scale plus a rigorous bound on the float rounding error, so a row is dropped,
or a variable forced, only when that holds in exact arithmetic; closer calls
are left to the solver.  The optimum never changes; nothing is fixed when the
activity bounds show the problem infeasible (the solver proves that).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import EQ, GE, LE, Problem
from ..ir.exact import exact_rhs
from .base import EXACT, Applied, Reduction

__all__ = ["Presolve", "PresolveResult", "presolve"]

_U = 2.0**-52


@dataclass
class PresolveResult:
    """What :func:`presolve` found.

    Attributes:
        fixed: per variable, ``-1`` (free) or the 0/1 value a binary is fixed to.
        keep_rows: per row, whether it must still be stated.
        counts: how many binaries each rule fixed and rows each rule dropped.
        infeasible: the activity bounds show that no point satisfies some row.
    """

    fixed: np.ndarray
    keep_rows: np.ndarray
    counts: dict[str, int]
    infeasible: bool = False


def presolve(problem: Problem) -> PresolveResult:
    """The fixings and row drops of the module docstring (the problem is not changed)."""
    n = problem.n_vars
    fixed = np.full(n, -1, dtype=np.int8)
    bfix = problem.is_binary & (problem.lb == problem.ub)
    fixed[bfix] = problem.lb[bfix].astype(np.int8)
    keep_rows = np.ones(problem.n_rows, dtype=bool)
    counts = {"fixed_empty": 0, "fixed_dominated": 0, "fixed_forced": 0, "rows_redundant": 0, "rows_duplicate": 0}
    res = PresolveResult(fixed, keep_rows, counts)
    if n == 0:
        return res
    A = problem.A
    is_bin = problem.is_binary
    c = problem.objective
    relu_vars = np.zeros(n, dtype=bool)
    relu_vars[problem.relu_in] = True
    relu_vars[problem.relu_out] = True
    rhs = problem.effective_rhs()
    sense = problem.sense
    absA = abs(A)
    pos = A.maximum(0).tocsr()
    neg = A.minimum(0).tocsr()
    nnz = np.diff(A.indptr)
    _drop_duplicate_rows(problem, res)
    for _ in range(100):
        changed = False
        keep = res.keep_rows
        free_bin = is_bin & (res.fixed < 0)
        lo = np.where(res.fixed >= 0, res.fixed, problem.lb).astype(np.float64)
        hi = np.where(res.fixed >= 0, res.fixed, problem.ub).astype(np.float64)
        act_min = pos @ lo + neg @ hi
        act_max = pos @ hi + neg @ lo
        size = absA @ np.maximum(np.abs(lo), np.abs(hi)) + np.abs(rhs) + np.abs(problem.margin)
        # a safety margin far above float rounding, plus a rigorous bound on that rounding
        tol = 1e-9 * (1.0 + size) + (nnz + 4) * _U * size
        always = np.where(sense == GE, act_min >= rhs + tol, np.where(sense == LE, act_max <= rhs - tol, False))
        reach_up = act_max >= rhs - tol
        reach_down = act_min <= rhs + tol
        reachable = np.where(sense == GE, reach_up, np.where(sense == LE, reach_down, reach_up & reach_down))
        if not reachable[keep].all():
            res.infeasible = True
            break  # infeasible: the solver proves it
        drop = keep & always
        if drop.any():
            res.keep_rows = keep & ~drop
            counts["rows_redundant"] += int(drop.sum())
            keep = res.keep_rows
            changed = True
        # forced binaries: a row that cannot hold unless x_j takes one value
        Ak = A[keep]
        if Ak.nnz:
            coo = Ak.tocoo()
            ridx = np.flatnonzero(keep)[coo.row]
            j, a = coo.col, coo.data
            fb = free_bin[j]
            s = sense[ridx]
            ge = (s == GE) | (s == EQ)
            le = (s == LE) | (s == EQ)
            slack_ge = act_max[ridx] - rhs[ridx]
            slack_le = rhs[ridx] - act_min[ridx]
            t = tol[ridx]
            force1 = fb & ((ge & (a > 0) & (a > slack_ge + t)) | (le & (a < 0) & (-a > slack_le + t)))
            force0 = fb & ((ge & (a < 0) & (-a > slack_ge + t)) | (le & (a > 0) & (a > slack_le + t)))
            f1, f0 = np.unique(j[force1]), np.unique(j[force0])
            if np.intersect1d(f0, f1).size:
                res.infeasible = True
                break  # contradictory: infeasible; the solver proves it
            if f1.size or f0.size:
                res.fixed[f1] = 1
                res.fixed[f0] = 0
                counts["fixed_forced"] += int(f1.size + f0.size)
                continue
        # empty columns and dominated binaries
        colA = A[keep].tocsc()
        cnt = np.diff(colA.indptr)
        coo = colA.tocoo()
        s = sense[np.flatnonzero(keep)[coo.row]] if coo.nnz else np.zeros(0, dtype=np.int8)
        a = coo.data
        # lowering x_j never hurts when its entries are <= 0 in >= rows, >= 0 in <= rows, and absent from ==
        bad_down = (s == EQ) | ((s == GE) & (a > 0)) | ((s == LE) & (a < 0))
        bad_up = (s == EQ) | ((s == GE) & (a < 0)) | ((s == LE) & (a > 0))
        down_blocked = np.zeros(n, dtype=bool)
        up_blocked = np.zeros(n, dtype=bool)
        down_blocked[coo.col[bad_down]] = True
        up_blocked[coo.col[bad_up]] = True
        cand = free_bin & ~relu_vars
        empty = cand & (cnt == 0)
        fix0 = cand & ~empty & (c > 0) & ~down_blocked
        fix1 = cand & ~empty & (c < 0) & ~up_blocked
        if empty.any():
            res.fixed[empty] = np.where(c[empty] < 0, 1, 0)
            counts["fixed_empty"] += int(empty.sum())
            changed = True
        if fix0.any() or fix1.any():
            res.fixed[fix0] = 0
            res.fixed[fix1] = 1
            counts["fixed_dominated"] += int(fix0.sum() + fix1.sum())
            changed = True
        if not changed:
            break
    return res


def _drop_duplicate_rows(problem: Problem, res: PresolveResult) -> None:
    """Of rows with the same coefficients (``<=`` rows negated to ``>=``), keep the strongest exact one."""
    A = problem.A
    if problem.n_rows < 2:
        return
    groups: dict[tuple[int, bytes, bytes], list[int]] = {}
    for i in range(problem.n_rows):
        lo, hi = A.indptr[i], A.indptr[i + 1]
        s = int(problem.sense[i])
        data = A.data[lo:hi] if s != LE else -A.data[lo:hi]
        key = (0 if s == EQ else 1, A.indices[lo:hi].tobytes(), (data + 0.0).tobytes())
        groups.setdefault(key, []).append(i)
    dup = [g for g in groups.values() if len(g) > 1]
    if not dup:
        return
    rq = exact_rhs(problem, [i for g in dup for i in g])
    it = iter(rq)
    for g in dup:
        vals = [next(it) for _ in g]
        senses = [int(problem.sense[i]) for i in g]
        if senses[0] == EQ:
            if len(set(vals)) == 1:  # identical equalities; different ones are infeasible: the solver says so
                for i in g[1:]:
                    res.keep_rows[i] = False
                    res.counts["rows_duplicate"] += 1
            continue
        # as >= rows: a <= row with rhs r is the >= row of the negation with rhs -r
        strength = [v if s == GE else -v for v, s in zip(vals, senses)]
        best = max(range(len(g)), key=lambda k: (strength[k], -k))
        for k, i in enumerate(g):
            if k != best:
                res.keep_rows[i] = False
                res.counts["rows_duplicate"] += 1


class Presolve(Reduction):
    """The presolve of the module docstring as a reduction (exact: fixings become bounds)."""

    name = "presolve"

    def apply(self, problem: Problem) -> Applied:
        """Fix binaries by bounds and drop redundant and duplicate rows."""
        res = presolve(problem)
        stats: dict[str, int | bool] = dict(res.counts)
        fx = res.fixed >= 0
        newly = fx & ~(problem.lb == problem.ub)
        stats["free_after"] = int((~fx & problem.is_binary).sum())
        stats["infeasible_seen"] = res.infeasible
        if not newly.any() and res.keep_rows.all():
            return Applied(problem, None, EXACT, stats)
        lb = np.where(fx, res.fixed, problem.lb).astype(np.float64)
        ub = np.where(fx, res.fixed, problem.ub).astype(np.float64)
        keep = np.flatnonzero(res.keep_rows)
        reduced = problem.replace(
            lb=lb,
            ub=ub,
            A=problem.A[keep],
            sense=problem.sense[keep],
            rhs=problem.rhs[keep],
            strict=problem.strict[keep],
            margin=problem.margin[keep],
            row_names=None if problem.row_names is None else [problem.row_names[i] for i in keep],
        )
        return Applied(reduced, None, EXACT, stats)

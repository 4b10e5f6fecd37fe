"""Certification: turning a tolerance-based (or otherwise unproven) answer into an exact one, or saying why not.

A backend whose answers hold only within a float tolerance (MILP solvers), or
a reduction that rounds (tight integer scaling), gives a *claim*.  Before
smug reports ``optimal`` or ``infeasible`` it proves the claim exactly:

1. **Exact feasibility.**  The claimed solution is checked in exact
   arithmetic (:func:`smug.ir.exact.check`).  Real variables are recomputed
   exactly from the binaries where rows determine them (:func:`complete_reals`:
   equality rows with one unknown and ReLUs, propagated); a solution that still
   fails is dropped (it is never returned as verified).
2. **A lower bound** from what costs nothing: the box, the cardinality cuts,
   the backend's own bound where its chain keeps bounds valid.
3. **The bound question, asked exactly.**  An exact backend (CP-SAT on
   outward-rounded integer rows for 0/1 problems, z3 otherwise) is asked for a
   solution better than the incumbent (``objective <= best - 1`` for integral
   objectives, ``objective <= best`` rounded up otherwise, every answer checked
   exactly).  ``infeasible`` proves the incumbent optimal (or, without one,
   the problem infeasible); a better exactly feasible solution becomes the
   incumbent and the question is asked again; a point that only the rounded
   rows accept is excluded by a no-good (0/1 problems) and the question repeats.

When the time runs out first, the answer is ``feasible`` with the proven bound
(``exact_bound``) and the solver's own claim kept as ``float_bound``; a claimed
infeasibility that could not be proven is ``unknown``.  Nothing here is
solver-specific: the exact backend is reached through a callable that
:mod:`smug.solving.run` provides.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..ir import EQ, GE, LE, Problem
from ..ir.exact import check, exact_rhs, fraction_to_float_down, fraction_to_float_up, objective
from .contract import Incumbent, Reporter, Solution, Status
from .deadline import Deadline

__all__ = ["complete_reals", "make_exact", "certify", "ExactAnswer", "Rows", "objective_cut", "MAX_ROUNDS"]

#: At most this many bound questions per certification (each round improves the incumbent or excludes a point).
MAX_ROUNDS = 25


@dataclass
class ExactAnswer:
    """An exact backend's answer to a bound question, with what it proves.

    ``exact``: its ``optimal`` / ``infeasible`` verdicts are proofs for the
    question; ``bounds``: its ``exact_bound`` and ``infeasible`` are (its
    solutions must still be checked).
    """

    solution: Solution
    exact: bool
    bounds: bool


def complete_reals(problem: Problem, x: np.ndarray) -> tuple[np.ndarray, list[Fraction]] | None:
    """Exact values for the real variables of ``x`` given its (rounded) binaries, or ``None``.

    Binaries are rounded to 0/1; real variables fixed by their bounds take that
    value; then equality rows with a single unknown real and ReLUs with a known
    input (or a known positive output) are solved exactly, to a fixed point
    (this determines every real variable of smug's network encodings); reals
    left undetermined keep their float value, clipped to their bounds.  The
    result is returned only when it is exactly feasible.
    """
    n = problem.n_vars
    xf = np.asarray(x, dtype=np.float64).ravel()
    if xf.shape[0] != n or not np.isfinite(xf).all():
        return None
    q: list[Fraction | None] = [None] * n
    for j in range(n):
        if problem.is_binary[j]:
            q[j] = Fraction(int(min(max(round(xf[j]), problem.lb[j]), problem.ub[j])))
        elif problem.lb[j] == problem.ub[j]:
            q[j] = Fraction(float(problem.lb[j]))
    A = problem.A
    eq_rows = np.flatnonzero(problem.sense == EQ)
    if eq_rows.size or problem.n_relu:
        rq = dict(zip(eq_rows.tolist(), exact_rhs(problem, eq_rows.tolist())))
        unknown = {
            i: [j for j in A.indices[A.indptr[i] : A.indptr[i + 1]].tolist() if q[j] is None] for i in eq_rows.tolist()
        }
        col_rows: dict[int, list[int]] = {}
        for i, js in unknown.items():
            for j in js:
                col_rows.setdefault(j, []).append(i)
        relu_of_in: dict[int, list[int]] = {}
        relu_of_out: dict[int, list[int]] = {}
        for r, (a, b) in enumerate(zip(problem.relu_in.tolist(), problem.relu_out.tolist())):
            relu_of_in.setdefault(a, []).append(r)
            relu_of_out.setdefault(b, []).append(r)
        todo = [i for i, js in unknown.items() if len(js) == 1]
        todo_relu = list(range(problem.n_relu))

        def settle(j: int, v: Fraction) -> None:
            q[j] = v
            for i in col_rows.get(j, ()):
                js = unknown[i]
                if j in js:
                    js.remove(j)
                    if len(js) == 1:
                        todo.append(i)
            todo_relu.extend(relu_of_in.get(j, ()))
            todo_relu.extend(relu_of_out.get(j, ()))

        while todo or todo_relu:
            while todo:
                i = todo.pop()
                js = unknown[i]
                if len(js) != 1:
                    continue
                j = js[0]
                lo, hi = A.indptr[i], A.indptr[i + 1]
                s, a_j = rq[i], None
                for a, k in zip(A.data[lo:hi].tolist(), A.indices[lo:hi].tolist()):
                    if k == j:
                        a_j = Fraction(a)
                    else:
                        s -= Fraction(a) * q[k]  # type: ignore[operator]
                settle(j, s / a_j)  # type: ignore[operator]
            while todo_relu:
                r = todo_relu.pop()
                a, b = int(problem.relu_in[r]), int(problem.relu_out[r])
                if q[a] is not None and q[b] is None:
                    settle(b, max(Fraction(0), q[a]))  # type: ignore[type-var]
                elif q[a] is None and q[b] is not None and q[b] > 0:  # type: ignore[operator]
                    settle(a, q[b])  # type: ignore[arg-type]
    rat = [
        v if v is not None else Fraction(float(min(max(xf[j], problem.lb[j]), problem.ub[j]))) for j, v in enumerate(q)
    ]
    xo = np.array([float(v) for v in rat], dtype=np.float64)
    return (xo, rat) if check(problem, xo, rat).feasible else None


def make_exact(
    problem: Problem, x: np.ndarray | None, rational: list[Fraction] | None
) -> tuple[np.ndarray, list[Fraction] | None] | None:
    """``(x, rational)`` if it is exactly feasible as it is, or after :func:`complete_reals`; else ``None``."""
    if x is None:
        return None
    x = np.asarray(x, dtype=np.float64).ravel()
    if rational is not None or np.isfinite(x).all():
        if check(problem, x, rational).feasible:
            return x, rational
    if problem.n_real:
        return complete_reals(problem, x)
    xr = np.where(problem.is_binary, np.clip(np.rint(x), problem.lb, problem.ub), x)
    return (xr, None) if check(problem, xr).feasible else None


def objective_cut(problem: Problem, v: Fraction) -> tuple[np.ndarray, float, bool]:
    """The row ``c . x <= r`` every point with objective below ``v`` satisfies: ``(c, r, exact)``.

    Integral objectives: ``r = v - 1 - constant`` exactly (so it is exactly
    "better than ``v``").  Otherwise ``r`` is ``v - constant`` rounded up to a float:
    weaker than ``< v`` (points of objective ``v`` and a few above pass), so
    each point found must be compared with ``v`` exactly.
    """
    const = Fraction(float(problem.objective_constant))
    if problem.objective_is_integral and v.denominator == 1:
        return problem.objective, float(v - 1 - const), True
    return problem.objective, fraction_to_float_up(v - const), False


def certify(
    problem: Problem,
    x: np.ndarray | None,
    rational: list[Fraction] | None,
    claimed: Status,
    *,
    bound: Fraction | None,
    float_bound: float | None,
    start: Incumbent | None,
    lower: Fraction,
    deadline: Deadline,
    ask: Callable[[Rows | None, Deadline], ExactAnswer] | None,
    report: Reporter,
) -> Solution:
    """Prove an unproven answer on ``problem`` exactly, as far as the time allows (see the module docstring).

    Args:
        problem: the problem the claim is about.
        x: the claimed solution (``None``: none).
        rational: exact values of ``x`` where the floats round them.
        claimed: the backend's status (its ``optimal`` / ``infeasible`` are claims here).
        bound: a lower bound known to be valid (exact), or ``None``.
        float_bound: the backend's own bound (kept as ``float_bound``, never used as proof).
        start: an exactly feasible incumbent found before the solve (the greedy start).
        lower: a proven lower bound (box, cuts).
        deadline: when to stop.
        ask: runs an exact backend on ``problem`` with extra rows (the objective cut and no-goods; ``None``:
            none) and says what its answer proves (``None``: no exact backend available).
        report: called with every improving exactly feasible solution.
    """
    t0 = time.perf_counter()
    stats: dict[str, Any] = {"claimed": claimed.value, "rounds": 0, "nogoods": 0, "rejected": False, "repaired": False}
    best: tuple[np.ndarray, list[Fraction] | None, Fraction] | None = None
    if x is not None:
        ok = make_exact(problem, x, rational)
        if ok is None:
            stats["rejected"] = True  # the solver's point holds only within its tolerance
        else:
            stats["repaired"] = ok[1] is not None and rational is None
            best = (ok[0], ok[1], objective(problem, ok[0], ok[1]))
    if start is not None:
        qs = start.exact_objective if start.exact_objective is not None else objective(problem, start.assignment)
        if best is None or qs < best[2]:
            best = (np.asarray(start.assignment, dtype=np.float64), start.rational, qs)
    lo = lower if bound is None else max(lower, bound)
    integral = problem.objective_is_integral
    if integral:
        lo = Fraction(math.ceil(lo))
    pure = problem.is_pure_binary
    nogoods: list[np.ndarray] = []

    def done(status: Status, message: str = "") -> Solution:
        stats["seconds"] = time.perf_counter() - t0
        stats["certified"] = status in (Status.OPTIMAL, Status.INFEASIBLE)
        proven = None if status == Status.INFEASIBLE else lo
        return Solution(
            status=status,
            assignment=None if best is None else best[0],
            rational=None if best is None else best[1],
            objective=None if best is None else float(best[2]),
            exact_objective=None if best is None else best[2],
            exact_bound=proven,
            bound=None if proven is None else fraction_to_float_down(proven),
            float_bound=float_bound,
            message=message,
            stats={"certification": stats},
        )

    message = ""
    while True:
        if best is not None and best[2] <= lo:
            return done(Status.OPTIMAL)
        if ask is None:
            message = "no exact backend is installed to certify the solver's claim"
            break
        if deadline.expired():
            message = "the time limit was reached before the solver's claim was certified"
            break
        if stats["rounds"] >= MAX_ROUNDS:
            message = f"certification stopped after {MAX_ROUNDS} rounds"
            break
        stats["rounds"] += 1
        ans = ask(_question(problem, None if best is None else best[2], nogoods), deadline)
        s = ans.solution
        if s.status == Status.INFEASIBLE and ans.bounds:
            # nothing better than the incumbent (no-goods only removed points known not to be better)
            if best is None:
                return done(Status.INFEASIBLE)
            lo = best[2]
            continue
        if ans.bounds and s.exact_bound is not None and best is not None:
            lo = max(lo, min(best[2], s.exact_bound))
            if integral:
                lo = Fraction(math.ceil(lo))
        found = make_exact(problem, s.assignment, s.rational) if s.assignment is not None else None
        if found is not None:
            qv = objective(problem, found[0], found[1])
            if best is None or qv < best[2]:
                best = (found[0], found[1], qv)
                report(Incumbent(found[0], float(qv), fraction_to_float_down(lo), qv, found[1]))
                if s.status == Status.OPTIMAL and ans.exact:
                    lo = max(lo, qv)  # the optimum of a problem holding every better point
                continue
            if s.status == Status.OPTIMAL and ans.exact:
                lo = max(lo, best[2])  # the best of the cut problem is no better: the incumbent is optimal
                continue
        if s.assignment is not None and pure:
            nogoods.append(np.rint(np.asarray(s.assignment, dtype=np.float64)))
            stats["nogoods"] = len(nogoods)
            continue
        message = f"the exact backend answered {s.status.value}" + (f" ({s.message})" if s.message else "")
        break
    if best is not None:
        return done(Status.FEASIBLE, message)
    if claimed == Status.INFEASIBLE:
        return done(Status.UNKNOWN, f"the solver claimed infeasible; not proven exactly: {message}")
    return done(Status.stopped(False, deadline.expired()), message)


@dataclass
class Rows:
    """Extra non-strict rows ``A x (sense) rhs`` a bound question adds to a problem."""

    A: sp.csr_matrix
    sense: np.ndarray
    rhs: np.ndarray


def _question(problem: Problem, v: Fraction | None, nogoods: list[np.ndarray]) -> Rows | None:
    """The rows "better than ``v``" (when given) and one no-good per excluded 0/1 point."""
    rows, sense, rhs = [], [], []
    if v is not None:
        c, r, _ = objective_cut(problem, v)
        rows.append(c)
        sense.append(LE)
        rhs.append(r)
    for p in nogoods:  # sum_{x_j=1} (1 - y_j) + sum_{x_j=0} y_j >= 1
        rows.append(np.where(p > 0.5, -1.0, 1.0))
        sense.append(GE)
        rhs.append(1.0 - float((p > 0.5).sum()))
    if not rows:
        return None
    return Rows(sp.csr_matrix(np.vstack(rows)), np.array(sense, dtype=np.int8), np.array(rhs))

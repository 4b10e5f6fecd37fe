"""The one optimisation routine for backends that only decide satisfiability.

:func:`minimize` turns bounded satisfiability checks (``objective <= k``) into
minimisation:

* **binary** search (default for integral objectives, such as mask counts or
  areas in pixels): the bound is halved between the best proven lower bound and
  the best solution; each ``unsat`` raises the lower bound, each ``sat`` lowers
  the incumbent.
* **linear** (solution-improving) search: each model's objective minus one (or,
  for real objectives, a strict ``<``) is the next bound; it ends at the first
  ``unsat``.

Real-valued objectives bisect until the interval is small, then prove
optimality with one strict check ``objective < best``, so the answer is exact.
Every improving model is reported at once, so a solve stopped by the hard time
limit keeps its best.  Sessions keep the base constraints loaded and add each
bound in a push/pop scope, so the solver's learnt clauses carry over.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..errors import ValidationError
from ..ir import Problem
from .contract import Incumbent, Reporter, SatBackend, Solution, SolveParams, Status

__all__ = ["minimize", "trivial_lower_bound", "SEARCH_STRATEGIES"]

SEARCH_STRATEGIES = ("auto", "binary", "linear")


def trivial_lower_bound(problem: Problem) -> float:
    """The smallest value the objective can take inside the variable bounds."""
    c = problem.objective
    return float(np.minimum(c * problem.lb, c * problem.ub).sum() + problem.objective_constant)


def minimize(backend: SatBackend, problem: Problem, params: SolveParams, report: Reporter) -> Solution:
    """Minimise ``problem``'s objective with ``backend``'s satisfiability sessions.

    The strategy comes from ``backend.options["search"]`` (``"auto"``,
    ``"binary"`` or ``"linear"``).  Returns a :class:`Solution` whose ``bound``
    is the best proven lower bound; ``stats["checks"]`` counts the queries.
    """
    strategy = backend.options.get("search", "auto")
    if strategy not in SEARCH_STRATEGIES:
        raise ValidationError(f"unknown search strategy {strategy!r}; choose one of {SEARCH_STRATEGIES}")
    integral = problem.objective_is_integral
    if strategy == "auto":
        strategy = "binary"

    t0 = time.perf_counter()
    deadline = None if params.time_limit is None else t0 + params.time_limit

    def remaining() -> float | None:
        return None if deadline is None else max(0.0, deadline - time.perf_counter())

    session = backend.open_session(problem, params)
    build_time = time.perf_counter() - t0
    t1 = time.perf_counter()
    checks = 0
    lower = trivial_lower_bound(problem)
    if integral:
        lower = math.ceil(lower - 1e-9)
    best: np.ndarray | None = None
    best_obj: float | None = None

    def finish(status: Status, message: str = "") -> Solution:
        session.close()
        sol = Solution(
            status=status,
            assignment=best,
            objective=best_obj,
            bound=None if status == Status.INFEASIBLE else lower,
            build_time=build_time,
            solve_time=time.perf_counter() - t1,
            message=message,
            stats={"checks": checks, "search": strategy},
        )
        return sol

    def timed_out() -> bool:
        return deadline is not None and time.perf_counter() >= deadline

    # first any solution
    checks += 1
    res = session.check(None, remaining())
    if res == "unsat":
        return finish(Status.INFEASIBLE, "no assignment satisfies the constraints")
    if res != "sat":
        return finish(Status.stopped(False, timed_out()), f"solver answered {res!r} before any solution")
    best = session.model()
    best_obj = problem.objective_value(best)
    report(Incumbent(best, best_obj, lower))

    while True:
        if timed_out():
            return finish(Status.FEASIBLE, "time limit reached")
        if integral:
            if best_obj <= lower:
                return finish(Status.OPTIMAL)
            k = best_obj - 1 if strategy == "linear" else math.floor((lower + best_obj - 1) / 2)
            k = max(k, lower)
            checks += 1
            res = session.check(float(k), remaining())
            if res == "sat":
                best = session.model()
                best_obj = problem.objective_value(best)
                report(Incumbent(best, best_obj, lower))
            elif res == "unsat":
                lower = k + 1
            else:
                return finish(Status.FEASIBLE, f"solver answered {res!r}; stopped with the best solution found")
        else:
            tol = 1e-7 * max(1.0, abs(best_obj))
            if strategy == "linear" or best_obj - lower <= tol:
                checks += 1
                res = session.check(best_obj, remaining(), strict=True)
                if res == "unsat":
                    lower = best_obj
                    return finish(Status.OPTIMAL)
            else:
                k = (lower + best_obj) / 2
                checks += 1
                res = session.check(k, remaining())
                if res == "unsat":
                    lower = k
                    continue
            if res == "sat":
                m = session.model()
                v = problem.objective_value(m)
                if v >= best_obj:
                    # the float ``best_obj`` may round the incumbent's exact objective up, so the strict
                    # check can return the incumbent again: ask below the next float down instead
                    checks += 1
                    res = session.check(math.nextafter(best_obj, -math.inf), remaining())
                    if res == "unsat":
                        lower = best_obj
                        return finish(Status.OPTIMAL)
                    if res != "sat":
                        return finish(Status.FEASIBLE, f"solver answered {res!r}; stopped with the best solution found")
                    m = session.model()
                    v = problem.objective_value(m)
                if v < best_obj:
                    best, best_obj = m, v
                    report(Incumbent(best, best_obj, lower))
                else:  # below the float under best_obj, yet not lower in floats: equal up to rounding
                    lower = best_obj
                    return finish(Status.OPTIMAL, "optimal up to float rounding of the model's objective")
            else:
                return finish(Status.FEASIBLE, f"solver answered {res!r}; stopped with the best solution found")

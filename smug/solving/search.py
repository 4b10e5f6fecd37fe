"""The one optimisation routine for backends that only decide satisfiability, in exact arithmetic.

:func:`minimize` turns bounded satisfiability checks into minimisation; every
bound it asks about and every objective it compares is an exact rational
(:class:`~fractions.Fraction`), so it claims ``OPTIMAL`` only after a check
came back ``unsat`` for "anything better than the incumbent":

* **integral objectives** (integer coefficients on binaries, such as mask
  counts or areas): ``binary`` search halves the interval between the proven
  lower bound and the incumbent, ``linear`` search asks for ``objective <= best - 1``;
  optimal when the lower bound reaches the incumbent.
* **real objectives**: ``binary`` search bisects (each ``unsat`` of
  ``objective <= k`` proves the optimum above ``k``) until the interval is
  small, then asks ``objective < best`` with the incumbent's *exact*
  objective; ``linear`` search asks that strict question every time.  Only an
  ``unsat`` answer to it proves optimality.

A model whose exact objective does not satisfy the bound it was asked for
means the solver (or its model) is wrong: the search stops with the best
solution as ``FEASIBLE`` and says so; it never turns that into a proof.
Every improving model is reported at once, so a solve stopped by the hard
time limit keeps its best.  Incremental sessions keep the base constraints
loaded and add each bound in a push/pop scope.
"""

from __future__ import annotations

import math
import time
from fractions import Fraction

import numpy as np

from ..errors import ValidationError
from ..ir import Problem
from ..ir.exact import fraction_to_float_down, objective, trivial_lower_bound
from .contract import SEARCH_STRATEGIES, Incumbent, Reporter, SatBackend, SatSession, Solution, SolveParams, Status
from .deadline import Deadline

__all__ = ["minimize", "SEARCH_STRATEGIES"]

#: A real objective's interval is bisected until it is this small (relative), then closed by a strict check.
_CLOSE = 1e-7


def minimize(
    backend: SatBackend,
    problem: Problem,
    params: SolveParams,
    report: Reporter,
    *,
    start: Incumbent | None = None,
    lower: Fraction | None = None,
    session: SatSession | None = None,
) -> Solution:
    """Minimise ``problem``'s objective with ``backend``'s satisfiability sessions.

    Args:
        backend: a :class:`SatBackend`; ``backend.options["search"]`` picks the
            strategy (``"auto"`` = ``"binary"``, or ``"linear"``).
        problem: the problem (its constraints go into the session).
        params: time limit, seed, ...
        report: called with every improving solution.
        start: an exactly feasible solution to start from (skips the first check).
        lower: a proven lower bound on the optimum (for example from cuts).
        session: an open session to search in (kept open afterwards); default: a fresh one.

    Returns:
        A :class:`Solution` with ``exact_objective`` and ``exact_bound`` (the best
        proven lower bound); ``stats["checks"]`` counts the queries.
    """
    strategy = backend.options.get("search", "auto")
    if strategy not in SEARCH_STRATEGIES:
        raise ValidationError(f"unknown search strategy {strategy!r}; choose one of {SEARCH_STRATEGIES}")
    if strategy == "auto":
        strategy = "binary"
    integral = problem.objective_is_integral
    deadline = Deadline(params.time_limit)
    t0 = time.perf_counter()
    incremental = backend.capabilities.incremental or session is not None
    own = session is None
    if session is None and incremental:
        session = backend.open_session(problem, params)
    build_time = time.perf_counter() - t0
    t1 = time.perf_counter()
    lo = trivial_lower_bound(problem)
    if lower is not None:
        lo = max(lo, lower)
    if integral:
        lo = Fraction(math.ceil(lo))
    checks = 0
    best: np.ndarray | None = None
    best_q: Fraction | None = None
    best_rat: list[Fraction] | None = None
    stats: dict[str, object] = {"search": strategy}

    def ask(bound: Fraction | None, strict: bool) -> tuple[str, SatSession]:
        nonlocal checks, session
        checks += 1
        s = session if session is not None else backend.open_session(problem, params)
        res = s.check(bound, deadline.remaining(), strict)
        if session is None:
            stats.update(getattr(s, "stats", {}) or {})
        return res, s

    def take(s: SatSession) -> tuple[np.ndarray, list[Fraction] | None, Fraction]:
        x = np.asarray(s.model(), dtype=np.float64)
        rat = s.exact_model()
        q = objective(problem, x, rat)
        if session is None:
            s.close()
        return x, rat, q

    def finish(status: Status, message: str = "") -> Solution:
        if session is not None:
            stats.update(getattr(session, "stats", {}) or {})
            if own:
                session.close()
        proven = None if status == Status.INFEASIBLE else lo
        stats["checks"] = checks
        return Solution(
            status=status,
            assignment=best,
            objective=None if best_q is None else float(best_q),
            bound=None if proven is None else fraction_to_float_down(proven),
            exact_objective=best_q,
            exact_bound=proven,
            rational=best_rat,
            build_time=build_time,
            solve_time=time.perf_counter() - t1,
            message=message,
            stats=stats,
        )

    def improve(x: np.ndarray, rat: list[Fraction] | None, q: Fraction) -> None:
        nonlocal best, best_q, best_rat
        best, best_q, best_rat = x, q, rat
        report(Incumbent(x, float(q), fraction_to_float_down(lo), q, rat))

    if start is not None:
        q0 = start.exact_objective if start.exact_objective is not None else objective(problem, start.assignment)
        best, best_q, best_rat = np.asarray(start.assignment, dtype=np.float64), q0, start.rational
    else:
        res, s = ask(None, False)
        if res == "unsat":
            return finish(Status.INFEASIBLE, "no assignment satisfies the constraints")
        if res != "sat":
            return finish(Status.stopped(False, deadline.expired()), f"solver answered {res!r} before any solution")
        improve(*take(s))

    while True:
        assert best_q is not None
        if best_q <= lo:
            return finish(Status.OPTIMAL)
        if deadline.expired():
            return finish(Status.FEASIBLE, "time limit reached")
        close = best_q - lo <= Fraction(_CLOSE) * max(Fraction(1), abs(best_q))
        if integral:  # objective <= k, integer k: an unsat answer proves the optimum above k
            k = best_q - 1 if strategy == "linear" else Fraction(math.floor((lo + best_q - 1) / 2))
            k, strict = max(k, lo), False
        elif strategy == "linear" or close:  # objective < the incumbent's exact objective: unsat proves it optimal
            k, strict = best_q, True
        else:  # bisect the real interval
            k, strict = Fraction((float(lo) + float(best_q)) / 2), False
            if not lo < k < best_q:
                k = (lo + best_q) / 2
        res, s = ask(k, strict)
        if res == "unsat":
            if strict:
                lo = best_q
                return finish(Status.OPTIMAL)
            lo = k + 1 if integral else k  # no solution at or below k
            continue
        if res != "sat":
            return finish(Status.FEASIBLE, f"solver answered {res!r}; stopped with the best solution found")
        x, rat, q = take(s)
        if q > k or (strict and q >= k):
            return finish(
                Status.FEASIBLE,
                f"the solver's model has objective {q}, not {'below' if strict else 'at most'} the bound {k} it was "
                "asked for",
            )
        improve(x, rat, q)

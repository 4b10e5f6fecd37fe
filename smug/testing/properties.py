"""Property checks on solutions: each raises ``AssertionError`` with a readable reason.

Feasibility is decided by the oracle's own exact checker
(:func:`smug.testing.oracle.exactly_feasible`), independently of smug's
verification and of every backend.
"""

from __future__ import annotations

from fractions import Fraction

from ..ir import Problem
from ..solving.contract import Solution, Status
from .oracle import exact_optimum, exactly_feasible

__all__ = ["assert_valid_solution", "assert_matches_brute_force"]


def _values(problem: Problem, solution: Solution, k: int) -> list[Fraction]:
    if k == 0 and solution.rational is not None:
        return list(solution.rational)
    x = solution.assignment if k == 0 else solution.alternatives[k - 1]
    return [Fraction(float(v)) for v in x]


def assert_valid_solution(problem: Problem, solution: Solution) -> None:
    """The solution's assignment (and every alternative) satisfies every constraint of ``problem`` exactly."""
    if not solution.status.has_solution:
        return
    assert solution.assignment is not None, f"{solution.backend}: status {solution.status} without an assignment"
    assert solution.verified, f"{solution.backend}: a {solution.status} solution that smug did not verify exactly"
    for k in range(1 + len(solution.alternatives)):
        assert exactly_feasible(problem, _values(problem, solution, k)), (
            f"{solution.backend}: solution {k} is not exactly feasible (the oracle's own check)"
        )


def assert_matches_brute_force(problem: Problem, solution: Solution, *, require_proof: bool = True) -> None:
    """Status and optimum equal the exact oracle's, exactly; alternatives are distinct and optimal.

    ``optimal`` passes only with the exact optimum, ``infeasible`` only when the
    oracle finds no feasible point, and every solution must be exactly
    feasible.  With ``require_proof=False`` an unproven answer passes too (a
    ``feasible`` solution no better than the optimum, or ``unknown`` /
    ``timeout``); by default the backend must prove its answer.
    """
    res = exact_optimum(problem)
    name = solution.backend
    unproven = (Status.UNKNOWN, Status.TIMEOUT)
    if res.optimum is None:
        ok = (Status.INFEASIBLE,) if require_proof else (Status.INFEASIBLE, *unproven)
        assert solution.status in ok, (
            f"{name}: the oracle says infeasible, the backend says {solution.status} ({solution.message})"
        )
        return
    if require_proof:
        assert solution.status == Status.OPTIMAL, (
            f"{name}: the exact optimum is {res.optimum}; the backend says {solution.status} ({solution.message})"
        )
    assert solution.status != Status.INFEASIBLE, f"{name}: claims infeasible, the oracle's optimum is {res.optimum}"
    assert solution.status != Status.ERROR, f"{name}: error: {solution.message}"
    assert_valid_solution(problem, solution)
    if solution.status == Status.OPTIMAL:
        assert solution.exact_objective == res.optimum, (
            f"{name}: claims optimal {solution.exact_objective} ({float(solution.exact_objective or 0)!r}); "
            f"the exact optimum is {res.optimum} ({float(res.optimum)!r})"
        )
    elif solution.status == Status.FEASIBLE:
        assert solution.exact_objective is not None and solution.exact_objective >= res.optimum
    if solution.exact_bound is not None:
        assert solution.exact_bound <= res.optimum, (
            f"{name}: claims the lower bound {solution.exact_bound}, above the optimum {res.optimum}"
        )
    masks = [tuple(m.tolist()) for m in solution.masks]
    assert len(set(masks)) == len(masks), f"{name}: enumerated masks are not distinct: {masks}"
    for x in solution.alternatives:
        q = sum((Fraction(float(c)) * Fraction(float(v)) for c, v in zip(problem.objective, x)), Fraction(0))
        q += Fraction(float(problem.objective_constant))
        assert q == res.optimum, f"{name}: an alternative has objective {q}, not the optimum {res.optimum}"

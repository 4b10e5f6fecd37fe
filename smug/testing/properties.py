"""Property checks on solutions: each raises ``AssertionError`` with a readable reason."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..ir import Problem
from ..solving.contract import Solution, Status
from .brute import brute_force

__all__ = ["assert_valid_solution", "assert_matches_brute_force"]


def assert_valid_solution(problem: Problem, solution: Solution, *, tol: float = 1e-9) -> None:
    """The solution's assignment (and every alternative) satisfies every constraint of ``problem``.

    Checked with :meth:`Problem.evaluate`, independently of the backend.
    """
    if not solution.status.has_solution:
        return
    assert solution.assignment is not None, f"{solution.backend}: status {solution.status} without an assignment"
    for k, x in enumerate([solution.assignment, *solution.alternatives]):
        ev = problem.evaluate(x, tol=tol)
        assert ev.feasible, f"{solution.backend}: solution {k} fails the independent check: {ev.summary()}"


def assert_matches_brute_force(
    problem: Problem,
    solution: Solution,
    complete: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    rel_tol: float = 1e-9,
) -> None:
    """The backend's status and optimum equal brute-force enumeration's; alternatives are distinct and optimal."""
    opt, _ = brute_force(problem, complete)
    name = solution.backend
    if opt is None:
        assert solution.status == Status.INFEASIBLE, (
            f"{name}: brute force says infeasible, backend says {solution.status}"
        )
        return
    assert solution.status == Status.OPTIMAL, (
        f"{name}: brute force optimum {opt}, backend status {solution.status} ({solution.message})"
    )
    assert_valid_solution(problem, solution)
    tol = rel_tol * max(1.0, abs(opt))
    assert abs(solution.objective - opt) <= tol, f"{name}: objective {solution.objective} != brute force optimum {opt}"
    masks = [tuple(m.tolist()) for m in solution.masks]
    assert len(set(masks)) == len(masks), f"{name}: enumerated masks are not distinct: {masks}"
    for x in solution.alternatives:
        v = problem.objective_value(x)
        assert abs(v - opt) <= tol, f"{name}: alternative with objective {v} is not optimal ({opt})"

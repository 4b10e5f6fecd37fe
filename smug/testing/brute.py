"""Brute-force reference solutions, the ground truth every backend is tested against."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from ..errors import ValidationError
from ..ir import Problem

__all__ = ["brute_force", "MAX_BRUTE_FORCE_BINARIES"]

#: Largest number of free binaries :func:`brute_force` enumerates (2**20 assignments).
MAX_BRUTE_FORCE_BINARIES = 20


def brute_force(
    problem: Problem,
    complete: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    exact: bool = False,
) -> tuple[float | None, list[np.ndarray]]:
    """Enumerate every assignment of the binary variables and keep the optimal feasible ones.

    Args:
        problem: the problem; every binary is enumerated.
        complete: maps a 0/1 vector over the binaries to a full assignment (for
            problems whose real variables are determined by the binaries, such
            as a ReLU network evaluated forward).  Needed when the problem has
            real variables.
        exact: check constraints in exact rational arithmetic.

    Returns:
        ``(optimum, optimal_assignments)``; ``(None, [])`` when infeasible.
        Feasibility is judged by :meth:`Problem.evaluate` alone.
    """
    bins = np.flatnonzero(problem.is_binary)
    if bins.size > MAX_BRUTE_FORCE_BINARIES:
        raise ValidationError(
            f"brute force over {bins.size} binaries is too large (at most {MAX_BRUTE_FORCE_BINARIES})"
        )
    if problem.n_real and complete is None:
        raise ValidationError("the problem has real variables: pass complete= to compute them from the binaries")
    best: float | None = None
    winners: list[np.ndarray] = []
    for bits in itertools.product((0.0, 1.0), repeat=bins.size):
        b = np.array(bits)
        if complete is not None:
            x = np.asarray(complete(b), dtype=np.float64)
        else:
            x = np.zeros(problem.n_vars)
            x[bins] = b
        ev = problem.evaluate(x, exact=exact, tol=0.0 if exact else 1e-9)
        if not ev.feasible:
            continue
        obj = ev.objective
        if best is None or obj < best - 1e-12 * max(1.0, abs(obj)):
            best, winners = obj, [x]
        elif abs(obj - best) <= 1e-12 * max(1.0, abs(obj)):
            winners.append(x)
    return best, winners

"""Brute-force reference solutions, the ground truth every backend is tested against.

:func:`brute_force` is the exact oracle of :mod:`smug.testing.oracle`, which
shares no code with :meth:`smug.ir.Problem.evaluate`, :mod:`smug.ir.exact` or
any backend: its optimum is an exact :class:`~fractions.Fraction`.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..errors import ValidationError
from ..ir import Problem
from .oracle import MAX_ORACLE_BINARIES, exact_optimum

__all__ = ["brute_force", "MAX_BRUTE_FORCE_BINARIES"]

#: Largest number of binaries :func:`brute_force` enumerates.
MAX_BRUTE_FORCE_BINARIES = MAX_ORACLE_BINARIES


def brute_force(problem: Problem) -> tuple[Fraction | None, list[np.ndarray]]:
    """Every assignment of the binaries, real variables solved exactly: the exact optimum and the optimal points.

    Returns:
        ``(optimum, optimal_assignments)`` -- the optimum as an exact rational
        (compare it with ``Solution.exact_objective``), the optimal points as
        float vectors; ``(None, [])`` when no assignment is feasible.
    """
    n_bin = int(problem.is_binary.sum())
    if n_bin > MAX_BRUTE_FORCE_BINARIES:
        raise ValidationError(f"brute force over {n_bin} binaries is too large (at most {MAX_BRUTE_FORCE_BINARIES})")
    res = exact_optimum(problem)
    return res.optimum, [np.array([float(v) for v in p], dtype=np.float64) for p in res.optimal]

"""Testing helpers users can reuse: Hypothesis strategies, the exact oracle, property checks.

Hypothesis is a dependency of smug, so these import everywhere smug does.  The
oracle (:mod:`smug.testing.oracle`, behind :func:`brute_force`) shares no code
with smug's own verification or with any backend.
"""

from .brute import MAX_BRUTE_FORCE_BINARIES, brute_force
from .oracle import exact_optimum, exactly_feasible
from .properties import assert_matches_brute_force, assert_valid_solution
from .strategies import (
    Change,
    ReluCase,
    assignments,
    coefficients,
    covering_problems,
    hostile_problems,
    relu_problems,
    session_changes,
)
from .suite import check_backend

__all__ = [
    "brute_force",
    "MAX_BRUTE_FORCE_BINARIES",
    "exact_optimum",
    "exactly_feasible",
    "assert_valid_solution",
    "assert_matches_brute_force",
    "covering_problems",
    "hostile_problems",
    "relu_problems",
    "session_changes",
    "Change",
    "ReluCase",
    "assignments",
    "coefficients",
    "check_backend",
]

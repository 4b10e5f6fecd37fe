"""Testing helpers users can reuse: Hypothesis strategies, brute force, property checks.

Hypothesis is a dependency of smug, so these import everywhere smug does.
"""

from .brute import MAX_BRUTE_FORCE_BINARIES, brute_force
from .properties import assert_matches_brute_force, assert_valid_solution
from .strategies import ReluCase, assignments, coefficients, covering_problems, relu_problems

__all__ = [
    "brute_force",
    "MAX_BRUTE_FORCE_BINARIES",
    "assert_valid_solution",
    "assert_matches_brute_force",
    "covering_problems",
    "relu_problems",
    "ReluCase",
    "assignments",
    "coefficients",
]

"""The big-M reduction: ReLU constraints become linear rows over one phase binary each.

``y = max(0, x)`` with sound bounds ``l <= x <= u`` becomes ``y = x`` when
``l >= 0``, ``y = 0`` when ``u <= 0``, and otherwise a new binary ``z`` with
``y >= 0, y >= x, y <= x - l (1 - z), y <= u z`` (:meth:`smug.ir.Problem.linearize_relus`).
The big-M values are the IR's sound bounds, never a constant, so the reduction
is exact; new variables are appended, so a solution maps back by truncation.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from ..ir import Problem
from .base import EXACT, Applied, Reduction

__all__ = ["ReluBigM"]


class ReluBigM(Reduction):
    """ReLU constraints as big-M rows with the IR's sound bounds (exact; see the module docstring)."""

    name = "relu_bigm"

    def apply(self, problem: Problem) -> Applied:
        """The linearised problem (the same problem when it has no ReLU constraints)."""
        lp = problem.linearize_relus()
        return Applied(lp, problem.n_vars, EXACT, {"phase_binaries": lp.n_vars - problem.n_vars})

    def invert_point(
        self, x: np.ndarray, rational: list[Fraction] | None, data: Any, original: Problem
    ) -> tuple[np.ndarray, list[Fraction] | None]:
        """Drop the phase binaries."""
        return x[:data], None if rational is None else rational[:data]

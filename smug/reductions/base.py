"""Reductions: IR -> IR steps that map a problem to an easier one and map the answer back.

A :class:`Reduction` has :meth:`~Reduction.apply` (returns an :class:`Applied`:
the reduced problem, what :meth:`~Reduction.invert` needs, and the
:class:`Guarantee` -- what answers of the reduced problem say about the
original) and :meth:`~Reduction.invert_point` / :meth:`~Reduction.invert_bound`
(map a solution and a lower bound back).  A :class:`Chain` applies several in
order and inverts them in reverse; its guarantee is the meet of theirs, which is
how :func:`smug.solve` knows whether an answer needs certification.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ..ir import Problem

__all__ = ["Guarantee", "EXACT", "STRENGTHENS", "RELAXES", "Applied", "Reduction", "Chain"]


@dataclass(frozen=True)
class Guarantee:
    """What the reduced problem's answers say about the original.

    Attributes:
        solutions: every feasible point of the reduced problem maps back to a
            feasible point of the original (with the same exact objective when
            ``optimum`` holds).
        bounds: every lower bound on the reduced problem's optimum, and its
            infeasibility, hold for the original (after :meth:`Reduction.invert_bound`).
        optimum: an optimum of the reduced problem maps to an optimum of the original.
    """

    solutions: bool
    bounds: bool
    optimum: bool

    def __and__(self, other: Guarantee) -> Guarantee:
        return Guarantee(
            self.solutions and other.solutions, self.bounds and other.bounds, self.optimum and other.optimum
        )

    @property
    def exact(self) -> bool:
        """Everything transfers: solutions, bounds, optimality and infeasibility."""
        return self.solutions and self.bounds and self.optimum


#: An equivalence: everything transfers.
EXACT = Guarantee(True, True, True)
#: A stronger problem (a subset of the feasible points): solutions transfer, bounds and optimality do not.
STRENGTHENS = Guarantee(True, False, False)
#: A weaker problem (a superset): bounds and infeasibility transfer, solutions must be checked.
RELAXES = Guarantee(False, True, False)


@dataclass
class Applied:
    """The result of :meth:`Reduction.apply`."""

    problem: Problem
    data: Any = None
    guarantee: Guarantee = EXACT
    stats: dict[str, Any] = field(default_factory=dict)


class Reduction(ABC):
    """One IR -> IR step (see the module docstring).

    Subclasses set ``name`` and implement :meth:`apply`; the default inverses
    are the identity (same variables, same objective), which suits reductions
    that change rows and bounds but not variables or the objective.
    """

    name: str = ""

    def check(self, problem: Problem) -> None:  # noqa: B027 - optional hook
        """Raise a named error before any slow work if this reduction cannot take ``problem``."""

    @abstractmethod
    def apply(self, problem: Problem) -> Applied:
        """The reduced problem, with what :meth:`invert_point` and :meth:`invert_bound` need."""

    def invert_point(
        self, x: np.ndarray, rational: list[Fraction] | None, data: Any, original: Problem
    ) -> tuple[np.ndarray, list[Fraction] | None]:
        """Map a point of the reduced problem to the original's variables (default: unchanged)."""
        return x, rational

    def invert_bound(self, bound: Fraction | None, data: Any, original: Problem) -> Fraction | None:
        """Map a lower bound on the reduced objective to one on the original (``None``: no valid bound)."""
        return bound

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


@dataclass
class _Step:
    reduction: Reduction
    before: Problem
    applied: Applied


class Chain:
    """Reductions applied in order; answers mapped back in reverse (see the module docstring)."""

    def __init__(self, reductions: Sequence[Reduction]) -> None:
        self.reductions = list(reductions)
        self.steps: list[_Step] = []

    def check(self, problem: Problem) -> None:
        """Each reduction's up-front check (on the original problem)."""
        for r in self.reductions:
            r.check(problem)

    def apply(self, problem: Problem) -> Problem:
        """Apply every reduction; returns the reduced problem (the steps are kept for inverting)."""
        self.steps = []
        p = problem
        for r in self.reductions:
            t0 = time.perf_counter()
            a = r.apply(p)
            a.stats.setdefault("seconds", time.perf_counter() - t0)
            self.steps.append(_Step(r, p, a))
            p = a.problem
        return p

    @property
    def guarantee(self) -> Guarantee:
        """The meet of the applied reductions' guarantees."""
        g = EXACT
        for s in self.steps:
            g = g & s.applied.guarantee
        return g

    @property
    def names(self) -> list[str]:
        """The reductions' names, in order."""
        return [r.name for r in self.reductions]

    def stats(self) -> dict[str, Any]:
        """Per reduction, its numbers (``seconds`` and what it changed)."""
        return {s.reduction.name: dict(s.applied.stats) for s in self.steps}

    def invert_point(self, x: np.ndarray, rational: list[Fraction] | None) -> tuple[np.ndarray, list[Fraction] | None]:
        """A point of the fully reduced problem on the original's variables."""
        for s in reversed(self.steps):
            x, rational = s.reduction.invert_point(x, rational, s.applied.data, s.before)
        return x, rational

    def invert_bound(self, bound: Fraction | None) -> Fraction | None:
        """A lower bound of the fully reduced problem as one of the original (``None`` where it does not carry)."""
        for s in reversed(self.steps):
            if bound is None:
                return None
            if not s.applied.guarantee.bounds:
                return None
            bound = s.reduction.invert_bound(bound, s.applied.data, s.before)
        return bound

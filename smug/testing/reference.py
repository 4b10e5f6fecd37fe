"""A reference satisfiability-only backend that answers by enumeration.

It exists to test the shared search, the hard time limit and the enumeration of
alternatives without any solver: every ``check`` enumerates all assignments of
the binaries and compares objectives with the exact rational bound it was given.
Only for pure 0-1 problems with few variables.
"""

from __future__ import annotations

import itertools
import time
from fractions import Fraction

import numpy as np

from ..errors import UnsupportedProblemError
from ..ir import Problem
from ..solving.contract import Capabilities, SatBackend, SatSession, SolveParams
from .brute import MAX_BRUTE_FORCE_BINARIES
from .oracle import exactly_feasible

__all__ = ["EnumerationBackend"]


class _EnumerationSession(SatSession):
    def __init__(self, problem: Problem, delay: float | list[float], ignore_timeout: bool) -> None:
        self.problem = problem
        self.delays = [float(d) for d in (delay if isinstance(delay, (list, tuple)) else [delay])]
        self.ignore_timeout = ignore_timeout
        self._model: np.ndarray | None = None
        self.calls = 0
        self.stats: dict[str, object] = {}

    def check(self, bound: Fraction | None, timeout: float | None, strict: bool = False) -> str:
        delay = self.delays[min(self.calls, len(self.delays) - 1)]
        self.calls += 1
        if delay:
            if timeout is not None and timeout < delay and not self.ignore_timeout:
                time.sleep(timeout)
                return "unknown"
            time.sleep(delay)
        p = self.problem
        c = [Fraction(float(v)) for v in p.objective]
        const = Fraction(float(p.objective_constant))
        for bits in itertools.product((0, 1), repeat=p.n_vars):
            x = [Fraction(b) for b in bits]
            if not exactly_feasible(p, x):
                continue
            q = sum((ci * xi for ci, xi in zip(c, x)), const)
            if bound is not None and (q >= bound if strict else q > bound):
                continue
            self._model = np.array(bits, dtype=np.float64)
            return "sat"
        return "unsat"

    def model(self) -> np.ndarray:
        assert self._model is not None
        return self._model


class EnumerationBackend(SatBackend):
    """Decides ``objective <= k`` by enumerating every 0/1 assignment (exact arithmetic).

    Options: ``delay`` (seconds each check sleeps first, honouring the check's
    timeout: simulates a slow solver; a list gives one delay per check, the last
    repeating), ``ignore_timeout`` (sleep ``delay`` even past the timeout:
    simulates a solver that overruns its own limit) and the shared ``search`` option.
    """

    family = "enumeration"
    capabilities = Capabilities(
        optimize=False, relu=False, real_vars=False, exact=True, incremental=True, deterministic=True
    )

    def version(self) -> str | None:
        """Always available."""
        return "reference"

    def check(self, problem: Problem, params: SolveParams) -> None:
        """Only small pure 0-1 problems."""
        super().check(problem, params)
        if problem.n_vars > MAX_BRUTE_FORCE_BINARIES:
            raise UnsupportedProblemError(f"enumeration takes at most {MAX_BRUTE_FORCE_BINARIES} variables")

    def open_session(self, problem: Problem, params: SolveParams) -> SatSession:
        """A session that enumerates on every check."""
        return _EnumerationSession(problem, self.options.get("delay", 0.0), bool(self.options.get("ignore_timeout")))

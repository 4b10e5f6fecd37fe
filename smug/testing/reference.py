"""A reference satisfiability-only backend that answers by enumeration.

It exists to test the shared search routine, the hard time limit and the
enumeration of alternatives without any solver: every ``check`` enumerates all
assignments of the binaries.  Only for pure 0-1 problems with few variables.
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from ..errors import UnsupportedProblemError
from ..ir import Problem
from ..solving.contract import Capabilities, SatBackend, SatSession, SolveParams
from .brute import MAX_BRUTE_FORCE_BINARIES

__all__ = ["EnumerationBackend"]


class _EnumerationSession(SatSession):
    def __init__(self, problem: Problem, delay: float | list[float]) -> None:
        self.problem = problem
        self.delays = [float(d) for d in (delay if isinstance(delay, (list, tuple)) else [delay])]
        self._model: np.ndarray | None = None
        self.calls = 0

    def check(self, bound: float | None, timeout: float | None, strict: bool = False) -> str:
        delay = self.delays[min(self.calls, len(self.delays) - 1)]
        self.calls += 1
        if delay:
            if timeout is not None and timeout < delay:
                time.sleep(timeout)
                return "unknown"
            time.sleep(delay)
        p = self.problem
        for bits in itertools.product((0.0, 1.0), repeat=p.n_vars):
            x = np.array(bits)
            ev = p.evaluate(x, exact=True, tol=0.0)
            if not ev.feasible:
                continue
            if bound is not None and (ev.objective >= bound if strict else ev.objective > bound):
                continue
            self._model = x
            return "sat"
        return "unsat"

    def model(self) -> np.ndarray:
        assert self._model is not None
        return self._model


class EnumerationBackend(SatBackend):
    """Decides ``objective <= k`` by enumerating every 0/1 assignment (exact arithmetic).

    Options: ``delay`` (seconds each check sleeps first, honouring the check's
    timeout: simulates a slow solver; a list gives one delay per check, the last
    repeating), ``ignore_timeout`` (sleep ``delay`` even
    past the timeout: simulates a solver that overruns its own limit) and the
    shared ``search`` option.
    """

    family = "enumeration"
    capabilities = Capabilities(optimize=False, relu=False, real_vars=False, incremental=False, deterministic=True)

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
        s = _EnumerationSession(problem, self.options.get("delay", 0.0))
        if self.options.get("ignore_timeout"):
            orig = s.check

            def overrun(bound: float | None, timeout: float | None, strict: bool = False) -> str:
                return orig(bound, None, strict)

            s.check = overrun  # type: ignore[method-assign]
        return s

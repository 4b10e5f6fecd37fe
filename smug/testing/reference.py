"""Reference backends for tests: one that answers by enumeration, one that never answers.

:class:`EnumerationBackend` exists to test the shared search, the hard time
limit and the enumeration of alternatives without any solver: every ``check``
enumerates all assignments of the binaries and compares objectives with the
exact rational bound it was given.  Only for pure 0-1 problems with few
variables.  :class:`StuckBackend` is a solver hung in native code: it ignores
every limit, so only the hard limit's kill can stop it.
"""

from __future__ import annotations

import itertools
import os
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import UnsupportedProblemError
from ..ir import Problem
from ..solving.contract import Backend, Capabilities, Incumbent, Reporter, SatBackend, SatSession, Solution, SolveParams
from .brute import MAX_BRUTE_FORCE_BINARIES
from .oracle import exactly_feasible

__all__ = ["EnumerationBackend", "StuckBackend"]


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


class StuckBackend(Backend):
    """A backend that never answers and ignores its time limit (a solver hung in native code).

    It takes no shared reductions, so no presolve or greedy start answers for it.
    Options: ``pid_file`` (write the solving process's pid there first),
    ``report_first`` (report the all-ones assignment as an incumbent first: it is
    feasible for covering rows, so a stopped solve is ``feasible``), ``die``
    (exit the solving process with status 3 instead of hanging: a crashed solver).
    """

    family = "stuck"
    capabilities = Capabilities(
        optimize=True, relu=True, real_vars=True, native_time_limit=False, deterministic=True, reductions=frozenset()
    )

    def version(self) -> str | None:
        """Always available."""
        return "1"

    def solve(self, problem: Problem, params: SolveParams, report: Reporter, hint: object = None) -> Solution:
        """Hang (or die) as the options say; never returns."""
        pid_file = self.options.get("pid_file")
        if pid_file:
            Path(pid_file).write_text(str(os.getpid()))
        if self.options.get("die"):
            os._exit(3)
        if self.options.get("report_first"):
            x = np.ones(problem.n_vars)
            report(Incumbent(x, float(problem.objective @ x + problem.objective_constant)))
        while True:
            time.sleep(0.05)

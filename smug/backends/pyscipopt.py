"""``pyscipopt``: SCIP through its own Python interface, PySCIPOpt.

SCIP 10 has a numerically exact mode (``Model.enableExactSolving``, rational
LPs and safe bounds), which would make this an exact backend.  The PyPI wheel
of PySCIPOpt 6 (SCIP 10.0) is built without it: enabling it fails with "SCIP
was compiled without exact solve support".  :func:`exact_mode_available`
probes for it; where it is missing (here) the backend is a plain MILP backend,
``exact=False`` like ``ortools:scip``: its optimum, infeasibility and bound are
claims within SCIP's tolerances, certified by ``smug.solve`` before they are
reported.  With an exact build, ``PySCIPOptBackend(exact_mode=True)`` switches
the mode on; its answers are still certified (smug cannot tell from outside
whether a build's exact mode covers every plugin it uses).

The problem arrives ReLU-free (the big-M reduction runs first).  Settings:
feasibility tolerance 1e-9 (``numerics/feastol``), relative gap 0, absolute gap
1e-9, ``randomization/randomseedshift`` = seed, the time limit
(``limits/time``); strict rows get right-hand sides rounded never weaker.
Every improving solution is reported through a ``BESTSOLFOUND`` event handler.
"""

from __future__ import annotations

import math
import time
from functools import cache
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError, UnsupportedProblemError
from ..ir import GE, LE, Problem
from ..ir.exact import rounded_rhs
from ..solving.contract import Backend, Capabilities, Incumbent, Reporter, Solution, SolveParams, Status
from ..solving.deadline import Deadline

__all__ = ["PySCIPOptBackend", "exact_mode_available"]

_FEAS_TOL = 1e-9
_INFINITY = 1e20


@cache
def _version() -> str | None:
    try:
        import pyscipopt
    except ImportError:
        return None
    return f"pyscipopt {pyscipopt.__version__} / SCIP {pyscipopt.Model().version()}"


@cache
def exact_mode_available() -> bool:
    """Whether this PySCIPOpt's SCIP was built with exact solving (the PyPI wheels are not)."""
    if _version() is None:
        return False
    import pyscipopt

    m = pyscipopt.Model()
    m.hideOutput()
    try:
        m.enableExactSolving(True)
    except Exception:
        return False
    return True


class PySCIPOptBackend(Backend):
    """SCIP via PySCIPOpt (see the module docstring).  Option: ``exact_mode`` (needs an exact SCIP build)."""

    family: ClassVar[str] = "pyscipopt"
    capabilities: ClassVar[Capabilities] = Capabilities(
        optimize=True,
        relu=False,
        real_vars=True,
        exact=False,
        tolerance=_FEAS_TOL,
        native_time_limit=True,
        seed=True,
        max_threads=1,
        proves_bound=True,
    )
    OPTIONS = ("exact_mode",)
    INSTALL = "pip install pyscipopt"

    def __init__(self, name: str | None = None, **options: Any) -> None:
        super().__init__(name=name or "pyscipopt", **options)
        self.exact_mode = options.get("exact_mode", False)
        if not isinstance(self.exact_mode, bool):
            raise ConfigError(f"exact_mode must be True or False, got {self.exact_mode!r}")

    def version(self) -> str | None:
        """``"pyscipopt <version> / SCIP <version>"``, or ``None`` when PySCIPOpt is missing."""
        return _version()

    def check(self, problem: Problem, params: SolveParams) -> None:
        """The declared capabilities; an exact mode this build lacks; magnitudes SCIP reads as infinite."""
        super().check(problem, params)
        if self.exact_mode and not exact_mode_available():
            raise ConfigError(
                "exact_mode=True: this SCIP was compiled without exact solve support (the PyPI wheels are); "
                "build SCIP 10 with exact solving, or drop exact_mode (smug certifies SCIP's claims anyway)"
            )
        vals = np.concatenate(
            [np.abs(problem.A.data), np.abs(problem.effective_rhs()), np.abs(problem.lb), np.abs(problem.ub)]
        )
        if float(vals.max(initial=0.0)) >= _INFINITY:
            raise UnsupportedProblemError(
                f"backend {self.name!r}: a magnitude of {float(vals.max()):g}; SCIP reads 1e20 and above as "
                "infinite. Rescale the problem, or use an exact backend such as 'z3'"
            )

    def solve(
        self, problem: Problem, params: SolveParams, report: Reporter, hint: np.ndarray | None = None
    ) -> Solution:
        """Build the SCIP model row by row, solve, read the answer back (a claim: ``smug.solve`` certifies it)."""
        import pyscipopt as ps

        if problem.n_relu:
            raise UnsupportedProblemError(f"{self.name} takes ReLU-free problems; call it through smug.solve")
        t0 = time.perf_counter()
        deadline = Deadline(params.time_limit)
        m = ps.Model()
        if not params.verbose:
            m.hideOutput()
        if self.exact_mode:
            m.enableExactSolving(True)
        binary = problem.is_binary.tolist()
        x = [
            m.addVar(name=f"x{j}", vtype="B" if binary[j] else "C", lb=float(lo), ub=float(hi))
            for j, (lo, hi) in enumerate(zip(problem.lb.tolist(), problem.ub.tolist()))
        ]
        rhs = rounded_rhs(problem, tighten=True).tolist()
        A = problem.A
        for i, s in enumerate(problem.sense.tolist()):
            lo, hi = A.indptr[i], A.indptr[i + 1]
            expr = ps.quicksum(c * x[j] for j, c in zip(A.indices[lo:hi].tolist(), A.data[lo:hi].tolist()))
            if s == GE:
                m.addCons(expr >= rhs[i])
            elif s == LE:
                m.addCons(expr <= rhs[i])
            else:
                m.addCons(expr == rhs[i])
        c = problem.objective.tolist()
        m.setObjective(ps.quicksum(c[j] * x[j] for j in np.flatnonzero(problem.objective).tolist()), "minimize")
        if problem.objective_constant:
            m.addObjoffset(float(problem.objective_constant))
        m.setParam("numerics/feastol", _FEAS_TOL)
        m.setParam("limits/gap", 0.0)
        m.setParam("limits/absgap", 1e-9)
        m.setParam("randomization/randomseedshift", int(params.seed % (2**31 - 1)))
        limit = deadline.solver_limit()
        if limit is not None:
            m.setParam("limits/time", max(limit, 1e-3))

        def lift(vals: list[float]) -> np.ndarray:
            v = np.asarray(vals, dtype=np.float64)
            return np.where(problem.is_binary, np.clip(np.rint(v), 0.0, 1.0), np.clip(v, problem.lb, problem.ub))

        class _Found(ps.Eventhdlr):
            def eventinit(self) -> None:
                self.model.catchEvent(ps.SCIP_EVENTTYPE.BESTSOLFOUND, self)

            def eventexec(self, event: Any) -> None:
                sol = self.model.getBestSol()
                xs = lift([self.model.getSolVal(sol, v) for v in x])
                report(Incumbent(xs, problem.objective_value(xs)))

        m.includeEventhdlr(_Found(), "smug_incumbents", "reports improving solutions")
        build_time = time.perf_counter() - t0
        t1 = time.perf_counter()
        m.optimize()
        st = m.getStatus()
        stats: dict[str, Any] = {"scip_status": st, "nodes": int(m.getNNodes())}
        xs = lift([m.getVal(v) for v in x]) if m.getNSols() > 0 else None
        bound = m.getDualbound() if st != "infeasible" else None
        fb = float(bound) if bound is not None and math.isfinite(bound) and abs(bound) < _INFINITY else None
        if st == "optimal":
            status, msg = Status.OPTIMAL, "SCIP claims optimality within its tolerances"
        elif st == "infeasible":
            status, msg = Status.INFEASIBLE, "SCIP claims infeasibility within its tolerances"
        elif st in ("timelimit", "userinterrupt", "nodelimit", "gaplimit", "sollimit", "memlimit"):
            status = Status.FEASIBLE if xs is not None else Status.stopped(False, deadline.seconds is not None)
            msg = f"SCIP stopped ({st})" + (" with a solution" if xs is not None else " without a solution")
        else:
            status, msg = Status.ERROR, f"SCIP ended with status {st!r}"
        if status.has_solution and xs is None:
            status, msg = Status.ERROR, f"SCIP reported {st!r} without a solution"
        m.freeProb()
        return Solution(
            status,
            assignment=xs if status.has_solution else None,
            objective=None if xs is None or not status.has_solution else problem.objective_value(xs),
            float_bound=fb,
            build_time=build_time,
            solve_time=time.perf_counter() - t1,
            message=msg,
            stats=stats,
        )

"""``gurobi``: Gurobi through ``gurobipy``'s matrix API.

The problem arrives ReLU-free (``smug.solve`` runs the big-M reduction); it is
lowered in one ``addMVar`` (binaries ``'B'``, reals ``'C'``) and one
``addMConstr`` on the CSR matrix, with strict rows' right-hand sides rounded
never weaker (:func:`smug.ir.exact.rounded_rhs`).  Gurobi works within float
tolerances, so the backend declares ``exact=False``: its optimum,
infeasibility and bound are *claims*, certified by ``smug.solve``; its bound
(``ObjBound``) is kept as ``Solution.float_bound``.  Incumbents are streamed
from the ``MIPSOL`` callback; binaries are rounded to 0/1 and reals clipped to
their bounds on the way back.

Settings: ``FeasibilityTol`` and ``IntFeasTol`` 1e-9 (Gurobi's smallest),
``MIPGap`` 0, ``MIPGapAbs`` 1e-9, ``TimeLimit``, ``Seed``, ``Threads``,
``OutputFlag`` 0 unless ``verbose`` (set on an empty environment before it
starts, so no licence banner prints); ``Start`` from the greedy hint.
``INF_OR_UNBD`` is re-solved with ``DualReductions`` 0 for a definite answer.
Gurobi silently drops matrix coefficients below 1e-13 (a warning only when its
log is on), so on such rows its claims, infeasibility included, can be wrong;
certification is what makes them safe (tests/test_backend_gurobi.py).
The licence in the ``gurobipy`` wheel is size-limited (2000 variables and 2000
linear constraints); a larger model raises :class:`~smug.errors.LicenseLimitError`.
"""

from __future__ import annotations

import math
import time
from functools import cache
from typing import Any, ClassVar

import numpy as np

from ..errors import LicenseLimitError, UnsupportedProblemError
from ..ir import GE, LE, Problem
from ..ir.exact import rounded_rhs
from ..solving.contract import Backend, Capabilities, Incumbent, Reporter, Solution, SolveParams, Status
from ..solving.deadline import Deadline

__all__ = ["GurobiBackend"]

_TOL = 1e-9
_INT32_MAX = 2**31 - 1
_SIZE_LIMIT, _NO_LICENSE = 10010, 10009  # GRB.Error.SIZE_LIMIT_EXCEEDED, GRB.Error.NO_LICENSE


@cache
def _gurobi_version() -> str | None:
    try:
        import gurobipy as gp
    except ImportError:
        return None
    return f"gurobipy {gp.__version__} / Gurobi {'.'.join(map(str, gp.gurobi.version()))}"


class GurobiBackend(Backend):
    """Gurobi on ReLU-free MILPs (see the module docstring); its claims are certified by ``smug.solve``."""

    family: ClassVar[str] = "gurobi"
    capabilities: ClassVar[Capabilities] = Capabilities(
        optimize=True,
        relu=False,
        real_vars=True,
        exact=False,
        tolerance=_TOL,
        native_time_limit=True,
        seed=True,
        max_threads=None,
        proves_bound=True,
        hints=True,
    )

    OPTIONS = ()
    INSTALL = "pip install gurobipy (its wheel's licence is size-limited: a user's own licence serves real sizes)"

    def version(self) -> str | None:
        """``"gurobipy <version> / Gurobi <version>"``, or ``None`` when ``gurobipy`` cannot be imported."""
        return _gurobi_version()

    def _licence_error(self, exc: Any, problem: Problem) -> LicenseLimitError:
        fix = (
            "install your own Gurobi licence (https://www.gurobi.com/academia/ for academic licences) "
            "or choose another backend such as 'ortools:scip'"
        )
        if exc.errno == _SIZE_LIMIT:
            return LicenseLimitError(
                f"{self.name}: the model has {problem.n_vars} variables and {problem.n_rows} rows, beyond the "
                f"size-limited licence that comes with the gurobipy wheel (2000 variables, 2000 constraints; "
                f"GurobiError {exc.errno}: {exc}); {fix}"
            )
        return LicenseLimitError(f"{self.name}: Gurobi refused its licence (GurobiError {exc.errno}: {exc}); {fix}")

    def solve(
        self, problem: Problem, params: SolveParams, report: Reporter, hint: np.ndarray | None = None
    ) -> Solution:
        """Lower to one matrix model, solve, read the answer back (a claim: ``smug.solve`` certifies it)."""
        import gurobipy as gp
        from gurobipy import GRB

        if problem.n_relu:
            raise UnsupportedProblemError(f"{self.name} takes ReLU-free problems; call it through smug.solve")
        t0 = time.perf_counter()
        deadline = Deadline(params.time_limit)
        env = model = None
        try:
            env = gp.Env(empty=True)
            env.setParam("OutputFlag", 0)
            env.start()
            model = gp.Model(env=env)
            is_bin = problem.is_binary
            x = model.addMVar(problem.n_vars, lb=problem.lb, ub=problem.ub, vtype=np.where(is_bin, "B", "C"))
            if problem.n_rows:
                s = problem.sense
                sense = np.where(s == GE, GRB.GREATER_EQUAL, np.where(s == LE, GRB.LESS_EQUAL, GRB.EQUAL))
                model.addMConstr(problem.A, x, sense, rounded_rhs(problem))
            model.setObjective(problem.objective @ x + float(problem.objective_constant), GRB.MINIMIZE)
            if hint is not None:
                x.Start = np.asarray(hint, dtype=np.float64)
            settings = dict(OutputFlag=int(params.verbose), FeasibilityTol=_TOL, IntFeasTol=_TOL, MIPGap=0.0)
            settings.update(MIPGapAbs=_TOL, Seed=params.seed % _INT32_MAX, Threads=params.threads)
            for k, v in settings.items():
                model.setParam(k, v)

            def lifted(v: np.ndarray) -> np.ndarray:
                return np.where(is_bin, np.clip(np.rint(v), 0.0, 1.0), np.clip(v, problem.lb, problem.ub))

            def callback(m: Any, where: int) -> None:
                if where == GRB.Callback.MIPSOL:
                    v = lifted(np.asarray(m.cbGetSolution(x), dtype=np.float64))
                    report(Incumbent(v, problem.objective_value(v)))

            def run() -> int:
                limit = deadline.solver_limit()
                model.setParam("TimeLimit", GRB.INFINITY if limit is None else limit)
                model.optimize(callback)
                return int(model.Status)

            build_time = time.perf_counter() - t0
            t1 = time.perf_counter()
            code = run()
            stats: dict[str, Any] = {"gurobi_status": code}
            if code == GRB.INF_OR_UNBD:  # bounded variables: "unbounded" cannot be; ask for a definite answer
                model.reset()
                model.setParam("DualReductions", 0)
                code = stats["gurobi_status_dual_reductions_off"] = run()
            xs = None
            if model.SolCount > 0:
                xs = lifted(np.asarray(x.X, dtype=np.float64))
                report(Incumbent(xs, problem.objective_value(xs)))
            fb = None
            if code in (GRB.OPTIMAL, GRB.TIME_LIMIT, GRB.SUBOPTIMAL, GRB.INTERRUPTED):
                try:
                    fb = float(model.ObjBound if model.IsMIP else model.ObjVal)
                except (gp.GurobiError, AttributeError):
                    fb = None
                fb = fb if fb is not None and math.isfinite(fb) else None
            stats["nodes"] = int(model.NodeCount) if model.IsMIP else 0
        except gp.GurobiError as exc:
            if exc.errno in (_SIZE_LIMIT, _NO_LICENSE):
                raise self._licence_error(exc, problem) from None
            raise
        finally:
            if model is not None:
                model.dispose()
            if env is not None:
                env.dispose()
        if code == GRB.OPTIMAL:
            status, message = Status.OPTIMAL, "Gurobi claims optimality within its tolerances"
        elif code == GRB.INFEASIBLE:
            status, message = Status.INFEASIBLE, "Gurobi claims infeasibility within its tolerances"
        elif code in (GRB.INF_OR_UNBD, GRB.UNBOUNDED, GRB.LOADED, GRB.INPROGRESS):
            status, message = Status.ERROR, f"Gurobi ended with status {code} on a problem with bounded variables"
        else:  # a limit (time, nodes, work, memory), an interrupt, numerical trouble or a suboptimal end
            status = Status.stopped(xs is not None, code == GRB.TIME_LIMIT)
            message = f"Gurobi stopped {'with' if xs is not None else 'without'} a solution (status {code})"
        if status.has_solution and xs is None:
            status, message = Status.ERROR, f"Gurobi reported status {code} without a solution"
        return Solution(
            status=status,
            assignment=xs,
            objective=None if xs is None else problem.objective_value(xs),
            float_bound=fb,
            build_time=build_time,
            solve_time=time.perf_counter() - t1,
            message=message,
            stats=stats,
        )

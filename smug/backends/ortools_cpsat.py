"""``ortools:cpsat``: OR-Tools' CP-SAT solver on integer 0/1 problems.

CP-SAT works on integers, so it declares ``integer_coefficients``: ``smug.solve``
hands it the problem after the sound integer-scaling reduction
(:mod:`smug.reductions.integer_scaling`; ``rounding="tight"`` by default, or
``"relaxed"``; ``coef_bits`` bounds the scaled rows).  On integers CP-SAT is
exact, so its verdicts are proofs on the problem it gets; whether they carry
over to the real rows is the chain's business (rounding that changed a row is
certified by ``smug.solve``).  This module only lowers the integer rows into a
``CpModelProto``, sets CP-SAT's parameters and reads the answer back.

Settings: relative and absolute gap 0, ``random_seed``, ``num_workers`` =
``threads``, the solver's time limit.  OR-Tools 9.15's presolve step
``ProcessAtMostOneAndLinear`` can certify a wrong optimum on 0/1 models with
large scaled coefficients (google/or-tools#5293, reproduced here near 2**36),
so ``presolve_inclusion_work_limit = 0`` switches it off.
"""

from __future__ import annotations

import math
import time
from fractions import Fraction
from functools import cache
from typing import Any, ClassVar

import numpy as np

from ..ir import EQ, GE, LE, Problem
from ..reductions.integer_scaling import as_ints, check_options
from ..solving.contract import Backend, Capabilities, Incumbent, Reporter, Solution, SolveParams, Status
from ..solving.deadline import Deadline

__all__ = ["ORToolsCPSATBackend"]

_INT32_MAX = 2**31 - 1
_CP_UNKNOWN, _CP_MODEL_INVALID, _CP_FEASIBLE, _CP_INFEASIBLE, _CP_OPTIMAL = 0, 1, 2, 3, 4
_CP_STATUS = {0: "UNKNOWN", 1: "MODEL_INVALID", 2: "FEASIBLE", 3: "INFEASIBLE", 4: "OPTIMAL"}


@cache
def _cpsat_version() -> str | None:
    import importlib.util

    try:
        import ortools

        # found, not imported: cp_model's import takes about a second (it pulls in pandas), which
        # `smug backends` need not pay; check() imports it before a solve forks its child
        if importlib.util.find_spec("ortools.sat.python.cp_model") is None:
            return None
    except ImportError:
        return None
    return f"ortools {getattr(ortools, '__version__', 'unknown')} / CP-SAT"


def _ints(vals: np.ndarray, what: str) -> list[int]:
    return as_ints(vals, what, "CP-SAT")


class ORToolsCPSATBackend(Backend):
    """CP-SAT on integer 0/1 problems (see the module docstring).

    Options: ``rounding`` (``"tight"`` or ``"relaxed"``) and ``coef_bits`` (8..60,
    default 50), both read by the integer-scaling reduction ``smug.solve`` runs first.
    """

    family: ClassVar[str] = "ortools"
    capabilities: ClassVar[Capabilities] = Capabilities(
        optimize=True,
        relu=False,
        real_vars=False,
        exact=True,
        integer_coefficients=True,
        native_time_limit=True,
        seed=True,
        max_threads=None,
        proves_bound=True,
        hints=True,
    )

    OPTIONS = ("rounding", "coef_bits")
    INSTALL = "pip install ortools"

    def __init__(self, name: str | None = None, **options: Any) -> None:
        super().__init__(name=name or "ortools:cpsat", **options)
        check_options(options)

    def version(self) -> str | None:
        """``"ortools <version> / CP-SAT"``, or ``None`` when OR-Tools (or its CP-SAT module) is missing."""
        return _cpsat_version()

    def check(self, problem: Problem, params: SolveParams) -> None:
        """The declared capabilities; also imports CP-SAT here, in the parent, so a forked solve does not pay it."""
        from ortools.sat.python import cp_model  # noqa: F401

        super().check(problem, params)

    def solve(
        self, problem: Problem, params: SolveParams, report: Reporter, hint: np.ndarray | None = None
    ) -> Solution:
        """Lower the integer rows to a ``CpModelProto``, solve, and read the answer back."""
        from ortools.sat.python import cp_model

        t0 = time.perf_counter()
        deadline = Deadline(params.time_limit)
        model = cp_model.CpModel()
        P = model.proto
        for lb, ub in zip(_ints(problem.lb, "bounds"), _ints(problem.ub, "bounds")):
            P.variables.add().domain.extend([lb, ub])
        A = problem.A
        data = _ints(A.data, "coefficients")
        rhs = _ints(problem.effective_rhs(), "right-hand sides")
        ind, ptr = A.indices.tolist(), A.indptr.tolist()
        absrow = np.asarray(abs(A).sum(axis=1)).ravel().astype(np.int64).tolist() if problem.n_rows else []
        for i, (s, r) in enumerate(zip(problem.sense.tolist(), rhs)):
            lo, hi = ptr[i], ptr[i + 1]
            if lo == hi:
                holds = r <= 0 if s == GE else r >= 0 if s == LE else r == 0
                if not holds:
                    P.constraints.add().bool_or.literals.extend([])  # an empty clause: false
                continue
            ct = P.constraints.add().linear
            ct.vars.extend(ind[lo:hi])
            ct.coeffs.extend(data[lo:hi])
            span = absrow[i] + abs(r)
            if s == GE:
                ct.domain.extend([r, max(r, span)])
            elif s == LE:
                ct.domain.extend([min(r, -span), r])
            else:
                assert s == EQ
                ct.domain.extend([r, r])
        obj = _ints(problem.objective, "objective coefficients")
        nz = [j for j, c in enumerate(obj) if c]
        if nz:
            P.objective.vars.extend(nz)
            P.objective.coeffs.extend([obj[j] for j in nz])
        if hint is not None:
            P.solution_hint.vars.extend(range(problem.n_vars))
            P.solution_hint.values.extend(int(round(v)) for v in np.asarray(hint).tolist())
        build_time = time.perf_counter() - t0

        const = Fraction(float(problem.objective_constant))

        def exact_obj(x: np.ndarray) -> Fraction:
            return sum((Fraction(obj[j]) for j in nz if x[j] > 0.5), const)

        solver = cp_model.CpSolver()
        prm = solver.parameters
        limit = deadline.solver_limit()
        if limit is not None:
            prm.max_time_in_seconds = limit
        prm.random_seed = int(params.seed % _INT32_MAX)
        prm.num_workers = int(params.threads)
        prm.log_search_progress = bool(params.verbose)
        prm.relative_gap_limit = 0.0
        prm.absolute_gap_limit = 0.0
        if hasattr(prm, "presolve_inclusion_work_limit"):
            prm.presolve_inclusion_work_limit = 0  # google/or-tools#5293 (see the module docstring)

        class _Callback(cp_model.CpSolverSolutionCallback):
            def on_solution_callback(self) -> None:
                x = np.asarray(self.response_proto.solution, dtype=np.float64)
                q = exact_obj(x)
                report(Incumbent(x, float(q), None, q, None))

        t1 = time.perf_counter()
        st = int(solver.solve(model, _Callback()))
        resp = solver.response_proto
        stats = {"cpsat_status": _CP_STATUS.get(st, str(st)), "num_conflicts": int(resp.num_conflicts)}
        x = None
        if st in (_CP_FEASIBLE, _CP_OPTIMAL) and len(resp.solution) == problem.n_vars:
            x = np.asarray(resp.solution, dtype=np.float64)
        bound = None
        if st in (_CP_FEASIBLE, _CP_OPTIMAL, _CP_UNKNOWN) and nz:
            b = float(resp.best_objective_bound)
            if math.isfinite(b):  # CP-SAT's bound on an integer objective is an integer (a double here)
                bound = Fraction(math.ceil(b - 1e-6)) + const
        elif st in (_CP_FEASIBLE, _CP_OPTIMAL):
            bound = const
        solve_time = time.perf_counter() - t1
        if st == _CP_MODEL_INVALID:
            return Solution(Status.ERROR, message=f"CP-SAT rejected the model: {model.validate()}", stats=stats)
        if st == _CP_INFEASIBLE:
            return Solution(Status.INFEASIBLE, build_time=build_time, solve_time=solve_time, stats=stats)
        q = None if x is None else exact_obj(x)
        if st == _CP_OPTIMAL and x is not None:
            status, msg, bound = Status.OPTIMAL, "", q
        elif x is not None:
            status, msg = Status.FEASIBLE, "CP-SAT stopped at the time limit with a solution"
        else:
            status = Status.stopped(False, deadline.seconds is not None)
            msg = "CP-SAT stopped without a solution"
        return Solution(
            status,
            assignment=x,
            objective=None if q is None else float(q),
            exact_objective=q,
            exact_bound=bound,
            build_time=build_time,
            solve_time=solve_time,
            message=msg,
            stats=stats,
        )

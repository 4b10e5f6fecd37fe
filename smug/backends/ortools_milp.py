"""``ortools:scip``, ``ortools:highs``, ``ortools:cbc``: MILP solvers through OR-Tools' ``pywraplp``.

The problem arrives ReLU-free (``smug.solve`` runs the big-M reduction); one
``MPModelProto`` is filled from the CSR matrix by OR-Tools' C++ model-builder
helper and loaded with ``LoadModelFromProto`` (docs/backends.md has the build
times).  MILP solvers work within float tolerances, so the backend declares
``exact=False``: its optimum, infeasibility and bound are *claims*, certified
by ``smug.solve`` before they are reported (:mod:`smug.solving.certify`); its
bound is kept as ``Solution.float_bound``.  Strict rows get right-hand sides
rounded never weaker (:func:`smug.ir.exact.rounded_rhs`).

Settings: relative MIP gap 0, absolute gap 1e-9, feasibility tolerance 1e-9
(SCIP ``numerics/feastol``, HiGHS ``mip_feasibility_tolerance`` and
``primal_feasibility_tolerance``); CBC's tolerances (1e-7 primal, 1e-6
integrality) cannot be set through ``pywraplp``, it takes no seed and one
thread (declared deterministic); HiGHS ignores the thread count there.
Magnitudes read as infinite (1e20; HiGHS coefficients from 1e15) are refused
by :meth:`ORToolsMILPBackend.check`.  Binaries are rounded to 0/1 and reals
clipped to their bounds on the way back.
"""

from __future__ import annotations

import math
import time
from functools import cache
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from ..errors import BackendNotInstalledError, ConfigError, UnsupportedProblemError
from ..ir import GE, LE, Problem
from ..ir.exact import RowSides, rounded_rhs
from ..solving.contract import Backend, Capabilities, Incumbent, Reporter, Session, Solution, SolveParams, Status
from ..solving.deadline import Deadline

__all__ = ["ORToolsMILPBackend", "MILPSession", "MILP_SOLVERS", "mp_model_proto"]

#: The MILP solvers :class:`ORToolsMILPBackend` drives, by their ``pywraplp`` names.
MILP_SOLVERS = ("SCIP", "HIGHS", "CBC")

_FEAS_TOL = 1e-9
_ABS_GAP = 1e-9
_INT32_MAX = 2**31 - 1
_MILP_INFINITY = 1e20
_HIGHS_MAX_COEF = 1e15

_COMMON = dict(
    optimize=True, relu=False, real_vars=True, exact=False, native_time_limit=True, proves_bound=True, sessions=True
)
_MILP_CAPS = {
    "SCIP": Capabilities(**_COMMON, tolerance=_FEAS_TOL, seed=True, max_threads=None),  # type: ignore[arg-type]
    "HIGHS": Capabilities(**_COMMON, tolerance=_FEAS_TOL, seed=True, max_threads=1),  # type: ignore[arg-type]
    "CBC": Capabilities(**_COMMON, tolerance=1e-6, seed=False, deterministic=True, max_threads=1),  # type: ignore[arg-type]
}

# pywraplp result codes (MPSolverResponseStatus values pass through for HiGHS)
_MP_UNKNOWN = 99
_MP_STATUS_NAMES = {
    0: "OPTIMAL",
    1: "FEASIBLE",
    2: "INFEASIBLE",
    3: "UNBOUNDED",
    4: "ABNORMAL",
    5: "MODEL_INVALID",
    6: "NOT_SOLVED",
    84: "MODEL_INVALID_SOLUTION_HINT",
    85: "MODEL_INVALID_SOLVER_PARAMETERS",
    86: "SOLVER_TYPE_UNAVAILABLE",
    87: "INCOMPATIBLE_OPTIONS",
    99: "UNKNOWN_STATUS",
}


def _ortools_version() -> str | None:
    try:
        import ortools
    except ImportError:
        return None
    return str(getattr(ortools, "__version__", "unknown"))


@cache
def _milp_solver_version(solver: str) -> str | None:
    """``"ortools X / SCIP (SCIP 10.0.0 ...)"``, or ``None`` when OR-Tools or this solver is missing."""
    ver = _ortools_version()
    if ver is None:
        return None
    try:
        from ortools.linear_solver import pywraplp
    except ImportError:
        return None
    s = pywraplp.Solver.CreateSolver(solver)
    if s is None:  # OR-Tools is there, but this build lacks the solver
        return None
    inner = "" if solver == "HIGHS" else s.SolverVersion()  # pywraplp's HiGHS reports "PDLP Solver"
    return f"ortools {ver} / {solver}" + (f" ({inner})" if inner else "")


def _row_bounds(problem: Problem, rhs_eff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = problem.sense
    lo = np.where(s == LE, -np.inf, rhs_eff)
    hi = np.where(s == GE, np.inf, rhs_eff)
    return lo.astype(np.float64), hi.astype(np.float64)


def mp_model_proto(problem: Problem, rhs_eff: np.ndarray) -> Any:
    """The ``MPModelProto`` of a ReLU-free problem (minimisation), filled by OR-Tools' C++ helper in one call."""
    from ortools.linear_solver.python import model_builder_helper as mbh

    if not hasattr(mbh.ModelBuilderHelper, "fill_model_from_sparse_data"):  # pragma: no cover - old OR-Tools
        raise BackendNotInstalledError(
            "this OR-Tools is too old for smug's MILP backends: pip install --upgrade ortools"
        )
    lo, hi = _row_bounds(problem, rhs_eff)
    h = mbh.ModelBuilderHelper()
    h.fill_model_from_sparse_data(
        np.ascontiguousarray(problem.lb, dtype=np.float64),
        np.ascontiguousarray(problem.ub, dtype=np.float64),
        np.ascontiguousarray(problem.objective, dtype=np.float64),
        lo,
        hi,
        sp.csr_matrix(problem.A, dtype=np.float64),
    )
    for j in np.flatnonzero(problem.is_binary).tolist():
        h.set_var_integrality(j, True)
    if problem.objective_constant:
        h.set_objective_offset(float(problem.objective_constant))
    return mbh.to_mpmodel_proto(h)


class ORToolsMILPBackend(Backend):
    """SCIP, HiGHS or CBC through OR-Tools' ``pywraplp`` (see the module docstring).

    Construct as ``ORToolsMILPBackend(name="ortools:scip", solver="SCIP")``;
    ``solver`` is one of :data:`MILP_SOLVERS`.  Capabilities depend on the
    solver: SCIP takes any thread count (concurrent solve), HiGHS and CBC one
    thread; CBC takes no seed and is declared deterministic.
    """

    family: ClassVar[str] = "ortools"
    capabilities: Capabilities = _MILP_CAPS["SCIP"]

    OPTIONS = ()

    def __init__(self, name: str | None = None, solver: str = "SCIP", **options: Any) -> None:
        solver = str(solver).upper()
        if solver not in MILP_SOLVERS:
            raise ConfigError(f"unknown OR-Tools MILP solver {solver!r}; choose one of {', '.join(MILP_SOLVERS)}")
        super().__init__(name=name or f"ortools:{solver.lower()}", **options)
        self.solver = solver
        self.capabilities = _MILP_CAPS[solver]

    def version(self) -> str | None:
        """``"ortools <version> / <SOLVER> (<solver version>)"``; ``None`` if OR-Tools or this solver is missing."""
        return _milp_solver_version(self.solver)

    def install_hint(self) -> str:
        """``pip install ortools`` (``--upgrade`` when the installed build lacks this solver)."""
        if _ortools_version() is not None and self.version() is None:
            return "pip install --upgrade ortools"
        return "pip install ortools"

    def check(self, problem: Problem, params: SolveParams) -> None:
        """The declared capabilities, plus numbers the solver would read as infinite (or, for HiGHS, invalid).

        SCIP, HiGHS and CBC treat magnitudes of 1e20 and above as infinity;
        HiGHS also rejects matrix coefficients of 1e15 and above.  ReLU bounds
        count as coefficients (they become the big-M values).
        """
        super().check(problem, params)
        coef = np.concatenate([np.abs(problem.A.data), np.abs(problem.relu_lb), np.abs(problem.relu_ub)])
        other = np.concatenate(
            [
                np.abs(problem.effective_rhs()),
                np.abs(problem.lb),
                np.abs(problem.ub),
                np.abs(problem.objective),
                [abs(problem.objective_constant)],
            ]
        )
        limit_coef = _HIGHS_MAX_COEF if self.solver == "HIGHS" else _MILP_INFINITY
        for what, vals, limit in (
            ("a constraint coefficient", coef, limit_coef),
            ("a bound, rhs or objective value", other, _MILP_INFINITY),
        ):
            big = float(vals.max(initial=0.0))
            if big >= limit:
                raise UnsupportedProblemError(
                    f"backend {self.name!r}: {what} has magnitude {big:g}; {self.solver} reads magnitudes of "
                    f"{limit:g} and above as infinite or invalid. Rescale the problem, or use 'ortools:cpsat' "
                    "(0/1 problems) or an SMT backend such as 'z3'"
                )

    def _specific_params(self, params: SolveParams) -> str:
        if self.solver == "SCIP":
            return f"limits/absgap = {_ABS_GAP!r}\nrandomization/randomseedshift = {params.seed % _INT32_MAX}"
        if self.solver == "HIGHS":
            quiet = [] if params.verbose else ["output_flag=false", "log_to_console=false"]
            return ",".join(
                quiet
                + [
                    "mip_rel_gap=0",
                    f"mip_abs_gap={_ABS_GAP!r}",
                    f"mip_feasibility_tolerance={_FEAS_TOL!r}",
                    f"primal_feasibility_tolerance={_FEAS_TOL!r}",
                    f"random_seed={params.seed % _INT32_MAX}",
                ]
            )
        return ""

    def _configure(self, solver: Any, params: SolveParams) -> Any:
        """Output, threads and the solver's own parameters; returns the ``MPSolverParameters`` of a solve."""
        from ortools.linear_solver import pywraplp

        if params.verbose:
            solver.EnableOutput()
        else:
            solver.SuppressOutput()
        if params.threads > 1:
            solver.SetNumThreads(int(params.threads))
        spec = self._specific_params(params)
        if spec:
            solver.SetSolverSpecificParametersAsString(spec)  # pywraplp's HiGHS answers False but uses it
        mpp = pywraplp.MPSolverParameters()
        mpp.SetDoubleParam(mpp.RELATIVE_MIP_GAP, 0.0)
        if self.solver == "SCIP":
            mpp.SetDoubleParam(mpp.PRIMAL_TOLERANCE, _FEAS_TOL)
        return mpp

    def _load(self, problem: Problem) -> tuple[Any, str | None]:
        """A ``pywraplp`` solver loaded with ``problem`` (and an error message, or ``None``)."""
        from ortools.linear_solver import pywraplp

        if problem.n_relu:
            raise UnsupportedProblemError(f"{self.name} takes ReLU-free problems; call it through smug.solve")
        proto = mp_model_proto(problem, rounded_rhs(problem, tighten=True))
        solver = pywraplp.Solver.CreateSolver(self.solver)
        if solver is None:
            return None, f"this OR-Tools build has no {self.solver}; {self.install_hint()}"
        err = solver.LoadModelFromProto(proto)
        return solver, (f"OR-Tools rejected the model: {err}" if err else None)

    def solve(
        self, problem: Problem, params: SolveParams, report: Reporter, hint: np.ndarray | None = None
    ) -> Solution:
        """Lower to one proto, solve, read the answer back (a claim: ``smug.solve`` certifies it)."""
        t0 = time.perf_counter()
        solver, err = self._load(problem)
        if err:
            return Solution(Status.ERROR, message=err)
        mpp = self._configure(solver, params)
        return self._run(solver, mpp, problem, params, report, time.perf_counter() - t0)

    def session(self, problem: Problem, params: SolveParams) -> Session:
        """The loaded model, modified in place between queries (:class:`MILPSession`)."""
        return MILPSession(self, problem, params)

    def _run(
        self, solver: Any, mpp: Any, problem: Problem, params: SolveParams, report: Reporter, build_time: float
    ) -> Solution:
        """Solve the loaded model under the time limit and read the answer back (variables in ``problem``'s order)."""
        from ortools.linear_solver import linear_solver_pb2, pywraplp

        deadline = Deadline(params.time_limit)
        limit = deadline.solver_limit()
        solver.SetTimeLimit(max(1, int(limit * 1000)) if limit is not None else 0)
        t1 = time.perf_counter()
        code = int(solver.Solve(mpp))
        resp = linear_solver_pb2.MPSolutionResponse()
        solver.FillSolutionResponseProto(resp)
        stats: dict[str, Any] = {"solver": self.solver, "result_status": _MP_STATUS_NAMES.get(code, str(code))}
        if self.solver in ("SCIP", "CBC"):  # pywraplp's HiGHS aborts the process on nodes() in some states
            stats["nodes"] = int(solver.nodes())
        x: np.ndarray | None = None
        if code in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE) and len(resp.variable_value) == problem.n_vars:
            v = np.asarray(resp.variable_value, dtype=np.float64)
            b = problem.is_binary
            x = np.where(b, np.clip(np.rint(v), 0.0, 1.0), np.clip(v, problem.lb, problem.ub))
            report(Incumbent(x, problem.objective_value(x)))
        solve_time = time.perf_counter() - t1
        fb = None
        if code == pywraplp.Solver.OPTIMAL or (code == pywraplp.Solver.FEASIBLE and self.solver != "HIGHS"):
            b = float(resp.objective_value if self.solver == "HIGHS" else resp.best_objective_bound)
            fb = b if math.isfinite(b) else None
        if code == pywraplp.Solver.OPTIMAL:
            status, message = Status.OPTIMAL, f"{self.solver} claims optimality within its tolerances"
        elif code == pywraplp.Solver.FEASIBLE:
            status, message = Status.FEASIBLE, f"{self.solver} stopped at a limit with a solution"
        elif code == pywraplp.Solver.INFEASIBLE:
            status, message = Status.INFEASIBLE, f"{self.solver} claims infeasibility within its tolerances"
        elif code in (pywraplp.Solver.NOT_SOLVED, _MP_UNKNOWN) or code not in _MP_STATUS_NAMES:
            status = Status.stopped(False, deadline.seconds is not None)
            message = f"{self.solver} stopped without a solution ({stats['result_status']})"
        else:  # ABNORMAL, MODEL_INVALID, invalid parameters, UNBOUNDED (impossible: all bounds are finite)
            status, message = Status.ERROR, f"{self.solver} failed: {stats['result_status']} {resp.status_str}".strip()
        if status.has_solution and x is None:
            status, message = Status.ERROR, f"{self.solver} reported {stats['result_status']} without a solution"
        return Solution(
            status=status,
            assignment=x,
            objective=None if x is None else problem.objective_value(x),
            float_bound=fb,
            build_time=build_time,
            solve_time=solve_time,
            message=message,
            stats=stats,
        )


class MILPSession(Session):
    """A loaded ``pywraplp`` model answering related queries: bounds set, rows added and emptied in place.

    The bounds are the opened problem's (``set_bounds`` within them, as the
    session layer checks); an added row is a new ``pywraplp`` constraint with
    its right-hand side rounded never weaker, a removed one is cleared and
    freed (``-inf <= 0 <= inf``).  SCIP and CBC re-solve the modified model
    from the start; OR-Tools extracts only what changed.  Answers are claims,
    certified by the session layer.
    """

    def __init__(self, backend: ORToolsMILPBackend, problem: Problem, params: SolveParams) -> None:
        t0 = time.perf_counter()
        self.be, self.problem = backend, problem
        self.solver, err = backend._load(problem)
        if err:
            raise RuntimeError(err)
        self.mpp = backend._configure(self.solver, params)
        self.vars = self.solver.variables()
        self.rows: dict[int, Any] = {}
        self.build_time = time.perf_counter() - t0
        self.objective_on = True

    def set_bounds(self, idx: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> None:
        """``SetBounds`` on each variable."""
        for j, lo, hi in zip(np.asarray(idx).tolist(), np.asarray(lb).tolist(), np.asarray(ub).tolist()):
            self.vars[j].SetBounds(lo, hi)

    def add_rows(
        self, handles: list[int], A: Any, sense: np.ndarray, rhs: np.ndarray, strict: np.ndarray, margin: np.ndarray
    ) -> None:
        """One constraint per row (columns past the opened problem's, the big-M indicators, are never used)."""
        r = rounded_rhs(RowSides(rhs, sense, strict, margin), tighten=True)
        inf = self.solver.infinity()
        for k, h in enumerate(handles):
            lo = -inf if sense[k] == LE else float(r[k])
            hi = inf if sense[k] == GE else float(r[k])
            ct = self.solver.Constraint(lo, hi)
            for j, v in zip(
                A.indices[A.indptr[k] : A.indptr[k + 1]].tolist(), A.data[A.indptr[k] : A.indptr[k + 1]].tolist()
            ):
                ct.SetCoefficient(self.vars[j], v)
            self.rows[h] = ct

    def remove_rows(self, handles: list[int]) -> None:
        """Clear the rows' coefficients and free their bounds."""
        inf = self.solver.infinity()
        for h in handles:
            ct = self.rows.pop(h, None)
            if ct is not None:
                ct.Clear()
                ct.SetBounds(-inf, inf)

    def _objective(self, on: bool) -> None:
        if on == self.objective_on:
            return
        obj = self.solver.Objective()
        c = self.problem.objective
        for j in np.flatnonzero(c).tolist():
            obj.SetCoefficient(self.vars[j], float(c[j]) if on else 0.0)
        obj.SetOffset(float(self.problem.objective_constant) if on else 0.0)
        self.objective_on = on

    def solve(self, params: SolveParams, report: Reporter, *, objective: bool = True) -> Solution:
        """Re-solve the modified model (``objective=False``: the zero objective)."""
        self._objective(objective)
        p = (
            self.problem
            if objective
            else self.problem.replace(objective=np.zeros(self.problem.n_vars), objective_constant=0.0)
        )
        sol = self.be._run(self.solver, self.mpp, p, params, report, self.build_time)
        self.build_time = 0.0
        return sol

    def close(self) -> None:
        """Free the solver."""
        self.solver = None
        self.vars = []

"""OR-Tools backends: MILP solvers through ``pywraplp`` and the CP-SAT solver.

``ortools:scip``, ``ortools:highs``, ``ortools:cbc`` (:class:`ORToolsMILPBackend`)
    ReLU constraints are lowered with :meth:`~smug.ir.Problem.linearize_relus`
    (big-M values are the IR's sound bounds) and the whole problem goes to the
    MILP solver in one ``MPModelProto``.  The proto is filled from the CSR
    matrix by OR-Tools' C++ model-builder helper (one call for the whole
    matrix) and loaded with ``Solver.LoadModelFromProto``; on an 800 x 3000
    matrix with 150 nonzeros per row this takes about 0.06 s, against about
    0.15 s for a proto filled from Python and 0.75 s for ``SetCoefficient``
    per term.  ``pywraplp`` is the one OR-Tools interface that drives all
    three solvers with a settable relative MIP gap (``model_builder`` has no
    CBC, MathOpt has neither CBC nor incumbent callbacks for SCIP / HiGHS).

    Settings: relative MIP gap 0 and absolute gap 1e-9 for every solver;
    feasibility tolerance 1e-9 for SCIP (``numerics/feastol``) and HiGHS
    (``mip_feasibility_tolerance``, ``primal_feasibility_tolerance``).  CBC's
    tolerances cannot be set through ``pywraplp`` (its defaults are 1e-7
    primal, 1e-6 integrality); CBC has no seed in ``pywraplp`` and runs
    single-threaded (this OR-Tools build has no CBC threads), so it is
    declared deterministic.  HiGHS through ``pywraplp`` ignores the thread
    count and reports its objective as the bound, so a HiGHS solve stopped at
    its limit carries no proven bound.  None of the three exposes solution
    callbacks through OR-Tools, so no incumbents stream during the solve;
    each solver stops itself at the time limit (CBC checks it coarsely and
    may overrun into ``smug.solve``'s hard limit).  Magnitudes the solvers
    would read as infinite (1e20; HiGHS: matrix coefficients from 1e15) are
    rejected by ``check``.

    Binaries are rounded to exactly 0/1.  When that leaves a real-valued
    problem outside the IR's tolerance (the solver's integrality tolerance
    lets a binary sit at 0.999999), the binaries are fixed and the real
    variables re-solved ("repair", see ``stats["repaired"]``); an optimum that
    needed repair and got worse is returned as ``FEASIBLE``.

``ortools:cpsat`` (:class:`ORToolsCPSATBackend`)
    0/1 problems only (no real variables, no ReLU constraints).  CP-SAT works
    on integers: each row is scaled by its own power of two and rounded,
    either so that the integer row is never weaker than the real one
    ("tight", the default: every mask CP-SAT accepts satisfies the real row)
    or never stronger ("relaxed"); see :func:`lower_rows_for_cpsat` for the
    scheme and the proof.  Every solution is also checked against the real
    rows in exact arithmetic before it is reported or returned.  Claims of
    optimality and infeasibility are made only when they are proven for the
    real rows and objective; when rounding changed a row or the objective,
    that takes a certification solve on the relaxed rows (see
    :class:`ORToolsCPSATBackend`).  OR-Tools 9.15's presolve can certify a
    wrong optimum (google/or-tools#5293, reproduced here on small 0/1 models
    with large scaled coefficients); the step responsible,
    ``ProcessAtMostOneAndLinear``, is switched off.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError, UnsupportedProblemError
from ..ir import EQ, GE, LE, Problem
from ..solving.contract import Backend, Capabilities, Incumbent, Reporter, Solution, SolveParams, Status

__all__ = [
    "ORToolsMILPBackend",
    "ORToolsCPSATBackend",
    "CpsatLowering",
    "lower_rows_for_cpsat",
    "exact_rows_hold",
    "MILP_SOLVERS",
]

#: The MILP solvers :class:`ORToolsMILPBackend` drives, by their ``pywraplp`` names.
MILP_SOLVERS = ("SCIP", "HIGHS", "CBC")

_INSTALL = "pip install ortools"
_FEAS_TOL = 1e-9
_ABS_GAP = 1e-9
_INT32_MAX = 2**31 - 1
_MILP_INFINITY = 1e20
_HIGHS_MAX_COEF = 1e15

_MILP_CAPS = {
    "SCIP": Capabilities(
        optimize=True,
        relu=True,
        real_vars=True,
        native_time_limit=True,
        seed=True,
        deterministic=False,
        max_threads=None,
        proves_bound=True,
    ),
    "HIGHS": Capabilities(
        optimize=True,
        relu=True,
        real_vars=True,
        native_time_limit=True,
        seed=True,
        deterministic=False,
        max_threads=1,
        proves_bound=True,
    ),
    "CBC": Capabilities(
        optimize=True,
        relu=True,
        real_vars=True,
        native_time_limit=True,
        seed=False,
        deterministic=True,
        max_threads=1,
        proves_bound=True,
    ),
}


# ---------------------------------------------------------------- versions
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


@cache
def _cpsat_version() -> str | None:
    ver = _ortools_version()
    if ver is None:
        return None
    try:
        # Importing here, in the process that checks availability, also means a
        # solve forked from it (smug.solve's time-limited child) does not pay
        # cp_model's import time (about a second, it pulls in pandas).
        from ortools.sat.python import cp_model  # noqa: F401
    except ImportError:
        return None
    return f"ortools {ver} / CP-SAT"


def _exact_rhs(problem: Problem) -> list[Fraction]:
    """Effective right-hand sides (margins applied) as exact rationals."""
    out = []
    cols = (problem.rhs.tolist(), problem.sense.tolist(), problem.strict.tolist(), problem.margin.tolist())
    for r, s, st, m in zip(*cols, strict=True):
        q = Fraction(r)
        if st:
            q = q + Fraction(m) if s == GE else q - Fraction(m)
        out.append(q)
    return out


def _safe_rhs(problem: Problem) -> np.ndarray:
    """``effective_rhs()`` rounded, where the float sum is inexact, so that no row gets weaker.

    ``rhs + margin`` in floating point may land just below the exact value,
    which would weaken a ``>=`` row by an ulp; this moves it one ulp up (and
    ``rhs - margin`` on a ``<=`` row one ulp down) whenever the sum was rounded
    the wrong way.  The rounding error is computed exactly with Knuth's
    TwoSum (``r + err == rhs +- margin`` exactly).
    """
    rhs = problem.rhs
    m = np.where(problem.strict, np.where(problem.sense == GE, problem.margin, -problem.margin), 0.0)
    r = rhs + m
    bb = r - rhs
    err = (rhs - (r - bb)) + (m - bb)  # exact: r + err == rhs + m
    up = (problem.sense == GE) & (err > 0)
    down = (problem.sense == LE) & (err < 0)
    out = np.where(up, np.nextafter(r, np.inf), r)
    return np.where(down, np.nextafter(r, -np.inf), out)


def exact_rows_hold(problem: Problem, x: np.ndarray) -> np.ndarray:
    """Per row: does ``x`` satisfy it in exact arithmetic, margins included (no tolerance)?

    Rows whose floating-point slack is clearly larger than the worst rounding
    error of the float computation are decided in floating point; the rest
    are recomputed with :class:`fractions.Fraction`.  The error bound used is
    ``(k + 3) * 2**-52 * (sum_j |a_j x_j| + |rhs| + |margin|)`` for a row of
    ``k`` nonzeros, which covers the sequential sum, the subtraction and the
    rounding of ``rhs +- margin``.
    """
    A = problem.A
    x = np.asarray(x, dtype=np.float64)
    if problem.n_rows == 0:
        return np.zeros(0, dtype=bool)
    lhs = A @ x
    r = problem.effective_rhs()
    mag = abs(A) @ np.abs(x) + np.abs(problem.rhs) + np.abs(problem.margin)
    nnz = np.diff(A.indptr)
    err = (nnz + 3) * 2.0**-52 * mag + 1e-300
    d = lhs - r
    sense = problem.sense
    surely = np.where(sense == GE, d > err, np.where(sense == LE, d < -err, False))
    surely_not = np.where(sense == GE, d < -err, np.where(sense == LE, d > err, np.abs(d) > err))
    holds = surely.copy()
    unsure = np.flatnonzero(~surely & ~surely_not)
    if unsure.size:
        xf = [Fraction(float(v)) for v in x]
        for i in unsure.tolist():
            lo, hi = A.indptr[i], A.indptr[i + 1]
            terms = zip(A.data[lo:hi].tolist(), A.indices[lo:hi].tolist(), strict=True)
            s = sum((Fraction(float(a)) * xf[j] for a, j in terms if xf[j]), Fraction(0))
            q = Fraction(float(problem.rhs[i]))
            if problem.strict[i]:
                q = q + Fraction(float(problem.margin[i])) if sense[i] == GE else q - Fraction(float(problem.margin[i]))
            holds[i] = s >= q if sense[i] == GE else s <= q if sense[i] == LE else s == q
    return holds


# ======================================================================= MILP
def _mp_model_proto(problem: Problem, rhs_eff: np.ndarray) -> Any:
    """The ``MPModelProto`` of a ReLU-free problem (minimisation)."""
    try:
        from ortools.linear_solver.python import model_builder_helper as mbh

        helper_ok = hasattr(mbh.ModelBuilderHelper, "fill_model_from_sparse_data") and hasattr(mbh, "to_mpmodel_proto")
    except ImportError:  # pragma: no cover - depends on the OR-Tools build
        helper_ok = False
    if helper_ok:
        return _mp_model_proto_helper(problem, rhs_eff)
    return _mp_model_proto_python(problem, rhs_eff)  # pragma: no cover - older OR-Tools


def _row_bounds(problem: Problem, rhs_eff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = problem.sense
    lo = np.where(s == LE, -np.inf, rhs_eff)
    hi = np.where(s == GE, np.inf, rhs_eff)
    return lo.astype(np.float64), hi.astype(np.float64)


def _mp_model_proto_helper(problem: Problem, rhs_eff: np.ndarray) -> Any:
    """Fill the proto with OR-Tools' C++ model-builder helper (whole CSR matrix in one call)."""
    from ortools.linear_solver.python import model_builder_helper as mbh

    h = mbh.ModelBuilderHelper()
    lo, hi = _row_bounds(problem, rhs_eff)
    A = sp.csr_matrix(problem.A, dtype=np.float64)
    h.fill_model_from_sparse_data(
        np.ascontiguousarray(problem.lb, dtype=np.float64),
        np.ascontiguousarray(problem.ub, dtype=np.float64),
        np.ascontiguousarray(problem.objective, dtype=np.float64),
        lo,
        hi,
        A,
    )
    for j in np.flatnonzero(problem.is_binary).tolist():
        h.set_var_integrality(j, True)
    if problem.objective_constant:
        h.set_objective_offset(float(problem.objective_constant))
    return mbh.to_mpmodel_proto(h)


def _mp_model_proto_python(problem: Problem, rhs_eff: np.ndarray) -> Any:
    """Fill the proto from Python with repeated-field ``extend`` calls (fallback; also used in tests)."""
    from ortools.linear_solver import linear_solver_pb2

    mp = linear_solver_pb2.MPModelProto()
    cols = (problem.lb.tolist(), problem.ub.tolist(), problem.is_binary.tolist(), problem.objective.tolist())
    for lb, ub, b, c in zip(*cols, strict=True):
        v = mp.variable.add()
        v.lower_bound, v.upper_bound, v.is_integer, v.objective_coefficient = lb, ub, b, c
    lo, hi = _row_bounds(problem, rhs_eff)
    A = problem.A
    ind, dat, ptr = A.indices.tolist(), A.data.tolist(), A.indptr.tolist()
    for i, (a, b) in enumerate(zip(lo.tolist(), hi.tolist(), strict=True)):
        c = mp.constraint.add()
        c.lower_bound, c.upper_bound = a, b
        c.var_index.extend(ind[ptr[i] : ptr[i + 1]])
        c.coefficient.extend(dat[ptr[i] : ptr[i + 1]])
    mp.objective_offset = float(problem.objective_constant)
    return mp


class ORToolsMILPBackend(Backend):
    """SCIP, HiGHS or CBC through OR-Tools' ``pywraplp`` (see the module docstring).

    Construct as ``ORToolsMILPBackend(name="ortools:scip", solver="SCIP")``;
    ``solver`` is one of :data:`MILP_SOLVERS`.  ReLU constraints are lowered
    to big-M rows with the IR's sound bounds.  Capabilities depend on the
    solver: SCIP takes any thread count (concurrent solve), HiGHS and CBC one
    thread; CBC takes no seed and is declared deterministic.
    """

    family: ClassVar[str] = "ortools"
    capabilities: ClassVar[Capabilities] = _MILP_CAPS["SCIP"]

    def __init__(self, name: str | None = None, solver: str = "SCIP", **options: Any) -> None:
        solver = str(solver).upper()
        if solver not in MILP_SOLVERS:
            raise ConfigError(f"unknown OR-Tools MILP solver {solver!r}; choose one of {', '.join(MILP_SOLVERS)}")
        super().__init__(name=name or f"ortools:{solver.lower()}", **options)
        self.solver = solver
        self.capabilities = _MILP_CAPS[solver]  # per instance: it depends on the solver

    def version(self) -> str | None:
        """``"ortools <version> / <SOLVER> (<solver version>)"``; ``None`` if OR-Tools or this solver is missing."""
        return _milp_solver_version(self.solver)

    def install_hint(self) -> str:
        """``pip install ortools`` (``--upgrade`` when the installed build lacks this solver)."""
        if _ortools_version() is not None and self.version() is None:
            return "pip install --upgrade ortools"
        return _INSTALL

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
        checks = (
            ("a constraint coefficient", coef, limit_coef),
            ("a bound, rhs or objective value", other, _MILP_INFINITY),
        )
        for what, vals, limit in checks:
            big = float(vals.max(initial=0.0))
            if big >= limit:
                raise UnsupportedProblemError(
                    f"backend {self.name!r}: {what} has magnitude {big:g}; {self.solver} reads magnitudes of "
                    f"{limit:g} and above as infinite or invalid. Rescale the problem, or use 'ortools:cpsat' "
                    "(0/1 problems) or an SMT backend such as 'z3'"
                )

    def _specific_params(self, params: SolveParams) -> str:
        if self.solver == "SCIP":
            return "\n".join(
                [
                    f"limits/absgap = {_ABS_GAP!r}",
                    f"randomization/randomseedshift = {params.seed % _INT32_MAX}",
                ]
            )
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

    def solve(self, problem: Problem, params: SolveParams, report: Reporter) -> Solution:
        """Lower, solve with the MILP solver and map the answer back (see the class docstring)."""
        from ortools.linear_solver import linear_solver_pb2, pywraplp

        t0 = time.perf_counter()
        lp = problem.linearize_relus()
        proto = _mp_model_proto(lp, _safe_rhs(lp))
        solver = pywraplp.Solver.CreateSolver(self.solver)
        if solver is None:
            return Solution(Status.ERROR, message=f"this OR-Tools build has no {self.solver}; {self.install_hint()}")
        err = solver.LoadModelFromProto(proto)
        if err:
            return Solution(Status.ERROR, message=f"OR-Tools rejected the model: {err}")
        build_time = time.perf_counter() - t0

        if params.verbose:
            solver.EnableOutput()
        else:
            solver.SuppressOutput()
        if params.threads > 1:
            solver.SetNumThreads(int(params.threads))
        spec = self._specific_params(params)
        if spec:
            # pywraplp's HiGHS answers False here but still passes the string to HiGHS.
            solver.SetSolverSpecificParametersAsString(spec)
        mpp = pywraplp.MPSolverParameters()
        mpp.SetDoubleParam(mpp.RELATIVE_MIP_GAP, 0.0)
        if self.solver == "SCIP":
            mpp.SetDoubleParam(mpp.PRIMAL_TOLERANCE, _FEAS_TOL)

        deadline = None if params.time_limit is None else t0 + params.time_limit

        def set_limit(s: Any) -> None:
            if deadline is not None:
                s.SetTimeLimit(max(1, int((deadline - time.perf_counter()) * 1000)))

        set_limit(solver)
        t1 = time.perf_counter()
        code = int(solver.Solve(mpp))
        resp = linear_solver_pb2.MPSolutionResponse()
        solver.FillSolutionResponseProto(resp)
        stats: dict[str, Any] = {
            "solver": self.solver,
            "result_status": _MP_STATUS_NAMES.get(code, str(code)),
            "n_vars_lowered": lp.n_vars,
            "relu_binaries": lp.n_vars - problem.n_vars,
            "repaired": False,
        }
        if self.solver in ("SCIP", "CBC"):  # pywraplp's HiGHS aborts the process on nodes() in some states
            stats["nodes"] = int(solver.nodes())

        x: np.ndarray | None = None
        if code in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE) and len(resp.variable_value) == lp.n_vars:
            x = self._assignment(problem, np.asarray(resp.variable_value, dtype=np.float64))
            if problem.n_real and not problem.evaluate(x).feasible:
                fixed = self._repair(solver, proto, lp, problem, x, mpp, set_limit)
                if fixed is not None:
                    x = fixed
                    stats["repaired"] = True
        solve_time = time.perf_counter() - t1

        bound: float | None = None
        if code == pywraplp.Solver.OPTIMAL or (code == pywraplp.Solver.FEASIBLE and self.solver != "HIGHS"):
            # pywraplp's HiGHS reports its incumbent's objective as the bound, proven only at OPTIMAL (gap 0)
            b = float(resp.objective_value if self.solver == "HIGHS" else resp.best_objective_bound)
            bound = b if math.isfinite(b) else None
        obj = None if x is None else problem.objective_value(x)
        if code == pywraplp.Solver.OPTIMAL:
            status, message = Status.OPTIMAL, ""
        elif code == pywraplp.Solver.FEASIBLE:
            status, message = Status.FEASIBLE, f"{self.solver} stopped at a limit with a solution"
        elif code == pywraplp.Solver.INFEASIBLE:
            status, message = Status.INFEASIBLE, ""
        elif code in (pywraplp.Solver.NOT_SOLVED, _MP_UNKNOWN) or code not in _MP_STATUS_NAMES:
            status = Status.stopped(False, deadline is not None)
            message = f"{self.solver} stopped without a solution ({stats['result_status']})"
        else:  # ABNORMAL, MODEL_INVALID, invalid parameters, UNBOUNDED (impossible: all bounds are finite)
            status, message = Status.ERROR, f"{self.solver} failed: {stats['result_status']} {resp.status_str}".strip()
        if stats["repaired"] and status == Status.OPTIMAL and obj is not None and bound is not None:
            if obj > bound + 1e-9 * max(1.0, abs(bound)):
                status = Status.FEASIBLE
                message = (
                    f"{self.solver}'s optimum needed repair (binaries off 0/1 within its integrality tolerance); "
                    "the repaired solution is feasible but may not be optimal"
                )
        if bound is not None and obj is not None:
            bound = min(bound, obj)  # a dual bound a rounding error above the incumbent says nothing more
        if status.has_solution and x is None:
            status, message = Status.ERROR, f"{self.solver} reported {stats['result_status']} without a solution"
        if x is not None:
            report(Incumbent(x, obj if obj is not None else math.nan, bound))
        return Solution(
            status=status,
            assignment=x,
            objective=obj,
            bound=bound,
            build_time=build_time,
            solve_time=solve_time,
            message=message,
            stats=stats,
        )

    @staticmethod
    def _assignment(problem: Problem, values: np.ndarray) -> np.ndarray:
        x = values[: problem.n_vars].copy()
        b = problem.is_binary
        x[b] = np.clip(np.rint(x[b]), 0.0, 1.0)
        return x

    def _repair(
        self, solver: Any, proto: Any, lp: Problem, problem: Problem, x: np.ndarray, mpp: Any, set_limit: Any
    ) -> np.ndarray | None:
        """Re-solve for the real variables with the rounded binaries fixed; ``None`` if that does not help.

        First every binary of the lowered problem (ReLU phase binaries too) is
        fixed at its rounded value, which leaves a linear program, solved by
        GLOP with a 1e-10 feasibility tolerance (CBC's own tolerances cannot be
        tightened).  If that fails (a phase binary rounded the wrong way at a
        kink), the MILP solver re-solves with only the problem's own binaries
        fixed.
        """
        from ortools.linear_solver import linear_solver_pb2, pywraplp

        resp = linear_solver_pb2.MPSolutionResponse()
        solver.FillSolutionResponseProto(resp)
        full = np.asarray(resp.variable_value, dtype=np.float64)
        own = np.flatnonzero(problem.is_binary)
        phase = np.arange(problem.n_vars, lp.n_vars)

        def accept(values: Any) -> np.ndarray | None:
            if len(values) != lp.n_vars:
                return None
            y = self._assignment(problem, np.asarray(values, dtype=np.float64))
            y[own] = x[own]
            return y if problem.evaluate(y).feasible else None

        # 1. the linear program left when every binary is fixed, by GLOP with tight tolerances
        fixed = linear_solver_pb2.MPModelProto()
        fixed.CopyFrom(proto)
        values = np.concatenate([x[own], np.clip(np.rint(full[phase]), 0.0, 1.0)])
        for j, v in zip(np.concatenate([own, phase]).tolist(), values.tolist(), strict=True):
            var = fixed.variable[j]
            var.lower_bound = var.upper_bound = v
            var.is_integer = False
        glop = pywraplp.Solver.CreateSolver("GLOP")
        if glop is not None and not glop.LoadModelFromProto(fixed):
            glop.SuppressOutput()
            # no presolve: it decides tiny infeasibilities (1e-173) exactly, where the simplex's tolerance accepts them
            glop.SetSolverSpecificParametersAsString("use_preprocessing:false")
            lp_params = pywraplp.MPSolverParameters()
            lp_params.SetDoubleParam(lp_params.PRIMAL_TOLERANCE, 1e-10)
            lp_params.SetDoubleParam(lp_params.DUAL_TOLERANCE, 1e-10)
            set_limit(glop)
            if int(glop.Solve(lp_params)) == pywraplp.Solver.OPTIMAL:
                r = linear_solver_pb2.MPSolutionResponse()
                glop.FillSolutionResponseProto(r)
                y = accept(r.variable_value)
                if y is not None:
                    return y
        # 2. the MILP solver with the problem's own binaries fixed, the ReLU phases free
        vars_ = solver.variables()
        for j in own.tolist():
            vars_[j].SetBounds(float(x[j]), float(x[j]))
        set_limit(solver)
        code = int(solver.Solve(mpp))
        if code not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
            return None
        r = linear_solver_pb2.MPSolutionResponse()
        solver.FillSolutionResponseProto(r)
        return accept(r.variable_value)


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


# ===================================================================== CP-SAT
#: Default bound on the scaled rows: every row's ``sum |coef| + |rhs|`` stays below ``2**(bits-1)``.
CPSAT_COEF_BITS = 50


@dataclass
class CpsatLowering:
    """A 0/1 problem's rows and objective as integers for CP-SAT (see :func:`lower_rows_for_cpsat`).

    Attributes:
        keep: indices of the rows passed to CP-SAT (rows that hold for every
            0/1 assignment are left out).
        infeasible_rows: rows that no 0/1 assignment satisfies (decided exactly).
        exponent: per kept row, ``k`` with scale ``s = 2**k``.
        tight: CSR over the kept rows, the integer coefficients of the rows that
            are never weaker than the real ones.
        relaxed: the same rounded the other way, never stronger.
        rhs: per kept row, the integer right-hand side (the same for both).
        sense: per kept row, ``GE``, ``LE`` or ``EQ``.
        tightened: per kept row, whether rounding changed any coefficient.
        slack_loss: per kept row, the most the tight row can lose against the
            real one, in the row's own units (0 for exact rows).
        obj: integer objective coefficients ``floor(2**obj_exponent * c)``.
        obj_exponent: the objective's scale exponent.
        obj_exact: the objective scaled without rounding.
    """

    keep: np.ndarray
    infeasible_rows: np.ndarray
    exponent: np.ndarray
    tight: sp.csr_matrix
    relaxed: sp.csr_matrix
    rhs: list[int]
    sense: np.ndarray
    tightened: np.ndarray
    slack_loss: np.ndarray
    obj: np.ndarray
    obj_exponent: int
    obj_exact: bool
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        """No row was changed by rounding (the tight and relaxed rows coincide)."""
        return not bool(self.tightened.any())


def _lowbit_exponent(vals: np.ndarray) -> np.ndarray:
    """Smallest ``k`` with ``2**k * v`` an integer, per nonzero float ``v``."""
    m, e = np.frexp(np.abs(vals))
    mant = np.ldexp(m, 53).astype(np.int64)  # exact: a double's significand has 53 bits
    low = mant & -mant
    tz = np.log2(low.astype(np.float64)).astype(np.int64)  # exact for powers of two
    return 53 - e.astype(np.int64) - tz


def _fraction_exponent(q: Fraction) -> int:
    """Smallest ``k`` with ``2**k * q`` an integer (``q`` must have a power-of-two denominator)."""
    d = q.denominator
    return d.bit_length() - 1 if q else -(10**9)


def _round_scaled(vals: np.ndarray, k: np.ndarray, down: np.ndarray) -> np.ndarray:
    """``floor(2**k * v)`` where ``down`` else ``ceil(2**k * v)``, exactly, as int64.

    ``ldexp`` is exact unless the result underflows below the smallest normal
    float; then ``|2**k v| < 1`` and the floor of a negative (the ceil of a
    positive) value is -1 (+1), whatever sign of zero the underflow left.
    """
    y = np.ldexp(vals, k)
    fl = np.floor(y)
    cl = np.ceil(y)
    fl = np.where((vals < 0) & (fl == 0), -1.0, fl)
    cl = np.where((vals > 0) & (cl == 0), 1.0, cl)
    return np.where(down, fl, cl).astype(np.int64)


def lower_rows_for_cpsat(problem: Problem, bits: int = CPSAT_COEF_BITS) -> CpsatLowering:
    """Scale and round a 0/1 problem's rows and objective to integers, soundly.

    **Scale.**  Each row ``i`` gets its own power of two ``s = 2**k`` (so
    ``s * a`` is computed exactly in floating point).  If some ``k`` makes
    every ``s * a_j`` an integer while ``s * (sum_j |a_j| + |rhs|)`` stays below
    ``2**(bits-1)``, the smallest such ``k`` is used and the row is exact.
    Otherwise ``k`` is the largest with ``s * (sum_j |a_j| + |rhs|) < 2**(bits-1)``,
    so each coefficient is rounded by less than one unit in ``2**(bits-1)``
    of the row's size; with ``bits = 50`` and 150 nonzeros a row loses at most
    about ``3e-13`` of its size.  CP-SAT then sees coefficients and bounds
    below ``2**50`` (it needs every activity to fit in 64 bits).

    **Rounding (the "tight" rows CP-SAT solves).**  For a ``>=`` row
    ``sum_j a_j x_j >= r`` over ``x`` in ``{0,1}``, CP-SAT gets
    ``sum_j floor(s a_j) x_j >= ceil(s r)``.  Proof that it is never weaker:
    ``floor(s a_j) <= s a_j`` and ``x_j >= 0`` give
    ``sum_j floor(s a_j) x_j <= s sum_j a_j x_j``; so any ``x`` the integer row
    accepts has ``s sum_j a_j x_j >= ceil(s r) >= s r``, and dividing by
    ``s > 0``, ``sum_j a_j x_j >= r``.  A ``<=`` row is the mirror image
    (``ceil(s a_j)`` on the left, ``floor(s r)`` on the right).  ``r`` includes
    the strict margin and is rounded in exact rational arithmetic
    (:class:`fractions.Fraction`), so floating-point rounding never weakens
    it.  An equality row is passed only when it scales exactly (with an
    integral ``s r``; otherwise no 0/1 point satisfies it and it is marked
    infeasible); one that does not scale exactly raises
    :class:`~smug.errors.UnsupportedProblemError`.

    **Relaxed rows** (``ceil(s a_j)`` for ``>=``, ``floor(s a_j)`` for ``<=``,
    same right-hand side) are never stronger than the real ones, by the same
    argument with the inequalities reversed; they are used to certify claims.

    **Objective.**  Scaled the same way with one power of two; exact when
    possible, otherwise ``floor(s c_j)``, so that ``c . x >= floor(s c) . x / s``
    for every 0/1 point and any bound CP-SAT proves on the integer objective
    is a valid bound on the real one.

    Rows that hold for every 0/1 point (decided with a safe floating-point
    margin) are left out; rows that hold for none are reported in
    ``infeasible_rows``.
    """
    if not problem.is_pure_binary:
        raise UnsupportedProblemError(
            "CP-SAT takes only 0/1 problems (no real variables, no ReLU constraints); use 'ortools:scip'"
        )
    A = sp.csr_matrix(problem.A, dtype=np.float64)
    m = problem.n_rows
    sense = problem.sense.astype(np.int64)
    rexact = _exact_rhs(problem)
    r = np.array([float(q) for q in rexact], dtype=np.float64)
    absA = abs(A)
    T = np.asarray(absA.sum(axis=1)).ravel()
    pos = np.asarray(A.maximum(0).sum(axis=1)).ravel()
    neg = np.asarray(A.minimum(0).sum(axis=1)).ravel()
    nnz = np.diff(A.indptr)
    delta = (nnz + 4) * 2.0**-50 * (T + np.abs(r)) + 1e-300  # over-estimates the float error of pos/neg/r

    # rows decided for every 0/1 point (exactly, thanks to the safe margin; empty rows exactly)
    always = np.zeros(m, dtype=bool)
    never = np.zeros(m, dtype=bool)
    ge, le, eq = sense == GE, sense == LE, sense == EQ
    always |= ge & (neg - r > delta)
    always |= le & (r - pos > delta)
    never |= ge & (r - pos > delta)
    never |= le & (neg - r > delta)
    never |= eq & ((r - pos > delta) | (neg - r > delta))
    empty = nnz == 0
    for i in np.flatnonzero(empty).tolist():
        q = rexact[i]
        ok = (q <= 0) if sense[i] == GE else (q >= 0) if sense[i] == LE else (q == 0)
        always[i], never[i] = ok, not ok
    keep = np.flatnonzero(~always & ~never)
    infeasible_rows = np.flatnonzero(never)

    # per-row scale exponents
    row_of = np.repeat(np.arange(m), nnz)
    need = np.full(m, -(2**40), dtype=np.int64)
    if A.nnz:
        np.maximum.at(need, row_of, _lowbit_exponent(A.data))
    size = T + np.abs(r)
    with np.errstate(divide="ignore"):
        e_size = np.frexp(np.where(size > 0, size, 1.0))[1].astype(np.int64)
    kmax = bits - 2 - e_size  # size < 2**e_size, so s * size < 2**(bits-2): room for the rounding
    exact_row = need <= kmax
    k = np.where(exact_row, need, kmax)
    bad_eq = keep[eq[keep] & ~exact_row[keep]]
    if bad_eq.size:
        i = int(bad_eq[0])
        raise UnsupportedProblemError(
            f"CP-SAT cannot represent equality row {i} exactly: its coefficients need more than {bits} bits "
            "when scaled to integers (an equality cannot be rounded soundly); use a MILP backend such as "
            "'ortools:scip' or an SMT backend such as 'z3'"
        )

    # rounding, vectorised over the nonzeros of the kept rows
    sub = A[keep]
    sub_rows = np.repeat(np.arange(keep.size), np.diff(sub.indptr))
    kk = k[keep][sub_rows]
    sgn = sense[keep][sub_rows]
    tight_vals = _round_scaled(sub.data, kk, down=sgn == GE)  # EQ rows are exact: either way
    relax_vals = _round_scaled(sub.data, kk, down=sgn == LE)
    tight = sp.csr_matrix((tight_vals, sub.indices.copy(), sub.indptr.copy()), shape=sub.shape)
    relaxed = sp.csr_matrix((relax_vals, sub.indices.copy(), sub.indptr.copy()), shape=sub.shape)
    changed = np.asarray(tight_vals != relax_vals, dtype=np.int64)
    tightened = np.zeros(keep.size, dtype=bool)
    if changed.size:
        tightened = np.bincount(sub_rows, weights=changed, minlength=keep.size) > 0
    # the most a tight row can lose: sum_j |s a_j - tight_j| / s (exact enough for reporting)
    diff = np.abs(np.ldexp(sub.data, kk) - tight_vals.astype(np.float64))
    loss = np.bincount(sub_rows, weights=diff, minlength=keep.size) if diff.size else np.zeros(keep.size)
    loss = np.ldexp(loss, -k[keep]) if keep.size else loss

    rhs_int: list[int] = []
    infeasible_extra: list[int] = []
    for i in keep.tolist():
        q = rexact[i] * (Fraction(2) ** int(k[i]))
        if sense[i] == GE:
            rhs_int.append(math.ceil(q))
        elif sense[i] == LE:
            rhs_int.append(math.floor(q))
        else:
            if q.denominator != 1:  # integral left side can never equal a non-integer
                infeasible_extra.append(i)
            rhs_int.append(math.floor(q))
    if infeasible_extra:
        infeasible_rows = np.union1d(infeasible_rows, np.array(infeasible_extra, dtype=np.int64))

    # objective
    c = problem.objective
    nzc = np.flatnonzero(c)
    if nzc.size:
        need_c = int(_lowbit_exponent(c[nzc]).max())
        e_c = int(np.frexp(float(np.abs(c).sum()))[1])
        kmax_c = bits - 2 - e_c
        obj_exact = need_c <= kmax_c
        kc = need_c if obj_exact else kmax_c
        obj = _round_scaled(c, np.full(c.shape, kc, dtype=np.int64), down=np.ones(c.shape, dtype=bool))
        obj[c == 0] = 0
    else:
        kc, obj_exact, obj = 0, True, np.zeros(c.shape, dtype=np.int64)

    kept_k = k[keep]
    stats = {
        "rows_passed": int(keep.size),
        "rows_dropped_always_true": int(always.sum()),
        "rows_infeasible": int(infeasible_rows.size),
        "rows_tightened": int(tightened.sum()),
        "max_tightening": float(loss.max()) if loss.size else 0.0,
        "scale_log2_min": int(kept_k.min()) if kept_k.size else None,
        "scale_log2_max": int(kept_k.max()) if kept_k.size else None,
        "objective_scale_log2": int(kc),
        "objective_exact": bool(obj_exact),
        "coef_bits": int(bits),
    }
    return CpsatLowering(
        keep=keep,
        infeasible_rows=infeasible_rows,
        exponent=kept_k,
        tight=tight,
        relaxed=relaxed,
        rhs=rhs_int,
        sense=sense[keep],
        tightened=tightened,
        slack_loss=loss,
        obj=obj,
        obj_exponent=int(kc),
        obj_exact=bool(obj_exact),
        stats=stats,
    )


def _cp_model(
    problem: Problem, low: CpsatLowering, rows: sp.csr_matrix, cut: int | None, nogoods: list[np.ndarray]
) -> Any:
    """A ``CpModel`` over the problem's 0/1 variables with the given integer rows.

    ``cut``: when given, the extra row ``obj . x <= cut``.  ``nogoods``: 0/1
    assignments to exclude (one clause each).
    """
    from ortools.sat.python import cp_model

    model = cp_model.CpModel()
    P = model.proto
    for lb, ub in zip(problem.lb.astype(np.int64).tolist(), problem.ub.astype(np.int64).tolist(), strict=True):
        P.variables.add().domain.extend([lb, ub])
    ind, dat, ptr = rows.indices.tolist(), rows.data.tolist(), rows.indptr.tolist()
    posv = np.asarray(rows.maximum(0).sum(axis=1)).ravel().astype(np.int64).tolist() if rows.shape[0] else []
    negv = np.asarray(rows.minimum(0).sum(axis=1)).ravel().astype(np.int64).tolist() if rows.shape[0] else []
    for i, (s, rr) in enumerate(zip(low.sense.tolist(), low.rhs, strict=True)):
        ct = P.constraints.add().linear
        ct.vars.extend(ind[ptr[i] : ptr[i + 1]])
        ct.coeffs.extend(dat[ptr[i] : ptr[i + 1]])
        if s == GE:
            ct.domain.extend([rr, max(rr, posv[i])])
        elif s == LE:
            ct.domain.extend([min(rr, negv[i]), rr])
        else:
            ct.domain.extend([rr, rr])
    if low.infeasible_rows.size:
        P.constraints.add().bool_or.literals.extend([])  # an empty clause: false
    for x in nogoods:
        ones = x > 0.5
        lits = [-j - 1 if one else j for j, one in enumerate(ones.tolist())]  # -j-1: the negation of x_j
        P.constraints.add().bool_or.literals.extend(lits)
    nz = np.flatnonzero(low.obj)
    if cut is not None:
        ct = P.constraints.add().linear
        ct.vars.extend(nz.tolist())
        ct.coeffs.extend(low.obj[nz].tolist())
        lo = int(low.obj[low.obj < 0].sum())
        ct.domain.extend([min(lo, cut), cut])
    if nz.size:
        P.objective.vars.extend(nz.tolist())
        P.objective.coeffs.extend(low.obj[nz].tolist())
    return model


_CP_STATUS = {0: "UNKNOWN", 1: "MODEL_INVALID", 2: "FEASIBLE", 3: "INFEASIBLE", 4: "OPTIMAL"}


@dataclass
class _Best:
    """The best solution that passed the exact check, with its exact objective."""

    x: np.ndarray | None = None
    exact_obj: Fraction | None = None


class ORToolsCPSATBackend(Backend):
    """CP-SAT for 0/1 problems (no real variables, no ReLU constraints).

    Rows and objective are scaled to integers by :func:`lower_rows_for_cpsat`;
    ``Solution.stats`` reports the scales (``scale_log2_min``,
    ``scale_log2_max``, ``objective_scale_log2``), whether the objective
    scaled exactly (``objective_exact``), how many rows rounding changed
    (``rows_tightened``) and by how much at most (``max_tightening``).

    **Rounding.**  With ``rounding="tight"`` (the default) CP-SAT solves rows
    rounded so that they are never weaker than the real ones: every mask it
    accepts satisfies the real rows.  With ``rounding="relaxed"`` it solves
    rows rounded the other way, which contain every real solution, so its
    bounds and infeasibility proofs hold for the real problem.  Either way,
    every solution is checked against the real rows in exact arithmetic
    (:func:`exact_rows_hold`) before it is reported or returned, and only
    solutions that pass are used.

    **Claims.**  The result is ``OPTIMAL`` exactly when the best solution's
    exact objective equals a lower bound that is proven for the real rows
    and objective, and ``INFEASIBLE`` only when infeasibility is proven for
    the real rows.  When every row scaled exactly the two roundings coincide
    and one CP-SAT solve settles everything (with an exactly scaled
    objective).  Otherwise a claim CP-SAT makes on rows that may be stronger
    than the real ones (tight rounding), an optimum for a rounded objective,
    or a relaxed optimum that fails the exact check, is *certified*: CP-SAT
    searches the relaxed rows, cut to ``objective < best``, minus no-goods for
    the masks already known not to beat the best.  Infeasible proves the
    claim; a better solution that passes the exact check becomes the
    incumbent and the search repeats (at most 25 rounds); the bound of the
    search is a valid bound.  With tight rounding on real-valued rows the
    certification costs about as much again as the first solve (a 45 x 20
    random covering problem: 1.8 s + 2.1 s); relaxed rounding usually
    settles everything in its first solve (2.0 s there), because its bound
    is already valid and its optimum almost always passes the exact check.
    With ``certify=False`` no second solve runs: an unproven optimum is
    returned as ``FEASIBLE`` and an unproven infeasibility as ``UNKNOWN``,
    each with a message.  The bound of a solve stopped at the time limit is
    reported only when it is valid for the real rows (exact rows, or relaxed
    rounding); the tight rows' bound is in ``stats["tight_bound"]``.

    **Objective.**  An integral objective (or one that scales exactly) is
    passed as it is; otherwise as ``floor(s c)``, whose bounds are valid
    bounds of the real objective.  A solution optimal for the rounded
    objective is therefore claimed ``OPTIMAL`` only after certification.

    Options: ``rounding`` (``"tight"`` or ``"relaxed"``), ``certify`` (bool,
    default True), ``coef_bits`` (int, default 50: scaled rows stay below
    ``2**coef_bits``; smaller values make CP-SAT's rows coarser).
    """

    family: ClassVar[str] = "ortools"
    capabilities: ClassVar[Capabilities] = Capabilities(
        optimize=True,
        relu=False,
        real_vars=False,
        native_time_limit=True,
        seed=True,
        deterministic=False,
        max_threads=None,
        proves_bound=True,
        integer_coefficients=True,
    )

    def __init__(self, name: str | None = None, **options: Any) -> None:
        super().__init__(name=name or "ortools:cpsat", **options)
        unknown = set(options) - {"certify", "coef_bits", "rounding"}
        if unknown:
            known = "rounding, certify, coef_bits"
            raise ConfigError(f"unknown option(s) {sorted(unknown)} for {self.name!r}; known: {known}")
        bits = options.get("coef_bits", CPSAT_COEF_BITS)
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 8 <= bits <= 60:
            raise ConfigError(f"coef_bits must be an integer in 8..60, got {bits!r}")
        self.coef_bits = int(bits)
        certify = options.get("certify", True)
        if not isinstance(certify, bool):
            raise ConfigError(f"certify must be True or False, got {certify!r}")
        self.certify = certify
        rounding = options.get("rounding", "tight")
        if rounding not in ("tight", "relaxed"):
            raise ConfigError(f"rounding must be 'tight' or 'relaxed', got {rounding!r}")
        self.rounding = str(rounding)

    def version(self) -> str | None:
        """``"ortools <version> / CP-SAT"``, or ``None`` when OR-Tools (or its CP-SAT module) is missing."""
        return _cpsat_version()

    def install_hint(self) -> str:
        """``pip install ortools``."""
        return _INSTALL

    def check(self, problem: Problem, params: SolveParams) -> None:
        """Reject problems with real variables or ReLU constraints, and equality rows that do not scale exactly."""
        if problem.n_relu or problem.n_real:
            what = []
            if problem.n_relu:
                what.append(f"{problem.n_relu} ReLU constraint(s)")
            if problem.n_real:
                what.append(f"{problem.n_real} real variable(s)")
            raise UnsupportedProblemError(
                f"backend {self.name!r}: CP-SAT takes only 0/1 problems, and this one has {' and '.join(what)}; "
                "use a MILP backend such as 'ortools:scip' (or 'ortools:highs', 'ortools:cbc'), "
                "or an SMT backend such as 'z3'"
            )
        super().check(problem, params)
        if (problem.sense == EQ).any():
            lower_rows_for_cpsat(problem, self.coef_bits)  # raises for an equality that cannot be scaled exactly

    # ------------------------------------------------------------------ solve
    def solve(self, problem: Problem, params: SolveParams, report: Reporter) -> Solution:
        """Solve, check every solution exactly, certify inexact claims (see the class docstring)."""
        from ortools.sat.python import cp_model

        t0 = time.perf_counter()
        deadline = None if params.time_limit is None else t0 + params.time_limit
        low = lower_rows_for_cpsat(problem, self.coef_bits)
        primary_rows = low.tight if self.rounding == "tight" else low.relaxed
        model = _cp_model(problem, low, primary_rows, None, [])
        build_time = time.perf_counter() - t0
        stats: dict[str, Any] = dict(low.stats)
        stats.update(rounding=self.rounding, rejected_tight=0, rejected_relaxed=0, certified=None)
        scale = Fraction(2) ** low.obj_exponent
        const = Fraction(problem.objective_constant)
        cvals = [Fraction(v) for v in problem.objective.tolist()]
        best = _Best()
        # masks of the current CP-SAT run that cannot beat the best: they fail the exact check, or their
        # exact objective is no better than the best's
        excluded: list[np.ndarray] = []

        def exact_obj(x: np.ndarray) -> Fraction:
            return sum((cvals[j] for j in np.flatnonzero(x > 0.5).tolist() if cvals[j]), Fraction(0)) + const

        def offer(x: np.ndarray, tight: bool) -> None:
            """Keep ``x`` if it satisfies the real rows exactly and beats the best; report it."""
            if not bool(exact_rows_hold(problem, x).all()):
                # expected now and then for relaxed rows; never for tight ones (that would be a rounding bug)
                stats["rejected_tight" if tight else "rejected_relaxed"] += 1
                excluded.append(x)
                return
            ob = exact_obj(x)
            if best.exact_obj is None or ob < best.exact_obj:
                if best.x is not None:
                    excluded.append(best.x)
                best.x, best.exact_obj = x, ob
                report(Incumbent(x.copy(), float(ob), None))
            else:
                excluded.append(x)

        def left() -> float | None:
            return None if deadline is None else deadline - time.perf_counter()

        def run(m: Any, tight: bool) -> tuple[int, float | None]:
            solver = cp_model.CpSolver()
            prm = solver.parameters
            rem = left()
            if rem is not None:
                prm.max_time_in_seconds = max(1e-3, rem)
            prm.random_seed = int(params.seed % _INT32_MAX)
            prm.num_workers = int(params.threads)
            prm.log_search_progress = bool(params.verbose)
            prm.relative_gap_limit = 0.0
            prm.absolute_gap_limit = 0.0
            # OR-Tools 9.15's presolve step ProcessAtMostOneAndLinear (inclusion detection) can cut off the
            # optimum and then certify a wrong OPTIMAL / INFEASIBLE (google/or-tools#5293; we reproduced it on
            # small 0/1 models with rows scaled to 2**36..2**50); turning that step off removes it.
            if hasattr(prm, "presolve_inclusion_work_limit"):
                prm.presolve_inclusion_work_limit = 0

            class _Callback(cp_model.CpSolverSolutionCallback):
                def on_solution_callback(self) -> None:
                    offer(np.asarray(self.response_proto.solution, dtype=np.float64), tight)

            st = int(solver.solve(m, _Callback()))
            resp = solver.response_proto
            if st in (_CP_FEASIBLE, _CP_OPTIMAL) and len(resp.solution) == problem.n_vars:
                offer(np.asarray(resp.solution, dtype=np.float64), tight)
            stats["num_conflicts"] = stats.get("num_conflicts", 0) + int(resp.num_conflicts)
            b = float(resp.best_objective_bound) if st in (_CP_FEASIBLE, _CP_OPTIMAL, _CP_UNKNOWN) else None
            return st, (b if b is not None and math.isfinite(b) else None)

        def to_real(bound_int: float | None) -> Fraction | None:
            """A bound on CP-SAT's integer objective as a bound on the real one (``c.x >= floor(s c).x / s``)."""
            if bound_int is None:
                return None
            return Fraction(math.ceil(bound_int)) / scale + const  # ceil: the integer objective is integral

        lower: Fraction | None = None  # a lower bound proven for the real problem

        def raise_lower(q: Fraction | None) -> None:
            nonlocal lower
            if q is not None and (lower is None or q > lower):
                lower = q

        t1 = time.perf_counter()
        st1, b1 = run(model, tight=self.rounding == "tight")
        stats["cpsat_status"] = _CP_STATUS.get(st1, str(st1))
        stats["first_solve_time"] = time.perf_counter() - t1
        if st1 == _CP_MODEL_INVALID:
            return Solution(
                Status.ERROR,
                build_time=build_time,
                solve_time=time.perf_counter() - t1,
                message=f"CP-SAT rejected the model: {model.validate()}",
                stats=stats,
            )

        primary_valid = low.exact or self.rounding == "relaxed"  # its bounds and infeasibility hold for the real rows
        proven_infeasible = primary_valid and st1 == _CP_INFEASIBLE
        if primary_valid:
            raise_lower(to_real(b1))
        else:
            tb = to_real(b1)
            stats["tight_bound"] = None if tb is None else float(tb)
        trivial = sum((min(Fraction(0), v) for v in cvals), Fraction(0)) + const
        if best.exact_obj is not None and best.exact_obj <= trivial:
            raise_lower(best.exact_obj)  # nothing beats the smallest objective any 0/1 point can have

        def settled() -> bool:
            return proven_infeasible or (best.exact_obj is not None and lower is not None and best.exact_obj <= lower)

        finished = st1 in (_CP_OPTIMAL, _CP_INFEASIBLE)  # CP-SAT ended by itself, not at a limit
        if finished and not settled() and self.certify and (left() is None or left() > 0):  # type: ignore[operator]
            # Certification: search the real solutions better than the best.  The relaxed rows contain
            # every real solution; the cut floor(s c).x <= ceil(s (best - const)) - 1 keeps every real
            # solution better than the best (floor(s c).x <= s c.x < s (best - const)); a no-good removes
            # a mask that fails the exact check or is no better than the best, so it removes no solution
            # searched for.  Hence real optimum >= min(best, bound of this model), and "infeasible" proves
            # the best optimal (or, without a best, the problem infeasible).  A round that finds a better
            # solution, or masks to exclude, is followed by another round on a smaller model.
            t2 = time.perf_counter()
            nogoods: list[np.ndarray] = list(excluded)
            rounds = 0
            while True:
                rounds += 1
                best_start = best.exact_obj
                cut = None if best_start is None else math.ceil((best_start - const) * scale) - 1
                tb = time.perf_counter()
                own = [] if best.x is None else [best.x]
                m2 = _cp_model(problem, low, low.relaxed, cut, nogoods + own)
                build_time += time.perf_counter() - tb
                excluded.clear()
                st2, b2 = run(m2, tight=False)
                stats["certify_status"] = _CP_STATUS.get(st2, str(st2))
                if st2 == _CP_INFEASIBLE:
                    if best_start is None and best.exact_obj is None:
                        proven_infeasible = True
                    elif best_start is not None:
                        raise_lower(best_start)
                    break
                if st2 == _CP_MODEL_INVALID:
                    break
                lb2 = to_real(b2)
                if lb2 is not None:
                    raise_lower(lb2 if best_start is None else min(lb2, best_start))
                improved = best.exact_obj is not None and (best_start is None or best.exact_obj < best_start)
                out_of_time = left() is not None and left() <= 0  # type: ignore[operator]
                if settled() or st2 != _CP_OPTIMAL or not (excluded or improved) or out_of_time:
                    break
                if rounds >= _MAX_CERTIFY_ROUNDS:
                    break
                nogoods.extend(excluded)
            stats["certify_rounds"] = rounds
            stats["certify_nogoods"] = len(nogoods)
            stats["second_solve_time"] = time.perf_counter() - t2
            stats["certified"] = settled()
        solve_time = time.perf_counter() - t1

        bound = None if lower is None else float(lower)
        if proven_infeasible:
            return Solution(Status.INFEASIBLE, build_time=build_time, solve_time=solve_time, stats=stats)
        if best.x is not None and best.exact_obj is not None:
            if settled():
                status, msg = Status.OPTIMAL, ""
            elif not finished:
                status, msg = Status.FEASIBLE, "CP-SAT stopped at the time limit with a solution"
            elif not self.certify:
                status, msg = (
                    Status.FEASIBLE,
                    (
                        "CP-SAT's optimum is not proven for the real rows and objective (they were rounded); "
                        "certify=False skipped the certification solve"
                    ),
                )
            else:
                status, msg = Status.FEASIBLE, "CP-SAT's optimum could not be certified for the real rows and objective"
            return Solution(
                status,
                assignment=best.x,
                objective=float(best.exact_obj),
                bound=bound,
                build_time=build_time,
                solve_time=solve_time,
                message=msg,
                stats=stats,
            )
        if finished:
            msg = (
                f"CP-SAT ended ({stats['cpsat_status']}) on rows rounded to integers ({low.stats['rows_tightened']} "
                "changed by rounding) without a solution or a proof that holds for the real rows"
            )
            if not self.certify:
                msg += "; certify=False skipped the certification solve"
            return Solution(
                Status.UNKNOWN, bound=bound, build_time=build_time, solve_time=solve_time, message=msg, stats=stats
            )
        return Solution(
            Status.stopped(False, deadline is not None),
            bound=bound,
            build_time=build_time,
            solve_time=solve_time,
            message="CP-SAT stopped without a solution",
            stats=stats,
        )


_CP_UNKNOWN, _CP_MODEL_INVALID, _CP_FEASIBLE, _CP_INFEASIBLE, _CP_OPTIMAL = 0, 1, 2, 3, 4
_MAX_CERTIFY_ROUNDS = 25

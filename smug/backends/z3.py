"""The z3 backends: ``z3`` (tuned encodings) and ``z3:original`` (the original SMUG encoding).

``z3`` lowers a :class:`~smug.ir.Problem` to z3 through SMT-LIB2 text that z3's
parser reads in one call (building hundreds of thousands of terms through the
Python API costs seconds; the text costs a fraction of that: a 800-variable,
3000-row problem with 150 nonzeros a row lowers in ~0.6 s and parses in ~1.1 s).
Every number is written as the exact rational its float denotes, so z3's
answers are exact.

Pseudo-Boolean rows.  A row over binaries only is scaled *exactly* to integers
(floats are dyadic rationals, so a power of two clears every denominator; the
coefficients are divided by their gcd; the right-hand side is rounded up or
down exactly, which is sound because the left-hand side is then an integer;
negative coefficients complement their literal) and becomes
``((_ pbge K c1 .. cn) l1 .. ln)`` -- but only while ``|K| + sum |c_j|`` stays
within ``_PB_LIMIT`` (2**30).  z3 5.4.1 gets pseudo-Boolean constraints whose
coefficient sums pass 2**31 wrong (``(2**30+1) x + (2**30+3) y >= 2**31+4`` is
"satisfied" by ``x = y = false``; a real SMUG problem, ``tests/data``, was
reported infeasible), so larger rows -- almost every row with real-valued
weights -- stay exact linear real arithmetic over ``(ite b c 0)`` terms.  Rows
that touch real variables are always linear real arithmetic.

Encodings (the ``encoding=`` option; ``bench/z3_encodings.py`` measures them,
``bench/results/z3_encodings.md`` has the numbers):

* ``"pb"`` (the default): ``Optimize`` on z3's SMT core (``enable_sat=False``);
  binaries are Bool; rows as above; ``minimize`` of the objective as a
  pseudo-Boolean sum (z3 turns it into weighted MaxSAT, solved by ``maxres``).
* ``"maxsat"``: as ``"pb"``, with the objective given explicitly as weighted
  soft constraints (``add_soft(not m_j, c_j)``).  An objective on real
  variables falls back to ``minimize``.
* ``"pb-sat"``: as ``"pb"`` on z3's default SAT core (``enable_sat=True``).  It
  is the slowest encoding on these problems and overruns its ``timeout`` (a
  watchdog thread calling ``Context.interrupt`` stops it, ~0.5 s late).
* ``"ite"``: ``Optimize`` (SMT core); every row is a linear real sum of
  ``(ite b c 0)`` terms with the exact rational coefficients (no scaling).
* ``"int"``: ``Optimize`` (SMT core) over Int variables in ``[0, 1]``; rows over
  binaries only are exactly scaled integer linear rows (pure LIA).
* ``"bound"``: a plain ``Solver`` holding the ``"pb"`` constraints, minimised by
  the shared bound search (:func:`smug.solving.search.minimize`, ``search=`` picks
  ``"binary"`` or ``"linear"``); each bound ``objective <= k`` is pushed and
  popped, so learnt clauses carry over.  Strict re-checks against an incumbent
  use the incumbent's exact rational objective (the float the search passes may
  round it up, which would let the incumbent itself satisfy ``< bound``).

Measured (16 seeded SMUG-like problems, 7 s each): ``pb`` 14/16 proven optimal,
``maxsat``/``ite``/``int`` 13/16 (the four within run-to-run noise of each
other: about 40 s in all), ``bound`` 3/16, ``pb-sat`` 1/16, ``z3:original``
0/16.  Setting ``enable_sat=False`` is what matters most: the same ``Optimize``
on the SAT core solves almost nothing.

Reductions (all on by default, each an option):

* ``presolve``: exact, sound reductions on the binaries, to a fixed point:
  binaries with an empty column are fixed to their cheaper value; a binary
  with a positive (negative) objective coefficient whose every row entry makes
  its row easier at 0 (1) is fixed there (no optimum sets it otherwise);
  binaries a row forces by activity bounds are fixed; rows that always hold are
  dropped.  Activity decisions keep a relative safety margin of 1e-9, far above
  float rounding, so they hold in exact arithmetic; closer calls are left to
  z3.  The optimum never changes, and no optimal mask is cut off (only
  zero-cost variables with empty columns are fixed arbitrarily, and the no-good
  rows ``smug.solve`` adds to enumerate alternatives touch every mask variable).
* ``cuts``: for every binary inequality row, the cardinality constraint it
  implies (at least ``k`` of its positive entries are 1, ``k`` found exactly on
  the scaled integers), asserted as a redundant pseudo-Boolean row with unit
  coefficients; it also gives a quick lower bound on the objective.
* ``greedy`` (and ``hint``): a greedy feasible start for pure-binary problems
  (the loosest assignment, then flipping variables to their cheaper value while
  every row keeps a safe slack), reported at once as the first incumbent and
  passed to z3 as initial values (``Optimize.set_initial_value``).  It is what
  a time-limited solve returns when z3 finds nothing better.

Other options: ``z3_params`` (a dict of extra parameters for the z3
``Optimize``/``Solver``, for example ``{"maxsat_engine": "wmax"}``).  z3's
``Optimize.set`` re-reads some settings (``enable_sat``) from its latest call
only, so all parameters go into one ``set`` call.

``z3:original`` is the encoding the original SMUG code used, kept as a
comparison row: ``Optimize`` over Int variables ``0 <= m_j <= 1``, each cast to
Real, one product term per variable and row built through the Python API,
``minimize(Sum(m))``, z3's default parameters, no presolve.  Its coefficients
are exact rationals (``RealVal(Fraction(float))``) rather than float strings,
so it answers the same problem as every other backend.

Both backends take time limits (z3's ``timeout``, on what remains after the
build), seeds (``smt.random_seed`` and ``sat.random_seed``) and report improving
models as they are found (``Optimize.set_on_model``); at a limit the best model
found that satisfies the problem is returned as ``feasible``, with z3's lower
bound (``Optimize.lower``) or the cardinality-cut bound.  z3's parallel modes
do not apply to ``Optimize``: ``threads`` must be 1.
"""

from __future__ import annotations

import math
import threading
import time
from fractions import Fraction
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import ValidationError
from ..ir import EQ, GE, LE, Problem
from ..solving.contract import (
    Backend,
    Capabilities,
    Incumbent,
    Reporter,
    SatBackend,
    SatSession,
    Solution,
    SolveParams,
    Status,
)

__all__ = [
    "Z3Backend",
    "Z3OriginalBackend",
    "ENCODINGS",
    "DEFAULT_ENCODING",
    "presolve",
    "Presolved",
    "greedy_incumbent",
]

#: The encodings :class:`Z3Backend` offers (see the module docstring).
ENCODINGS: tuple[str, ...] = ("pb", "maxsat", "pb-sat", "ite", "int", "bound")

#: z3 parameters each Optimize-based encoding starts from (``z3_params`` adds to / overrides them).
#: ``enable_sat=False`` keeps z3 on its SMT core: on these problems its SAT core solves almost
#: nothing within the benchmark's limit and ignores ``timeout`` (see the benchmark).
_ENCODING_PARAMS: dict[str, dict[str, Any]] = {
    "pb": {"enable_sat": False},
    "maxsat": {"enable_sat": False},
    "pb-sat": {},
    "ite": {"enable_sat": False},
    "int": {"enable_sat": False},
    "bound": {},
}

#: The encoding used when none is given (the fastest in ``bench/results/z3_encodings.md``).
DEFAULT_ENCODING = "pb"

_OPTIONS = ("encoding", "presolve", "cuts", "greedy", "hint", "search", "z3_params")


def _import_z3() -> Any:
    import z3

    return z3


def _z3_version() -> str | None:
    try:
        z3 = _import_z3()
    except Exception:  # noqa: BLE001 - any import failure means "not installed"
        return None
    return str(z3.get_version_string())


# --------------------------------------------------------------------------- exact numbers
def _frac(v: float) -> Fraction:
    return Fraction(float(v))


def _num(q: Fraction | int, real: bool = True) -> str:
    """SMT-LIB2 text of an exact rational (``real``: a Real literal, else an Int literal)."""
    q = Fraction(q)
    n, d = q.numerator, q.denominator
    if not real:
        assert d == 1
        return str(n) if n >= 0 else f"(- {-n})"
    body = f"{abs(n)}.0" if d == 1 else f"(/ {abs(n)}.0 {d}.0)"
    return f"(- {body})" if n < 0 else body


def _exact_rhs(problem: Problem, i: int) -> Fraction:
    """The exact effective right-hand side of row ``i`` (margin applied in rational arithmetic)."""
    r = _frac(problem.rhs[i])
    if problem.strict[i]:
        m = _frac(problem.margin[i])
        r = r + m if problem.sense[i] == GE else r - m
    return r


def _dyadic_ints(vals: np.ndarray) -> tuple[list[int], int]:
    """Exact integers ``I`` and a shift ``s`` with ``vals == I * 2**-s`` (every float is dyadic)."""
    if vals.size == 0:
        return [], 0
    mant, exp = np.frexp(vals)
    m = np.ldexp(mant, 53).astype(np.int64)  # exact: |mant| < 1 has 53 significant bits
    e = exp.astype(np.int64) - 53
    if not np.array_equal(np.ldexp(m.astype(np.float64), e), vals):  # subnormals: fall back to Fractions
        fr = [Fraction(float(v)) for v in vals]
        den = max(f.denominator for f in fr)
        s = den.bit_length() - 1
        return [int(f * den) for f in fr], s
    s = int(-e.min())
    shifts = (e + s).tolist()
    return [int(a) << int(b) for a, b in zip(m.tolist(), shifts)], s


def _scaled_row(coefs: np.ndarray, rhs: Fraction) -> tuple[list[int], Fraction]:
    """Scale a row exactly to coprime integer coefficients: returns ``(ints, rhs * scale)`` (rhs not rounded)."""
    ints, s = _dyadic_ints(coefs)
    scale = Fraction(2**s)
    g = math.gcd(*ints) if ints else 1
    g = g or 1
    return [c // g for c in ints], rhs * scale / g


# --------------------------------------------------------------------------- presolve
class Presolved:
    """The result of :func:`presolve`: fixed binaries and the rows still needed.

    Attributes:
        fixed: per variable, ``-1`` (free) or the 0/1 value a binary is fixed to.
        keep_rows: per row, whether it must still be encoded.
        n_fixed_empty, n_fixed_dominated, n_fixed_forced: how many binaries each rule fixed.
        n_rows_dropped: rows found always satisfied.
    """

    def __init__(self, problem: Problem) -> None:
        n = problem.n_vars
        self.fixed = np.full(n, -1, dtype=np.int8)
        bfix = problem.is_binary & (problem.lb == problem.ub)
        self.fixed[bfix] = problem.lb[bfix].astype(np.int8)
        self.keep_rows = np.ones(problem.n_rows, dtype=bool)
        self.n_fixed_empty = 0
        self.n_fixed_dominated = 0
        self.n_fixed_forced = 0
        self.n_rows_dropped = 0

    def stats(self) -> dict[str, int]:
        """The counts as a plain dict (for ``Solution.stats``)."""
        return {
            "presolve_fixed_empty": self.n_fixed_empty,
            "presolve_fixed_dominated": self.n_fixed_dominated,
            "presolve_fixed_forced": self.n_fixed_forced,
            "presolve_rows_dropped": self.n_rows_dropped,
        }


def presolve(problem: Problem, enabled: bool = True) -> Presolved:
    """Sound reductions on the binaries (see the module docstring); the optimum never changes.

    Activity-based decisions keep a relative safety tolerance of 1e-9, far above
    float rounding in the sums, so a row is only dropped (or a variable only
    forced) when that is certain in exact arithmetic too; anything closer to
    the edge is left to z3.  Rows are never dropped and nothing is fixed by
    activity when it would be infeasible: then z3 proves infeasibility itself.
    """
    ps = Presolved(problem)
    if not enabled or problem.n_rows == 0 and problem.n_vars == 0:
        return ps
    A = problem.A
    n = problem.n_vars
    is_bin = problem.is_binary
    c = problem.objective
    relu_vars = np.zeros(n, dtype=bool)
    relu_vars[problem.relu_in] = True
    relu_vars[problem.relu_out] = True
    rhs = problem.effective_rhs()
    sense = problem.sense
    absA = abs(A)
    for _ in range(100):
        changed = False
        keep = ps.keep_rows
        free_bin = is_bin & (ps.fixed < 0)
        # ---- variable bounds given the fixings (reals keep their boxes)
        lo = np.where(ps.fixed >= 0, ps.fixed, problem.lb).astype(np.float64)
        hi = np.where(ps.fixed >= 0, ps.fixed, problem.ub).astype(np.float64)
        pos = A.multiply(A > 0).tocsr()
        neg = A.multiply(A < 0).tocsr()
        act_min = pos @ lo + neg @ hi
        act_max = pos @ hi + neg @ lo
        scale = 1.0 + np.abs(rhs) + absA @ np.maximum(np.abs(lo), np.abs(hi))
        tol = 1e-9 * scale
        # ---- rows that always hold are dropped
        always = np.where(sense == GE, act_min >= rhs + tol, np.where(sense == LE, act_max <= rhs - tol, False))
        reach_up = act_max >= rhs - tol
        reach_down = act_min <= rhs + tol
        feasible_rows = np.where(sense == GE, reach_up, np.where(sense == LE, reach_down, reach_up & reach_down))
        if not feasible_rows[keep].all():
            break  # infeasible: leave it to z3 to prove
        drop = keep & always
        if drop.any():
            ps.keep_rows = keep & ~drop
            ps.n_rows_dropped += int(drop.sum())
            keep = ps.keep_rows
            changed = True
        # ---- forced binaries: a row that cannot hold unless x_j takes one value
        Ak = A[keep]
        if Ak.nnz:
            coo = Ak.tocoo()
            ridx = np.flatnonzero(keep)[coo.row]
            j = coo.col
            a = coo.data
            fb = free_bin[j]
            s = sense[ridx]
            # GE-like slack: act_max - rhs; a positive a_ij > slack forces x_j = 1, negative -a_ij > slack forces 0
            ge = (s == GE) | (s == EQ)
            le = (s == LE) | (s == EQ)
            slack_ge = act_max[ridx] - rhs[ridx]
            slack_le = rhs[ridx] - act_min[ridx]
            t = tol[ridx]
            force1 = fb & ((ge & (a > 0) & (a > slack_ge + t)) | (le & (a < 0) & (-a > slack_le + t)))
            force0 = fb & ((ge & (a < 0) & (-a > slack_ge + t)) | (le & (a > 0) & (a > slack_le + t)))
            f1 = np.unique(j[force1])
            f0 = np.unique(j[force0])
            if np.intersect1d(f0, f1).size:
                break  # contradictory: infeasible; z3 will prove it
            if f1.size or f0.size:
                ps.fixed[f1] = 1
                ps.fixed[f0] = 0
                ps.n_fixed_forced += int(f1.size + f0.size)
                continue
        # ---- empty columns and dominated binaries
        colA = A[keep].tocsc()
        cnt = np.diff(colA.indptr)
        # per column: does any entry make "x_j = 1" harder (blocks fixing to 1), or "x_j = 0" harder?
        coo = colA.tocoo()
        s = sense[np.flatnonzero(keep)[coo.row]] if coo.nnz else np.zeros(0, dtype=np.int8)
        a = coo.data
        # setting x_j from 1 down to 0 never hurts when: GE entries <= 0, LE entries >= 0, no EQ
        bad_down = (s == EQ) | ((s == GE) & (a > 0)) | ((s == LE) & (a < 0))
        bad_up = (s == EQ) | ((s == GE) & (a < 0)) | ((s == LE) & (a > 0))
        down_blocked = np.zeros(n, dtype=bool)
        up_blocked = np.zeros(n, dtype=bool)
        down_blocked[coo.col[bad_down]] = True
        up_blocked[coo.col[bad_up]] = True
        cand = free_bin & ~relu_vars
        empty = cand & (cnt == 0)
        fix0 = cand & ~empty & (c > 0) & ~down_blocked
        fix1 = cand & ~empty & (c < 0) & ~up_blocked
        if empty.any():
            ps.fixed[empty] = np.where(c[empty] < 0, 1, 0)
            ps.n_fixed_empty += int(empty.sum())
            changed = True
        if fix0.any() or fix1.any():
            ps.fixed[fix0] = 0
            ps.fixed[fix1] = 1
            ps.n_fixed_dominated += int(fix0.sum() + fix1.sum())
            changed = True
        if not changed:
            break
    return ps


def _surely_feasible(problem: Problem, x: np.ndarray) -> bool:
    """``x`` satisfies every row with float slack far above rounding error (so exactly too) and every bound."""
    if problem.n_real or problem.n_relu:
        return False
    lhs = problem.A @ x
    rhs = problem.effective_rhs()
    tol = 1e-9 * (1.0 + np.abs(rhs) + abs(problem.A) @ np.abs(x))
    s = problem.sense
    ok = np.where(s == GE, lhs >= rhs + tol, np.where(s == LE, lhs <= rhs - tol, False))
    eq = s == EQ
    if eq.any():  # equalities: only when exact (checked in rational arithmetic)
        rows = np.flatnonzero(eq)
        ev = problem.with_rows(problem.A[rows], problem.sense[rows], problem.rhs[rows]).evaluate(x, exact=True, tol=0.0)
        ok[rows] = ev.linear_holds[problem.n_rows :]
    inbox = bool(np.all((x >= problem.lb) & (x <= problem.ub)))
    return bool(ok.all()) and inbox


def greedy_incumbent(problem: Problem, ps: Presolved) -> np.ndarray | None:
    """A quick feasible assignment for a pure-binary problem, or ``None``.

    Starts from the presolved fixings with every free binary set to the value
    that loosens most rows (1 when its entries help ``>=`` rows more than they
    hurt), then, in order of decreasing objective gain, flips each free binary
    to its cheaper value where every row keeps a safe float slack.  The result is
    only returned when it satisfies every row with a slack far above rounding
    error, so it is feasible in exact arithmetic too.
    """
    if problem.n_real or problem.n_relu or problem.n_vars == 0:
        return None
    A = problem.A
    free = ps.fixed < 0
    sign = np.where(problem.sense == GE, 1.0, np.where(problem.sense == LE, -1.0, 0.0))
    help_one = (A.T @ sign) >= 0  # per column: weighted help of x_j = 1 to the inequality rows
    x = np.where(free, help_one.astype(np.float64), np.maximum(ps.fixed, 0)).astype(np.float64)
    if not _surely_feasible(problem, x):
        x = np.where(free, 1.0, np.maximum(ps.fixed, 0)).astype(np.float64)
        if not _surely_feasible(problem, x):
            return None
    rhs = problem.effective_rhs()
    slack = sign * (A @ x - rhs)  # >= 0 on inequality rows
    tol = 1e-9 * (1.0 + np.abs(rhs) + abs(A) @ np.ones(problem.n_vars))
    has_eq = bool((problem.sense == EQ).any())
    c = problem.objective
    target = np.where(c > 0, 0.0, 1.0)
    cand = np.flatnonzero(free & (c != 0) & (x != target))
    if has_eq or cand.size == 0:
        return x
    At = A.tocsc()
    order = cand[np.argsort(-np.abs(c[cand]), kind="stable")]
    # among equal gains, try columns whose flip costs the least slack first
    cost = np.zeros(problem.n_vars)
    for j in order.tolist():
        lo, hi = At.indptr[j], At.indptr[j + 1]
        d = (target[j] - x[j]) * At.data[lo:hi] * sign[At.indices[lo:hi]]
        cost[j] = float(np.maximum(-d, 0).sum())
    order = order[np.lexsort((cost[order], -np.abs(c[order])))]
    for j in order.tolist():
        lo, hi = At.indptr[j], At.indptr[j + 1]
        rows = At.indices[lo:hi]
        d = (target[j] - x[j]) * At.data[lo:hi] * sign[rows]
        if np.all(slack[rows] + d >= tol[rows]):
            slack[rows] += d
            x[j] = target[j]
    return x if _surely_feasible(problem, x) else None


# --------------------------------------------------------------------------- lowering
class _Lowering:
    """The z3 text of one problem under one encoding, plus the handles to read models back."""

    def __init__(self, problem: Problem, encoding: str, ps: Presolved, cuts: bool = False) -> None:
        self.problem = problem
        self.encoding = encoding
        self.ps = ps
        n = problem.n_vars
        self.int_vars = encoding == "int"
        self.names = [f"b{j}" if problem.is_binary[j] else f"x{j}" for j in range(n)]
        self.free = ps.fixed < 0
        self.lines: list[str] = []
        self.n_pb_rows = 0
        self.n_arith_rows = 0
        self.constant_false = False
        self.cuts = cuts
        self.n_cuts = 0
        self._cut_keys: set[tuple[int, tuple[str, ...]]] = set()
        self.cut_sets: list[tuple[int, np.ndarray]] = []

    # -- terms
    def _bin_real_term(self, j: int, q: Fraction) -> str:
        """A binary's contribution ``q * x_j`` in real arithmetic."""
        if self.int_vars:
            return f"(* {_num(q)} (to_real {self.names[j]}))"
        return f"(ite {self.names[j]} {_num(q)} 0.0)"

    def declarations(self) -> None:
        """Declare every free variable with its bounds and ReLU links."""
        p = self.problem
        out = self.lines
        for j in range(p.n_vars):
            nm = self.names[j]
            if p.is_binary[j]:
                if not self.free[j]:
                    continue
                if self.int_vars:
                    out.append(f"(declare-const {nm} Int)(assert (<= 0 {nm} 1))")
                else:
                    out.append(f"(declare-const {nm} Bool)")
            else:
                out.append(f"(declare-const {nm} Real)(assert (<= {_num(_frac(p.lb[j]))} {nm} {_num(_frac(p.ub[j]))}))")
        for r in range(p.n_relu):
            xi, yi = self.names[p.relu_in[r]], self.names[p.relu_out[r]]
            out.append(f"(assert (= {yi} (ite (> {xi} 0.0) {xi} 0.0)))")
            out.append(f"(assert (<= {_num(_frac(p.relu_lb[r]))} {xi} {_num(_frac(p.relu_ub[r]))}))")

    def rows(self) -> None:
        """Assert every kept row."""
        p = self.problem
        A = p.A
        fixed = self.ps.fixed
        for i in np.flatnonzero(self.ps.keep_rows):
            lo, hi = A.indptr[i], A.indptr[i + 1]
            cols = A.indices[lo:hi]
            vals = A.data[lo:hi]
            rhs = _exact_rhs(p, int(i))
            fx = fixed[cols]
            one = fx == 1
            if one.any():
                rhs -= sum((_frac(v) for v in vals[one]), Fraction(0))
            keep = fx < 0
            cols, vals = cols[keep], vals[keep]
            self.lines.append(self.row_text(cols, vals, int(p.sense[i]), rhs))
            if self.cuts and cols.size > 1 and p.sense[i] != EQ and p.is_binary[cols].all():
                self.cardinality_cut(cols, vals, int(p.sense[i]), rhs)

    def cardinality_cut(self, cols: np.ndarray, vals: np.ndarray, sense: int, rhs: Fraction) -> None:
        """Assert the cardinality constraint a binary inequality row implies (exact, redundant).

        For ``sum a_j x_j >= r``: entries with ``a_j <= 0`` only lower the sum, so
        at least ``k`` of the positive entries are 1, where ``k`` is the fewest
        largest positive coefficients reaching ``r`` (integer arithmetic on the
        exactly scaled row).  ``<=`` rows are negated first.
        """
        ints, r = _scaled_row(vals if sense == GE else -vals, rhs if sense == GE else -rhs)
        k_rhs = math.ceil(r)
        pos = [(cf, j) for cf, j in zip(ints, cols.tolist()) if cf > 0]
        pos.sort(reverse=True)
        total = 0
        need = None
        for t, (cf, _) in enumerate(pos):
            if total >= k_rhs:
                need = t
                break
            total += cf
        else:
            need = len(pos) if total >= k_rhs else None
        if need is None or need < 2:
            return  # infeasible rows are left to the row itself; k <= 1 adds little
        names = [self.names[j] for _, j in pos]
        key = (need, tuple(sorted(names)))
        if key in self._cut_keys:
            return
        self._cut_keys.add(key)
        self.cut_sets.append((need, np.array([j for _, j in pos], dtype=np.int64)))
        self.n_cuts += 1
        if self.int_vars:
            self.lines.append(f"(assert (>= (+ {' '.join(names)}) {need}))")
        elif self.encoding == "ite":
            self.lines.append(f"(assert (>= (+ {' '.join(f'(ite {nm} 1 0)' for nm in names)}) {need}))")
        else:
            self.lines.append(f"(assert ((_ pbge {need} {' '.join('1' for _ in names)}) {' '.join(names)}))")

    def row_text(self, cols: np.ndarray, vals: np.ndarray, sense: int, rhs: Fraction, strict: bool = False) -> str:
        """``(assert ...)`` for ``sum vals * x[cols] (sense) rhs`` under this encoding.

        ``strict`` (with ``sense`` LE or GE) asks for ``<`` or ``>`` exactly.
        """
        p = self.problem
        op = {GE: ">", LE: "<"}[sense] if strict else {GE: ">=", LE: "<=", EQ: "="}[sense]
        if cols.size == 0:
            zero = Fraction(0)
            holds = {">=": zero >= rhs, "<=": zero <= rhs, "=": zero == rhs, ">": zero > rhs, "<": zero < rhs}[op]
            if not holds:
                self.constant_false = True
            return "(assert true)" if holds else "(assert false)"
        all_bin = bool(p.is_binary[cols].all())
        if self.encoding == "ite":
            terms = [
                self._bin_real_term(j, _frac(v)) if p.is_binary[j] else f"(* {_num(_frac(v))} {self.names[j]})"
                for j, v in zip(cols.tolist(), vals.tolist())
            ]
            self.n_arith_rows += 1
            return f"(assert ({op} {_sum(terms, '0.0')} {_num(rhs)}))"
        ints, r = _scaled_row(vals, rhs)
        if all_bin:
            k = _round_rhs(r, sense, strict)
            if k is None:
                self.constant_false = True
                return "(assert false)"
            if self.int_vars:
                terms = [f"(* {_num(cf, False)} {self.names[j]})" for j, cf in zip(cols.tolist(), ints)]
                self.n_arith_rows += 1
                op = {GE: ">=", LE: "<=", EQ: "="}[sense]
                return f"(assert ({op} {_sum(terms, '0')} {_num(k, False)}))"
            if max(abs(cf) for cf in ints) > _PB_LIMIT or abs(k) + sum(abs(cf) for cf in ints) > _PB_LIMIT:
                # z3 keeps pseudo-Boolean coefficients in machine ints (its C API takes ``int``): larger ones
                # overflow silently and change the constraint, so such rows stay exact linear arithmetic
                self.n_arith_rows += 1
                terms = [self._bin_real_term(j, _frac(v)) for j, v in zip(cols.tolist(), vals.tolist())]
                return f"(assert ({op} {_sum(terms, '0.0')} {_num(rhs)}))"
            lits = []
            coefs = []
            for j, cf in zip(cols.tolist(), ints):
                if cf < 0:  # c x = c + |c| (not x)
                    lits.append(f"(not {self.names[j]})")
                    coefs.append(-cf)
                    k -= cf
                else:
                    lits.append(self.names[j])
                    coefs.append(cf)
            kind = {GE: "pbge", LE: "pble", EQ: "pbeq"}[sense]
            self.n_pb_rows += 1
            return f"(assert ((_ {kind} {k} {' '.join(map(str, coefs))}) {' '.join(lits)}))"
        terms = [
            self._bin_real_term(j, Fraction(cf)) if p.is_binary[j] else f"(* {_num(cf)} {self.names[j]})"
            for j, cf in zip(cols.tolist(), ints)
        ]
        self.n_arith_rows += 1
        return f"(assert ({op} {_sum(terms, '0.0')} {_num(r)}))"

    def objective_text(self) -> tuple[str, Fraction]:
        """The objective over free variables as an SMT-LIB2 term, and the constant from fixed ones."""
        p = self.problem
        c = p.objective
        const = _frac(p.objective_constant)
        fixed = self.ps.fixed
        for j in np.flatnonzero((c != 0) & (fixed == 1)):
            const += _frac(c[j])
        nz = np.flatnonzero((c != 0) & (fixed < 0))
        integral = p.objective_is_integral
        terms = []
        for j in nz.tolist():
            q = _frac(c[j])
            if p.is_binary[j]:
                if integral:
                    if self.int_vars:
                        terms.append(f"(* {_num(q, False)} {self.names[j]})")
                    else:
                        terms.append(f"(ite {self.names[j]} {_num(q, False)} 0)")
                else:
                    terms.append(self._bin_real_term(j, q))
            else:
                terms.append(f"(* {_num(q)} {self.names[j]})")
        return _sum(terms, "0" if integral else "0.0"), const

    def simple_lower_bound(self) -> float:
        """A lower bound on the objective from the variable boxes and the cardinality cuts."""
        p = self.problem
        c = p.objective
        free = self.ps.fixed < 0
        lo = np.where(free, p.lb, np.maximum(self.ps.fixed, 0))
        hi = np.where(free, p.ub, np.maximum(self.ps.fixed, 0))
        base = float(np.minimum(c * lo, c * hi).sum() + p.objective_constant)
        extra = 0.0
        for need, cols in self.cut_sets:
            w = np.sort(np.maximum(c[cols], 0.0))
            extra = max(extra, float(w[:need].sum()))
        return base + extra

    def text(self) -> str:
        """The declarations and assertions as one SMT-LIB2 string."""
        return "\n".join(self.lines)


#: Largest coefficient (and coefficient sum) z3's pseudo-Boolean constraints hold without overflow.
_PB_LIMIT = 2**30


def _round_rhs(r: Fraction, sense: int, strict: bool = False) -> int | None:
    """Exact integer right-hand side of a row whose left-hand side is an integer.

    ``lhs >= r`` iff ``lhs >= ceil(r)``; ``lhs > r`` iff ``lhs >= floor(r) + 1``; likewise for ``<=`` and ``<``.
    ``None``: an equality with no integer solution.
    """
    if sense == GE:
        return math.floor(r) + 1 if strict else math.ceil(r)
    if sense == LE:
        return math.ceil(r) - 1 if strict else math.floor(r)
    return int(r) if r.denominator == 1 else None


def _sum(terms: list[str], zero: str) -> str:
    """SMT-LIB2 sum of ``terms`` (``zero`` when empty)."""
    if not terms:
        return zero
    if len(terms) == 1:
        return terms[0]
    return f"(+ {' '.join(terms)})"


# --------------------------------------------------------------------------- z3 helpers
def _configure(z3: Any, solver: Any, params: SolveParams, timeout_s: float | None, extra: dict[str, Any]) -> None:
    """Seed, verbosity, time limit and extra parameters, set in ONE call.

    z3's ``Optimize.set`` re-reads some settings (``enable_sat`` among them) from
    the parameters of the latest call only, so parameters set one by one undo
    each other; everything goes into a single ``set``.
    """
    z3.set_param("sat.random_seed", int(params.seed))
    z3.set_param("smt.random_seed", int(params.seed))
    z3.set_param("verbose", 1 if params.verbose else 0)
    args: list[Any] = []
    settings = dict(extra)
    if timeout_s is not None:
        settings["timeout"] = max(1, int(timeout_s * 1000))
    for k, v in settings.items():
        args += [k, v]
    if args:
        solver.set(*args)


class _Interrupt:
    """Interrupt ``ctx`` from a timer thread once ``seconds`` have passed (``None``: never).

    z3's own ``timeout`` is checked only now and then (its SAT core can run well past it), so every
    check also runs under this watchdog: ``Context.interrupt`` is z3's thread-safe way to cancel.
    """

    def __init__(self, ctx: Any, seconds: float | None, slack: float = 0.05) -> None:
        self.fired = False  # True once the watchdog interrupted z3: the time limit was reached
        self.ctx = ctx
        self.timer = None if seconds is None else threading.Timer(max(0.0, seconds) + slack, self._fire)
        if self.timer is not None:
            self.timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        self.ctx.interrupt()

    def check(self, z3: Any, solver: Any) -> Any:
        """``solver.check()`` under the watchdog; an interrupt that surfaces as ``Z3Exception('canceled')``
        (z3 raises it instead of answering ``unknown`` when cancelled at some points) gives ``unknown``."""
        with self:
            try:
                return solver.check()
            except z3.Z3Exception as exc:
                if self.fired or "canceled" in str(exc):
                    return z3.unknown
                raise

    def __enter__(self) -> _Interrupt:
        if self.timer is not None:
            self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.timer is not None:
            self.timer.cancel()


def _hit_limit(reason: str, remaining: float | None, watchdog: _Interrupt, elapsed: float) -> bool:
    """Did z3 stop because the time limit was reached (its own timeout, or our watchdog's interrupt)?

    With a very short timeout z3 may end with the bare reason ``"unknown"``; a
    check that ran for (nearly) all the time it had is counted as stopped by the limit.
    """
    return (
        watchdog.fired
        or "timeout" in reason
        or "canceled" in reason
        or "interrupted" in reason
        or (remaining is not None and (remaining <= 0 or elapsed >= 0.9 * remaining))
    )


def _stopped(
    best: list[Any],
    bound: float | None,
    reason: str,
    timed: bool,
    build_time: float,
    solve_time: float,
    stats: dict[str, Any] | None = None,
) -> Solution:
    """The solution of an ``Optimize.check`` that ended ``unknown``: the best model found, if any."""
    found = best[0] is not None
    return Solution(
        Status.stopped(found, timed),
        best[0],
        best[1],
        bound,
        build_time=build_time,
        solve_time=solve_time,
        message=f"z3 stopped ({reason}); best solution found returned"
        if found
        else f"z3 stopped ({reason}) before any solution",
        stats=stats if stats is not None else {},
    )


def _z3_value(z3: Any, v: Any) -> float:
    """A z3 numeral (rational or algebraic) as a float."""
    if z3.is_true(v):
        return 1.0
    if z3.is_false(v):
        return 0.0
    if z3.is_int_value(v):
        return float(v.as_long())
    if z3.is_rational_value(v):
        return float(v.as_fraction())
    if z3.is_algebraic_value(v):
        return float(v.approx(20).as_fraction())
    raise ValueError(f"cannot read z3 value {v}")


def _parse_lower(z3: Any, v: Any) -> float | None:
    """A z3 ``lower`` value as a float, or ``None`` when it is not a plain number (infinity, epsilons)."""
    try:
        if z3.is_int_value(v):
            return float(v.as_long())
        if z3.is_rational_value(v):
            return float(v.as_fraction())
    except Exception:  # noqa: BLE001
        return None
    return None


def _lower_upper(z3: Any, opt: Any, handle: Any) -> tuple[float, float] | None:
    """z3's lower and upper objective bounds for ``handle`` when both are plain numbers."""
    if handle is None:
        return None
    try:
        lo, hi = _parse_lower(z3, opt.lower(handle)), _parse_lower(z3, opt.upper(handle))
    except Exception:  # noqa: BLE001
        return None
    return None if lo is None or hi is None else (lo, hi)


class _Reader:
    """Reads z3 models back into assignments over the problem's variables."""

    def __init__(
        self, z3: Any, ctx: Any, problem: Problem, names: list[str], fixed: np.ndarray, int_vars: bool
    ) -> None:
        self.z3 = z3
        self.problem = problem
        self.base = np.where(fixed >= 0, fixed, 0).astype(np.float64)
        self.free = np.flatnonzero(fixed < 0)
        mk = []
        for j in self.free.tolist():
            if problem.is_binary[j]:
                mk.append(z3.Int(names[j], ctx) if int_vars else z3.Bool(names[j], ctx))
            else:
                mk.append(z3.Real(names[j], ctx))
        self.terms = mk

    def read(self, model: Any) -> np.ndarray:
        """The assignment of ``model`` (unconstrained free variables get 0 or their lower bound)."""
        x = self.base.copy()
        z3 = self.z3
        p = self.problem
        for j, t in zip(self.free.tolist(), self.terms):
            v = model.eval(t, model_completion=True)
            if p.is_binary[j]:
                x[j] = 1.0 if (z3.is_true(v) or (z3.is_int_value(v) and v.as_long() == 1)) else 0.0
            else:
                x[j] = min(max(_z3_value(z3, v), p.lb[j]), p.ub[j])
        return x


def _feasible(problem: Problem, x: np.ndarray) -> bool:
    return bool(problem.evaluate(x).feasible)


# --------------------------------------------------------------------------- the backend
class Z3Backend(Backend):
    """z3 through its Python API with a choice of encodings (see the module docstring).

    Options: ``encoding`` (one of :data:`ENCODINGS`, default :data:`DEFAULT_ENCODING`),
    ``presolve``, ``cuts``, ``greedy``, ``hint`` (booleans, default ``True``),
    ``search`` (``"binary"``/``"linear"``, for ``encoding="bound"``) and
    ``z3_params`` (extra z3 parameters).  Unknown options and encodings raise
    :class:`~smug.errors.ValidationError` naming the choices.
    """

    family = "z3"
    capabilities = Capabilities(
        optimize=True,
        relu=True,
        real_vars=True,
        incremental=False,
        native_time_limit=True,
        seed=True,
        max_threads=1,
        proves_bound=True,
    )

    def __init__(self, name: str | None = None, **options: Any) -> None:
        super().__init__(name, **options)
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ValidationError(f"unknown z3 backend option(s) {unknown}; the options are {list(_OPTIONS)}")
        enc = options.get("encoding", DEFAULT_ENCODING)
        if enc not in ENCODINGS:
            raise ValidationError(f"unknown z3 encoding {enc!r}; choose one of {', '.join(repr(e) for e in ENCODINGS)}")
        self.encoding: str = enc
        pre = options.get("presolve", True)
        if not isinstance(pre, bool):
            raise ValidationError(f"presolve must be True or False, got {pre!r}")
        self.presolve_enabled = pre
        zp = options.get("z3_params", {}) or {}
        if not isinstance(zp, dict):
            raise ValidationError(f"z3_params must be a dict of z3 parameters, got {zp!r}")
        self.z3_params: dict[str, Any] = dict(zp)
        for flag in ("cuts", "greedy", "hint"):
            if not isinstance(options.get(flag, True), bool):
                raise ValidationError(f"{flag} must be True or False, got {options[flag]!r}")

    def version(self) -> str | None:
        """z3's version string, or ``None`` when z3 is not installed."""
        return _z3_version()

    def install_hint(self) -> str:
        """The pip command that installs z3."""
        return "pip install z3-solver"

    def solve(self, problem: Problem, params: SolveParams, report: Reporter) -> Solution:
        """Minimise ``problem`` with the configured encoding."""
        if self.encoding == "bound":
            return self._solve_bound(problem, params, report)
        return self._solve_optimize(problem, params, report)

    # -- Optimize-based encodings
    def _solve_optimize(self, problem: Problem, params: SolveParams, report: Reporter) -> Solution:
        z3 = _import_z3()
        t0 = time.perf_counter()
        ps = presolve(problem, self.presolve_enabled)
        enc = self.encoding
        low = _Lowering(problem, "pb" if enc in ("maxsat", "pb-sat") else enc, ps, cuts=self.options.get("cuts", True))
        low.declarations()
        low.rows()
        obj_text, const = low.objective_text()
        ctx = z3.Context()
        opt = z3.Optimize(ctx=ctx)
        use_soft = enc == "maxsat" and not np.any((problem.objective != 0) & ~problem.is_binary)
        text = low.text()
        if not use_soft:
            text += f"\n(assert (>= {obj_text} 0))"  # parsed only to get the objective term back
        parsed = z3.parse_smt2_string(text, ctx=ctx) if text.strip() else []
        asserts = list(parsed)
        reader = _Reader(z3, ctx, problem, low.names, ps.fixed, low.int_vars)
        handle = None
        soft_const = Fraction(0)
        if use_soft:
            if asserts:
                opt.add(*asserts)
            c = problem.objective
            for j in np.flatnonzero((c != 0) & (ps.fixed < 0)).tolist():
                q = _frac(c[j])
                v = z3.Bool(low.names[j], ctx)
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
        const_total = const + soft_const
        x0 = greedy_incumbent(problem, ps) if self.options.get("greedy", True) else None
        if x0 is not None and self.options.get("hint", True):
            for j, t in zip(reader.free.tolist(), reader.terms):
                if problem.is_binary[j]:
                    val = int(x0[j])
                    opt.set_initial_value(t, z3.IntVal(val, ctx) if low.int_vars else z3.BoolVal(bool(val), ctx))
        build_time = time.perf_counter() - t0

        remaining = None if params.time_limit is None else params.time_limit - build_time
        _configure(z3, opt, params, remaining, {**_ENCODING_PARAMS[enc], **self.z3_params})
        best: list[Any] = [None, None]  # assignment, objective

        def consider(x: np.ndarray) -> None:
            if not _feasible(problem, x):
                return
            v = problem.objective_value(x)
            if best[1] is None or v < best[1]:
                best[0], best[1] = x, v
                report(Incumbent(x, v, None))

        def on_model(m: Any) -> None:
            try:
                consider(reader.read(m))
            except Exception:  # noqa: BLE001 - a callback must never break the solver
                pass

        opt.set_on_model(on_model)
        t1 = time.perf_counter()
        if x0 is not None:
            consider(x0)
        watchdog = _Interrupt(ctx, remaining)
        if remaining is not None and remaining <= 0:
            res = z3.unknown
        else:
            res = watchdog.check(z3, opt)
        solve_time = time.perf_counter() - t1
        stats = {
            "encoding": enc,
            "pb_rows": low.n_pb_rows,
            "arith_rows": low.n_arith_rows,
            "cuts": low.n_cuts,
            **ps.stats(),
        }
        stats["free_vars"] = int((ps.fixed < 0).sum())
        if res == z3.sat:
            x = reader.read(opt.model())
            lo_hi = _lower_upper(z3, opt, handle)
            if lo_hi is not None and lo_hi[0] < lo_hi[1]:  # never seen; kept so "sat" can only mean proven
                consider(x)
                st = Status.stopped(best[0] is not None, False)
                return Solution(
                    st,
                    best[0],
                    best[1],
                    lo_hi[0] + float(const_total),
                    build_time=build_time,
                    solve_time=solve_time,
                    stats=stats,
                    message="z3 answered sat without closing the objective bounds",
                )
            return Solution(
                Status.OPTIMAL,
                x,
                problem.objective_value(x),
                None,
                build_time=build_time,
                solve_time=solve_time,
                stats=stats,
            )
        if res == z3.unsat:
            return Solution(
                Status.INFEASIBLE,
                build_time=build_time,
                solve_time=solve_time,
                message="z3 proved that no assignment satisfies the constraints",
                stats=stats,
            )
        reason = opt.reason_unknown() if remaining is None or remaining > 0 else "timeout"
        try:
            consider(reader.read(opt.model()))
        except Exception:  # noqa: BLE001 - no model at all
            pass
        bound = low.simple_lower_bound()
        if handle is not None:
            try:
                lb = _parse_lower(z3, opt.lower(handle))
                if lb is not None:
                    bound = max(bound, lb + float(const_total))
            except Exception:  # noqa: BLE001 - no bound from z3
                pass
        if best[1] is not None:
            bound = min(bound, best[1])
        stats["reason_unknown"] = reason
        return _stopped(
            best, bound, reason, _hit_limit(reason, remaining, watchdog, solve_time), build_time, solve_time, stats
        )

    # -- the shared bound search over a plain Solver
    def _solve_bound(self, problem: Problem, params: SolveParams, report: Reporter) -> Solution:
        from ..solving.search import minimize

        adapter = _BoundSearch(self, name=self.name, search=self.options.get("search", "auto"))
        sol = minimize(adapter, problem, params, report)
        if adapter.last_session is not None:
            sol.stats.update(adapter.last_session.stats)
        sol.stats["encoding"] = "bound"
        return sol


class _Z3Session(SatSession):
    """A z3 ``Solver`` holding a problem's constraints (``"pb"`` encoding), with bounds pushed and popped."""

    def __init__(self, owner: Z3Backend, problem: Problem, params: SolveParams) -> None:
        z3 = _import_z3()
        self.z3 = z3
        self.problem = problem
        self.params = params
        ps = presolve(problem, owner.presolve_enabled)
        self.ps = ps
        low = _Lowering(problem, "pb", ps, cuts=owner.options.get("cuts", True))
        low.declarations()
        low.rows()
        self.low = low
        self.ctx = z3.Context()
        self.solver = z3.Solver(ctx=self.ctx)
        _configure(z3, self.solver, params, None, owner.z3_params)
        text = low.text()
        if text.strip():
            self.solver.add(*list(z3.parse_smt2_string(text, ctx=self.ctx)))
        self.reader = _Reader(z3, self.ctx, problem, low.names, ps.fixed, False)
        c = problem.objective
        self.const = _frac(problem.objective_constant) + sum(
            (_frac(c[j]) for j in np.flatnonzero((c != 0) & (ps.fixed == 1))), Fraction(0)
        )
        self.obj_cols = np.flatnonzero((c != 0) & (ps.fixed < 0))
        self.greedy = greedy_incumbent(problem, ps) if owner.options.get("greedy", True) else None
        self.decls = {self.low.names[j]: t for j, t in zip(self.reader.free.tolist(), self.reader.terms)}
        self._model: np.ndarray | None = None
        self._exact_objective: dict[float, Fraction] = {}
        self.stats = {"pb_rows": low.n_pb_rows, "arith_rows": low.n_arith_rows, **ps.stats()}

    def _bound_text(self, bound: float, strict: bool) -> str:
        cols = self.obj_cols
        exact = _frac(bound)
        if strict and bound in self._exact_objective:
            # "better than the incumbent whose float objective is ``bound``": compare with its exact
            # objective, which the float may round up (then the incumbent itself would pass ``< bound``)
            exact = self._exact_objective[bound]
        return self.low.row_text(cols, self.problem.objective[cols], LE, exact - self.const, strict)

    def _remember(self, x: np.ndarray, model: Any) -> None:
        """Record the exact objective of a model under the float the search will compute for it."""
        p = self.problem
        q = self.const
        for j in self.obj_cols.tolist():
            if p.is_binary[j]:
                if x[j]:
                    q += _frac(p.objective[j])
            else:
                v = model.eval(self.decls[self.low.names[j]], model_completion=True)
                try:
                    val = v.as_fraction() if self.z3.is_rational_value(v) else _frac(x[j])
                except Exception:  # noqa: BLE001 - algebraic numbers: the float is all there is
                    val = _frac(x[j])
                q += _frac(p.objective[j]) * val
        self._exact_objective[p.objective_value(x)] = q

    def check(self, bound: float | None, timeout: float | None, strict: bool = False) -> str:
        """Is there a model with objective ``<= bound`` (``< bound`` when strict)?"""
        z3 = self.z3
        s = self.solver
        if timeout is not None:
            if timeout <= 0:
                return "unknown"
            s.set(timeout=max(1, int(timeout * 1000)))
        if bound is None and self.greedy is not None:  # a verified feasible assignment answers "any solution?"
            self._model, self.greedy = self.greedy, None
            c = self.problem.objective
            q = _frac(self.problem.objective_constant) + sum(
                (_frac(c[j]) for j in np.flatnonzero((c != 0) & (self._model > 0.5))), Fraction(0)
            )
            self._exact_objective[self.problem.objective_value(self._model)] = q
            return "sat"
        s.push()
        try:
            if bound is not None:
                text = self._bound_text(bound, strict)
                s.add(*list(z3.parse_smt2_string(text, decls=self.decls, ctx=self.ctx)))
            res = _Interrupt(self.ctx, timeout).check(z3, s)
            if res == z3.sat:
                m = s.model()
                self._model = self.reader.read(m)
                self._remember(self._model, m)
                return "sat"
            return "unsat" if res == z3.unsat else "unknown"
        finally:
            s.pop()

    def model(self) -> np.ndarray:
        """The assignment of the last ``sat`` answer."""
        assert self._model is not None
        return self._model


class _BoundSearch(SatBackend):
    """Adapter handing :func:`smug.solving.search.minimize` the z3 sessions of a :class:`Z3Backend`."""

    family = "z3"
    capabilities = Z3Backend.capabilities

    def __init__(self, owner: Z3Backend, name: str | None = None, **options: Any) -> None:
        super().__init__(name, **options)
        self.owner = owner
        self.last_session: _Z3Session | None = None

    def version(self) -> str | None:
        """z3's version."""
        return _z3_version()

    def open_session(self, problem: Problem, params: SolveParams) -> SatSession:
        """A fresh z3 session for ``problem``."""
        self.last_session = _Z3Session(self.owner, problem, params)
        return self.last_session


# --------------------------------------------------------------------------- the original encoding
class Z3OriginalBackend(Backend):
    """The z3 encoding of the original SMUG code (a comparison row; see the module docstring)."""

    family = "z3"
    capabilities = Capabilities(
        optimize=True,
        relu=True,
        real_vars=True,
        native_time_limit=True,
        seed=True,
        max_threads=1,
        proves_bound=True,
    )

    def __init__(self, name: str | None = None, **options: Any) -> None:
        super().__init__(name or "z3:original", **options)
        if options:
            raise ValidationError(f"z3:original takes no options, got {sorted(options)}")

    def version(self) -> str | None:
        """z3's version string, or ``None`` when z3 is not installed."""
        return _z3_version()

    def install_hint(self) -> str:
        """The pip command that installs z3."""
        return "pip install z3-solver"

    def solve(self, problem: Problem, params: SolveParams, report: Reporter) -> Solution:
        """Minimise with the original encoding: Int 0/1 masks cast to Real, ``minimize(Sum(m))``."""
        z3 = _import_z3()
        t0 = time.perf_counter()
        ctx = z3.Context()
        opt = z3.Optimize(ctx=ctx)
        n = problem.n_vars
        xs: list[Any] = []
        terms: list[Any] = []
        for j in range(n):
            if problem.is_binary[j]:
                v = z3.Int(f"m{j}", ctx)
                opt.add(v >= int(problem.lb[j]), v <= int(problem.ub[j]))
                xs.append(v)
                terms.append(z3.ToReal(v))
            else:
                v = z3.Real(f"x{j}", ctx)
                opt.add(v >= z3.RealVal(_frac(problem.lb[j]), ctx), v <= z3.RealVal(_frac(problem.ub[j]), ctx))
                xs.append(v)
                terms.append(v)
        A: sp.csr_matrix = problem.A
        for i in range(problem.n_rows):
            lo, hi = A.indptr[i], A.indptr[i + 1]
            prods = [
                z3.RealVal(_frac(a), ctx) * terms[j] for j, a in zip(A.indices[lo:hi].tolist(), A.data[lo:hi].tolist())
            ]
            lhs = z3.Sum(prods) if prods else z3.RealVal(0, ctx)
            rhs = z3.RealVal(_exact_rhs(problem, i), ctx)
            s = problem.sense[i]
            opt.add(lhs >= rhs if s == GE else lhs <= rhs if s == LE else lhs == rhs)
        for r in range(problem.n_relu):
            xi, yi = terms[problem.relu_in[r]], terms[problem.relu_out[r]]
            zero = z3.RealVal(0, ctx)
            opt.add(yi == z3.If(xi > zero, xi, zero))
            opt.add(xi >= z3.RealVal(_frac(problem.relu_lb[r]), ctx), xi <= z3.RealVal(_frac(problem.relu_ub[r]), ctx))
        c = problem.objective
        nz = np.flatnonzero(c)
        if problem.objective_is_integral:
            obj = z3.Sum([int(c[j]) * xs[j] for j in nz.tolist()]) if nz.size else z3.IntVal(0, ctx)
        else:
            prods = [z3.RealVal(_frac(c[j]), ctx) * terms[j] for j in nz.tolist()]
            obj = z3.Sum(prods) if prods else z3.RealVal(0, ctx)
        handle = opt.minimize(obj)
        build_time = time.perf_counter() - t0
        remaining = None if params.time_limit is None else params.time_limit - build_time
        _configure(z3, opt, params, remaining, {})

        best: list[Any] = [None, None]

        def read(m: Any) -> np.ndarray:
            x = np.zeros(n)
            for j, v in enumerate(xs):
                x[j] = _z3_value(z3, m.eval(v, model_completion=True))
            return x

        def consider(x: np.ndarray) -> None:
            if not _feasible(problem, x):
                return
            val = problem.objective_value(x)
            if best[1] is None or val < best[1]:
                best[0], best[1] = x, val
                report(Incumbent(x, val, None))

        def on_model(m: Any) -> None:
            try:
                consider(read(m))
            except Exception:  # noqa: BLE001
                pass

        opt.set_on_model(on_model)
        t1 = time.perf_counter()
        watchdog = _Interrupt(ctx, remaining)
        if remaining is not None and remaining <= 0:
            res = z3.unknown
        else:
            res = watchdog.check(z3, opt)
        solve_time = time.perf_counter() - t1
        if res == z3.sat:
            x = read(opt.model())
            return Solution(Status.OPTIMAL, x, problem.objective_value(x), build_time=build_time, solve_time=solve_time)
        if res == z3.unsat:
            return Solution(
                Status.INFEASIBLE,
                build_time=build_time,
                solve_time=solve_time,
                message="z3 proved that no assignment satisfies the constraints",
            )
        reason = opt.reason_unknown() if remaining is None or remaining > 0 else "timeout"
        try:
            consider(read(opt.model()))
        except Exception:  # noqa: BLE001
            pass
        bound = None
        try:
            lb = _parse_lower(z3, opt.lower(handle))
            bound = None if lb is None else lb + problem.objective_constant
        except Exception:  # noqa: BLE001
            bound = None
        return _stopped(
            best, bound, reason, _hit_limit(reason, remaining, watchdog, solve_time), build_time, solve_time
        )

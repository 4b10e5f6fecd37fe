"""Exact rational arithmetic on IR problems: the one copy every verdict in smug rests on.

Every float is a dyadic rational, so a problem's numbers have exact rational
values; a row ``A_i x >= rhs_i`` (strict: ``>= rhs_i + margin_i``) means exactly
that, in rational arithmetic.  This module decides it:

* :func:`exact_rhs` -- the effective right-hand sides (margins applied) as
  :class:`~fractions.Fraction` values;
* :func:`rounded_rhs` -- the same as floats rounded so that a row is never
  weaker (``tighten=True``) or never stronger than the exact one;
* :func:`check` -- an assignment (floats, or exact rationals for real variables)
  against every row, ReLU, bound and integrality requirement, with no tolerance;
  :func:`rows_hold` is its vectorised row part: rows whose float slack is far
  above a rigorous bound on the rounding error are decided in floating point,
  the rest in exact arithmetic;
* :func:`objective` -- the exact objective value;
* :func:`dyadic_ints` and :func:`scaled_row` -- exact scaling of float rows to
  integers (every float is ``m * 2**e``);
* :func:`trivial_lower_bound` -- the smallest objective value inside the box.

Nothing here knows about any solver.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

#: A :class:`smug.ir.Problem` (this module reads its arrays and imports nothing above it).
Problem = Any

__all__ = [
    "frac",
    "exact_rhs",
    "rounded_rhs",
    "RowSides",
    "dyadic_ints",
    "scaled_row",
    "values",
    "rows_hold",
    "row_activity",
    "objective",
    "trivial_lower_bound",
    "exact_sum",
    "ExactCheck",
    "check",
    "fraction_to_float_down",
    "fraction_to_float_up",
]

_U = 2.0**-52  # twice the unit roundoff of float64
_LE, _EQ, _GE = -1, 0, 1


def frac(v: float) -> Fraction:
    """The exact rational value of a float."""
    return Fraction(float(v))


def fraction_to_float_down(q: Fraction) -> float:
    """The largest float ``<= q`` (a lower bound stays a lower bound)."""
    f = float(q)
    return f if Fraction(f) <= q else math.nextafter(f, -math.inf)


def fraction_to_float_up(q: Fraction) -> float:
    """The smallest float ``>= q``."""
    f = float(q)
    return f if Fraction(f) >= q else math.nextafter(f, math.inf)


# ------------------------------------------------------------------ right-hand sides
@dataclass(frozen=True)
class RowSides:
    """The right-hand sides of rows outside a problem (rows added to an open session): the arrays of the IR."""

    rhs: np.ndarray
    sense: np.ndarray
    strict: np.ndarray
    margin: np.ndarray


def exact_rhs(problem: Problem | RowSides, rows: Sequence[int] | None = None) -> list[Fraction]:
    """Effective right-hand sides as exact rationals: ``rhs + margin`` on strict ``>``, ``rhs - margin`` on ``<``."""
    idx = range(len(problem.rhs)) if rows is None else rows
    rhs, sense, strict, margin = problem.rhs, problem.sense, problem.strict, problem.margin
    out = []
    for i in idx:
        q = Fraction(float(rhs[i]))
        if strict[i]:
            m = Fraction(float(margin[i]))
            q = q + m if sense[i] == _GE else q - m
        out.append(q)
    return out


def rounded_rhs(problem: Problem | RowSides, *, tighten: bool = True) -> np.ndarray:
    """Effective right-hand sides as floats, rounded so that no row gets weaker (or, ``tighten=False``, stronger).

    ``rhs + margin`` in floating point may land just below the exact value,
    which would weaken a ``>=`` row; the exact rounding error is computed with
    Knuth's TwoSum (``r + err == rhs + margin`` exactly) and the float moved one
    ulp where it was rounded the wrong way.  Equality rows get the nearest float
    (they are never strict, so that float is exact).
    """
    rhs = problem.rhs
    m = np.where(problem.strict, np.where(problem.sense == _GE, problem.margin, -problem.margin), 0.0)
    r = rhs + m
    bb = r - rhs
    err = (rhs - (r - bb)) + (m - bb)  # exact: r + err == rhs + m
    ge, le = problem.sense == _GE, problem.sense == _LE
    if tighten:  # the float may only move up on a >= row, down on a <= row
        up, down = ge & (err > 0), le & (err < 0)
    else:  # never stronger: down on a >= row, up on a <= row
        up, down = le & (err > 0), ge & (err < 0)
    out = np.where(up, np.nextafter(r, np.inf), r)
    return np.where(down, np.nextafter(r, -np.inf), out)


# ------------------------------------------------------------------ integer scaling
def dyadic_ints(vals: np.ndarray) -> tuple[list[int], int]:
    """Exact integers ``I`` and a shift ``s`` with ``vals == I * 2**-s`` (every float is dyadic)."""
    vals = np.asarray(vals, dtype=np.float64)
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
    s = max(0, int(-e.min()))  # never a negative shift: large integers stay integers
    shifts = (e + s).tolist()
    return [int(a) << int(b) for a, b in zip(m.tolist(), shifts)], s


def scaled_row(coefs: np.ndarray, rhs: Fraction) -> tuple[list[int], Fraction]:
    """Scale a row exactly to coprime integer coefficients: ``(ints, rhs * scale)`` (the rhs is not rounded).

    ``sum_j coefs_j x_j (sense) rhs`` holds exactly when ``sum_j ints_j x_j (sense) rhs * scale`` does,
    for the positive ``scale = 2**s / gcd``.
    """
    ints, s = dyadic_ints(coefs)
    g = math.gcd(*ints) if ints else 1
    g = g or 1
    return [c // g for c in ints], rhs * Fraction(2**s, g)


# ------------------------------------------------------------------ assignments
def values(problem: Problem, x: Any, rational: Sequence[Fraction] | None = None) -> list[Fraction]:
    """The assignment's exact values: ``rational`` when given, else the floats' exact values."""
    if rational is not None:
        if len(rational) != problem.n_vars:
            raise ValueError(f"rational assignment has {len(rational)} values, the problem has {problem.n_vars}")
        return [Fraction(v) for v in rational]
    return [Fraction(float(v)) for v in np.asarray(x, dtype=np.float64).ravel()]


def row_activity(problem: Problem, xq: Sequence[Fraction], i: int) -> Fraction:
    """``A_i x`` exactly."""
    A = problem.A
    lo, hi = A.indptr[i], A.indptr[i + 1]
    s = Fraction(0)
    for a, j in zip(A.data[lo:hi].tolist(), A.indices[lo:hi].tolist()):
        v = xq[j]
        if v:
            s += Fraction(a) * v
    return s


def _holds(s: Fraction, q: Fraction, sense: int) -> bool:
    return s >= q if sense == _GE else s <= q if sense == _LE else s == q


def rows_hold(problem: Problem, x: Any, rational: Sequence[Fraction] | None = None) -> np.ndarray:
    """Per row: does the assignment satisfy it exactly, margins included (no tolerance)?

    Rows whose floating-point slack is clearly larger than a rigorous bound on
    the rounding error are decided in floating point; the rest are recomputed
    with :class:`~fractions.Fraction`.  The bound
    ``(k + 4) * 2**-52 * (sum_j |a_j x_j| + |rhs| + |margin|)`` for a row of
    ``k`` nonzeros covers the sequential sum, the subtraction, the rounding of
    ``rhs +- margin`` and (with ``rational``) the rounding of each exact value
    to the float used.
    """
    A = problem.A
    if problem.n_rows == 0:
        return np.zeros(0, dtype=bool)
    xf = np.asarray(x, dtype=np.float64).ravel()
    if rational is not None:
        xf = np.array([float(v) for v in rational], dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        lhs = A @ xf
        r = problem.effective_rhs()
        mag = abs(A) @ np.abs(xf) + np.abs(problem.rhs) + np.abs(problem.margin)
        nnz = np.diff(A.indptr)
        err = (nnz + 4) * _U * mag + 1e-300
        d = lhs - r
    sense = problem.sense
    finite = np.isfinite(d) & np.isfinite(err)
    surely = finite & np.where(sense == _GE, d > err, np.where(sense == _LE, d < -err, False))
    surely_not = finite & np.where(sense == _GE, d < -err, np.where(sense == _LE, d > err, np.abs(d) > err))
    holds = surely.copy()
    unsure = np.flatnonzero(~surely & ~surely_not)
    if unsure.size:
        xq = values(problem, xf, rational)
        rq = exact_rhs(problem, unsure.tolist())
        for i, q in zip(unsure.tolist(), rq):
            holds[i] = _holds(row_activity(problem, xq, i), q, int(sense[i]))
    return holds


def exact_sum(vals: np.ndarray) -> Fraction:
    """The exact sum of floats (through their dyadic integers; no rounding)."""
    vals = np.asarray(vals, dtype=np.float64)
    if vals.size == 0:
        return Fraction(0)
    ints, s = dyadic_ints(vals)
    return Fraction(sum(ints), 1 << s)


def objective(problem: Problem, x: Any, rational: Sequence[Fraction] | None = None) -> Fraction:
    """``c . x + constant`` exactly."""
    c = problem.objective
    nz = np.flatnonzero(c)
    if rational is None:
        xa = np.asarray(x, dtype=np.float64).ravel()
        xs = xa[nz]
        if np.all((xs == 0.0) | (xs == 1.0)):  # 0/1 values: the sum of the chosen coefficients
            return exact_sum(np.append(c[nz][xs == 1.0], float(problem.objective_constant)))
    if rational is not None:
        xq = [Fraction(rational[j]) for j in nz.tolist()]
    else:
        xa = np.asarray(x, dtype=np.float64).ravel()
        xq = [Fraction(float(xa[j])) for j in nz.tolist()]
    s = Fraction(float(problem.objective_constant))
    for cj, v in zip(c[nz].tolist(), xq):
        if v:
            s += Fraction(cj) * v
    return s


def trivial_lower_bound(problem: Problem) -> Fraction:
    """The smallest value the objective takes inside the variable bounds, exactly."""
    c, lb, ub = problem.objective, problem.lb, problem.ub
    nz = np.flatnonzero(c)
    unit = np.isin(lb[nz], (0.0, 1.0)) & np.isin(ub[nz], (0.0, 1.0))
    if unit.all():  # every product is a coefficient or zero: an exact sum of floats
        cz, lo, hi = c[nz], lb[nz], ub[nz]
        pick = np.where(cz > 0, lo, hi)
        return exact_sum(np.append(cz[pick == 1.0], float(problem.objective_constant)))
    s = Fraction(float(problem.objective_constant))
    for j in nz.tolist():
        cj = Fraction(float(c[j]))
        s += min(cj * Fraction(float(lb[j])), cj * Fraction(float(ub[j])))
    return s


@dataclass
class ExactCheck:
    """The verdict of :func:`check`: what holds exactly, per requirement.

    Attributes:
        feasible: every row, ReLU, bound and integrality requirement holds exactly.
        rows: per linear row.
        relu: per ReLU constraint, ``x[out] == max(0, x[in])`` exactly.
        relu_bounds: per ReLU constraint, its input lies inside the declared bounds.
        bounds: per variable, ``lb <= x <= ub``.
        integral: per variable, binaries are exactly 0 or 1.
    """

    feasible: bool
    rows: np.ndarray
    relu: np.ndarray
    relu_bounds: np.ndarray
    bounds: np.ndarray
    integral: np.ndarray

    def summary(self) -> str:
        """One line: what failed."""
        if self.feasible:
            return "exactly feasible"
        bits = []
        for what, arr in (
            ("linear row(s)", self.rows),
            ("ReLU constraint(s)", self.relu),
            ("ReLU input(s) outside declared bounds", self.relu_bounds),
            ("variable bound(s)", self.bounds),
            ("binary variable(s) not exactly 0/1", self.integral),
        ):
            bad = np.flatnonzero(~arr)
            if bad.size:
                bits.append(f"{bad.size} {what} violated (first: {int(bad[0])})")
        return "not exactly feasible: " + "; ".join(bits)


def check(problem: Problem, x: Any, rational: Sequence[Fraction] | None = None) -> ExactCheck:
    """Check an assignment against every requirement in exact arithmetic (no tolerance).

    ``x`` is one float per variable; ``rational``, when given, the exact values
    (real variables of a solver's rational model, or an exactly computed
    completion), of which ``x`` is the rounding.
    """
    xf = np.asarray(x, dtype=np.float64).ravel()
    n = problem.n_vars
    if xf.shape[0] != n:
        raise ValueError(f"assignment has {xf.shape[0]} values, the problem has {n} variables")
    if rational is None and not np.isfinite(xf).all():
        false = np.zeros(0, dtype=bool)
        return ExactCheck(False, false, false, false, np.isfinite(xf), np.isfinite(xf))
    rows = rows_hold(problem, xf, rational)
    if rational is None:
        bounds = (xf >= problem.lb) & (xf <= problem.ub)
        xin, xout = xf[problem.relu_in], xf[problem.relu_out]
        relu = xout == np.maximum(0.0, xin)
        relu_bounds = (xin >= problem.relu_lb) & (xin <= problem.relu_ub)
        integral = ~problem.is_binary | (xf == 0.0) | (xf == 1.0)
    else:
        q = values(problem, xf, rational)
        lb, ub = problem.lb.tolist(), problem.ub.tolist()
        bounds = np.array([Fraction(lo) <= v <= Fraction(hi) for v, lo, hi in zip(q, lb, ub)], dtype=bool)
        relu = np.array(
            [q[o] == max(Fraction(0), q[i]) for i, o in zip(problem.relu_in.tolist(), problem.relu_out.tolist())],
            dtype=bool,
        )
        relu_bounds = np.array(
            [
                Fraction(lo) <= q[i] <= Fraction(hi)
                for i, lo, hi in zip(problem.relu_in.tolist(), problem.relu_lb.tolist(), problem.relu_ub.tolist())
            ],
            dtype=bool,
        )
        integral = np.array([not b or v in (0, 1) for b, v in zip(problem.is_binary.tolist(), q)], dtype=bool)
    feasible = bool(rows.all() and bounds.all() and relu.all() and relu_bounds.all() and integral.all())
    return ExactCheck(feasible, rows, relu, relu_bounds, bounds, integral)

"""Sound integer scaling: a 0/1 problem's rows and objective as integers, for integer-only backends.

**Scale.**  Each row ``i`` gets its own power of two ``s = 2**k`` (so ``s * a``
is computed exactly in floating point).  If some ``k`` makes every ``s * a_j``
an integer while ``s * (sum_j |a_j| + |rhs|)`` stays below ``2**(bits-1)``, the
smallest such ``k`` is used and the row is exact.  Otherwise ``k`` is the
largest with ``s * (sum_j |a_j| + |rhs|) < 2**(bits-1)``, so each coefficient
is rounded by less than one unit in ``2**(bits-1)`` of the row's size; with
``bits = 50`` and 150 nonzeros a row loses at most about ``3e-13`` of its size.
The integer rows have coefficients and bounds below ``2**50`` (CP-SAT needs
every activity to fit in 64 bits; float64 holds them exactly).

**Tight rounding** (``rounding="tight"``: never weaker).  For a ``>=`` row
``sum_j a_j x_j >= r`` over ``x`` in ``{0,1}``, the integer row is
``sum_j floor(s a_j) x_j >= ceil(s r)``: ``floor(s a_j) <= s a_j`` and
``x_j >= 0`` give ``sum_j floor(s a_j) x_j <= s sum_j a_j x_j``, so any ``x`` the
integer row accepts has ``s sum_j a_j x_j >= ceil(s r) >= s r``.  A ``<=`` row
is the mirror image.  ``r`` includes the strict margin and is rounded in exact
rational arithmetic.  Every feasible point of the tight problem is feasible for
the real one (:data:`~smug.reductions.base.STRENGTHENS`).

**Relaxed rounding** (``rounding="relaxed"``: never stronger): ``ceil(s a_j)``
for ``>=`` rows, ``floor(s a_j)`` for ``<=`` rows, same right-hand side; by the
same argument reversed, every real solution satisfies it, so its bounds and
infeasibility hold for the real problem (:data:`~smug.reductions.base.RELAXES`).

An equality row is passed only when it scales exactly (with an integral
``s r``; otherwise no 0/1 point satisfies it); one that does not scale exactly
cannot be rounded soundly and raises :class:`~smug.errors.UnsupportedProblemError`.
Rows that hold for every 0/1 point are left out; rows that hold for none become
the empty row ``0 >= 1``.

**Objective.**  Scaled the same way by one power of two; exact when possible,
otherwise ``floor(s c_j)``, so ``c . x >= floor(s c) . x / s`` for every 0/1
point and any bound on the integer objective is a bound on the real one
(:meth:`IntegerScaling.invert_bound`); optimality does not transfer then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError, UnsupportedProblemError
from ..ir import EQ, GE, LE, Problem
from ..ir.exact import exact_rhs
from .base import EXACT, RELAXES, STRENGTHENS, Applied, Guarantee, Reduction

__all__ = ["IntegerScaling", "ScaledRows", "scale_rows", "DEFAULT_BITS", "ROUNDINGS", "check_options", "as_ints"]

#: Default bound on the scaled rows: every row's ``sum |coef| + |rhs|`` stays below ``2**(bits-1)``.
DEFAULT_BITS = 50
#: The two directions of rounding.
ROUNDINGS = ("tight", "relaxed")


def check_options(options: dict[str, Any]) -> None:
    """Validate an integer-only backend's ``coef_bits`` (8..60) and ``rounding`` options, which this reduction reads."""
    bits = options.get("coef_bits", DEFAULT_BITS)
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 8 <= bits <= 60:
        raise ConfigError(f"coef_bits must be an integer in 8..60, got {bits!r}")
    if options.get("rounding", "tight") not in ROUNDINGS:
        raise ConfigError(f"rounding must be 'tight' or 'relaxed', got {options['rounding']!r}")


def as_ints(vals: np.ndarray, what: str, who: str) -> list[int]:
    """``vals`` as Python ints; an error naming ``who`` (a solver) if some are not integers (an unscaled problem)."""
    if vals.size and not np.all(vals == np.round(vals)):
        raise UnsupportedProblemError(
            f"{who} takes integer {what}; smug.solve scales a problem to integers first (call it through smug.solve)"
        )
    return [int(v) for v in vals.tolist()]


@dataclass
class ScaledRows:
    """A 0/1 problem's rows and objective as integers (see the module docstring).

    Attributes:
        keep: indices of the rows passed on (rows that hold for every 0/1 point are left out).
        infeasible_rows: rows that no 0/1 point satisfies (decided exactly).
        exponent: per kept row, ``k`` with scale ``s = 2**k``.
        tight: CSR over the kept rows: integer coefficients never weaker than the real ones.
        relaxed: the same rounded the other way, never stronger.
        rhs: per kept row, the integer right-hand side (the same for both).
        sense: per kept row, ``GE``, ``LE`` or ``EQ``.
        tightened: per kept row, whether rounding changed any coefficient.
        slack_loss: per kept row, the most the tight row can lose against the real one.
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


def scale_rows(problem: Problem, bits: int = DEFAULT_BITS) -> ScaledRows:
    """Scale and round a 0/1 problem's rows and objective to integers, soundly (see the module docstring)."""
    if not problem.is_pure_binary:
        raise UnsupportedProblemError(
            "integer scaling takes only 0/1 problems (no real variables, no ReLU constraints); "
            "use a MILP backend such as 'ortools:scip' or an SMT backend such as 'z3'"
        )
    A = sp.csr_matrix(problem.A, dtype=np.float64)
    m = problem.n_rows
    sense = problem.sense.astype(np.int64)
    rexact = exact_rhs(problem)
    r = np.array([float(q) for q in rexact], dtype=np.float64)
    # fixed binaries (lb == ub) count through their bounds: activity ranges over [lb, ub]
    lo, hi = problem.lb, problem.ub
    pos_part, neg_part = A.maximum(0), A.minimum(0)
    act_max = np.asarray(pos_part @ hi + neg_part @ lo).ravel()
    act_min = np.asarray(pos_part @ lo + neg_part @ hi).ravel()
    absA = abs(A)
    T = np.asarray(absA.sum(axis=1)).ravel()
    nnz = np.diff(A.indptr)
    delta = (nnz + 4) * 2.0**-50 * (T + np.abs(r)) + 1e-300  # over-estimates the float error of the activities

    always = np.zeros(m, dtype=bool)
    never = np.zeros(m, dtype=bool)
    ge, le, eq = sense == GE, sense == LE, sense == EQ
    always |= ge & (act_min - r > delta)
    always |= le & (r - act_max > delta)
    never |= ge & (r - act_max > delta)
    never |= le & (act_min - r > delta)
    never |= eq & ((r - act_max > delta) | (act_min - r > delta))
    for i in np.flatnonzero(nnz == 0).tolist():
        q = rexact[i]
        ok = (q <= 0) if sense[i] == GE else (q >= 0) if sense[i] == LE else (q == 0)
        always[i], never[i] = ok, not ok
    keep = np.flatnonzero(~always & ~never)
    infeasible_rows = np.flatnonzero(never)

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
            f"equality row {i} cannot be represented on integers exactly: its coefficients need more than {bits} "
            "bits when scaled (an equality cannot be rounded soundly); use a MILP backend such as "
            "'ortools:scip' or an SMT backend such as 'z3'"
        )

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
            if q.denominator != 1:  # an integral left side never equals a non-integer
                infeasible_extra.append(i)
            rhs_int.append(math.floor(q))
    if infeasible_extra:
        infeasible_rows = np.union1d(infeasible_rows, np.array(infeasible_extra, dtype=np.int64))

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
    return ScaledRows(
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


@dataclass
class _Inverse:
    exponent: int
    constant: Fraction


class IntegerScaling(Reduction):
    """A 0/1 problem on integers, rounded ``"tight"`` or ``"relaxed"`` (see the module docstring)."""

    name = "integer_scaling"

    def __init__(self, rounding: str = "tight", bits: int = DEFAULT_BITS) -> None:
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
        self.rounding = rounding
        self.bits = int(bits)

    def check(self, problem: Problem) -> None:
        """Only 0/1 problems; equality rows must scale exactly."""
        if not problem.is_pure_binary:
            scale_rows(problem, self.bits)  # raises the named error
        if (problem.sense == EQ).any():
            scale_rows(problem, self.bits)

    def apply(self, problem: Problem) -> Applied:
        """The integer problem (``data``: the objective's scale, to map bounds back)."""
        low = scale_rows(problem, self.bits)
        rows = low.tight if self.rounding == "tight" else low.relaxed
        mats = [rows.astype(np.float64)]
        sense = [low.sense.astype(np.int8)]
        rhs = [np.asarray(low.rhs, dtype=np.float64)]
        if low.infeasible_rows.size:  # the empty row 0 >= 1: nothing satisfies it
            mats.append(sp.csr_matrix((1, problem.n_vars)))
            sense.append(np.array([GE], dtype=np.int8))
            rhs.append(np.ones(1))
        A = sp.vstack(mats, format="csr")
        kept = rows.shape[0] + (1 if low.infeasible_rows.size else 0)
        reduced = Problem(
            n_mask=problem.n_mask,
            lb=problem.lb,
            ub=problem.ub,
            is_binary=problem.is_binary,
            A=A,
            sense=np.concatenate(sense),
            rhs=np.concatenate(rhs),
            strict=np.zeros(kept, dtype=bool),
            margin=np.zeros(kept),
            relu_in=problem.relu_in,
            relu_out=problem.relu_out,
            relu_lb=problem.relu_lb,
            relu_ub=problem.relu_ub,
            objective=low.obj.astype(np.float64),
            objective_constant=0.0,
            groups=problem.groups,
            input_shape=problem.input_shape,
            var_names=problem.var_names,
            metadata=dict(problem.metadata),
        )
        if low.exact:
            g = EXACT
        else:
            g = STRENGTHENS if self.rounding == "tight" else RELAXES
        if not low.obj_exact:
            g = g & Guarantee(solutions=True, bounds=True, optimum=False)
        stats = dict(low.stats, rounding=self.rounding)
        return Applied(reduced, _Inverse(low.obj_exponent, Fraction(float(problem.objective_constant))), g, stats)

    def invert_bound(self, bound: Fraction | None, data: Any, original: Problem) -> Fraction | None:
        """A bound ``L`` on the integer objective gives ``ceil(L) / 2**k + constant`` on the real one."""
        if bound is None:
            return None
        return Fraction(math.ceil(bound)) / (Fraction(2) ** data.exponent) + data.constant

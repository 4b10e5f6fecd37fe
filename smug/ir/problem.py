"""The solver-neutral intermediate representation (IR) of mask-discovery problems.

A :class:`Problem` is a mixed 0-1 linear program with ReLU constraints:

* **variables**: ``n_vars`` of them, each binary or real with finite bounds
  ``lb <= x <= ub``.  The first ``n_mask`` variables are the *mask variables*:
  binary, each tied to the input features it controls through ``groups``
  (a sparse ``n_mask x n_features`` 0/1 matrix over the flattened input of
  shape ``input_shape``).  Further binaries (for example ReLU phase indicators)
  and real variables follow.
* **linear constraints**: rows of a SciPy sparse matrix ``A`` with a sense
  (``<=``, ``>=``, ``==``) and a right-hand side.  A row may be *strict*; a
  strict row carries an explicit positive ``margin`` and means
  ``A_i x >= rhs_i + margin_i`` (``>``) or ``A_i x <= rhs_i - margin_i`` (``<``).
  Every backend enforces exactly that, so all backends agree on the optimum.
* **ReLU constraints**: ``x[out] = max(0, x[inp])`` with sound bounds
  ``relu_lb <= x[inp] <= relu_ub`` that backends may rely on (big-M).
* a linear **objective** ``c . x + constant`` to minimise.

Everything is stored as NumPy / SciPy arrays; nothing here knows about torch or
about any solver.  The problem validates itself on construction, evaluates any
assignment (:meth:`Problem.evaluate`, optionally in exact rational arithmetic),
round-trips through JSON (:meth:`Problem.to_json`), and exports SMT-LIB2 and
MPS text so outside solvers can cross-check.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import (
    BoundsError,
    NonFiniteError,
    SchemaError,
    ShapeError,
    UnknownVariableError,
    ValidationError,
)
from . import exact as _exact
from . import export as _export
from . import io as _io
from .io import SCHEMA_VERSION

__all__ = [
    "SCHEMA_VERSION",
    "LE",
    "EQ",
    "GE",
    "Problem",
    "Evaluation",
    "as_1d",
    "check_finite",
    "canonical_csr",
    "sense_codes",
]

#: Sense codes of linear rows.
LE, EQ, GE = -1, 0, 1
_SENSE_FROM_STR = {"<=": LE, "==": EQ, "=": EQ, ">=": GE}


def as_1d(name: str, value: Any, length: int | None, dtype: Any = np.float64) -> np.ndarray:
    """``value`` as a 1-D array of ``dtype`` (a scalar broadcast to ``length``); a :class:`ShapeError` names it."""
    arr = np.asarray(value, dtype=dtype)
    if arr.ndim == 0 and length is not None:
        arr = np.full(length, arr, dtype=dtype)
    if arr.ndim != 1:
        raise ShapeError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if length is not None and arr.shape[0] != length:
        raise ShapeError(f"{name} has length {arr.shape[0]}, expected {length}")
    return arr


def check_finite(name: str, arr: np.ndarray, labels: Sequence[str] | None = None) -> None:
    """Raise :class:`NonFiniteError` naming the first NaN or infinity in ``arr``."""
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = int(np.flatnonzero(bad.ravel())[0])
        what = labels[idx] if labels is not None and idx < len(labels) else f"index {idx}"
        raise NonFiniteError(
            f"{name} contains {bad.sum()} non-finite value(s); first at {what}: "
            f"{arr.ravel()[idx]!r}. Every number in a problem must be finite."
        )


def canonical_csr(name: str, mat: Any, shape: tuple[int, int] | None) -> sp.csr_matrix:
    """A float64 CSR copy with summed duplicates, no explicit zeros and sorted indices; checked finite."""
    if sp.issparse(mat):
        m = sp.csr_matrix(mat, dtype=np.float64)
    else:
        dense = np.asarray(mat, dtype=np.float64)
        if dense.ndim != 2:
            raise ShapeError(f"{name} must be two-dimensional, got shape {dense.shape}")
        m = sp.csr_matrix(dense)
    if shape is not None and m.shape != shape:
        raise ShapeError(f"{name} has shape {m.shape}, expected {shape}")
    m.sum_duplicates()
    check_finite(name, m.data)
    m.eliminate_zeros()
    m.sort_indices()
    return m


def sense_codes(sense: Any, m: int) -> np.ndarray:
    """Sense codes (``LE``, ``EQ``, ``GE``) from strings or codes, one per row (a scalar applies to all ``m``)."""
    if sense is None:
        sense = GE
    if isinstance(sense, str):
        sense = [sense] * m
    arr = np.asarray(sense)
    if arr.ndim == 0:
        arr = np.full(m, arr)
    if arr.dtype.kind in "US":
        try:
            arr = np.array([_SENSE_FROM_STR[str(s)] for s in arr], dtype=np.int8)
        except KeyError as exc:
            raise ValidationError(f"unknown constraint sense {exc.args[0]!r}; use '<=', '>=' or '=='") from None
    arr = as_1d("sense", arr, m, dtype=np.int64)
    bad = ~np.isin(arr, (LE, EQ, GE))
    if bad.any():
        raise ValidationError(f"sense code {arr[bad][0]!r} unknown; use -1 (<=), 0 (==) or 1 (>=)")
    return arr.astype(np.int8)


#: The array fields of a problem (compared element-wise by ``==``).
_ARRAYS = (
    "lb",
    "ub",
    "is_binary",
    "sense",
    "rhs",
    "strict",
    "margin",
    "relu_in",
    "relu_out",
    "relu_lb",
    "relu_ub",
    "objective",
)
#: Every constructor field but ``metadata``.
_FIELDS = ("n_mask", "A", "objective_constant", "groups", "input_shape", "var_names", "row_names", *_ARRAYS)


def _fresh_names(existing: list[str], prefix: str, start: int, k: int) -> list[str]:
    """``k`` names ``prefix{start}``, ``prefix{start+1}``, ... skipping any already in ``existing``."""
    taken, out, i = set(existing), [], start
    while len(out) < k:
        if f"{prefix}{i}" not in taken:
            out.append(f"{prefix}{i}")
        i += 1
    return out


def _no_duplicates(what: str, names: list[str]) -> None:
    seen: dict[str, int] = {}
    for k, s in enumerate(names):
        if s in seen:
            raise ValidationError(
                f"{what} names must be unique: {what}s {seen[s]} and {k} are both called {s!r}; rename one"
            )
        seen[s] = k


@dataclass
class Evaluation:
    """Result of :meth:`Problem.evaluate` for one assignment.

    Attributes:
        feasible: every constraint, bound and integrality requirement holds.
        objective: ``c . x + constant``.
        linear_lhs: ``A x`` for every linear row.
        linear_violation: how far each row is from holding (0 where it holds).
        linear_holds: per-row verdict (violation within the tolerance).
        relu_violation: ``|x[out] - max(0, x[inp])|`` per ReLU constraint.
        relu_holds: per-ReLU verdict.
        relu_bounds_hold: whether ``x[inp]`` lies inside the ReLU's declared bounds.
        bound_violation: distance of each variable from its ``[lb, ub]`` box.
        integrality_holds: per-variable verdict that binaries are exactly 0 or 1.
    """

    feasible: bool
    objective: float
    linear_lhs: np.ndarray
    linear_violation: np.ndarray
    linear_holds: np.ndarray
    relu_violation: np.ndarray
    relu_holds: np.ndarray
    relu_bounds_hold: np.ndarray
    bound_violation: np.ndarray
    integrality_holds: np.ndarray

    @property
    def max_violation(self) -> float:
        """The largest violation of any row, ReLU or bound (0.0 when feasible)."""
        parts = [self.linear_violation, self.relu_violation, self.bound_violation]
        return float(max((p.max() for p in parts if p.size), default=0.0))

    def summary(self) -> str:
        """One line saying what failed, for error messages and logs."""
        if self.feasible:
            return f"feasible, objective {self.objective:g}"
        bits = []
        if not self.linear_holds.all():
            bad = np.flatnonzero(~self.linear_holds)
            bits.append(
                f"{bad.size} linear row(s) violated (first: row {bad[0]}, by {self.linear_violation[bad[0]]:.3g})"
            )
        if not self.relu_holds.all():
            bits.append(f"{int((~self.relu_holds).sum())} ReLU constraint(s) violated")
        if not self.relu_bounds_hold.all():
            bits.append(f"{int((~self.relu_bounds_hold).sum())} ReLU input(s) outside declared bounds")
        if (self.bound_violation > 0).any():
            bits.append(f"{int((self.bound_violation > 0).sum())} variable(s) outside bounds")
        if not self.integrality_holds.all():
            bits.append(f"{int((~self.integrality_holds).sum())} binary variable(s) not 0/1")
        return "infeasible: " + "; ".join(bits)


@dataclass(eq=False)
class Problem:
    """A validated mask-discovery problem (see the module docstring for the semantics).

    Build one with :class:`ProblemBuilder` or directly with keyword arrays; the
    constructor canonicalises the arrays (float64, CSR with sorted indices and
    no explicit zeros) and raises a :mod:`smug.errors` error naming the bad item.
    """

    n_mask: int
    lb: np.ndarray
    ub: np.ndarray
    is_binary: np.ndarray
    A: sp.csr_matrix
    sense: np.ndarray
    rhs: np.ndarray
    strict: np.ndarray
    margin: np.ndarray
    relu_in: np.ndarray
    relu_out: np.ndarray
    relu_lb: np.ndarray
    relu_ub: np.ndarray
    objective: np.ndarray
    objective_constant: float = 0.0
    groups: sp.csr_matrix | None = None
    input_shape: tuple[int, ...] | None = None
    var_names: list[str] | None = None
    row_names: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._validate()

    # ------------------------------------------------------------------ sizes
    @property
    def n_vars(self) -> int:
        """Total number of variables."""
        return int(self.lb.shape[0])

    @property
    def n_rows(self) -> int:
        """Number of linear constraint rows."""
        return int(self.A.shape[0])

    @property
    def n_relu(self) -> int:
        """Number of ReLU constraints."""
        return int(self.relu_in.shape[0])

    @property
    def n_binary(self) -> int:
        """Number of binary variables (mask variables included)."""
        return int(self.is_binary.sum())

    @property
    def n_real(self) -> int:
        """Number of real (continuous) variables."""
        return self.n_vars - self.n_binary

    @property
    def is_pure_binary(self) -> bool:
        """True when every variable is binary and there is no ReLU constraint."""
        return self.n_real == 0 and self.n_relu == 0

    @property
    def objective_is_integral(self) -> bool:
        """True when the objective takes only integer values on feasible points.

        That holds when every objective coefficient is an integer and sits on a
        binary variable; the optimiser's bound search then steps by 1.
        """
        c = self.objective
        nz = np.flatnonzero(c)
        return bool(
            np.all(self.is_binary[nz])
            and np.all(c[nz] == np.round(c[nz]))
            and float(self.objective_constant).is_integer()
        )

    def name_of(self, j: int) -> str:
        """The display name of variable ``j`` (``m{j}`` for mask variables, ``x{j}`` otherwise)."""
        if self.var_names is not None:
            return self.var_names[j]
        return f"m{j}" if j < self.n_mask else f"x{j}"

    # -------------------------------------------------------------- validation
    def _validate(self) -> None:
        if not isinstance(self.n_mask, (int, np.integer)) or isinstance(self.n_mask, bool) or self.n_mask < 0:
            raise ValidationError(f"n_mask must be a non-negative integer, got {self.n_mask!r}")
        self.n_mask = int(self.n_mask)
        self.lb = as_1d("lb", self.lb, None)
        n = self.lb.shape[0]
        self.ub = as_1d("ub", self.ub, n)
        self.is_binary = as_1d("is_binary", self.is_binary, n, dtype=bool)
        if self.n_mask > n:
            raise ShapeError(f"n_mask={self.n_mask} exceeds the number of variables {n}")
        if self.var_names is not None:
            self.var_names = [str(s) for s in self.var_names]
            if len(self.var_names) != n:
                raise ShapeError(f"var_names has {len(self.var_names)} entries, expected {n}")
            _no_duplicates("variable", self.var_names)
        names = [self.name_of(j) for j in range(n)] if n <= 100_000 else None
        check_finite("variable lower bounds (lb)", self.lb, names)
        check_finite("variable upper bounds (ub)", self.ub, names)
        inverted = self.lb > self.ub
        if inverted.any():
            j = int(np.flatnonzero(inverted)[0])
            raise BoundsError(
                f"variable {self.name_of(j)} has lower bound {self.lb[j]!r} above upper bound {self.ub[j]!r}"
            )
        if not self.is_binary[: self.n_mask].all():
            j = int(np.flatnonzero(~self.is_binary[: self.n_mask])[0])
            raise ValidationError(f"mask variable {self.name_of(j)} must be binary")
        bl, bu = self.lb[self.is_binary], self.ub[self.is_binary]
        if ((bl != 0) & (bl != 1)).any() or ((bu != 0) & (bu != 1)).any():
            j = int(
                np.flatnonzero(self.is_binary & ~np.isin(self.lb, (0, 1)) | self.is_binary & ~np.isin(self.ub, (0, 1)))[
                    0
                ]
            )
            raise BoundsError(
                f"binary variable {self.name_of(j)} has bounds [{self.lb[j]}, {self.ub[j]}]; "
                "binaries take bounds in {0, 1}"
            )

        if self.A is None:
            self.A = sp.csr_matrix((0, n))
        self.A = canonical_csr("A (linear constraint matrix)", self.A, None)
        if self.A.shape[1] != n:
            raise ShapeError(f"A has {self.A.shape[1]} columns but the problem has {n} variables")
        m = self.A.shape[0]
        self.sense = sense_codes(self.sense, m)
        self.rhs = as_1d("rhs", self.rhs, m)
        self.strict = as_1d("strict", self.strict if self.strict is not None else False, m, dtype=bool)
        self.margin = as_1d("margin", self.margin if self.margin is not None else 0.0, m)
        if self.row_names is not None:
            self.row_names = [str(s) for s in self.row_names]
            if len(self.row_names) != m:
                raise ShapeError(f"row_names has {len(self.row_names)} entries, expected {m}")
            _no_duplicates("row", self.row_names)
        check_finite("rhs", self.rhs, self.row_names)
        check_finite("margin", self.margin, self.row_names)
        if (self.margin < 0).any():
            i = int(np.flatnonzero(self.margin < 0)[0])
            raise ValidationError(f"row {self._row_label(i)} has negative margin {self.margin[i]!r}; margins are >= 0")
        bad_strict = self.strict & (self.margin <= 0)
        if bad_strict.any():
            i = int(np.flatnonzero(bad_strict)[0])
            raise ValidationError(
                f"strict row {self._row_label(i)} needs a positive margin (it means lhs >= rhs + margin); "
                f"got {self.margin[i]!r}"
            )
        eq_strict = self.strict & (self.sense == EQ)
        if eq_strict.any():
            i = int(np.flatnonzero(eq_strict)[0])
            raise ValidationError(f"row {self._row_label(i)} is an equality and cannot be strict")
        nonstrict_margin = ~self.strict & (self.margin != 0)
        if nonstrict_margin.any():
            i = int(np.flatnonzero(nonstrict_margin)[0])
            raise ValidationError(
                f"non-strict row {self._row_label(i)} has margin {self.margin[i]!r}; only strict rows carry a margin"
            )

        k = as_1d("relu_in", self.relu_in, None, dtype=np.int64).shape[0]
        self.relu_in = as_1d("relu_in", self.relu_in, k, dtype=np.int64)
        self.relu_out = as_1d("relu_out", self.relu_out, k, dtype=np.int64)
        self.relu_lb = as_1d("relu_lb", self.relu_lb, k)
        self.relu_ub = as_1d("relu_ub", self.relu_ub, k)
        for nm, idx in (("relu_in", self.relu_in), ("relu_out", self.relu_out)):
            bad = (idx < 0) | (idx >= n)
            if bad.any():
                r = int(np.flatnonzero(bad)[0])
                raise UnknownVariableError(
                    f"ReLU constraint {r}: {nm} refers to variable {idx[r]}, but variables are 0..{n - 1}"
                )
            if self.is_binary[idx].any():
                r = int(np.flatnonzero(self.is_binary[idx])[0])
                raise ValidationError(
                    f"ReLU constraint {r}: {nm} variable {self.name_of(int(idx[r]))} is binary; "
                    "ReLU constraints link real variables"
                )
        if k and np.unique(self.relu_out).shape[0] != k:
            raise ValidationError("two ReLU constraints define the same output variable")
        check_finite("relu_lb", self.relu_lb)
        check_finite("relu_ub", self.relu_ub)
        inv = self.relu_lb > self.relu_ub
        if inv.any():
            r = int(np.flatnonzero(inv)[0])
            raise BoundsError(
                f"ReLU constraint {r} has input bounds [{self.relu_lb[r]!r}, {self.relu_ub[r]!r}] "
                "with lower above upper"
            )

        self.objective = as_1d("objective", self.objective if self.objective is not None else 0.0, n)
        check_finite("objective", self.objective, names)
        if not math.isfinite(float(self.objective_constant)):
            raise NonFiniteError(f"objective_constant is {self.objective_constant!r}; it must be finite")
        self.objective_constant = float(self.objective_constant)

        if self.groups is not None:
            if self.input_shape is None:
                raise ValidationError("groups were given without input_shape; give the shape of the input they index")
            self.input_shape = tuple(int(s) for s in self.input_shape)
            nf = int(np.prod(self.input_shape))
            g = self.groups
            shape = (self.n_mask, nf)
            if sp.issparse(g) and g.shape[0] == self.n_mask and g.shape[1] != nf:
                raise UnknownVariableError(
                    f"groups index {g.shape[1]} input features but input_shape {self.input_shape} has {nf}"
                )
            self.groups = canonical_csr("groups", g, shape)
        elif self.input_shape is not None:
            self.input_shape = tuple(int(s) for s in self.input_shape)
        if not isinstance(self.metadata, dict):
            raise ValidationError(f"metadata must be a dict, got {type(self.metadata).__name__}")

    def _row_label(self, i: int) -> str:
        if self.row_names is not None:
            return f"{i} ({self.row_names[i]})"
        return str(i)

    # ------------------------------------------------------------- evaluation
    def effective_rhs(self) -> np.ndarray:
        """Right-hand sides with strict margins applied (``rhs + margin`` for ``>``, ``rhs - margin`` for ``<``)."""
        return self.rhs + np.where(self.strict, np.where(self.sense == GE, self.margin, -self.margin), 0.0)

    def full_assignment(self, x: Any) -> np.ndarray:
        """Return ``x`` as a float64 vector over all variables.

        A vector of length ``n_mask`` is accepted when the problem has no other
        variables.  Anything else of the wrong length raises :class:`ShapeError`.
        """
        arr = np.asarray(x, dtype=np.float64).ravel()
        if arr.shape[0] != self.n_vars:
            raise ShapeError(f"assignment has {arr.shape[0]} values, the problem has {self.n_vars} variables")
        return arr

    def evaluate(self, x: Any, *, tol: float = 1e-9, exact: bool = False) -> Evaluation:
        """Check an assignment against every constraint and compute the objective.

        This is the independent checker the tests lean on: it shares no code with
        any backend.

        Args:
            x: one value per variable.
            tol: relative tolerance: a row holds when its violation is at most
                ``tol * max(1, |rhs|, sum_j |A_ij x_j|)``; likewise for ReLUs and
                bounds.  Use ``tol=0`` for no slack.
            exact: evaluate linear rows and the objective in exact rational
                arithmetic (every float is a dyadic rational, so this is exact);
                slow, meant for small problems and tests.

        Returns:
            An :class:`Evaluation`.
        """
        x = self.full_assignment(x)
        if not np.isfinite(x).all():
            raise NonFiniteError("assignment contains NaN or infinite values")
        if exact:
            return self._evaluate_exact(x, tol)
        rhs_eff = self.effective_rhs()
        scale = np.maximum(1.0, np.maximum(np.abs(rhs_eff), abs(self.A) @ np.abs(x)))
        lhs = self.A @ x
        d = lhs - rhs_eff
        viol = np.where(
            self.sense == GE, np.maximum(0.0, -d), np.where(self.sense == LE, np.maximum(0.0, d), np.abs(d))
        )
        holds = viol <= tol * scale
        objective = float(self.objective @ x + self.objective_constant)
        xin, xout = x[self.relu_in], x[self.relu_out]
        relu_viol = np.abs(xout - np.maximum(0.0, xin))
        relu_holds = relu_viol <= tol * np.maximum(1.0, np.abs(xin))
        relu_bounds = (xin >= self.relu_lb - tol * np.maximum(1.0, np.abs(self.relu_lb))) & (
            xin <= self.relu_ub + tol * np.maximum(1.0, np.abs(self.relu_ub))
        )
        bviol = np.maximum(0.0, np.maximum(self.lb - x, x - self.ub))
        bviol = np.where(bviol <= tol * np.maximum(1.0, np.maximum(np.abs(self.lb), np.abs(self.ub))), 0.0, bviol)
        integral = ~self.is_binary | (x == 0) | (x == 1)
        feasible = bool(
            holds.all() and relu_holds.all() and relu_bounds.all() and (bviol == 0).all() and integral.all()
        )
        return Evaluation(
            feasible=feasible,
            objective=objective,
            linear_lhs=lhs,
            linear_violation=viol,
            linear_holds=holds,
            relu_violation=relu_viol,
            relu_holds=relu_holds,
            relu_bounds_hold=relu_bounds,
            bound_violation=bviol,
            integrality_holds=integral,
        )

    def _evaluate_exact(self, x: np.ndarray, tol: float) -> Evaluation:
        """:meth:`evaluate` with the rows and objective in exact arithmetic (:mod:`smug.ir.exact`).

        ReLU, bound and integrality checks compare floats, which is exact at ``tol=0``.
        """
        ev = self.evaluate(x, tol=tol)
        xq = _exact.values(self, x)
        diff = [_exact.row_activity(self, xq, i) - r for i, r in enumerate(_exact.exact_rhs(self))]
        viol = [
            max(Fraction(0), -d) if s == GE else max(Fraction(0), d) if s == LE else abs(d)
            for d, s in zip(diff, self.sense)
        ]
        scale = np.maximum(1.0, np.maximum(np.abs(self.effective_rhs()), abs(self.A) @ np.abs(x)))
        ev.linear_holds = np.array([v <= Fraction(tol) * Fraction(float(sc)) for v, sc in zip(viol, scale)], dtype=bool)
        ev.linear_violation = np.array([float(v) for v in viol], dtype=np.float64)
        ev.linear_lhs = np.array([float(d + r) for d, r in zip(diff, _exact.exact_rhs(self))], dtype=np.float64)
        ev.objective = float(_exact.objective(self, x))
        ev.feasible = bool(
            ev.linear_holds.all()
            and ev.relu_holds.all()
            and ev.relu_bounds_hold.all()
            and (ev.bound_violation == 0).all()
            and ev.integrality_holds.all()
        )
        return ev

    def objective_value(self, x: Any) -> float:
        """``c . x + constant`` for an assignment (float64)."""
        return float(self.objective @ self.full_assignment(x) + self.objective_constant)

    def exact_objective(self, x: Any, rational: Sequence[Fraction] | None = None) -> Fraction:
        """``c . x + constant`` in exact rational arithmetic (``rational``: exact values of ``x``)."""
        return _exact.objective(self, self.full_assignment(x), rational)

    def exact_check(self, x: Any, rational: Sequence[Fraction] | None = None) -> _exact.ExactCheck:
        """Every row, ReLU, bound and integrality requirement checked exactly (see :func:`smug.ir.exact.check`)."""
        return _exact.check(self, self.full_assignment(x), rational)

    def features_kept(self, mask: Any) -> np.ndarray:
        """Map a mask (one 0/1 value per mask variable) to a 0/1 array shaped like the input.

        A feature is kept when any mask variable that controls it is 1.
        """
        if self.groups is None or self.input_shape is None:
            raise ValidationError("this problem has no groups/input_shape, so masks cannot be mapped to input features")
        m = as_1d("mask", np.asarray(mask, dtype=np.float64).ravel()[: self.n_mask], self.n_mask)
        kept = (self.groups.T @ m) > 0.5
        return kept.reshape(self.input_shape).astype(np.float64)

    # ------------------------------------------------------------ equality
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Problem):
            return NotImplemented

        def same_sparse(a: sp.csr_matrix | None, b: sp.csr_matrix | None) -> bool:
            if a is None or b is None:
                return a is None and b is None
            return (
                a.shape == b.shape
                and np.array_equal(a.indptr, b.indptr)
                and np.array_equal(a.indices, b.indices)
                and np.array_equal(a.data, b.data)
            )

        return (
            self.n_mask == other.n_mask
            and all(np.array_equal(getattr(self, f), getattr(other, f)) for f in _ARRAYS)
            and self.objective_constant == other.objective_constant
            and same_sparse(self.A, other.A)
            and same_sparse(self.groups, other.groups)
            and self.input_shape == other.input_shape
            and self.var_names == other.var_names
            and self.row_names == other.row_names
            and self.metadata == other.metadata
        )

    __hash__ = None  # type: ignore[assignment]

    # ------------------------------------------------------- transformations
    def with_rows(
        self,
        A: Any,
        sense: Any,
        rhs: Any,
        *,
        strict: Any = False,
        margin: Any = 0.0,
        names: Sequence[str] | None = None,
    ) -> Problem:
        """A copy of this problem with extra linear rows appended (used for bounds and no-good cuts)."""
        A = canonical_csr("extra rows", A, (np.asarray(rhs).reshape(-1).shape[0], self.n_vars))
        k = A.shape[0]
        row_names = None
        if self.row_names is not None or names is not None:
            row_names = list(self.row_names or [f"r{i}" for i in range(self.n_rows)])
            row_names += list(names) if names is not None else _fresh_names(row_names, "r", self.n_rows, k)
        return self.replace(
            A=sp.vstack([self.A, A], format="csr"),
            sense=np.concatenate([self.sense, sense_codes(sense, k)]),
            rhs=np.concatenate([self.rhs, as_1d("rhs", rhs, k)]),
            strict=np.concatenate([self.strict, as_1d("strict", strict, k, dtype=bool)]),
            margin=np.concatenate([self.margin, as_1d("margin", margin, k)]),
            row_names=row_names,
        )

    def replace(self, **changes: Any) -> Problem:
        """A validated copy with some fields replaced (for example ``lb=``, ``ub=``, ``objective=``)."""
        fields = {f: getattr(self, f) for f in _FIELDS}
        fields["metadata"] = dict(self.metadata)
        unknown = set(changes) - set(fields)
        if unknown:
            raise ValidationError(f"Problem has no field(s) {sorted(unknown)}")
        fields.update(changes)
        return Problem(**fields)

    def with_bounds(self, lb: Any, ub: Any) -> Problem:
        """A copy with other variable bounds (for example binaries fixed by ``lb == ub``)."""
        return self.replace(lb=as_1d("lb", lb, self.n_vars), ub=as_1d("ub", ub, self.n_vars))

    def with_objective_bound(self, bound: float, *, strict: bool = False, margin: float = 0.0) -> Problem:
        """A copy with the row ``objective <= bound`` (or ``< bound`` with the given margin)."""
        return self.with_rows(
            sp.csr_matrix(self.objective.reshape(1, -1)),
            LE,
            [bound - self.objective_constant],
            strict=[strict],
            margin=[margin if strict else 0.0],
            names=["objective_bound"] if self.row_names else None,
        )

    def with_nogoods(self, masks: Iterable[Any]) -> Problem:
        """A copy that excludes each given mask (on the mask variables) by a no-good cut."""
        A, rhs = self.nogood_rows(masks)
        return self.with_rows(A, GE, rhs) if rhs.size else self

    def nogood_rows(self, masks: Iterable[Any]) -> tuple[np.ndarray, np.ndarray]:
        """The ``>=`` rows that exclude each mask: ``sum_{m_i=1} (1 - x_i) + sum_{m_i=0} x_i >= 1`` (dense, ``rhs``)."""
        rows, rhs = [], []
        for mask in masks:
            mvec = np.asarray(mask, dtype=np.float64).ravel()[: self.n_mask].round()
            row = np.zeros(self.n_vars)
            row[: self.n_mask] = np.where(mvec > 0.5, -1.0, 1.0)
            rows.append(row)
            rhs.append(1.0 - float((mvec > 0.5).sum()))
        return (np.vstack(rows) if rows else np.zeros((0, self.n_vars))), np.asarray(rhs, dtype=np.float64)

    def linearize_relus(self) -> Problem:
        """An equivalent problem without ReLU constraints (the big-M reduction).

        Each ReLU ``y = max(0, x)`` with sound bounds ``l <= x <= u`` becomes:
        ``y = x`` when ``l >= 0``; ``y = 0`` when ``u <= 0``; otherwise a new
        binary ``z`` (appended after the existing variables) with
        ``y >= 0, y >= x, y <= x - l (1 - z), y <= u z``.  The big-M values are
        the IR's sound bounds, never a constant.  Variables keep their indices,
        so a solution of the result maps back by truncation to ``n_vars``.
        """
        if self.n_relu == 0:
            return self
        n = self.n_vars
        rows_i: list[np.ndarray] = []
        rows_j: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        sense: list[np.ndarray] = []
        rhs: list[np.ndarray] = []
        lo, hi = self.relu_lb, self.relu_ub
        x, y = self.relu_in, self.relu_out
        active = lo >= 0
        inactive = (hi <= 0) & ~active
        unstable = ~active & ~inactive
        r0 = 0

        def add(cols: list[np.ndarray], coefs: list[np.ndarray], s: int, b: np.ndarray) -> None:
            nonlocal r0
            k = b.shape[0]
            rid = np.arange(r0, r0 + k)
            for c, v in zip(cols, coefs):
                rows_i.append(rid)
                rows_j.append(c)
                vals.append(np.broadcast_to(v, (k,)).astype(np.float64))
            sense.append(np.full(k, s, dtype=np.int8))
            rhs.append(b)
            r0 += k

        one = np.array(1.0)
        # always active: y - x == 0
        if active.any():
            add([y[active], x[active]], [one, -one], EQ, np.zeros(int(active.sum())))
        # always inactive: y == 0
        if inactive.any():
            add([y[inactive]], [one], EQ, np.zeros(int(inactive.sum())))
        ku = int(unstable.sum())
        z = np.arange(n, n + ku)
        if ku:
            xu, yu, lu, uu = x[unstable], y[unstable], lo[unstable], hi[unstable]
            add([yu], [one], GE, np.zeros(ku))  # y >= 0
            add([yu, xu], [one, -one], GE, np.zeros(ku))  # y - x >= 0
            add([yu, xu, z], [one, -one, -lu], LE, -lu)  # y - x - l z <= -l
            add([yu, z], [one, -uu], LE, np.zeros(ku))  # y - u z <= 0
        new = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows_i), np.concatenate(rows_j))), shape=(r0, n + ku)
        )
        A_old = sp.hstack([self.A, sp.csr_matrix((self.n_rows, ku))], format="csr")
        var_names = None
        if self.var_names is not None:
            phase = [f"relu_phase_{i}" for i in np.flatnonzero(unstable)]
            taken = set(self.var_names)
            var_names = self.var_names + [s if s not in taken else f"{s}~{n + k}" for k, s in enumerate(phase)]
        row_names = None
        if self.row_names is not None:
            row_names = self.row_names + _fresh_names(self.row_names, "relu_bigM_", 0, r0)
        meta = dict(self.metadata)
        meta["linearized_relus"] = {"active": int(active.sum()), "inactive": int(inactive.sum()), "unstable": ku}
        return self.replace(
            lb=np.concatenate([self.lb, np.zeros(ku)]),
            ub=np.concatenate([self.ub, np.ones(ku)]),
            is_binary=np.concatenate([self.is_binary, np.ones(ku, dtype=bool)]),
            A=sp.vstack([A_old, new], format="csr"),
            sense=np.concatenate([self.sense] + sense),
            rhs=np.concatenate([self.rhs] + rhs),
            strict=np.concatenate([self.strict, np.zeros(r0, dtype=bool)]),
            margin=np.concatenate([self.margin, np.zeros(r0)]),
            relu_in=np.zeros(0, dtype=np.int64),
            relu_out=np.zeros(0, dtype=np.int64),
            relu_lb=np.zeros(0),
            relu_ub=np.zeros(0),
            objective=np.concatenate([self.objective, np.zeros(ku)]),
            var_names=var_names,
            row_names=row_names,
            metadata=meta,
        )

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """The problem as plain JSON-compatible data (schema in docs/ir.md)."""
        return _io.problem_to_dict(self)

    def to_json(self, path: str | None = None, *, indent: int | None = None) -> str:
        """Serialise to JSON (lossless: floats are written with ``repr`` precision).

        When ``path`` is given the text is also written there.
        """
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
        return text

    @classmethod
    def from_dict(cls, d: Any) -> Problem:
        """Rebuild a problem from :meth:`to_dict` data; the schema is checked strictly (:mod:`smug.ir.io`)."""
        return cls(**_io.problem_kwargs(d))

    @classmethod
    def from_json(cls, text_or_path: Any) -> Problem:
        """Load a problem from JSON text (starting with ``{``) or from a path to a JSON file."""
        if not isinstance(text_or_path, (str, os.PathLike)):
            raise SchemaError(
                f"from_json takes JSON text or a file path, got a {type(text_or_path).__name__}; "
                "for parsed data use Problem.from_dict"
            )
        text = str(text_or_path) if isinstance(text_or_path, str) else None
        if text is None or not text.lstrip().startswith(("{", "[")):
            path = os.fspath(text_or_path)
            try:
                with open(path, encoding="utf-8") as fh:
                    text = fh.read()
            except FileNotFoundError:
                raise SchemaError(f"no problem file {path!r} (and it is not JSON text either)") from None
            except (IsADirectoryError, UnicodeDecodeError, PermissionError) as exc:
                raise SchemaError(f"cannot read problem file {path!r}: {exc}") from None
        return cls.from_dict(_io.load_json_text(text))

    # --------------------------------------------------------------- exports
    def to_smtlib2(
        self,
        *,
        optimize: bool = True,
        objective_bound: float | Fraction | None = None,
        strict_bound: bool = False,
        encoding: str = "ite",
    ) -> str:
        """SMT-LIB2 text, exactly this problem (see :func:`smug.ir.export.to_smtlib2`)."""
        return _export.to_smtlib2(
            self, optimize=optimize, objective_bound=objective_bound, strict_bound=strict_bound, encoding=encoding
        )

    def to_mps(self) -> str:
        """Free-format MPS text (see :func:`smug.ir.export.to_mps`: strict margins kept as fixed columns)."""
        return _export.to_mps(self)

    def to_lp(self) -> str:
        """CPLEX LP text (see :func:`smug.ir.export.to_lp`)."""
        return _export.to_lp(self)

    # ---------------------------------------------------------------- display
    #: Problems up to this many variables and rows (+ ReLUs) print in full in ``repr`` (for test failures).
    REPR_FULL_LIMIT = 24

    def __repr__(self) -> str:
        head = (
            f"Problem(n_mask={self.n_mask}, n_vars={self.n_vars}, n_binary={self.n_binary}, "
            f"rows={self.n_rows}, nnz={self.A.nnz}, relus={self.n_relu})"
        )
        if self.n_vars <= self.REPR_FULL_LIMIT and self.n_rows + self.n_relu <= self.REPR_FULL_LIMIT:
            return head[:-1] + ":\n" + self.describe() + ")"
        return head

    def describe(self) -> str:
        """The whole problem as readable text: objective, rows, ReLUs and bounds, every number round-tripping.

        Each float is written with ``repr`` (the shortest text that reads back as
        the same double), so a failing property test's problem can be rebuilt
        from what it prints.  ``repr`` uses it for problems of up to
        :attr:`REPR_FULL_LIMIT` variables and rows.
        """

        def name(j: int) -> str:
            return self.var_names[j] if self.var_names else (f"m{j}" if j < self.n_mask else f"x{j}")

        def affine(idx: Any, vals: Any) -> str:
            terms = [f"{'-' if v < 0 else '+'} {abs(float(v))!r}*{name(int(j))}" for j, v in zip(idx, vals)]
            text = " ".join(terms) if terms else "0"
            return text[2:] if text.startswith("+ ") else text

        c = self.objective
        nz = np.flatnonzero(c)
        const = f" + {self.objective_constant!r}" if self.objective_constant else ""
        lines = [f"  minimise {affine(nz, c[nz])}{const}"]
        A = self.A
        for i in range(self.n_rows):
            lo, hi = A.indptr[i], A.indptr[i + 1]
            op = (
                {1: ">", -1: "<", 0: "=="}[int(self.sense[i])]
                if self.strict[i]
                else {1: ">=", -1: "<=", 0: "=="}[int(self.sense[i])]
            )
            tail = f"  (strict, margin {float(self.margin[i])!r})" if self.strict[i] else ""
            label = self.row_names[i] if self.row_names else f"r{i}"
            lines.append(f"  {label}: {affine(A.indices[lo:hi], A.data[lo:hi])} {op} {float(self.rhs[i])!r}{tail}")
        for k in range(self.n_relu):
            lines.append(
                f"  relu: {name(int(self.relu_out[k]))} = max(0, {name(int(self.relu_in[k]))})  "
                f"(input in [{float(self.relu_lb[k])!r}, {float(self.relu_ub[k])!r}])"
            )
        bounds = [
            f"{name(j)} in {{0, 1}}"
            if self.is_binary[j]
            else f"{name(j)} in [{float(self.lb[j])!r}, {float(self.ub[j])!r}]"
            for j in range(self.n_vars)
            if not (self.is_binary[j] and self.lb[j] == 0 and self.ub[j] == 1)
        ]
        n_free_bin = int(
            sum(1 for j in range(self.n_vars) if self.is_binary[j] and self.lb[j] == 0 and self.ub[j] == 1)
        )
        if n_free_bin:
            lines.append(f"  binary: {n_free_bin} variable(s) in {{0, 1}}")
        if bounds:
            lines.append("  bounds: " + ", ".join(bounds))
        return "\n".join(lines)

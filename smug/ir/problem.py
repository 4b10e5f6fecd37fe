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

__all__ = [
    "SCHEMA_VERSION",
    "LE",
    "EQ",
    "GE",
    "Problem",
    "ProblemBuilder",
    "Evaluation",
]

#: Version of the JSON schema written by :meth:`Problem.to_json`.
SCHEMA_VERSION = 1

#: Sense codes of linear rows.
LE, EQ, GE = -1, 0, 1
_SENSE_FROM_STR = {"<=": LE, "==": EQ, "=": EQ, ">=": GE}
_SENSE_TO_STR = {LE: "<=", EQ: "==", GE: ">="}


def _as_1d(name: str, value: Any, length: int | None, dtype: Any = np.float64) -> np.ndarray:
    arr = np.asarray(value, dtype=dtype)
    if arr.ndim == 0 and length is not None:
        arr = np.full(length, arr, dtype=dtype)
    if arr.ndim != 1:
        raise ShapeError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if length is not None and arr.shape[0] != length:
        raise ShapeError(f"{name} has length {arr.shape[0]}, expected {length}")
    return arr


def _check_finite(name: str, arr: np.ndarray, labels: Sequence[str] | None = None) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = int(np.flatnonzero(bad.ravel())[0])
        what = labels[idx] if labels is not None and idx < len(labels) else f"index {idx}"
        raise NonFiniteError(
            f"{name} contains {bad.sum()} non-finite value(s); first at {what}: "
            f"{arr.ravel()[idx]!r}. Every number in a problem must be finite."
        )


def _canonical_csr(name: str, mat: Any, shape: tuple[int, int] | None) -> sp.csr_matrix:
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
    _check_finite(name, m.data)
    m.eliminate_zeros()
    m.sort_indices()
    return m


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
        self.lb = _as_1d("lb", self.lb, None)
        n = self.lb.shape[0]
        self.ub = _as_1d("ub", self.ub, n)
        self.is_binary = _as_1d("is_binary", self.is_binary, n, dtype=bool)
        if self.n_mask > n:
            raise ShapeError(f"n_mask={self.n_mask} exceeds the number of variables {n}")
        if self.var_names is not None:
            self.var_names = [str(s) for s in self.var_names]
            if len(self.var_names) != n:
                raise ShapeError(f"var_names has {len(self.var_names)} entries, expected {n}")
        names = [self.name_of(j) for j in range(n)] if n <= 100_000 else None
        _check_finite("variable lower bounds (lb)", self.lb, names)
        _check_finite("variable upper bounds (ub)", self.ub, names)
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
        self.A = _canonical_csr("A (linear constraint matrix)", self.A, None)
        if self.A.shape[1] != n:
            raise ShapeError(f"A has {self.A.shape[1]} columns but the problem has {n} variables")
        m = self.A.shape[0]
        self.sense = self._sense_codes(self.sense, m)
        self.rhs = _as_1d("rhs", self.rhs, m)
        self.strict = _as_1d("strict", self.strict if self.strict is not None else False, m, dtype=bool)
        self.margin = _as_1d("margin", self.margin if self.margin is not None else 0.0, m)
        if self.row_names is not None:
            self.row_names = [str(s) for s in self.row_names]
            if len(self.row_names) != m:
                raise ShapeError(f"row_names has {len(self.row_names)} entries, expected {m}")
        _check_finite("rhs", self.rhs, self.row_names)
        _check_finite("margin", self.margin, self.row_names)
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

        k = _as_1d("relu_in", self.relu_in, None, dtype=np.int64).shape[0]
        self.relu_in = _as_1d("relu_in", self.relu_in, k, dtype=np.int64)
        self.relu_out = _as_1d("relu_out", self.relu_out, k, dtype=np.int64)
        self.relu_lb = _as_1d("relu_lb", self.relu_lb, k)
        self.relu_ub = _as_1d("relu_ub", self.relu_ub, k)
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
        _check_finite("relu_lb", self.relu_lb)
        _check_finite("relu_ub", self.relu_ub)
        inv = self.relu_lb > self.relu_ub
        if inv.any():
            r = int(np.flatnonzero(inv)[0])
            raise BoundsError(
                f"ReLU constraint {r} has input bounds [{self.relu_lb[r]!r}, {self.relu_ub[r]!r}] "
                "with lower above upper"
            )

        self.objective = _as_1d("objective", self.objective if self.objective is not None else 0.0, n)
        _check_finite("objective", self.objective, names)
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
            self.groups = _canonical_csr("groups", g, shape)
        elif self.input_shape is not None:
            self.input_shape = tuple(int(s) for s in self.input_shape)
        if not isinstance(self.metadata, dict):
            raise ValidationError(f"metadata must be a dict, got {type(self.metadata).__name__}")

    def _row_label(self, i: int) -> str:
        if self.row_names is not None:
            return f"{i} ({self.row_names[i]})"
        return str(i)

    @staticmethod
    def _sense_codes(sense: Any, m: int) -> np.ndarray:
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
        arr = _as_1d("sense", arr, m, dtype=np.int64)
        bad = ~np.isin(arr, (LE, EQ, GE))
        if bad.any():
            raise ValidationError(f"sense code {arr[bad][0]!r} unknown; use -1 (<=), 0 (==) or 1 (>=)")
        return arr.astype(np.int8)

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
        rhs_eff = self.effective_rhs()
        scale = np.maximum(1.0, np.maximum(np.abs(rhs_eff), abs(self.A) @ np.abs(x)))
        if exact:
            lhs_exact = self._exact_lhs(x)
            lhs = np.array([float(v) for v in lhs_exact], dtype=np.float64)
            diff = [lhs_exact[i] - self._exact_rhs_eff(i) for i in range(self.n_rows)]
            viol = np.array(
                [
                    float(max(Fraction(0), -d)) if s == GE else float(max(Fraction(0), d)) if s == LE else float(abs(d))
                    for d, s in zip(diff, self.sense)
                ],
                dtype=np.float64,
            )
            holds = np.array(
                [
                    (-d if s == GE else d if s == LE else abs(d)) <= Fraction(tol) * Fraction(float(sc))
                    for d, s, sc in zip(diff, self.sense, scale)
                ],
                dtype=bool,
            )
            objective = float(
                sum((Fraction(float(c)) * Fraction(float(v)) for c, v in zip(self.objective, x) if c != 0), Fraction(0))
                + Fraction(self.objective_constant)
            )
        else:
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

    def _exact_lhs(self, x: np.ndarray) -> list[Fraction]:
        A = self.A
        xf = [Fraction(float(v)) for v in x]
        out = []
        for i in range(A.shape[0]):
            s = Fraction(0)
            for k in range(A.indptr[i], A.indptr[i + 1]):
                v = xf[A.indices[k]]
                if v:
                    s += Fraction(float(A.data[k])) * v
            out.append(s)
        return out

    def _exact_rhs_eff(self, i: int) -> Fraction:
        r = Fraction(float(self.rhs[i]))
        if self.strict[i]:
            m = Fraction(float(self.margin[i]))
            r = r + m if self.sense[i] == GE else r - m
        return r

    def objective_value(self, x: Any) -> float:
        """``c . x + constant`` for an assignment."""
        return float(self.objective @ self.full_assignment(x) + self.objective_constant)

    def features_kept(self, mask: Any) -> np.ndarray:
        """Map a mask (one 0/1 value per mask variable) to a 0/1 array shaped like the input.

        A feature is kept when any mask variable that controls it is 1.
        """
        if self.groups is None or self.input_shape is None:
            raise ValidationError("this problem has no groups/input_shape, so masks cannot be mapped to input features")
        m = _as_1d("mask", np.asarray(mask, dtype=np.float64).ravel()[: self.n_mask], self.n_mask)
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
            and all(
                np.array_equal(getattr(self, f), getattr(other, f))
                for f in (
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
            )
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
        A = _canonical_csr("extra rows", A, (np.asarray(rhs).reshape(-1).shape[0], self.n_vars))
        k = A.shape[0]
        row_names = None
        if self.row_names is not None or names is not None:
            row_names = list(self.row_names or [f"r{i}" for i in range(self.n_rows)])
            row_names += list(names) if names is not None else [f"r{self.n_rows + i}" for i in range(k)]
        return Problem(
            n_mask=self.n_mask,
            lb=self.lb,
            ub=self.ub,
            is_binary=self.is_binary,
            A=sp.vstack([self.A, A], format="csr"),
            sense=np.concatenate([self.sense, self._sense_codes(sense, k)]),
            rhs=np.concatenate([self.rhs, _as_1d("rhs", rhs, k)]),
            strict=np.concatenate([self.strict, _as_1d("strict", strict, k, dtype=bool)]),
            margin=np.concatenate([self.margin, _as_1d("margin", margin, k)]),
            relu_in=self.relu_in,
            relu_out=self.relu_out,
            relu_lb=self.relu_lb,
            relu_ub=self.relu_ub,
            objective=self.objective,
            objective_constant=self.objective_constant,
            groups=self.groups,
            input_shape=self.input_shape,
            var_names=self.var_names,
            row_names=row_names,
            metadata=dict(self.metadata),
        )

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
        rows, rhs = [], []
        for mask in masks:
            mvec = np.asarray(mask, dtype=np.float64).ravel()[: self.n_mask].round()
            # sum_{m_i=1} (1 - x_i) + sum_{m_i=0} x_i >= 1
            coef = np.where(mvec > 0.5, -1.0, 1.0)
            row = np.zeros(self.n_vars)
            row[: self.n_mask] = coef
            rows.append(row)
            rhs.append(1.0 - float((mvec > 0.5).sum()))
        if not rows:
            return self
        return self.with_rows(np.vstack(rows), GE, rhs)

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
            var_names = self.var_names + [f"relu_phase_{i}" for i in np.flatnonzero(unstable)]
        row_names = None
        if self.row_names is not None:
            row_names = self.row_names + [f"relu_bigM_{i}" for i in range(r0)]
        meta = dict(self.metadata)
        meta["linearized_relus"] = {"active": int(active.sum()), "inactive": int(inactive.sum()), "unstable": ku}
        return Problem(
            n_mask=self.n_mask,
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
            objective_constant=self.objective_constant,
            groups=self.groups,
            input_shape=self.input_shape,
            var_names=var_names,
            row_names=row_names,
            metadata=meta,
        )

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """The problem as plain JSON-compatible data (schema in docs/ir.md)."""
        A = self.A.tocoo()
        d: dict[str, Any] = {
            "format": "smug-problem",
            "version": SCHEMA_VERSION,
            "n_mask": self.n_mask,
            "variables": {
                "lb": self.lb.tolist(),
                "ub": self.ub.tolist(),
                "binary": self.is_binary.tolist(),
                "names": self.var_names,
            },
            "linear": {
                "shape": list(self.A.shape),
                "row": A.row.tolist(),
                "col": A.col.tolist(),
                "val": A.data.tolist(),
                "sense": [_SENSE_TO_STR[int(s)] for s in self.sense],
                "rhs": self.rhs.tolist(),
                "strict": self.strict.tolist(),
                "margin": self.margin.tolist(),
                "names": self.row_names,
            },
            "relu": {
                "in": self.relu_in.tolist(),
                "out": self.relu_out.tolist(),
                "lb": self.relu_lb.tolist(),
                "ub": self.relu_ub.tolist(),
            },
            "objective": {"coef": self.objective.tolist(), "constant": self.objective_constant},
            "groups": None,
            "metadata": self.metadata,
        }
        if self.groups is not None:
            G = self.groups.tocoo()
            d["groups"] = {
                "input_shape": list(self.input_shape or ()),
                "row": G.row.tolist(),
                "col": G.col.tolist(),
                "val": G.data.tolist(),
            }
        elif self.input_shape is not None:
            d["groups"] = {"input_shape": list(self.input_shape), "row": [], "col": [], "val": [], "absent": True}
        return d

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
    def from_dict(cls, d: dict[str, Any]) -> Problem:
        """Rebuild a problem from :meth:`to_dict` data, checking the schema."""
        if not isinstance(d, dict) or d.get("format") != "smug-problem":
            raise SchemaError("not a smug problem: the top-level 'format' field must be 'smug-problem'")
        version = d.get("version")
        if version != SCHEMA_VERSION:
            raise SchemaError(f"unsupported schema version {version!r}; this smug reads version {SCHEMA_VERSION}")
        try:
            v, lin, relu, obj = d["variables"], d["linear"], d["relu"], d["objective"]
            n = len(v["lb"])
            m = int(lin["shape"][0])
            A = sp.csr_matrix(
                (
                    np.asarray(lin["val"], dtype=np.float64),
                    (np.asarray(lin["row"], dtype=np.int64), np.asarray(lin["col"], dtype=np.int64)),
                ),
                shape=(m, int(lin["shape"][1])),
            )
            groups, input_shape = None, None
            g = d.get("groups")
            if g is not None:
                input_shape = tuple(g["input_shape"])
                if not g.get("absent"):
                    groups = sp.csr_matrix(
                        (
                            np.asarray(g["val"], dtype=np.float64),
                            (np.asarray(g["row"], dtype=np.int64), np.asarray(g["col"], dtype=np.int64)),
                        ),
                        shape=(int(d["n_mask"]), int(np.prod(input_shape))),
                    )
            return cls(
                n_mask=int(d["n_mask"]),
                lb=np.asarray(v["lb"], dtype=np.float64).reshape(n),
                ub=np.asarray(v["ub"], dtype=np.float64),
                is_binary=np.asarray(v["binary"], dtype=bool),
                var_names=v.get("names"),
                A=A,
                sense=list(lin["sense"]) if m else np.zeros(0, dtype=np.int8),
                rhs=np.asarray(lin["rhs"], dtype=np.float64).reshape(m),
                strict=np.asarray(lin["strict"], dtype=bool).reshape(m),
                margin=np.asarray(lin["margin"], dtype=np.float64).reshape(m),
                row_names=lin.get("names"),
                relu_in=np.asarray(relu["in"], dtype=np.int64),
                relu_out=np.asarray(relu["out"], dtype=np.int64),
                relu_lb=np.asarray(relu["lb"], dtype=np.float64),
                relu_ub=np.asarray(relu["ub"], dtype=np.float64),
                objective=np.asarray(obj["coef"], dtype=np.float64),
                objective_constant=float(obj["constant"]),
                groups=groups,
                input_shape=input_shape,
                metadata=dict(d.get("metadata") or {}),
            )
        except (KeyError, TypeError, IndexError) as exc:
            raise SchemaError(f"malformed smug problem JSON: missing or bad field {exc}") from None

    @classmethod
    def from_json(cls, text_or_path: str) -> Problem:
        """Load a problem from JSON text or from a path to a JSON file."""
        text = text_or_path
        if not text_or_path.lstrip().startswith("{"):
            with open(text_or_path, encoding="utf-8") as fh:
                text = fh.read()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SchemaError(f"not valid JSON: {exc}") from None
        return cls.from_dict(data)

    # --------------------------------------------------------------- exports
    def to_smtlib2(self, *, optimize: bool = True, objective_bound: float | None = None) -> str:
        """Export as SMT-LIB2 text (logic QF_LRA; mask and other binaries are Bool).

        Every float is written as the exact rational it denotes, so a solver
        reading the text sees exactly this problem.  With ``optimize=True`` the
        text ends with ``(minimize ...)`` (a z3 / OptiMathSAT extension) and
        ``(check-sat)``; with ``objective_bound`` it asserts
        ``objective <= bound`` instead, for plain SMT solvers.
        """
        out = ["; smug problem exported to SMT-LIB2", "(set-logic QF_LRA)"]
        if optimize and objective_bound is None:
            out[1] = "(set-option :produce-models true)"
        names = [_smt_name(self.name_of(j), j) for j in range(self.n_vars)]
        term = []
        for j in range(self.n_vars):
            if self.is_binary[j]:
                out.append(f"(declare-fun {names[j]} () Bool)")
                if self.lb[j] == 1:
                    out.append(f"(assert {names[j]})")
                if self.ub[j] == 0:
                    out.append(f"(assert (not {names[j]}))")
                term.append(f"(ite {names[j]} 1.0 0.0)")
            else:
                out.append(f"(declare-fun {names[j]} () Real)")
                out.append(
                    f"(assert (and (>= {names[j]} {_smt_num(self.lb[j])}) (<= {names[j]} {_smt_num(self.ub[j])})))"
                )
                term.append(names[j])
        A = self.A
        for i in range(self.n_rows):
            lo, hi = A.indptr[i], A.indptr[i + 1]
            lhs = _smt_sum([f"(* {_smt_num(A.data[k])} {term[A.indices[k]]})" for k in range(lo, hi)])
            rhs = _smt_frac(self._exact_rhs_eff(i))
            op = {GE: ">=", LE: "<=", EQ: "="}[int(self.sense[i])]
            out.append(f"(assert ({op} {lhs} {rhs}))")
        for r in range(self.n_relu):
            xi, yi = names[self.relu_in[r]], names[self.relu_out[r]]
            out.append(f"(assert (= {yi} (ite (> {xi} 0.0) {xi} 0.0)))")
            out.append(f"(assert (and (>= {xi} {_smt_num(self.relu_lb[r])}) (<= {xi} {_smt_num(self.relu_ub[r])})))")
        nz = np.flatnonzero(self.objective)
        obj = _smt_sum(
            [f"(* {_smt_num(self.objective[j])} {term[j]})" for j in nz] + [_smt_num(self.objective_constant)]
        )
        if objective_bound is not None:
            out.append(f"(assert (<= {obj} {_smt_frac(Fraction(float(objective_bound)))}))")
            out.append("(check-sat)")
        elif optimize:
            out.append(f"(minimize {obj})")
            out.append("(check-sat)")
        else:
            out.append("(check-sat)")
        return "\n".join(out) + "\n"

    def to_mps(self) -> str:
        """Export as free-format MPS text (ReLUs lowered by :meth:`linearize_relus`, strict rows by their margin).

        Binaries are integer columns with bound type ``BV``.  The objective
        constant, which MPS cannot carry portably, is recorded in a comment.
        """
        p = self.linearize_relus()
        rhs_eff = p.effective_rhs()
        rn = [f"c{i}" for i in range(p.n_rows)]
        cn = [f"x{j}" for j in range(p.n_vars)]
        out = [f"* smug problem; objective constant {p.objective_constant!r}", "NAME smug", "ROWS", " N obj"]
        for i in range(p.n_rows):
            out.append(f" {'G' if p.sense[i] == GE else 'L' if p.sense[i] == LE else 'E'} {rn[i]}")
        out.append("COLUMNS")
        At = p.A.tocsc()
        in_int = False
        for j in range(p.n_vars):
            if p.is_binary[j] and not in_int:
                out.append("    MARKER 'MARKER' 'INTORG'")
                in_int = True
            elif not p.is_binary[j] and in_int:
                out.append("    MARKER 'MARKER' 'INTEND'")
                in_int = False
            entries = []
            if p.objective[j] != 0:
                entries.append(("obj", p.objective[j]))
            for k in range(At.indptr[j], At.indptr[j + 1]):
                entries.append((rn[At.indices[k]], At.data[k]))
            if not entries:
                entries.append(("obj", 0.0))
            for r, v in entries:
                out.append(f"    {cn[j]} {r} {float(v)!r}")
        if in_int:
            out.append("    MARKER 'MARKER' 'INTEND'")
        out.append("RHS")
        for i in range(p.n_rows):
            if rhs_eff[i] != 0:
                out.append(f"    rhs {rn[i]} {float(rhs_eff[i])!r}")
        out.append("BOUNDS")
        for j in range(p.n_vars):
            if p.is_binary[j]:
                if p.lb[j] == p.ub[j]:
                    out.append(f" FX bnd {cn[j]} {float(p.lb[j])!r}")
                else:
                    out.append(f" BV bnd {cn[j]}")
            elif p.lb[j] == p.ub[j]:
                out.append(f" FX bnd {cn[j]} {float(p.lb[j])!r}")
            else:
                out.append(f" LO bnd {cn[j]} {float(p.lb[j])!r}")
                out.append(f" UP bnd {cn[j]} {float(p.ub[j])!r}")
        out.append("ENDATA")
        return "\n".join(out) + "\n"

    # ---------------------------------------------------------------- display
    def __repr__(self) -> str:
        return (
            f"Problem(n_mask={self.n_mask}, n_vars={self.n_vars}, n_binary={self.n_binary}, "
            f"rows={self.n_rows}, nnz={self.A.nnz}, relus={self.n_relu})"
        )


def _smt_name(name: str, j: int) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "_.-" else "_" for ch in name)
    return safe if safe and not safe[0].isdigit() else f"v{j}"


def _smt_frac(q: Fraction) -> str:
    num, den = q.numerator, q.denominator
    body = f"{abs(num)}.0" if den == 1 else f"(/ {abs(num)}.0 {den}.0)"
    return f"(- {body})" if num < 0 else body


def _smt_num(v: float) -> str:
    return _smt_frac(Fraction(float(v)))


def _smt_sum(terms: list[str]) -> str:
    if not terms:
        return "0.0"
    if len(terms) == 1:
        return terms[0]
    return "(+ " + " ".join(terms) + ")"


class ProblemBuilder:
    """Incremental, vectorised construction of a :class:`Problem`.

    Mask variables must be added first; the builder hands out variable indices
    and collects constraint blocks, then :meth:`build` validates everything once.

    Example:
        >>> b = ProblemBuilder()
        >>> m = b.add_mask(3)
        >>> b.add_rows([[1.0, 2.0, 0.5]], ">=", [2.0])
        >>> b.set_objective(m, 1.0)
        >>> p = b.build()
    """

    def __init__(self) -> None:
        self._lb: list[np.ndarray] = []
        self._ub: list[np.ndarray] = []
        self._bin: list[np.ndarray] = []
        self._names: list[str] | None = []
        self._n = 0
        self._n_mask = 0
        self._mask_closed = False
        self._blocks: list[tuple[sp.coo_matrix, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._relu: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._obj: dict[int, float] = {}
        self._obj_const = 0.0
        self._groups: Any = None
        self._input_shape: tuple[int, ...] | None = None
        self.metadata: dict[str, Any] = {}

    @property
    def n_vars(self) -> int:
        """Number of variables added so far."""
        return self._n

    def _add(self, k: int, lb: Any, ub: Any, binary: bool, names: Sequence[str] | None) -> np.ndarray:
        idx = np.arange(self._n, self._n + k)
        self._lb.append(_as_1d("lb", lb, k))
        self._ub.append(_as_1d("ub", ub, k))
        self._bin.append(np.full(k, binary))
        if self._names is not None:
            if names is None:
                self._names = None
            else:
                if len(names) != k:
                    raise ShapeError(f"{len(names)} names given for {k} variables")
                self._names.extend(names)
        self._n += k
        return idx

    def add_mask(
        self,
        n: int,
        *,
        groups: Any = None,
        input_shape: Sequence[int] | None = None,
        names: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Add ``n`` binary mask variables (only before any other variable); returns their indices.

        ``groups`` is an ``n x prod(input_shape)`` 0/1 matrix saying which input
        features each mask variable controls.
        """
        if self._mask_closed:
            raise ValidationError("mask variables must be added before any other variable")
        self._mask_closed = True
        self._n_mask = int(n)
        self._groups = groups
        self._input_shape = tuple(input_shape) if input_shape is not None else None
        return self._add(int(n), 0.0, 1.0, True, names)

    def add_binary(self, n: int, *, names: Sequence[str] | None = None) -> np.ndarray:
        """Add ``n`` auxiliary binary variables; returns their indices."""
        self._mask_closed = True
        return self._add(int(n), 0.0, 1.0, True, names)

    def add_real(self, lb: Any, ub: Any, *, names: Sequence[str] | None = None) -> np.ndarray:
        """Add real variables with the given (finite) bounds; returns their indices."""
        self._mask_closed = True
        lb = np.atleast_1d(np.asarray(lb, dtype=np.float64))
        ub = np.atleast_1d(np.asarray(ub, dtype=np.float64))
        lb, ub = np.broadcast_arrays(lb, ub)
        return self._add(lb.shape[0], lb, ub, False, names)

    def add_rows(
        self, A: Any, sense: Any, rhs: Any, *, strict: Any = False, margin: Any = 0.0, cols: Any = None
    ) -> None:
        """Add linear rows ``A x (sense) rhs``.

        ``A`` is dense or sparse with one column per variable, or one column per
        entry of ``cols`` (variable indices) when that is given.
        """
        rhs = np.atleast_1d(np.asarray(rhs, dtype=np.float64))
        k = rhs.shape[0]
        M = sp.coo_matrix(A if sp.issparse(A) else np.atleast_2d(np.asarray(A, dtype=np.float64)))
        if M.shape[0] != k:
            raise ShapeError(f"A has {M.shape[0]} rows but rhs has {k} entries")
        if cols is not None:
            cols = np.asarray(cols, dtype=np.int64)
            if M.shape[1] != cols.shape[0]:
                raise ShapeError(f"A has {M.shape[1]} columns but {cols.shape[0]} variable indices were given")
            width = max(self._n, int(cols.max()) + 1 if cols.size else 0)
            M = sp.coo_matrix((M.data, (M.row, cols[M.col])), shape=(k, width))
        s = Problem._sense_codes(sense, k)
        self._blocks.append((M, s, rhs, _as_1d("strict", strict, k, dtype=bool), _as_1d("margin", margin, k)))

    def add_relu(self, out: Any, inp: Any, lb: Any, ub: Any) -> None:
        """Add ReLU constraints ``x[out] = max(0, x[inp])`` with sound bounds ``lb <= x[inp] <= ub``."""
        out = np.atleast_1d(np.asarray(out, dtype=np.int64))
        k = out.shape[0]
        self._relu.append(
            (
                out,
                _as_1d("relu_in", np.atleast_1d(inp), k, dtype=np.int64),
                _as_1d("relu_lb", lb, k),
                _as_1d("relu_ub", ub, k),
            )
        )

    def set_objective(self, idx: Any, coef: Any, constant: float = 0.0) -> None:
        """Set objective coefficients ``coef`` on variables ``idx`` (added to any set before)."""
        idx = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        coef = np.broadcast_to(np.asarray(coef, dtype=np.float64), idx.shape)
        for j, c in zip(idx.tolist(), coef.tolist()):
            self._obj[j] = self._obj.get(j, 0.0) + c
        self._obj_const += float(constant)

    def build(self) -> Problem:
        """Validate and return the :class:`Problem`."""
        n = self._n
        mats, sense, rhs, strict, margin = [], [], [], [], []
        for M, s, r, st, mg in self._blocks:
            if M.shape[1] > n and M.nnz and M.col.max() >= n:
                raise UnknownVariableError(
                    f"a constraint refers to variable {int(M.col.max())}, but only {n} variables exist"
                )
            mats.append(sp.coo_matrix((M.data, (M.row, M.col)), shape=(M.shape[0], n)) if M.shape[1] != n else M)
            sense.append(s)
            rhs.append(r)
            strict.append(st)
            margin.append(mg)
        A = sp.vstack(mats, format="csr") if mats else sp.csr_matrix((0, n))
        obj = np.zeros(n)
        for j, c in self._obj.items():
            if not 0 <= j < n:
                raise UnknownVariableError(f"objective refers to variable {j}, but only {n} variables exist")
            obj[j] = c
        relu = (
            [np.concatenate(parts) if parts else np.zeros(0) for parts in zip(*self._relu)]
            if self._relu
            else [np.zeros(0, dtype=np.int64)] * 2 + [np.zeros(0)] * 2
        )
        return Problem(
            n_mask=self._n_mask,
            lb=np.concatenate(self._lb) if self._lb else np.zeros(0),
            ub=np.concatenate(self._ub) if self._ub else np.zeros(0),
            is_binary=np.concatenate(self._bin) if self._bin else np.zeros(0, dtype=bool),
            A=A,
            sense=np.concatenate(sense) if sense else np.zeros(0, dtype=np.int8),
            rhs=np.concatenate(rhs) if rhs else np.zeros(0),
            strict=np.concatenate(strict) if strict else np.zeros(0, dtype=bool),
            margin=np.concatenate(margin) if margin else np.zeros(0),
            relu_out=relu[0],
            relu_in=relu[1],
            relu_lb=relu[2],
            relu_ub=relu[3],
            objective=obj,
            objective_constant=self._obj_const,
            groups=self._groups,
            input_shape=self._input_shape,
            var_names=self._names if self._names else None,
            metadata=dict(self.metadata),
        )

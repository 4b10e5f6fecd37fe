"""Incremental, vectorised construction of a :class:`~smug.ir.problem.Problem`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import ShapeError, UnknownVariableError, ValidationError
from .problem import Problem, as_1d, sense_codes

__all__ = ["ProblemBuilder"]


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
        self._lb.append(as_1d("lb", lb, k))
        self._ub.append(as_1d("ub", ub, k))
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
        s = sense_codes(sense, k)
        self._blocks.append((M, s, rhs, as_1d("strict", strict, k, dtype=bool), as_1d("margin", margin, k)))

    def add_relu(self, out: Any, inp: Any, lb: Any, ub: Any) -> None:
        """Add ReLU constraints ``x[out] = max(0, x[inp])`` with sound bounds ``lb <= x[inp] <= ub``."""
        out = np.atleast_1d(np.asarray(out, dtype=np.int64))
        k = out.shape[0]
        self._relu.append(
            (
                out,
                as_1d("relu_in", np.atleast_1d(inp), k, dtype=np.int64),
                as_1d("relu_lb", lb, k),
                as_1d("relu_ub", ub, k),
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

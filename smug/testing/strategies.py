"""Hypothesis strategies for IR problems, for smug's tests and for users' own.

Each strategy is an ``@st.composite`` builder, so examples shrink to small,
readable counterexamples.  Typical use::

    from hypothesis import given
    from smug.testing import covering_problems, brute_force

    @given(covering_problems(max_vars=10))
    def test_my_backend(problem):
        opt, _ = brute_force(problem)
        sol = smug.solve(problem, "mybackend")
        ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ..ir import GE, LE, Problem, ProblemBuilder

__all__ = [
    "coefficients",
    "covering_problems",
    "relu_problems",
    "ReluCase",
    "assignments",
    "untie",
    "MAX_UNTIE_VARS",
]


#: Largest number of mask variables for which strategies move right-hand sides away from ties.
MAX_UNTIE_VARS = 14


def _all_masks(n: int) -> np.ndarray:
    return ((np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1).astype(np.float64)


def untie(values: np.ndarray, threshold: float, *, rel_gap: float = 1e-6) -> float:
    """Move ``threshold`` to the middle of the nearest clear gap between ``values``.

    ``values`` are what a row's left-hand side takes over all masks.  After
    this, no mask's value lies within about ``rel_gap`` (relative) of the
    threshold, so float and exact arithmetic, and MILP tolerances, all agree on
    which masks satisfy the row.  The ordering of masks around the threshold is
    kept as far as possible.
    """
    v = np.unique(values)
    scale = max(1.0, float(np.abs(v).max()) if v.size else 1.0, abs(threshold))
    gap = rel_gap * scale
    cands = [v[0] - 1.0, v[-1] + 1.0]
    if v.size > 1:
        d = np.diff(v)
        ok = d > 4 * gap
        cands += ((v[:-1][ok] + v[1:][ok]) / 2).tolist()
    cands_arr = np.asarray(cands)
    if np.min(np.abs(values - threshold)) > gap:
        return float(threshold)
    return float(cands_arr[np.argmin(np.abs(cands_arr - threshold))])


def coefficients(kind: str = "float", max_abs: float = 10.0) -> st.SearchStrategy[float]:
    """Real coefficients: ``"float"`` (any finite float in range) or ``"dyadic"`` (multiples of 1/8, exact sums)."""
    if kind == "dyadic":
        return st.integers(int(-max_abs * 8), int(max_abs * 8)).map(lambda k: k / 8)
    return st.floats(-max_abs, max_abs, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=64)


@st.composite
def covering_problems(
    draw: st.DrawFn,
    *,
    min_vars: int = 1,
    max_vars: int = 12,
    min_rows: int = 1,
    max_rows: int = 6,
    sparse: bool | None = None,
    objective: str = "count",
    coefficient_kind: str = "float",
    allow_le: bool = True,
    strict: bool | None = None,
    feasible_bias: bool = True,
    avoid_ties: bool = True,
) -> Problem:
    """0-1 covering problems shaped like SMUG's: minimise the kept mask variables subject to linear rows.

    Args:
        min_vars: fewest mask variables.
        max_vars: most mask variables.
        min_rows: fewest linear rows.
        max_rows: most linear rows.
        sparse: force sparse rows (``True``), dense rows (``False``) or draw it.
        objective: ``"count"`` (all ones, integral), ``"area"`` (positive
            integers) or ``"real"`` (positive reals).
        coefficient_kind: see :func:`coefficients`.
        allow_le: also draw ``<=`` rows.
        strict: force strict rows with a margin (``True``), none (``False``) or draw.
        feasible_bias: draw right-hand sides below the all-ones value, so most
            problems are feasible (as SMUG's are: keeping everything works).
        avoid_ties: move each right-hand side (with its margin) away from every
            value its row takes over all masks (see :func:`untie`), so that
            solvers with a feasibility tolerance (MILP) and exact ones (SMT)
            must agree.  Only up to ``MAX_UNTIE_VARS`` variables.
    """
    n = draw(st.integers(min_vars, max_vars))
    m = draw(st.integers(min_rows, max_rows))
    is_sparse = draw(st.booleans()) if sparse is None else sparse
    A = draw(hnp.arrays(np.float64, (m, n), elements=coefficients(coefficient_kind)))
    if is_sparse:
        keep = draw(hnp.arrays(np.bool_, (m, n)))
        A = np.where(keep, A, 0.0)
    senses = np.array([draw(st.sampled_from([GE, LE])) if allow_le else GE for _ in range(m)], dtype=np.int8)
    full = A.sum(axis=1)
    if feasible_bias:
        frac = draw(hnp.arrays(np.float64, m, elements=st.floats(0.0, 1.0)))
        # GE rows: rhs between the sum of negative coefficients and the all-ones value
        neg = np.minimum(A, 0).sum(axis=1)
        pos = np.maximum(A, 0).sum(axis=1)
        rhs = np.where(senses == GE, neg + frac * (full - neg), pos - frac * (pos - full))
    else:
        rhs = draw(hnp.arrays(np.float64, m, elements=coefficients(coefficient_kind)))
    is_strict = draw(hnp.arrays(np.bool_, m)) if strict is None else np.full(m, strict)
    margin = np.where(is_strict, draw(st.sampled_from([1e-5, 1e-3, 0.125])), 0.0)
    # keep the all-ones mask feasible when the bias asks for it: the margin is taken off the rhs
    if feasible_bias:
        rhs = np.where(is_strict, np.where(senses == GE, rhs - margin, rhs + margin), rhs)
    if avoid_ties and n <= MAX_UNTIE_VARS:
        values = _all_masks(n) @ A.T
        shift = np.where(is_strict, np.where(senses == GE, margin, -margin), 0.0)
        rhs = np.array([untie(values[:, i], rhs[i] + shift[i]) - shift[i] for i in range(m)])
    if objective == "count":
        c = np.ones(n)
    elif objective == "area":
        c = np.asarray(draw(hnp.arrays(np.int64, n, elements=st.integers(1, 9))), dtype=np.float64)
    elif objective == "real":
        c = draw(hnp.arrays(np.float64, n, elements=st.floats(0.01, 10.0, allow_subnormal=False)))
    else:
        raise ValueError(f"objective must be 'count', 'area' or 'real', got {objective!r}")
    b = ProblemBuilder()
    mv = b.add_mask(n)
    b.add_rows(A, senses, rhs, strict=is_strict, margin=margin)
    b.set_objective(mv, c)
    b.metadata["strategy"] = "covering_problems"
    return b.build()


@dataclass
class ReluCase:
    """A problem with ReLU constraints whose real variables are a function of the mask.

    ``complete(mask)`` returns the full assignment (mask, pre-activations,
    activations) computed forward, for brute force and replay.
    """

    problem: Problem
    complete: Callable[[np.ndarray], np.ndarray]


@st.composite
def relu_problems(
    draw: st.DrawFn,
    *,
    min_vars: int = 1,
    max_vars: int = 8,
    max_hidden: int = 4,
    coefficient_kind: str = "float",
) -> ReluCase:
    """A tiny random ReLU network over the mask: ``h = W m + b``, ``y = relu(h)``, and ``v . y >= t``.

    Pre-activations ``h`` and activations ``y`` are real variables tied by
    equality rows and ReLU constraints whose bounds come from interval
    arithmetic (sound).  The threshold ``t`` is drawn below the all-ones value,
    so most problems are feasible, and moved away from ties (see :func:`untie`).
    """
    n = draw(st.integers(min_vars, max_vars))
    k = draw(st.integers(1, max_hidden))
    W = draw(hnp.arrays(np.float64, (k, n), elements=coefficients(coefficient_kind, 4.0)))
    bias = draw(hnp.arrays(np.float64, k, elements=coefficients(coefficient_kind, 4.0)))
    v = draw(hnp.arrays(np.float64, k, elements=coefficients(coefficient_kind, 4.0)))
    # interval bounds, rounded outward so they stay sound in exact arithmetic
    h_lb = bias + np.minimum(W, 0).sum(axis=1)
    h_ub = bias + np.maximum(W, 0).sum(axis=1)
    h_lb = h_lb - 1e-9 * (1.0 + np.abs(h_lb))
    h_ub = h_ub + 1e-9 * (1.0 + np.abs(h_ub))

    def forward(mask: np.ndarray) -> np.ndarray:
        mask = np.asarray(mask, dtype=np.float64)
        h = W @ mask + bias
        y = np.maximum(h, 0.0)
        return np.concatenate([mask, h, y])

    y_ones = forward(np.ones(n))[n + k :]
    frac = draw(st.floats(0.0, 1.0))
    lo = float(np.minimum(v * np.maximum(h_ub, 0), v * np.maximum(h_lb, 0)).sum())
    t = lo + frac * (float(v @ y_ones) - lo)
    if n <= MAX_UNTIE_VARS:
        ys = np.maximum(_all_masks(n) @ W.T + bias, 0.0)
        t = untie(ys @ v, t)
    b = ProblemBuilder()
    mv = b.add_mask(n)
    hv = b.add_real(h_lb, h_ub)
    yv = b.add_real(np.maximum(h_lb, 0.0), np.maximum(h_ub, 0.0))
    # h - W m == bias
    b.add_rows(np.hstack([-W, np.eye(k), np.zeros((k, k))]), "==", bias, cols=np.concatenate([mv, hv, yv]))
    b.add_relu(yv, hv, h_lb, h_ub)
    b.add_rows(v.reshape(1, -1), ">=", [t], cols=yv)
    b.set_objective(mv, 1.0)
    b.metadata["strategy"] = "relu_problems"
    return ReluCase(b.build(), forward)


@st.composite
def assignments(draw: st.DrawFn, problem: Problem) -> np.ndarray:
    """Assignments inside the variable bounds: binaries 0/1, reals anywhere in their box."""
    x = np.empty(problem.n_vars)
    for j in range(problem.n_vars):
        if problem.is_binary[j]:
            x[j] = draw(st.sampled_from([problem.lb[j], problem.ub[j]]))
        else:
            x[j] = draw(st.floats(problem.lb[j], problem.ub[j], allow_nan=False, allow_subnormal=False))
    return x

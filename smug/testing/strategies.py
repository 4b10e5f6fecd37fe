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

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ..ir import GE, LE, Problem, ProblemBuilder
from ..ir.exact import fraction_to_float_down, fraction_to_float_up

__all__ = [
    "coefficients",
    "covering_problems",
    "relu_problems",
    "ReluCase",
    "assignments",
    "untie",
    "hostile_problems",
    "session_changes",
    "Change",
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


# --------------------------------------------------------------------- hostile problems
def _hostile_value(draw: st.DrawFn, lo_exp: int = -7, hi_exp: int = 6) -> float:
    """A coefficient whose magnitude is anywhere from ``10**lo_exp`` to ``10**hi_exp``, sometimes a round one."""
    kind = draw(st.sampled_from(["wide", "wide", "round", "dyadic", "subnormal"]))
    sign = draw(st.sampled_from([1.0, -1.0]))
    if kind == "round":
        return sign * float(draw(st.sampled_from([1, 2, 3, 10, 1e6, 1e-7])))
    if kind == "dyadic":
        return sign * draw(st.integers(1, 64)) / 8.0
    if kind == "subnormal":
        return sign * draw(st.sampled_from([5e-324, 1e-310, 2.5e-308]))
    e = draw(st.floats(lo_exp, hi_exp, allow_nan=False))
    m = draw(st.floats(1.0, 9.999, allow_nan=False))
    return sign * float(m * 10.0**e)


def _tie_rhs(draw: st.DrawFn, activity: Fraction, scale: float) -> float:
    """A right-hand side at, or within a few ulps or 1e-12 of, a value some point's row takes."""
    f = float(activity)
    how = draw(st.sampled_from(["tie", "tie", "up", "down", "rel_up", "rel_down"]))
    if how == "up":
        return math.nextafter(f, math.inf)
    if how == "down":
        return math.nextafter(f, -math.inf)
    if how == "rel_up":
        return f + 1e-12 * max(1.0, abs(scale))
    if how == "rel_down":
        return f - 1e-12 * max(1.0, abs(scale))
    return f


def _margin(draw: st.DrawFn, rhs: float) -> float:
    return float(draw(st.sampled_from([5e-324, 1e-12, 1e-12 * max(1.0, abs(rhs)), 1e-9, 1e-6, 1e-3])))


@st.composite
def hostile_problems(
    draw: st.DrawFn,
    *,
    min_vars: int = 1,
    max_vars: int = 10,
    max_rows: int = 5,
    relu: bool | None = None,
    equalities: bool = True,
) -> Problem:
    """Small problems built to break float arithmetic: every backend must still answer them exactly.

    Coefficients from ``1e-7`` to ``1e6`` (and subnormals); right-hand sides on,
    or within an ulp or ``1e-12`` of, the value a random 0/1 point gives the row
    (near-ties); strict rows with margins down to the smallest subnormal;
    ``<=``, ``>=`` and equality rows; count, integer and real objectives with
    constants; and (``relu=True``, or drawn) a tiny ReLU network over the mask
    with hostile weights, its pre-activations tied to the mask by equality rows
    and its output by a near-tie row.  Some problems are infeasible.  Small
    enough for the exact oracle (:func:`smug.testing.brute.brute_force`).
    """
    with_relu = draw(st.booleans()) if relu is None else relu
    n = draw(st.integers(min_vars, max_vars if not with_relu else min(max_vars, 6)))
    extra = 0 if with_relu else draw(st.integers(0, 2))
    nb = n + extra
    b = ProblemBuilder()
    mv = b.add_mask(n)
    xb = b.add_binary(extra) if extra else np.zeros(0, dtype=np.int64)
    bins = np.concatenate([mv, xb])
    point = np.array(draw(st.lists(st.integers(0, 1), min_size=nb, max_size=nb)), dtype=np.int64)
    k = draw(st.integers(0 if with_relu else 1, max_rows))
    for _ in range(k):
        dense = draw(st.booleans())
        row = np.zeros(nb)
        for j in range(nb):
            if dense or draw(st.booleans()):
                row[j] = _hostile_value(draw)
        if not row.any():
            row[draw(st.integers(0, nb - 1))] = _hostile_value(draw)
        sense = draw(st.sampled_from([">=", ">=", "<="] + (["=="] if equalities else [])))
        act = sum((Fraction(float(a)) * int(v) for a, v in zip(row, point)), Fraction(0))
        if sense == "==":
            row = np.round(row) + (row == 0)  # integral coefficients: an equality that may hold
            row[np.abs(row) > 1e6] = 1.0
            act = sum((Fraction(float(a)) * int(v) for a, v in zip(row, point)), Fraction(0))
            b.add_rows(row[None, :], "==", [float(act) + draw(st.sampled_from([0.0, 0.0, 1.0]))], cols=bins)
            continue
        rhs = _tie_rhs(draw, act, float(np.abs(row).sum()))
        strict = draw(st.booleans())
        margin = _margin(draw, rhs) if strict else 0.0
        if strict and draw(st.booleans()):  # put the tie on the effective right-hand side
            rhs = rhs - margin if sense == ">=" else rhs + margin
        b.add_rows(row[None, :], sense, [rhs], strict=[strict], margin=[margin], cols=bins)
    if with_relu:
        hidden = draw(st.integers(1, 3))
        W = np.array([[_hostile_value(draw, -3, 6) for _ in range(n)] for _ in range(hidden)])
        bias = np.array([_hostile_value(draw, -3, 6) for _ in range(hidden)])
        # exact interval bounds of h = W m + bias over m in {0,1}^n, rounded outward
        lo_q = [
            Fraction(float(bias[i])) + sum((Fraction(float(w)) for w in W[i] if w < 0), Fraction(0))
            for i in range(hidden)
        ]
        hi_q = [
            Fraction(float(bias[i])) + sum((Fraction(float(w)) for w in W[i] if w > 0), Fraction(0))
            for i in range(hidden)
        ]
        h_lb = np.array([fraction_to_float_down(q) for q in lo_q])
        h_ub = np.array([fraction_to_float_up(q) for q in hi_q])
        hv = b.add_real(h_lb, h_ub)
        yv = b.add_real(np.maximum(h_lb, 0.0), np.maximum(h_ub, 0.0))
        b.add_rows(np.hstack([-W, np.eye(hidden)]), "==", bias, cols=np.concatenate([mv, hv]))
        b.add_relu(yv, hv, h_lb, h_ub)
        v = np.array([_hostile_value(draw, -2, 3) for _ in range(hidden)])
        hq = [
            Fraction(float(bias[i])) + sum((Fraction(float(W[i, j])) * int(point[j]) for j in range(n)), Fraction(0))
            for i in range(hidden)
        ]
        act = sum((Fraction(float(v[i])) * max(Fraction(0), hq[i]) for i in range(hidden)), Fraction(0))
        sense = draw(st.sampled_from([">=", "<="]))
        b.add_rows(v[None, :], sense, [_tie_rhs(draw, act, float(np.abs(v).sum()))], cols=yv)
    kind = draw(st.sampled_from(["count", "integer", "real", "mixed"]))
    if kind == "count":
        c = np.ones(nb)
    elif kind == "integer":
        c = np.array(draw(st.lists(st.integers(-2, 9), min_size=nb, max_size=nb)), dtype=np.float64)
    elif kind == "real":
        c = np.array([abs(_hostile_value(draw, -3, 3)) for _ in range(nb)])
    else:
        c = np.array([_hostile_value(draw, -3, 3) for _ in range(nb)])
    constant = float(draw(st.sampled_from([0.0, 0.0, 2.0, -1.5, 1e-9])))
    b.set_objective(bins, c, constant=constant)
    b.metadata["strategy"] = "hostile_problems"
    return b.build()


@dataclass(frozen=True)
class Change:
    """One change to an open session (see :func:`session_changes`) and how to apply it.

    ``kind`` is ``"bounds"`` (``idx``, ``lb``, ``ub``), ``"row"`` (``row``,
    ``sense``, ``rhs``, ``strict``, ``margin``) or ``"drop"`` (``which``: the
    index, modulo their number, of the rows added so far that are still there).
    """

    kind: str
    idx: tuple[int, ...] = ()
    lb: tuple[float, ...] = ()
    ub: tuple[float, ...] = ()
    row: tuple[float, ...] = ()
    sense: str = ">="
    rhs: float = 0.0
    strict: bool = False
    margin: float = 0.0
    which: int = 0

    def apply(self, session: object, added: list[list[int]]) -> None:
        """Make the change on ``session`` (a :class:`smug.SolverSession`); ``added`` keeps the row handles."""
        if self.kind == "bounds":
            session.set_bounds(list(self.idx), list(self.lb), list(self.ub))  # type: ignore[attr-defined]
        elif self.kind == "row":
            added.append(
                session.add_rows(  # type: ignore[attr-defined]
                    [list(self.row)], self.sense, [self.rhs], strict=[self.strict], margin=[self.margin]
                )
            )
        elif added:
            session.remove_rows(added.pop(self.which % len(added)))  # type: ignore[attr-defined]


@st.composite
def session_changes(draw: st.DrawFn, problem: Problem, *, max_changes: int = 6) -> list[Change]:
    """A sequence of changes to a session opened on ``problem``: what enumeration and deletion loops do, and worse.

    Binaries fixed at 0 or 1 and freed again, real bounds tightened inside the
    problem's and restored, hostile rows added (coefficients from ``1e-7`` to
    ``1e6``, right-hand sides tied to a random point's activity, strict rows
    with tiny margins, no-good rows as enumeration adds them) and removed.
    """
    n = problem.n_vars
    out: list[Change] = []
    bins = np.flatnonzero(problem.is_binary).tolist()
    reals = np.flatnonzero(~problem.is_binary).tolist()
    for _ in range(draw(st.integers(1, max_changes))):
        kind = draw(st.sampled_from(["fix", "fix", "free", "real", "row", "row", "nogood", "drop"]))
        if kind in ("fix", "free") and bins:
            js = draw(st.lists(st.sampled_from(bins), min_size=1, max_size=3, unique=True))
            lo = [float(problem.lb[j]) for j in js]
            hi = [float(problem.ub[j]) for j in js]
            if kind == "fix":
                v = [float(draw(st.integers(int(a), int(b)))) for a, b in zip(lo, hi)]
                lo = hi = v
            out.append(Change("bounds", tuple(js), tuple(lo), tuple(hi)))
        elif kind == "real" and reals:
            j = draw(st.sampled_from(reals))
            a, b = float(problem.lb[j]), float(problem.ub[j])
            t = sorted(draw(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=2)))
            lo_, hi_ = a + t[0] * (b - a), a + t[1] * (b - a)
            lo_, hi_ = max(a, min(lo_, b)), max(a, min(hi_, b))
            if draw(st.booleans()):
                lo_, hi_ = a, b
            out.append(Change("bounds", (j,), (min(lo_, hi_),), (max(lo_, hi_),)))
        elif kind == "nogood" and bins:
            # x != point on the binaries: sum_{p=1} (1 - x) + sum_{p=0} x >= 1
            point = [draw(st.integers(0, 1)) for _ in bins]
            row = np.zeros(n)
            for j, v in zip(bins, point):
                row[j] = -1.0 if v else 1.0
            out.append(Change("row", row=tuple(row.tolist()), sense=">=", rhs=1.0 - float(sum(point))))
        elif kind in ("row", "nogood"):
            row = np.zeros(n)
            for j in range(n):
                if draw(st.booleans()):
                    row[j] = _hostile_value(draw)
            if not row.any():
                row[draw(st.integers(0, n - 1))] = _hostile_value(draw)
            point = [
                Fraction(draw(st.integers(0, 1)))
                if problem.is_binary[j]
                else Fraction(float(problem.lb[j])) + Fraction(float(problem.ub[j] - problem.lb[j])) / 2
                for j in range(n)
            ]
            act = sum((Fraction(float(a)) * v for a, v in zip(row, point)), Fraction(0))
            sense = draw(st.sampled_from([">=", "<="]))
            rhs = _tie_rhs(draw, act, float(np.abs(row).sum()))
            strict = draw(st.booleans())
            margin = _margin(draw, rhs) if strict else 0.0
            out.append(Change("row", row=tuple(row.tolist()), sense=sense, rhs=rhs, strict=strict, margin=margin))
        else:
            out.append(Change("drop", which=draw(st.integers(0, 10))))
    return out

"""An exact brute-force oracle, written apart from the code it checks.

Nothing here calls :meth:`smug.ir.Problem.evaluate`, :mod:`smug.ir.exact` or
any backend: the oracle reads a problem's arrays and decides everything with
Python integers and :class:`~fractions.Fraction`.

* Binaries are enumerated in Gray-code order; each row is scaled once to exact
  integers (coefficients, right-hand side and strict margin share one power of
  two), so a flip updates every row's activity by one integer addition.
* Real variables, for each assignment of the binaries, are first propagated
  (equality rows with one unknown, ReLUs), which settles the networks smug
  encodes; whatever is left is an exact linear program, solved by a small
  two-phase simplex with Bland's rule over Fractions, once per phase pattern
  of the undecided ReLUs.

It is meant for small problems (:data:`MAX_ORACLE_BINARIES` binaries).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

__all__ = ["OracleResult", "exact_optimum", "exactly_feasible", "MAX_ORACLE_BINARIES"]

#: Largest number of binaries :func:`exact_optimum` enumerates.
MAX_ORACLE_BINARIES = 16

_LE, _EQ, _GE = -1, 0, 1


@dataclass
class OracleResult:
    """The exact optimum of a problem and every optimal assignment (``optimum`` is ``None`` when infeasible)."""

    optimum: Fraction | None
    optimal: list[list[Fraction]] = field(default_factory=list)
    feasible_points: int = 0
    points: list[list[Fraction]] | None = None  # every feasible point, when asked for (``keep_points``)

    @property
    def feasible(self) -> bool:
        """Some assignment satisfies the problem."""
        return self.optimum is not None


def _rows(problem: Any) -> list[tuple[list[int], list[Fraction], int, Fraction]]:
    A = problem.A
    out = []
    for i in range(problem.n_rows):
        lo, hi = int(A.indptr[i]), int(A.indptr[i + 1])
        cols = [int(j) for j in A.indices[lo:hi]]
        vals = [Fraction(float(v)) for v in A.data[lo:hi]]
        s = int(problem.sense[i])
        r = Fraction(float(problem.rhs[i]))
        if bool(problem.strict[i]):
            m = Fraction(float(problem.margin[i]))
            r = r + m if s == _GE else r - m
        out.append((cols, vals, s, r))
    return out


def _ok(act: Fraction | int, s: int, r: Fraction | int) -> bool:
    return act >= r if s == _GE else act <= r if s == _LE else act == r


def exactly_feasible(problem: Any, values: Sequence[Fraction | float]) -> bool:
    """Does this exact assignment satisfy every row, ReLU, bound and integrality requirement?"""
    v = [
        x if isinstance(x, Fraction) else Fraction(int(x)) if float(x).is_integer() else Fraction(float(x))
        for x in values
    ]
    if len(v) != problem.n_vars:
        return False
    for j in range(problem.n_vars):
        if not Fraction(float(problem.lb[j])) <= v[j] <= Fraction(float(problem.ub[j])):
            return False
        if bool(problem.is_binary[j]) and v[j] not in (0, 1):
            return False
    for cols, vals, s, r in _rows(problem):
        if not _ok(sum((a * v[j] for a, j in zip(vals, cols)), Fraction(0)), s, r):
            return False
    for a, b, lo, hi in zip(problem.relu_in, problem.relu_out, problem.relu_lb, problem.relu_ub):
        x, y = v[int(a)], v[int(b)]
        if y != max(Fraction(0), x) or not Fraction(float(lo)) <= x <= Fraction(float(hi)):
            return False
    return True


def exact_optimum(problem: Any, *, max_binaries: int = MAX_ORACLE_BINARIES, keep_points: bool = False) -> OracleResult:
    """The exact optimum by enumeration (see the module docstring); ``keep_points`` also lists every feasible point."""
    n = problem.n_vars
    bins = [j for j in range(n) if bool(problem.is_binary[j])]
    if len(bins) > max_binaries:
        raise ValueError(f"the oracle enumerates at most {max_binaries} binaries, this problem has {len(bins)}")
    reals = [j for j in range(n) if not bool(problem.is_binary[j])]
    c = [Fraction(float(v)) for v in problem.objective]
    const = Fraction(float(problem.objective_constant))
    rows = _rows(problem)
    res = OracleResult(None, points=[] if keep_points else None)
    if not reals and problem.n_relu == 0:
        _enumerate_binary(problem, bins, rows, c, const, res)
        return res
    for bits in itertools.product((0, 1), repeat=len(bins)):
        fixed: dict[int, Fraction] = {j: Fraction(b) for j, b in zip(bins, bits)}
        if any(not Fraction(float(problem.lb[j])) <= v <= Fraction(float(problem.ub[j])) for j, v in fixed.items()):
            continue
        best = _best_reals(problem, rows, c, fixed, reals)
        if best is None:
            continue
        val, point = best
        _offer(res, val + const, point)
    return res


def _offer(res: OracleResult, val: Fraction, point: list[Fraction]) -> None:
    res.feasible_points += 1
    if res.points is not None:
        res.points.append(point)
    if res.optimum is None or val < res.optimum:
        res.optimum, res.optimal = val, [point]
    elif val == res.optimum:
        res.optimal.append(point)


def _enumerate_binary(
    problem: Any,
    bins: list[int],
    rows: list[tuple[list[int], list[Fraction], int, Fraction]],
    c: list[Fraction],
    const: Fraction,
    res: OracleResult,
) -> None:
    n = problem.n_vars
    # one exact integer scale per row: every coefficient and the rhs become integers
    irows = []
    for cols, vals, s, r in rows:
        den = 1
        for q in [*vals, r]:
            den = max(den, q.denominator)  # powers of two: the largest is a multiple of the others
        irows.append(([int(q * den) for q in vals], cols, s, int(r * den)))
    col_rows: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for k, (ints, cols, _, _) in enumerate(irows):
        for a, j in zip(ints, cols):
            col_rows[j].append((k, a))
    den_c = max([q.denominator for q in c] + [const.denominator, 1])
    ic = [int(q * den_c) for q in c]
    lb = [int(problem.lb[j]) for j in range(n)]
    ub = [int(problem.ub[j]) for j in range(n)]
    x = [0] * n
    act = [0] * len(irows)
    obj = 0
    m = len(bins)
    for t in range(1 << m):
        if t:
            bit = (t & -t).bit_length() - 1  # Gray code: flip one variable per step
            j = bins[bit]
            d = 1 - 2 * x[j]
            x[j] += d
            for k, a in col_rows[j]:
                act[k] += d * a
            obj += d * ic[j]
        if any(x[j] < lb[j] or x[j] > ub[j] for j in bins):
            continue
        if all(_ok(act[k], s, r) for k, (_, _, s, r) in enumerate(irows)):
            _offer(res, Fraction(obj, den_c) + const, [Fraction(v) for v in x])


def _best_reals(
    problem: Any,
    rows: list[tuple[list[int], list[Fraction], int, Fraction]],
    c: list[Fraction],
    fixed: dict[int, Fraction],
    reals: list[int],
) -> tuple[Fraction, list[Fraction]] | None:
    """The cheapest completion of fixed binaries by the real variables (exact), or ``None``."""
    n = problem.n_vars
    val: list[Fraction | None] = [fixed.get(j) for j in range(n)]
    for j in reals:
        if float(problem.lb[j]) == float(problem.ub[j]):
            val[j] = Fraction(float(problem.lb[j]))
    relus = [(int(a), int(b)) for a, b in zip(problem.relu_in, problem.relu_out)]
    changed = True
    while changed:
        changed = False
        for cols, vals, s, r in rows:
            if s != _EQ:
                continue
            unknown = [k for k, j in enumerate(cols) if val[j] is None]
            if len(unknown) == 1:
                k = unknown[0]
                rest = sum((a * val[j] for a, j in zip(vals, cols) if val[j] is not None), Fraction(0))  # type: ignore[misc]
                val[cols[k]] = (r - rest) / vals[k]
                changed = True
        for a, b in relus:
            if val[a] is not None and val[b] is None:
                val[b] = max(Fraction(0), val[a])  # type: ignore[type-var]
                changed = True
    free = [j for j in range(n) if val[j] is None]
    if not free:
        point = [v for v in val]  # type: ignore[misc]
        if not exactly_feasible(problem, point):  # type: ignore[arg-type]
            return None
        return sum((ci * v for ci, v in zip(c, point)), Fraction(0)), point  # type: ignore[misc]
    open_relus = [(a, b) for a, b in relus if val[a] is None or val[b] is None]
    best: tuple[Fraction, list[Fraction]] | None = None
    for phases in itertools.product((0, 1), repeat=len(open_relus)):
        extra: list[tuple[list[int], list[Fraction], int, Fraction]] = []
        for (a, b), on in zip(open_relus, phases):
            if on:  # y = x, x >= 0
                extra.append(([b, a], [Fraction(1), Fraction(-1)], _EQ, Fraction(0)))
                extra.append(([a], [Fraction(1)], _GE, Fraction(0)))
            else:  # y = 0, x <= 0
                extra.append(([b], [Fraction(1)], _EQ, Fraction(0)))
                extra.append(([a], [Fraction(1)], _LE, Fraction(0)))
        for (a, _), lo, hi in zip(relus, problem.relu_lb, problem.relu_ub):
            extra.append(([a], [Fraction(1)], _GE, Fraction(float(lo))))
            extra.append(([a], [Fraction(1)], _LE, Fraction(float(hi))))
        got = _lp(problem, rows + extra, c, val, free)
        if got is not None and (best is None or got[0] < best[0]):
            best = got
    if best is None or not exactly_feasible(problem, best[1]):
        return None
    return best


def _lp(
    problem: Any,
    rows: list[tuple[list[int], list[Fraction], int, Fraction]],
    c: list[Fraction],
    val: list[Fraction | None],
    free: list[int],
) -> tuple[Fraction, list[Fraction]] | None:
    """Minimise ``c . x`` over the free reals (known values substituted): an exact dense simplex."""
    idx = {j: k for k, j in enumerate(free)}
    lo = [Fraction(float(problem.lb[j])) for j in free]
    hi = [Fraction(float(problem.ub[j])) for j in free]
    # z = x - lo >= 0; rows in z; plus z <= hi - lo
    cons: list[tuple[list[Fraction], int, Fraction]] = []
    base_obj = Fraction(0)
    for j, v in enumerate(val):
        if v is not None:
            base_obj += c[j] * v
    cz = [c[j] for j in free]
    base_obj += sum((ci * low for ci, low in zip(cz, lo)), Fraction(0))
    for cols, vals, s, r in rows:
        coef = [Fraction(0)] * len(free)
        rhs = r
        for a, j in zip(vals, cols):
            if j in idx:
                coef[idx[j]] += a
                rhs -= a * lo[idx[j]]
            else:
                rhs -= a * val[j]  # type: ignore[operator]
        if all(q == 0 for q in coef):
            if not _ok(Fraction(0), s, rhs):
                return None
            continue
        cons.append((coef, s, rhs))
    for k in range(len(free)):
        e = [Fraction(0)] * len(free)
        e[k] = Fraction(1)
        cons.append((e, _LE, hi[k] - lo[k]))
    sol = _simplex(cz, cons, len(free))
    if sol is None:
        return None
    z, zval = sol
    point = list(val)
    for k, j in enumerate(free):
        point[j] = z[k] + lo[k]
    return zval + base_obj, point  # type: ignore[return-value]


def _simplex(
    c: list[Fraction], cons: list[tuple[list[Fraction], int, Fraction]], n: int
) -> tuple[list[Fraction], Fraction] | None:
    """``min c . z`` s.t. ``cons``, ``z >= 0`` (bounded by construction): two-phase tableau, Bland's rule."""
    # standard form: each row a . z (+/- slack) = b with b >= 0, plus an artificial per row
    rows: list[list[Fraction]] = []
    b: list[Fraction] = []
    n_slack = sum(1 for _, s, _ in cons if s != _EQ)
    width = n + n_slack
    si = n
    for coef, s, rhs in cons:
        row = coef + [Fraction(0)] * n_slack
        if s == _LE:
            row[si] = Fraction(1)
            si += 1
        elif s == _GE:
            row[si] = Fraction(-1)
            si += 1
        if rhs < 0:
            row = [-v for v in row]
            rhs = -rhs
        rows.append(row)
        b.append(rhs)
    m = len(rows)
    total = width + m
    T = [row + [Fraction(1) if k == i else Fraction(0) for k in range(m)] + [b[i]] for i, row in enumerate(rows)]
    basis = [width + i for i in range(m)]

    def pivot(r: int, col: int) -> None:
        pv = T[r][col]
        T[r] = [v / pv for v in T[r]]
        for i in range(m):
            if i != r and T[i][col] != 0:
                f = T[i][col]
                T[i] = [vi - f * vr for vi, vr in zip(T[i], T[r])]
        basis[r] = col

    def run(cost: list[Fraction], allowed: int) -> bool:
        while True:
            # reduced costs
            red = []
            for col in range(allowed):
                red.append(cost[col] - sum((cost[basis[i]] * T[i][col] for i in range(m)), Fraction(0)))
            enter = next((col for col in range(allowed) if red[col] < 0 and col not in basis), None)
            if enter is None:
                return True
            ratios = [(T[i][-1] / T[i][enter], basis[i], i) for i in range(m) if T[i][enter] > 0]
            if not ratios:
                return False  # unbounded (cannot happen: every variable is boxed)
            _, _, r = min(ratios)
            pivot(r, enter)

    cost1 = [Fraction(0)] * width + [Fraction(1)] * m
    run(cost1, total)
    if sum((T[i][-1] for i in range(m) if basis[i] >= width), Fraction(0)) != 0:
        return None  # infeasible
    for i in range(m):  # drive artificials out of the basis where possible
        if basis[i] >= width:
            col = next((k for k in range(width) if T[i][k] != 0), None)
            if col is not None:
                pivot(i, col)
    cost2 = c + [Fraction(0)] * (width - n) + [Fraction(0)] * m
    if not run(cost2, width):
        return None
    z = [Fraction(0)] * width
    for i in range(m):
        if basis[i] < width:
            z[basis[i]] = T[i][-1]
    zn = z[:n]
    return zn, sum((ci * v for ci, v in zip(c, zn)), Fraction(0))

"""smug.ir.exact, the one module every verdict rests on, against the independent oracle and Fractions."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import smug
from smug.ir import exact
from smug.testing import exactly_feasible, hostile_problems

PROPS = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


def _rows_problem(rhs, margin, sense) -> smug.Problem:
    k = len(rhs)
    return smug.Problem(
        n_mask=1,
        lb=[0],
        ub=[1],
        is_binary=[True],
        A=np.ones((k, 1)),
        sense=sense,
        rhs=rhs,
        strict=np.ones(k, bool),
        margin=margin,
        relu_in=[],
        relu_out=[],
        relu_lb=[],
        relu_ub=[],
        objective=[0.0],
    )


def test_rounded_rhs_is_never_weaker_or_never_stronger():
    rng = np.random.default_rng(0)
    k = 400
    rhs = rng.normal(size=k) * 10.0 ** rng.integers(-5, 5, k)
    mg = rng.random(k) * 10.0 ** rng.integers(-12, 0, k)
    sense = rng.choice([-1, 1], k)
    p = _rows_problem(rhs, mg, sense)
    tight, loose = exact.rounded_rhs(p, tighten=True), exact.rounded_rhs(p, tighten=False)
    moved = 0
    for i in range(k):
        q = Fraction(rhs[i]) + (Fraction(mg[i]) if sense[i] == 1 else -Fraction(mg[i]))
        assert (Fraction(tight[i]) >= q) if sense[i] == 1 else (Fraction(tight[i]) <= q)
        assert (Fraction(loose[i]) <= q) if sense[i] == 1 else (Fraction(loose[i]) >= q)
        for r in (tight[i], loose[i]):
            assert abs(r - p.effective_rhs()[i]) <= np.spacing(abs(r))  # at most one ulp away
        moved += tight[i] != p.effective_rhs()[i]
    assert moved > 0
    assert exact.exact_rhs(p) == [
        Fraction(r) + (Fraction(m) if s == 1 else -Fraction(m)) for r, m, s in zip(rhs, mg, sense)
    ]


@PROPS
@given(problem=hostile_problems(relu=False), data=st.data())
def test_rows_hold_and_check_agree_with_the_oracle(problem, data):
    nb = problem.n_vars
    for bits in data.draw(st.lists(st.lists(st.integers(0, 1), min_size=nb, max_size=nb), min_size=1, max_size=6)):
        x = np.array(bits, dtype=float)
        rows = exact.rows_hold(problem, x)
        chk = exact.check(problem, x)
        truth = exactly_feasible(problem, [Fraction(b) for b in bits])
        assert chk.feasible == truth == bool(rows.all())
        assert exact.objective(problem, x) == sum(
            (Fraction(float(c)) * b for c, b in zip(problem.objective, bits)),
            Fraction(float(problem.objective_constant)),
        )


def test_check_takes_exact_values_for_real_variables():
    # h = m0 / 3 has no float value; the rational one satisfies the equality exactly, the float one does not
    b = smug.ProblemBuilder()
    m = b.add_mask(1)
    h = b.add_real([0.0], [1.0])
    b.add_rows([[-1.0, 3.0]], "==", [0.0], cols=np.concatenate([m, h]))
    p = b.build()
    x = np.array([1.0, 1 / 3])
    assert not exact.check(p, x).feasible
    assert exact.check(p, x, [Fraction(1), Fraction(1, 3)]).feasible
    assert not exact.check(p, x, [Fraction(1), Fraction(1, 3) + Fraction(1, 10**30)]).feasible
    assert p.evaluate(x).feasible  # the float check, at its tolerance, cannot tell


def test_relu_bounds_and_integrality_are_exact():
    b = smug.ProblemBuilder()
    b.add_mask(1)
    x = b.add_real([-1.0], [1.0])
    y = b.add_real([0.0], [1.0])
    b.add_relu(y, x, [-0.5], [1.0])
    p = b.build()
    assert exact.check(p, [1.0, 0.25, 0.25]).feasible
    assert not exact.check(p, [1.0, 0.25, math.nextafter(0.25, 1)]).feasible  # y = relu(x) exactly
    assert not exact.check(p, [1.0, -0.75, 0.0]).feasible  # the ReLU input below its declared bound
    assert not exact.check(p, [0.5, 0.25, 0.25]).feasible  # a binary at 0.5


@PROPS
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1, max_size=8), st.data())
def test_dyadic_scaling_is_exact(vals, data):
    v = np.array(vals)
    ints, s = exact.dyadic_ints(v)
    assert [Fraction(i, 2**s) for i in ints] == [Fraction(x) for x in vals]
    assert exact.exact_sum(v) == sum((Fraction(x) for x in vals), Fraction(0))
    rhs = Fraction(data.draw(st.floats(-1e6, 1e6)))
    sc, r = exact.scaled_row(v, rhs)
    for bits in itertools.islice(itertools.product((0, 1), repeat=len(vals)), 64):
        lhs = sum((Fraction(x) * b for x, b in zip(vals, bits)), Fraction(0))
        lhs_i = sum((c * b for c, b in zip(sc, bits)), 0)
        assert (lhs >= rhs) == (lhs_i >= r) and (lhs <= rhs) == (lhs_i <= r) and (lhs == rhs) == (lhs_i == r)


def test_fraction_to_float_rounds_the_right_way():
    for q in (Fraction(1, 3), Fraction(-2, 3), Fraction(10**20 + 1), Fraction(1, 10**320), Fraction(5)):
        lo, hi = exact.fraction_to_float_down(q), exact.fraction_to_float_up(q)
        assert Fraction(lo) <= q <= Fraction(hi)
        assert lo == hi or math.nextafter(lo, math.inf) == hi


def test_trivial_lower_bound_is_the_exact_box_minimum():
    b = smug.ProblemBuilder()
    m = b.add_mask(3)
    r = b.add_real([-1.5], [2.0])
    b.set_objective(np.concatenate([m, r]), [0.1, -0.2, 0.0, 1 / 3], constant=0.3)
    p = b.build()
    expect = Fraction(-0.2) + Fraction(1 / 3) * Fraction(-1.5) + Fraction(0.3)
    assert exact.trivial_lower_bound(p) == expect
    q = p.replace(lb=np.array([0, 0, 0, 2.0]), ub=np.array([1, 0, 1, 2.0]))  # x1 fixed at 0, the real at 2
    assert exact.trivial_lower_bound(q) == Fraction(1 / 3) * 2 + Fraction(0.3)


def test_problem_evaluate_exact_sees_what_floats_miss():
    b = smug.ProblemBuilder()
    m = b.add_mask(2)
    b.add_rows([[1e6, 1.0]], ">=", [1e6], strict=[True], margin=[1e-12])
    b.set_objective(m, 1.0)
    p = b.build()
    x = np.array([1.0, 0.0])
    assert p.evaluate(x).feasible  # within 1e-9 relative
    assert not p.evaluate(x, exact=True, tol=0).feasible  # 1e6 >= 1e6 + 1e-12 is false
    assert not p.exact_check(x).feasible
    with pytest.raises(ValueError, match="values"):
        exact.check(p, np.zeros(3))

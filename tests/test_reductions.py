"""Every reduction against the exact oracle: brute force on the original equals brute force on the reduced
problem mapped back (or, for the rounding reductions, the inclusion they promise holds point by point)."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings

import smug
from smug.errors import UnsupportedProblemError
from smug.ir import GE, LE
from smug.reductions.base import EXACT, RELAXES, STRENGTHENS, Chain, Guarantee
from smug.reductions.incumbent import CardinalityCuts, cardinality_cuts, cardinality_lower_bound, greedy_incumbent
from smug.reductions.integer_scaling import IntegerScaling, scale_rows
from smug.reductions.presolve import Presolve
from smug.reductions.relu_bigm import ReluBigM
from smug.testing import covering_problems, exact_optimum, exactly_feasible, hostile_problems, relu_problems

PROPS = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


def _points(p: smug.Problem) -> list[tuple[Fraction, ...]]:
    """Every exactly feasible 0/1 point of a pure-binary problem (by the oracle), sorted."""
    return sorted(tuple(x) for x in exact_optimum(p, keep_points=True).points)


@PROPS
@given(problem=hostile_problems())
def test_presolve_keeps_the_optimum_and_only_optimal_points(problem):
    a = Presolve().apply(problem)
    assert a.guarantee == EXACT
    before, after = exact_optimum(problem), exact_optimum(a.problem)
    assert before.optimum == after.optimum
    for x in after.optimal:  # every optimum of the reduced problem is an optimum of the original
        assert exactly_feasible(problem, x)
    assert a.problem.n_vars == problem.n_vars  # fixings are bounds: the same variables


@PROPS
@given(problem=covering_problems(max_vars=10, objective="real", avoid_ties=False))
def test_presolve_on_covering_problems(problem):
    a = Presolve().apply(problem)
    assert exact_optimum(problem).optimum == exact_optimum(a.problem).optimum


def test_presolve_rules_on_a_hand_case():
    b = smug.ProblemBuilder()
    m = b.add_mask(5)
    # column 0 empty; column 1 only hurts the >= rows; 2 and 3 are forced; row 2 duplicates row 0 weaker
    b.add_rows([[0.0, -1.0, 2.0, 1.0, 0.0], [0.0, -0.5, 1.0, 3.0, 0.0]], ">=", [2.5, 3.5])
    b.add_rows([[0.0, -1.0, 2.0, 1.0, 0.0]], ">=", [2.0])
    b.add_rows([[0.0, 0.0, 0.0, 0.0, 1.0]], "<=", [5.0])  # always holds
    b.set_objective(m, 1.0)
    a = Presolve().apply(b.build())
    q = a.problem
    assert q.ub[:4].tolist() == [0, 0, 1, 1] and q.lb[:4].tolist() == [0, 0, 1, 1]
    assert a.stats["fixed_empty"] >= 1 and a.stats["rows_duplicate"] == 1 and a.stats["rows_redundant"] >= 1


@PROPS
@given(problem=hostile_problems(relu=False))
def test_cuts_change_no_feasible_point(problem):
    a = CardinalityCuts().apply(problem)
    assert a.guarantee == EXACT
    assert _points(problem) == _points(a.problem)
    opt = exact_optimum(problem).optimum
    if opt is not None:
        assert cardinality_lower_bound(problem, a.data) <= opt


def test_cuts_on_a_hand_case():
    b = smug.ProblemBuilder()
    m = b.add_mask(4)
    b.add_rows([[3.0, 2.0, 2.0, -1.0]], ">=", [4.5])  # needs 3 and one 2, or both 2s ... at least 2 ones
    b.set_objective(m, [1.0, 2.0, 3.0, 1.0])
    p = b.build()
    cuts = cardinality_cuts(p)
    assert [(c.need, c.cols.tolist()) for c in cuts] == [(2, [0, 1, 2])]
    assert cardinality_lower_bound(p, cuts) == 3  # the two cheapest of {1, 2, 3}


@settings(PROPS, max_examples=12)
@given(case=relu_problems(max_vars=5, max_hidden=3))
def test_big_m_keeps_the_optimum(case):
    p = case.problem
    a = ReluBigM().apply(p)
    assert a.problem.n_relu == 0
    before, after = exact_optimum(p), exact_optimum(a.problem)
    assert before.optimum == after.optimum
    for x in after.optimal:  # truncated to the original variables, an optimum stays feasible
        y, rat = ReluBigM().invert_point(np.array([float(v) for v in x]), list(x), a.data, p)
        assert len(y) == p.n_vars and exactly_feasible(p, rat)


@PROPS
@given(problem=hostile_problems(relu=True, max_vars=4))
def test_big_m_on_hostile_networks(problem):
    a = ReluBigM().apply(problem)
    assert exact_optimum(problem).optimum == exact_optimum(a.problem).optimum


def _integer_rows_accept(rows: sp.csr_matrix, rhs: list[int], sense: np.ndarray, xs: np.ndarray) -> np.ndarray:
    act = xs.astype(object) @ rows.toarray().astype(object).T
    ok = np.ones((xs.shape[0], rows.shape[0]), dtype=bool)
    for i, s in enumerate(sense.tolist()):
        r = int(rhs[i])
        ok[:, i] = act[:, i] >= r if s == GE else act[:, i] <= r if s == LE else act[:, i] == r
    return ok


@PROPS
@given(problem=hostile_problems(relu=False, max_vars=8, equalities=False))
def test_integer_scaling_is_sound_point_by_point(problem):
    """Tight rows accept only real solutions; relaxed rows accept every real solution; bounds map back validly."""
    real = set(_points(problem))
    for rounding, guarantee in (("tight", STRENGTHENS), ("relaxed", RELAXES)):
        a = IntegerScaling(rounding).apply(problem)
        reduced = set(_points(a.problem))
        if rounding == "tight":
            assert reduced <= real
        else:
            assert real <= reduced
        if a.guarantee != EXACT:
            assert a.guarantee in (guarantee, guarantee & Guarantee(True, True, False))
        else:
            assert reduced == real
        assert np.all(a.problem.A.data == np.round(a.problem.A.data))  # integers, below 2**50
        assert np.abs(a.problem.A.data).max(initial=0) < 2**50
        opt = exact_optimum(problem).optimum
        if rounding == "relaxed" and opt is not None:
            ropt = exact_optimum(a.problem).optimum
            assert IntegerScaling("relaxed").invert_bound(ropt, a.data, problem) <= opt


def test_integer_scaling_exhaustively_on_adversarial_rows():
    """The old CP-SAT test: coefficients like 1/3, 1e-7 differences, right-hand sides within 1e-12 of an
    achievable sum, at 50, 30 and 12 bits."""
    n = 8
    xs = np.array(list(itertools.product((0, 1), repeat=n)), dtype=np.int64)
    tightened = 0
    for seed in range(15):
        rng = np.random.default_rng(seed)
        b = smug.ProblemBuilder()
        x = b.add_mask(n)
        for _ in range(4):
            kind = int(rng.integers(3))
            a = (
                rng.choice([1 / 3, 2 / 3, 1 / 7, 0.1, 0.2, 0.3], n)
                if kind == 0
                else 1.0 + rng.choice([-1e-7, 0.0, 1e-7, 2e-7], n)
                if kind == 1
                else rng.normal(size=n)
            )
            S = rng.random(n) < 0.5
            ex = sum((Fraction(float(v)) for v in a[S]), Fraction(0))
            r = float(ex) + float(rng.choice([-1e-12, 0.0, 1e-12, 0.0])) * max(1.0, abs(float(ex)))
            strict = bool(rng.random() < 0.3)
            b.add_rows([a], str(rng.choice([">=", "<="])), [r], strict=strict, margin=1e-12 if strict else 0.0)
        b.set_objective(x, rng.integers(1, 4, n).astype(float))
        p = b.build()
        feasible_by_row = [{tuple(int(v) for v in x) for x in _points(_one_row(p, i))} for i in range(p.n_rows)]
        all_real = np.array([[tuple(x.tolist()) in feasible_by_row[i] for i in range(p.n_rows)] for x in xs])
        for bits in (50, 30, 12):
            low = scale_rows(p, bits)
            real = all_real[:, low.keep]
            tight = _integer_rows_accept(low.tight, low.rhs, low.sense, xs)
            relaxed = _integer_rows_accept(low.relaxed, low.rhs, low.sense, xs)
            assert not (tight & ~real).any(), (seed, bits)
            assert not (real & ~relaxed).any(), (seed, bits)
            dropped = np.setdiff1d(np.arange(p.n_rows), np.union1d(low.keep, low.infeasible_rows))
            assert all_real[:, dropped].all()
            assert not all_real[:, low.infeasible_rows].any()
            for rows in (low.tight, low.relaxed):
                size = np.asarray(abs(rows).sum(axis=1)).ravel() + np.abs(np.array(low.rhs, dtype=float))
                assert (size < 2 ** (bits - 1)).all()
            tightened += int(low.tightened.sum())
    assert tightened > 0


def _one_row(p: smug.Problem, i: int) -> smug.Problem:
    return p.replace(
        A=p.A[[i]], sense=p.sense[[i]], rhs=p.rhs[[i]], strict=p.strict[[i]], margin=p.margin[[i]], row_names=None
    )


def test_integer_scaling_is_exact_when_it_can_be():
    b = smug.ProblemBuilder()
    x = b.add_mask(4)
    b.add_rows([[1.5, 0.25, 2.0, 1024.0]], ">=", [1.75])
    b.add_rows([[3.0, 6.0, 9.0, 12.0]], "<=", [13.0])
    b.set_objective(x, [0.5, 0.25, 1.0, 2.0])
    p = b.build()
    low = scale_rows(p)
    assert low.exact and low.obj_exact
    assert low.tight.toarray().tolist() == [[6, 1, 8, 4096], [3, 6, 9, 12]]
    assert low.rhs == [7, 13]
    assert low.obj.tolist() == [2, 1, 4, 8] and low.obj_exponent == 2
    a = IntegerScaling().apply(p)
    assert a.guarantee == EXACT
    assert IntegerScaling().invert_bound(Fraction(9), a.data, p) == Fraction(9, 4)
    b = smug.ProblemBuilder()
    x = b.add_mask(3)
    b.add_rows([[1 / 3, 1 / 3, 1 / 3]], "==", [1.0])
    with pytest.raises(UnsupportedProblemError, match="equality"):
        IntegerScaling().check(b.build())


def test_chain_guarantee_is_the_meet():
    b = smug.ProblemBuilder()
    x = b.add_mask(3)
    b.add_rows([[0.1, 0.2, 0.3]], ">=", [0.3])
    b.set_objective(x, 1.0)
    p = b.build()
    c = Chain([Presolve(), IntegerScaling("tight")])
    c.apply(p)
    assert c.guarantee == STRENGTHENS  # 0.1, 0.2, 0.3 do not scale exactly: the rows were rounded
    c2 = Chain([Presolve(), IntegerScaling("relaxed")])
    c2.apply(p)
    assert c2.guarantee == RELAXES
    assert (EXACT & STRENGTHENS) == STRENGTHENS and (STRENGTHENS & RELAXES) == Guarantee(False, False, False)


@PROPS
@given(problem=hostile_problems(relu=False))
def test_the_greedy_start_is_exactly_feasible(problem):
    x = greedy_incumbent(problem)
    if x is not None:
        assert exactly_feasible(problem, [Fraction(v) for v in x])

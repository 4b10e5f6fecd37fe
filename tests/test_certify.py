"""Certification of unproven answers (smug.solving.certify) and the exact oracle it is tested against."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

import smug
from smug.ir import Problem, ProblemBuilder
from smug.solving.certify import ExactAnswer, certify, complete_reals, objective_cut
from smug.solving.contract import Solution, Status
from smug.solving.deadline import Deadline
from smug.testing import brute_force, exact_optimum, exactly_feasible


def network(thr: float = 1.0) -> tuple[Problem, np.ndarray, np.ndarray]:
    """h = W m + b (equalities), y = relu(h), v . y >= thr: reals fully determined by the mask."""
    W = np.array([[1 / 3, 2 / 3, -1.0], [0.7, -0.2, 0.1]])
    bias = np.array([0.1, -0.05])
    v = np.array([1.0, 2.0])
    lo = bias + np.minimum(W, 0).sum(1) - 1e-9
    hi = bias + np.maximum(W, 0).sum(1) + 1e-9
    b = ProblemBuilder()
    m = b.add_mask(3)
    h = b.add_real(lo, hi)
    y = b.add_real(np.maximum(lo, 0), np.maximum(hi, 0))
    b.add_rows(np.hstack([-W, np.eye(2)]), "==", bias, cols=np.concatenate([m, h]))
    b.add_relu(y, h, lo, hi)
    b.add_rows(v[None, :], ">=", [thr], cols=y)
    b.set_objective(m, 1.0)
    return b.build(), W, bias


def test_complete_reals_recomputes_every_real_exactly():
    p, W, bias = network()
    mask = np.array([1.0, 1.0, 0.0])
    hv = W @ mask + bias
    x = np.concatenate([mask, hv + 1e-7, np.maximum(hv, 0) - 1e-7])  # a tolerance-level answer
    assert not p.exact_check(x).feasible
    out = complete_reals(p, x)
    assert out is not None
    xo, rat = out
    assert p.exact_check(xo, rat).feasible and exactly_feasible(p, rat)
    assert rat[3] == Fraction(1 / 3) + Fraction(2 / 3) + Fraction(0.1)  # exactly W m + b, not its float
    assert complete_reals(p, np.concatenate([[0.0, 0.0, 1.0], hv, hv])) is None  # this mask misses the row


def _certify(p, x, claimed, *, bound=None, float_bound=None, deadline=None, ask=None, report=None):
    """``certify`` with the defaults these tests share (no start, the trivial lower bound 0, 30 s)."""
    return certify(
        p,
        x,
        None,
        claimed,
        bound=bound,
        float_bound=float_bound,
        start=None,
        lower=Fraction(0),
        deadline=deadline or Deadline(30),
        ask=ask,
        report=report or (lambda inc: None),
    )


def _problem() -> Problem:
    b = ProblemBuilder()
    m = b.add_mask(4)
    b.add_rows([[0.1, 0.2, 0.3, 0.4]], ">=", [0.45], strict=[True], margin=[1e-12])
    b.set_objective(m, [1.0, 2.0, 2.0, 3.0])
    return b.build()


def _exact_asker(calls: list[Problem], p: Problem):
    def ask(extra, dl: Deadline) -> ExactAnswer:
        q = p if extra is None else p.with_rows(extra.A, extra.sense, extra.rhs)
        calls.append(q)
        return ExactAnswer(smug.solve(q, "z3", presolve=False, greedy=False, cuts=False), True, True)

    return ask


def test_an_early_claim_is_improved_and_proven():
    p = _problem()
    opt, _ = brute_force(p)
    calls: list[Problem] = []
    seen = []
    x = np.array([0.0, 0.0, 1.0, 1.0])  # feasible at cost 5; the optimum is 4
    assert opt == 4 and p.exact_check(x).feasible
    sol = _certify(p, x, Status.OPTIMAL, float_bound=2.5, ask=_exact_asker(calls, p), report=seen.append)
    assert sol.status == Status.OPTIMAL and sol.exact_objective == opt
    assert sol.float_bound == 2.5 and sol.exact_bound == opt
    assert calls  # the bound question was asked
    c, r, exact = objective_cut(p, Fraction(5))
    assert exact and r == 4.0  # an integral objective: "better than 5" is "<= 4" exactly
    assert seen and seen[-1].exact_objective == opt  # the improvement was reported


def test_without_an_exact_backend_a_claim_stays_a_claim():
    p = _problem()
    x = np.array([0.0, 0.0, 1.0, 1.0])
    sol = _certify(p, x, Status.OPTIMAL, float_bound=3.0)
    assert sol.status == Status.FEASIBLE and "no exact backend" in sol.message
    assert sol.exact_bound == 0 and sol.float_bound == 3.0  # only the box bound is proven


def test_a_tolerance_point_is_never_returned():
    p = _problem()
    x = np.array([0.0, 0.0, 0.0, 0.0])  # 0 >= 0.45 fails outright
    sol = _certify(p, x, Status.OPTIMAL, float_bound=0.0)
    assert sol.assignment is None and sol.stats["certification"]["rejected"]


def test_claimed_infeasibility_is_proven_or_refuted():
    p = _problem()
    sol = _certify(p, None, Status.INFEASIBLE, ask=_exact_asker([], p))
    assert sol.status == Status.OPTIMAL  # a wrong infeasibility claim: the exact backend finds the optimum
    b = ProblemBuilder()
    m = b.add_mask(2)
    b.add_rows([[1.0, 1.0]], ">=", [2.0], strict=[True], margin=[1e-300])
    b.set_objective(m, 1.0)
    q = b.build()
    sol = _certify(q, None, Status.INFEASIBLE, ask=_exact_asker([], q))
    assert sol.status == Status.INFEASIBLE
    lazy = _certify(q, None, Status.INFEASIBLE)
    assert lazy.status == Status.UNKNOWN and "not proven" in lazy.message


def test_points_only_rounded_rows_accept_are_excluded_by_no_goods():
    """A relaxation-style answer (CP-SAT on outward-rounded rows) that fails the exact check is excluded, and
    the question asked again, until the exact backend proves the rest."""
    p = _problem()
    opt, _ = brute_force(p)
    bogus = Solution(Status.OPTIMAL, assignment=np.array([0.0, 0.0, 0.0, 0.0]))
    answers = iter([ExactAnswer(bogus, False, True)])

    def ask(extra, dl: Deadline) -> ExactAnswer:
        try:
            return next(answers)
        except StopIteration:
            q = p.with_rows(extra.A, extra.sense, extra.rhs)
            assert q.n_rows == p.n_rows + 2  # the cut and the no-good are in the question
            return ExactAnswer(smug.solve(q, "z3", presolve=False, greedy=False, cuts=False), True, True)

    x = np.array([1.0, 1.0, 1.0, 1.0])
    sol = _certify(p, x, Status.OPTIMAL, ask=ask)
    assert sol.status == Status.OPTIMAL and sol.exact_objective == opt
    assert sol.stats["certification"]["nogoods"] == 1


def test_time_running_out_leaves_the_proven_bound():
    p = _problem()
    dl = Deadline(1e-9)
    x = np.array([0.0, 0.0, 1.0, 1.0])
    sol = _certify(p, x, Status.OPTIMAL, bound=Fraction(1), float_bound=3.0, deadline=dl, ask=_exact_asker([], p))
    assert sol.status == Status.FEASIBLE and sol.exact_bound == 1 and "time limit" in sol.message


# ----------------------------------------------------------------------------- the oracle itself
def test_oracle_solves_free_reals_by_exact_simplex():
    # min x0 + y  s.t.  y >= 1/3 - x0/3, y >= 0.1, y in [0, 5]: y is not determined by an equality
    b = ProblemBuilder()
    m = b.add_mask(1)
    y = b.add_real([0.0], [5.0])
    b.add_rows([[1 / 3, 1.0]], ">=", [1 / 3], cols=np.concatenate([m, y]))
    b.add_rows([[1.0]], ">=", [0.1], cols=y)
    b.set_objective(np.concatenate([m, y]), [1.0, 1.0])
    p = b.build()
    res = exact_optimum(p)
    # x0 = 0: y >= 1/3 (as floats: Fraction(1/3)/Fraction(1)), cost ~1/3; x0 = 1: y >= 0.1 ... cost 1.1
    assert res.optimum == Fraction(1 / 3)
    assert res.optimal[0][0] == 0 and exactly_feasible(p, res.optimal[0])


def test_oracle_enumerates_relu_phases_when_the_input_is_free():
    b = ProblemBuilder()
    b.add_mask(1)
    x = b.add_real([-2.0], [3.0])
    yv = b.add_real([0.0], [3.0])
    b.add_relu(yv, x, [-2.0], [3.0])
    b.add_rows([[1.0]], ">=", [0.5], cols=yv)  # y = relu(x) >= 0.5: x >= 0.5
    b.set_objective(np.concatenate([x]), [1.0])
    res = exact_optimum(b.build())
    assert res.optimum == Fraction(1, 2)


def test_oracle_on_infeasible_and_hand_binary_problems():
    b = ProblemBuilder()
    m = b.add_mask(3)
    b.add_rows([[0.1, 0.2, 0.3]], ">=", [0.6])  # 0.1 + 0.2 + 0.3 as floats' rationals is above 0.6? check exactly
    b.set_objective(m, 1.0)
    p = b.build()
    total = Fraction(0.1) + Fraction(0.2) + Fraction(0.3)
    assert (exact_optimum(p).optimum is None) == (total < Fraction(0.6))
    res = exact_optimum(p, keep_points=True)
    assert res.points is not None and len(res.points) == res.feasible_points

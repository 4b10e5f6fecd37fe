"""smug.solve without any real solver: the exact shared search, certification of sloppy answers, the hard time
limit, enumeration, the registry."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import smug
from smug.errors import (
    BackendNotInstalledError,
    UnknownBackendError,
    UnsupportedParameterError,
    UnsupportedProblemError,
    ValidationError,
)
from smug.ir import ProblemBuilder
from smug.solving.contract import Backend, Capabilities, Incumbent, Solution, SolveParams, Status
from smug.solving.registry import backend_names, get_backend, register
from smug.solving.run import grace_seconds
from smug.testing import assert_matches_brute_force, brute_force, covering_problems
from smug.testing.reference import EnumerationBackend

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: the search alone: no presolve, cuts or greedy start in front of it
BARE = dict(presolve=False, cuts=False, greedy=False)
#: regression problems (copied from ../shared/regressions, so a clean checkout has them)
REGRESSIONS = Path(__file__).resolve().parent / "data"


def knapsack(n: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    b = ProblemBuilder()
    m = b.add_mask(n)
    A = rng.uniform(0.1, 1.0, size=(3, n))
    b.add_rows(A, ">=", 0.4 * A.sum(axis=1))
    b.set_objective(m, 1.0)
    return b.build()


# ------------------------------------------------------------- shared search
@FAST
@given(covering_problems(max_vars=7, max_rows=3, objective="area"), st.sampled_from(["binary", "linear"]))
def test_search_finds_the_brute_force_optimum_integral(p, strategy):
    sol = smug.solve(p, EnumerationBackend(search=strategy), **BARE)
    assert_matches_brute_force(p, sol)


@FAST
@given(covering_problems(max_vars=7, max_rows=3, objective="real"), st.sampled_from(["binary", "linear"]))
def test_search_finds_the_brute_force_optimum_real_objective(p, strategy):
    sol = smug.solve(p, EnumerationBackend(search=strategy), **BARE)
    assert_matches_brute_force(p, sol)


@pytest.mark.parametrize("strategy", ["linear", "binary"])
def test_the_search_never_claims_optimal_without_an_unsat_answer(strategy):
    """Regression: the old search called 16.426 optimal here (brute force: 12.148) after a check below the
    float under the incumbent returned the incumbent itself."""
    p = smug.Problem.from_json(str(REGRESSIONS / "search_linear_claims_optimal.json"))
    opt, _ = brute_force(p)
    assert opt == Fraction(27355602983634695, 2251799813685248)
    sol = smug.solve(p, EnumerationBackend(search=strategy), **BARE)
    assert sol.status == Status.OPTIMAL and sol.exact_objective == opt


def test_a_session_whose_model_misses_the_bound_stops_the_search_unproven():
    """A (buggy) solver answering "sat" with a model above the bound it was asked for proves nothing."""

    class OffByOne(EnumerationBackend):
        def open_session(self, problem, params):
            s = super().open_session(problem, params)
            inner = s.check

            def check(bound, timeout, strict=False):
                res = inner(None, timeout, strict)  # ignores the bound: returns the first feasible model
                return res

            s.check = check
            return s

    sol = smug.solve(knapsack(), OffByOne(), **BARE)
    assert sol.status == Status.FEASIBLE and "not at most the bound" in sol.message and sol.verified


def test_binary_search_needs_fewer_checks_than_linear_on_a_loose_start():
    b = ProblemBuilder()
    m = b.add_mask(10)
    b.add_rows(np.ones((1, 10)), ">=", [1.0])
    b.set_objective(m, 1.0)
    p = b.build()

    class Worst(EnumerationBackend):
        """Answers each check with the worst model under the bound (as an unlucky solver might)."""

        def open_session(self, problem, params):
            s = super().open_session(problem, params)
            masks = ((np.arange(2**10)[:, None] >> np.arange(10)) & 1).astype(float)
            feasible = [x for x in masks if problem.exact_check(x).feasible]

            def check(bound, timeout, strict=False):
                ok = [x for x in feasible if bound is None or x.sum() <= bound]
                if not ok:
                    return "unsat"
                s._model = max(ok, key=lambda x: x.sum())
                return "sat"

            s.check = check
            return s

    lin = smug.solve(p, Worst(search="linear"), **BARE)
    bis = smug.solve(p, Worst(search="binary"), **BARE)
    assert lin.objective == bis.objective == 1.0
    assert bis.stats["checks"] < lin.stats["checks"]


def test_unknown_search_strategy_is_named():
    with pytest.raises(ValidationError, match="unknown search strategy 'ternary'"):
        EnumerationBackend(search="ternary")


def test_infeasible_is_reported_as_infeasible():
    b = ProblemBuilder()
    m = b.add_mask(3)
    b.add_rows(np.ones((1, 3)), ">=", [3.5])
    b.set_objective(m, 1.0)
    sol = smug.solve(b.build(), EnumerationBackend())
    assert sol.status == Status.INFEASIBLE and sol.assignment is None


# ------------------------------------------------------------- time limits
def test_slow_checks_keep_the_incumbent_and_report_the_bound():
    # first check fast (finds a solution), every later one slower than the limit
    p = knapsack()
    t0 = time.perf_counter()
    sol = smug.solve(p, EnumerationBackend(delay=[0.0, 5.0]), time_limit=1.0, **BARE)
    wall = time.perf_counter() - t0
    assert wall < 1.0 + grace_seconds(1.0) + 1.0
    assert sol.status == Status.FEASIBLE
    assert sol.verified and sol.assignment is not None
    assert sol.bound is not None and sol.bound <= sol.objective


def test_a_solver_that_overruns_its_own_limit_is_stopped_and_its_best_kept():
    p = knapsack()
    t0 = time.perf_counter()
    sol = smug.solve(p, EnumerationBackend(delay=[0.0, 30.0], ignore_timeout=True), time_limit=1.0, **BARE)
    wall = time.perf_counter() - t0
    assert wall < 1.0 + grace_seconds(1.0) + 1.5, wall
    assert sol.status == Status.FEASIBLE and sol.stats.get("killed")
    assert sol.verified
    assert sol.exact_objective == p.exact_objective(sol.assignment)


def test_a_solver_that_hangs_before_any_solution_times_out_not_infeasible():
    p = knapsack()
    t0 = time.perf_counter()
    sol = smug.solve(p, EnumerationBackend(delay=30.0, ignore_timeout=True), time_limit=0.5, **BARE)
    assert time.perf_counter() - t0 < 0.5 + grace_seconds(0.5) + 1.5
    assert sol.status == Status.TIMEOUT and sol.assignment is None
    assert "hard time limit" in sol.message


class _Crashing(EnumerationBackend):
    def open_session(self, problem, params):
        raise RuntimeError("solver exploded")


@pytest.mark.parametrize("isolate", [False, True])
def test_a_crash_inside_a_solver_is_an_error_status_with_the_reason(isolate):
    sol = smug.solve(knapsack(), _Crashing(), isolate=isolate, **BARE)
    assert sol.status == Status.ERROR and "solver exploded" in sol.message


class _Liar(Backend):
    family = "liar"
    capabilities = Capabilities(optimize=True, relu=True, real_vars=True, deterministic=True)

    def version(self):
        return "1"

    def solve(self, problem, params, report, hint=None):
        return Solution(Status.OPTIMAL, assignment=np.zeros(problem.n_vars), objective=0.0)


def test_a_wrong_answer_is_caught_by_the_exact_check():
    sol = smug.solve(knapsack(), _Liar(), **BARE)
    assert sol.status == Status.ERROR and sol.verified is False
    assert "fails the exact check" in sol.message


def strict_cover(margin: float = 1e-3) -> smug.Problem:
    """Binding strict rows: ``x0 + x1 > 1`` (both needed), ``x2 + x3 >= 1``, ``x3 + x4 < 2`` (not both); the
    optimum is {0, 1, 2} at cost 4."""
    b = ProblemBuilder()
    m = b.add_mask(5)
    b.add_rows([[1.0, 1.0, 0.0, 0.0, 0.0]], ">=", [1.0], strict=[True], margin=[margin])
    b.add_rows([[0.0, 0.0, 1.0, 1.0, 0.0]], ">=", [1.0])
    b.add_rows([[0.0, 0.0, 0.0, 1.0, 1.0]], "<=", [2.0], strict=[True], margin=[margin])
    b.set_objective(m, [1.0, 1.0, 2.0, 3.0, 1.0])
    return b.build()


class _Sloppy(Backend):
    """A tolerance-based backend that gets things wrong the way float solvers can (declared inexact).

    ``mode="margin"``: returns a point violating a strict row by exactly its margin, claiming optimal;
    ``mode="early"``: claims a feasible but non-optimal point optimal (one step early)."""

    family = "sloppy"
    capabilities = Capabilities(
        optimize=True, relu=False, real_vars=True, exact=False, tolerance=1e-3, deterministic=True
    )

    def version(self):
        return "1"

    def solve(self, problem, params, report, hint=None):
        x = np.zeros(problem.n_vars)
        if self.options.get("mode") == "margin":
            x[:5] = [1, 0, 1, 0, 0]  # x0 + x1 = 1: "> 1" fails by exactly its margin; cost 3, below the optimum
        else:
            x[:5] = [1, 1, 0, 1, 0]  # feasible, cost 5 (the optimum is 4)
        return Solution(Status.OPTIMAL, assignment=x, objective=problem.objective_value(x), float_bound=3.0)


@pytest.mark.parametrize("mode", ["margin", "early"])
def test_a_sloppy_backends_claims_are_certified_not_believed(mode):
    p = strict_cover()
    opt, _ = brute_force(p)
    assert opt == 4
    sol = smug.solve(p, _Sloppy(mode=mode), **BARE)
    # the certification (an exact backend on the question "anything better?") finds and proves the optimum
    assert sol.status == Status.OPTIMAL and sol.exact_objective == opt and sol.verified
    assert sol.stats["certification"]["rejected"] is (mode == "margin")
    assert sol.float_bound == 3.0 and sol.bound == 4.0  # the solver's own claim, kept apart from the proven bound
    lazy = smug.solve(p, _Sloppy(mode=mode), certify=False, **BARE)
    assert lazy.status != Status.OPTIMAL  # without certification the claim stays a claim
    if mode == "margin":
        assert lazy.assignment is None  # a point that only holds within a tolerance is never returned
    else:
        assert lazy.status == Status.FEASIBLE and lazy.verified and lazy.exact_objective == 5


def test_an_exact_backend_that_violates_a_margin_is_an_error():
    class Lying(_Sloppy):
        capabilities = Capabilities(optimize=True, relu=False, real_vars=True, exact=True, deterministic=True)

    sol = smug.solve(strict_cover(), Lying(mode="margin"), **BARE)
    assert sol.status == Status.ERROR and sol.verified is False and "fails the exact check" in sol.message


def test_child_process_preserves_optimal_answers():
    p = knapsack()
    a = smug.solve(p, EnumerationBackend(), isolate=False, **BARE)
    b = smug.solve(p, EnumerationBackend(), isolate=True, time_limit=30, **BARE)
    assert a.status == b.status == Status.OPTIMAL and a.exact_objective == b.exact_objective


# ---------------------------------------------------------------- enumeration
@FAST
@given(covering_problems(max_vars=6, max_rows=2))
def test_enumeration_returns_every_optimum_and_only_optima(p):
    opt, winners = brute_force(p)
    sol = smug.solve(p, EnumerationBackend(), num_solutions=len(winners) + 2 if winners else 3)
    assert_matches_brute_force(p, sol)
    if opt is not None:
        assert len(sol.masks) == len(winners)
        assert {tuple(m) for m in sol.masks} == {tuple(np.rint(w).astype(int)) for w in winners}
        assert sol.stats["enumeration_complete"]


# ------------------------------------------------------------ params, registry
@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(time_limit=-1), "time_limit"),
        (dict(time_limit=float("nan")), "time_limit"),
        (dict(threads=0), "threads"),
        (dict(seed=-3), "seed"),
        (dict(num_solutions=0), "num_solutions"),
        (dict(seed=1.5), "seed"),
        (dict(verbose="yes"), "verbose"),
    ],
)
def test_bad_parameters_are_named(kw, words):
    with pytest.raises(ValidationError, match=words):
        SolveParams(**kw)


def test_a_parameter_a_backend_cannot_honour_is_an_error():
    with pytest.raises(UnsupportedParameterError, match="threads=4"):
        smug.solve(knapsack(), EnumerationBackend(), threads=4)


def test_a_problem_a_backend_cannot_take_is_an_error():
    b = ProblemBuilder()
    b.add_mask(1)
    x = b.add_real([-1.0], [1.0])
    y = b.add_real([0.0], [1.0])
    b.add_relu(y, x, [-1.0], [1.0])
    with pytest.raises(UnsupportedProblemError, match="ReLU"):
        smug.solve(b.build(), EnumerationBackend())


def test_a_backend_without_its_own_time_limit_must_be_isolated():
    class NoLimit(EnumerationBackend):
        capabilities = Capabilities(
            optimize=False, relu=False, real_vars=False, native_time_limit=False, deterministic=True
        )

    with pytest.raises(UnsupportedParameterError, match="isolate"):
        smug.solve(knapsack(), NoLimit(), time_limit=1.0, isolate=False)
    assert smug.solve(knapsack(), NoLimit(), time_limit=5.0).status == Status.OPTIMAL


def test_unknown_backend_name_suggests_close_matches():
    with pytest.raises(UnknownBackendError, match="ortools:scip"):
        get_backend("ortools:sciq")


def test_missing_solver_gives_the_install_command():
    class Missing(EnumerationBackend):
        def version(self):
            return None

        def install_hint(self):
            return "pip install the-missing-solver"

    with pytest.raises(BackendNotInstalledError, match="pip install the-missing-solver"):
        smug.solve(knapsack(), Missing())


def test_register_and_entry_points(monkeypatch):
    register("test:enum", EnumerationBackend, replace=True)
    assert "test:enum" in backend_names()
    sol = smug.solve(knapsack(), "test:enum")
    assert sol.status == Status.OPTIMAL and sol.backend == "test:enum"
    with pytest.raises(ValueError, match="already registered"):
        register("test:enum", EnumerationBackend)

    # a third-party package's entry point
    import smug.solving.registry as reg

    class EP:
        name = "thirdparty:enum"

        def load(self):
            return EnumerationBackend

    monkeypatch.setattr(reg, "_entry_points_loaded", False)
    monkeypatch.setattr(reg, "entry_points", lambda group: [EP()] if group == reg.ENTRY_POINT_GROUP else [])
    assert "thirdparty:enum" in backend_names()
    assert smug.solve(knapsack(), "thirdparty:enum").status == Status.OPTIMAL


def test_solution_reports_what_a_study_needs():
    sol = smug.solve(knapsack(), EnumerationBackend())
    d = sol.to_dict()
    for key in ("status", "objective", "bound", "gap", "build_time", "solve_time", "backend", "version", "mask"):
        assert key in d
    assert sol.gap == 0.0 and sol.bound == sol.objective
    assert sol.mask.dtype == np.int8 and len(sol.mask) == 8


def test_incumbent_reporting_in_process_keeps_the_best():
    seen = []

    class Reporting(_Liar):
        def solve(self, problem, params, report, hint=None):
            x = np.ones(problem.n_vars)
            report(Incumbent(x, problem.objective_value(x), exact_objective=problem.exact_objective(x)))
            seen.append(1)
            raise RuntimeError("after one incumbent")

    sol = smug.solve(knapsack(), Reporting(), **BARE)
    assert seen and sol.status == Status.ERROR and sol.assignment is not None and sol.verified


def test_status_of_a_stopped_solve_is_shared_by_every_backend():
    from smug import Status

    assert Status.stopped(True, True) is Status.FEASIBLE
    assert Status.stopped(True, False) is Status.FEASIBLE
    assert Status.stopped(False, True) is Status.TIMEOUT
    assert Status.stopped(False, False) is Status.UNKNOWN


def test_an_exact_backend_whose_optimum_is_beaten_by_its_own_incumbent_is_an_error():
    class Inconsistent(_Sloppy):
        capabilities = Capabilities(optimize=True, relu=False, real_vars=True, exact=True, deterministic=True)

        def solve(self, problem, params, report, hint=None):
            good = np.array([1.0, 1.0, 1.0, 0.0, 0.0])  # cost 4: the optimum
            report(Incumbent(good, 4.0, exact_objective=problem.exact_objective(good)))
            worse = np.array([1.0, 1.0, 0.0, 1.0, 0.0])  # cost 5, claimed optimal
            return Solution(Status.OPTIMAL, assignment=worse, objective=5.0)

    sol = smug.solve(strict_cover(), Inconsistent(), **BARE)
    assert sol.status == Status.ERROR and "claimed optimal" in sol.message

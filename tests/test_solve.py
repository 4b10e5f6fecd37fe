"""smug.solve without any real solver: the shared search, the hard time limit, enumeration, the registry."""

from __future__ import annotations

import time

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
    sol = smug.solve(p, EnumerationBackend(search=strategy))
    assert_matches_brute_force(p, sol)


@FAST
@given(covering_problems(max_vars=7, max_rows=3, objective="real"), st.sampled_from(["binary", "linear"]))
def test_search_finds_the_brute_force_optimum_real_objective(p, strategy):
    sol = smug.solve(p, EnumerationBackend(search=strategy))
    assert_matches_brute_force(p, sol)


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
            feasible = [x for x in masks if problem.evaluate(x).feasible]

            def check(bound, timeout, strict=False):
                ok = [x for x in feasible if bound is None or x.sum() <= bound]
                if not ok:
                    return "unsat"
                s._model = max(ok, key=lambda x: x.sum())
                return "sat"

            s.check = check
            return s

    lin = smug.solve(p, Worst(search="linear"))
    bis = smug.solve(p, Worst(search="binary"))
    assert lin.objective == bis.objective == 1.0
    assert bis.stats["checks"] < lin.stats["checks"]


def test_unknown_search_strategy_is_named():
    with pytest.raises(ValidationError, match="unknown search strategy 'ternary'"):
        smug.solve(knapsack(), EnumerationBackend(search="ternary"))


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
    sol = smug.solve(p, EnumerationBackend(delay=[0.0, 5.0]), time_limit=1.0)
    wall = time.perf_counter() - t0
    assert wall < 1.0 + grace_seconds(1.0) + 1.0
    assert sol.status == Status.FEASIBLE
    assert sol.verified and sol.assignment is not None
    assert sol.bound is not None and sol.bound <= sol.objective


def test_a_solver_that_overruns_its_own_limit_is_stopped_and_its_best_kept():
    p = knapsack()
    t0 = time.perf_counter()
    sol = smug.solve(p, EnumerationBackend(delay=[0.0, 30.0], ignore_timeout=True), time_limit=1.0)
    wall = time.perf_counter() - t0
    assert wall < 1.0 + grace_seconds(1.0) + 1.5, wall
    assert sol.status == Status.FEASIBLE and sol.stats.get("killed")
    assert sol.verified
    assert sol.objective == p.objective_value(sol.assignment)


def test_a_solver_that_hangs_before_any_solution_times_out_not_infeasible():
    p = knapsack()
    t0 = time.perf_counter()
    sol = smug.solve(p, EnumerationBackend(delay=30.0, ignore_timeout=True), time_limit=0.5)
    assert time.perf_counter() - t0 < 0.5 + grace_seconds(0.5) + 1.5
    assert sol.status == Status.TIMEOUT and sol.assignment is None
    assert "hard time limit" in sol.message


class _Crashing(EnumerationBackend):
    def open_session(self, problem, params):
        raise RuntimeError("solver exploded")


@pytest.mark.parametrize("isolate", [False, True])
def test_a_crash_inside_a_solver_is_an_error_status_with_the_reason(isolate):
    sol = smug.solve(knapsack(), _Crashing(), isolate=isolate)
    assert sol.status == Status.ERROR and "solver exploded" in sol.message


class _Liar(Backend):
    family = "liar"
    capabilities = Capabilities(optimize=True, relu=True, real_vars=True, deterministic=True)

    def version(self):
        return "1"

    def solve(self, problem, params, report):
        return Solution(Status.OPTIMAL, assignment=np.zeros(problem.n_vars), objective=0.0)


def test_a_wrong_answer_is_caught_by_the_independent_check():
    sol = smug.solve(knapsack(), _Liar())
    assert sol.status == Status.ERROR and sol.verified is False
    assert "fails the independent check" in sol.message


def test_child_process_preserves_optimal_answers():
    p = knapsack()
    a = smug.solve(p, EnumerationBackend(), isolate=False)
    b = smug.solve(p, EnumerationBackend(), isolate=True, time_limit=30)
    assert a.status == b.status == Status.OPTIMAL and a.objective == b.objective


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
        def solve(self, problem, params, report):
            x = np.ones(problem.n_vars)
            report(Incumbent(x, problem.objective_value(x)))
            seen.append(1)
            raise RuntimeError("after one incumbent")

    sol = smug.solve(knapsack(), Reporting())
    assert seen and sol.status == Status.ERROR and sol.assignment is not None and sol.verified


def test_status_of_a_stopped_solve_is_shared_by_every_backend():
    from smug import Status

    assert Status.stopped(True, True) is Status.FEASIBLE
    assert Status.stopped(True, False) is Status.FEASIBLE
    assert Status.stopped(False, True) is Status.TIMEOUT
    assert Status.stopped(False, False) is Status.UNKNOWN

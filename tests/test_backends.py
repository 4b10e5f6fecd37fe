"""Every installed backend against brute force, through the one public entry point ``smug.solve``."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import smug
from smug.errors import BackendNotInstalledError, UnsupportedProblemError
from smug.solving.contract import Status
from smug.solving.registry import backend_table, get_backend
from smug.solving.run import grace_seconds
from smug.testing import (
    assert_matches_brute_force,
    assert_valid_solution,
    brute_force,
    covering_problems,
    relu_problems,
)

INSTALLED = [r.name for r in backend_table() if r.installed]
RELU = [n for n in INSTALLED if get_backend(n).capabilities.relu]
PROPS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_the_expected_backends_are_installed_here():
    # the pinned dependencies install all of these; a missing one is an install defect
    for name in [
        "z3",
        "z3:original",
        "pysmt:z3",
        "pysmt:cvc5",
        "pysmt:yices",
        "ortools:scip",
        "ortools:highs",
        "ortools:cbc",
        "ortools:cpsat",
    ]:
        assert name in INSTALLED, f"{name} should be installed by the project's dependencies"


def test_msat_is_listed_missing_with_the_install_command():
    rows = {r.name: r for r in backend_table()}
    assert not rows["pysmt:msat"].installed
    assert rows["pysmt:msat"].install_hint == "pysmt-install --msat"
    p = _tiny()
    with pytest.raises(BackendNotInstalledError, match="pysmt-install --msat"):
        smug.solve(p, "pysmt:msat")


def _tiny():
    b = smug.ProblemBuilder()
    m = b.add_mask(3)
    b.add_rows([[1.0, 2.0, 0.5]], ">=", [2.0], strict=[True], margin=[1e-6])
    b.set_objective(m, 1.0)
    return b.build()


@pytest.mark.parametrize("backend", INSTALLED)
@PROPS
@given(problem=covering_problems(max_vars=10, max_rows=5))
def test_optimum_equals_brute_force_count_objective(backend, problem):
    sol = smug.solve(problem, backend)
    assert_matches_brute_force(problem, sol)


@pytest.mark.parametrize("backend", INSTALLED)
@PROPS
@given(problem=covering_problems(max_vars=8, max_rows=4, objective="real"))
def test_optimum_equals_brute_force_real_objective(backend, problem):
    sol = smug.solve(problem, backend)
    if backend == "ortools:cpsat" and sol.status == Status.FEASIBLE:
        # CP-SAT optimises a rounded copy of a real objective and says so; its mask is still valid
        assert_valid_solution(problem, sol)
        return
    assert_matches_brute_force(problem, sol)


@pytest.mark.parametrize("backend", RELU)
@PROPS
@given(case=relu_problems(max_vars=7))
def test_optimum_with_relu_constraints_equals_brute_force(backend, case):
    sol = smug.solve(case.problem, backend)
    assert_matches_brute_force(case.problem, sol, case.complete)


@pytest.mark.parametrize("backend", [n for n in INSTALLED if n not in RELU])
def test_backends_without_relu_refuse_relu_problems(backend):
    b = smug.ProblemBuilder()
    b.add_mask(1)
    x = b.add_real([-1.0], [1.0])
    y = b.add_real([0.0], [1.0])
    b.add_relu(y, x, [-1.0], [1.0])
    with pytest.raises(UnsupportedProblemError):
        smug.solve(b.build(), backend)


@pytest.mark.parametrize("backend", INSTALLED)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=covering_problems(max_vars=6, max_rows=2))
def test_enumerated_alternatives_are_distinct_and_optimal(backend, problem):
    sol = smug.solve(problem, backend, num_solutions=4)
    assert_matches_brute_force(problem, sol)


def hard_problem(n: int = 120, rows: int = 30, seed: int = 1):
    """Dense 0-1 covering rows with weighted objective: feasible (all ones), hard for the SMT encodings."""
    rng = np.random.default_rng(seed)
    b = smug.ProblemBuilder()
    m = b.add_mask(n)
    A = rng.uniform(0.0, 1.0, size=(rows, n))
    b.add_rows(A, ">=", 0.5 * A.sum(axis=1), strict=True, margin=1e-6)
    b.set_objective(m, rng.integers(1, 20, size=n).astype(float))
    return b.build()


@pytest.mark.parametrize("backend", INSTALLED)
def test_time_limit_holds_and_a_timeout_is_never_infeasible(backend):
    p = hard_problem()
    t0 = time.perf_counter()
    sol = smug.solve(p, backend, time_limit=1.0)
    wall = time.perf_counter() - t0
    assert sol.status in (Status.OPTIMAL, Status.FEASIBLE, Status.TIMEOUT), (sol.status, sol.message)
    # the limit plus the documented grace, plus process start and stop
    assert wall < 1.0 + grace_seconds(1.0) + 2.0, wall
    if sol.status.has_solution:
        assert sol.verified
        assert_valid_solution(p, sol)


@pytest.fixture(scope="module")
def digits_problem():
    """A real SMUG problem (digits MLP, window 2, top_k 6, gamma 0.3) and its brute-force optimum."""
    p = smug.Problem.from_json(str(Path(__file__).parent / "data" / "smug_digits_problem.json"))
    opt, _ = brute_force(p)
    return p, opt


@pytest.mark.parametrize("backend", INSTALLED)
def test_a_real_smug_problem(backend, digits_problem):
    # regression: z3's pseudo-Boolean rows with large scaled coefficients once claimed this was infeasible
    p, opt = digits_problem
    sol = smug.solve(p, backend, time_limit=60)
    assert opt == 3.0
    assert_matches_brute_force(p, sol)

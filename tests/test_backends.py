"""The property suite every installed backend must pass, through the one public entry point ``smug.solve``.

Problems of the hostile kinds (coefficients from 1e-7 to 1e6 and subnormals,
near-ties to an ulp, strict margins down to the smallest subnormal, equality
rows, ReLU networks with hostile weights) and SMUG-like covering problems;
every backend's ``optimal`` must equal the exact oracle's optimum exactly, every
returned mask must be exactly feasible, and no feasible problem may be called
infeasible.  Each backend runs with smug's shared reductions (the default) and
without them (``bare``), so the backend itself is what is tested.  The oracle
(:mod:`smug.testing.oracle`) shares no code with smug's verification.

A fast, derandomised profile runs here; ``bench/hostile.py`` runs >= 500
random problems per backend.
"""

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
    hostile_problems,
    relu_problems,
)

INSTALLED = [r.name for r in backend_table() if r.installed]
REALS = [n for n in INSTALLED if get_backend(n).capabilities.real_vars]
BINARY = [n for n in INSTALLED if not get_backend(n).capabilities.real_vars]
PROPS = settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
BARE = {"presolve": False, "cuts": False, "greedy": False}


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
        "gurobi",
        "pysat:rc2",
        "pyscipopt",
    ]:
        assert name in INSTALLED, f"{name} should be installed by the project's dependencies"


def test_msat_is_listed_missing_with_the_install_command():
    rows = {r.name: r for r in backend_table()}
    assert not rows["pysmt:msat"].installed
    assert rows["pysmt:msat"].install_hint == "pysmt-install --msat"
    with pytest.raises(BackendNotInstalledError, match="pysmt-install --msat"):
        smug.solve(_tiny(), "pysmt:msat")


def _tiny():
    b = smug.ProblemBuilder()
    m = b.add_mask(3)
    b.add_rows([[1.0, 2.0, 0.5]], ">=", [2.0], strict=[True], margin=[1e-6])
    b.set_objective(m, 1.0)
    return b.build()


def _every_backend(problem: smug.Problem, names: list[str]) -> None:
    """Each backend, with and without the shared reductions, against the exact oracle."""
    for name in names:
        for opts in ({}, BARE):
            sol = smug.solve(problem, name, **opts)
            try:
                assert_matches_brute_force(problem, sol)
            except AssertionError as exc:
                raise AssertionError(f"{name} {opts or 'default'}: {exc}") from None


@PROPS
@given(problem=hostile_problems(relu=False))
def test_hostile_binary_problems_every_backend(problem):
    _every_backend(problem, INSTALLED)


@settings(PROPS, max_examples=20)
@given(problem=hostile_problems(relu=True, max_vars=5))
def test_hostile_relu_problems_every_backend(problem):
    _every_backend(problem, REALS)


@settings(PROPS, max_examples=12)
@given(problem=covering_problems(max_vars=10, max_rows=5, objective="real", avoid_ties=False))
def test_covering_problems_every_backend(problem):
    _every_backend(problem, INSTALLED)


@settings(PROPS, max_examples=8)
@given(case=relu_problems(max_vars=6))
def test_relu_networks_every_backend(case):
    _every_backend(case.problem, REALS)


@pytest.mark.parametrize(
    ("sense", "rhs", "margin", "feasible"),
    [
        ("<=", 2.0, 1e-12, False),  # x0 + x1 = 2 when both: "< 2" fails by the margin
        ("<=", 2.0 + 2e-12, 1e-12, True),  # the margin is below the slack: allowed
        (">=", 1.0, 2.0**-1074, True),  # one kept: 1 >= 1 + tiny? no; both kept: 2 > 1
        ("<=", 1.0, 2.0**-1074, False),  # "< 1" with a subnormal margin: only the empty mask, excluded below
    ],
)
def test_binding_strict_rows_on_every_backend(sense, rhs, margin, feasible):
    """Strict rows whose margin alone decides (a flipped margin sign on ``<=`` rows once went unnoticed)."""
    b = smug.ProblemBuilder()
    m = b.add_mask(2)
    b.add_rows([[1.0, 1.0]], sense, [rhs], strict=[True], margin=[margin])
    b.add_rows([[1.0, 1.0]], ">=", [1.0])  # keep at least one
    b.add_rows([[-1.0, 0.0]], ">=", [-1.0])
    b.set_objective(m, [-1.0, -2.0])  # prefer keeping both
    p = b.build()
    opt, _ = brute_force(p)
    for name in INSTALLED:
        sol = smug.solve(p, name, **BARE)
        assert_matches_brute_force(p, sol)
        if feasible and sense == "<=":
            assert sol.mask.tolist() == [1, 1]
        elif sense == "<=" and opt is not None:
            assert sol.mask.sum() == 1, (name, sol.mask)


@pytest.mark.parametrize("backend", BINARY)
def test_backends_without_reals_refuse_relu_problems(backend):
    b = smug.ProblemBuilder()
    b.add_mask(1)
    x = b.add_real([-1.0], [1.0])
    y = b.add_real([0.0], [1.0])
    b.add_relu(y, x, [-1.0], [1.0])
    with pytest.raises(UnsupportedProblemError):
        smug.solve(b.build(), backend)


@pytest.mark.parametrize("backend", INSTALLED)
@settings(max_examples=5, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
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
    get_backend(backend).version()  # the solver's imports are not the solve's
    t0 = time.perf_counter()
    sol = smug.solve(p, backend, time_limit=1.0)
    wall = time.perf_counter() - t0
    assert sol.status in (Status.OPTIMAL, Status.FEASIBLE, Status.TIMEOUT), (sol.status, sol.message)
    # the limit plus the documented grace, plus process start and stop
    assert wall < 1.0 + grace_seconds(1.0) + 2.0, wall
    if sol.status.has_solution:
        assert sol.verified
        assert_valid_solution(p, sol)
    if sol.status == Status.OPTIMAL:  # then it is proven: the oracle cannot check 120 binaries, the bound must hold
        assert sol.exact_bound == sol.exact_objective


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
    assert opt == 3
    for opts in ({}, BARE):
        sol = smug.solve(p, backend, time_limit=60, **opts)
        assert_matches_brute_force(p, sol)

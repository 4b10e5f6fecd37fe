"""Tests of the PySAT backend (``pysat:rc2``: RC2 MaxSAT over PBEnc-encoded rows) against brute force.

The generic property suite (tests/test_backends.py) covers the hostile problems;
these check the lowering itself: negative coefficients, equality rows, rows
decided before any solver runs, the all-zero objective, and the options.
"""

from __future__ import annotations

import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import smug
from smug import Status
from smug.errors import ConfigError, UnsupportedParameterError, UnsupportedProblemError, ValidationError
from smug.solving.contract import SolveParams
from smug.solving.registry import get_backend
from smug.testing import assert_matches_brute_force, brute_force, covering_problems
from smug.testing.generators import random_binary_problem

pytest.importorskip("pysat")
pytest.importorskip("pindakaas")

from smug.backends import pysat_rc2  # noqa: E402
from smug.backends.pysat_rc2 import RC2Backend  # noqa: E402

NAME = "pysat:rc2"
BARE = {"presolve": False, "cuts": False, "greedy": False}


def _both(p: smug.Problem) -> list[smug.Solution]:
    """Solve with and without the shared reductions; each must match the oracle."""
    sols = []
    for opts in ({}, BARE):
        sol = smug.solve(p, NAME, **opts)
        assert_matches_brute_force(p, sol)
        sols.append(sol)
    return sols


def _direct(p: smug.Problem) -> tuple[smug.Solution, list]:
    """The backend's own ``solve`` on an integer problem (no reductions in between), and what it reported."""
    seen: list = []
    return RC2Backend().solve(p, SolveParams(), seen.append), seen


def _negative_problem() -> smug.Problem:
    b = smug.ProblemBuilder()
    m = b.add_mask(4)
    b.add_rows([[3.0, -2.0, 5.0, -1.0]], ">=", [2.0])
    b.add_rows([[-1.0, -1.0, 0.0, -1.0]], "<=", [-1.0])  # at least one of x0, x1, x3
    b.add_rows([[2.0, 0.0, -3.0, 4.0]], "<=", [3.0])
    b.set_objective(m, [2.0, -1.0, 3.0, -2.0], constant=1.5)
    return b.build()


def test_negative_coefficients_in_rows_and_objective():
    p = _negative_problem()
    opt, _ = brute_force(p)
    for sol in _both(p):
        assert sol.status == Status.OPTIMAL and sol.exact_objective == opt
    sol, seen = _direct(p)  # integer rows: the lowering alone decides
    assert sol.status == Status.OPTIMAL and sol.exact_objective == sol.exact_bound == opt
    assert p.objective_value(sol.assignment) == float(opt)
    assert seen and seen[-1].exact_objective == opt


def test_equality_rows():
    b = smug.ProblemBuilder()
    m = b.add_mask(5)
    b.add_rows([[1.0, 2.0, 3.0, -1.0, 4.0]], "==", [5.0])
    b.add_rows([[1.0, 1.0, 1.0, 1.0, 1.0]], "==", [3.0])
    b.set_objective(m, [1.0, 1.0, -2.0, 1.0, 3.0])
    p = b.build()
    opt, points = brute_force(p)
    assert opt is not None
    for sol in _both(p):
        assert sol.status == Status.OPTIMAL and sol.exact_objective == opt
    sol, _ = _direct(p)
    assert sol.exact_objective == opt
    x = sol.assignment
    assert x @ [1, 2, 3, -1, 4] == 5 and x.sum() == 3


def test_infeasible_by_the_solver_and_by_the_encoding():
    b = smug.ProblemBuilder()
    m = b.add_mask(3)
    b.add_rows([[1.0, 1.0, 0.0]], ">=", [2.0])
    b.add_rows([[1.0, 1.0, 1.0]], "<=", [1.0])  # each row alone is satisfiable
    b.set_objective(m, 1.0)
    p = b.build()
    assert brute_force(p)[0] is None
    for sol in _both(p):
        assert sol.status == Status.INFEASIBLE
    sol, _ = _direct(p)
    assert sol.status == Status.INFEASIBLE and "decided_by" not in sol.stats

    b = smug.ProblemBuilder()
    m = b.add_mask(2)
    b.add_rows([[2.0, -3.0]], "==", [4.0])  # no 0/1 point reaches 4: decided while encoding
    b.set_objective(m, 0.0)
    sol, _ = _direct(b.build())
    assert sol.status == Status.INFEASIBLE and sol.stats["decided_by"] == "encoding"


def test_empty_rows_and_fixed_variables():
    b = smug.ProblemBuilder()
    m = b.add_mask(3)
    b.add_rows([[0.0, 0.0, 0.0]], "<=", [0.0])  # holds
    b.add_rows([[1.0, 1.0, 1.0]], ">=", [1.0])
    b.set_objective(m, [1.0, 2.0, 3.0])
    p = b.build()
    p.ub[0] = 0.0  # x0 fixed to 0
    sol, _ = _direct(p)
    assert sol.status == Status.OPTIMAL and sol.assignment.tolist() == [0.0, 1.0, 0.0] and sol.exact_objective == 2
    b = smug.ProblemBuilder()
    b.add_mask(1)
    b.add_rows([[0.0]], ">=", [1.0])  # 0 >= 1
    sol, _ = _direct(b.build())
    assert sol.status == Status.INFEASIBLE


def test_non_integer_rows_are_refused_outside_smug_solve():
    b = smug.ProblemBuilder()
    m = b.add_mask(2)
    b.add_rows([[0.5, 1.0]], ">=", [1.0])
    b.set_objective(m, 1.0)
    with pytest.raises(UnsupportedProblemError, match="integer coefficients"):
        _direct(b.build())


def test_all_zero_objective_is_a_feasibility_question():
    b = smug.ProblemBuilder()
    m = b.add_mask(4)
    b.add_rows([[1.0, 2.0, 4.0, 8.0]], "==", [10.0])
    b.set_objective(m, 0.0, constant=-2.5)
    p = b.build()
    for sol in _both(p):
        assert sol.status == Status.OPTIMAL and sol.exact_objective == Fraction(-5, 2)
    sol, seen = _direct(p)
    assert sol.assignment.tolist() == [0.0, 1.0, 0.0, 1.0]
    assert sol.stats["soft_clauses"] == 0 and "rc2_cost" not in sol.stats
    assert sol.exact_objective == Fraction(-5, 2) and seen[-1].exact_objective == Fraction(-5, 2)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(problem=covering_problems(max_vars=8, max_rows=4, objective="real", avoid_ties=False))
def test_covering_problems_match_brute_force(problem):
    _both(problem)


@pytest.mark.parametrize("integral", [True, False])
def test_random_problems_match_brute_force(integral):
    rng = np.random.default_rng(7)
    for _ in range(15):
        p = random_binary_problem(rng, integral=integral)
        for sol in _both(p):
            assert sol.exact_objective == brute_force(p)[0]


@pytest.mark.parametrize("encoding", ["adder", "binmerge", "best"])
def test_every_encoding_gives_the_optimum(encoding):
    p = _negative_problem()
    sol = smug.solve(p, NAME, encoding=encoding, **BARE)
    assert_matches_brute_force(p, sol)
    assert sol.stats["encoding"] == encoding


def test_options_are_validated_like_cpsat():
    with pytest.raises(ConfigError, match="coef_bits"):
        get_backend(NAME, coef_bits=4)
    with pytest.raises(ConfigError, match="coef_bits"):
        get_backend(NAME, coef_bits=True)
    with pytest.raises(ConfigError, match="rounding"):
        get_backend(NAME, rounding="up")
    with pytest.raises(ConfigError, match="encoding"):
        get_backend(NAME, encoding="nope")
    with pytest.raises(ValidationError, match="unknown option"):
        get_backend(NAME, solver="g3")
    p = _negative_problem()
    sol = smug.solve(p, NAME, rounding="relaxed", coef_bits=20)
    assert_matches_brute_force(p, sol)
    assert sol.stats["backend_reductions"]["integer_scaling"]["coef_bits"] == 20


def test_capabilities_seed_and_threads():
    be = get_backend(NAME)
    caps = be.capabilities
    assert caps.integer_coefficients and caps.exact and caps.deterministic and not caps.native_time_limit
    p = _negative_problem()
    assert smug.solve(p, NAME, seed=12345).status == Status.OPTIMAL  # deterministic: any seed
    with pytest.raises(UnsupportedParameterError):
        smug.solve(p, NAME, threads=2)


def test_version_and_install_hint(monkeypatch):
    be = get_backend(NAME)
    assert be.version().startswith("python-sat ") and "RC2" in be.version()
    assert be.install_hint() == 'pip install "python-sat[pb]"'
    pysat_rc2._rc2_version.cache_clear()
    monkeypatch.setitem(sys.modules, "pindakaas", None)  # an import of it now fails
    try:
        assert be.version() is None and not be.available()
    finally:
        pysat_rc2._rc2_version.cache_clear()

"""Tests of the ``gurobi`` backend: the size-limited licence, optima against the exact oracle, Gurobi's quirks.

The generic property suite (tests/test_backends.py) runs ``gurobi`` too once
``gurobipy`` is installed; these are the backend's own checks.
"""

from __future__ import annotations

import numpy as np
import pytest

import smug
from smug import Status
from smug.errors import LicenseLimitError, UnsupportedProblemError
from smug.solving.contract import SolveParams
from smug.solving.registry import get_backend
from smug.testing import assert_matches_brute_force, brute_force

gp = pytest.importorskip("gurobipy")

from smug.backends.gurobi import GurobiBackend  # noqa: E402

BARE = {"presolve": False, "cuts": False, "greedy": False}


def _size_limited() -> bool:
    """Whether the licence here is the gurobipy wheel's size-limited one (a model of 2001 variables is refused)."""
    env = gp.Env(empty=True)
    env.setParam("OutputFlag", 0)
    env.start()
    model = gp.Model(env=env)
    try:
        model.addMVar(2001, vtype="B")
        model.optimize()
        return False
    except gp.GurobiError as exc:
        return exc.errno == 10010
    finally:
        model.dispose()
        env.dispose()


SIZE_LIMITED = _size_limited()
needs_size_limit = pytest.mark.skipif(not SIZE_LIMITED, reason="a full Gurobi licence is installed here")


def cover(n: int, seed: int = 0) -> smug.Problem:
    """``n`` binaries, one covering row (at least half kept) and a weighted objective: presolve fixes nothing."""
    rng = np.random.default_rng(seed)
    b = smug.ProblemBuilder()
    m = b.add_mask(n)
    b.add_rows(np.ones((1, n)), ">=", [n / 2])
    b.set_objective(m, rng.integers(1, 10, n).astype(float))
    return b.build()


def test_version_capabilities_and_install_hint():
    be = get_backend("gurobi")
    assert isinstance(be, GurobiBackend)
    assert be.version() == f"gurobipy {gp.__version__} / Gurobi {'.'.join(map(str, gp.gurobi.version()))}"
    caps = be.capabilities
    assert caps.optimize and caps.real_vars and not caps.relu and not caps.exact and caps.tolerance == 1e-9
    assert caps.proves_bound and caps.hints and caps.max_threads is None
    assert "size-limited" in be.install_hint()


@needs_size_limit
@pytest.mark.parametrize("isolate", [True, False])
def test_beyond_the_size_limited_licence_the_error_names_the_limit_and_the_fix(isolate):
    p = cover(2500)
    with pytest.raises(LicenseLimitError, match="size-limited licence") as info:
        smug.solve(p, "gurobi", time_limit=30, isolate=isolate)
    msg = str(info.value)
    assert "2500 variables" in msg and "10010" in msg
    assert "your own Gurobi licence" in msg and "'ortools:scip'" in msg
    assert isinstance(info.value, UnsupportedProblemError)  # code that falls back on unsupported problems still does


@needs_size_limit
def test_the_exact_size_limit_is_2000_variables_and_2000_rows():
    be = GurobiBackend()
    sol = be.solve(cover(2000), SolveParams(), lambda inc: None)
    assert sol.status == Status.OPTIMAL
    with pytest.raises(LicenseLimitError, match="2001 variables"):
        be.solve(cover(2001), SolveParams(), lambda inc: None)
    for rows, ok in ((2000, True), (2001, False)):
        b = smug.ProblemBuilder()
        m = b.add_mask(2)
        b.add_rows(np.tile([[1.0, 1.0]], (rows, 1)), ">=", np.full(rows, 1.0))
        b.set_objective(m, 1.0)
        if ok:
            assert be.solve(b.build(), SolveParams(), lambda inc: None).status == Status.OPTIMAL
        else:
            with pytest.raises(LicenseLimitError, match="2001 rows"):
                be.solve(b.build(), SolveParams(), lambda inc: None)


@pytest.mark.parametrize("seed", range(6))
def test_small_optima_equal_the_brute_force_optimum(seed):
    rng = np.random.default_rng(seed)
    n = 8
    b = smug.ProblemBuilder()
    m = b.add_mask(n)
    A = rng.random((3, n)) * (rng.random((3, n)) < 0.7)
    b.add_rows(A, ">=", A.sum(1) * rng.uniform(0.2, 0.7, 3), strict=True, margin=1e-6)
    b.add_rows(rng.random((1, n)), "<=", [0.8 * n / 2])
    b.set_objective(m, rng.uniform(0.5, 3.0, n))
    p = b.build()
    opt, _ = brute_force(p)
    for opts in ({}, BARE):
        sol = smug.solve(p, "gurobi", **opts)
        assert_matches_brute_force(p, sol)
        if opt is not None:
            assert sol.exact_objective == opt
            assert sol.stats["certification"]["claimed"] == "optimal"


def test_a_relu_problem_goes_through_big_m_with_real_variables():
    b = smug.ProblemBuilder()
    m = b.add_mask(2)
    x = b.add_real([-2.0], [2.0])
    y = b.add_real([0.0], [2.0])
    b.add_rows([[1.0, -1.0, -1.0]], "=", [0.0], cols=[m[0], m[1], x[0]])  # x = m0 - m1
    b.add_relu(y, x, [-2.0], [2.0])
    b.add_rows([[1.0]], ">=", [0.5], cols=y)  # y = max(0, x) >= 0.5: keep m0, drop m1
    b.set_objective(m, [1.0, 1.0])
    p = b.build()
    opt, _ = brute_force(p)
    for opts in ({}, BARE):
        sol = smug.solve(p, "gurobi", **opts)
        assert_matches_brute_force(p, sol)
        assert sol.exact_objective == opt == 1
        assert sol.mask.tolist() == [1, 0]


def test_gurobi_drops_tiny_coefficients_and_certification_catches_its_wrong_infeasible_claim():
    # 1e-14 * y >= 1e-2 holds at y = 1e12, but Gurobi ignores coefficients below 1e-13 and claims infeasible
    b = smug.ProblemBuilder()
    m = b.add_mask(1)
    y = b.add_real([0.0], [1e13])
    b.add_rows([[1e-14]], ">=", [1e-2], cols=y)
    b.add_rows([[-1.0, 1e-14]], "<=", [0.0], cols=[m[0], y[0]])  # y > 0 forces the mask on
    b.set_objective(m, [1.0])
    p = b.build()
    for opts in ({}, BARE):
        sol = smug.solve(p, "gurobi", **opts)
        assert sol.stats["certification"]["claimed"] == "infeasible"
        assert sol.status == Status.OPTIMAL and sol.verified
        assert_matches_brute_force(p, sol)


def test_a_time_limited_solve_is_never_infeasible_and_keeps_a_float_bound():
    rng = np.random.default_rng(1)
    n = 300
    b = smug.ProblemBuilder()
    m = b.add_mask(n)
    A = rng.uniform(0.0, 1.0, size=(60, n))
    b.add_rows(A, ">=", 0.5 * A.sum(axis=1), strict=True, margin=1e-6)
    b.set_objective(m, rng.integers(1, 20, size=n).astype(float))
    sol = smug.solve(b.build(), "gurobi", time_limit=1.0, seed=2**40, threads=2)
    assert sol.status in (Status.OPTIMAL, Status.FEASIBLE), (sol.status, sol.message)
    assert sol.verified
    if sol.status == Status.FEASIBLE and sol.float_bound is not None:
        assert sol.float_bound <= sol.objective + 1e-6

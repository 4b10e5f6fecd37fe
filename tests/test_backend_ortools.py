"""Tests of the OR-Tools backends (``ortools:scip``, ``ortools:highs``, ``ortools:cbc``, ``ortools:cpsat``).

Every answer is compared with the exact oracle (:func:`smug.testing.brute.brute_force`):
optima must be equal exactly, every returned assignment exactly feasible.  The
MILP solvers' claims go through certification; CP-SAT's rounding is checked in
tests/test_reductions.py.
"""

from __future__ import annotations

import functools
import time
from fractions import Fraction

import numpy as np
import pytest

import smug
from smug import Status
from smug.errors import ConfigError, UnsupportedParameterError, UnsupportedProblemError
from smug.ir import Problem
from smug.reductions.integer_scaling import scale_rows
from smug.solving.registry import get_backend
from smug.solving.run import grace_seconds
from smug.testing.brute import brute_force

pytest.importorskip("ortools")

from smug.backends import ortools_cpsat as oc  # noqa: E402
from smug.backends import ortools_milp as om  # noqa: E402

MILP = ["ortools:scip", "ortools:highs", "ortools:cbc"]
ALL = MILP + ["ortools:cpsat"]


def _require(name: str) -> None:
    if not get_backend(name).available():
        pytest.skip(f"{name} is not available in this OR-Tools build")


# ------------------------------------------------------------------ problems
def cover_problem(seed: int, n: int = 10, real_objective: bool = False, constant: float = 0.0) -> smug.Problem:
    """Random 0-1 covering problem: real coefficients, strict >= rows with margins, some <= rows."""
    rng = np.random.default_rng(seed)
    b = smug.ProblemBuilder()
    x = b.add_mask(n)
    m = int(rng.integers(2, 6))
    A = rng.random((m, n)) * (rng.random((m, n)) < 0.7)
    b.add_rows(A, ">=", A.sum(1) * rng.uniform(0.2, 0.7, m), strict=True, margin=rng.choice([1e-6, 1e-3, 0.05]))
    k = int(rng.integers(0, 3))
    if k:
        B = rng.random((k, n))
        b.add_rows(B, "<=", B.sum(1) * rng.uniform(0.3, 0.9, k))
    c = rng.uniform(0.5, 3.0, n) if real_objective else rng.integers(1, 5, n).astype(float)
    b.set_objective(x, c, constant=constant)
    return b.build()


@functools.cache
def cover_case(seed: int, n: int = 10, real_objective: bool = False, constant: float = 0.0) -> tuple:
    """``cover_problem`` with its brute-force optimum (cached: several backends share it)."""
    p = cover_problem(seed, n, real_objective, constant)
    return p, brute_force(p)[0]


@functools.cache
def relu_case(seed: int) -> tuple:
    """``relu_problem`` with its brute-force optimum (cached)."""
    p, complete = relu_problem(seed)
    return p, complete, brute_force(p)[0]


def relu_problem(seed: int, n: int = 8, k: int = 5) -> tuple[smug.Problem, object]:
    """A tiny network over the mask: h = W m + b (equality rows), y = relu(h), then a strict row on y."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(k, n))
    b0 = rng.normal(size=k)
    lo = b0 + np.minimum(W, 0).sum(1)
    hi = b0 + np.maximum(W, 0).sum(1)
    B = smug.ProblemBuilder()
    m = B.add_mask(n)
    h = B.add_real(lo, hi)
    y = B.add_real(np.zeros(k), np.maximum(hi, 0.0))
    B.add_rows(np.hstack([-W, np.eye(k)]), "==", b0, cols=np.concatenate([m, h]))
    B.add_relu(y, h, lo, hi)
    v = rng.uniform(-0.3, 1.0, k)
    full = np.maximum(0.0, W.sum(1) + b0) @ v
    B.add_rows(v[None, :], ">=", [rng.uniform(0.3, 1.3) * full], strict=True, margin=1e-6, cols=y)
    B.set_objective(m, rng.integers(1, 4, n).astype(float))
    p = B.build()

    def complete(bits: np.ndarray) -> np.ndarray:
        xv = np.zeros(p.n_vars)
        xv[m] = bits
        hv = W @ bits + b0
        xv[h] = hv
        xv[y] = np.maximum(0.0, hv)
        return xv

    return p, complete


def adversarial_problem(seed: int, n: int = 8) -> smug.Problem:
    """Rows with coefficients like 1/3, 1e-7 differences and right-hand sides within 1e-12 of an achievable sum."""
    rng = np.random.default_rng(seed)
    b = smug.ProblemBuilder()
    x = b.add_mask(n)
    for _ in range(4):
        kind = int(rng.integers(3))
        if kind == 0:
            a = rng.choice([1 / 3, 2 / 3, 1 / 7, 0.1, 0.2, 0.3], n)
        elif kind == 1:
            a = 1.0 + rng.choice([-1e-7, 0.0, 1e-7, 2e-7], n)
        else:
            a = rng.normal(size=n)
        S = rng.random(n) < 0.5
        exact = sum((Fraction(float(v)) for v in a[S]), Fraction(0))
        r = float(exact) + float(rng.choice([-1e-12, 0.0, 1e-12, 0.0])) * max(1.0, abs(float(exact)))
        strict = bool(rng.random() < 0.3)
        b.add_rows([a], str(rng.choice([">=", "<="])), [r], strict=strict, margin=1e-12 if strict else 0.0)
    b.set_objective(x, rng.integers(1, 4, n).astype(float))
    return b.build()


def hard_problem(n: int = 150, m: int = 40, seed: int = 0) -> smug.Problem:
    """Dense random knapsack-like covering rows: not solved to optimality in a second."""
    rng = np.random.default_rng(seed)
    b = smug.ProblemBuilder()
    x = b.add_mask(n)
    A = rng.uniform(0, 1, (m, n))
    b.add_rows(A, ">=", A.sum(1) * 0.5, strict=True, margin=1e-6)
    b.set_objective(x, rng.uniform(1, 2, n).round(3))
    return b.build()


def assert_agrees(sol: smug.Solution, problem: smug.Problem, opt: Fraction | None) -> None:
    if opt is None:
        assert sol.status == Status.INFEASIBLE, (sol.status, sol.message)
        assert sol.assignment is None
        return
    assert sol.status == Status.OPTIMAL, (sol.status, sol.message)
    assert sol.verified is True
    assert problem.exact_check(sol.assignment, sol.rational).feasible
    assert sol.exact_objective == opt
    assert sol.exact_bound == opt


# ------------------------------------------------------- brute-force agreement
@pytest.mark.parametrize("name", ALL)
def test_cover_problems_agree_with_brute_force(name: str) -> None:
    _require(name)
    for seed in range(10):
        p, opt = cover_case(seed)
        assert_agrees(smug.solve(p, name), p, opt)


@pytest.mark.parametrize("name", ALL)
def test_real_objective_and_constant_agree_with_brute_force(name: str) -> None:
    _require(name)
    for seed in range(4):
        p, opt = cover_case(100 + seed, real_objective=True, constant=-2.5)
        assert_agrees(smug.solve(p, name), p, opt)


@pytest.mark.parametrize("name", ALL)
def test_mip_gap_is_zero(name: str) -> None:
    """A large objective constant: a default relative gap (1e-4 * 1e7 = 1000) would accept any solution."""
    _require(name)
    for seed in range(3):
        p, opt = cover_case(200 + seed, n=11, constant=1e7)
        assert_agrees(smug.solve(p, name), p, opt)


@pytest.mark.parametrize("name", MILP)
def test_relu_problems_agree_with_brute_force(name: str) -> None:
    _require(name)
    feasible = infeasible = 0
    for seed in range(12):
        p, complete, opt = relu_case(seed)
        sol = smug.solve(p, name)
        assert_agrees(sol, p, opt)
        if opt is None:
            infeasible += 1
        else:
            feasible += 1
            # the returned reals are the network's forward pass for the returned mask, exactly
            fwd = complete(sol.assignment[: p.n_mask])
            assert np.allclose(sol.assignment, fwd, atol=1e-9)
    assert feasible >= 3


@pytest.mark.parametrize("name", ALL)
def test_infeasible_is_reported_infeasible(name: str) -> None:
    _require(name)
    b = smug.ProblemBuilder()
    x = b.add_mask(6)
    a = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 1 / 3])
    b.add_rows([a], ">=", [a.sum()], strict=True, margin=1e-5)  # needs more than everything
    b.set_objective(x, 1.0)
    p = b.build()
    assert brute_force(p)[0] is None
    sol = smug.solve(p, name)
    assert sol.status == Status.INFEASIBLE, sol.message
    # two rows that contradict each other
    b = smug.ProblemBuilder()
    x = b.add_mask(5)
    b.add_rows([[1, 1, 1, 0.5, 0.5]], ">=", [2.2])
    b.add_rows([[1, 1, 1, 0.5, 0.5]], "<=", [2.1])
    b.set_objective(x, 1.0)
    p = b.build()
    assert smug.solve(p, name).status == Status.INFEASIBLE


@pytest.mark.parametrize("name", ALL)
def test_hard_problem_at_time_limit_is_feasible_or_timeout(name: str) -> None:
    _require(name)
    get_backend(name).version()  # warm the imports, so the time measured is the solve's
    p = hard_problem()
    t0 = time.perf_counter()
    sol = smug.solve(p, name, time_limit=1.0)
    wall = time.perf_counter() - t0
    assert sol.status in (Status.FEASIBLE, Status.TIMEOUT), (sol.status, sol.message)
    assert wall < 1.0 + grace_seconds(1.0) + 1.5
    if sol.status == Status.FEASIBLE:
        assert sol.verified is True
        assert p.exact_check(sol.assignment).feasible
        if sol.bound is not None:
            assert sol.bound <= sol.objective


@pytest.mark.parametrize("name", MILP)
def test_milp_rejects_numbers_the_solver_reads_as_infinite(name: str) -> None:
    _require(name)
    for big in (1e15, 1e20):
        b = smug.ProblemBuilder()
        x = b.add_mask(3)
        b.add_rows([[big, 1.0, 0.3 * big]], ">=", [0.3 * big])
        b.set_objective(x, 1.0)
        p = b.build()
        if big < 1e20 and name != "ortools:highs":
            assert_agrees(smug.solve(p, name), p, brute_force(p)[0])
        else:
            with pytest.raises(UnsupportedProblemError, match="infinite"):
                smug.solve(p, name)


def test_cpsat_relaxed_rounding_reports_a_valid_bound_at_the_time_limit() -> None:
    _require("ortools:cpsat")
    get_backend("ortools:cpsat").version()
    sol = smug.solve(hard_problem(), "ortools:cpsat", rounding="relaxed", time_limit=1.0)
    assert sol.status in (Status.FEASIBLE, Status.TIMEOUT)
    assert sol.bound is not None
    if sol.status == Status.FEASIBLE:
        assert sol.bound <= sol.objective and sol.verified is True


# ------------------------------------------------------------------ CP-SAT
def test_cpsat_adversarial_answers_are_exact() -> None:
    _require("ortools:cpsat")
    for seed in range(12):
        p = adversarial_problem(seed)
        opt, _ = brute_force(p)
        for rounding in ("tight", "relaxed"):
            sol = smug.solve(p, "ortools:cpsat", rounding=rounding, num_solutions=6)
            for mask in sol.masks:
                assert p.exact_check(mask.astype(float)).feasible, (seed, rounding)
            if opt is None:
                assert sol.status == Status.INFEASIBLE, (seed, rounding, sol.status, sol.message)
            else:
                assert sol.status == Status.OPTIMAL, (seed, rounding, sol.status, sol.message)
                assert sol.objective == opt


def test_cpsat_reports_incumbents_on_the_integer_problem_it_is_given() -> None:
    _require("ortools:cpsat")
    b = smug.ProblemBuilder()
    x = b.add_mask(12)
    rng = np.random.default_rng(7)
    A = rng.integers(0, 9, (5, 12)).astype(float)
    b.add_rows(A, ">=", np.floor(A.sum(1) / 2))
    b.set_objective(x, rng.integers(1, 9, 12).astype(float))
    p = b.build()
    be = get_backend("ortools:cpsat")
    seen: list[smug.solving.contract.Incumbent] = []
    sol = be.solve(p, smug.SolveParams(), seen.append)
    assert seen and sol.status == Status.OPTIMAL
    for inc in seen:
        assert p.exact_check(inc.assignment).feasible
    objs = [inc.exact_objective for inc in seen]
    assert objs == sorted(objs, reverse=True)
    assert objs[-1] == sol.exact_objective == brute_force(p)[0]
    with pytest.raises(UnsupportedProblemError, match="integer"):
        be.solve(cover_problem(1), smug.SolveParams(), seen.append)  # real coefficients: scale first


def test_cpsat_stats_report_scales_and_tightening() -> None:
    _require("ortools:cpsat")
    integral = smug.ProblemBuilder()
    x = integral.add_mask(5)
    integral.add_rows([[1, 2, 3, 4, 5]], ">=", [7])
    integral.set_objective(x, 1.0)
    sol = smug.solve(integral.build(), "ortools:cpsat", presolve=False)
    assert sol.status == Status.OPTIMAL
    sc = sol.stats["backend_reductions"]["integer_scaling"]
    assert sc["rows_tightened"] == 0 and sc["objective_exact"] is True
    assert sc["scale_log2_min"] == sc["scale_log2_max"] == 0
    assert "certification" not in sol.stats  # exact: one solve settles it
    p = cover_problem(3)
    sol = smug.solve(p, "ortools:cpsat", presolve=False, cuts=False)
    sc = sol.stats["backend_reductions"]["integer_scaling"]
    assert sc["rows_tightened"] > 0
    assert sc["scale_log2_min"] >= 30 and sc["scale_log2_max"] <= 50
    assert 0 < sc["max_tightening"] < 1e-9
    assert sol.stats["certification"]["certified"] is True and sol.status == Status.OPTIMAL


def test_cpsat_rounded_objective_is_certified() -> None:
    _require("ortools:cpsat")
    for seed in range(4):
        p = cover_problem(300 + seed)
        p = p.replace(objective=p.objective + 0.1)  # 0.1 is not a dyadic rational
        low = scale_rows(p)
        assert not low.obj_exact
        opt, _ = brute_force(p)
        sol = smug.solve(p, "ortools:cpsat")
        assert_agrees(sol, p, opt)


def test_cpsat_without_certification_claims_nothing_unproven() -> None:
    _require("ortools:cpsat")
    p, opt = cover_case(2)
    assert opt is not None
    sol = smug.solve(p, "ortools:cpsat", certify=False, presolve=False)
    assert sol.status == Status.FEASIBLE and "no exact backend" in sol.message
    assert sol.exact_objective >= opt
    b = smug.ProblemBuilder()
    x = b.add_mask(4)
    b.add_rows([[0.1, 0.2, 0.3, 1 / 3]], ">=", [0.6])
    b.add_rows([[0.1, 0.2, 0.3, 1 / 3]], "<=", [0.55])  # contradicts the row above; both get rounded
    b.set_objective(x, 1.0)
    sol = smug.solve(b.build(), "ortools:cpsat", certify=False, presolve=False)
    assert sol.status == Status.UNKNOWN
    sol = smug.solve(b.build(), "ortools:cpsat", presolve=False)
    assert sol.status == Status.INFEASIBLE


def test_cpsat_rejects_relu_and_real_variables() -> None:
    _require("ortools:cpsat")
    p, _ = relu_problem(0)
    with pytest.raises(UnsupportedProblemError, match=r"0/1.*ortools:scip"):
        smug.solve(p, "ortools:cpsat")
    with pytest.raises(UnsupportedProblemError, match=r"real variable.*ReLU"):
        smug.solve(p, "ortools:cpsat")
    b = smug.ProblemBuilder()
    x = b.add_mask(2)
    r = b.add_real([0.0], [1.0])
    b.add_rows([[1.0, 1.0, 1.0]], ">=", [1.0], cols=np.concatenate([x, r]))
    with pytest.raises(UnsupportedProblemError, match=r"real variable.*MILP backend"):
        smug.solve(b.build(), "ortools:cpsat")


def test_cpsat_equality_rows() -> None:
    _require("ortools:cpsat")
    b = smug.ProblemBuilder()
    x = b.add_mask(6)
    b.add_rows([[0.5, 0.5, 0.25, 0.25, 1.0, 1.0]], "==", [1.25])
    b.set_objective(x, [3, 1, 2, 1, 1, 2])
    p = b.build()
    opt, _ = brute_force(p)
    assert_agrees(smug.solve(p, "ortools:cpsat"), p, opt)
    b = smug.ProblemBuilder()
    x = b.add_mask(3)
    b.add_rows([[0.5, 0.5, 1.0]], "==", [0.75])  # scales exactly, but no 0/1 point reaches 3/4
    b.set_objective(x, 1.0)
    assert smug.solve(b.build(), "ortools:cpsat").status == Status.INFEASIBLE
    b = smug.ProblemBuilder()
    x = b.add_mask(3)
    b.add_rows([[1 / 3, 1 / 3, 1 / 3]], "==", [1.0])
    b.set_objective(x, 1.0)
    with pytest.raises(UnsupportedProblemError, match="equality"):
        smug.solve(b.build(), "ortools:cpsat")


# -------------------------------------------------------------- parameters
@pytest.mark.parametrize("name", ALL)
def test_seed_threads_verbose(name: str, capfd: pytest.CaptureFixture[str]) -> None:
    _require(name)
    p, opt = cover_case(5)
    caps = get_backend(name).capabilities
    capfd.readouterr()
    assert_agrees(smug.solve(p, name, seed=7), p, opt)  # a seed is taken, or ignored by a deterministic solver
    assert caps.seed or caps.deterministic
    if caps.max_threads is None:
        assert_agrees(smug.solve(p, name, threads=2), p, opt)
    else:
        with pytest.raises(UnsupportedParameterError, match="threads"):
            smug.solve(p, name, threads=caps.max_threads + 1)
    assert capfd.readouterr().out == ""
    assert_agrees(smug.solve(p, name, verbose=True), p, opt)
    assert capfd.readouterr().out.strip() != ""


def test_capabilities_are_declared_per_solver() -> None:
    scip, highs, cbc, cpsat = (get_backend(n) for n in ALL)
    assert scip.capabilities.max_threads is None and scip.capabilities.seed
    assert highs.capabilities.max_threads == 1 and highs.capabilities.seed
    assert cbc.capabilities.max_threads == 1 and not cbc.capabilities.seed and cbc.capabilities.deterministic
    for b in (scip, highs, cbc):
        c = b.capabilities
        assert not c.relu and c.real_vars and c.optimize and not c.exact and c.tolerance > 0  # ReLUs via big-M
    c = cpsat.capabilities
    assert not c.relu and not c.real_vars and c.max_threads is None and c.integer_coefficients and c.seed
    assert c.exact and c.hints


def test_versions_and_install_hints(monkeypatch: pytest.MonkeyPatch) -> None:
    import ortools

    for name, tag in zip(ALL, ["SCIP", "HIGHS", "CBC", "CP-SAT"], strict=True):
        b = get_backend(name)
        v = b.version()
        assert v is not None and v.startswith(f"ortools {ortools.__version__} / {tag}")
        assert b.available()
        assert b.install_hint() == "pip install ortools"
    from ortools.linear_solver import pywraplp

    monkeypatch.setattr(pywraplp.Solver, "CreateSolver", staticmethod(lambda name: None))
    assert om._milp_solver_version.__wrapped__("SCIP") is None
    b = om.ORToolsMILPBackend(name="ortools:scip", solver="SCIP")
    monkeypatch.setattr(b, "version", lambda: None)
    assert not b.available()
    assert b.install_hint() == "pip install --upgrade ortools"
    with pytest.raises(ConfigError, match="GLOP"):
        om.ORToolsMILPBackend(solver="GLOP")
    with pytest.raises(ConfigError):
        oc.ORToolsCPSATBackend(rounding="nearest")
    with pytest.raises(ConfigError, match="coef_bits"):
        oc.ORToolsCPSATBackend(coef_bits=4)


# ------------------------------------------------------------- internals
def test_model_proto_holds_the_problem() -> None:
    from smug.ir.exact import rounded_rhs

    p, _ = relu_problem(3)
    lp = p.linearize_relus()
    proto = om.mp_model_proto(lp, rounded_rhs(lp))
    assert len(proto.variable) == lp.n_vars and len(proto.constraint) == lp.n_rows
    for j, v in enumerate(proto.variable):
        assert (v.lower_bound, v.upper_bound, v.is_integer) == (lp.lb[j], lp.ub[j], bool(lp.is_binary[j]))
        assert v.objective_coefficient == lp.objective[j]
    A = lp.A.tocsr()
    for i, c in enumerate(proto.constraint):
        row = dict(
            zip(A.indices[A.indptr[i] : A.indptr[i + 1]].tolist(), A.data[A.indptr[i] : A.indptr[i + 1]].tolist())
        )
        assert dict(zip(c.var_index, c.coefficient)) == row


def test_milp_reals_off_by_its_tolerance_are_recomputed_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reals the solver returns a little off (a tolerance-level answer) are recomputed exactly from the mask."""
    _require("ortools:scip")
    p, complete, opt = relu_case(2)
    assert opt is not None
    original = om.ORToolsMILPBackend.solve

    def spoiled(self, problem, params, report, hint=None):  # noqa: ANN001, ANN202
        sol = original(self, problem, params, report, hint)
        if sol.assignment is not None:
            sol.assignment = sol.assignment.copy()
            sol.assignment[~problem.is_binary] += 1e-7  # every real variable off: no exact equality holds
        return sol

    monkeypatch.setattr(om.ORToolsMILPBackend, "solve", spoiled)
    sol = smug.solve(p, "ortools:scip")
    assert sol.stats["certification"]["repaired"] is True
    assert sol.verified is True and sol.rational is not None
    assert sol.status == Status.OPTIMAL and sol.exact_objective == opt


def test_tolerance_answers_to_tiny_right_hand_sides_are_certified() -> None:
    # found by Hypothesis in CI: CBC returns x2 = 0.999999998 for the row x2 == 1 (inside CBC's 1e-7 tolerance);
    # a 1.6e-173 right-hand side once broke the repair.  Every MILP answer must be exactly checked and certified.
    from pathlib import Path

    path = Path(__file__).parent / "data" / "relu_tiny_rhs_problem.json"
    problem = Problem.from_json(path.read_text())
    opt = brute_force(problem)[0]
    for name in ("ortools:cbc", "ortools:scip", "ortools:highs"):
        sol = smug.solve(problem, name, time_limit=30)
        assert sol.status == Status.OPTIMAL and sol.verified, (name, sol.message)
        assert sol.exact_objective == opt

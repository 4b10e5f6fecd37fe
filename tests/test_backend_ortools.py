"""Tests of the OR-Tools backends (``ortools:scip``, ``ortools:highs``, ``ortools:cbc``, ``ortools:cpsat``).

Every answer is compared with :func:`smug.testing.brute.brute_force`; every
returned assignment must pass the IR's independent check.  The CP-SAT tests
also check the integer rounding itself, exhaustively, in exact arithmetic.
"""

from __future__ import annotations

import functools
import itertools
import time
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp

import smug
from smug import Status
from smug.errors import ConfigError, UnsupportedParameterError, UnsupportedProblemError
from smug.ir import GE, LE, Problem
from smug.solving.registry import get_backend
from smug.solving.run import grace_seconds
from smug.testing.brute import brute_force

pytest.importorskip("ortools")

from smug.backends import ortools as ob  # noqa: E402

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
    return p, complete, brute_force(p, complete=complete)[0]


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


def assert_agrees(sol: smug.Solution, problem: smug.Problem, opt: float | None) -> None:
    if opt is None:
        assert sol.status == Status.INFEASIBLE, (sol.status, sol.message)
        assert sol.assignment is None
        return
    assert sol.status == Status.OPTIMAL, (sol.status, sol.message)
    assert sol.verified is True
    assert problem.evaluate(sol.assignment).feasible
    assert sol.objective == pytest.approx(opt, rel=1e-9, abs=1e-9)
    if sol.bound is not None:
        assert sol.bound <= sol.objective + 1e-9 * max(1.0, abs(sol.objective))
        assert sol.bound >= opt - 1e-6 * max(1.0, abs(opt))


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
            # the returned reals are the network's forward pass for the returned mask
            fwd = complete(sol.assignment[: p.n_mask])
            assert np.allclose(sol.assignment, fwd, atol=1e-6)
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
    assert brute_force(p, exact=True)[0] is None
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
        assert p.evaluate(sol.assignment).feasible
        if sol.bound is not None:
            assert sol.bound <= sol.objective + 1e-9


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
def _integer_rows_accept(rows: sp.csr_matrix, rhs: list[int], sense: np.ndarray, xs: np.ndarray) -> np.ndarray:
    act = xs.astype(object) @ rows.toarray().astype(object).T
    ok = np.ones((xs.shape[0], rows.shape[0]), dtype=bool)
    for i, s in enumerate(sense.tolist()):
        r = int(rhs[i])
        ok[:, i] = act[:, i] >= r if s == GE else act[:, i] <= r if s == LE else act[:, i] == r
    return ok


def test_cpsat_rounding_is_sound_for_every_mask() -> None:
    """Exhaustively: a mask the tight integer rows accept satisfies the real rows exactly (tol=0), and a mask
    that satisfies the real rows is accepted by the relaxed integer rows."""
    n = 8
    xs = np.array(list(itertools.product((0, 1), repeat=n)), dtype=np.int64)
    tightened = 0
    for seed in range(15):
        p = adversarial_problem(seed, n)
        all_real = np.array([p.evaluate(x.astype(float), exact=True, tol=0).linear_holds for x in xs])
        for bits in (50, 30, 12):
            low = ob.lower_rows_for_cpsat(p, bits)
            real = all_real[:, low.keep]
            tight = _integer_rows_accept(low.tight, low.rhs, low.sense, xs)
            relaxed = _integer_rows_accept(low.relaxed, low.rhs, low.sense, xs)
            assert not (tight & ~real).any(), (seed, bits)
            assert not (real & ~relaxed).any(), (seed, bits)
            # rows left out hold for every mask; rows marked infeasible hold for none
            dropped = np.setdiff1d(np.arange(p.n_rows), np.union1d(low.keep, low.infeasible_rows))
            assert all_real[:, dropped].all()
            assert not all_real[:, low.infeasible_rows].any()
            # scaled rows stay inside the declared range
            for rows in (low.tight, low.relaxed):
                size = np.asarray(abs(rows).sum(axis=1)).ravel() + np.abs(np.array(low.rhs, dtype=float))
                assert (size < 2 ** (bits - 1)).all()
            tightened += int(low.tightened.sum())
    assert tightened > 0


def test_cpsat_integer_rows_are_exact_when_they_can_be() -> None:
    b = smug.ProblemBuilder()
    x = b.add_mask(4)
    b.add_rows([[1.5, 0.25, 2.0, 1024.0]], ">=", [1.75])
    b.add_rows([[3.0, 6.0, 9.0, 12.0]], "<=", [13.0])
    b.set_objective(x, [0.5, 0.25, 1.0, 2.0])
    low = ob.lower_rows_for_cpsat(b.build())
    assert low.exact and low.obj_exact
    assert low.stats["rows_tightened"] == 0
    # row 0 needs s = 4 (0.25 has two fractional bits); row 1 is integral already
    assert low.tight.toarray().tolist() == [[6, 1, 8, 4096], [3, 6, 9, 12]]
    assert low.relaxed.toarray().tolist() == low.tight.toarray().tolist()
    assert low.rhs == [7, 13]
    assert low.obj.tolist() == [2, 1, 4, 8] and low.obj_exponent == 2


def test_cpsat_adversarial_answers_are_exact() -> None:
    _require("ortools:cpsat")
    for seed in range(12):
        p = adversarial_problem(seed)
        opt, _ = brute_force(p, exact=True)
        for rounding in ("tight", "relaxed"):
            sol = smug.solve(p, "ortools:cpsat", rounding=rounding, num_solutions=6)
            for mask in sol.masks:
                assert p.evaluate(mask.astype(float), exact=True, tol=0).feasible, (seed, rounding)
            assert sol.stats["rejected_tight"] == 0
            if opt is None:
                assert sol.status == Status.INFEASIBLE, (seed, rounding, sol.status, sol.message)
            else:
                assert sol.status == Status.OPTIMAL, (seed, rounding, sol.status, sol.message)
                assert sol.objective == opt


def test_cpsat_reports_incumbents_that_are_exactly_feasible() -> None:
    _require("ortools:cpsat")
    p = cover_problem(7, n=12, real_objective=True)
    be = get_backend("ortools:cpsat")
    seen: list[smug.solving.contract.Incumbent] = []
    sol = be.solve(p, smug.SolveParams(), seen.append)
    assert seen
    for inc in seen:
        assert p.evaluate(inc.assignment, exact=True, tol=0).feasible
    objs = [inc.objective for inc in seen]
    assert objs == sorted(objs, reverse=True)
    assert objs[-1] == pytest.approx(sol.objective)


def test_cpsat_stats_report_scales_and_tightening() -> None:
    _require("ortools:cpsat")
    integral = smug.ProblemBuilder()
    x = integral.add_mask(5)
    integral.add_rows([[1, 2, 3, 4, 5]], ">=", [7])
    integral.set_objective(x, 1.0)
    sol = smug.solve(integral.build(), "ortools:cpsat")
    assert sol.status == Status.OPTIMAL
    assert sol.stats["rows_tightened"] == 0 and sol.stats["objective_exact"] is True
    assert sol.stats["scale_log2_min"] == sol.stats["scale_log2_max"] == 0
    assert "certify_rounds" not in sol.stats  # exact: one solve settles it
    p = cover_problem(3)
    sol = smug.solve(p, "ortools:cpsat")
    assert sol.stats["rows_tightened"] > 0
    assert sol.stats["scale_log2_min"] >= 30 and sol.stats["scale_log2_max"] <= 50
    assert 0 < sol.stats["max_tightening"] < 1e-9
    assert sol.stats["certified"] is True and sol.status == Status.OPTIMAL


def test_cpsat_rounded_objective_is_certified() -> None:
    _require("ortools:cpsat")
    for seed in range(4):
        p = cover_problem(300 + seed)
        p = smug.Problem(**{**_fields(p), "objective": p.objective + 0.1})  # 0.1 is not a dyadic rational
        low = ob.lower_rows_for_cpsat(p)
        assert not low.obj_exact
        opt, _ = brute_force(p)
        sol = smug.solve(p, "ortools:cpsat")
        assert_agrees(sol, p, opt)


def _fields(p: smug.Problem) -> dict:
    keys = [
        "n_mask",
        "lb",
        "ub",
        "is_binary",
        "A",
        "sense",
        "rhs",
        "strict",
        "margin",
        "relu_in",
        "relu_out",
        "relu_lb",
        "relu_ub",
        "objective",
        "objective_constant",
    ]
    return {k: getattr(p, k) for k in keys}


def test_cpsat_without_certification_claims_nothing_unproven() -> None:
    _require("ortools:cpsat")
    p, opt = cover_case(2)
    assert opt is not None
    sol = smug.solve(p, "ortools:cpsat", certify=False)
    assert sol.status == Status.FEASIBLE and "certify=False" in sol.message
    assert sol.objective == pytest.approx(opt)
    b = smug.ProblemBuilder()
    x = b.add_mask(4)
    b.add_rows([[0.1, 0.2, 0.3, 1 / 3]], ">=", [0.6])
    b.add_rows([[0.1, 0.2, 0.3, 1 / 3]], "<=", [0.55])  # contradicts the row above; both get rounded
    b.set_objective(x, 1.0)
    sol = smug.solve(b.build(), "ortools:cpsat", certify=False)
    assert sol.status == Status.UNKNOWN
    sol = smug.solve(b.build(), "ortools:cpsat")
    assert sol.status == Status.INFEASIBLE


def test_cpsat_rejects_relu_and_real_variables() -> None:
    _require("ortools:cpsat")
    p, _ = relu_problem(0)
    with pytest.raises(UnsupportedProblemError, match=r"0/1.*ortools:scip"):
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
        assert b.capabilities.relu and b.capabilities.real_vars and b.capabilities.optimize
    c = cpsat.capabilities
    assert not c.relu and not c.real_vars and c.max_threads is None and c.integer_coefficients and c.seed


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
    assert ob._milp_solver_version.__wrapped__("SCIP") is None
    b = ob.ORToolsMILPBackend(name="ortools:scip", solver="SCIP")
    monkeypatch.setattr(b, "version", lambda: None)
    assert not b.available()
    assert b.install_hint() == "pip install --upgrade ortools"
    with pytest.raises(ConfigError, match="GLOP"):
        ob.ORToolsMILPBackend(solver="GLOP")
    with pytest.raises(ConfigError):
        ob.ORToolsCPSATBackend(rounding="nearest")


# ------------------------------------------------------------- internals
def test_model_proto_paths_agree() -> None:
    p, _ = relu_problem(3)
    lp = p.linearize_relus()
    rhs = ob._safe_rhs(lp)
    fast = ob._mp_model_proto_helper(lp, rhs)
    slow = ob._mp_model_proto_python(lp, rhs)
    assert len(fast.variable) == len(slow.variable) == lp.n_vars
    for u, v in zip(fast.variable, slow.variable, strict=True):
        assert (u.lower_bound, u.upper_bound, u.is_integer, u.objective_coefficient) == (
            v.lower_bound,
            v.upper_bound,
            v.is_integer,
            v.objective_coefficient,
        )
    assert len(fast.constraint) == len(slow.constraint) == lp.n_rows
    for c, d in zip(fast.constraint, slow.constraint, strict=True):
        assert (c.lower_bound, c.upper_bound) == (d.lower_bound, d.upper_bound)
        assert sorted(zip(c.var_index, c.coefficient)) == sorted(zip(d.var_index, d.coefficient))


def test_safe_rhs_is_never_weaker() -> None:
    rng = np.random.default_rng(0)
    k = 400
    rhs = rng.normal(size=k) * 10.0 ** rng.integers(-5, 5, k)
    mg = rng.random(k) * 10.0 ** rng.integers(-12, 0, k)
    sense = rng.choice([-1, 1], k)
    p = smug.Problem(
        n_mask=1,
        lb=[0],
        ub=[1],
        is_binary=[True],
        A=np.ones((k, 1)),
        sense=sense,
        rhs=rhs,
        strict=np.ones(k, bool),
        margin=mg,
        relu_in=[],
        relu_out=[],
        relu_lb=[],
        relu_ub=[],
        objective=[0.0],
    )
    r = ob._safe_rhs(p)
    moved = 0
    for i in range(k):
        exact = Fraction(rhs[i]) + (Fraction(mg[i]) if sense[i] == 1 else -Fraction(mg[i]))
        assert (Fraction(r[i]) >= exact) if sense[i] == 1 else (Fraction(r[i]) <= exact)
        assert abs(r[i] - p.effective_rhs()[i]) <= np.spacing(abs(r[i]))
        moved += r[i] != p.effective_rhs()[i]
    assert moved > 0


def test_exact_rows_hold_matches_exact_evaluation() -> None:
    rng = np.random.default_rng(1)
    for seed in range(10):
        p = adversarial_problem(seed)
        for _ in range(20):
            x = (rng.random(p.n_vars) < 0.5).astype(float)
            assert (ob.exact_rows_hold(p, x) == p.evaluate(x, exact=True, tol=0).linear_holds).all()


def test_milp_repairs_reals_that_miss_the_tolerance(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the solver's reals do not pass the IR check after rounding the binaries, they are re-solved."""
    _require("ortools:scip")
    p, complete, opt = relu_case(2)
    assert opt is not None
    original = ob.ORToolsMILPBackend._assignment
    calls = []

    def spoiled(problem: smug.Problem, values: np.ndarray) -> np.ndarray:
        x = original(problem, values)
        if not calls:  # spoil the first answer's reals
            x[problem.n_mask :] += 0.01
        calls.append(1)
        return x

    monkeypatch.setattr(ob.ORToolsMILPBackend, "_assignment", staticmethod(spoiled))
    sol = smug.solve(p, "ortools:scip")
    assert sol.stats["repaired"] is True
    assert sol.verified is True
    assert sol.status == Status.OPTIMAL and sol.objective == pytest.approx(opt)


def test_repair_when_cbc_sits_on_a_bound_within_its_own_tolerance():
    # found by Hypothesis in CI: CBC returns x2 = 0.999999998 for the row x2 == 1 (inside CBC's 1e-7 tolerance,
    # outside smug's 1e-9 check); the repair LP then failed in GLOP's presolve, which read a 1.6e-173 right-hand
    # side as an exact infeasibility.  The repair must give an exactly checked optimum.
    from pathlib import Path

    path = Path(__file__).parent / "data" / "relu_tiny_rhs_problem.json"
    problem = Problem.from_json(path.read_text())
    for name in ("ortools:cbc", "ortools:scip", "ortools:highs"):
        sol = smug.solve(problem, name, time_limit=30)
        assert sol.status == Status.OPTIMAL and sol.verified, (name, sol.message)
        assert sol.objective == 0.0

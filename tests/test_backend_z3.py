"""Tests of the z3 backends (``z3`` with every encoding, and ``z3:original``) against brute force."""

from __future__ import annotations

import sys
import time
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import smug
from smug import ProblemBuilder, Status
from smug.errors import UnsupportedParameterError, ValidationError
from smug.ir import Problem
from smug.solving.run import grace_seconds
from smug.testing.brute import brute_force
from smug.testing.generators import random_binary_problem

z3 = pytest.importorskip("z3")

from smug.backends.z3 import ENCODINGS, Interrupt, Z3Backend  # noqa: E402
from smug.backends.z3_original import Z3OriginalBackend  # noqa: E402
from smug.reductions.presolve import presolve  # noqa: E402

#: every configuration under test: (backend name, options); every encoding with the defaults (presolve, cuts,
#: greedy start), the reductions switched off for two of them, and the original encoding
CONFIGS = [("z3", {"encoding": e}) for e in ENCODINGS] + [
    ("z3", {"encoding": "maxsat", "presolve": False, "cuts": False, "greedy": False}),
    ("z3", {"encoding": "int", "presolve": False, "cuts": False}),
    ("z3", {"encoding": "bound", "presolve": False, "greedy": False, "search": "linear"}),
    ("z3:original", {}),
]
CONFIG_IDS = ["-".join([b] + [f"{k}={v}" for k, v in o.items()]) for b, o in CONFIGS]


# --------------------------------------------------------------------------- problem generators
def relu_problem(rng: np.random.Generator) -> tuple[Problem, object]:
    """A tiny random network over the mask: h = W m + b (real, equality rows), y = relu(h), a row on y.

    Returns the problem and the ``complete`` function brute force needs.
    """
    n = int(rng.integers(2, 7))
    k = int(rng.integers(1, 4))
    W = rng.normal(size=(k, n))
    bias = rng.normal(scale=0.5, size=k)
    hl = bias + np.minimum(W, 0).sum(1)
    hu = bias + np.maximum(W, 0).sum(1)
    # widen the sound bounds a little (bounds need only be sound, not tight)
    hl, hu = hl - 0.125, hu + 0.125
    b = ProblemBuilder()
    b.add_mask(n)
    h = b.add_real(hl, hu)
    y = b.add_real(np.zeros(k), np.maximum(hu, 0.0))
    # h - W m = bias
    A = np.hstack([-W, np.eye(k), np.zeros((k, k))])
    b.add_rows(A, "==", bias)
    b.add_relu(y, h, hl, hu)
    v = rng.normal(size=k)
    zero_val = float(v @ np.maximum(bias, 0.0))
    ones_val = float(v @ np.maximum(W.sum(1) + bias, 0.0))
    if ones_val < zero_val:
        v, zero_val, ones_val = -v, -zero_val, -ones_val
    # between the empty mask's value and the full mask's (sometimes above both: maybe infeasible)
    thr = zero_val + rng.uniform(0.2, 1.3) * (ones_val - zero_val)
    b.add_rows(np.concatenate([np.zeros(n + k), v])[None, :], ">=", [thr], strict=True, margin=[1e-6])
    obj = np.zeros(n + 2 * k)
    obj[:n] = rng.integers(1, 3, size=n)
    if rng.random() < 0.5:
        obj[n + k :] = 0.125  # a non-integral objective on the ReLU outputs
    b.set_objective(np.arange(n + 2 * k), obj)
    p = b.build()

    def complete(bits: np.ndarray) -> np.ndarray:
        hv = W @ bits + bias
        return np.concatenate([bits, hv, np.maximum(hv, 0.0)])

    return p, complete


def hard_problem(seed: int = 0, n: int = 400, rows: int = 60) -> Problem:
    """A dense SMUG-like problem z3 cannot finish in a second: rows kept at 90% of the all-ones value."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(rows, n)) * rng.random(n)
    A[:, : n // 2] = np.abs(A[:, : n // 2])
    keep = A.sum(1) > 0
    A = A[keep]
    b = ProblemBuilder()
    m = b.add_mask(n)
    b.add_rows(A, ">=", 0.9 * A.sum(1), strict=True, margin=1e-6)
    b.set_objective(m, 1.0)
    return b.build()


def check_against_brute(p: Problem, backend: str, opts: dict, complete: object = None) -> None:
    """Solve and compare with the exact oracle: the same optimum exactly, an exactly feasible solution."""
    best, _ = brute_force(p)
    sol = smug.solve(p, backend, **opts)
    if best is None:
        assert sol.status == Status.INFEASIBLE, (backend, opts, sol.status, sol.objective, sol.message)
        assert sol.assignment is None
    else:
        assert sol.status == Status.OPTIMAL, (backend, opts, sol.status, sol.message)
        assert sol.verified
        assert p.exact_check(sol.assignment, sol.rational).feasible
        assert sol.exact_objective == best, (backend, opts)
        x = sol.assignment
        bins = p.is_binary
        assert np.all((x[bins] == 0.0) | (x[bins] == 1.0))


# --------------------------------------------------------------------------- correctness
@pytest.mark.parametrize(("backend", "opts"), CONFIGS, ids=CONFIG_IDS)
def test_random_binary_problems_match_brute_force(backend: str, opts: dict) -> None:
    rng = np.random.default_rng(12345)
    n_infeasible = 0
    for t in range(14):
        p = random_binary_problem(rng, integral=t % 2 == 0)
        n_infeasible += brute_force(p)[0] is None
        check_against_brute(p, backend, opts)
    assert 0 < n_infeasible < 14  # the generator covers both cases


@pytest.mark.parametrize(("backend", "opts"), CONFIGS, ids=CONFIG_IDS)
def test_relu_networks_match_brute_force(backend: str, opts: dict) -> None:
    rng = np.random.default_rng(777)
    for _ in range(6):
        p, complete = relu_problem(rng)
        check_against_brute(p, backend, opts, complete)


@pytest.mark.parametrize(("backend", "opts"), CONFIGS, ids=CONFIG_IDS)
def test_strict_margin_decides_feasibility(backend: str, opts: dict) -> None:
    # exactly tight (a dyadic sum): feasible with >=, infeasible with > however small the margin
    b = ProblemBuilder()
    m = b.add_mask(3)
    b.add_rows([[0.375, 1.25, 0.5]], ">=", [2.125])
    b.set_objective(m, 1.0)
    p = b.build()
    assert smug.solve(p, backend, **opts).objective == 3.0
    for margin in (1e-12, 1e-6):
        b = ProblemBuilder()
        m = b.add_mask(3)
        b.add_rows([[0.375, 1.25, 0.5]], ">=", [2.125], strict=[True], margin=[margin])
        b.set_objective(m, 1.0)
        p = b.build()
        assert brute_force(p)[0] is None
        sol = smug.solve(p, backend, **opts)
        assert sol.status == Status.INFEASIBLE, (margin, sol.status, sol.message)
    # <= rows: 0.1 + 0.2 as floats is not 0.3; the exact rational sum decides
    b = ProblemBuilder()
    m = b.add_mask(2)
    b.add_rows([[0.1, 0.2]], "<=", [0.3])  # exact: 0.1+0.2 > 0.3 as rationals of these floats
    b.set_objective(m, -1.0)
    p = b.build()
    assert Fraction(0.1) + Fraction(0.2) > Fraction(0.3)
    sol = smug.solve(p, backend, **opts)
    assert sol.status == Status.OPTIMAL and sol.objective == -1.0
    # margin larger than the slack: infeasible; smaller: feasible
    for margin, feasible in ((0.5, False), (0.0625, True)):
        b = ProblemBuilder()
        m = b.add_mask(2)
        b.add_rows([[1.0, 1.0]], ">=", [1.875], strict=[True], margin=[margin])
        b.set_objective(m, 1.0)
        sol = smug.solve(b.build(), backend, **opts)
        assert (sol.status == Status.OPTIMAL) == feasible, (margin, sol.status)


@pytest.mark.parametrize(("backend", "opts"), CONFIGS, ids=CONFIG_IDS)
def test_pseudo_boolean_overflow_region(backend: str, opts: dict) -> None:
    """Rows whose exactly scaled integers sum past 2**31: z3's PB constraints overflow silently there.

    ``(1 + 2**-30) m0 + (1 + 3 * 2**-30) m1 >= 2 + 4 * 2**-30`` scales to integers ``2**30 + 1`` and
    ``2**30 + 3`` with right-hand side ``2**31 + 4``: both masks are needed.  Passed to z3 as a
    pseudo-Boolean constraint, z3 answers with neither (or infeasible).
    """
    a, b_ = 1 + 2.0**-30, 1 + 3 * 2.0**-30
    for rhs, expected in ((a + b_, 2.0), (b_ + 2.0**-31, 2.0), (b_, 1.0)):
        b = ProblemBuilder()
        m = b.add_mask(3)
        b.add_rows([[a, b_, 0.0]], ">=", [rhs])
        b.set_objective(m, [1.0, 1.0, 5.0])
        p = b.build()
        assert brute_force(p)[0] == expected
        sol = smug.solve(p, backend, **opts)
        assert sol.status == Status.OPTIMAL and sol.objective == expected, (rhs, sol.status, sol.objective)


@pytest.fixture(scope="module")
def digits_problem() -> tuple[Problem, float]:
    """A real SMUG problem (float32 weights: scaled rows of 32-40 bits) and its brute-force optimum."""
    from pathlib import Path

    p = Problem.from_json(str(Path(__file__).parent / "data" / "smug_digits_problem.json"))
    best, _ = brute_force(p)
    assert best is not None
    return p, best


@pytest.mark.parametrize(("backend", "opts"), CONFIGS, ids=CONFIG_IDS)
def test_real_smug_problem(backend: str, opts: dict, digits_problem: tuple[Problem, float]) -> None:
    """PB overflow once made z3 call this problem infeasible."""
    p, best = digits_problem
    sol = smug.solve(p, backend, **opts)
    assert sol.status == Status.OPTIMAL and sol.exact_objective == best


# --------------------------------------------------------------------------- presolve
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), integral=st.booleans())
def test_presolve_never_changes_the_optimum(seed: int, integral: bool) -> None:
    rng = np.random.default_rng(seed)
    p = random_binary_problem(rng, integral=integral)
    if rng.random() < 0.5:  # SMUG-like: empty columns and sign-dominated columns
        A = p.A.toarray()
        A[:, 0] = 0.0
        A[:, 1] = -np.abs(A[:, 1]) * (p.sense == 1) + np.abs(A[:, 1]) * (p.sense == -1)
        p = Problem(
            n_mask=p.n_mask,
            lb=p.lb,
            ub=p.ub,
            is_binary=p.is_binary,
            A=A,
            sense=p.sense,
            rhs=p.rhs,
            strict=p.strict,
            margin=p.margin,
            relu_in=p.relu_in,
            relu_out=p.relu_out,
            relu_lb=p.relu_lb,
            relu_ub=p.relu_ub,
            objective=np.abs(p.objective) + 0.5,
        )
    best, _ = brute_force(p)
    ps = presolve(p)
    # the reduced problem (fixings as bounds, dropped rows removed) has the same optimum
    fixed = ps.fixed >= 0
    lb = np.where(fixed, ps.fixed, p.lb).astype(float)
    ub = np.where(fixed, ps.fixed, p.ub).astype(float)
    keep = ps.keep_rows
    q = Problem(
        n_mask=p.n_mask,
        lb=lb,
        ub=ub,
        is_binary=p.is_binary,
        A=p.A[keep],
        sense=p.sense[keep],
        rhs=p.rhs[keep],
        strict=p.strict[keep],
        margin=p.margin[keep],
        relu_in=p.relu_in,
        relu_out=p.relu_out,
        relu_lb=p.relu_lb,
        relu_ub=p.relu_ub,
        objective=p.objective,
        objective_constant=p.objective_constant,
    )
    best_q, winners = brute_force(q)
    assert (best is None) == (best_q is None)
    if best is not None:
        assert best_q == best
        assert all(p.exact_check(w).feasible for w in winners)  # dropped rows were redundant
        for enc in ("pb", "bound"):
            on = smug.solve(p, "z3", encoding=enc, presolve=True)
            off = smug.solve(p, "z3", encoding=enc, presolve=False)
            assert on.exact_objective == off.exact_objective == best


def test_presolve_reduces_smug_like_problems() -> None:
    b = ProblemBuilder()
    m = b.add_mask(4)
    # column 0 empty; column 1 only hurts the >= rows; 2 and 3 are needed
    b.add_rows([[0.0, -1.0, 2.0, 1.0], [0.0, -0.5, 1.0, 3.0]], ">=", [2.5, 3.5])
    b.set_objective(m, 1.0)
    p = b.build()
    ps = presolve(p)
    assert ps.fixed[0] == 0 and ps.fixed[1] == 0
    assert ps.fixed[2] == 1 and ps.fixed[3] == 1  # forced by the rows
    sol = smug.solve(p, "z3")
    assert sol.objective == 2.0 and sol.mask.tolist() == [0, 0, 1, 1]
    assert sol.stats["reductions"]["presolve"]["fixed_empty"] == 1
    assert sol.stats["decided_by"] == "presolve"  # every variable fixed: no solver needed


# --------------------------------------------------------------------------- options and parameters
def test_unknown_encoding_names_the_choices() -> None:
    with pytest.raises(ValidationError) as exc:
        smug.get_backend("z3", encoding="bogus")
    for e in ENCODINGS:
        assert repr(e) in str(exc.value)
    with pytest.raises(ValidationError):
        Z3Backend(encoding="maxsatt")
    with pytest.raises(ValidationError, match="smug.solve's own keywords"):
        Z3Backend(presolve=True)
    with pytest.raises(ValidationError, match="unknown option.*encodings.*encoding, hint"):
        Z3Backend(encodings="pb")


def test_threads_above_one_are_rejected() -> None:
    p = hard_problem(n=10, rows=3)
    for name in ("z3", "z3:original"):
        with pytest.raises(UnsupportedParameterError):
            smug.solve(p, name, threads=2)


def test_version_and_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    for be in (Z3Backend(), Z3OriginalBackend()):
        assert be.version() == z3.get_version_string()
        assert be.install_hint() == "pip install z3-solver"
    monkeypatch.setitem(sys.modules, "z3", None)  # z3 missing: the module still works, version() is None
    assert Z3Backend().version() is None
    assert not Z3OriginalBackend().available()


def test_seeds_give_optimal_answers() -> None:
    p = random_binary_problem(np.random.default_rng(3), integral=True)
    best, _ = brute_force(p)
    for seed in (0, 1, 12345):
        sol = smug.solve(p, "z3", seed=seed)
        assert (best is None and sol.status == Status.INFEASIBLE) or sol.exact_objective == best


# --------------------------------------------------------------------------- time limits
@pytest.mark.parametrize(
    ("backend", "opts"),
    [("z3", {}), ("z3", {"encoding": "bound"}), ("z3", {"encoding": "int", "presolve": False}), ("z3:original", {})],
)
def test_time_limit_is_honoured(backend: str, opts: dict) -> None:
    p = hard_problem()
    t0 = time.perf_counter()
    sol = smug.solve(p, backend, time_limit=1.0, **opts)
    elapsed = time.perf_counter() - t0
    # the limit, the documented grace, and process start/stop (z3 itself may overrun its own timeout)
    assert elapsed < 1.0 + grace_seconds(1.0) + 3.0, elapsed
    assert sol.status in (Status.OPTIMAL, Status.FEASIBLE, Status.TIMEOUT), (sol.status, sol.message)
    if sol.status == Status.FEASIBLE:
        assert sol.verified and p.exact_check(sol.assignment).feasible


def test_a_cancelled_check_answers_unknown_not_an_exception():
    # seen in CI: z3 raised Z3Exception('canceled') from Optimize.check when interrupted at the limit,
    # which smug.solve turned into status "error"
    import z3

    class Cancelled:
        def check(self):
            raise z3.Z3Exception(b"canceled")

    class Broken:
        def check(self):
            raise z3.Z3Exception(b"invalid argument")

    ctx = z3.Context()
    assert Interrupt(ctx, None).check(z3, Cancelled()) == z3.unknown
    with pytest.raises(z3.Z3Exception, match="invalid argument"):
        Interrupt(ctx, None).check(z3, Broken())

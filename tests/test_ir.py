"""The IR: validation errors, exact evaluation, JSON round trip, big-M reduction, exports."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smug.errors import (
    BoundsError,
    NonFiniteError,
    SchemaError,
    ShapeError,
    UnknownVariableError,
    ValidationError,
)
from smug.ir import EQ, GE, LE, Problem, ProblemBuilder
from smug.testing import assignments, brute_force, covering_problems, relu_problems

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def small_problem(**overrides) -> Problem:
    kw = dict(
        n_mask=3,
        lb=np.zeros(4),
        ub=np.array([1.0, 1.0, 1.0, 5.0]),
        is_binary=np.array([True, True, True, False]),
        A=sp.csr_matrix(np.array([[1.0, 2.0, 0.5, 0.0], [0.0, 0.0, 1.0, -1.0]])),
        sense=[">=", "<="],
        rhs=[2.0, 0.0],
        strict=[True, False],
        margin=[1e-3, 0.0],
        relu_in=np.zeros(0, dtype=np.int64),
        relu_out=np.zeros(0, dtype=np.int64),
        relu_lb=np.zeros(0),
        relu_ub=np.zeros(0),
        objective=[1.0, 1.0, 1.0, 0.0],
    )
    kw.update(overrides)
    return Problem(**kw)


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "overrides, error, words",
    [
        (dict(A=sp.csr_matrix(np.array([[np.nan, 2.0, 0.5, 0.0], [0, 0, 1, -1]]))), NonFiniteError, "non-finite"),
        (dict(rhs=[np.inf, 0.0]), NonFiniteError, "rhs"),
        (dict(objective=[1.0, np.nan, 1.0, 0.0]), NonFiniteError, "objective"),
        (dict(ub=np.array([1.0, 1.0, 1.0, np.inf])), NonFiniteError, "x3"),
        (dict(lb=np.array([0.0, 0.0, 0.0, 6.0])), BoundsError, "x3"),
        (dict(rhs=[2.0]), ShapeError, "rhs has length 1"),
        (dict(A=sp.csr_matrix(np.ones((2, 3)))), ShapeError, "3 columns"),
        (dict(objective=[1.0, 1.0]), ShapeError, "objective"),
        (dict(strict=[True, False], margin=[0.0, 0.0]), ValidationError, "positive margin"),
        (dict(sense=["==", "<="], strict=[True, False]), ValidationError, "cannot be strict"),
        (dict(sense=[">", "<="]), ValidationError, "unknown constraint sense"),
        (dict(margin=[-1.0, 0.0]), ValidationError, "negative margin"),
        (dict(strict=[False, False], margin=[1e-3, 0.0]), ValidationError, "only strict rows"),
        (dict(n_mask=5), ShapeError, "n_mask=5"),
        (dict(is_binary=np.array([True, False, True, False])), ValidationError, "mask variable m1"),
        (
            dict(relu_in=[7], relu_out=[3], relu_lb=[-1.0], relu_ub=[1.0]),
            UnknownVariableError,
            "refers to variable 7",
        ),
        (dict(relu_in=[3], relu_out=[0], relu_lb=[-1.0], relu_ub=[1.0]), ValidationError, "is binary"),
        (dict(relu_in=[3], relu_out=[3], relu_lb=[2.0], relu_ub=[1.0]), BoundsError, "lower above upper"),
        (dict(groups=sp.csr_matrix(np.ones((3, 5))), input_shape=(2, 2)), UnknownVariableError, "input features"),
        (dict(groups=sp.csr_matrix(np.ones((3, 4)))), ValidationError, "input_shape"),
    ],
)
def test_bad_problems_raise_named_errors(overrides, error, words):
    with pytest.raises(error, match=words):
        small_problem(**overrides)


def test_builder_rejects_unknown_variables():
    b = ProblemBuilder()
    b.add_mask(2)
    b.add_rows(np.ones((1, 3)), ">=", [1.0], cols=[0, 1, 5])
    with pytest.raises(UnknownVariableError, match="variable 5"):
        b.build()
    b2 = ProblemBuilder()
    b2.add_mask(2)
    b2.set_objective([4], 1.0)
    with pytest.raises(UnknownVariableError, match="objective refers to variable 4"):
        b2.build()


def test_mask_variables_come_first():
    b = ProblemBuilder()
    b.add_real([0.0], [1.0])
    with pytest.raises(ValidationError, match="before any other"):
        b.add_mask(2)


def test_error_classes_are_value_errors():
    with pytest.raises(ValueError):
        small_problem(rhs=[np.nan, 0.0])


# ----------------------------------------------------------------- evaluate
def test_evaluate_hand_case():
    p = small_problem()
    # 1 + 2 = 3 >= 2 + 1e-3 ; 0 - x3 <= 0
    ev = p.evaluate([1, 1, 0, 0.0])
    assert ev.feasible and ev.objective == 2.0
    # exactly tight without margin: 2.0 >= 2.0 + 1e-3 fails by the margin
    ev = p.evaluate([0, 1, 0, 0.0])
    assert not ev.feasible
    assert ev.linear_violation[0] == pytest.approx(1e-3)
    assert "row 0" in ev.summary()
    # real variable outside its bounds
    ev = p.evaluate([1, 1, 1, 6.0])
    assert not ev.feasible and ev.bound_violation[3] == pytest.approx(1.0)
    # a binary that is not 0/1
    ev = p.evaluate([1, 1, 0.5, 0.5])
    assert not ev.feasible and not ev.integrality_holds[2]
    with pytest.raises(ShapeError):
        p.evaluate([1, 1])
    with pytest.raises(NonFiniteError):
        p.evaluate([1, 1, np.nan, 0])


def test_exact_evaluation_sees_what_floats_miss():
    # in floats 0.1 + 0.2 rounds to 0.30000000000000004; the exact sum of those two doubles is smaller
    b = ProblemBuilder()
    m = b.add_mask(2)
    b.add_rows([[0.1, 0.2]], ">=", [0.30000000000000004])
    b.set_objective(m, 1.0)
    p = b.build()
    assert p.evaluate([1, 1], tol=0.0).feasible
    assert not p.evaluate([1, 1], tol=0.0, exact=True).feasible


@FAST
@given(st.data())
def test_float_and_exact_evaluation_agree_off_ties(data):
    p = data.draw(covering_problems(max_vars=8))
    x = data.draw(assignments(p))
    fe, ex = p.evaluate(x), p.evaluate(x, exact=True)
    assert fe.objective == pytest.approx(ex.objective, rel=1e-12, abs=1e-12)
    gap = np.abs(fe.linear_lhs - p.effective_rhs())
    clear = gap > 1e-6 * np.maximum(1, np.abs(p.effective_rhs()))
    assert np.array_equal(fe.linear_holds[clear], ex.linear_holds[clear])


def test_relu_evaluation():
    b = ProblemBuilder()
    b.add_mask(1)
    x = b.add_real([-2.0], [2.0])
    y = b.add_real([0.0], [2.0])
    b.add_relu(y, x, [-2.0], [2.0])
    p = b.build()
    assert p.evaluate([0, -1.5, 0.0]).feasible
    assert p.evaluate([0, 1.5, 1.5]).feasible
    ev = p.evaluate([0, 1.5, 0.0])
    assert not ev.feasible and ev.relu_violation[0] == pytest.approx(1.5)


def test_features_kept_maps_groups_to_input():
    G = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 0, 1, 1]], dtype=float))
    p = small_problem(
        n_mask=2,
        lb=np.zeros(2),
        ub=np.ones(2),
        is_binary=np.ones(2, bool),
        A=sp.csr_matrix((0, 2)),
        sense=[],
        rhs=[],
        strict=[],
        margin=[],
        objective=[1, 1],
        groups=G,
        input_shape=(2, 2),
    )
    assert p.features_kept([1, 0]).tolist() == [[1, 1], [0, 0]]
    assert p.features_kept([0, 1]).tolist() == [[0, 0], [1, 1]]


# --------------------------------------------------------------------- JSON
@FAST
@given(covering_problems(max_vars=10))
def test_json_round_trip_is_identity(p):
    q = Problem.from_json(p.to_json())
    assert q == p
    assert q.to_json() == p.to_json()


@FAST
@given(relu_problems())
def test_json_round_trip_with_relus(case):
    p = case.problem
    assert Problem.from_json(p.to_json()) == p


def test_json_round_trip_with_groups_names_and_metadata(tmp_path):
    G = sp.csr_matrix(np.eye(3, 4))
    p = small_problem(
        groups=G,
        input_shape=(1, 2, 2),
        var_names=["a", "b", "c", "d"],
        row_names=["keep0", "link"],
        metadata={"model": "mlp", "k": [1, 2]},
    )
    path = tmp_path / "p.json"
    p.to_json(str(path))
    q = Problem.from_json(str(path))
    assert q == p and q.input_shape == (1, 2, 2) and q.var_names[0] == "a"


def test_json_floats_survive_bit_for_bit():
    p = small_problem(rhs=[0.1 + 0.2, 1e-300], margin=[np.nextafter(1e-3, 1), 0.0])
    q = Problem.from_json(p.to_json())
    assert q.rhs.tobytes() == p.rhs.tobytes() and q.margin.tobytes() == p.margin.tobytes()


def test_json_schema_errors():
    d = json.loads(small_problem().to_json())
    with pytest.raises(SchemaError, match="version"):
        Problem.from_dict({**d, "version": 99})
    with pytest.raises(SchemaError, match="format"):
        Problem.from_dict({**d, "format": "other"})
    bad = dict(d)
    del bad["linear"]
    with pytest.raises(SchemaError, match="linear"):
        Problem.from_dict(bad)
    with pytest.raises(SchemaError, match="JSON"):
        Problem.from_json("{not json")
    d2 = json.loads(small_problem().to_json())
    d2["linear"]["val"][0] = float("nan")
    with pytest.raises(NonFiniteError):
        Problem.from_dict(d2)


# ------------------------------------------------------------- big-M reduction
@FAST
@given(relu_problems())
def test_linearized_relus_accept_the_forward_pass_with_its_phases(case):
    p = case.problem
    lin = p.linearize_relus()
    assert lin.n_relu == 0
    stats = lin.metadata["linearized_relus"]
    assert stats["active"] + stats["inactive"] + stats["unstable"] == p.n_relu
    unstable = ~(p.relu_lb >= 0) & ~(p.relu_ub <= 0)
    rng = np.random.default_rng(0)
    for _ in range(8):
        mask = rng.integers(0, 2, p.n_mask).astype(float)
        x = case.complete(mask)
        phase = (x[p.relu_in[unstable]] > 0).astype(float)
        full = np.concatenate([x, phase])
        assert lin.evaluate(full).linear_holds[: p.n_rows].tolist() == p.evaluate(x).linear_holds.tolist()
        assert lin.evaluate(full).linear_holds[p.n_rows :].all()
        # the wrong phase for an active-but-unstable ReLU is cut off
        flip = np.flatnonzero(np.abs(x[p.relu_in[unstable]]) > 1e-6)
        if flip.size:
            wrong = full.copy()
            wrong[p.n_vars + flip[0]] = 1 - wrong[p.n_vars + flip[0]]
            assert not lin.evaluate(wrong).linear_holds.all()


def test_big_m_comes_from_the_bounds():
    b = ProblemBuilder()
    b.add_mask(1)
    x = b.add_real([-3.0], [7.0])
    y = b.add_real([0.0], [7.0])
    b.add_relu(y, x, [-3.0], [7.0])
    lin = b.build().linearize_relus()
    coefs = set(np.round(lin.A.data, 12).tolist())
    assert 7.0 in coefs or -7.0 in coefs  # u z
    assert 3.0 in coefs or -3.0 in coefs  # l (1 - z)


# ------------------------------------------------------------------ exports
def _z3_optimum(text: str) -> float | None:
    z3 = pytest.importorskip("z3")
    opt = z3.Optimize()
    opt.from_string(text)
    objs = opt.objectives()
    r = opt.check()
    if r == z3.unsat:
        return None
    assert r == z3.sat
    v = opt.model().eval(objs[0], model_completion=True)
    return float(v.as_fraction()) if z3.is_rational_value(v) else float(v.as_decimal(20).rstrip("?"))


def _mps_optimum(text: str) -> float | None:
    mb = pytest.importorskip("ortools.linear_solver.python.model_builder")
    model = mb.Model()
    assert model.import_from_mps_string(text)
    solver = mb.Solver("scip")
    solver.set_solver_specific_parameters("limits/gap = 0\nnumerics/feastol = 1e-9")
    status = solver.solve(model)
    if status == mb.SolveStatus.INFEASIBLE:
        return None
    assert status == mb.SolveStatus.OPTIMAL, status
    return solver.objective_value


@settings(max_examples=25, deadline=None)
@given(covering_problems(max_vars=9, objective="area"))
def test_outside_solvers_reading_the_exports_reach_the_brute_force_optimum(p):
    opt, _ = brute_force(p)
    z = _z3_optimum(p.to_smtlib2())
    m = _mps_optimum(p.to_mps())
    if opt is None:
        assert z is None and m is None
    else:
        assert z == pytest.approx(opt) and m == pytest.approx(opt)


@settings(max_examples=15, deadline=None)
@given(relu_problems(max_vars=6))
def test_exports_with_relus_reach_the_brute_force_optimum(case):
    p = case.problem
    opt, _ = brute_force(p)
    z = _z3_optimum(p.to_smtlib2())
    # the MPS file is read by SCIP, which answers within its feasibility tolerance (1e-9): on a problem whose
    # boxes are only a few tolerances wide (the strategy widens each box by 1e-9) its answer is not evidence
    # either way, so only z3 (exact) judges those
    fine = bool(np.all((p.ub - p.lb > 1e-6) | (p.ub == p.lb)))
    m = _mps_optimum(p.to_mps()) if fine else opt
    if opt is None:
        assert z is None and m is None
    else:
        assert z == pytest.approx(opt) and m == pytest.approx(opt)


def test_smtlib2_bound_mode_for_plain_smt_solvers():
    z3 = pytest.importorskip("z3")
    b = ProblemBuilder()
    m = b.add_mask(3)
    b.add_rows([[1.0, 1.0, 1.0]], ">=", [1.5])
    b.set_objective(m, 1.0)
    p = b.build()
    for bound, expect in ((1.0, z3.unsat), (2.0, z3.sat)):
        s = z3.Solver()
        s.from_string(p.to_smtlib2(objective_bound=bound))
        assert s.check() == expect


def test_sense_codes():
    assert (LE, EQ, GE) == (-1, 0, 1)

"""Exports say exactly what the IR says: hostile names, strict margins, read back by outside solvers.

SMT-LIB2 is read by z3's and cvc5's own parsers, MPS by OR-Tools and by SCIP
(PySCIPOpt), LP by SCIP; each must reach the exact oracle's optimum, and the
MPS/LP files must hold every number, strict margins included, unchanged.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import smug
from smug.errors import ValidationError
from smug.ir.export import smt_symbol
from smug.testing import brute_force, covering_problems, hostile_problems

PROPS = settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))

HOSTILE_NAMES = ["a b", "a_b", "true", "not", "x|y", "back\\slash", "", "1st", "m0", "(paren)", "ü", "a_b~2", "|q|"]


def named_problem(names: list[str]) -> smug.Problem:
    """Rows with one optimum: ``x0 + x1 >= 1`` and ``x2 + x3 > 1`` (margin 0.5: both); keep 0, 2, 3 (cost 5)."""
    n = len(names)
    b = smug.ProblemBuilder()
    m = b.add_mask(n, names=names)
    b.add_rows([np.eye(n)[0] + np.eye(n)[1]], ">=", [1.0])
    b.add_rows([np.eye(n)[2] + np.eye(n)[3]], ">=", [1.0], strict=[True], margin=[0.5])
    b.set_objective(m, [1.0, 2.0, 1.0, 3.0] + [1.0] * (n - 4))
    return b.build()


def _z3_optimum(text: str) -> Fraction | None:
    z3 = pytest.importorskip("z3")
    opt = z3.Optimize()
    opt.from_string(text)
    res = opt.check()
    if res == z3.unsat:
        return None
    assert res == z3.sat
    obj = opt.objectives()[0]
    return Fraction(opt.model().eval(obj, model_completion=True).as_fraction())


def _cvc5_bound_sat(text: str) -> bool:
    cvc5 = pytest.importorskip("cvc5")
    tm = cvc5.TermManager()
    s = cvc5.Solver(tm)
    sm = cvc5.SymbolManager(tm)
    parser = cvc5.InputParser(s, sm)
    parser.setStringInput(cvc5.InputLanguage.SMT_LIB_2_6, text, "smug")
    out = ""
    while True:
        cmd = parser.nextCommand()
        if cmd.isNull():
            break
        out += cmd.invoke(s, sm)
    assert out.strip() in ("sat", "unsat"), out
    return out.strip() == "sat"


def _scip_optimum(text: str, suffix: str) -> float | None:
    pyscipopt = pytest.importorskip("pyscipopt")
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=suffix, delete=False) as fh:
        fh.write(text)
    m = pyscipopt.Model()
    m.hideOutput()
    m.readProblem(fh.name)
    m.optimize()
    if m.getStatus() == "infeasible":
        return None
    assert m.getStatus() == "optimal", m.getStatus()
    return float(m.getObjVal())


def _ortools_mps_optimum(text: str) -> float | None:
    mb = pytest.importorskip("ortools.linear_solver.python.model_builder")
    model = mb.Model()
    assert model.import_from_mps_string(text)
    solver = mb.Solver("scip")
    status = solver.solve(model)
    if status == mb.SolveStatus.INFEASIBLE:
        return None
    assert status == mb.SolveStatus.OPTIMAL, status
    return solver.objective_value


def test_symbols_are_legal_unique_and_keep_legal_names():
    used: set[str] = set()
    syms = [smt_symbol(n, used, j) for j, n in enumerate(HOSTILE_NAMES)]
    contents = [s[1:-1] if s.startswith("|") else s for s in syms]
    assert len(set(contents)) == len(contents)  # no two variables share a symbol (|a| and a are the same)
    assert syms[1] == "a_b" and syms[8] == "m0"  # legal names are kept
    assert syms[0] == "|a b|"  # quoted, not mangled into a_b
    for s in syms[2:4]:  # true, not: theory symbols never declared
        assert s not in ("true", "not", "|true|", "|not|")
    for s in syms:
        assert "\\" not in s and (not s.startswith("|") or "|" not in s[1:-1])


def test_smtlib2_with_hostile_names_is_read_by_z3_and_cvc5():
    p = named_problem(HOSTILE_NAMES)
    opt, _ = brute_force(p)
    text = p.to_smtlib2()
    assert "|a b|" in text and "(declare-const a_b Bool)" in text
    assert _z3_optimum(text) == opt == 5
    for bound, sat in ((opt, True), (opt - Fraction(1, 10**9), False)):
        assert _cvc5_bound_sat(p.to_smtlib2(objective_bound=bound)) is sat
        assert _cvc5_bound_sat(p.to_smtlib2(objective_bound=opt, strict_bound=True)) is False


def test_duplicate_names_are_refused_with_the_clash_named():
    with pytest.raises(ValidationError, match="'a b'"):
        named_problem(["a b", "x", "y", "a b"])
    b = smug.ProblemBuilder()
    b.add_mask(2)
    p = b.build()
    with pytest.raises(ValidationError, match="row names must be unique"):
        p.with_rows(np.ones((2, 2)), ">=", [0.0, 0.0], names=["r", "r"])


@PROPS
@given(problem=hostile_problems())
def test_outside_readers_read_hostile_problems(problem):
    """z3 reads the exact rationals and reaches the exact optimum; SCIP reads the MPS and LP files whole."""
    opt, _ = brute_force(problem)
    assert _z3_optimum(problem.to_smtlib2()) == opt
    lp = problem.linearize_relus()
    extra = len(set(lp.margin[lp.strict].tolist())) + (problem.objective_constant != 0)
    for text, suffix in ((problem.to_mps(), ".mps"), (problem.to_lp(), ".lp")):
        model = _read_back(text, suffix)
        assert model.getNVars() == lp.n_vars + extra and model.getNConss() == lp.n_rows


def _read_back(text: str, suffix: str):
    pyscipopt = pytest.importorskip("pyscipopt")
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=suffix, delete=False) as fh:
        fh.write(text)
    m = pyscipopt.Model()
    m.hideOutput()
    m.readProblem(fh.name)
    return m


def _margin_problem() -> smug.Problem:
    b = smug.ProblemBuilder()
    m = b.add_mask(2)
    b.add_rows([[1e6, 1.0]], ">=", [1e6], strict=[True], margin=[1e-12])
    b.add_rows([[1.0, 1.0]], "<=", [2.0], strict=[True], margin=[5e-324])
    b.set_objective(m, 1.0, constant=0.1)
    return b.build()


def test_mps_keeps_strict_margins_exactly():
    """OR-Tools' MPS reader keeps every double: the file says A x - t >= rhs with t fixed at the exact margin."""
    mb = pytest.importorskip("ortools.linear_solver.python.model_builder")
    model = mb.Model()
    assert model.import_from_mps_string(_margin_problem().to_mps())
    proto = model.export_to_proto()
    cols = {v.name: v for v in proto.variable}
    assert (cols["smug_margin_0"].lower_bound, cols["smug_margin_0"].upper_bound) == (1e-12, 1e-12)
    assert (cols["smug_margin_1"].lower_bound, cols["smug_margin_1"].upper_bound) == (5e-324, 5e-324)
    assert (
        cols["smug_objective_constant"].lower_bound == 1.0
        and cols["smug_objective_constant"].objective_coefficient == 0.1
    )
    names = [v.name for v in proto.variable]
    rows = [
        (c.lower_bound, c.upper_bound, {names[j]: a for j, a in zip(c.var_index, c.coefficient)})
        for c in proto.constraint
    ]
    assert rows[0] == (1e6, np.inf, {"x0": 1e6, "x1": 1.0, "smug_margin_0": -1.0})
    assert rows[1] == (-np.inf, 2.0, {"x0": 1.0, "x1": 1.0, "smug_margin_1": 1.0})


def test_lp_keeps_strict_margins_exactly():
    text = _margin_problem().to_lp()
    assert " c0: +1000000.0 x0 +1.0 x1 -1.0 smug_margin_0 >= 1000000.0" in text
    assert " c1: +1.0 x0 +1.0 x1 +1.0 smug_margin_1 <= 2.0" in text
    assert " smug_margin_0 = 1e-12" in text and " smug_margin_1 = 5e-324" in text
    assert "+0.1 smug_objective_constant" in text
    model = _read_back(text, ".lp")  # SCIP reads it (and rounds bounds below its epsilon, as it documents)
    assert model.getNVars() == 5 and model.getNConss() == 2


@PROPS
@given(problem=covering_problems(max_vars=8, objective="area"))
def test_scip_reads_the_lp_export_to_the_same_optimum(problem):
    opt, _ = brute_force(problem)
    got = _scip_optimum(problem.to_lp(), ".lp")
    assert (got is None) == (opt is None)
    if opt is not None:
        assert got == pytest.approx(float(opt))

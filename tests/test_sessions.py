"""Incremental sessions (``smug.open_session``): every answer in a session equals the exact oracle's answer
for the problem as it stands, on every installed backend, native or rebuilt; the hard time limit holds.

A session sees a sequence of changes (binaries fixed and freed, real bounds
tightened, hostile rows and no-goods added and removed, drawn by
:func:`smug.testing.session_changes`); after each, its answer must match the
brute-force oracle on :meth:`SolverSession.current` exactly, and a fresh
``smug.solve`` of that problem must agree.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import smug
from smug.errors import ValidationError
from smug.solving.contract import Backend, Capabilities, Incumbent, Session, Solution, Status
from smug.solving.registry import backend_table, get_backend
from smug.testing import assert_matches_brute_force, hostile_problems, session_changes
from smug.testing.processes import process_gone

INSTALLED = [r.name for r in backend_table() if r.installed]
REALS = [n for n in INSTALLED if get_backend(n).capabilities.real_vars]
NATIVE = [n for n in INSTALLED if get_backend(n).capabilities.sessions]
PROPS = settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


def test_the_expected_backends_keep_models_open():
    assert {"z3", "pysmt:z3", "pysmt:cvc5", "pysmt:yices", "ortools:scip", "ortools:highs", "ortools:cbc"} <= set(
        NATIVE
    )


def _run(problem, backend, data, isolate):
    changes = data.draw(session_changes(problem))
    added: list[list[int]] = []
    with smug.open_session(problem, backend, isolate=isolate) as s:
        sol = s.solve(time_limit=30)
        assert_matches_brute_force(problem, sol)
        for step, ch in enumerate(changes):
            ch.apply(s, added)
            cur = s.current()
            sol = s.solve(time_limit=30)
            try:
                assert_matches_brute_force(cur, sol)
            except AssertionError as exc:
                raise AssertionError(f"{backend} after change {step} ({ch}): {exc}") from None
            if backend in NATIVE:
                assert sol.stats.get("session") == "native", sol.stats
        assert s.restarts == 0


@pytest.mark.parametrize("backend", INSTALLED)
@PROPS
@given(problem=hostile_problems(relu=False, max_vars=7), data=st.data())
def test_a_session_answers_like_the_oracle_after_every_change(backend, problem, data):
    # a backend without a time limit of its own (RC2) can only be stopped by the session's child
    native = get_backend(backend).capabilities.native_time_limit
    _run(problem, backend, data, isolate=data.draw(st.booleans()) if native else True)


@pytest.mark.parametrize("backend", REALS)
@settings(PROPS, max_examples=5)
@given(problem=hostile_problems(relu=True, max_vars=4), data=st.data())
def test_sessions_on_relu_problems(backend, problem, data):
    _run(problem, backend, data, isolate=False)


@pytest.mark.parametrize("backend", ["z3", "ortools:scip", "pysmt:cvc5"])
def test_a_session_agrees_with_fresh_solves(backend):
    """Enumeration by hand: each optimum is excluded by a no-good; the session and a fresh solve agree each step."""
    p = smug.Problem.from_json(str(Path(__file__).parent / "data" / "smug_digits_problem.json"))
    seen = []
    with smug.open_session(p, backend) as s:
        for _ in range(4):
            sol = s.solve(time_limit=30)
            fresh = smug.solve(s.current(), backend, time_limit=30)
            assert sol.status == fresh.status == Status.OPTIMAL
            assert sol.exact_objective == fresh.exact_objective
            m = sol.mask.astype(int)
            assert m.tolist() not in seen
            seen.append(m.tolist())
            row = np.zeros(p.n_vars)
            row[: p.n_mask] = np.where(m == 1, -1.0, 1.0)
            s.add_rows([row], ">=", [1.0 - m.sum()])
    assert len(seen) == 4


def test_feasibility_queries_and_objective_queries_alternate():
    b = smug.ProblemBuilder()
    m = b.add_mask(4)
    b.add_rows([[1.0, 1.0, 1.0, 1.0]], ">=", [2.0])
    b.set_objective(m, [1.0, 2.0, 3.0, 4.0])
    p = b.build()
    for backend in NATIVE + ["ortools:cpsat"]:
        with smug.open_session(p, backend, isolate=False) as s:
            any_ = s.solve(objective=False)
            assert any_.status == Status.OPTIMAL and any_.mask.sum() >= 2, backend
            best = s.solve()
            assert best.exact_objective == 3, backend
            s.fix([0], [0])
            assert s.solve().exact_objective == 5, backend


def test_bad_changes_are_refused_with_the_reason():
    b = smug.ProblemBuilder()
    m = b.add_mask(3)
    x = b.add_real([0.0], [1.0])
    b.add_rows([[1.0, 1.0, 1.0]], ">=", [1.0], cols=m)
    b.add_rows([[1.0]], ">=", [0.0], cols=x)
    b.set_objective(m, 1.0)
    p = b.build()
    with smug.open_session(p, "z3", isolate=False) as s:
        with pytest.raises(ValidationError, match="inside its bounds"):
            s.set_bounds([3], [-1.0], [1.0])
        with pytest.raises(ValidationError, match=r"takes bounds in \{0, 1\}"):
            s.set_bounds([0], [0.5], [0.5])
        with pytest.raises(ValidationError, match="variable indices"):
            s.fix([7], [0])
        with pytest.raises(ValidationError, match="columns"):
            s.add_rows([[1.0, 1.0]], ">=", [1.0])
        with pytest.raises(ValidationError, match="no rows under handle"):
            s.remove_rows([42])
        with pytest.raises(ValidationError, match="margin"):
            s.add_rows([[1.0, 0, 0, 0]], ">=", [1.0], strict=[True])
        assert s.solve().exact_objective == 1  # the refused changes left nothing behind


# ----------------------------------------------------------------------------- the hard time limit
class _StuckSession(Session):
    """Reports a solution, then ignores its time limit (the first time in each process that has no marker)."""

    def __init__(self, problem, marker):
        self.problem, self.marker = problem, marker

    def solve(self, params, report, *, objective=True):
        x = np.ones(self.problem.n_vars)
        report(Incumbent(x, self.problem.objective_value(x)))
        if not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            time.sleep(120)
        return Solution(Status.OPTIMAL, x, self.problem.objective_value(x), exact_objective=None)

    def set_bounds(self, idx, lb, ub):
        pass


class _StuckBackend(Backend):
    family = "test"
    capabilities = Capabilities(optimize=True, relu=True, real_vars=True, exact=False, tolerance=1e-9, sessions=True)
    OPTIONS = ("marker",)

    def solve(self, problem, params, report, hint=None):
        raise NotImplementedError

    def session(self, problem, params):
        return _StuckSession(problem, self.options["marker"])

    def version(self):
        return "test"


def test_a_stuck_session_is_stopped_at_its_limit_with_its_best_and_restarts(tmp_path):
    b = smug.ProblemBuilder()
    m = b.add_mask(3)
    b.add_rows([[1.0, 1.0, 1.0]], ">=", [1.0])
    b.set_objective(m, 1.0)
    p = b.build()
    marker = tmp_path / "stuck"
    s = smug.open_session(p, _StuckBackend("stuck", marker=str(marker)), certify=False)
    try:
        pid = s._proc.pid
        t0 = time.perf_counter()
        sol = s.solve(time_limit=0.5)
        wall = time.perf_counter() - t0
        assert wall < 0.5 + smug.solving.run.grace_seconds(0.5) + 2.0, wall
        assert sol.status == Status.FEASIBLE and sol.verified and sol.exact_objective == 3
        assert sol.stats["killed"] is True and int(marker.read_text()) == pid
        assert process_gone(pid)  # the stuck child is gone, not left running
        s.fix([0], [1])  # recorded, and replayed into the next child
        again = s.solve(time_limit=5)
        assert again.status == Status.FEASIBLE and again.stats["session_restarts"] == 1  # a claim, not certified
        assert s._proc.pid != pid
    finally:
        s.close()
    assert not s.alive


@pytest.mark.parametrize("certify", [True, False])
@pytest.mark.parametrize("backend", INSTALLED)
def test_removed_rows_and_freed_bounds_are_gone(backend, certify):
    """``certify=False`` tests the backend's own session (certification would repair a stale row's answer)."""
    b = smug.ProblemBuilder()
    m = b.add_mask(3)
    b.add_rows([[1.0, 1.0, 1.0]], ">=", [1.0])
    b.set_objective(m, [1.0, 2.0, 4.0])
    p = b.build()
    with smug.open_session(p, backend, isolate=False, certify=certify) as s:
        h = s.add_rows([[1.0, 1.0, 0.0]], "<=", [0.0])  # only x2 may be kept
        s.fix([2], [0])
        caps = get_backend(backend).capabilities
        claim_only = not certify and not caps.exact  # an uncertified claim is no proof
        st = s.solve().status
        if claim_only and not caps.sessions:  # rebuilt: the pipeline's exact presolve may decide it
            assert st in (Status.UNKNOWN, Status.INFEASIBLE)
        else:
            assert st == (Status.UNKNOWN if claim_only else Status.INFEASIBLE)
        s.set_bounds([2], [0], [1])
        assert s.solve().exact_objective == 4
        s.remove_rows(h)
        assert s.solve().exact_objective == 1
        margin = 2.0**-1074 if certify else 0.5  # a subnormal margin is below a MILP's tolerance
        s.add_rows([[1.0, 0.0, 0.0]], "<=", [1.0], strict=[True], margin=[margin])  # x0 < 1: x0 off
        sol = s.solve()
        assert sol.exact_objective == 2 and sol.verified


def test_certification_gets_what_the_answer_left_of_the_limit_not_a_fresh_limit(monkeypatch):
    """One deadline covers the backend's answer and its certification: an answer that used the whole
    limit is not certified on a limit of its own, and the certifier is not even opened."""
    from smug.solving import session as S

    p = smug.Problem.from_json(str(Path(__file__).parent / "data" / "smug_digits_problem.json"))
    orig = S.SessionWorker.answer

    def slow(self, params, report, with_objective):
        time.sleep(params.time_limit + 0.2)  # the backend's answer takes the whole limit
        return orig(self, params, report, with_objective)

    with smug.open_session(p, "ortools:highs", isolate=False) as s:
        fresh = s.solve(time_limit=30)
        assert fresh.status == Status.OPTIMAL and s._worker.cert is not None  # certified by the exact certifier
    monkeypatch.setattr(S.SessionWorker, "answer", slow)
    with smug.open_session(p, "ortools:highs", isolate=False) as s:
        sol = s.solve(time_limit=1.0)
        assert sol.status != Status.OPTIMAL and "time limit was reached before" in sol.message
        assert s._worker.cert is None  # no exact session opened after the deadline

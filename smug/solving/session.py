"""``smug.open_session``: related queries on one open solver model, with exact verdicts and a hard time limit.

A session answers many queries about one problem that changes a little between
them -- variable bounds changed, rows added and removed -- without building
the solver's model again: enumeration of alternative masks adds one no-good
per step; a deletion loop fixes one more group per check.

* A backend with ``capabilities.sessions`` keeps its model open and takes the
  changes natively (z3 and PySMT: guarded assertions under activation
  literals; OR-Tools' MILP solvers: the loaded model modified in place).  The
  answer goes back through the backend's chain (big-M), is checked exactly, and
  a tolerance-based claim is certified by an exact backend kept open the same
  way, with the same changes.
* Any other backend is *rebuilt* per query: the current problem goes through
  the whole :func:`smug.solve` pipeline (reductions, solver, certification),
  still inside the session's long-lived process, so no process start, import
  or fork is paid per query.

Native sessions run the shared presolve (exact: it never changes the
optimum) on each query's problem and pass its fixings to the open model as
bound changes for that query only, so the solver sees what a fresh solve
would; the cuts and the greedy start are skipped (rebuilt sessions run the
whole chain per query).  With ``isolate=True`` (the default when a query has a time limit) the
session lives in one child process; a query that overruns its limit plus the
grace is stopped, its best solution returned, the child killed, and the next
query starts a fresh child with every change replayed.  The child dies with
its parent.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import SmugError, ValidationError
from ..ir import Problem
from ..ir.exact import objective, trivial_lower_bound
from ..ir.problem import as_1d, sense_codes
from ..reductions.incumbent import cardinality_lower_bound, greedy_incumbent
from ..reductions.integer_scaling import IntegerScaling
from ..reductions.presolve import presolve
from .certify import ExactAnswer, Rows, certify, make_exact
from .contract import Backend, Incumbent, Reporter, SatBackend, Solution, SolveParams, Status
from .deadline import Deadline
from .pipeline import (
    Plan,
    answer_with_presolve,
    decided,
    die_with_parent,
    finish,
    make_plan,
    mp_context,
    noop,
    pipeline,
    stop_child,
)
from .registry import get_backend, require_installed
from .search import minimize

__all__ = ["open_session", "SolverSession", "ProblemState", "SessionWorker"]


@dataclass
class ProblemState:
    """A base problem with bound changes and added rows: what a session's current problem is."""

    base: Problem
    lb: np.ndarray = field(init=False)
    ub: np.ndarray = field(init=False)
    rows: dict[int, tuple[sp.csr_matrix, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lb = self.base.lb.copy()
        self.ub = self.base.ub.copy()

    def set_bounds(self, idx: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> None:
        """Change bounds, within the base problem's bounds (checked here, before any solver sees them)."""
        b = self.base
        bad = (lb < b.lb[idx]) | (ub > b.ub[idx]) | (lb > ub)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            j = int(idx[k])
            raise ValidationError(
                f"bounds [{lb[k]!r}, {ub[k]!r}] for variable {b.name_of(j)} must lie inside its bounds "
                f"[{b.lb[j]!r}, {b.ub[j]!r}] in the session's problem, lower below upper"
            )
        binv = b.is_binary[idx] & ~(np.isin(lb, (0.0, 1.0)) & np.isin(ub, (0.0, 1.0)))
        if binv.any():
            raise ValidationError(
                f"binary variable {b.name_of(int(idx[np.flatnonzero(binv)[0]]))} takes bounds in {{0, 1}}"
            )
        self.lb[idx] = lb
        self.ub[idx] = ub

    def current(self, with_objective: bool = True) -> Problem:
        """The problem as it stands (``with_objective=False``: the zero objective, for feasibility queries)."""
        p = self.base.with_bounds(self.lb, self.ub)
        if self.rows:
            parts = list(self.rows.values())
            p = p.with_rows(
                sp.vstack([r[0] for r in parts], format="csr"),
                np.concatenate([r[1] for r in parts]),
                np.concatenate([r[2] for r in parts]),
                strict=np.concatenate([r[3] for r in parts]),
                margin=np.concatenate([r[4] for r in parts]),
            )
        if not with_objective:
            p = p.replace(objective=np.zeros(p.n_vars), objective_constant=0.0)
        return p


def _rows_args(
    n: int, A: Any, sense: Any, rhs: Any, strict: Any, margin: Any
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows as validated arrays (the IR's own checks run on a throw-away problem)."""
    M = sp.csr_matrix(A if sp.issparse(A) else np.atleast_2d(np.asarray(A, dtype=np.float64)), dtype=np.float64)
    if M.shape[1] != n:
        raise ValidationError(f"rows have {M.shape[1]} columns; the session's problem has {n} variables")
    k = M.shape[0]
    s = sense_codes(sense, k)
    r = as_1d("rhs", rhs, k)
    st = as_1d("strict", strict, k, dtype=bool)
    mg = as_1d("margin", margin, k)
    Problem(
        n_mask=0,
        lb=np.zeros(n),
        ub=np.ones(n),
        is_binary=np.zeros(n, dtype=bool),
        A=M,
        sense=s,
        rhs=r,
        strict=st,
        margin=mg,
        relu_in=[],
        relu_out=[],
        relu_lb=[],
        relu_ub=[],
        objective=np.zeros(n),
    )  # raises a named error for NaNs, margins, senses
    return M, s, r, st, mg


class SessionWorker:
    """The process-side half of a session: the backend's open model (or a rebuild per query), the exact checks and
    the certification.  :class:`SolverSession` drives it, in a child process or in the caller's."""

    def __init__(self, problem: Problem, be: Backend, params: SolveParams, plan: Plan) -> None:
        self.state = ProblemState(problem)
        self.be, self.params, self.plan = be, params, plan
        self.native: Any = None
        self.chain: Any = None
        self.cert: SessionWorker | None = None
        self.n2 = problem.n_vars
        self.presolve_seconds = 0.0
        # the last exact optimum, a lower bound on the next while changes only narrow the problem (rows added,
        # bounds tightened); removing a row or widening a bound forgets it
        self.floor: Any = None
        caps = be.capabilities
        self.sat = isinstance(be, SatBackend)  # its session answers checks; the shared search optimises
        if caps.sessions:
            self.chain = plan.backend_chain(problem, be, "solve")
            p2 = self.chain.apply(problem)
            if self.chain.guarantee.exact and not (self.sat and self.chain.steps):
                self.n2 = p2.n_vars
                self.native = be.open_session(p2, params) if self.sat else be.session(p2, params)  # type: ignore[attr-defined]

    # -- changes (mirrored into the certifier's session)
    def _pad(self, A: sp.csr_matrix) -> sp.csr_matrix:
        if self.n2 == A.shape[1]:
            return A
        return sp.hstack([A, sp.csr_matrix((A.shape[0], self.n2 - A.shape[1]))], format="csr")

    def set_bounds(self, idx: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> None:
        """Change variable bounds (see :class:`ProblemState`)."""
        idx = np.asarray(idx)
        if np.any(np.asarray(lb) < self.state.lb[idx]) or np.any(np.asarray(ub) > self.state.ub[idx]):
            self.floor = None
        self.state.set_bounds(idx, lb, ub)
        if self.native is not None:
            self.native.set_bounds(idx, lb, ub)
        if self.cert is not None:
            self.cert.set_bounds(idx, lb, ub)

    def add_rows(self, handles: list[int], rows: tuple) -> None:
        """Add validated rows (one per handle)."""
        M, s, r, st, mg = rows
        for k, h in enumerate(handles):
            self.state.rows[h] = (M[[k]], s[[k]], r[[k]], st[[k]], mg[[k]])
        if self.native is not None:
            self.native.add_rows(handles, self._pad(M), s, r, st, mg)
        if self.cert is not None:
            self.cert.add_rows(handles, rows)

    def remove_rows(self, handles: list[int]) -> None:
        """Remove rows by handle."""
        self.floor = None
        for h in handles:
            self.state.rows.pop(h, None)
        if self.native is not None:
            self.native.remove_rows(handles)
        if self.cert is not None:
            self.cert.remove_rows(handles)

    # -- queries
    def answer(
        self, params: SolveParams, report: Reporter, with_objective: bool, purpose: str = "solve"
    ) -> ExactAnswer:
        """The backend's uncertified answer on the current problem, with what it proves."""
        p = self.state.current(with_objective)
        deadline = Deadline(params.time_limit)
        if self.native is None:
            sub = Plan(presolve=True, cuts=False, greedy=False, certify=False, coef_bits=self.plan.coef_bits)
            return (
                answer_with_presolve(p, self.be, params, sub, deadline)
                if purpose == "bound"
                else ExactAnswer(pipeline(p, self.be, params, self.plan, report), True, True)
            )
        caps = self.be.capabilities
        fix = np.zeros(0, dtype=np.int64)
        fixed_p = p
        if self.plan.presolve:
            # the shared presolve on this query's problem (exact; it never changes the optimum): its fixings go to
            # the open model as bound changes for this query only, so the solver sees what a fresh solve would
            t0 = time.perf_counter()
            pre = presolve(p)
            fix = np.flatnonzero((pre.fixed >= 0) & (p.lb < p.ub)) if not pre.infeasible else fix
            self.presolve_seconds += time.perf_counter() - t0
            if fix.size:
                v = pre.fixed[fix].astype(np.float64)
                at = pre.fixed >= 0
                fixed_p = p.replace(lb=np.where(at, pre.fixed, p.lb), ub=np.where(at, pre.fixed, p.ub))
                if fix.size == int(np.count_nonzero(p.lb < p.ub)):  # every variable decided: no solver call
                    sol = decided(fixed_p, "presolve")
                    sol.stats.update(session="native", presolve_fixed=int(fix.size))
                    return ExactAnswer(sol, True, True)
                self.native.set_bounds(fix, v, v)
        try:
            return self._answer_native(p, fixed_p, params, report, with_objective, deadline, caps, fix)
        finally:
            if fix.size:
                self.native.set_bounds(fix, p.lb[fix], p.ub[fix])

    def _answer_native(
        self,
        p: Problem,
        fixed_p: Problem,
        params: SolveParams,
        report: Reporter,
        with_objective: bool,
        deadline: Deadline,
        caps: Any,
        fix: np.ndarray,
    ) -> ExactAnswer:
        """The open model's answer on ``p`` (``fixed_p``: ``p`` with this query's presolve fixings)."""

        def lift(inc: Incumbent) -> None:
            x1, r1 = self.chain.invert_point(np.asarray(inc.assignment, dtype=np.float64), inc.rational)
            ok = make_exact(p, x1, r1)
            if ok is not None:
                q = objective(p, ok[0], ok[1])
                report(Incumbent(ok[0], float(q), None, q, ok[1]))

        t0 = time.perf_counter()
        if not self.sat:
            s2 = self.native.solve(params, lift, objective=with_objective)
        elif with_objective:  # a SatBackend session sees the problem itself (its chain is empty)
            # what a fresh solve starts from: the box and cardinality bound, the greedy start (on the presolved
            # query), and the last optimum while the changes only narrowed the problem
            lower = cardinality_lower_bound(fixed_p, [])
            lower = lower if self.floor is None else max(lower, self.floor)
            start = None
            if fixed_p.is_pure_binary:
                g = greedy_incumbent(fixed_p)
                if g is not None:
                    q = objective(p, g)
                    start = Incumbent(g, float(q), None, q, None)
                    report(start)
            s2 = minimize(self.be, p, params, lift, session=self.native, start=start, lower=lower)  # type: ignore[arg-type]
            if s2.status == Status.OPTIMAL and s2.exact_objective is not None:
                self.floor = s2.exact_objective
        else:
            res = self.native.check(None, deadline.remaining())
            s2 = Solution(
                Status.OPTIMAL
                if res == "sat"
                else Status.INFEASIBLE
                if res == "unsat"
                else Status.stopped(False, True),
                assignment=self.native.model() if res == "sat" else None,
                rational=self.native.exact_model() if res == "sat" else None,
            )
        stats = dict(s2.stats, backend_seconds=time.perf_counter() - t0, session="native", presolve_fixed=int(fix.size))
        x1 = r1 = None
        status = s2.status
        if s2.assignment is not None:
            x1, r1 = self.chain.invert_point(np.asarray(s2.assignment, dtype=np.float64), s2.rational)
            ok = make_exact(p, x1, r1)
            if ok is None and caps.exact and status == Status.OPTIMAL:
                pass  # an exact backend's optimum that fails the check: the caller's exact check reports the error
            elif ok is None:
                x1 = r1 = None
                status = Status.stopped(False, status in (Status.FEASIBLE, Status.TIMEOUT))
            else:
                x1, r1 = ok
        q1 = None if x1 is None else objective(p, x1, r1)
        bound = s2.exact_bound if caps.exact else None
        if bound is None and caps.exact and status == Status.OPTIMAL and q1 is not None:
            bound = q1
        sol = Solution(
            status,
            x1,
            None if q1 is None else float(q1),
            exact_objective=q1,
            exact_bound=bound,
            float_bound=s2.float_bound if s2.float_bound is not None else (None if caps.exact else s2.bound),
            rational=r1,
            build_time=s2.build_time,
            solve_time=s2.solve_time,
            message=s2.message,
            stats=stats,
        )
        return ExactAnswer(sol, caps.exact, caps.exact)

    def solve(self, params: SolveParams, report: Reporter, with_objective: bool) -> Solution:
        """Answer a query with exact verdicts: the backend's answer, certified where it is a claim.

        One deadline covers both: the certification gets what the backend's answer left of
        ``params.time_limit``, not a fresh limit of its own.
        """
        deadline = Deadline(params.time_limit)
        ans = self.answer(params, report, with_objective)
        if ans.exact:
            return ans.solution
        s = ans.solution
        p = self.state.current(with_objective)
        asker = self._asker(p, params) if self.plan.certify is not False else None
        sol = certify(
            p,
            s.assignment,
            s.rational,
            s.status,
            bound=None,
            float_bound=s.float_bound,
            start=None,
            lower=trivial_lower_bound(p),
            deadline=deadline,
            ask=asker,
            report=report,
        )
        sol.stats = dict(s.stats, **sol.stats, certifier=None if self.cert is None else self.cert.be.name)
        sol.message = "; ".join(m for m in (s.message, sol.message) if m)
        return sol

    def _asker(self, p: Problem, params: SolveParams) -> Any:
        """Certification questions on the exact certifier's own session, opened once (on the first
        question: certify asks none once the deadline has passed) and kept in step."""
        cb = self.plan.certifier(p) if self.cert is None else None
        if self.cert is None and cb is None:
            return None

        def open_cert() -> SessionWorker:
            if self.cert is None:
                cert_plan = Plan(
                    presolve=self.plan.presolve, cuts=False, greedy=False, certify=False, coef_bits=self.plan.coef_bits
                )
                cert = SessionWorker(self.state.base, cb, params, cert_plan)
                changed = np.flatnonzero((self.state.lb != self.state.base.lb) | (self.state.ub != self.state.base.ub))
                if changed.size:
                    cert.set_bounds(changed, self.state.lb[changed], self.state.ub[changed])
                for h, row in self.state.rows.items():
                    cert.add_rows([h], row)
                self.cert = cert
            return self.cert

        def ask(extra: Rows | None, dl: Deadline) -> ExactAnswer:
            cert = open_cert()
            tmp: list[int] = []
            if extra is not None:
                tmp = [-(k + 1) for k in range(extra.A.shape[0])]  # negative handles: never the caller's
                k = extra.A.shape[0]
                cert.add_rows(tmp, (extra.A, extra.sense, extra.rhs, np.zeros(k, dtype=bool), np.zeros(k)))
            try:
                return cert.answer(params.with_time_limit(dl.remaining()), noop, p.objective.any(), "bound")
            finally:
                if tmp:
                    cert.remove_rows(tmp)

        return ask

    def close(self) -> None:
        """Release the solver(s)."""
        for s in (self.native, getattr(self.cert, "native", None)):
            if s is not None:
                s.close()


# ---------------------------------------------------------------------------- the caller's side
def _child(conn: Any, problem: Problem, be: Backend, params: SolveParams, plan: Plan, parent: int) -> None:
    die_with_parent()
    if os.getppid() != parent:
        os._exit(1)
    try:
        worker = SessionWorker(problem, be, params, plan)
    except BaseException as exc:  # noqa: BLE001 - the opening failed: say so, then stop
        conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        return
    conn.send(("ready",))
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        op = msg[0]
        try:
            if op == "close":
                worker.close()
                conn.send(("ok",))
                return
            if op == "solve":
                sol = worker.solve(msg[1], lambda inc: conn.send(("incumbent", inc)), msg[2])
                conn.send(("done", sol))
            else:
                getattr(worker, op)(*msg[1:])
                conn.send(("ok",))
        except SmugError as exc:
            conn.send(("raise", exc))
        except BaseException as exc:  # noqa: BLE001 - everything must reach the caller
            conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))


class SolverSession:
    """Related queries on one open model of ``problem`` (see the module docstring); use :func:`open_session`.

    Every answer is checked exactly against the current problem in the calling
    process, as :func:`smug.solve` does.  Use it as a context manager, or call
    :meth:`close`.
    """

    def __init__(self, problem: Problem, be: Backend, params: SolveParams, plan: Plan, isolate: bool) -> None:
        self.problem = problem
        self.be, self.params, self.plan, self.isolate = be, params, plan, isolate
        self.state = ProblemState(problem)
        self._next = 0
        self._worker: SessionWorker | None = None
        self._proc: Any = None
        self._conn: Any = None
        self.restarts = 0
        self.queries = 0
        self._started = False
        self._start()

    # -- the worker, here or in a child
    def _start(self) -> None:
        if self._started:
            self.restarts += 1  # after a child stopped at its limit: a fresh one, with every change replayed
        self._started = True
        if not self.isolate:
            self._worker = SessionWorker(self.problem, self.be, self.params, self.plan)
        else:
            ctx = mp_context()
            self._conn, child = ctx.Pipe()
            self._proc = ctx.Process(
                target=_child, args=(child, self.problem, self.be, self.params, self.plan, os.getpid()), daemon=True
            )
            self._proc.start()
            child.close()
            msg = self._conn.recv()
            if msg[0] != "ready":
                self._kill()
                raise RuntimeError(f"the session's solver process failed to start: {msg[1]}")
        changed = np.flatnonzero((self.state.lb != self.problem.lb) | (self.state.ub != self.problem.ub))
        if changed.size:
            self._call("set_bounds", changed, self.state.lb[changed], self.state.ub[changed])
        for h, row in self.state.rows.items():
            self._call("add_rows", [h], row)

    def _kill(self) -> None:
        if self._proc is not None:
            stop_child(self._proc)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def _call(self, op: str, *args: Any) -> None:
        if self._worker is not None:
            getattr(self._worker, op)(*args)
            return
        if self._proc is None:
            self._start()
        self._conn.send((op, *args))
        msg = self._conn.recv()
        if msg[0] == "raise":
            raise msg[1]
        if msg[0] == "error":
            raise RuntimeError(f"the session's solver process failed: {msg[1]}\n{msg[2]}")

    # -- changes
    def set_bounds(self, idx: Any, lb: Any, ub: Any) -> None:
        """Give variables ``idx`` the bounds ``[lb, ub]``, within the session problem's own bounds."""
        idx = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        if ((idx < 0) | (idx >= self.problem.n_vars)).any():
            raise ValidationError(f"variable indices must be in 0..{self.problem.n_vars - 1}, got {idx.tolist()}")
        lb = np.broadcast_to(np.asarray(lb, dtype=np.float64), idx.shape).copy()
        ub = np.broadcast_to(np.asarray(ub, dtype=np.float64), idx.shape).copy()
        self.state.set_bounds(idx, lb, ub)  # checked here first
        self._call("set_bounds", idx, lb, ub)

    def fix(self, idx: Any, values: Any) -> None:
        """Fix variables ``idx`` at ``values`` (``lb = ub = value``)."""
        self.set_bounds(idx, values, values)

    def add_rows(self, A: Any, sense: Any, rhs: Any, *, strict: Any = False, margin: Any = 0.0) -> list[int]:
        """Add rows ``A x (sense) rhs`` (IR rows); returns one handle per row, for :meth:`remove_rows`."""
        rows = _rows_args(self.problem.n_vars, A, sense, rhs, strict, margin)
        handles = list(range(self._next, self._next + rows[0].shape[0]))
        self._next += len(handles)
        for k, h in enumerate(handles):
            self.state.rows[h] = tuple(a[[k]] for a in rows)  # type: ignore[assignment]
        self._call("add_rows", handles, rows)
        return handles

    def remove_rows(self, handles: list[int]) -> None:
        """Remove rows added before, by their handles."""
        unknown = [h for h in handles if h not in self.state.rows]
        if unknown:
            raise ValidationError(f"no rows under handle(s) {unknown} in this session")
        for h in handles:
            del self.state.rows[h]
        self._call("remove_rows", list(handles))

    def current(self) -> Problem:
        """The problem as it stands now (the base problem with every change)."""
        return self.state.current()

    # -- queries
    def solve(self, time_limit: float | None = None, *, objective: bool = True) -> Solution:
        """Minimise the current problem's objective (``objective=False``: any feasible point).

        Returns a :class:`Solution` checked exactly against the current problem;
        for a feasibility query ``optimal`` means a solution was found (every
        point is optimal for the zero objective).  A query past ``time_limit``
        plus the grace is stopped and its best solution returned.
        """
        if time_limit is not None and not self.isolate and not self.be.capabilities.native_time_limit:
            raise ValidationError(
                f"backend {self.be.name!r} has no time limit of its own: in a session opened with isolate=False "
                f"nothing could stop it at time_limit={time_limit:g}; open the session with isolate=True"
            )
        params = replace(self.params, time_limit=time_limit)
        p = self.state.current(objective)
        self.queries += 1
        t0 = time.perf_counter()
        if self._worker is not None:
            sol = self._worker.solve(params, noop, objective)
        else:
            sol = self._solve_in_child(params, objective)
        sol.solve_time = time.perf_counter() - t0 - sol.build_time
        finish(sol, self.be, p, params)
        sol.stats["session_queries"] = self.queries
        sol.stats["session_restarts"] = self.restarts
        return sol

    def _solve_in_child(self, params: SolveParams, with_objective: bool) -> Solution:
        if self._proc is None:
            self._start()
        self._conn.send(("solve", params, with_objective))
        hard = Deadline(params.time_limit).stop_at()
        best: Incumbent | None = None
        while True:
            wait = None if hard is None else hard - time.perf_counter()
            if (wait is not None and wait <= 0) or not self._conn.poll(wait):
                self._kill()  # stopped at the hard limit: the next query starts a fresh child
                if best is None:
                    return Solution(Status.TIMEOUT, message="stopped at the hard time limit", stats={"killed": True})
                return Solution(
                    Status.FEASIBLE,
                    best.assignment,
                    best.objective,
                    exact_objective=best.exact_objective,
                    rational=best.rational,
                    message="stopped at the hard time limit",
                    stats={"killed": True},
                )
            try:
                msg = self._conn.recv()
            except EOFError:
                self._kill()
                return Solution(Status.ERROR, message="the session's solver process died")
            if msg[0] == "incumbent":
                inc = msg[1]
                if best is None or (inc.exact_objective is not None and inc.exact_objective < best.exact_objective):
                    best = inc
            elif msg[0] == "done":
                return msg[1]
            elif msg[0] == "raise":
                raise msg[1]
            else:
                return Solution(Status.ERROR, message=f"backend raised {msg[1]}", stats={"traceback": msg[2]})

    def close(self) -> None:
        """End the session (the child process, if any, is stopped)."""
        if self._worker is not None:
            self._worker.close()
            self._worker = None
        if self._proc is not None:
            try:
                self._conn.send(("close",))
                if self._conn.poll(2.0):
                    self._conn.recv()
            except (OSError, EOFError):
                pass
            self._kill()

    @property
    def alive(self) -> bool:
        """A child process is running for this session (always ``True`` in process)."""
        return self._worker is not None or (self._proc is not None and self._proc.is_alive())

    def __enter__(self) -> SolverSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - a forgotten session does not leave a solver running
        try:
            self._kill()
        except Exception:  # noqa: BLE001
            pass


def open_session(
    problem: Problem,
    backend: str | Backend = "ortools:scip",
    *,
    params: SolveParams | None = None,
    seed: int | None = None,
    threads: int | None = None,
    verbose: bool | None = None,
    isolate: bool = True,
    certify: bool | str = True,
    **backend_options: Any,
) -> SolverSession:
    """Open ``problem`` for related queries (see the module docstring).

    Args:
        problem: the base problem; changes are made through the session.
        backend: a registered name or a backend instance.
        params: seed, threads, verbosity (time limits are per query, in :meth:`SolverSession.solve`).
        seed: solver random seed.
        threads: solver threads.
        verbose: solver log on.
        isolate: host the open model in one long-lived child process (default), so
            every query's time limit holds; ``False``: in this process.
        certify: as for :func:`smug.solve`.
        **backend_options: passed to the backend.

    Example:
        >>> with smug.open_session(problem, "z3") as s:  # doctest: +SKIP
        ...     s.fix([3], [0])  # mask variable 3 off
        ...     sol = s.solve(time_limit=5)
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"open_session() takes a smug.ir.Problem, got {type(problem).__name__}")
    base = params or SolveParams()
    over = {k: v for k, v in dict(seed=seed, threads=threads, verbose=verbose).items() if v is not None}
    params = replace(base, **over) if over else base
    be = get_backend(backend, **backend_options)
    require_installed(be)
    be.check(problem, params)
    if not isinstance(certify, (bool, str)):
        raise ValidationError(f"certify must be True, False or an exact backend's name, got {certify!r}")
    caps = be.capabilities
    plan = make_plan(be, certify, {"presolve": None, "cuts": None, "greedy": None})
    if caps.sessions:  # a native session presolves each query (fixings as bound changes), without cuts or greedy
        plan = replace(plan, cuts=False, greedy=False)
    if caps.integer_coefficients:
        IntegerScaling("tight", plan.coef_bits).check(problem)
    if not caps.exact or caps.integer_coefficients:
        plan.resolve(problem)
    return SolverSession(problem, be, params, plan, isolate)

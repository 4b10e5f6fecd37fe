"""The pipeline around every backend: the plan (shared reductions, certifier), the chain, exact checks, and the
process that holds a hard time limit.

:func:`smug.solve` (:mod:`smug.solving.run`) and :func:`smug.open_session`
(:mod:`smug.solving.session`) are both built from these pieces; see
``docs/architecture.md``.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SmugError
from ..ir import Problem
from ..ir.exact import check, fraction_to_float_down, objective
from ..reductions.base import EXACT, Chain, Reduction
from ..reductions.incumbent import CardinalityCuts, cardinality_lower_bound, greedy_incumbent
from ..reductions.integer_scaling import DEFAULT_BITS, IntegerScaling
from ..reductions.presolve import Presolve
from ..reductions.relu_bigm import ReluBigM
from .certify import ExactAnswer, Rows, certify, make_exact
from .contract import Backend, Incumbent, Solution, SolveParams, Status
from .deadline import Deadline, grace_seconds
from .registry import get_backend
from .search import minimize

__all__ = [
    "CERTIFIERS",
    "Plan",
    "make_plan",
    "pipeline",
    "noop",
    "decided",
    "answer",
    "answer_with_presolve",
    "finish",
    "run_in_process",
    "run_in_child",
    "die_with_parent",
    "stop_child",
    "own_usage",
    "process_usage",
    "mp_context",
    "from_incumbent",
    "grace_seconds",
]

#: Exact backends that certify other backends' claims, in order of preference: for 0/1 problems, then for any.
CERTIFIERS = {"binary": ("ortools:cpsat", "z3"), "any": ("z3",)}


@dataclass
class Plan:
    """What runs around the backend: the shared reductions, the greedy start, and who certifies.

    Attributes:
        presolve: run the shared presolve.
        cuts: add the implied cardinality cuts.
        greedy: compute the greedy start.
        certify: ``True`` (the first installed of :data:`CERTIFIERS`), ``False``
            (claims stay unproven: ``feasible`` / ``unknown``), or a backend name.
        rounding, coef_bits: the integer scaling of integer-only backends.
        installed: the certifier candidates found installed (resolved in the calling
            process by :meth:`resolve`, so a solve's child does not import solvers).
    """

    presolve: bool
    cuts: bool
    greedy: bool
    certify: bool | str
    rounding: str = "tight"
    coef_bits: int = DEFAULT_BITS
    installed: tuple[str, ...] | None = None

    def resolve(self, problem: Problem) -> None:
        """Find which certifier candidates are installed (imports them here, before any child is forked)."""
        if self.certify is False:
            self.installed = ()
            return
        names = (
            [self.certify]
            if isinstance(self.certify, str)
            else list(CERTIFIERS["binary" if problem.is_pure_binary else "any"])
        )
        found = []
        for name in names:
            try:
                be = get_backend(name)
            except SmugError:
                continue
            if be.available() and be.capabilities.exact:
                found.append(name)
        self.installed = tuple(found)

    def shared_chain(self) -> Chain:
        """The solver-neutral exact reductions."""
        steps: list[Reduction] = []
        if self.presolve:
            steps.append(Presolve())
        if self.cuts:
            steps.append(CardinalityCuts())
        return Chain(steps)

    def backend_chain(self, problem: Problem, be: Backend, purpose: str) -> Chain:
        """What ``be`` needs on top: big-M for ReLUs it cannot take, integer scaling for integer-only solvers.

        ``purpose="bound"`` (a certification question) rounds outward, so bounds
        and infeasibility hold for the real rows.
        """
        caps = be.capabilities
        steps: list[Reduction] = []
        if problem.n_relu and not caps.relu:
            steps.append(ReluBigM())
        if caps.integer_coefficients:
            steps.append(IntegerScaling(self.rounding if purpose == "solve" else "relaxed", self.coef_bits))
        return Chain(steps)

    def certifier(self, problem: Problem) -> Backend | None:
        """The exact backend that answers bound questions on ``problem`` (``None``: none is installed)."""
        if self.certify is False:
            return None
        names = (
            [self.certify]
            if isinstance(self.certify, str)
            else list(CERTIFIERS["binary" if problem.is_pure_binary else "any"])
        )
        for name in names:
            try:
                be = get_backend(name)
            except SmugError:
                continue
            if not be.available() or not be.capabilities.exact:
                continue
            try:
                be.check(problem, SolveParams())
                if be.capabilities.integer_coefficients:
                    IntegerScaling("relaxed", self.coef_bits).check(problem)
            except SmugError:
                continue
            return be
        return None


def make_plan(be: Backend, certify_opt: bool | str, shared: dict[str, bool | None]) -> Plan:
    """The plan for ``be``: each shared reduction on where given, else where the backend declares it."""
    caps = be.capabilities
    flags = {k: (k in caps.reductions) if v is None else bool(v) for k, v in shared.items()}
    return Plan(
        presolve=flags["presolve"],
        cuts=flags["cuts"],
        greedy=flags["greedy"],
        certify=certify_opt,
        rounding=str(be.options.get("rounding", "tight")),
        coef_bits=int(be.options.get("coef_bits", DEFAULT_BITS)),
    )


# ------------------------------------------------------------------ the pipeline
def noop(_: Incumbent) -> None:
    """A reporter that drops incumbents."""
    pass


def pipeline(
    problem: Problem, be: Backend, params: SolveParams, plan: Plan, report: Callable[[Incumbent], None]
) -> Solution:
    """Chain, backend, inverse and (where needed) certification for one solve, in this process.

    Returns a solution on ``problem``'s variables (``stats`` records the
    reductions, the backend's numbers and the certification).
    """
    deadline = Deadline(params.time_limit)
    t0 = time.perf_counter()
    best: list[Incumbent | None] = [None]  # the best exactly feasible incumbent seen (checked by ``lift``)

    def forward(inc: Incumbent) -> None:
        q = inc.exact_objective
        if q is None or (best[0] is not None and q >= best[0].exact_objective):  # type: ignore[operator]
            return
        best[0] = inc
        report(inc)

    shared = plan.shared_chain()
    p1 = shared.apply(problem)
    cuts = next((s.applied.data for s in shared.steps if s.reduction.name == "cuts"), None) or []
    lower = cardinality_lower_bound(p1, cuts)
    stats: dict[str, Any] = {"reductions": shared.stats()}
    if bool(np.all(p1.lb == p1.ub)):
        sol = decided(p1, "presolve" if plan.presolve else "bounds")
        sol.stats.update(stats)
        sol.solve_time = time.perf_counter() - t0
        return sol
    start = None
    if plan.greedy and p1.is_pure_binary:
        g = greedy_incumbent(p1)
        if g is not None:
            q = objective(p1, g)
            start = Incumbent(g, float(q), None, q, None)
            forward(start)
            stats["greedy_objective"] = float(q)
    ans = answer(p1, be, params.with_time_limit(deadline.remaining()), plan, forward, start, lower, "solve", deadline)
    s = ans.solution
    stats.update(s.stats)
    if ans.exact:
        sol = s
        inc = best[0]
        if sol.status not in (Status.OPTIMAL, Status.INFEASIBLE) and inc is not None:
            if sol.exact_objective is None or inc.exact_objective < sol.exact_objective:  # type: ignore[operator]
                sol.assignment, sol.rational, sol.exact_objective = inc.assignment, inc.rational, inc.exact_objective
                sol.objective = inc.objective
                sol.status = Status.FEASIBLE
        if sol.status not in (Status.INFEASIBLE, Status.ERROR) and (sol.exact_bound is None or sol.exact_bound < lower):
            sol.exact_bound = lower  # the box and cut bound holds too
        if start is not None and sol.status == Status.INFEASIBLE:
            sol = Solution(
                Status.ERROR,
                message=f"backend {be.name!r} claimed infeasible, but the greedy start is an exactly feasible solution",
            )
        elif inc is not None and sol.status == Status.OPTIMAL and inc.exact_objective < sol.exact_objective:  # type: ignore[operator]
            sol.status = Status.ERROR  # an exact backend's "optimal" contradicted by a verified, better solution
            sol.message = (
                f"backend {be.name!r} claimed optimal at {sol.exact_objective}, but an exactly feasible solution "
                f"of objective {inc.exact_objective} is known"
            )
    else:
        asker = None
        if plan.certifier(p1) is not None:

            def asker(extra: Rows | None, dl: Deadline) -> ExactAnswer:
                q = p1 if extra is None else p1.with_rows(extra.A, extra.sense, extra.rhs)
                cb = plan.certifier(q)
                if cb is None:
                    return ExactAnswer(
                        Solution(Status.UNKNOWN, message="no exact backend takes this question"), False, False
                    )
                sub = Plan(presolve=True, cuts=False, greedy=False, certify=False, coef_bits=plan.coef_bits)
                return answer_with_presolve(q, cb, params.with_time_limit(dl.remaining()), sub, dl)

        sol = certify(
            p1,
            s.assignment,
            s.rational,
            s.status,
            bound=s.exact_bound if ans.bounds else None,
            float_bound=s.float_bound,
            start=start,
            lower=lower,
            deadline=deadline,
            ask=asker,
            report=forward,
        )
        sol.build_time = s.build_time
        stats.update(sol.stats)
        stats["certifier"] = None if asker is None else plan.certifier(p1).name  # type: ignore[union-attr]
        stats["claim_tolerance"] = be.capabilities.tolerance
        sol.message = "; ".join(m for m in (s.message, sol.message) if m)
    sol.stats = stats
    sol.solve_time = time.perf_counter() - t0 - sol.build_time
    return sol


def decided(p: Problem, by: str) -> Solution:
    """Every variable is fixed: the one point decides the problem, exactly."""
    x = p.lb.astype(np.float64).copy()
    if check(p, x).feasible:
        q = objective(p, x)
        return Solution(Status.OPTIMAL, x, float(q), exact_objective=q, exact_bound=q, stats={"decided_by": by})
    return Solution(
        Status.INFEASIBLE, message=f"{by} fixed every variable and the point is infeasible", stats={"decided_by": by}
    )


def answer_with_presolve(q: Problem, be: Backend, params: SolveParams, plan: Plan, deadline: Deadline) -> ExactAnswer:
    """A certification question: presolve (exact), then ``be`` through its bound chain; uncertified."""
    shared = plan.shared_chain()
    q1 = shared.apply(q)
    if bool(np.all(q1.lb == q1.ub)):
        return ExactAnswer(decided(q1, "presolve"), True, True)
    return answer(q1, be, params, plan, noop, None, cardinality_lower_bound(q1, []), "bound", deadline)


def answer(
    p1: Problem,
    be: Backend,
    params: SolveParams,
    plan: Plan,
    report: Callable[[Incumbent], None],
    start: Incumbent | None,
    lower: Fraction,
    purpose: str,
    deadline: Deadline,
) -> ExactAnswer:
    """``be`` on ``p1`` through its own chain; the answer mapped back to ``p1``'s variables, with what it proves."""
    chain = plan.backend_chain(p1, be, purpose)
    p2 = chain.apply(p1)
    caps = be.capabilities

    def lift(inc: Incumbent) -> None:
        x1, r1 = chain.invert_point(np.asarray(inc.assignment, dtype=np.float64), inc.rational)
        ok = make_exact(p1, x1, r1)
        if ok is not None:
            q = objective(p1, ok[0], ok[1])
            report(Incumbent(ok[0], float(q), None, q, ok[1]))

    identity = not chain.steps or all(s.applied.problem.n_vars == p1.n_vars for s in chain.steps)
    t0 = time.perf_counter()
    if caps.optimize:
        hint = start.assignment if start is not None and caps.hints and identity else None
        s2 = be.solve(p2, params, lift, hint)
    else:
        start2 = start if start is not None and chain.guarantee.exact and identity else None
        s2 = minimize(be, p2, params, lift, start=start2, lower=lower if chain.guarantee.exact else None)  # type: ignore[arg-type]
    wall = time.perf_counter() - t0
    g = chain.guarantee if chain.steps else EXACT
    exact = caps.exact and g.exact
    bounds_ok = caps.exact and g.bounds
    x1 = r1 = None
    q1 = None
    status = s2.status
    if s2.assignment is not None:
        x1, r1 = chain.invert_point(np.asarray(s2.assignment, dtype=np.float64), s2.rational)
        if caps.exact and status != Status.OPTIMAL:
            # a solver stopped early may hand back a model that is no solution (z3 after an interrupt): check it
            ok = make_exact(p1, x1, r1)
            if ok is None:
                x1 = r1 = None
                status = Status.stopped(False, status in (Status.FEASIBLE, Status.TIMEOUT))
            else:
                x1, r1 = ok
        if caps.exact and x1 is not None:
            q1 = objective(p1, x1, r1)
    bound1 = None
    searched = not caps.optimize  # the shared search proves its bounds itself
    if bounds_ok and (caps.proves_bound or searched or s2.status in (Status.OPTIMAL, Status.INFEASIBLE)):
        b2 = s2.exact_bound
        if b2 is None and s2.bound is not None:
            b2 = Fraction(s2.bound)
        if b2 is None and s2.status == Status.OPTIMAL and s2.assignment is not None:
            b2 = objective(p2, s2.assignment, s2.rational)
        bound1 = chain.invert_bound(b2) if chain.steps else b2
    float_bound = s2.float_bound
    if not caps.exact and s2.bound is not None and float_bound is None:
        float_bound = s2.bound
    stats = dict(s2.stats)
    if chain.steps:
        stats["backend_reductions"] = chain.stats()
    stats["backend_seconds"] = wall
    sol = Solution(
        status=status,
        assignment=x1,
        rational=r1,
        objective=None if q1 is None else float(q1),
        exact_objective=q1,
        exact_bound=bound1,
        float_bound=float_bound,
        build_time=s2.build_time,
        solve_time=s2.solve_time,
        message=s2.message,
        stats=stats,
    )
    return ExactAnswer(sol, exact, bounds_ok)


# --------------------------------------------------------------------- checks
def finish(sol: Solution, be: Backend, problem: Problem, params: SolveParams) -> None:
    """The independent exact check of the returned assignment, and the fields every solution carries."""
    sol.backend = be.name
    sol.version = be.version()
    sol.params = params
    sol.n_mask = problem.n_mask
    if sol.assignment is not None:
        x = np.asarray(sol.assignment, dtype=np.float64).ravel()[: problem.n_vars]
        rat = None if sol.rational is None else list(sol.rational)[: problem.n_vars]
        x = np.where(problem.is_binary, np.rint(x), x) if np.isfinite(x).all() else x
        sol.assignment = x
        if not np.isfinite(x).all():
            sol.verified, sol.within_tolerance = False, False
        else:
            chk = check(problem, x, rat)
            sol.verified = chk.feasible
            ev = problem.evaluate(x)
            sol.within_tolerance = ev.feasible
            sol.max_violation = 0.0 if chk.feasible else max(ev.max_violation, 1e-300)
            sol.exact_objective = objective(problem, x, rat)
            sol.objective = float(sol.exact_objective)
            if not chk.feasible:
                sol.message = (
                    f"backend {be.name!r} returned an assignment that fails the exact check ({chk.summary()}); "
                    f"was: {sol.status.value}. {sol.message}"
                ).strip()
                sol.status = Status.ERROR
    elif sol.status.has_solution:
        sol.message = f"backend {be.name!r} reported {sol.status.value} without an assignment. {sol.message}".strip()
        sol.status = Status.ERROR
    if sol.exact_bound is not None and sol.exact_objective is not None and sol.exact_bound > sol.exact_objective:
        if sol.status == Status.OPTIMAL:
            sol.exact_bound = sol.exact_objective
        else:  # a bound above a verified solution is no bound: something upstream is wrong; drop it
            sol.stats["dropped_bound"] = str(sol.exact_bound)
            sol.exact_bound = None
    if sol.status == Status.OPTIMAL and sol.exact_objective is not None:
        sol.exact_bound = sol.exact_objective
    sol.bound = None if sol.exact_bound is None else fraction_to_float_down(sol.exact_bound)
    if sol.status == Status.INFEASIBLE:
        sol.bound = sol.exact_bound = None
    sol.finish_gap()


class _Best:
    """The best incumbent streamed so far (by exact objective)."""

    def __init__(self) -> None:
        self.inc: Incumbent | None = None

    def offer(self, inc: Incumbent) -> None:
        q = inc.exact_objective
        if self.inc is None or (
            q is not None and self.inc.exact_objective is not None and q < self.inc.exact_objective
        ):
            self.inc = inc


def run_in_process(be: Backend, problem: Problem, params: SolveParams, plan: Plan) -> Solution:
    """The pipeline in this process; a crash inside a solver keeps the best incumbent and says what happened."""
    best = _Best()
    t0 = time.perf_counter()
    try:
        return pipeline(problem, be, params, plan, best.offer)
    except SmugError:
        raise
    except Exception as exc:  # a crash inside a solver: keep what was found, say what happened
        sol = from_incumbent(best.inc, f"backend raised {type(exc).__name__}: {exc}")
        sol.status = Status.ERROR
        sol.solve_time = time.perf_counter() - t0
        sol.stats["traceback"] = traceback.format_exc()
        return sol


def die_with_parent() -> None:
    """Linux: the kernel kills this process when its parent dies (no orphaned solver keeps running)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:  # pragma: no cover - no libc here
            pass


def _limit_memory(mib: int) -> None:
    """Cap this process's address space at what it maps now plus ``mib`` MiB (``RLIMIT_AS``)."""
    import resource

    try:
        mapped = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # pragma: no cover - no /proc
        mapped = 0
    cap = mapped + int(mib) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def own_usage() -> dict[str, float]:
    """This process's CPU seconds (its reaped children included) and peak resident memory (MiB)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "cpu_time": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
        "peak_rss_mb": max(me.ru_maxrss, kids.ru_maxrss) / 1024.0,
    }


def process_usage(pid: int) -> dict[str, float] | None:
    """CPU seconds and peak resident memory (MiB) of a running process, read from ``/proc`` (Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
    except (OSError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = sum(int(v) for v in stat[11:15]) / ticks  # utime, stime, cutime, cstime
    hwm = next((line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")), "0")
    return {"cpu_time": cpu, "peak_rss_mb": int(hwm) / 1024.0}


def _child_main(conn: Any, be: Backend, problem: Problem, params: SolveParams, plan: Plan, parent: int) -> None:
    die_with_parent()
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    if params.memory_limit is not None:
        _limit_memory(params.memory_limit)

    def report(inc: Incumbent) -> None:
        conn.send(("incumbent", inc))

    try:
        sol = pipeline(problem, be, params, plan, report)
        sol.stats.update(own_usage())
        conn.send(("done", sol))
    except SmugError as exc:  # bad input: re-raised in the parent
        conn.send(("raise", exc))
    except BaseException as exc:  # noqa: BLE001 - everything must reach the parent
        conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    finally:
        conn.close()


def mp_context() -> Any:
    """The multiprocessing context of solver children: ``fork`` where there is one (``SMUG_START_METHOD`` overrides)."""
    method = os.environ.get("SMUG_START_METHOD")
    if method is None:
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    return mp.get_context(method)


def run_in_child(
    be: Backend, problem: Problem, params: SolveParams, plan: Plan, *, deadline: Deadline | None = None
) -> Solution:
    """The pipeline in a child process stopped at the hard limit (its best streamed incumbent returned).

    ``deadline`` is the whole call's (started before the imports and checks);
    by default one starts now from ``params.time_limit``.
    """
    ctx = mp_context()
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(send, be, problem, params, plan, os.getpid()), daemon=True)
    if deadline is None:
        deadline = Deadline(params.time_limit)
    proc.start()
    send.close()
    hard = deadline.stop_at()
    best = _Best()
    try:
        while True:
            wait = None if hard is None else hard - time.perf_counter()
            if wait is not None and wait <= 0:
                break
            if not recv.poll(wait):
                break
            try:
                msg = recv.recv()
            except EOFError:
                proc.join(1.0)
                sol = from_incumbent(best.inc, f"solver process died (exit code {proc.exitcode}) without an answer")
                sol.status = Status.FEASIBLE if best.inc is not None and params.time_limit is not None else Status.ERROR
                sol.solve_time = deadline.elapsed()
                return sol
            if msg[0] == "incumbent":
                best.offer(msg[1])
            elif msg[0] == "done":
                sol = msg[1]
                inc = best.inc
                if inc is not None and sol.status not in (Status.OPTIMAL, Status.INFEASIBLE):
                    better = sol.exact_objective is None or (
                        inc.exact_objective is not None and inc.exact_objective < sol.exact_objective
                    )
                    if better:
                        sol.assignment, sol.rational = inc.assignment, inc.rational
                        sol.exact_objective, sol.objective = inc.exact_objective, inc.objective
                        if sol.status in (Status.TIMEOUT, Status.UNKNOWN):
                            sol.status = Status.FEASIBLE
                return sol
            elif msg[0] == "raise":
                raise msg[1]
            else:
                sol = from_incumbent(best.inc, f"backend raised {msg[1]}")
                sol.status = Status.ERROR
                sol.stats["traceback"] = msg[2]
                sol.solve_time = deadline.elapsed()
                return sol
        # the hard limit hit: stop the solver, keep the best solution it streamed
        sol = from_incumbent(best.inc, f"stopped at the hard time limit ({deadline.seconds:g} s + grace)")
        sol.solve_time = deadline.elapsed()
        sol.stats["killed"] = True
        sol.stats.update(process_usage(proc.pid) or {})  # the child's last reading, before it is killed
        return sol
    finally:
        stop_child(proc)
        recv.close()


def stop_child(proc: Any) -> None:
    """Stop a solver child at once and reap it without making the caller wait.

    SIGKILL, not SIGTERM: the grace period for a clean stop is already over (or
    the answer is in), and a solver stuck in native code may ignore SIGTERM.  The
    kernel frees the process at once; the zombie is reaped here when it is quick,
    else by a daemon thread, so a call never returns late waiting for it.
    """
    if proc.is_alive():
        proc.kill()
    proc.join(0.02)
    if proc.exitcode is None:
        threading.Thread(target=proc.join, name="smug: reap solver child", daemon=True).start()


def from_incumbent(best: Incumbent | None, message: str) -> Solution:
    """A stopped solve's answer: the best incumbent as ``feasible``, or ``timeout`` without one."""
    if best is None:
        return Solution(status=Status.TIMEOUT, message=message)
    return Solution(
        status=Status.FEASIBLE,
        assignment=best.assignment,
        objective=best.objective,
        exact_objective=best.exact_objective,
        rational=best.rational,
        message=message,
    )

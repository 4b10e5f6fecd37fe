"""``smug.solve``: run any backend on a :class:`~smug.ir.Problem`, safely.

Around every backend this adds, in one place:

* checks that the backend exists, is installed, and can take the problem and
  the parameters (errors name the fix);
* a **hard time limit**: with ``time_limit`` set, the solve runs in a child
  process that streams every improving solution back and is stopped at the
  limit (plus a small grace), so solvers without a timeout of their own and
  calls that overrun theirs still end on time with their best solution;
* an independent check of the returned assignment with
  :meth:`~smug.ir.Problem.evaluate`; an assignment that fails it is reported
  with status ``error`` rather than passed on silently;
* enumeration of alternative optimal masks (``num_solutions > 1``) by no-good
  cuts on the mask variables, the same for every backend.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from dataclasses import replace
from typing import Any

import numpy as np

from ..errors import SmugError
from ..ir import Problem
from .contract import Backend, Incumbent, Solution, SolveParams, Status
from .registry import get_backend, require_installed

__all__ = ["solve", "grace_seconds"]


def grace_seconds(time_limit: float) -> float:
    """How long past ``time_limit`` a solver may run before it is stopped."""
    return 0.5 + 0.05 * time_limit


def solve(
    problem: Problem,
    backend: str | Backend = "ortools:scip",
    *,
    params: SolveParams | None = None,
    time_limit: float | None = None,
    seed: int | None = None,
    threads: int | None = None,
    num_solutions: int | None = None,
    verbose: bool | None = None,
    isolate: bool | None = None,
    **backend_options: Any,
) -> Solution:
    """Minimise ``problem``'s objective with the named backend.

    Args:
        problem: the IR problem.
        backend: a registered name (``smug backends`` lists them) or a backend instance.
        params: a :class:`SolveParams`; the keyword parameters below override it.
        time_limit: seconds for the whole solve, enforced for every backend.
        seed: solver random seed.
        threads: solver threads.
        num_solutions: distinct optimal masks to return.
        verbose: solver log on.
        isolate: run in a child process.  Default: only when a time limit is set.
        **backend_options: passed to the backend (for example ``encoding=`` for z3,
            ``search=`` for satisfiability-only backends).

    Returns:
        A :class:`Solution`; ``status`` says whether it is optimal, feasible at the
        limit, infeasible, timed out without a solution, unknown or an error.
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"solve() takes a smug.ir.Problem, got {type(problem).__name__}")
    base = params or SolveParams()
    overrides = {
        k: v
        for k, v in dict(
            time_limit=time_limit, seed=seed, threads=threads, num_solutions=num_solutions, verbose=verbose
        ).items()
        if v is not None
    }
    params = replace(base, **overrides) if overrides else base
    be = get_backend(backend, **backend_options)
    require_installed(be)
    be.check(problem, params)
    if isolate is None:
        isolate = params.time_limit is not None

    t_start = time.perf_counter()
    sol = _solve_once(be, problem, replace(params, num_solutions=1), isolate)
    _finish(sol, be, problem, params)

    if params.num_solutions > 1 and sol.status == Status.OPTIMAL and sol.assignment is not None:
        _enumerate(sol, be, problem, params, isolate, t_start)
    return sol


def _finish(sol: Solution, be: Backend, problem: Problem, params: SolveParams) -> None:
    sol.backend = be.name
    sol.version = be.version()
    sol.params = params
    sol.n_mask = problem.n_mask
    if sol.assignment is not None:
        x = np.asarray(sol.assignment, dtype=np.float64).ravel()[: problem.n_vars]
        x = np.where(problem.is_binary, np.rint(x), x)
        sol.assignment = x
        ev = problem.evaluate(x)
        sol.verified = ev.feasible
        sol.max_violation = ev.max_violation
        sol.objective = ev.objective
        if not ev.feasible:
            sol.message = (
                f"backend {be.name!r} returned an assignment that fails the independent check ({ev.summary()}); "
                f"was: {sol.status.value}. {sol.message}"
            ).strip()
            sol.status = Status.ERROR
    elif sol.status.has_solution:
        sol.status = Status.ERROR
        sol.message = f"backend {be.name!r} reported {sol.status.value} without an assignment. {sol.message}".strip()
    sol.finish_gap()


def _enumerate(
    sol: Solution, be: Backend, problem: Problem, params: SolveParams, isolate: bool, t_start: float
) -> None:
    assert sol.objective is not None and sol.assignment is not None
    opt = sol.objective
    if problem.objective_is_integral:
        bound = opt
    else:
        bound = opt + 1e-9 * max(1.0, abs(opt))
    found = [sol.assignment]
    complete = False
    while len(found) < params.num_solutions:
        left = None
        if params.time_limit is not None:
            left = params.time_limit - (time.perf_counter() - t_start)
            if left <= 0:
                break
        q = problem.with_objective_bound(bound).with_nogoods(found)
        s2 = _solve_once(be, q, replace(params, num_solutions=1, time_limit=left), isolate)
        _finish(s2, be, q, params)
        if s2.status == Status.INFEASIBLE:
            complete = True
            break
        if not s2.status.has_solution or s2.assignment is None:
            break
        found.append(s2.assignment[: problem.n_vars])
    sol.alternatives = found[1:]
    sol.stats["enumeration_complete"] = complete


# --------------------------------------------------------------------- running
def _solve_once(be: Backend, problem: Problem, params: SolveParams, isolate: bool) -> Solution:
    if not isolate:
        return _run_in_process(be, problem, params)
    return _run_in_child(be, problem, params)


def _run_in_process(be: Backend, problem: Problem, params: SolveParams) -> Solution:
    best: list[Incumbent] = []

    def report(inc: Incumbent) -> None:
        if not best or inc.objective <= best[-1].objective:
            best.append(Incumbent(np.array(inc.assignment, dtype=np.float64), float(inc.objective), inc.bound))

    t0 = time.perf_counter()
    try:
        return be.solve(problem, params, report)
    except SmugError:
        raise
    except Exception as exc:  # a crash inside a solver: keep what was found, say what happened
        sol = _from_incumbent(best[-1] if best else None, f"backend raised {type(exc).__name__}: {exc}")
        sol.status = Status.ERROR
        sol.solve_time = time.perf_counter() - t0
        sol.stats["traceback"] = traceback.format_exc()
        return sol


def _child_main(conn: Any, be: Backend, problem: Problem, params: SolveParams) -> None:
    def report(inc: Incumbent) -> None:
        conn.send(("incumbent", np.asarray(inc.assignment, dtype=np.float64), float(inc.objective), inc.bound))

    try:
        sol = be.solve(problem, params, report)
        conn.send(("done", sol))
    except SmugError as exc:  # bad input: re-raised in the parent
        conn.send(("raise", exc))
    except BaseException as exc:  # noqa: BLE001 - everything must reach the parent
        conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    finally:
        conn.close()


def _mp_context() -> Any:
    method = os.environ.get("SMUG_START_METHOD")
    if method is None:
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    return mp.get_context(method)


def _run_in_child(be: Backend, problem: Problem, params: SolveParams) -> Solution:
    ctx = _mp_context()
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(send, be, problem, params), daemon=True)
    t0 = time.perf_counter()
    proc.start()
    send.close()
    limit = params.time_limit
    hard = None if limit is None else t0 + limit + grace_seconds(limit)
    best: Incumbent | None = None
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
                sol = _from_incumbent(best, f"solver process died (exit code {proc.exitcode}) without an answer")
                sol.status = Status.FEASIBLE if best is not None and limit is not None else Status.ERROR
                sol.solve_time = time.perf_counter() - t0
                return sol
            if msg[0] == "incumbent":
                if best is None or msg[2] <= best.objective:
                    best = Incumbent(msg[1], msg[2], msg[3])
            elif msg[0] == "done":
                sol = msg[1]
                if sol.assignment is None and best is not None and not sol.status == Status.INFEASIBLE:
                    sol.assignment, sol.objective = best.assignment, best.objective
                    if sol.status in (Status.TIMEOUT, Status.UNKNOWN):
                        sol.status = Status.FEASIBLE
                return sol
            elif msg[0] == "raise":
                raise msg[1]
            else:
                sol = _from_incumbent(best, f"backend raised {msg[1]}")
                sol.status = Status.ERROR
                sol.stats["traceback"] = msg[2]
                sol.solve_time = time.perf_counter() - t0
                return sol
        # the hard limit hit: stop the solver, keep the best solution it streamed
        sol = _from_incumbent(best, f"stopped at the hard time limit ({limit:g} s + grace)")
        sol.solve_time = time.perf_counter() - t0
        sol.stats["killed"] = True
        return sol
    finally:
        if proc.is_alive():
            proc.terminate()
            proc.join(0.5)
            if proc.is_alive():
                proc.kill()
                proc.join(0.5)
        recv.close()


def _from_incumbent(best: Incumbent | None, message: str) -> Solution:
    if best is None:
        return Solution(status=Status.TIMEOUT, message=message)
    return Solution(
        status=Status.FEASIBLE,
        assignment=best.assignment,
        objective=best.objective,
        bound=best.bound,
        message=message,
    )

"""``smug.solve``: run any backend on a :class:`~smug.ir.Problem`, with exact verdicts.

Around every backend this adds, in one place:

* **checks first**: the backend exists, is installed, and can take the problem
  and the parameters (errors name the fix), before any slow work;
* **the reduction chain**, built from the backend's declared capabilities
  (:mod:`smug.reductions`): the shared exact reductions (presolve, implied
  cardinality cuts) and a greedy start for every backend that takes them, then
  what the backend needs (big-M for ReLUs, sound integer scaling for
  integer-only solvers); answers are mapped back through the chain.  When
  presolve fixes every variable, no solver is needed at all;
* **exact verdicts**: every assignment is checked in exact rational arithmetic
  (``Solution.verified``); an answer that is exact by construction (an exact
  backend on an exact chain) is reported as it is, any other claim --
  a MILP solver's tolerance-level optimum or infeasibility, an optimum on
  rounded rows -- is certified by :mod:`smug.solving.certify` before it is
  called ``optimal`` or ``infeasible``;
* a **hard time limit**: with ``time_limit`` set, the whole call (chain, solver,
  certification) runs in a child process that streams every improving solution
  back and is stopped at the limit plus a small grace, so solvers without a
  timeout of their own and calls that overrun theirs still end on time with
  their best solution; the child dies with its parent;
* enumeration of alternative optimal masks (``num_solutions > 1``) by no-good
  cuts on the mask variables, the same for every backend.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from fractions import Fraction
from typing import Any

from ..errors import UnsupportedParameterError, UnsupportedProblemError
from ..ir import Problem
from ..ir.exact import fraction_to_float_up, objective
from ..reductions.integer_scaling import DEFAULT_BITS, IntegerScaling
from .contract import Backend, Solution, SolveParams, Status
from .deadline import Deadline, grace_seconds
from .pipeline import CERTIFIERS, Plan, finish, make_plan, run_in_child, run_in_process
from .registry import get_backend, require_installed
from .session import open_session

__all__ = ["solve", "grace_seconds", "Plan", "CERTIFIERS"]


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
    memory_limit: int | None = None,
    isolate: bool | None = None,
    certify: bool | str = True,
    presolve: bool | None = None,
    cuts: bool | None = None,
    greedy: bool | None = None,
    **backend_options: Any,
) -> Solution:
    """Minimise ``problem``'s objective with the named backend; verdicts are exact.

    Args:
        problem: the IR problem.
        backend: a registered name (``smug backends`` lists them) or a backend instance.
        params: a :class:`SolveParams`; the keyword parameters below override it.
        time_limit: seconds for the whole call, enforced for every backend.
        seed: solver random seed.
        threads: solver threads.
        num_solutions: distinct optimal masks to return.
        verbose: solver log on.
        memory_limit: MiB the solver child may allocate (``RLIMIT_AS`` on top of what it maps at start;
            implies ``isolate``).
        isolate: run in a child process.  Default: only when a time limit is set.
        certify: prove tolerance-based claims exactly (``True``: with the first
            installed exact backend, CP-SAT for 0/1 problems, else z3; a backend
            name; ``False``: leave them unproven, as ``feasible`` with
            ``float_bound`` or ``unknown``).
        presolve: run the shared presolve (default: what the backend declares).
        cuts: add the implied cardinality cuts (default: what the backend declares).
        greedy: start from the greedy incumbent (default: what the backend declares).
        **backend_options: passed to the backend (for example ``encoding=`` for z3,
            ``search=`` for satisfiability-only backends, ``rounding=`` for CP-SAT).

    Returns:
        A :class:`Solution`; ``status`` says whether it is proven optimal,
        feasible (a solution, not proven optimal), proven infeasible, timed out
        without a solution, unknown or an error; ``verified`` that the assignment
        satisfies the problem exactly.
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"solve() takes a smug.ir.Problem, got {type(problem).__name__}")
    base = params or SolveParams()
    overrides = {
        k: v
        for k, v in dict(
            time_limit=time_limit,
            seed=seed,
            threads=threads,
            num_solutions=num_solutions,
            verbose=verbose,
            memory_limit=memory_limit,
        ).items()
        if v is not None
    }
    params = replace(base, **overrides) if overrides else base
    t_start = time.perf_counter()  # the limit bounds the whole call: imports and checks included
    deadline = Deadline(params.time_limit, t_start)
    be = get_backend(backend, **backend_options)
    late = _bounded(deadline, lambda: require_installed(be), f"importing the {be.name} solver")
    if late is not None:
        return late
    be.check(problem, params)
    if be.capabilities.integer_coefficients:
        IntegerScaling("tight", int(be.options.get("coef_bits", DEFAULT_BITS))).check(problem)
    if problem.n_relu and not be.capabilities.relu and not be.capabilities.real_vars:
        raise UnsupportedProblemError(f"backend {be.name!r} cannot take ReLU constraints")
    if isinstance(certify, str):
        cb = get_backend(certify)
        require_installed(cb)
        if not cb.capabilities.exact:
            raise UnsupportedParameterError(f"certify={certify!r}: that backend is not exact; name an exact one (z3)")
    elif not isinstance(certify, bool):
        raise UnsupportedParameterError(f"certify must be True, False or an exact backend's name, got {certify!r}")
    plan = make_plan(be, certify, {"presolve": presolve, "cuts": cuts, "greedy": greedy})
    if not be.capabilities.exact or be.capabilities.integer_coefficients:
        # certification may be needed: find (import) the certifier now, in this process, not in every child
        late = _bounded(deadline, lambda: plan.resolve(problem), "importing the exact certifier")
        if late is not None:
            return late
    if isolate is None:
        isolate = params.time_limit is not None or params.memory_limit is not None
    if not isolate and params.memory_limit is not None:
        raise UnsupportedParameterError(
            "memory_limit is enforced in a solver child: leave isolate unset or True with memory_limit"
        )
    if not isolate and params.time_limit is not None and not be.capabilities.native_time_limit:
        raise UnsupportedParameterError(
            f"backend {be.name!r} has no time limit of its own: with isolate=False nothing could stop it at "
            f"time_limit={params.time_limit:g}; leave isolate unset (a child process enforces the limit)"
        )

    sol = _execute(be, problem, replace(params, num_solutions=1), plan, isolate, deadline)
    finish(sol, be, problem, params)
    if params.num_solutions > 1 and sol.status == Status.OPTIMAL and sol.assignment is not None:
        _enumerate(sol, be, problem, params, plan, isolate, t_start)
    return sol


def _enumerate(
    sol: Solution, be: Backend, problem: Problem, params: SolveParams, plan: Plan, isolate: bool, t_start: float
) -> None:
    assert sol.exact_objective is not None and sol.assignment is not None
    opt = sol.exact_objective
    rhs = float(opt - Fraction(float(problem.objective_constant)))
    if not problem.objective_is_integral:
        rhs = fraction_to_float_up(opt - Fraction(float(problem.objective_constant)))
    found = [sol.assignment]
    complete = False
    deadline = Deadline(params.time_limit, t_start)
    # one session on "objective <= optimum", a no-good added per step: with an integral objective any feasible
    # point is an optimum (a feasibility query); otherwise each step minimises
    integral = problem.objective_is_integral
    base = problem.with_rows(problem.objective.reshape(1, -1), "<=", [rhs])
    steps = 0
    with open_session(base, be, params=replace(params, time_limit=None), isolate=isolate, certify=plan.certify) as s:
        while len(found) < params.num_solutions and not deadline.expired():
            A, r = problem.nogood_rows(found[-1:])
            s.add_rows(A, ">=", r)
            s2 = s.solve(time_limit=deadline.remaining(), objective=not integral)
            steps += 1
            if s2.status == Status.INFEASIBLE:
                complete = True
                break
            if not s2.status.has_solution or s2.assignment is None or not s2.verified:
                break
            x = s2.assignment[: problem.n_vars]
            if objective(problem, x, None if s2.rational is None else s2.rational[: problem.n_vars]) != opt:
                complete = s2.status == Status.OPTIMAL and not integral  # the best of the rest is worse
                break
            found.append(x)
        sol.stats["enumeration_session"] = {"steps": steps, "restarts": s.restarts, "backend": be.name}
    sol.alternatives = found[1:]
    sol.stats["enumeration_complete"] = complete


# --------------------------------------------------------------------- running
def _execute(
    be: Backend, problem: Problem, params: SolveParams, plan: Plan, isolate: bool, deadline: Deadline
) -> Solution:
    if params.time_limit is not None:  # what the imports and checks used is not the solver's any more
        params = replace(params, time_limit=deadline.solver_limit())
    if not isolate:
        return run_in_process(be, problem, params, plan)
    return run_in_child(be, problem, params, plan, deadline=deadline)


#: Work started by :func:`_bounded` that outlived its call's limit (an import still running in a thread).
_PENDING: list[threading.Thread] = []


def _bounded(deadline: Deadline, fn: Any, what: str) -> Solution | None:
    """Run ``fn`` (an import or a check) within ``deadline``'s hard limit; ``None`` when it finished in time.

    Without a limit ``fn`` simply runs.  With one it runs in a thread; if the
    hard limit (limit + grace) passes first, the call returns a ``timeout``
    solution at once and ``fn`` goes on in the background (an import cannot be
    interrupted): a later call waits for it, within its own limit, before it
    forks a solver child, so a child is never forked while an import runs.
    Exceptions of ``fn`` are raised here.
    """
    hard = deadline.stop_at()
    while _PENDING:  # an earlier call's import: finish it first, within this call's limit
        t = _PENDING[0]
        t.join(None if hard is None else max(0.0, hard - time.perf_counter()))
        if t.is_alive():
            return _late(deadline, "an earlier call's import, still running")
        _PENDING.pop(0)
    if hard is None:
        fn()
        return None
    box: dict[str, BaseException] = {}

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 -- re-raised in the caller
            box["exc"] = exc

    t = threading.Thread(target=run, name=f"smug: {what}", daemon=True)
    t.start()
    t.join(max(0.0, hard - time.perf_counter()))
    if t.is_alive():
        _PENDING.append(t)
        return _late(deadline, what)
    if "exc" in box:
        raise box["exc"]
    return None


def _late(deadline: Deadline, what: str) -> Solution:
    sol = Solution(
        status=Status.TIMEOUT,
        message=(
            f"{what} did not finish within the time limit ({deadline.seconds:g} s + grace); it goes on in the "
            "background and a later call finds it done"
        ),
    )
    sol.solve_time = deadline.elapsed()
    sol.stats["killed"] = True
    return sol

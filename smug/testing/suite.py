"""The property suite every backend must pass, for your own backend too.

:func:`check_backend` draws hostile problems (:func:`~smug.testing.strategies.hostile_problems`)
and asserts, for each, that the backend's answer through :func:`smug.solve`
matches the exact oracle: the same optimum exactly, every returned solution
exactly feasible, never ``infeasible`` on a feasible problem.  It runs the
backend with smug's shared reductions and without them, so the backend
itself is tested, not presolve.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings

from ..solving.contract import Backend
from ..solving.registry import get_backend
from ..solving.run import solve
from .properties import assert_matches_brute_force
from .strategies import hostile_problems

__all__ = ["check_backend"]


def check_backend(
    backend: str | Backend,
    *,
    examples: int = 30,
    relu: bool | None = None,
    max_vars: int = 8,
    derandomize: bool = True,
    **solve_options: Any,
) -> None:
    """Run the hostile property suite against ``backend``; raises ``AssertionError`` (shrunk) on a failure.

    Args:
        backend: a registered name or a :class:`~smug.solving.contract.Backend` instance.
        examples: how many problems to draw.
        relu: ``False``: 0/1 problems only; ``True``: ReLU networks only; ``None``:
            both when the backend takes real variables, else 0/1 only.
        max_vars: the largest number of mask variables.
        derandomize: the same problems every run (set ``False`` to explore).
        **solve_options: passed to :func:`smug.solve` (for example backend options).
    """
    be = backend if isinstance(backend, Backend) else get_backend(backend)
    kinds = [relu] if relu is not None else ([False, True] if be.capabilities.real_vars else [False])
    for kind in kinds:

        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=derandomize,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(problem=hostile_problems(relu=kind, max_vars=max_vars if not kind else min(max_vars, 5)))
        def prop(problem: Any) -> None:
            for shared in ({}, {"presolve": False, "cuts": False, "greedy": False}):
                sol = solve(problem, be, **shared, **solve_options)
                try:
                    assert_matches_brute_force(problem, sol)
                except AssertionError as exc:
                    raise AssertionError(f"{be.name} {shared or 'with the shared reductions'}: {exc}") from None

        prop()

"""The backend contract: parameters, capabilities, statuses, solutions.

A backend lowers a :class:`smug.ir.Problem` to one solver and maps the answer
back.  Two kinds exist:

* :class:`Backend` subclasses that optimise natively implement
  :meth:`Backend.solve`;
* :class:`SatBackend` subclasses only decide satisfiability: they implement
  :meth:`SatBackend.open_session` and get optimisation from the one shared
  search routine in :mod:`smug.solving.search`.

Nothing here imports a solver.  ``smug.solve`` (in :mod:`smug.solve`) wraps
every backend with validation, a hard time limit, enumeration of alternative
optima and an independent check of the returned assignment.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, ClassVar

import numpy as np

from ..errors import UnsupportedParameterError, UnsupportedProblemError, ValidationError
from ..ir import Problem

__all__ = [
    "Status",
    "SolveParams",
    "Capabilities",
    "Incumbent",
    "Solution",
    "Backend",
    "SatBackend",
    "SatSession",
    "Reporter",
]


class Status(str, Enum):
    """How a solve ended.

    ``FEASIBLE`` means a limit hit while a solution was in hand (it is returned);
    ``TIMEOUT`` means a limit hit before any solution was found.  A timeout is
    never reported as ``INFEASIBLE``.
    """

    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    INFEASIBLE = "infeasible"
    TIMEOUT = "timeout"
    UNKNOWN = "unknown"
    ERROR = "error"

    @property
    def has_solution(self) -> bool:
        """True for statuses that come with an assignment."""
        return self in (Status.OPTIMAL, Status.FEASIBLE)

    @classmethod
    def stopped(cls, has_solution: bool, hit_limit: bool) -> Status:
        """The status of a solve that ended without a proof: every backend maps it the same way.

        ``FEASIBLE`` with a solution in hand; otherwise ``TIMEOUT`` when a
        limit (time, or an interrupt at the limit) stopped it, else ``UNKNOWN``
        (the solver gave up for another reason).  Never ``INFEASIBLE``.
        """
        if has_solution:
            return cls.FEASIBLE
        return cls.TIMEOUT if hit_limit else cls.UNKNOWN

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class SolveParams:
    """The one typed parameter set every backend takes.

    Attributes:
        time_limit: wall-clock seconds for the whole solve (``None``: no limit).
            ``smug.solve`` enforces it for every backend, stopping a solver
            that overruns and keeping the best solution found.
        seed: random seed passed to the solver.
        threads: number of solver threads.  A backend that cannot use more than
            one thread rejects ``threads > 1``.
        num_solutions: how many distinct optimal masks to return (1: just one).
        verbose: let the solver print its log.
    """

    time_limit: float | None = None
    seed: int = 0
    threads: int = 1
    num_solutions: int = 1
    verbose: bool = False

    def __post_init__(self) -> None:
        tl = self.time_limit
        if tl is not None and (
            isinstance(tl, bool) or not isinstance(tl, (int, float)) or not math.isfinite(tl) or tl <= 0
        ):
            raise ValidationError(f"time_limit must be a positive number of seconds or None, got {tl!r}")
        for name, lo in (("seed", 0), ("threads", 1), ("num_solutions", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValidationError(f"{name} must be an integer >= {lo}, got {v!r}")
        if not isinstance(self.verbose, bool):
            raise ValidationError(f"verbose must be True or False, got {self.verbose!r}")

    def with_time_limit(self, seconds: float | None) -> SolveParams:
        """A copy with another time limit (at least a millisecond when given)."""
        return replace(self, time_limit=None if seconds is None else max(seconds, 1e-3))


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do.  ``smug.solve`` checks problems and parameters against it.

    Attributes:
        optimize: optimises natively (otherwise the core search routine is used).
        relu: accepts ReLU constraints.
        real_vars: accepts real (continuous) variables.
        incremental: keeps state between satisfiability checks (push/pop).
        native_time_limit: the solver stops itself at a time limit.
        seed: the seed changes the solver's random choices.  A backend without
            randomness sets ``deterministic`` instead and accepts any seed.
        deterministic: the result does not depend on any seed.
        max_threads: largest ``threads`` it honours (``None``: any).
        proves_bound: reports a proven lower bound when stopped early.
        integer_coefficients: works on integers; real coefficients are scaled and
            rounded soundly (see the backend's notes).
    """

    optimize: bool
    relu: bool
    real_vars: bool
    incremental: bool = False
    native_time_limit: bool = True
    seed: bool = True
    deterministic: bool = False
    max_threads: int | None = 1
    proves_bound: bool = False
    integer_coefficients: bool = False


@dataclass
class Incumbent:
    """A solution found during a solve, reported as soon as it is known."""

    assignment: np.ndarray
    objective: float
    bound: float | None = None


#: A callable backends call with each improving :class:`Incumbent`.
Reporter = Callable[[Incumbent], None]


@dataclass
class Solution:
    """What a solve returns.

    Attributes:
        status: how it ended (see :class:`Status`).
        assignment: one value per variable of the problem, or ``None``.
        objective: the objective of ``assignment``.
        bound: best proven lower bound on the optimum, where known.
        gap: ``(objective - bound) / max(1, |objective|)`` where both are known.
        build_time: seconds spent lowering the IR to the solver.
        solve_time: seconds spent in the solver (search included).
        backend: the backend's registered name.
        version: the solver's version string.
        params: the parameters used.
        n_mask: number of mask variables (the first entries of ``assignment``).
        alternatives: further distinct optimal assignments when ``num_solutions > 1``.
        verified: the assignment passed the IR's independent :meth:`~smug.ir.Problem.evaluate`.
        max_violation: the largest constraint violation ``evaluate`` measured.
        message: a human-readable note (why it stopped, what went wrong).
        stats: backend-specific numbers (for example the CP-SAT coefficient scale).
    """

    status: Status
    assignment: np.ndarray | None = None
    objective: float | None = None
    bound: float | None = None
    gap: float | None = None
    build_time: float = 0.0
    solve_time: float = 0.0
    backend: str = ""
    version: str | None = None
    params: SolveParams = field(default_factory=SolveParams)
    n_mask: int = 0
    alternatives: list[np.ndarray] = field(default_factory=list)
    verified: bool | None = None
    max_violation: float | None = None
    message: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def mask(self) -> np.ndarray | None:
        """The 0/1 values of the mask variables (``None`` without a solution)."""
        if self.assignment is None:
            return None
        return np.rint(self.assignment[: self.n_mask]).astype(np.int8)

    @property
    def masks(self) -> list[np.ndarray]:
        """The mask and every alternative optimal mask."""
        if self.assignment is None:
            return []
        return [self.mask] + [np.rint(a[: self.n_mask]).astype(np.int8) for a in self.alternatives]  # type: ignore[list-item]

    @property
    def total_time(self) -> float:
        """``build_time + solve_time``."""
        return self.build_time + self.solve_time

    def finish_gap(self) -> None:
        """Fill ``gap`` from ``objective`` and ``bound`` (0 when proven optimal)."""
        if self.status == Status.OPTIMAL and self.objective is not None:
            if self.bound is None:
                self.bound = self.objective
            self.gap = 0.0
        elif self.objective is not None and self.bound is not None:
            self.gap = max(0.0, (self.objective - self.bound) / max(1.0, abs(self.objective)))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for tables, JSON and the study harness)."""
        return {
            "status": self.status.value,
            "objective": self.objective,
            "bound": self.bound,
            "gap": self.gap,
            "build_time": self.build_time,
            "solve_time": self.solve_time,
            "backend": self.backend,
            "version": self.version,
            "verified": self.verified,
            "max_violation": self.max_violation,
            "mask": None if self.mask is None else self.mask.tolist(),
            "n_alternatives": len(self.alternatives),
            "message": self.message,
            "stats": dict(self.stats),
        }


class Backend(ABC):
    """A solver family's adapter.  Subclass and register it (see :mod:`smug.solving.registry`).

    Attributes a subclass sets:
        family: registry prefix, for example ``"ortools"`` (class attribute).
        capabilities: a :class:`Capabilities`; a class attribute, which an
            instance may override when they depend on its options (for example
            the solver behind a MILP backend).

    Instances carry ``name`` (the full registered name, such as
    ``"ortools:scip"``) and backend-specific ``options``.
    """

    family: ClassVar[str] = ""
    capabilities: Capabilities

    def __init__(self, name: str | None = None, **options: Any) -> None:
        self.name = name or self.family
        self.options = options

    # -- installation ----------------------------------------------------
    def available(self) -> bool:
        """Whether the solver can be imported and used here."""
        return self.version() is not None

    @abstractmethod
    def version(self) -> str | None:
        """The solver's version string, or ``None`` when it is not installed."""

    def install_hint(self) -> str:
        """The exact command that installs the solver."""
        return "see the backend's documentation"

    # -- checks ----------------------------------------------------------
    def check(self, problem: Problem, params: SolveParams) -> None:
        """Raise if this backend cannot solve ``problem`` with ``params``.

        The default checks the declared capabilities; backends add their own.
        """
        caps = self.capabilities
        if problem.n_relu and not caps.relu:
            raise UnsupportedProblemError(
                f"backend {self.name!r} cannot take ReLU constraints ({problem.n_relu} in this problem); "
                "use a MILP backend such as 'ortools:scip' or an SMT backend such as 'z3'"
            )
        if problem.n_real and not caps.real_vars:
            raise UnsupportedProblemError(
                f"backend {self.name!r} cannot take real variables ({problem.n_real} in this problem); "
                "use a MILP backend such as 'ortools:scip' or an SMT backend such as 'z3'"
            )
        if caps.max_threads is not None and params.threads > caps.max_threads:
            raise UnsupportedParameterError(
                f"backend {self.name!r} cannot use threads={params.threads} (at most {caps.max_threads}); "
                f"set threads={caps.max_threads}"
            )
        if not caps.seed and not caps.deterministic and params.seed != 0:
            raise UnsupportedParameterError(f"backend {self.name!r} cannot take a random seed; leave seed=0")

    # -- solving ---------------------------------------------------------
    @abstractmethod
    def solve(self, problem: Problem, params: SolveParams, report: Reporter) -> Solution:
        """Solve ``problem`` (minimise its objective) and return a :class:`Solution`.

        Call ``report`` with every improving solution found, so that a solve
        stopped by the hard time limit still returns its best.  Honour
        ``params.time_limit`` natively where the solver can; return
        ``Status.FEASIBLE`` with the incumbent or ``Status.TIMEOUT`` when it
        hits, never ``Status.INFEASIBLE``.  ``smug.solve`` fills ``backend``,
        ``version``, ``params``, ``n_mask``, ``verified`` and the gap.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} options={self.options!r}>"


class SatSession(ABC):
    """A solver loaded with a problem's constraints, answering bounded satisfiability queries.

    The shared search routine calls :meth:`check` repeatedly with tightening
    bounds.  Implementations keep the base constraints and add each bound
    inside a push/pop scope where the solver supports it.
    """

    @abstractmethod
    def check(self, bound: float | None, timeout: float | None, strict: bool = False) -> str:
        """Is there a solution with ``objective <= bound`` (``None``: any objective)?

        With ``strict=True`` the query is ``objective < bound`` (exactly, in the
        solver's rational arithmetic).

        Returns ``"sat"``, ``"unsat"`` or ``"unknown"`` (time out or give up).
        ``timeout`` is in seconds; ``None`` means no limit.
        """

    @abstractmethod
    def model(self) -> np.ndarray:
        """The assignment (one float per variable) of the last ``"sat"`` answer."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release solver resources."""


class SatBackend(Backend):
    """A backend that only decides satisfiability; optimisation comes from :mod:`smug.solving.search`.

    Options understood by the shared search (pass them when constructing the
    backend, for example ``smug.solve(p, "pysmt:cvc5", search="linear")``):
    ``search`` = ``"binary"`` (default for integral objectives) or ``"linear"``
    (solution-improving: each model's objective becomes the next bound).
    """

    @abstractmethod
    def open_session(self, problem: Problem, params: SolveParams) -> SatSession:
        """Load ``problem``'s constraints (not its objective) into a fresh solver."""

    def solve(self, problem: Problem, params: SolveParams, report: Reporter) -> Solution:
        """Minimise by the shared bound search over :meth:`open_session`'s session."""
        from .search import minimize

        return minimize(self, problem, params, report)

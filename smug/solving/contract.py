"""The backend contract: parameters, capabilities, statuses, solutions, backends and sessions.

A backend lowers a (reduced) :class:`~smug.ir.Problem` to one solver, sets the
solver's native parameters and lifts the answer back; nothing else.  Two kinds:

* a :class:`Backend` whose capabilities say ``optimize=True`` implements
  :meth:`Backend.solve`;
* a :class:`SatBackend` decides bounded satisfiability in a :class:`SatSession`
  (:meth:`SatBackend.open_session`); with ``optimize=False`` it gets optimisation
  from the one shared bound search (:mod:`smug.solving.search`).

What a backend declares in :class:`Capabilities` decides what
:func:`smug.solve` does around it (:mod:`smug.solving.run`): which reductions
run first (:mod:`smug.reductions`), whether its answers are exact or must be
certified (:mod:`smug.solving.certify`), which parameters it may take.  Nothing
here imports a solver or torch.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from ..errors import UnsupportedParameterError, UnsupportedProblemError, ValidationError
from ..ir import Problem

__all__ = [
    "Status",
    "SolveParams",
    "Capabilities",
    "SHARED_REDUCTIONS",
    "SEARCH_STRATEGIES",
    "Incumbent",
    "Solution",
    "Backend",
    "SatBackend",
    "SatSession",
    "Session",
    "Changes",
    "Reporter",
]


class Status(str, Enum):
    """How a solve ended.

    ``OPTIMAL`` is proven exactly; ``FEASIBLE`` means a solution is in hand but
    not proven optimal (a limit hit, or a tolerance-based optimum that could not
    be certified); ``TIMEOUT`` means a limit hit before any solution.  A timeout
    is never reported as ``INFEASIBLE``, which is proven exactly too.
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
        memory_limit: MiB the solver process may allocate beyond what it has
            mapped when it starts (``None``: no limit); enforced with
            ``RLIMIT_AS`` in the solver child, so it needs an isolated solve.
            A solver that hits it ends with status ``error``.
    """

    time_limit: float | None = None
    seed: int = 0
    threads: int = 1
    num_solutions: int = 1
    verbose: bool = False
    memory_limit: int | None = None

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
        m = self.memory_limit
        if m is not None and (isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1):
            raise ValidationError(f"memory_limit must be a positive number of MiB or None, got {m!r}")

    def with_time_limit(self, seconds: float | None) -> SolveParams:
        """A copy with another time limit (at least a millisecond when given)."""
        return replace(self, time_limit=None if seconds is None else max(seconds, 1e-3))


#: The strategies of the shared bound search (:mod:`smug.solving.search`).
SEARCH_STRATEGIES = ("auto", "binary", "linear")

#: The solver-neutral reductions a backend may take by default (see :attr:`Capabilities.reductions`).
SHARED_REDUCTIONS = frozenset({"presolve", "cuts", "greedy"})


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; :func:`smug.solve` builds everything around the backend from it.

    Attributes:
        optimize: optimises natively (:meth:`Backend.solve`); otherwise it is a
            :class:`SatBackend` and the shared bound search minimises.
        relu: takes ReLU constraints (otherwise the big-M reduction lowers them).
        real_vars: takes real (continuous) variables.
        exact: its verdicts (optimal, infeasible, bounds) are proofs on the
            problem it is given: rational or integer arithmetic.  ``False``: they
            hold within a float tolerance, so ``smug.solve`` certifies them.
        tolerance: the feasibility tolerance an inexact backend's claims hold
            within (recorded with the certification, ``stats["claim_tolerance"]``).
        integer_coefficients: takes only integer rows and objective (the sound
            integer-scaling reduction runs first).
        incremental: its sessions keep state between checks (push/pop); without
            it the shared search opens a fresh session for every check.
        native_time_limit: the solver stops itself at a time limit; without it
            only ``smug.solve``'s child process can stop it, so a time-limited
            solve is always isolated.
        seed: the seed changes the solver's random choices.  A backend without
            randomness sets ``deterministic`` instead and accepts any seed.
        deterministic: the result does not depend on any seed.
        max_threads: largest ``threads`` it honours (``None``: any).
        proves_bound: reports a lower bound when stopped early (an exact one when
            ``exact``; otherwise it is kept only as ``Solution.float_bound``).
        hints: takes a start solution (``hint=`` of :meth:`Backend.solve`).
        sessions: keeps a model open between related queries: bound changes, added
            and removed rows (:meth:`Backend.session`, or for a
            :class:`SatBackend` the :class:`Changes` of its :class:`SatSession`);
            :func:`smug.open_session` rebuilds the problem per query otherwise.
        reductions: the shared reductions it takes by default, from
            :data:`SHARED_REDUCTIONS` (``presolve``, ``cuts``, ``greedy``); an
            empty set solves the problem exactly as stated (``z3:original``).
    """

    optimize: bool
    relu: bool
    real_vars: bool
    exact: bool = True
    tolerance: float = 0.0
    integer_coefficients: bool = False
    incremental: bool = False
    native_time_limit: bool = True
    seed: bool = True
    deterministic: bool = False
    max_threads: int | None = 1
    proves_bound: bool = False
    hints: bool = False
    sessions: bool = False
    reductions: frozenset[str] = SHARED_REDUCTIONS

    def __post_init__(self) -> None:
        unknown = set(self.reductions) - SHARED_REDUCTIONS
        if unknown:
            raise ValidationError(f"unknown shared reduction(s) {sorted(unknown)}; known: {sorted(SHARED_REDUCTIONS)}")
        if not self.exact and not self.tolerance > 0:
            raise ValidationError("an inexact backend must declare its feasibility tolerance (> 0)")


@dataclass
class Incumbent:
    """A solution found during a solve, reported as soon as it is known.

    ``exact_objective`` and ``rational`` (exact values of all variables) are
    filled by exact backends and by smug's own checks.
    """

    assignment: np.ndarray
    objective: float
    bound: float | None = None
    exact_objective: Fraction | None = None
    rational: list[Fraction] | None = None


#: A callable backends call with each improving :class:`Incumbent`.
Reporter = Callable[[Incumbent], None]


@dataclass
class Solution:
    """What a solve returns.

    Attributes:
        status: how it ended (see :class:`Status`).
        assignment: one float per variable of the problem, or ``None``.
        objective: the objective of ``assignment`` (the float nearest the exact value).
        bound: a proven lower bound on the optimum (exact arithmetic, rounded down
            to a float), where known.
        gap: ``(objective - bound) / max(1, |objective|)`` where both are known.
        build_time: seconds spent lowering the IR to the solver.
        solve_time: seconds spent in the solver, the search and certification.
        backend: the backend's registered name.
        version: the solver's version string.
        params: the parameters used.
        n_mask: number of mask variables (the first entries of ``assignment``).
        alternatives: further distinct optimal assignments when ``num_solutions > 1``.
        verified: the assignment satisfies every row, ReLU, bound and
            integrality requirement in **exact** rational arithmetic, strict
            margins included (:func:`smug.ir.exact.check`).
        within_tolerance: it passes the float check at relative tolerance 1e-9
            (a weaker statement, reported for comparison; never a verdict).
        max_violation: the largest violation the float check measured (0 when exact).
        exact_objective: the assignment's objective as an exact rational.
        exact_bound: the proven lower bound as an exact rational.
        float_bound: a lower bound a tolerance-based solver claimed (not a proof).
        rational: exact values of every variable where they are not exactly the
            floats of ``assignment`` (real variables of rational models).
        message: a human-readable note (why it stopped, what went wrong).
        stats: backend- and pipeline-specific numbers (reductions, certification).
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
    within_tolerance: bool | None = None
    max_violation: float | None = None
    exact_objective: Fraction | None = None
    exact_bound: Fraction | None = None
    float_bound: float | None = None
    rational: list[Fraction] | None = None
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
        else:
            self.gap = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for tables, JSON and the study harness); exact numbers as ``"p/q"`` strings."""
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
            "within_tolerance": self.within_tolerance,
            "max_violation": self.max_violation,
            "exact_objective": None if self.exact_objective is None else str(self.exact_objective),
            "exact_bound": None if self.exact_bound is None else str(self.exact_bound),
            "float_bound": self.float_bound,
            "mask": None if self.mask is None else self.mask.tolist(),
            "n_alternatives": len(self.alternatives),
            "message": self.message,
            "stats": {k: v for k, v in self.stats.items() if k != "traceback"},
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
    #: The backend-specific options the constructor accepts (``None``: any); others are an error naming these.
    OPTIONS: ClassVar[tuple[str, ...] | None] = None
    #: The command that installs the solver (what :meth:`install_hint` returns).
    INSTALL: ClassVar[str] = "see the backend's documentation"

    def __init__(self, name: str | None = None, **options: Any) -> None:
        self.name = name or self.family
        if self.OPTIONS is not None:
            unknown = sorted(set(options) - set(self.OPTIONS))
            if unknown:
                known = ", ".join(self.OPTIONS) or "none"
                raise ValidationError(
                    f"unknown option(s) {', '.join(map(repr, unknown))} for backend {self.name!r}; its options: "
                    f"{known} (presolve=, cuts=, greedy= and certify= are smug.solve's own keywords)"
                )
        self.options = options

    # -- installation ----------------------------------------------------
    def available(self) -> bool:
        """Whether the solver can be imported and used here."""
        return self.version() is not None

    @abstractmethod
    def version(self) -> str | None:
        """The solver's version string, or ``None`` when it is not installed."""

    def install_hint(self) -> str:
        """The exact command that installs the solver (:attr:`INSTALL`)."""
        return self.INSTALL

    # -- checks ----------------------------------------------------------
    def check(self, problem: Problem, params: SolveParams) -> None:
        """Raise if this backend cannot solve ``problem`` with ``params``, before any slow work.

        The default checks the declared capabilities (ReLU constraints count as
        acceptable when the backend takes real variables: the big-M reduction
        lowers them); backends add their own checks.
        """
        caps = self.capabilities
        if problem.n_real and not caps.real_vars:
            what = f"{problem.n_real} real variable(s)" + (
                f" and {problem.n_relu} ReLU constraint(s)" if problem.n_relu else ""
            )
            raise UnsupportedProblemError(
                f"backend {self.name!r} takes only 0/1 problems, and this one has {what}; "
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
    def session(self, problem: Problem, params: SolveParams) -> Session:
        """Open ``problem`` for related queries (only with ``capabilities.sessions`` and ``optimize``)."""
        raise NotImplementedError(f"backend {self.name!r} keeps no open model (capabilities.sessions=False)")

    def solve(
        self, problem: Problem, params: SolveParams, report: Reporter, hint: np.ndarray | None = None
    ) -> Solution:
        """Solve ``problem`` (minimise its objective) and return a :class:`Solution`.

        Only for backends with ``capabilities.optimize``.  Call ``report`` with
        every improving solution found, so that a solve stopped by the hard time
        limit still returns its best.  Honour ``params.time_limit`` natively
        where the solver can; return ``Status.FEASIBLE`` with the incumbent or
        ``Status.TIMEOUT`` when it hits, never ``Status.INFEASIBLE``.  ``hint``
        (with ``capabilities.hints``): a feasible start.  ``smug.solve`` fills
        ``backend``, ``version``, ``params``, ``n_mask``, the verification and
        the gap.
        """
        raise NotImplementedError(f"backend {self.name!r} does not optimise natively (capabilities.optimize=False)")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} options={self.options!r}>"


class Changes(ABC):  # noqa: B024 - the changes an incremental session takes (each optional)
    """The changes an open model takes between queries (backends with ``capabilities.sessions``).

    Variables keep the indices of the problem the session was opened on. Bounds
    may change within that problem's bounds; rows (IR rows: sense, rhs, strict
    and margin as in :class:`~smug.ir.Problem`) are added under handles the
    caller picks and removed by them.
    """

    def set_bounds(self, idx: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> None:
        """Give variables ``idx`` the bounds ``[lb, ub]`` (within the opened problem's bounds)."""
        raise NotImplementedError(f"{type(self).__name__} takes no bound changes")

    def add_rows(
        self,
        handles: list[int],
        A: Any,
        sense: np.ndarray,
        rhs: np.ndarray,
        strict: np.ndarray,
        margin: np.ndarray,
    ) -> None:
        """Add rows ``A x (sense) rhs`` (``A``: CSR, one column per variable), one per handle."""
        raise NotImplementedError(f"{type(self).__name__} takes no added rows")

    def remove_rows(self, handles: list[int]) -> None:
        """Remove the rows added under these handles."""
        raise NotImplementedError(f"{type(self).__name__} takes no removed rows")


class Session(Changes):
    """A backend's open model answering related optimisation queries (``capabilities.sessions``).

    Opened by :meth:`Backend.session` on a reduced problem; :func:`smug.open_session`
    (:mod:`smug.solving.session`) puts the chain, exact checks, certification
    and the hard time limit around it.
    """

    @abstractmethod
    def solve(self, params: SolveParams, report: Reporter, *, objective: bool = True) -> Solution:
        """Minimise the objective (``objective=False``: find any feasible point) under the current changes."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release solver resources."""


class SatSession(Changes):
    """A solver loaded with a problem's constraints, answering bounded satisfiability queries.

    The shared search calls :meth:`check` repeatedly with tightening bounds;
    implementations keep the base constraints and add each bound inside a
    push/pop scope where the solver supports it.  ``stats`` (a dict) is copied
    into the solution.
    """

    stats: dict[str, Any]

    @abstractmethod
    def check(self, bound: Fraction | None, timeout: float | None, strict: bool = False) -> str:
        """Is there a solution with ``objective <= bound`` (``None``: any objective)?

        ``bound`` is an exact rational; with ``strict=True`` the query is
        ``objective < bound``.  Returns ``"sat"``, ``"unsat"`` or ``"unknown"``
        (time out or give up).  ``timeout`` is in seconds; ``None``: no limit.
        """

    @abstractmethod
    def model(self) -> np.ndarray:
        """The assignment (one float per variable) of the last ``"sat"`` answer."""

    def exact_model(self) -> list[Fraction] | None:
        """The exact values of the last model, where the floats of :meth:`model` round them (default: ``None``)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release solver resources."""


class SatBackend(Backend):
    """A backend that decides satisfiability in sessions; the shared bound search optimises with it.

    Options understood by the shared search (pass them when constructing the
    backend, for example ``smug.solve(p, "pysmt:cvc5", search="linear")``):
    ``search`` = ``"binary"`` (default) or ``"linear"`` (solution-improving).
    """

    def __init__(self, name: str | None = None, **options: Any) -> None:
        super().__init__(name, **options)
        strategy = options.get("search", "auto")
        if strategy not in SEARCH_STRATEGIES:
            raise ValidationError(f"unknown search strategy {strategy!r}; choose one of {SEARCH_STRATEGIES}")

    @abstractmethod
    def open_session(self, problem: Problem, params: SolveParams) -> SatSession:
        """Load ``problem``'s constraints (not its objective) into a fresh solver."""
